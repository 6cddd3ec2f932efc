"""One function per user command, returning how it ended (a run's `Verdict`, or the `ExitCode` of
a read-only command); invoke tasks call these and turn that into the process's exit code.

Listing the tasks imports this module, so what only running a command needs (the pipeline,
the console, the evidence bundle, deploy and its targets) is imported in the function that
runs it: `inv --list` stays as quick as invoke's own (see the start-up benchmark).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard import config as config_module
from shipyard.config import DEFAULT_HEARTBEAT_INTERVAL, Config, Step
from shipyard.errors import (
    ConfigError,
    ExitCode,
    LockHeld,
    PreflightError,
    StepFailed,
    UsageError,
    Verdict,
)
from shipyard.process import tools_path
from shipyard.redact import Redactor
from shipyard.wording import counted

if TYPE_CHECKING:
    from shipyard.lock import DeployLock, LockState
    from shipyard.report import ReporterFor

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_AGENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def command_line(argv: Sequence[str] | None = None) -> str:
    argv = list(sys.argv if argv is None else argv)
    return shlex.join([Path(argv[0]).name, *argv[1:]]) if argv else "shipyard"


def gates(config: Config, *, jobs: str = "auto", fail_fast: bool = False) -> Verdict:
    """Run every configured gate (in parallel), report all failures."""
    if not config.gates:
        raise UsageError(f"{config.path.name}: no gates configured (add a 'gates:' list)")
    workers = parse_jobs(jobs)
    steps = [config.steps[name] for name in config.gates]
    return _run(config, steps, jobs=workers, fail_fast=fail_fast)


def step(config: Config, name: str) -> Verdict:
    """Run one configured step."""
    return _run(config, [find_step(config, name)], jobs=1, fail_fast=False)


def build(config: Config) -> Verdict:
    """Run the `build` step."""
    if "build" not in config.steps:
        raise UsageError(f"{config.path.name}: no 'build' step configured")
    return step(config, "build")


def _run(config: Config, steps: Sequence[Step], *, jobs: int, fail_fast: bool) -> Verdict:
    from shipyard import pipeline, reporters

    run = pipeline.Run.for_config(config, command=command_line())
    reporter = reporters.for_run(jobs=jobs, redactor=run.redactor)
    return pipeline.execute(run, steps, reporter=reporter, jobs=jobs, fail_fast=fail_fast)


def find_step(config: Config, name: str) -> Step:
    if name in config.steps:
        return config.steps[name]
    close = difflib.get_close_matches(name, list(config.steps), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    known = ", ".join(config.steps) or "none"
    raise UsageError(f"unknown step '{name}'{hint}; configured steps: {known}")


def parse_jobs(jobs: str | int) -> int:
    text = str(jobs).strip().lower()
    if text in ("", "auto", "0"):
        return os.cpu_count() or 1
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise UsageError(f"--jobs: expected a positive number or 'auto', got '{jobs}'")


def verify_evidence(root: Path, agent: str, date: str = "") -> ExitCode:
    """Re-hash a day's bundle against every run's seal and the day's manifest; name every file
    changed, missing, added or not a regular file, and the seal or manifest that says so."""
    from shipyard import evidence

    date = date or f"{datetime.now(timezone.utc):%Y-%m-%d}"
    if not _DATE.fullmatch(date):
        raise UsageError(f"--date: expected YYYY-MM-DD, got '{date}'")
    bundle = evidence.Bundle(root, agent, date)
    shown = bundle.dir.relative_to(root).as_posix()
    if not bundle.dir.is_dir():
        raise UsageError(f"no evidence for {date}: {shown}/ does not exist")
    result = evidence.verify(bundle)
    for line in result.lines():
        print(line)
    if result.ok:
        seals = counted(result.seals, "seal")
        print(f"evidence: {shown}/ matches {evidence.MANIFEST_NAME} and {seals}")
        return ExitCode.OK
    print(f"evidence: {counted(len(result.findings), 'difference')} in {shown}/")
    return ExitCode.STEP_FAILED


def heartbeat(
    agent: str, argv: Sequence[str], *, environ: Mapping[str, str] = os.environ
) -> Verdict:
    """Run `argv` as one heartbeat-instrumented step; return its own exit status."""
    from shipyard import pipeline, reporters

    if not _AGENT.fullmatch(agent):
        raise UsageError(f"heartbeat: agent must match {_AGENT.pattern}, got '{agent}'")
    if not argv:
        raise UsageError("heartbeat: nothing to run (usage: shipyard heartbeat AGENT -- CMD...)")
    config = optional_config(environ=environ)
    run = pipeline.Run(
        root=config.root if config else Path.cwd(),
        agent=agent,
        heartbeat_interval=_heartbeat_interval(config, environ),
        command=shlex.join(["shipyard", "heartbeat", agent, "--", *argv]),
        redactor=Redactor.from_environ(
            environ,
            config.secrets if config else (),
            also=config.env_mappings() if config else (),
        ),
    )
    wrapped = Step(name=Path(argv[0]).name, run=shlex.join(argv))
    reporter = reporters.passthrough(redactor=run.redactor)
    with pipeline.stop_on_signals(run.stop):
        results = pipeline.run_steps(run, [wrapped], jobs=1, fail_fast=False, reporter=reporter)
        verdict = pipeline.steps_verdict(results, run.stop)
        exit_code = results[0].exit_code
        if exit_code is not None and not verdict.ok:  # the wrapped command's own status
            verdict = replace(verdict, exit_code=exit_code)
        pipeline.finish(run, results, verdict, reporter=reporter, with_feedback=False)
        return verdict


def _heartbeat_interval(config: Config | None, environ: Mapping[str, str]) -> float:
    override = environ.get("SHIPYARD_HEARTBEAT_INTERVAL")
    if override:
        try:
            return config_module.parse_duration(override)
        except ValueError as error:
            raise UsageError(f"SHIPYARD_HEARTBEAT_INTERVAL: {error}") from None
    return config.heartbeat_interval if config else DEFAULT_HEARTBEAT_INTERVAL


def optional_config(
    explicit: str | None = None, *, environ: Mapping[str, str] = os.environ
) -> Config | None:
    """The config when one is given or found; None when there is none. A broken one is an error."""
    try:
        path = config_module.find_config(explicit or None, environ=environ)
    except ConfigError:
        if explicit or environ.get("SHIPYARD_CONFIG"):
            raise
        return None
    return config_module.load_config(path)


def scan(
    root: Path,
    agent: str,
    *,
    baseline: str = "",
    write_baseline: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> ExitCode:
    """Secret-scan the tracked files; SARIF into the evidence bundle; exit 1 on findings."""
    from shipyard import scan as scanner  # detect-secrets is only imported when scanning

    baseline_path = root / (baseline or scanner.DEFAULT_BASELINE)
    if write_baseline:
        count = scanner.write_baseline(root, baseline_path, scanner.scan(root))
        accepted = counted(count, "finding")
        print(f"scan: wrote {baseline_path.relative_to(root)} accepting {accepted}")
        return ExitCode.OK
    result = scanner.scan(root, baseline=baseline_path)
    for line in scanner.format_findings(result):
        print(line)
    report = _write_scan_report(root, agent, scanner.to_sarif(result), environ)
    print(
        f"scan: {counted(len(result.findings), 'finding')}"
        f" in {counted(result.files_scanned, 'file')}, "
        f"{result.allowlisted} allowlisted ({', '.join(result.engines)}); SARIF: {report}"
    )
    return ExitCode.STEP_FAILED if result.findings else ExitCode.OK


def _write_scan_report(
    root: Path, agent: str, sarif: dict[str, object], environ: Mapping[str, str]
) -> str:
    """Into the bundle of the run that called us, or of a run of its own when standalone."""
    from shipyard import evidence

    nested = environ.get("SHIPYARD_EVIDENCE_DIR") and environ.get("SHIPYARD_RUN_ID")
    if nested:
        date_dir = Path(environ["SHIPYARD_EVIDENCE_DIR"])
        bundle = evidence.Bundle(date_dir.parents[2], date_dir.parent.name, date_dir.name)
        run_id = environ["SHIPYARD_RUN_ID"]
    else:
        now = datetime.now(timezone.utc)
        bundle, run_id = evidence.Bundle.for_moment(root, agent, now), evidence.new_run_id(now)
    path = bundle.report_dir(run_id) / "secret-scan.sarif"
    evidence.write_json(bundle, path, sarif, Redactor.from_environ(environ))
    if not nested:  # a run of its own: it seals its report (a nested one, its run does)
        sealed = evidence.seal_run(bundle, run_id)
        for line in sealed.broken:
            print(f"warning: evidence changed after it was sealed: {line}", file=sys.stderr)
        if sealed.broken:
            manifest = os.path.relpath(bundle.manifest_path, Path.cwd())
            print(f"warning: {manifest} was not rewritten over it", file=sys.stderr)
    return os.path.relpath(path, Path.cwd())


def _reporter(*, quiet: bool = False) -> ReporterFor:
    """A deploy's or rollback's reporters (one job); with `quiet`, nothing but the last line
    (on stderr), for `--json`."""
    from shipyard import reporters

    if quiet:
        return lambda redactor: reporters.quiet(redactor=redactor)
    return lambda redactor: reporters.for_run(jobs=1, redactor=redactor)


def parse_wait(text: str) -> float:
    if not text:
        return 0.0
    try:
        return config_module.parse_duration(text)
    except ValueError as error:
        raise UsageError(f"--lock-wait: {error}") from None


def deploy(
    config: Config,
    env_name: str,
    *,
    lock_wait: str = "",
    build: bool = True,
    dry_run: bool = False,
    allow_dirty: bool = False,
) -> Verdict:
    """Build, smoke the artifact, deploy, smoke the environment; roll back when that fails."""
    from shipyard import deploy as deployment

    return deployment.deploy(
        config,
        env_name,
        command=command_line(),
        reporter=_reporter(),
        lock_wait=parse_wait(lock_wait),
        build=build,
        dry_run=dry_run,
        allow_dirty=allow_dirty,
    ).verdict


def rollback(
    config: Config,
    *,
    env: str = "",
    to: str = "",
    dry_run: bool = False,
    as_json: bool = False,
    lock_wait: str = "",
    force: bool = False,
) -> Verdict:
    from shipyard.rollback import rollback as roll_back

    finished = roll_back(
        config,
        env,
        command=command_line(),
        reporter=_reporter(quiet=as_json),
        to=to or None,
        dry_run=dry_run,
        lock_wait=parse_wait(lock_wait),
        force=force,
    )
    if as_json:  # the plan (when one was made), how the run ended, and where its evidence is
        document = {**(finished.record.plan or {}), **finished.verdict.to_json()}
        print(json.dumps({**document, "run_id": finished.run.run_id}, indent=2))
    return finished.verdict


def smoke(config: Config, *, env: str = "", artifact: str = "") -> Verdict:
    from shipyard import deploy as deployment

    return deployment.smoke(
        config, env, command=command_line(), reporter=_reporter(), archive=artifact
    )


def stop(config: Config, *, env: str = "") -> ExitCode:
    """Stop the environment's local server(s) under its lock, even with a damaged state.json;
    `current` stays (docs/runbooks/staging-deploy.md). A Fly environment: UsageError."""
    from shipyard.lock import DeployLock
    from shipyard.targets import Call
    from shipyard.targets.local import LocalTarget

    environment = config.environment(env)
    if environment.target != LocalTarget.name:
        raise UsageError(
            f"inv stop is for the local target; {environment.name} deploys to"
            f" {environment.target}, whose machines Shipyard does not stop"
        )
    local = LocalTarget(config, environment)
    redactor = Redactor.from_environ(os.environ, config.secrets, also=config.env_mappings())
    command = redactor.mask(command_line())
    with DeployLock(local.state_dir, command=command, audit_path=local.audit_path):
        local.stop_servers(Call(say=print))
    return ExitCode.OK


def releases(config: Config, *, env: str = "", as_json: bool = False) -> ExitCode:
    from shipyard import targets

    environment = config.environment(env)
    found = targets.create(config, environment).releases(targets.Call())
    if as_json:
        print(json.dumps([release.to_json() for release in found], indent=2))
        return ExitCode.OK
    print(f"{'release':<8} {'status':<11} {'created':<25} {'git':<8} {'artifact sha256':<12}")
    for release in reversed(found):
        marker = "  <- current" if release.current else ""
        print(
            f"{release.version:<8} {release.status.value:<11} {release.created_at or '-':<25} "
            f"{(release.git_sha or '-')[:8]:<8} {(release.artifact_sha256 or '-')[:12]:<12}{marker}"
        )
    if not found:
        print(f"(no releases of {environment.name} yet)")
    return ExitCode.OK


def status(config: Config, *, env: str = "", as_json: bool = False) -> ExitCode:
    """What serves the environment now; exit 1 when nothing healthy does, or when what serves
    is not the release `current` names."""
    from shipyard import targets

    environment = config.environment(env)
    state = targets.create(config, environment).status(targets.Call())
    mismatch = bool(state.serving and state.current != state.serving)
    if as_json:
        print(json.dumps({**state.to_json(), "mismatch": mismatch}, indent=2))
    else:
        uptime = f"{state.uptime:.0f}s" if state.uptime is not None else "-"
        print(
            f"{state.environment} ({state.target}): current {state.current or 'none'}, "
            f"serving {state.serving or 'nothing'}, pid {state.pid or '-'}, uptime {uptime}"
        )
        health = {True: "ok", False: "FAILING", None: "-"}[state.healthy]
        print(f"health: {health} {state.detail}")
        for line in state.writes:
            print(f"written: {line}")
        if mismatch:
            print(
                f"MISMATCH: {state.serving} serves but current is {state.current or 'none'};"
                " the next deploy or rollback repairs it (`inv rollback --to"
                f" {state.current or 'vN'}` puts {state.current or 'a release'} back now)"
            )
    healthy = state.healthy and not mismatch
    return ExitCode.OK if healthy else ExitCode.STEP_FAILED


def lock_status(config: Config, *, env: str = "", as_json: bool = False) -> ExitCode:
    """Who holds the environment's lock, and whether it is stale; exit 0 either way. Reads
    only: takes no lock, breaks none."""
    lock, redactor = _environment_lock(config, env)
    name = lock.state_dir.name
    try:
        found = lock.state()
    except OSError as error:
        raise _lock_unreadable(lock, error) from None
    if as_json:
        document = {"environment": name, "locked": found is not None}
        document |= found.to_json() if found else {}
        print(redactor.mask(json.dumps(document, indent=2)))
    elif found is None:
        print(f"{name}: unlocked")
    else:
        print(redactor.mask(f"{name}: {_lock_line(found)}{_lock_hint(found, name)}"))
    return ExitCode.OK


def lock_release(config: Config, *, env: str = "", force: bool = False) -> ExitCode:
    """Remove the environment's lock: a stale one, or a held one with `force` (exit 5 without:
    LockHeld names the holder); an audit entry names who removed it. No lock: `unlocked`."""
    lock, redactor = _environment_lock(config, env)
    name = lock.state_dir.name
    try:
        removed = lock.clear(force=force)
    except LockHeld as held:
        raise LockHeld(redactor.mask(held.message)) from None
    except OSError as error:
        raise _lock_unreadable(lock, error) from None
    if removed is None:
        print(f"{name}: unlocked")
    else:
        how = "the stale lock" if removed.stale else "by --force the held lock"
        state = "stale" if removed.stale else "held"
        line = f"{name}: released {how} of {removed.holder.describe()}; {state}: {removed.reason}"
        print(redactor.mask(line))
    return ExitCode.OK


def _environment_lock(config: Config, env: str) -> tuple[DeployLock, Redactor]:
    from shipyard.lock import DeployLock
    from shipyard.targets import state_dir

    folder = state_dir(config, config.environment(env))
    redactor = Redactor.from_environ(os.environ, config.secrets, also=config.env_mappings())
    command = redactor.mask(command_line())
    return DeployLock(folder, command=command, audit_path=folder / "audit.jsonl"), redactor


def _lock_line(found: LockState) -> str:
    state = "stale" if found.stale else "held"
    return f"locked by {found.holder.describe()}; {state}: {found.reason}"


def _lock_hint(found: LockState, name: str) -> str:
    if found.stale:
        return f"; the next deploy or rollback breaks it, or `inv lock.release --env {name}` now"
    if found.unsure:
        return f"; if it is not running, `inv lock.release --env {name} --force`"
    return ""


def _lock_unreadable(lock: DeployLock, error: OSError) -> StepFailed:
    from shipyard.lock import LOCK_DIR

    where = os.path.relpath(lock.state_dir / LOCK_DIR, Path.cwd())
    return StepFailed(f"{where}: {error.strerror or error}")


def doctor(explicit: str = "", *, env: str = "") -> ExitCode:
    """Check what a run needs before anything runs: Python, tools, config, each target."""
    checks: list[tuple[bool, str]] = [
        (sys.version_info >= (3, 10), f"python {sys.version.split()[0]} (3.10 or newer)"),
        (
            shutil.which("git") is not None,
            "git on PATH (git sha of releases, scan of tracked files)",
        ),
    ]
    try:
        config = config_module.load(explicit or None)
    except ConfigError as error:
        checks.append((False, error.message))
        return _report(checks)
    steps, environments = len(config.steps), len(config.environments)
    summary = f"{counted(steps, 'step')}, {counted(environments, 'environment')}"
    checks.append((True, f"config {config.path} ({summary})"))
    checks += [_tool_check(step) for step in config.steps.values()]
    names = [env] if env else list(config.environments)
    checks += [_environment_check(config, name) for name in names]
    return _report(checks)


def _tool_check(step: Step) -> tuple[bool, str]:
    words = shlex.split(step.run, comments=True) if step.run.strip() else [""]
    program = next((w for w in words if "=" not in w), "")
    path = tools_path(os.environ)
    found = not program or "/" in program or shutil.which(program, path=path) is not None
    return found, f"step {step.name}: `{program}` {'found' if found else 'not found on PATH'}"


def _environment_check(config: Config, name: str) -> tuple[bool, str]:
    """What `inv deploy.<name>` checks before it builds: `ready` only when it would pass."""
    from shipyard import deploy as deployment
    from shipyard import targets

    try:
        environment = config.environment(name)
        target = targets.create(config, environment)
        _, problems = deployment.deploy_preflight(config, environment, target, allow_dirty=False)
    except (UsageError, PreflightError) as error:
        return False, f"environment {name}: {error.message}"
    if problems:
        return False, f"environment {name}: {'; '.join(problems)}"
    return True, f"environment {name} ({environment.target}): ready to deploy"


def _report(checks: list[tuple[bool, str]]) -> ExitCode:
    for ok, line in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {line}")
    failed = sum(not ok for ok, _ in checks)
    print(f"doctor: {counted(failed, 'problem')}" if failed else "doctor: ready")
    return ExitCode.USAGE if failed else ExitCode.OK
