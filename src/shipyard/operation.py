"""What a deploy and a rollback share: one `Operation` (its run, its target, what it records),
the `Flow` of its steps, the step titles, and the put-back of a failed change.

Each step runs with the heartbeat and lands in the run's evidence. Every way an operation ends
is a `Verdict` (see errors.py); `Operation.conclude` is its one exit: it writes the audit entry
and hands the verdict to `pipeline.finish`, with the record's section, the typed `DeployRecord`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from shipyard import audit, feedback, targets
from shipyard.config import Config, Environment, Step
from shipyard.errors import ConfigError, ExitCode, Outcome, StepFailed, Verdict, interrupted
from shipyard.lock import LOCK_DIR, DeployLock
from shipyard.pipeline import Run, finish, guarded, step_context, steps_verdict, stop_on_signals
from shipyard.records import DeployRecord
from shipyard.report import Reporter, ReporterFor
from shipyard.runner import StepResult, StepStatus, WriteFailed, run_action, run_step
from shipyard.smoke import probe
from shipyard.targets import Call, Made, Say, Target, TargetFailed, state_dir

BUILD = "Build application"
SMOKE = "Smoke"
DEPLOY = "Deploy"
ROLLBACK = "Rollback"
RESTORE = "Restore"
ROLLBACK_DRY_RUN = "Rollback (dry-run)"
DEPLOY_DRY_RUN = "Deploy (dry-run)"


def smoke_title(environment: Environment) -> str:
    return f"Smoke {environment.name}"


def build_step(config: Config) -> Step:
    """The `build` step, titled as a deploy runs it; a deploy needs its `artifact:` glob."""
    build = config.steps.get("build")
    if build is None or not build.artifact:
        raise ConfigError(
            f"{config.path.name}: a deploy needs a 'build' step with an 'artifact:' glob"
        )
    return replace(build, name=BUILD)


class Flow:
    """The steps of one run, in order: shell steps and Python steps alike."""

    def __init__(self, run: Run, reporter: Reporter) -> None:
        self.run = run
        self.reporter = reporter
        self.context = step_context(run, reporter)
        self.results: list[StepResult] = []
        self.write_failures: list[WriteFailed] = []
        self._actions: set[str] = set()  # the titles of the Python steps

    def shell(self, step: Step) -> StepResult:
        try:
            return self._record(run_step(step, self.context))
        except WriteFailed as failure:  # recorded, then the run ends with its one line
            self._record(failure.result)
            raise

    def action(self, title: str, description: str, action: Callable[[Say], None]) -> StepResult:
        """A Python step. When its log cannot be written it still ran to its end: its result is
        what the action did (so a deploy goes on to its smoke, or its restore), and the write
        failure is kept for the run's verdict (`write_failures`)."""
        self._actions.add(title)
        try:
            return self._record(run_action(title, description, action, self.context))
        except WriteFailed as failure:
            self.write_failures.append(failure)
            did = failure.result.attempts[0] if failure.result.attempts else None
            if did is None:
                return self._record(failure.result)
            return self._record(replace(failure.result, status=did.status, exit_code=did.exit_code))

    def _record(self, result: StepResult) -> StepResult:
        self.results.append(result)
        self.reporter.step_finished(result)
        return result

    def conclude(
        self,
        body: Callable[[], Verdict],
        *,
        addendum: Callable[[], feedback.Addendum | None] = lambda: None,
    ) -> Verdict:
        """Run `body` (the run's steps, ending in its verdict) under the run's signals, then
        write how it ended, whatever ended it (`pipeline.finish`); `addendum`, asked once the
        steps are over, is what the feedback entry adds."""
        with stop_on_signals(self.run.stop):  # also while the evidence is written
            try:
                verdict = guarded(self.run, body)
            finally:
                self.reporter.close()
            return finish(
                self.run, self.results, verdict, reporter=self.reporter, addendum=addendum()
            )

    @property
    def interrupted(self) -> bool:
        return self.run.stop.is_set()

    def verdict(self) -> Verdict:
        """The verdict of the steps run so far: ok, or how the first failing one ended. A
        Python step refused by Shipyard (exit 2: a hostile or oversized artifact) is refused;
        a shell step's own exit 2 is an ordinary failure."""
        verdict = steps_verdict(self.results, self.run.stop)
        refused = [
            r
            for r in self.results
            if r.name in self._actions and r.status is StepStatus.FAILED and r.exit_code == 2
        ]
        if verdict.outcome is Outcome.FAILED and refused:
            return Verdict(
                Outcome.REFUSED, ExitCode.USAGE, f"{refused[0].name}: {refused[0].error}"
            )
        return verdict


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
            self.record.url = site_url(self._target.smoke_check().url)
        return self._target

    def call(self, say: Say | None = None) -> Call:
        """A target call of this run: said into the step's log (or nowhere), stopped by the
        run's signals, each retried attempt in the heartbeat."""
        observe = _heartbeat_observer(self.run)
        return (
            Call(say, self.run.stop, observe) if say else Call(stop=self.run.stop, observe=observe)
        )

    def made(self, version: str | None) -> None:
        self.record.made_release(version)

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

    def put_back(
        self,
        title: str,
        release: str | None,
        undo: Callable[[Call], Made | None],
        *,
        restored: Verdict,
        down: str,
        untouched: bool = False,
    ) -> Verdict:
        """Put `release` back after a failed deploy or rollback (`undo` returns None when there
        is nothing to put back). Not interruptible: after ^C too it runs to its end.
        `untouched`: nothing was changed, and this only checks that `release` still serves."""

        def put_back(say: Say) -> None:
            call = self.call(say).unstoppable()
            try:
                back = undo(call)
            except TargetFailed as failed:
                self.made(failed.made.release)
                raise
            if back is None:
                raise StepFailed(
                    f"no earlier complete release of {self.environment.name} to restore"
                )
            self.made(back.release)
            check_serving(self.target, back, call)

        done = self.flow.action(title, f"restore {release or 'nothing'}", put_back).ok
        self.record.serving = release if done else None
        if self.flow.interrupted:
            kept = f"{release} still serves, untouched" if untouched else f"{release} restored"
            after = kept if done else "nothing could be restored"
            return interrupted(self.run.stop.signum, after)
        if done:
            return restored
        reason = f"{down}: {self.environment.name} is down"
        return Verdict(Outcome.DOWN, ExitCode.DEPLOY_NOT_RESTORED, reason)

    def conclude(self, section: str, body: Callable[[], Verdict]) -> Finished:
        """Run `body` and record how it ended, whatever way that was: the one exit of every
        deploy and rollback. `section`: "deploy" or "rollback" (also the audit event; a dry
        run changes nothing and is not audited)."""
        with stop_on_signals(self.run.stop):
            try:
                verdict = _with_write_failures(guarded(self.run, body), self.flow, section)
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


def _with_write_failures(verdict: Verdict, flow: Flow, section: str) -> Verdict:
    """A log that could not be written makes an ok run a failure, saying that the deploy (or
    rollback) itself succeeded; any other ending keeps its verdict, with the line added."""
    if not flow.write_failures:
        return verdict
    line = flow.write_failures[0].message
    if verdict.ok:
        return Verdict(Outcome.FAILED, ExitCode.STEP_FAILED, f"{line} (the {section} succeeded)")
    if line in verdict.reason:
        return verdict
    return Verdict(verdict.outcome, verdict.exit_code, f"{verdict.reason} ({line})")


def check_serving(target: Target, made: Made, call: Call) -> None:
    """The target's own verdict on what was made first, then the HTTP smoke of its URL."""
    target.health(made, call)
    result = probe(target.smoke_check(), say=call.say, stop=call.stop, alive=target.alive)
    call.say(result.reason)
    if not result.ok:
        raise StepFailed(result.reason)


def _heartbeat_observer(run: Run) -> targets.Observer:
    """Each attempt of a target's retried call gets start/end lines in the heartbeat."""

    def observe(what: str, attempt: int, outcome: str, exit_code: int | None) -> None:
        if outcome == "start":
            run.heartbeat.emit(what, "start", pid=os.getpid(), attempt=attempt, cmd=what)
        else:
            run.heartbeat.emit(what, "end", attempt=attempt, status=outcome, exit=exit_code)

    return observe


def site_url(url: str) -> str:
    """The root of the site `url` is on: `https://app.fly.dev/healthz` -> `https://app.fly.dev/`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"
