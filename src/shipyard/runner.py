"""Run one configured step: its own process group, masked streaming output, heartbeat,
timeout, interruption and opt-in retries."""

from __future__ import annotations

import codecs
import os
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Protocol

from tenacity import (
    Retrying,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from shipyard.config import Step, log_name
from shipyard.errors import ExitCode, ShipyardError
from shipyard.heartbeat import Heartbeat, iso_timestamp
from shipyard.process import exit_status, spawn_shell, terminate_group
from shipyard.redact import Redactor, StreamMasker

_POLL_SECONDS = 0.05
_READ_SIZE = 65536
_PUMP_JOIN_SECONDS = 5.0


class StepStatus(str, Enum):
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Attempt:
    number: int
    status: StepStatus
    exit_code: int | None
    started: str
    duration: float
    out_bytes: int


@dataclass(frozen=True)
class StepResult:
    name: str
    status: StepStatus
    exit_code: int | None
    started: str | None
    duration: float
    attempts: tuple[Attempt, ...]
    log_path: Path
    error: str | None = None  # a Python step's failure, in one line (already masked)

    @property
    def ok(self) -> bool:
        return self.status is StepStatus.OK


class _Output(Protocol):
    out_bytes: int


class StepListener(Protocol):
    """Where a step's progress is shown (the console); called from worker threads."""

    def step_started(self, step: str, attempt: int) -> None: ...
    def step_output(self, step: str, text: str) -> None: ...
    def step_beat(self, step: str, elapsed: float, quiet: float) -> None: ...


@dataclass(frozen=True)
class StepContext:
    root: Path
    environ: Mapping[str, str]
    redactor: Redactor
    heartbeat: Heartbeat
    log_dir: Path
    heartbeat_interval: float
    stop: threading.Event
    listener: StepListener


def step_log_path(log_dir: Path, step_name: str) -> Path:
    return log_dir / f"{log_name(step_name)}.log"


def run_step(step: Step, ctx: StepContext) -> StepResult:
    """Run `step` (retrying failures when it opts in) and return what happened."""
    log_path = step_log_path(ctx.log_dir, step.name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    attempts: list[Attempt] = []
    with log_path.open("w", encoding="utf-8", errors="replace") as log:

        def attempt_once() -> Attempt:
            attempts.append(_run_attempt(step, ctx, log, len(attempts) + 1))
            return attempts[-1]

        _retrying(step, ctx)(attempt_once)
    last = attempts[-1]
    return StepResult(
        name=step.name,
        status=last.status,
        exit_code=last.exit_code,
        started=attempts[0].started,
        duration=sum(a.duration for a in attempts),
        attempts=tuple(attempts),
        log_path=log_path,
    )


def skipped_result(step_name: str, log_dir: Path) -> StepResult:
    return StepResult(
        step_name, StepStatus.SKIPPED, None, None, 0.0, (), step_log_path(log_dir, step_name)
    )


def _retrying(step: Step, ctx: StepContext) -> Retrying:
    def worth_retrying(attempt: Attempt) -> bool:
        return attempt.status is StepStatus.FAILED and not ctx.stop.is_set()

    def pause(seconds: float) -> None:  # tenacity's sleep, ended early by a stop
        ctx.stop.wait(seconds)

    return Retrying(
        stop=stop_after_attempt(step.retries + 1),
        wait=wait_exponential(multiplier=0.5, max=10) + wait_random(0, 0.5),
        retry=retry_if_result(worth_retrying),
        sleep=pause,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )


def _run_attempt(step: Step, ctx: StepContext, log: IO[str], number: int) -> Attempt:
    started, began = iso_timestamp(), time.monotonic()
    attempt_field = {"attempt": number} if step.retries else {}
    if step.retries:
        log.write(f"--- attempt {number} of {step.retries + 1} ---\n")
    process = spawn_shell(step.run, cwd=_step_cwd(step, ctx), env=_step_env(step, ctx))
    ctx.heartbeat.emit(step.name, "start", pid=process.pid, **attempt_field, cmd=step.run)
    ctx.listener.step_started(step.name, number)
    pump = OutputPump(process.stdout, ctx.redactor.stream(), _tee(log, step.name, ctx.listener))
    pump.start()
    status = _supervise(process, step, ctx, pump, began)
    terminate_group(process, grace=step.grace)  # whatever the step left running goes too
    pump.join(_PUMP_JOIN_SECONDS)
    if not pump.is_alive() and process.stdout is not None:
        process.stdout.close()
    exit_code = _exit_code(status, process.wait())
    elapsed = time.monotonic() - began
    end_fields = {"status": status.value, "exit": exit_code, "elapsed": elapsed}
    ctx.heartbeat.emit(step.name, "end", **attempt_field, **end_fields)
    return Attempt(number, status, exit_code, started, elapsed, pump.out_bytes)


def _supervise(
    process: subprocess.Popen[bytes], step: Step, ctx: StepContext, pump: OutputPump, began: float
) -> StepStatus:
    """Wait for the step while beating; stop its group on timeout or interruption."""
    deadline = began + step.timeout if step.timeout else None
    next_beat = began + ctx.heartbeat_interval
    while not _exited_within(process, _POLL_SECONDS):
        now = time.monotonic()
        if ctx.stop.is_set() or (deadline is not None and now >= deadline):
            terminate_group(process, grace=step.grace)
            return StepStatus.INTERRUPTED if ctx.stop.is_set() else StepStatus.TIMEOUT
        if now >= next_beat:
            _beat(step.name, ctx, pump, now - began, now - (pump.last_output or began))
            next_beat += ctx.heartbeat_interval
    return StepStatus.OK if process.returncode == 0 else StepStatus.FAILED


def _exited_within(process: subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait for the process itself rather than sleeping a fixed poll: Popen's wait checks
    again after 0.5 ms, 1 ms, 2 ms..., so a quick step is seen to end within a millisecond
    or two instead of up to a whole poll period later (per-step overhead, bench/)."""
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def _beat(name: str, ctx: StepContext, output: _Output, elapsed: float, quiet: float) -> None:
    fields = {"elapsed": elapsed, "quiet": quiet, "out_bytes": output.out_bytes}
    ctx.heartbeat.emit(name, "beat", **fields)
    ctx.listener.step_beat(name, elapsed, quiet)


def _exit_code(status: StepStatus, returncode: int) -> int:
    if status is StepStatus.TIMEOUT:
        return int(ExitCode.TIMEOUT)
    if status is StepStatus.INTERRUPTED:
        return int(ExitCode.INTERRUPTED)
    return exit_status(returncode)


def _step_cwd(step: Step, ctx: StepContext) -> Path:
    return ctx.root / step.cwd if step.cwd else ctx.root


def _step_env(step: Step, ctx: StepContext) -> dict[str, str]:
    return {**ctx.environ, **step.env, "SHIPYARD_STEP": step.name}


def _tee(log: IO[str], step_name: str, listener: StepListener) -> Callable[[str], None]:
    def write(text: str) -> None:
        log.write(text)
        log.flush()
        listener.step_output(step_name, text)

    return write


class OutputPump(threading.Thread):
    """Reads a pipe to its end, masking on the way; memory stays flat whatever is printed."""

    def __init__(self, pipe: IO[bytes] | None, masker: StreamMasker, sink: Callable[[str], None]):
        super().__init__(daemon=True)
        self._fd = pipe.fileno() if pipe is not None else -1
        self._masker = masker
        self._sink = sink
        self.out_bytes = 0
        self.last_output: float | None = None

    def run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while chunk := os.read(self._fd, _READ_SIZE):
            self.out_bytes += len(chunk)
            self.last_output = time.monotonic()
            self._emit(self._masker.feed(decoder.decode(chunk)))
        self._emit(self._masker.feed(decoder.decode(b"", final=True)) + self._masker.flush())

    def _emit(self, text: str) -> None:
        if text:
            self._sink(text)


Action = Callable[[Callable[[str], None]], None]


def run_action(name: str, description: str, action: Action, ctx: StepContext) -> StepResult:
    """Run a Python step (smoke, deploy, rollback) with the same heartbeat, log and result as a
    shell step. `action(say)` reports through `say`; an exception is its failure."""
    log_path = step_log_path(ctx.log_dir, name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started, began = iso_timestamp(), time.monotonic()
    ctx.heartbeat.emit(name, "start", pid=os.getpid(), cmd=description)
    ctx.listener.step_started(name, 1)
    with log_path.open("w", encoding="utf-8", errors="replace") as log:
        say = _Sayer(log, name, ctx)
        with _beating(name, ctx, say, began):
            status, exit_code, error = _perform(action, say)
    if status is StepStatus.FAILED and ctx.stop.is_set():
        status, exit_code = StepStatus.INTERRUPTED, int(ExitCode.INTERRUPTED)
    elapsed = time.monotonic() - began
    ctx.heartbeat.emit(name, "end", status=status.value, exit=exit_code, elapsed=elapsed)
    attempt = Attempt(1, status, exit_code, started, elapsed, say.out_bytes)
    masked = ctx.redactor.mask(error) if error else None
    return StepResult(name, status, exit_code, started, elapsed, (attempt,), log_path, masked)


def _perform(action: Action, say: _Sayer) -> tuple[StepStatus, int, str | None]:
    try:
        action(say)
    except ShipyardError as error:  # its own exit code: a refused plan is exit 2, not 1
        say(f"error: {error.message}")
        return StepStatus.FAILED, int(error.exit_code), error.message
    except Exception as error:  # a bug must not leave the run without evidence: record it
        say(traceback.format_exc().rstrip())
        return StepStatus.FAILED, int(ExitCode.STEP_FAILED), f"{type(error).__name__}: {error}"
    return StepStatus.OK, int(ExitCode.OK), None


class _Sayer:
    """`say(line)`: masked into the step log and the console, counted for the heartbeat."""

    def __init__(self, log: IO[str], step_name: str, ctx: StepContext) -> None:
        self._write = _tee(log, step_name, ctx.listener)
        self._redactor = ctx.redactor
        self.out_bytes = 0
        self.last_output: float | None = None

    def __call__(self, line: str) -> None:
        text = self._redactor.mask(line.rstrip("\n") + "\n")
        self.out_bytes += len(text.encode("utf-8", "replace"))
        self.last_output = time.monotonic()
        self._write(text)


@contextmanager
def _beating(name: str, ctx: StepContext, say: _Sayer, began: float) -> Iterator[None]:
    """Beat every interval from a side thread while a Python step runs in this one."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(ctx.heartbeat_interval):
            now = time.monotonic()
            _beat(name, ctx, say, now - began, now - (say.last_output or began))

    thread = threading.Thread(target=beat, name=f"beat-{name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
