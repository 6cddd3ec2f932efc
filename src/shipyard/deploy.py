"""Deploy and rollback: the same orchestration for every target.

    deploy:   preflight → lock → Build application → Smoke (the artifact) → Deploy
              → Smoke <env> → Rollback (only when Deploy or Smoke <env> failed)
    rollback: preflight → lock → plan → Rollback → Smoke <env> → (Restore when that failed)
    --dry-run of either: preflight → plan, shown as one step; nothing changes

Each step runs with the heartbeat and lands in the run's evidence. Every way a run ends is a
`Verdict` (see errors.py), decided here and written by `pipeline.finish`; the run record gets
a `deploy` (or `rollback`) section: the typed `DeployRecord`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from shipyard import artifact, audit, git, server, targets
from shipyard.config import Config, Environment, Step
from shipyard.errors import (
    OK,
    ConfigError,
    ExitCode,
    NothingToRollBack,
    Outcome,
    PreflightError,
    ShipyardError,
    StepFailed,
    UsageError,
    Verdict,
    verdict_for,
)
from shipyard.lock import LOCK_DIR, DeployLock
from shipyard.pipeline import Run, finish, guarded, step_context, steps_verdict, stop_on_signals
from shipyard.process import tools_path
from shipyard.records import DeployRecord
from shipyard.report import Reporter, ReporterFor
from shipyard.runner import StepResult, run_action, run_step
from shipyard.smoke import SmokeCheck, probe
from shipyard.targets import (
    Call,
    DeployPlan,
    Made,
    RollbackPlan,
    Say,
    Target,
    TargetFailed,
    state_dir,
)

BUILD = "Build application"
SMOKE = "Smoke"
DEPLOY = "Deploy"
ROLLBACK = "Rollback"
RESTORE = "Restore"
ROLLBACK_DRY_RUN = "Rollback (dry-run)"
DEPLOY_DRY_RUN = "Deploy (dry-run)"
ARTIFACT_SERVER_GRACE = 5.0
MIN_FREE_BYTES = 100 * 2**20  # room a deploy needs in .shipyard/ (a release, logs, state)


def smoke_title(environment: Environment) -> str:
    return f"Smoke {environment.name}"


def pick_environment(config: Config, name: str = "") -> Environment:
    """The named environment; without a name, `staging` or the only one there is."""
    if name:
        if name not in config.environments:
            known = ", ".join(config.environments) or "none configured"
            raise UsageError(f"--env {name}: no such environment in {config.path.name} ({known})")
        return config.environments[name]
    if "staging" in config.environments:
        return config.environments["staging"]
    if len(config.environments) == 1:
        return next(iter(config.environments.values()))
    raise UsageError(
        f"which environment? pass --env (configured: {', '.join(config.environments) or 'none'})"
    )


class Flow:
    """The steps of one run, in order: shell steps and Python steps alike."""

    def __init__(self, run: Run, reporter: Reporter) -> None:
        self.run = run
        self.reporter = reporter
        self.context = step_context(run, reporter)
        self.results: list[StepResult] = []

    def shell(self, step: Step) -> StepResult:
        return self._record(run_step(step, self.context))

    def action(self, title: str, description: str, action: Callable[[Say], None]) -> StepResult:
        return self._record(run_action(title, description, action, self.context))

    def _record(self, result: StepResult) -> StepResult:
        self.results.append(result)
        self.reporter.step_finished(result)
        return result

    @property
    def interrupted(self) -> bool:
        return self.run.stop.is_set()


@dataclass(frozen=True)
class Finished:
    """How a deploy or rollback ended, its run (id, evidence) and what it recorded."""

    verdict: Verdict
    run: Run
    record: DeployRecord

    @property
    def exit_code(self) -> int:
        return int(self.verdict.exit_code)


@dataclass
class Operation:
    """One deploy or rollback of one environment: its run, its target and what it records."""

    config: Config
    environment: Environment
    flow: Flow
    record: DeployRecord
    _target: Target | None = None

    @classmethod
    def start(
        cls, config: Config, environment: Environment, *, command: str, reporter: ReporterFor
    ) -> Operation:
        run = Run.for_config(config, command=command, extra_environ=environment.env)
        record = DeployRecord(environment.name, environment.target)
        return cls(config, environment, Flow(run, reporter(run.redactor)), record)

    @property
    def run(self) -> Run:
        return self.flow.run

    @property
    def state_dir(self) -> Path:
        return state_dir(self.config, self.environment)

    @property
    def target(self) -> Target:
        """The environment's target, created (and preflighted) on first use, inside the run."""
        if self._target is None:
            self._target = targets.create(self.config, self.environment)
        return self._target

    def call(self, say: Say | None = None) -> Call:
        """A target call of this run: said into the step's log (or nowhere), stopped by the
        run's signals, each retried attempt in the heartbeat."""
        observe = _heartbeat_observer(self.run)
        return (
            Call(say, self.run.stop, observe) if say else Call(stop=self.run.stop, observe=observe)
        )

    def locked(self, lock_wait: float, body: Callable[[], Verdict]) -> Verdict:
        """`body()` under the environment's lock; LockHeld (exit 5) names the holder."""
        lock = DeployLock(
            self.state_dir,
            command=self.run.redactor.mask(self.run.command),
            audit_path=self.state_dir / "audit.jsonl",
            warn=lambda line: self.flow.reporter.write(f"warning: {line}\n"),
        )
        lock.acquire(wait=lock_wait)
        where = (self.state_dir / LOCK_DIR).relative_to(self.config.root).as_posix()
        self.flow.reporter.write(f"lock: took {where}\n")
        try:
            return body()
        finally:
            lock.release()

    def conclude(self, section: str, body: Callable[[], Verdict]) -> Finished:
        """Run `body` and record how it ended, whatever way that was: the one exit of every
        deploy and rollback. `section`: "deploy" or "rollback" (also the audit event; a dry
        run changes nothing and is not audited)."""
        with stop_on_signals(self.run.stop):
            try:
                verdict = guarded(self.run, body)
            finally:
                self.flow.reporter.close()
            if not self.record.dry_run:
                self._audit(section, verdict)
            finish(
                self.run,
                self.flow.results,
                verdict,
                reporter=self.flow.reporter,
                section=(section, self.record),
            )
            return Finished(verdict, self.run, self.record)

    def _audit(self, event: str, verdict: Verdict) -> None:
        """The audit entry, from the same verdict; a failed write is a warning, not a lost run."""
        fields = {**self.record.to_json(), **verdict.to_json(), "run_id": self.run.run_id}
        try:
            audit.append(
                self.state_dir / "audit.jsonl", event, redactor=self.run.redactor, **fields
            )
        except OSError as error:
            self.flow.reporter.write(f"warning: the audit entry was not written: {error}\n")

    def made(self, version: str | None) -> None:
        self.record.made_release(version)


def _heartbeat_observer(run: Run) -> targets.Observer:
    """Each attempt of a target's retried call gets start/end lines in the heartbeat."""

    def observe(what: str, attempt: int, outcome: str, exit_code: int | None) -> None:
        if outcome == "start":
            run.heartbeat.emit(what, "start", pid=os.getpid(), attempt=attempt, cmd=what)
        else:
            run.heartbeat.emit(what, "end", attempt=attempt, status=outcome, exit=exit_code)

    return observe


def _failed_step_verdict(flow: Flow) -> Verdict:
    return steps_verdict(flow.results, interrupted=flow.interrupted)


# --- deploy --------------------------------------------------------------------------------


def deploy(
    config: Config,
    env_name: str,
    *,
    command: str,
    reporter: ReporterFor,
    lock_wait: float = 0.0,
    build: bool = True,
    dry_run: bool = False,
    allow_dirty: bool = False,
) -> Finished:
    """`build=False` deploys the newest artifact already built (CI's separate build step).
    `reporter` makes the run's reporter, given the run's redactor."""
    environment = pick_environment(config, env_name)
    op = Operation.start(config, environment, command=command, reporter=reporter)
    op.record.dry_run = dry_run
    if dry_run:
        return op.conclude(
            "deploy", lambda: _dry_run_deploy(op, build=build, allow_dirty=allow_dirty)
        )

    def body() -> Verdict:
        build_step = _build_step(config)
        _preflight_deploy(op, allow_dirty=allow_dirty)  # before the lock and before building
        return op.locked(lock_wait, lambda: _deploy_steps(op, build_step, build=build))

    return op.conclude("deploy", body)


def _build_step(config: Config) -> Step:
    build = config.steps.get("build")
    if build is None or not build.artifact:
        raise ConfigError(
            f"{config.path.name}: a deploy needs a 'build' step with an 'artifact:' glob"
        )
    return replace(build, name=BUILD)


def deploy_preflight(
    config: Config, environment: Environment, target: Target, *, allow_dirty: bool
) -> tuple[git.TreeState, list[str]]:
    """Every check a deploy makes before it builds anything (`inv doctor` makes the same):
    the target's own (a free port), room in `.shipyard/`, and the tree's uncommitted changes."""
    problems: list[str] = []
    try:
        target.preflight_deploy()
    except PreflightError as error:
        problems.append(error.message)
    folder = state_dir(config, environment)
    free = free_bytes(folder)
    if free is not None and free < MIN_FREE_BYTES:
        problems.append(
            f"only {free // 2**20} MiB free on the disk of {folder} (a deploy needs at least"
            f" {MIN_FREE_BYTES // 2**20} MiB): free some space"
        )
    tree = git.tree_state(config.root, ignore=(config.path,))
    if tree.dirty and not allow_dirty:
        problems.append(
            "the working tree has uncommitted changes to tracked files"
            f" ({tree.describe_changes()}); commit or stash them, or pass --allow-dirty to"
            " deploy them (recorded as dirty)"
        )
    return tree, problems


def free_bytes(folder: Path) -> int | None:
    """Free bytes on the disk that holds `folder` (or its nearest existing parent)."""
    for candidate in (folder, *folder.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def _preflight_deploy(op: Operation, *, allow_dirty: bool) -> None:
    """The deploy's preflight, recorded: a refusal names every problem in one line."""
    tree, problems = deploy_preflight(op.config, op.environment, op.target, allow_dirty=allow_dirty)
    op.record.git_sha = tree.sha
    op.record.dirty, op.record.diff_sha256 = tree.dirty, tree.diff_sha256
    op.record.config_sha256 = artifact.file_sha256(op.config.path)
    if problems:
        raise PreflightError("; ".join(problems))


def _deploy_steps(op: Operation, build_step: Step, *, build: bool) -> Verdict:
    flow = op.flow
    if build and not flow.shell(build_step).ok:
        return _failed_step_verdict(flow)
    archive = artifact.find_artifact(op.config.root, build_step.artifact or "")
    relative = archive.relative_to(op.config.root).as_posix()
    if op.environment.start:
        smoked = flow.action(
            SMOKE,
            f"start {relative} on a free 127.0.0.1 port and probe it",
            lambda say: smoke_artifact(op.environment, archive, say, flow.run.stop),
        )
        if not smoked.ok:
            return _failed_step_verdict(flow)
    else:
        flow.reporter.write(
            f"(no artifact smoke: environments.{op.environment.name} has no start)\n"
        )
    plan = _with_tree(op, op.target.plan_deploy(relative, op.call()))
    op.record.planned, op.record.previous = plan.release, plan.previous
    op.record.artifact, op.record.artifact_sha256 = relative, artifact.file_sha256(archive)
    failed, made = _deploy_and_smoke(op, plan)
    if failed is None:
        op.record.serving = op.record.release
        return OK
    return _roll_back_deploy(op, plan, failed, made)


def _with_tree(op: Operation, plan: DeployPlan) -> DeployPlan:
    """The plan, carrying what the release must record about the tree it was built from."""
    record = op.record
    return replace(plan, git_sha=record.git_sha, dirty=record.dirty, diff_sha256=record.diff_sha256)


def _deploy_and_smoke(op: Operation, plan: DeployPlan) -> tuple[str | None, Made]:
    """(None, made) when the new release serves and passed its smoke; else the step that
    failed, and what the deploy made all the same."""
    flow, target = op.flow, op.target
    made = Made()

    def deploy_release(say: Say) -> None:
        nonlocal made
        try:
            made = target.deploy(plan, op.call(say))
        except TargetFailed as failed:
            made = failed.made
            raise
        finally:
            op.record.release = made.release  # what exists now, whether it passed or not
            op.made(made.release)

    if not flow.action(DEPLOY, "; ".join(plan.actions), deploy_release).ok or flow.interrupted:
        return DEPLOY, made

    def smoke_and_commit(say: Say) -> None:
        check_serving(target, made, op.call(say))
        target.commit(plan, made, op.call(say))

    title = smoke_title(op.environment)
    passed = flow.action(title, target.smoke_check().url, smoke_and_commit).ok
    return (None if passed else title), made


def _roll_back_deploy(op: Operation, plan: DeployPlan, failed: str, made: Made) -> Verdict:
    """The new release failed where it serves: back to the previous one."""
    new = op.record.release or plan.release
    verdict = _put_back(
        op,
        ROLLBACK,
        plan.previous,
        lambda call: op.target.restore(plan, made, call),
        restored=Verdict(
            Outcome.ROLLED_BACK,
            ExitCode.DEPLOY_RESTORED,
            f"{failed} failed for {new}; rolled back to {plan.previous}",
        ),
        down=f"{failed} failed for {new} and no earlier release could be restored",
    )
    op.record.rolled_back_to = op.record.serving
    return verdict


def _put_back(
    op: Operation,
    title: str,
    release: str | None,
    undo: Callable[[Call], Made | None],
    *,
    restored: Verdict,
    down: str,
) -> Verdict:
    """Put `release` back after a failed deploy or rollback (`undo` returns None when there is
    nothing to put back). Not interruptible: after ^C too it runs to its end."""

    def put_back(say: Say) -> None:
        call = op.call(say).unstoppable()
        try:
            back = undo(call)
        except TargetFailed as failed:
            op.made(failed.made.release)
            raise
        if back is None:
            raise StepFailed(f"no earlier complete release of {op.environment.name} to restore")
        op.made(back.release)
        check_serving(op.target, back, call)

    done = op.flow.action(title, f"restore {release or 'nothing'}", put_back).ok
    op.record.serving = release if done else None
    if op.flow.interrupted:
        after = f"{release} restored" if done else "nothing could be restored"
        return Verdict(Outcome.INTERRUPTED, ExitCode.INTERRUPTED, f"interrupted; {after}")
    if done:
        return restored
    reason = f"{down}: {op.environment.name} is down"
    return Verdict(Outcome.DOWN, ExitCode.DEPLOY_NOT_RESTORED, reason)


def _dry_run_deploy(op: Operation, *, build: bool, allow_dirty: bool) -> Verdict:
    """The deploy's plan, with the preflight's verdict; nothing is built or changed."""
    build_step = _build_step(op.config)
    refusal: list[ShipyardError] = []

    def show(say: Say) -> None:
        try:
            _preflight_deploy(op, allow_dirty=allow_dirty)
            tree = f"git {(op.record.git_sha or 'none')[:12]}"
            if op.record.dirty:
                tree += f", dirty (git diff sha256 {(op.record.diff_sha256 or '?')[:12]})"
            say(f"check: preflight passes ({tree})")
        except PreflightError as error:
            refusal.append(error)
            say(f"problem: {error.message}")
        for line in deploy_plan_lines(op, build_step, build=build):
            say(line)
        say("dry run: nothing was changed")
        if refusal:
            raise refusal[0]

    op.flow.action(DEPLOY_DRY_RUN, "plan the deploy; change nothing", show)
    return verdict_for(refusal[0]) if refusal else _failed_step_verdict(op.flow)


def deploy_plan_lines(op: Operation, build_step: Step, *, build: bool) -> list[str]:
    """The deploy's steps in the order a real run takes them."""
    pattern = build_step.artifact or ""
    if build:
        source = f"the artifact step 1 builds (newest match of {pattern})"
        steps = [f"build: `{build_step.run}` (step {BUILD})"]
    else:
        found = artifact.find_artifact(op.config.root, pattern)
        source = found.relative_to(op.config.root).as_posix()
        steps = [f"no build (--no-build): deploy {source}"]
    environment = op.environment
    if environment.start:
        smoke = environment.smoke
        steps.append(
            f"smoke the artifact: `{environment.start}` on a free 127.0.0.1 port, GET"
            f" {smoke.path} expects {smoke.expect_status} within {smoke.timeout:g}s (step {SMOKE})"
        )
    plan = op.target.plan_deploy(source, op.call())
    head = f"deploy {environment.name} ({environment.target}): {plan.release}"
    head += f", replacing {plan.previous}" if plan.previous else ", the first release"
    steps += list(plan.actions)  # steps Deploy and Smoke <env>
    back = (
        f"stop {plan.release}, mark it failed and bring back {plan.previous} (smoked again);"
        f" exit 3, or 4 if {plan.previous} cannot be brought back"
        if plan.previous
        else f"stop {plan.release} and mark it failed; nothing to bring back: exit 4"
    )
    return [
        head,
        *(f"{number}. {step}" for number, step in enumerate(steps, 1)),
        f"on failure of step {DEPLOY} or {smoke_title(environment)} (step {ROLLBACK}): {back}",
    ]


def check_serving(target: Target, made: Made, call: Call) -> None:
    """The target's own verdict on what was made first, then the HTTP smoke of its URL."""
    target.health(made, call)
    result = probe(target.smoke_check(), say=call.say, stop=call.stop, alive=target.alive)
    call.say(result.reason)
    if not result.ok:
        raise StepFailed(result.reason)


def smoke_artifact(
    environment: Environment, archive: Path, say: Say, stop: threading.Event
) -> None:
    """Start the artifact on a free port, without the environment's variables, and probe it."""
    if not environment.start:
        raise UsageError(
            f"environments.{environment.name}: no 'start' command to smoke the artifact with"
        )
    with tempfile.TemporaryDirectory(prefix="shipyard-smoke-") as folder:
        release_dir = Path(folder) / "release"
        artifact.unpack(archive, release_dir)
        port = server.free_port()
        command = server.render(
            environment.start, port=port, release="artifact", release_dir=release_dir
        )
        log_path = Path(folder) / "server.log"
        say(f"starting `{command}` from {archive.name}")
        pid = server.start(
            command,
            cwd=release_dir,
            env=_artifact_env(port),
            log_path=log_path,
            die_with_parent=True,
        )
        try:
            smoke = environment.smoke
            url = f"http://127.0.0.1:{port}{smoke.path}"
            check = SmokeCheck(url, smoke.expect_status, smoke.contains, smoke.timeout)
            result = probe(check, say=say, stop=stop, alive=lambda: server.alive(pid))
        finally:
            server.stop(pid, grace=ARTIFACT_SERVER_GRACE)
        say(result.reason)
        if not result.ok:
            say(f"server log (last lines):\n{server.log_tail(log_path)}")
            raise StepFailed(f"artifact smoke failed: {result.reason}")


def _artifact_env(port: int) -> dict[str, str]:
    environ = os.environ
    return {
        **environ,
        "PATH": tools_path(environ),
        "PORT": str(port),
        "SHIPYARD_RELEASE": "artifact",
    }


def smoke(
    config: Config, env_name: str, *, command: str, reporter: ReporterFor, archive: str = ""
) -> Verdict:
    """`inv smoke`: the built artifact on a free port, probed; exit 1 with the server log tail."""
    environment = pick_environment(config, env_name)
    run = Run.for_config(config, command=command, extra_environ=environment.env)
    flow = Flow(run, reporter(run.redactor))

    def body() -> Verdict:
        path = (
            Path(archive)
            if archive
            else artifact.find_artifact(config.root, _build_step(config).artifact or "")
        )
        flow.action(
            SMOKE,
            f"start {path.name} on a free 127.0.0.1 port and probe it",
            lambda say: smoke_artifact(environment, path, say, run.stop),
        )
        return _failed_step_verdict(flow)

    with stop_on_signals(run.stop):
        try:
            verdict = guarded(run, body)
        finally:
            flow.reporter.close()
        return finish(run, flow.results, verdict, reporter=flow.reporter)


# --- rollback ------------------------------------------------------------------------------


def rollback(
    config: Config,
    env_name: str,
    *,
    command: str,
    reporter: ReporterFor,
    to: str | None = None,
    dry_run: bool = False,
    lock_wait: float = 0.0,
) -> Finished:
    """The caller prints the plan with `--json` (it is `record.plan`)."""
    environment = pick_environment(config, env_name)
    if to is not None and not (to.startswith("v") and to[1:].isdigit()):
        raise UsageError(f"--to {to}: expected a release like v3")
    op = Operation.start(config, environment, command=command, reporter=reporter)
    op.record.dry_run = dry_run

    def body() -> Verdict:
        op.target  # noqa: B018 - the target's preflight, before the lock
        if dry_run:
            return _dry_run(op, to)
        return op.locked(lock_wait, lambda: _rollback_steps(op, to))

    return op.conclude("rollback", body)


def _plan(op: Operation, to: str | None) -> RollbackPlan:
    plan = op.target.plan_rollback(to, op.call())
    op.record.plan, op.record.previous = plan.to_json(), plan.current
    return plan


def plan_error(plan: RollbackPlan, to: str | None) -> ShipyardError | None:
    """Why the plan cannot be carried out, as the error a real rollback would end with."""
    if plan.possible:
        return None
    if plan.to is None:
        return UsageError(plan.reason) if to is not None else NothingToRollBack(plan.reason)
    return StepFailed(f"the rollback to {plan.to} cannot be carried out: {plan.problems[0]}")


def _dry_run(op: Operation, to: str | None) -> Verdict:
    plan = _plan(op, to)
    error = plan_error(plan, to)

    def show(say: Say) -> None:
        for line in plan.lines():
            say(line)
        say("dry run: nothing was changed")
        if error is not None:
            raise error

    op.flow.action(ROLLBACK_DRY_RUN, "plan the rollback; change nothing", show)
    return verdict_for(error) if error is not None else _failed_step_verdict(op.flow)


def _rollback_steps(op: Operation, to: str | None) -> Verdict:
    plan = _plan(op, to)  # planned under the lock: nobody moves it now
    error = plan_error(plan, to)
    if error is not None:
        for line in plan.lines():
            op.flow.reporter.write(line + "\n")
        raise error
    target = op.target
    made = Made()

    def rollback_and_smoke(say: Say) -> None:
        nonlocal made
        for line in plan.lines():
            say(line)
        call = op.call(say)
        try:
            made = target.rollback(plan, call)
        except TargetFailed as failed:
            made = failed.made
            raise
        finally:
            op.record.release = made.release
            op.made(made.release)
        check_serving(target, made, call)
        target.commit_rollback(plan, made, call)

    if op.flow.action(ROLLBACK, f"{plan.current} -> {plan.to}", rollback_and_smoke).ok:
        op.record.rolled_back_to = plan.to
        op.record.serving = made.release or plan.to
        return OK
    return _undo_rollback(op, plan, made)


def _undo_rollback(op: Operation, plan: RollbackPlan, made: Made) -> Verdict:
    return _put_back(
        op,
        RESTORE,
        plan.current,
        lambda call: op.target.undo_rollback(plan, made, call),
        restored=Verdict(
            Outcome.RESTORED,
            ExitCode.DEPLOY_RESTORED,
            f"the rollback to {plan.to} failed its checks; {plan.current} serves again",
        ),
        down=f"the rollback to {plan.to} failed and {plan.current} could not be restored",
    )
