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
    ShipyardError,
    StepFailed,
    UsageError,
    Verdict,
    verdict_for,
)
from shipyard.process import tools_path
from shipyard.redact import Redactor
from shipyard.wording import counted

if TYPE_CHECKING:
    from shipyard.console import Output, Paint
    from shipyard.evidence import Verification
    from shipyard.lock import DeployLock, LockState
    from shipyard.report import ReporterFor

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UNSAFE_IN_NAMES = re.compile(r"[^A-Za-z0-9._-]+")  # of an Actions artifact, say
_AGENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def command_line(argv: Sequence[str] | None = None) -> str:
    argv = list(sys.argv if argv is None else argv)
    return shlex.join([Path(argv[0]).name, *argv[1:]]) if argv else "shipyard"


def output_options(
    *, verbose: bool = False, quiet: bool = False, no_color: bool = False, as_json: bool = False
) -> Output:
    """How a command reports: `-v/--verbose`, `-q/--quiet`, `--no-color`, `--json`."""
    from shipyard.console import Output, Verbosity

    if verbose and quiet:
        raise UsageError("-v/--verbose and -q/--quiet: pass one or the other")
    verbosity = Verbosity.VERBOSE if verbose else Verbosity.QUIET if quiet else Verbosity.NORMAL
    return Output(verbosity, no_color=no_color, as_json=as_json)


def gates(
    config: Config, *, jobs: str = "auto", fail_fast: bool = False, output: Output | None = None
) -> Verdict:
    """Run every configured gate (in parallel), report all failures."""
    if not config.gates:
        raise UsageError(f"{config.path.name}: no gates configured (add a 'gates:' list)")
    workers = parse_jobs(jobs)
    steps = [config.steps[name] for name in config.gates]
    return _run(config, steps, jobs=workers, fail_fast=fail_fast, output=output)


def gate_legs(config: Config) -> list[dict[str, object]]:
    """The gates as a CI matrix runs them: one leg per gate, or one per shard of a gate with
    `shards: N` (docs/github-actions.md). `slug` is the leg's name as artifact names allow."""
    if not config.gates:
        raise UsageError(f"{config.path.name}: no gates configured (add a 'gates:' list)")
    legs: list[dict[str, object]] = []
    for gate in config.gates:
        shards = config.steps[gate].shards
        for shard in range(1, shards + 1):
            part = (f" ({shard}/{shards})", f"-{shard}-of-{shards}") if shards > 1 else ("", "")
            slug = _UNSAFE_IN_NAMES.sub("-", gate) + part[1]
            legs.append(
                {
                    "gate": gate,
                    "shard": shard,
                    "shards": shards,
                    "name": gate + part[0],
                    "slug": slug,
                }
            )
    return legs


def list_gates(config: Config, *, as_json: bool = False) -> ExitCode:
    """`gates --list`: the legs a CI matrix fans out, one per line, or as JSON."""
    legs = gate_legs(config)
    if as_json:
        print(json.dumps({"gates": legs}, indent=2))
    else:
        print("\n".join(str(leg["name"]) for leg in legs))
    return ExitCode.OK


def step(config: Config, name: str, *, output: Output | None = None) -> Verdict:
    """Run one configured step."""
    return _run(config, [find_step(config, name)], jobs=1, fail_fast=False, output=output)


def build(config: Config, *, output: Output | None = None) -> Verdict:
    """Run the `build` step."""
    if "build" not in config.steps:
        raise UsageError(f"{config.path.name}: no 'build' step configured")
    return step(config, "build", output=output)


def _run(
    config: Config, steps: Sequence[Step], *, jobs: int, fail_fast: bool, output: Output | None
) -> Verdict:
    from shipyard import pipeline, reporters

    run = pipeline.Run.for_config(config, command=command_line())
    shown = {step.name: step.run for step in steps}  # for -v
    reporter = reporters.for_run(jobs=jobs, redactor=run.redactor, output=output, commands=shown)
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


def verify_evidence(
    root: Path,
    agent: str,
    date: str = "",
    *,
    output: Output | None = None,
    redactor: Redactor | None = None,
) -> ExitCode:
    """Re-hash a day's bundle against every run's seal and the day's manifest; name every file
    changed, missing, added or not a regular file, and the seal or manifest that says so."""
    from shipyard import evidence, provenance  # protobuf: only to verify
    from shipyard.console import Output, paint_for

    output = output or Output()
    date = date or f"{datetime.now(timezone.utc):%Y-%m-%d}"
    if not _DATE.fullmatch(date):
        raise UsageError(f"--date: expected YYYY-MM-DD, got '{date}'")
    bundle = evidence.Bundle(root, agent, date)
    shown = bundle.dir.relative_to(root).as_posix()
    if not bundle.dir.is_dir():
        raise UsageError(f"no evidence for {date}: {shown}/ does not exist")
    result = provenance.verify(bundle)
    ended = ExitCode.OK if result.ok else ExitCode.STEP_FAILED
    if output.as_json:
        document = {"date": date, "evidence": f"{shown}/", **_verification_document(result)}
        _print_json(document, redactor or Redactor.from_environ(os.environ))
        return ended
    _print_verification(f"{shown}/", result, paint_for(sys.stdout, output))
    return ended


def _print_verification(shown: str, result: Verification, paint: Paint) -> None:
    """Each finding on a line, then the bundle's verdict."""
    from shipyard.evidence import MANIFEST_NAME

    for finding in result.findings:
        print(paint.bad(f"{finding.kind}:") + finding.line[len(finding.kind) + 1 :])
    for note in result.notes:
        print(f"note: {note}")
    if result.ok:
        checked = counted(result.seals, "seal")
        if result.attestations:
            checked += f", {counted(result.attestations, 'attestation')}"
        print(f"evidence: {shown} {paint.good('matches')} {MANIFEST_NAME} and {checked}")
    else:
        print(f"evidence: {paint.bad(counted(len(result.findings), 'difference'))} in {shown}")


def verify_bundles(
    under: Path,
    *,
    output: Output | None = None,
    redactor: Redactor | None = None,
    environ: Mapping[str, str] = os.environ,
) -> ExitCode:
    """Verify every bundle found under `under` (each `artifacts/<agent>/<date>/` holding a
    manifest, as the evidence of CI runners downloads), a line each; in GitHub Actions, one
    step summary of every step those bundles ran. Exit 1 when any bundle differs."""
    from shipyard import evidence, gha, provenance
    from shipyard.console import Output, paint_for

    output = output or Output()
    redactor = redactor or Redactor.from_environ(environ)
    if not under.is_dir():
        raise UsageError(f"--bundles: {under} is not a folder")
    manifests = sorted(under.glob(f"**/{evidence.ARTIFACTS_DIR}/*/*/{evidence.MANIFEST_NAME}"))
    if not manifests:
        where = f"{under}/**/{evidence.ARTIFACTS_DIR}/<agent>/<date>/{evidence.MANIFEST_NAME}"
        raise UsageError(f"--bundles: no evidence bundle under {under} (looked for {where})")
    checked = []
    for manifest in manifests:
        day = manifest.parent
        bundle = evidence.Bundle(day.parent.parent.parent, day.parent.name, day.name)
        checked.append((day.relative_to(under).as_posix(), bundle, provenance.verify(bundle)))
    ok = all(result.ok for _, _, result in checked)
    gha.append_summary(environ, redactor.mask(gha.evidence_summary(under, checked)))
    if output.as_json:
        documents = [
            {"evidence": f"{shown}/", **_verification_document(result)}
            for shown, _, result in checked
        ]
        _print_json({"ok": ok, "bundles": documents}, redactor)
    else:
        paint = paint_for(sys.stdout, output)
        for shown, _, result in checked:
            _print_verification(f"{shown}/", result, paint)
        verdict = paint.good("all match") if ok else paint.bad("not all match")
        print(f"{counted(len(checked), 'bundle')}: {verdict}")
    return ExitCode.OK if ok else ExitCode.STEP_FAILED


def _verification_document(result: Verification) -> dict[str, object]:
    findings = [
        {"kind": f.kind, "path": f.path, "notes": list(f.notes), "breaks_seal": f.breaks_seal}
        for f in result.findings
    ]
    return {
        "ok": result.ok,
        "seals": result.seals,
        "attestations": result.attestations,
        "findings": findings,
        "notes": list(result.notes),
    }


def _print_json(document: object, redactor: Redactor) -> None:
    """`--json` of a command without a run: one document on stdout, masked as a whole."""
    from shipyard.report import json_text

    print(json_text(document, redactor), flush=True)


def print_json_error(error: ShipyardError, environ: Mapping[str, str] = os.environ) -> None:
    """`--json` of a command refused before anything ran: its verdict, as the only document."""
    _print_json(verdict_for(error).to_json(), Redactor.from_environ(environ))


def redactor_for(config: Config | None, environ: Mapping[str, str] = os.environ) -> Redactor:
    """What a command without a run masks: the config's `secrets:` and `env:` values, and
    every variable whose name says it is a secret."""
    if config is None:
        return Redactor.from_environ(environ)
    return Redactor.from_environ(environ, config.secrets, also=config.env_mappings())


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


def _reporter(config: Config, output: Output | None) -> ReporterFor:
    """A deploy's, rollback's or smoke's reporters (one job), given the run's redactor."""
    from shipyard import reporters
    from shipyard.operation import BUILD

    build = config.steps.get("build")
    shown = {BUILD: build.run} if build else {}  # for -v

    return lambda redactor: reporters.for_run(
        jobs=1, redactor=redactor, output=output, commands=shown
    )


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
    output: Output | None = None,
) -> Verdict:
    """Build, smoke the artifact, deploy, smoke the environment; roll back when that fails."""
    from shipyard import deploy as deployment

    return deployment.deploy(
        config,
        env_name,
        command=command_line(),
        reporter=_reporter(config, output),
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
    lock_wait: str = "",
    force: bool = False,
    output: Output | None = None,
) -> Verdict:
    from shipyard.rollback import rollback as roll_back

    finished = roll_back(
        config,
        env,
        command=command_line(),
        reporter=_reporter(config, output),
        to=to or None,
        dry_run=dry_run,
        lock_wait=parse_wait(lock_wait),
        force=force,
    )
    return finished.verdict


def smoke(
    config: Config, *, env: str = "", artifact: str = "", output: Output | None = None
) -> Verdict:
    from shipyard import deploy as deployment

    reporter = _reporter(config, output)
    return deployment.smoke(
        config, env, command=command_line(), reporter=reporter, archive=artifact
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


def releases(config: Config, *, env: str = "", output: Output | None = None) -> ExitCode:
    from shipyard import targets
    from shipyard.console import Output, paint_for

    output = output or Output()
    environment = config.environment(env)
    found = targets.create(config, environment).releases(targets.Call())
    if output.as_json:
        _print_json([release.to_json() for release in found], redactor_for(config))
        return ExitCode.OK
    paint = paint_for(sys.stdout, output)
    print(f"{'release':<8} {'status':<11} {'created':<25} {'git':<8} {'artifact sha256':<12}")
    for release in reversed(found):
        marker = "  <- current" if release.current else ""
        shown = paint.status(f"{release.status.value:<11}")
        print(
            f"{release.version:<8} {shown} {release.created_at or '-':<25} "
            f"{(release.git_sha or '-')[:8]:<8} {(release.artifact_sha256 or '-')[:12]:<12}{marker}"
        )
    if not found:
        print(f"(no releases of {environment.name} yet)")
    return ExitCode.OK


def status(config: Config, *, env: str = "", output: Output | None = None) -> ExitCode:
    """What serves the environment now; exit 1 when nothing healthy does, or when what serves
    is not the release `current` names."""
    from shipyard import targets
    from shipyard.console import Output, paint_for

    output = output or Output()
    environment = config.environment(env)
    state = targets.create(config, environment).status(targets.Call())
    mismatch = bool(state.serving and state.current != state.serving)
    paint = paint_for(sys.stdout, output)
    if output.as_json:
        _print_json({**state.to_json(), "mismatch": mismatch}, redactor_for(config))
    else:
        uptime = f"{state.uptime:.0f}s" if state.uptime is not None else "-"
        print(
            f"{state.environment} ({state.target}): current {state.current or 'none'}, "
            f"serving {state.serving or 'nothing'}, pid {state.pid or '-'}, uptime {uptime}"
        )
        health = {True: paint.good("ok"), False: paint.bad("FAILING"), None: "-"}[state.healthy]
        print(f"health: {health} {state.detail}")
        if state.proxy is not None:
            print(f"proxy: {state.proxy}")
        for line in state.servers:
            print(f"server: {line}")
        for line in state.writes:
            print(f"written: {line}")
        if mismatch:
            print(
                f"{paint.bad('MISMATCH:')} {state.serving} serves but current is"
                f" {state.current or 'none'};"
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


def doctor(explicit: str = "", *, env: str = "", output: Output | None = None) -> ExitCode:
    """Check what a run needs before anything runs: Python, tools, config, each target."""
    from shipyard.console import Output, Verbosity

    output = output or Output()
    from shipyard.redact import engine_description, engine_problem

    checks: list[tuple[bool, str]] = [
        (sys.version_info >= (3, 10), f"python {sys.version.split()[0]} (3.10 or newer)"),
        (engine_problem() is None, f"masking engine: {engine_description()}"),
        (
            shutil.which("git") is not None,
            "git on PATH (git sha of releases, scan of tracked files)",
        ),
    ]
    try:
        config = config_module.load(explicit or None)
    except ConfigError as error:
        checks.append((False, error.message))
        return _report(checks, output, redactor_for(None))
    steps, environments = len(config.steps), len(config.environments)
    summary = f"{counted(steps, 'step')}, {counted(environments, 'environment')}"
    checks.append((True, f"config {config.path} ({summary})"))
    verbose = output.verbosity is Verbosity.VERBOSE
    checks += [_tool_check(step, verbose=verbose) for step in config.steps.values()]
    names = [env] if env else list(config.environments)
    checks += [_environment_check(config, name) for name in names]
    return _report(checks, output, redactor_for(config))


def _tool_check(step: Step, *, verbose: bool = False) -> tuple[bool, str]:
    """The step's program is found; `verbose` says where."""
    words = shlex.split(step.run, comments=True) if step.run.strip() else [""]
    program = next((w for w in words if "=" not in w), "")
    where = shutil.which(program, path=tools_path(os.environ)) if program else None
    found = not program or "/" in program or where is not None
    place = f" ({where})" if verbose and where else ""
    said = f"found{place}" if found else "not found on PATH"
    return found, f"step {step.name}: `{program}` {said}"


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
    mode = getattr(target, "mode", None)
    said = f" ({mode})" if mode else ""
    return True, f"environment {name} ({environment.target}): ready to deploy{said}"


def _report(checks: list[tuple[bool, str]], output: Output, redactor: Redactor) -> ExitCode:
    """Each check (with `-q` only the failed ones) and the verdict; or all of it as JSON."""
    from shipyard.console import Verbosity, paint_for

    failed = sum(not ok for ok, _ in checks)
    if output.as_json:
        shown = [{"ok": ok, "detail": line} for ok, line in checks]
        _print_json({"ready": not failed, "problems": failed, "checks": shown}, redactor)
        return ExitCode.USAGE if failed else ExitCode.OK
    paint = paint_for(sys.stdout, output)
    for ok, line in checks:
        if not (ok and output.verbosity is Verbosity.QUIET):
            print(f"{paint.good('ok  ') if ok else paint.bad('FAIL')} {line}")
    problems = paint.bad(counted(failed, "problem"))
    print(f"doctor: {problems}" if failed else f"doctor: {paint.good('ready')}")
    return ExitCode.USAGE if failed else ExitCode.OK
