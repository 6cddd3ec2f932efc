"""Deploy and rollback: the same orchestration for every target.

    deploy:   lock → Build application → Smoke (the artifact) → Deploy → Smoke <env>
              → Rollback (only when Deploy or Smoke <env> failed)
    rollback: plan → lock → Rollback → Smoke <env> → (Restore when that smoke failed)

Each step runs with the heartbeat and lands in the run's evidence; the run record gets a
`deploy` (or `rollback`) section with the environment, target and releases.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shipyard import artifact, audit, server, targets
from shipyard.config import Config, Environment, Step
from shipyard.console import PlainConsole, SilentConsole, make_console
from shipyard.errors import ExitCode, LockHeld, ShipyardError, StepFailed, UsageError
from shipyard.lock import DeployLock
from shipyard.pipeline import Run, finish, step_context, stop_on_signals
from shipyard.process import tools_path
from shipyard.runner import StepResult, run_action, run_step
from shipyard.smoke import SmokeCheck, probe
from shipyard.targets import DeployPlan, RollbackPlan, Target, state_dir

BUILD = "Build application"
SMOKE = "Smoke"
DEPLOY = "Deploy"
ROLLBACK = "Rollback"
RESTORE = "Restore"
ROLLBACK_DRY_RUN = "Rollback (dry-run)"
ARTIFACT_SERVER_GRACE = 5.0

Say = Callable[[str], None]


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

    def __init__(self, run: Run, console: PlainConsole) -> None:
        self.run = run
        self.console = console
        self.context = step_context(run, console)
        self.results: list[StepResult] = []

    def shell(self, step: Step) -> StepResult:
        return self._record(run_step(step, self.context))

    def action(self, title: str, description: str, action: Callable[[Say], None]) -> StepResult:
        return self._record(run_action(title, description, action, self.context))

    def _record(self, result: StepResult) -> StepResult:
        self.results.append(result)
        self.console.step_finished(result)
        return result

    @property
    def interrupted(self) -> bool:
        return self.run.stop.is_set()


@dataclass
class Operation:
    """One deploy or rollback of one environment: what it works on and what it records."""

    config: Config
    environment: Environment
    target: Target
    flow: Flow
    record: dict[str, Any]

    @classmethod
    def start(
        cls, config: Config, environment: Environment, *, command: str, quiet: bool = False
    ) -> Operation:
        target = targets.create(config, environment)  # preflight: before anything is written
        run = Run.for_config(config, command=command, extra_environ=environment.env)
        target.observe, target.stop = _heartbeat_observer(run), run.stop
        record = {
            "environment": environment.name,
            "target": environment.target,
            "release": None,
            "previous": None,
            "rolled_back_to": None,
        }
        console = (
            SilentConsole(sys.stdout, live_output=False)
            if quiet
            else make_console(jobs=1, redactor=run.redactor)
        )
        return cls(config, environment, target, Flow(run, console), record)

    @property
    def run(self) -> Run:
        return self.flow.run

    @property
    def state_dir(self) -> Path:
        return state_dir(self.config, self.environment)

    def locked(self, lock_wait: float, body: Callable[[], int]) -> int:
        """`body()` under the environment's lock; exit 5 naming the holder when it is taken."""
        lock = DeployLock(
            self.state_dir,
            command=self.run.redactor.mask(self.run.command),
            audit_path=self.state_dir / "audit.jsonl",
            warn=lambda line: self.flow.console.write(f"warning: {line}\n"),
        )
        try:
            lock.acquire(wait=lock_wait)
        except LockHeld as held:
            print(held.message, file=sys.stderr)
            self.record["refused"] = held.message
            return int(ExitCode.LOCKED)
        try:
            return self.guarded(body)
        finally:
            lock.release()

    def guarded(self, body: Callable[[], int]) -> int:
        """`body()`, with an expected failure (no artifact, flyctl refusing) reported in one
        line and recorded, so that the run's evidence is still written."""
        try:
            return body()
        except ShipyardError as error:
            print(error.message, file=sys.stderr)
            self.record["error"] = error.message
            return int(error.exit_code)

    def finish(self, event: str, code: int, *, show: bool = True) -> int:
        if event != "dry-run":
            path = self.state_dir / "audit.jsonl"
            fields = {**self.record, "run_id": self.run.run_id, "exit_code": code}
            audit.append(path, event, redactor=self.run.redactor, **fields)
        section = "rollback" if event in ("rollback", "dry-run") else "deploy"
        console = self.flow.console if show else None
        return finish(
            self.run,
            self.flow.results,
            exit_code=code,
            extra={section: self.record},
            console=console,
        )

    def code_after_restore(self, restored: bool) -> int:
        if self.flow.interrupted:
            return int(ExitCode.INTERRUPTED)
        return int(ExitCode.DEPLOY_RESTORED if restored else ExitCode.DEPLOY_NOT_RESTORED)


def _heartbeat_observer(run: Run) -> targets.Observer:
    """Each attempt of a target's retried call gets start/end lines in the heartbeat."""

    def observe(what: str, attempt: int, outcome: str, exit_code: int | None) -> None:
        if outcome == "start":
            run.heartbeat.emit(what, "start", pid=os.getpid(), attempt=attempt, cmd=what)
        else:
            run.heartbeat.emit(what, "end", attempt=attempt, status=outcome, exit=exit_code)

    return observe


# --- deploy --------------------------------------------------------------------------------


def deploy(
    config: Config,
    env_name: str,
    *,
    command: str,
    lock_wait: float = 0.0,
    build: bool = True,
    runs: list[Run] | None = None,
) -> int:
    """`build=False` deploys the newest artifact already built (CI's separate build step).
    `runs`, when given, receives this call's Run (for `inv contract`)."""
    environment = pick_environment(config, env_name)
    build_step = _build_step(config)
    op = Operation.start(config, environment, command=command)
    if runs is not None:
        runs.append(op.run)
    with stop_on_signals(op.run.stop):
        try:
            code = op.locked(lock_wait, lambda: _deploy_steps(op, build_step, build=build))
        finally:
            op.flow.console.close()
        return op.finish("deploy", code)


def _build_step(config: Config) -> Step:
    build = config.steps.get("build")
    if build is None or not build.artifact:
        raise UsageError(
            f"{config.path.name}: a deploy needs a 'build' step with an 'artifact:' glob"
        )
    return replace(build, name=BUILD)


def _deploy_steps(op: Operation, build_step: Step, *, build: bool) -> int:
    flow = op.flow
    op.target.preflight_deploy()  # e.g. the port is free: fail before building anything
    if build and not flow.shell(build_step).ok:
        return _stopped_or(flow, ExitCode.STEP_FAILED)
    archive = artifact.find_artifact(op.config.root, build_step.artifact or "")
    relative = archive.relative_to(op.config.root).as_posix()
    if op.environment.start:
        smoked = flow.action(
            SMOKE,
            f"start {relative} on a free 127.0.0.1 port and probe it",
            lambda say: smoke_artifact(op.environment, archive, say, flow.run.stop),
        )
        if not smoked.ok:
            return _stopped_or(flow, ExitCode.STEP_FAILED)
    else:
        flow.console.write(
            f"(no artifact smoke: environments.{op.environment.name} has no start)\n"
        )
    plan = op.target.plan_deploy(relative)
    op.record.update(
        planned=plan.release,
        previous=plan.previous,
        artifact=relative,
        artifact_sha256=artifact.file_sha256(archive),
    )
    if _deploy_and_smoke(op, plan):
        op.record["outcome"] = "deployed"
        return int(ExitCode.OK)
    return _roll_back_deploy(op, plan)


def _deploy_and_smoke(op: Operation, plan: DeployPlan) -> bool:
    flow, target = op.flow, op.target

    deployed = flow.action(DEPLOY, "; ".join(plan.actions), lambda say: target.deploy(plan, say))
    op.record["release"] = target.created  # what exists now, whether the deploy passed or not
    if not deployed.ok or flow.interrupted:
        return False

    def smoke_and_commit(say: Say) -> None:
        check_serving(target, say, flow.run.stop)
        target.commit(plan, say)

    return flow.action(smoke_title(op.environment), target.smoke_check().url, smoke_and_commit).ok


def _roll_back_deploy(op: Operation, plan: DeployPlan) -> int:
    """The new release failed where it serves: back to the previous one (not interruptible)."""
    op.target.stop = threading.Event()  # after ^C too, the restore runs to its end

    def restore(say: Say) -> None:
        if not op.target.restore(plan, say):
            raise StepFailed(f"no earlier complete release of {op.environment.name} to restore")
        check_serving(op.target, say, threading.Event())

    restored = op.flow.action(ROLLBACK, f"restore {plan.previous or 'nothing'}", restore).ok
    op.record.update(
        outcome="rolled back" if restored else "down",
        rolled_back_to=plan.previous if restored else None,
    )
    return op.code_after_restore(restored)


def _stopped_or(flow: Flow, code: ExitCode) -> int:
    return int(ExitCode.INTERRUPTED if flow.interrupted else code)


def check_serving(target: Target, say: Say, stop: threading.Event) -> None:
    """The target's own verdict first, then the HTTP smoke of the environment's URL."""
    target.health(say)
    result = probe(target.smoke_check(), say=say, stop=stop, alive=target.alive)
    say(result.reason)
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


def smoke(config: Config, env_name: str, *, command: str, archive: str = "") -> int:
    """`inv smoke`: the built artifact on a free port, probed; exit 1 with the server log tail."""
    environment = pick_environment(config, env_name)
    path = (
        Path(archive)
        if archive
        else artifact.find_artifact(config.root, _build_step(config).artifact or "")
    )
    run = Run.for_config(config, command=command, extra_environ=environment.env)
    flow = Flow(run, make_console(jobs=1, redactor=run.redactor))
    with stop_on_signals(run.stop):
        try:
            flow.action(
                SMOKE,
                f"start {path.name} on a free 127.0.0.1 port and probe it",
                lambda say: smoke_artifact(environment, path, say, run.stop),
            )
        finally:
            flow.console.close()
        return finish(run, flow.results, console=flow.console)


# --- rollback ------------------------------------------------------------------------------


def rollback(
    config: Config,
    env_name: str,
    *,
    command: str,
    to: str | None = None,
    dry_run: bool = False,
    as_json: bool = False,
    lock_wait: float = 0.0,
    runs: list[Run] | None = None,
) -> int:
    environment = pick_environment(config, env_name)
    if to is not None and not (to.startswith("v") and to[1:].isdigit()):
        raise UsageError(f"--to {to}: expected a release like v3")
    op = Operation.start(config, environment, command=command, quiet=as_json)
    if runs is not None:
        runs.append(op.run)
    op.record["dry_run"] = dry_run
    plans: list[RollbackPlan] = []
    with stop_on_signals(op.run.stop):
        try:
            if dry_run:
                code = op.guarded(lambda: _dry_run(op, to, plans))
            else:
                code = op.locked(lock_wait, lambda: _rollback_steps(op, to, plans))
        finally:
            op.flow.console.close()
        if plans:
            op.record.update(plan=plans[0].to_json(), previous=plans[0].current)
        code = op.finish("dry-run" if dry_run else "rollback", code, show=not as_json)
    if as_json and plans:
        print(
            json.dumps({**plans[0].to_json(), "exit_code": code, "run_id": op.run.run_id}, indent=2)
        )
    return code


def _plan_code(plan: RollbackPlan, to: str | None) -> int:
    if plan.possible:
        return int(ExitCode.OK)
    if plan.to is None:
        return int(ExitCode.USAGE if to is not None else ExitCode.NOTHING_TO_ROLL_BACK)
    return int(ExitCode.STEP_FAILED)  # a candidate, but its files are not intact


def _dry_run(op: Operation, to: str | None, plans: list[RollbackPlan]) -> int:
    plans.append(op.target.plan_rollback(to))
    plan = plans[0]

    def show(say: Say) -> None:
        for line in plan.lines():
            say(line)
        if plan.to is not None and not plan.possible:  # a target, but it fails its checks
            raise StepFailed("the rollback cannot be carried out")
        say("dry run: nothing was changed")

    op.flow.action(ROLLBACK_DRY_RUN, "plan the rollback; change nothing", show)
    return _plan_code(plan, to)


def _rollback_steps(op: Operation, to: str | None, plans: list[RollbackPlan]) -> int:
    plans.append(op.target.plan_rollback(to))  # planned under the lock: nobody moves it now
    plan, target = plans[0], op.target
    if not plan.possible:
        for line in plan.lines():
            op.flow.console.write(line + "\n")
        return _plan_code(plan, to)

    def rollback_and_smoke(say: Say) -> None:
        for line in plan.lines():
            say(line)
        target.rollback(plan, say)
        check_serving(target, say, op.run.stop)
        target.commit_rollback(plan, say)

    if op.flow.action(ROLLBACK, f"{plan.current} -> {plan.to}", rollback_and_smoke).ok:
        op.record.update(outcome="rolled back", rolled_back_to=plan.to)
        return int(ExitCode.OK)

    target.stop = threading.Event()  # after ^C too, the restore runs to its end

    def restore(say: Say) -> None:
        if not target.undo_rollback(plan, say):
            raise StepFailed("nothing to restore")
        check_serving(target, say, threading.Event())

    restored = op.flow.action(RESTORE, f"restore {plan.current}", restore).ok
    op.record["outcome"] = "restored" if restored else "down"
    return op.code_after_restore(restored)
