"""One Shipyard run: steps in parallel or in order, then the run record, manifest and feedback.

Core functions, no CLI: invoke tasks and nox sessions are thin layers over `execute`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shipyard import __version__, evidence, feedback
from shipyard.audit import current_user
from shipyard.config import Config, Step
from shipyard.errors import (
    OK,
    CannotWrite,
    ExitCode,
    Outcome,
    ShipyardError,
    Verdict,
    interrupted,
    verdict_for,
)
from shipyard.evidence import Bundle
from shipyard.heartbeat import Heartbeat, iso_timestamp
from shipyard.process import tools_path
from shipyard.records import DeployRecord
from shipyard.redact import Redactor, engine_description
from shipyard.report import Reporter, RunEnd
from shipyard.runner import (
    StepContext,
    StepResult,
    StepStatus,
    WriteFailed,
    run_step,
    skipped_result,
)

INTERNAL_ERROR_LOG = "shipyard-internal-error.log"


class Stop(threading.Event):
    """A run's stop: set by a signal (`signum` says which; see stop_on_signals) or by the code
    (`signum` None). Steps and target calls wait on it like any event."""

    def __init__(self) -> None:
        super().__init__()
        self.signum: int | None = None

    def by_signal(self, signum: int) -> None:
        if not self.is_set():
            self.signum = signum
        self.set()


@dataclass
class Run:
    """Everything one invocation shares: its id, evidence bundle, redactor and stop signal."""

    root: Path
    agent: str
    heartbeat_interval: float
    command: str
    redactor: Redactor
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    stop: Stop = field(default_factory=Stop)
    bundle: Bundle = field(init=False)
    run_id: str = field(init=False)
    heartbeat: Heartbeat = field(init=False)

    def __post_init__(self) -> None:
        self.bundle = Bundle.for_moment(self.root, self.agent, self.started)
        try:
            self.run_id = self._claim_run_id()
        except OSError as error:  # a read-only or full `artifacts/`: refused before any step
            raise CannotWrite.of(error.filename or self.bundle.dir, error, self.root) from None
        self.heartbeat = Heartbeat(
            self.bundle.heartbeat_path, agent=self.agent, run_id=self.run_id, redactor=self.redactor
        )

    def _claim_run_id(self) -> str:
        """A fresh id whose log folder this run creates, so concurrent runs never share one."""
        while True:
            run_id = evidence.new_run_id(self.started)
            log_dir = self.bundle.log_dir(run_id)
            log_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                log_dir.mkdir()
            except FileExistsError:
                continue
            return run_id

    @classmethod
    def for_config(
        cls,
        config: Config,
        *,
        command: str,
        environ: Mapping[str, str] = os.environ,
        extra_environ: Mapping[str, str] | None = None,
    ) -> Run:
        """`extra_environ`: an environment's `env:`; listed or secret-named values are masked."""
        return cls(
            root=config.root,
            agent=config.agent,
            heartbeat_interval=config.heartbeat_interval,
            command=command,
            redactor=Redactor.from_environ(
                {**environ, **(extra_environ or {})}, config.secrets, also=config.env_mappings()
            ),
        )

    def step_environ(self, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
        """The environment of every step: the caller's, with this Python's tools first on PATH."""
        return {
            **environ,
            "PATH": tools_path(environ),
            "PYTHONUNBUFFERED": environ.get("PYTHONUNBUFFERED", "1"),
            "SHIPYARD_AGENT": self.agent,
            "SHIPYARD_RUN_ID": self.run_id,
            "SHIPYARD_EVIDENCE_DIR": str(self.bundle.dir),
        }


def execute(
    run: Run,
    steps: Sequence[Step],
    *,
    reporter: Reporter,
    jobs: int = 1,
    fail_fast: bool = False,
) -> Verdict:
    """Run `steps`, write the evidence (also when interrupted) and return the verdict."""
    results: list[StepResult] = []

    def body() -> Verdict:
        run_steps(run, steps, jobs=jobs, fail_fast=fail_fast, reporter=reporter, into=results)
        return steps_verdict(results, run.stop)

    with stop_on_signals(run.stop):  # also while the evidence is written: a second ^C waits
        try:
            verdict = guarded(run, body)
        finally:
            reporter.close()
        return finish(run, results, verdict, reporter=reporter)


def guarded(run: Run, body: Callable[[], Verdict]) -> Verdict:
    """The one place where an ending becomes a verdict: a Shipyard error is what it says it is;
    anything else is a bug, recorded as a failure with its traceback in the run's logs."""
    try:
        return body()
    except ShipyardError as error:
        return verdict_for(error)
    except Exception as error:  # a bug must not leave the run without its record
        verdict = verdict_for(error)
        log = run.bundle.log_dir(run.run_id) / INTERNAL_ERROR_LOG
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(run.redactor.mask(traceback.format_exc()), encoding="utf-8")
        except OSError:
            print(run.redactor.mask(traceback.format_exc()), file=sys.stderr)
            return verdict
        where = log.relative_to(run.root).as_posix()
        return Verdict(
            verdict.outcome, verdict.exit_code, f"{verdict.reason} (traceback in {where})"
        )


def step_context(run: Run, reporter: Reporter) -> StepContext:
    return StepContext(
        root=run.root,
        environ=run.step_environ(),
        redactor=run.redactor,
        heartbeat=run.heartbeat,
        log_dir=run.bundle.log_dir(run.run_id),
        heartbeat_interval=run.heartbeat_interval,
        stop=run.stop,
        listener=reporter,
    )


def run_steps(
    run: Run,
    steps: Sequence[Step],
    *,
    jobs: int,
    fail_fast: bool,
    reporter: Reporter,
    into: list[StepResult] | None = None,
) -> list[StepResult]:
    """Run `steps`; their results, in order, also go into `into` (kept if something raises).
    A log that cannot be written halts the steps not yet started, and its WriteFailed is
    raised once every started step has ended."""
    context = step_context(run, reporter)
    halt = threading.Event()
    write_failures: list[WriteFailed] = []

    def one(step: Step) -> StepResult:
        if halt.is_set() or run.stop.is_set():
            run.heartbeat.emit(step.name, "end", status=StepStatus.SKIPPED.value)
            result = skipped_result(step.name, context.log_dir)
        else:
            try:
                result = run_step(step, context)
            except WriteFailed as failure:  # later steps would fail the same way
                write_failures.append(failure)
                halt.set()
                result = failure.result
        if fail_fast and not result.ok:
            halt.set()
        reporter.step_finished(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="step") as pool:
        results = list(pool.map(one, steps))
    if into is not None:
        into.extend(results)
    if write_failures:
        raise write_failures[0]
    return results


def steps_verdict(results: Sequence[StepResult], stop: Stop | None = None) -> Verdict:
    """The steps' verdict, most severe first: interrupted (by the signal that set `stop`), timed
    out, failed, ok; the reason names the steps (and a Python step's own error)."""
    statuses = {result.status for result in results}
    stopped = stop is not None and stop.is_set()
    if stopped or StepStatus.INTERRUPTED in statuses:
        return interrupted(stop.signum if stop is not None else None)
    if StepStatus.TIMEOUT in statuses:
        reason = f"timed out: {_named(results, StepStatus.TIMEOUT)}"
        return Verdict(Outcome.TIMED_OUT, ExitCode.TIMEOUT, reason)
    if StepStatus.FAILED in statuses:
        reason = f"failed: {_named(results, StepStatus.FAILED)}"
        return Verdict(Outcome.FAILED, ExitCode.STEP_FAILED, reason)
    return OK


def _named(results: Sequence[StepResult], status: StepStatus) -> str:
    return "; ".join(
        f"{r.name} (exit {r.exit_code}{': ' + r.error if r.error else ''})"
        for r in results
        if r.status is status
    )


def finish(
    run: Run,
    results: Sequence[StepResult],
    verdict: Verdict,
    *,
    reporter: Reporter | None = None,
    section: tuple[str, DeployRecord] | None = None,
    with_feedback: bool = True,
    addendum: feedback.Addendum | None = None,
) -> Verdict:
    """Write everything that says how the run ended, all from `verdict`: the run record, the
    seal and manifest, the feedback entry, then the reporter's end (the console's last line,
    in Actions the summary). `section` is a deploy or rollback's record, e.g. ("deploy", r);
    `addendum`, what the command adds to its feedback entry (`Failing run: <url>`)."""
    sha = git_sha(run.root)
    record = run_record(run, results, verdict=verdict, git_sha=sha, section=section)
    where = run.bundle.dir.relative_to(run.root).as_posix()
    recorded = True
    try:
        record_path = run.bundle.run_record_path(run.run_id)
        evidence.write_json(run.bundle, record_path, record, run.redactor)
        sealed = evidence.seal_run(run.bundle, run.run_id)
        warnings = [f"evidence changed after it was sealed: {line}" for line in sealed.broken]
        if sealed.broken:
            warnings.append(f"{where}/{evidence.MANIFEST_NAME} was not rewritten over it")
        if with_feedback:
            summary = feedback.RunSummary(
                run.run_id,
                run.command,
                record["started"],
                verdict,
                sha,
                results,
                sealed,
                warnings,
                addendum or feedback.Addendum(),
            )
            feedback.append(summary, run.bundle, run.redactor)
    except OSError as error:
        verdict = _unrecorded(run, record, verdict, error)
        warnings, recorded = [], False
    if reporter is not None:
        serving = section[1].serving if section else None
        named = (section[0], section[1].to_json()) if section else None
        end = RunEnd(
            run.command,
            run.run_id,
            where,
            verdict,
            results,
            serving,
            warnings,
            named,
            run.root,
            recorded,
        )
        reporter.run_finished(end)
    return verdict


def _unrecorded(run: Run, record: dict[str, Any], verdict: Verdict, error: OSError) -> Verdict:
    """The evidence could not be written: the record goes to stderr instead (masked), and a run
    that was ok exits 1, since nothing proves it; any other ending keeps its verdict."""
    failed = CannotWrite.of(error.filename or run.bundle.dir, error, run.root).message
    document = json.dumps({**record, "evidence_error": failed}, indent=2, ensure_ascii=False)
    print(run.redactor.mask(f"{failed}; the run record:\n{document}"), file=sys.stderr)
    if not verdict.ok:
        return Verdict(verdict.outcome, verdict.exit_code, f"{verdict.reason} ({failed})")
    return Verdict(Outcome.FAILED, ExitCode.STEP_FAILED, f"{failed} (the run itself was ok)")


def run_record(
    run: Run,
    results: Sequence[StepResult],
    *,
    verdict: Verdict,
    git_sha: str | None,
    section: tuple[str, DeployRecord] | None = None,
) -> dict[str, Any]:
    finished = datetime.now(timezone.utc)
    return {
        "run_id": run.run_id,
        "command": run.command,
        "agent": run.agent,
        "started": iso_timestamp(run.started),
        "finished": iso_timestamp(finished),
        "duration": round((finished - run.started).total_seconds(), 3),
        **verdict.to_json(),
        "git_sha": git_sha,
        "user": current_user(),
        "host": socket.gethostname(),
        "shipyard_version": __version__,
        "masking_engine": engine_description(),
        "steps": [_step_record(run, result) for result in results],
        **({section[0]: section[1].to_json()} if section else {}),
    }


def _step_record(run: Run, result: StepResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "status": result.status.value,
        "exit_code": result.exit_code,
        "started": result.started,
        "duration": round(result.duration, 3),
        "attempts": [
            {
                "number": a.number,
                "status": a.status.value,
                "exit_code": a.exit_code,
                "started": a.started,
                "duration": round(a.duration, 3),
                "out_bytes": a.out_bytes,
            }
            for a in result.attempts
        ],
        "log": result.log_path.relative_to(run.bundle.dir).as_posix() if result.attempts else None,
        "error": result.error,
    }


def git_sha(root: Path) -> str | None:
    """The commit checked out at `root`, or None outside a git work tree."""
    from shipyard.git import head_sha

    return head_sha(root)


@contextmanager
def stop_on_signals(stop: Stop) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP (the terminal closed) set `stop` (steps then end their
    process groups, and the run is recorded as interrupted, exit 128 + the first signal)
    instead of killing Shipyard. A SIGHUP already ignored (`nohup`) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = lambda signum, frame: stop.by_signal(signum)  # noqa: E731
    caught = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        caught.append(signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in caught}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
