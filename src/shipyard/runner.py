"""Run one configured step: its own session, masked streaming output, heartbeat, timeout,
interruption and opt-in retries. Whichever way it ends, its whole process tree goes with it
(process.ProcessTree); a log that cannot be written ends it with WriteFailed, never a hang."""

from __future__ import annotations

import fcntl
import os
import secrets
import select
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
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
from shipyard.errors import ExitCode, Outcome, ShipyardError, cannot_write, interrupted
from shipyard.heartbeat import Heartbeat, iso_timestamp, write_all
from shipyard.process import STEP_MARK, ProcessTree, become_subreaper, exit_status, spawn_shell
from shipyard.redact import Redactor, StreamMasker

_POLL_SECONDS = 0.05
_WATCH_SECONDS = 0.2  # how often a running step's process tree is looked at
_READ_SIZE = 1 << 20
# Which part of a step split across CI runners this run is (docs/configuration.md, `shards`).
SHARD, SHARDS = "SHIPYARD_SHARD", "SHIPYARD_SHARDS"
_PIPE_SIZE = 1 << 20  # Linux's default pipe-max-size: what an unprivileged process may ask
_PUMP_JOIN_SECONDS = 5.0  # only a listener that blocks can keep the pump that long
_DRAIN_SECONDS = 1.0  # once the tree is gone, what is left in the pipe is read for this long


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


class WriteFailed(ShipyardError):
    """A step's log or the heartbeat log could not be written (EFBIG: a file-size limit;
    ENOSPC, EIO, EROFS...). `message` is one line naming the file and the error.

    A shell step is stopped then, its whole process tree with it, and not retried. A Python
    step (run_action) runs to its end first, since a deploy or a restore must not be cut
    short by a full disk: its attempt says what the action itself did. `result` is the
    step's result, failed with exit 1 and `error` this line, for the caller to record before
    the error is mapped to a verdict (failed, exit 1)."""

    exit_code = ExitCode.STEP_FAILED
    outcome = Outcome.FAILED

    def __init__(self, message: str, result: StepResult) -> None:
        super().__init__(message)
        self.result = result


class _Output(Protocol):
    out_bytes: int


class StepListener(Protocol):
    """Where a step's progress is shown (the console); called from worker threads."""

    def step_started(self, step: str, attempt: int) -> None: ...
    def step_output(self, step: str, data: bytes) -> None: ...  # masked, as printed
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
    """Run `step` (retrying failures when it opts in) and return what happened.

    Raises WriteFailed, carrying the result, when the step's log or the heartbeat log cannot
    be written; a step is not started at all once the heartbeat log has failed."""
    become_subreaper()  # once is enough; cheap after that (see process.become_subreaper)
    log = StepLog(step_log_path(ctx.log_dir, step.name))
    attempts: list[Attempt] = []
    with log:

        def attempt_once() -> Attempt:
            attempts.append(_run_attempt(step, ctx, log, len(attempts) + 1))
            return attempts[-1]

        if ctx.heartbeat.failure is None and log.failure is None:  # else it is not started
            _retrying(step, ctx, log)(attempt_once)
    return _checked(_step_result(step.name, attempts, log.path), log, ctx)


def _step_result(name: str, attempts: list[Attempt], log_path: Path) -> StepResult:
    if not attempts:  # not started: its evidence could not be written (_checked raises)
        return StepResult(name, StepStatus.FAILED, None, None, 0.0, (), log_path)
    last = attempts[-1]
    return StepResult(
        name=name,
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


def _retrying(step: Step, ctx: StepContext, log: StepLog) -> Retrying:
    def worth_retrying(attempt: Attempt) -> bool:
        failed = attempt.status is StepStatus.FAILED
        return failed and not ctx.stop.is_set() and _write_failure(log, ctx) is None

    def pause(seconds: float) -> None:  # tenacity's sleep, ended early by a stop
        ctx.stop.wait(seconds)

    return Retrying(
        stop=stop_after_attempt(step.retries + 1),
        wait=wait_exponential(multiplier=0.5, max=10) + wait_random(0, 0.5),
        retry=retry_if_result(worth_retrying),
        sleep=pause,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )


def _run_attempt(step: Step, ctx: StepContext, log: StepLog, number: int) -> Attempt:
    started, began = iso_timestamp(), time.monotonic()
    attempt_field = {"attempt": number} if step.retries else {}
    if step.retries:
        log.write(f"--- attempt {number} of {step.retries + 1} ---\n".encode())
    running = _start(step, ctx, log)
    ctx.heartbeat.emit(step.name, "start", pid=running.process.pid, **attempt_field, cmd=step.run)
    ctx.listener.step_started(step.name, number)
    running.pump.start()
    status = _supervise(running, step, ctx, began)
    exit_code = _exit_code(status, _end(running, grace=step.grace), ctx.stop)
    if running.broken(ctx):
        status, exit_code = StepStatus.FAILED, int(ExitCode.STEP_FAILED)
    elapsed = time.monotonic() - began
    end_fields = {"status": status.value, "exit": exit_code, "elapsed": elapsed}
    ctx.heartbeat.emit(step.name, "end", **attempt_field, **end_fields)
    if running.pump.failure is not None:  # a listener's bug: the step is stopped, it is raised
        raise running.pump.failure
    return Attempt(number, status, exit_code, started, elapsed, running.pump.out_bytes)


@dataclass(frozen=True)
class _Running:
    """One attempt of a shell step: its shell, its process tree, its output and its log."""

    process: subprocess.Popen[bytes]
    tree: ProcessTree
    pump: OutputPump
    log: StepLog

    def broken(self, ctx: StepContext) -> bool:
        """A log could not be written, or the output could not be passed on: end the step."""
        failures = (self.log.failure, ctx.heartbeat.failure, self.pump.failure)
        return any(failure is not None for failure in failures)


def _start(step: Step, ctx: StepContext, log: StepLog) -> _Running:
    mark = secrets.token_hex(8)  # in the step's environment: its orphans carry it
    process = spawn_shell(step.run, cwd=_step_cwd(step, ctx), env=_step_env(step, ctx, mark))
    masker = StreamMasker(ctx.redactor)
    pump = OutputPump(process.stdout, masker, _tee(log, step.name, ctx.listener))
    return _Running(process, ProcessTree(process.pid, mark), pump, log)


def _supervise(running: _Running, step: Step, ctx: StepContext, began: float) -> StepStatus:
    """Wait for the step's shell while beating and watching its tree; return early on a
    timeout, an interruption or a failed write (the caller then ends the tree)."""
    deadline = began + step.timeout if step.timeout else None
    next_beat, next_watch = began + ctx.heartbeat_interval, began + _WATCH_SECONDS
    pump = running.pump
    while not _exited_within(running.process, _POLL_SECONDS):
        now = time.monotonic()
        if running.broken(ctx):
            return StepStatus.FAILED
        if ctx.stop.is_set() or (deadline is not None and now >= deadline):
            return StepStatus.INTERRUPTED if ctx.stop.is_set() else StepStatus.TIMEOUT
        if now >= next_watch:
            running.tree.watch()
            next_watch = now + _WATCH_SECONDS
        if now >= next_beat:
            _beat(step.name, ctx, pump, now - began, now - (pump.last_output or began))
            next_beat += ctx.heartbeat_interval
    return StepStatus.OK if running.process.returncode == 0 else StepStatus.FAILED


def _end(running: _Running, *, grace: float) -> int:
    """End whatever is left of the step, its whole tree (SIGTERM, SIGKILL after `grace`), take
    the rest of its output, close its pipe and return its shell's returncode."""
    running.tree.terminate(grace=grace)
    running.pump.finish(_PUMP_JOIN_SECONDS)
    stdout = running.process.stdout
    if not running.pump.is_alive() and stdout is not None:
        stdout.close()
    return running.process.wait()


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


def _exit_code(status: StepStatus, returncode: int, stop: threading.Event) -> int:
    if status is StepStatus.TIMEOUT:
        return int(ExitCode.TIMEOUT)
    if status is StepStatus.INTERRUPTED:
        return _interrupted_exit(stop)
    return exit_status(returncode)


def _interrupted_exit(stop: threading.Event) -> int:
    """128 + the signal that stopped the run (the pipeline's Stop keeps it), as a shell says."""
    return int(interrupted(getattr(stop, "signum", None)).exit_code)


def _step_cwd(step: Step, ctx: StepContext) -> Path:
    return ctx.root / step.cwd if step.cwd else ctx.root


def _step_env(step: Step, ctx: StepContext, mark: str) -> dict[str, str]:
    """The caller's environment, the step's `env:`, and what Shipyard tells every step: its
    name, its mark, and which shard of it this is (1 of 1 unless a CI leg says otherwise)."""
    shard = {SHARD: ctx.environ.get(SHARD, "1"), SHARDS: ctx.environ.get(SHARDS, "1")}
    return {**ctx.environ, **step.env, **shard, "SHIPYARD_STEP": step.name, STEP_MARK: mark}


# --- the step's log and output ----------------------------------------------------------------


class StepLog:
    """A step's log file. Each write goes straight to the file; the first that fails is kept
    in `failure`, and every write after it, or after `close`, is dropped: whoever writes
    (the output pump, a Python step's `say`) never dies or blocks on it."""

    def __init__(self, path: Path) -> None:
        """A log that cannot even be created keeps that failure: nothing is written, and the
        step still runs (a restore must, whatever the disk) until its end is checked."""
        self.path = path
        self.failure: OSError | None = None
        self._lock = threading.Lock()
        self._fd: int | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as error:
            self.failure = error

    def write(self, data: bytes) -> bool:
        """True once `data` is in the file; False when the log cannot be written (any more)."""
        with self._lock:
            if self._fd is None or self.failure is not None:
                return False
            try:
                write_all(self._fd, data)
            except OSError as error:
                self.failure = error
                return False
            return True

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                try:
                    os.close(fd)
                except OSError as error:  # a delayed write error (NFS, EIO) shows here
                    self.failure = self.failure or error

    def __enter__(self) -> StepLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _write_failure(log: StepLog, ctx: StepContext) -> str | None:
    """One line naming the file that could not be written (the step's log first), or None."""
    for path, error in ((log.path, log.failure), (ctx.heartbeat.path, ctx.heartbeat.failure)):
        if error is not None:
            return ctx.redactor.mask(cannot_write(path, error, ctx.root))
    return None


def _checked(result: StepResult, log: StepLog, ctx: StepContext) -> StepResult:
    """`result`; or, if a log could not be written, WriteFailed carrying it as failed (exit 1)."""
    failure = _write_failure(log, ctx)
    if failure is None:
        return result
    exit_code = int(ExitCode.STEP_FAILED)
    raise WriteFailed(
        failure, replace(result, status=StepStatus.FAILED, exit_code=exit_code, error=failure)
    )


def _tee(log: StepLog, step_name: str, listener: StepListener) -> Callable[[bytes], None]:
    """Into the log, then to the listener; once the log cannot be written, nowhere (the step
    is being stopped: the console shows no more than the log holds)."""

    def write(data: bytes) -> None:
        if log.write(data):
            listener.step_output(step_name, data)

    return write


class OutputPump(threading.Thread):
    """Reads a pipe to its end, masking on the way; memory stays flat whatever is printed.

    Output stays bytes from the pipe to the log and the terminal: read in large chunks (the
    pipe widened to `_PIPE_SIZE` where the system allows), masked, and written once per
    chunk to each sink. It reads as long as the pipe is open, whatever happens downstream, so
    a step never blocks on a full pipe: a sink that raises (a listener's bug) is kept in
    `failure`, and what follows is read and dropped. `finish` ends it once nothing is left to
    read, even if a process that could not be stopped still holds the pipe open."""

    def __init__(
        self, pipe: IO[bytes] | None, masker: StreamMasker, sink: Callable[[bytes], None]
    ) -> None:
        super().__init__(daemon=True)
        self._fd = pipe.fileno() if pipe is not None else -1
        _widen(self._fd)
        self._masker = masker
        self._sink = sink
        self._finish_by: float | None = None
        self.failure: Exception | None = None
        self.out_bytes = 0
        self.last_output: float | None = None

    def run(self) -> None:
        for chunk in self._chunks():
            self.out_bytes += len(chunk)
            self.last_output = time.monotonic()
            self._emit(self._masker.feed(chunk))
        self._emit(self._masker.flush())

    def finish(self, timeout: float) -> None:
        """Read what the pipe holds now (for up to _DRAIN_SECONDS) and stop; wait for that."""
        self._finish_by = time.monotonic() + _DRAIN_SECONDS
        self.join(timeout)

    def _chunks(self) -> Iterator[bytes]:
        """The pipe's chunks, to its end or, once finishing, until it has nothing ready."""
        if self._fd < 0:
            return
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while True:
            finish_by = self._finish_by
            finishing = finish_by is not None
            if finish_by is not None and time.monotonic() >= finish_by:
                return  # a process nobody could stop is still writing: it is not waited for
            if not poller.poll(0 if finishing else _POLL_SECONDS * 1000):
                if finishing:
                    return
                continue
            chunk = os.read(self._fd, _READ_SIZE)
            if not chunk:
                return
            yield chunk

    def _emit(self, data: bytes) -> None:
        if not data or self.failure is not None:
            return
        try:
            self._sink(data)
        except Exception as error:  # keep reading: the step must not block on its pipe
            self.failure = error


def _widen(fd: int) -> None:
    """Let the pipe hold `_PIPE_SIZE` bytes, so that a step printing fast waits on its reader
    less often and each read takes more (F_SETPIPE_SZ, Linux; elsewhere, or past the system's
    limit, the pipe stays as it is)."""
    if fd < 0 or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    with suppress(OSError):  # EPERM past /proc/sys/fs/pipe-max-size, or the user's pipe quota
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)


Action = Callable[[Callable[[str], None]], None]


def run_action(name: str, description: str, action: Action, ctx: StepContext) -> StepResult:
    """Run a Python step (smoke, deploy, rollback) with the same heartbeat, log and result as a
    shell step. `action(say)` reports through `say`; an exception is its failure. A log that
    cannot be written does not stop the action: it runs to its end, then WriteFailed."""
    log = StepLog(step_log_path(ctx.log_dir, name))
    started, began = iso_timestamp(), time.monotonic()
    ctx.heartbeat.emit(name, "start", pid=os.getpid(), cmd=description)
    ctx.listener.step_started(name, 1)
    with log:
        say = _Sayer(log, name, ctx)
        with _beating(name, ctx, say, began):
            status, exit_code, error = _perform(action, say)
    if status is StepStatus.FAILED and ctx.stop.is_set():
        status, exit_code = StepStatus.INTERRUPTED, _interrupted_exit(ctx.stop)
    elapsed = time.monotonic() - began
    ctx.heartbeat.emit(name, "end", status=status.value, exit=exit_code, elapsed=elapsed)
    attempt = Attempt(1, status, exit_code, started, elapsed, say.out_bytes)
    masked = ctx.redactor.mask(error) if error else None
    result = StepResult(name, status, exit_code, started, elapsed, (attempt,), log.path, masked)
    return _checked(result, log, ctx)


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

    def __init__(self, log: StepLog, step_name: str, ctx: StepContext) -> None:
        self._write = _tee(log, step_name, ctx.listener)
        self._redactor = ctx.redactor
        self.out_bytes = 0
        self.last_output: float | None = None

    def __call__(self, line: str) -> None:
        data = self._redactor.mask(line.rstrip("\n") + "\n").encode("utf-8", "replace")
        self.out_bytes += len(data)
        self.last_output = time.monotonic()
        self._write(data)


@contextmanager
def _beating(name: str, ctx: StepContext, say: _Sayer, began: float) -> Iterator[None]:
    """Beat every interval from a side thread while a Python step runs in this one."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(ctx.heartbeat_interval) and ctx.heartbeat.failure is None:
            now = time.monotonic()
            _beat(name, ctx, say, now - began, now - (say.last_output or began))

    thread = threading.Thread(target=beat, name=f"beat-{name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
