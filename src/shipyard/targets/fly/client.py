"""Speaking to flyctl: starting it in its own process group, a bounded read, a deploy's
streamed output (stopped at its deadline), retried `--json` reads, and what its exit codes
and messages say.

`Flyctl` knows the binary, the app and where to run it; it keeps nothing between calls and
knows nothing of releases, machines or rollbacks (that is the target's policy).

A read-only call that answers 429 (rate limited), 5xx, a timeout or another transient error
is retried: exponential backoff with jitter, or flyctl's own hint (`retry after 5s`,
`Retry-After: 5`) when it is longer, `Pace.read_attempts` attempts within `Pace.read_seconds`
at most; each failed attempt is said in the step's output. A deploy is never retried.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)

from shipyard.errors import ExitCode, StepFailed
from shipyard.process import communicate_within, terminate_group
from shipyard.targets.base import Call


@dataclass(frozen=True)
class Pace:
    """How long Shipyard waits on flyctl. `PACE` is the one in use (tests make it quicker)."""

    read_attempts: int = 4  # of one read-only call, transient failures included
    read_seconds: float = 60.0  # every attempt of one read and the waits between them
    backoff: float = 0.5  # the first wait between attempts; it doubles, up to backoff_max
    backoff_max: float = 4.0
    stop_grace: float = 10.0  # SIGTERM to SIGKILL of a deploy stopped (^C or its deadline)
    deploy_margin: float = 600.0  # a deploy's deadline: wait_timeout x machines + this


PACE = Pace()
_TRANSIENT = re.compile(
    r"request canceled|Client\.Timeout|timeout|timed out|\b50[234]\b|connection reset|"
    r"connection refused|\bEOF\b|temporarily unavailable|i/o timeout|"
    r"rate limit|too many requests|\bstatus:? (?:code:? )?(?:429|5\d\d)\b|\b(?:429|5\d\d) [A-Z]",
    re.IGNORECASE,
)
_RATE_LIMITED = re.compile(r"\b429\b|rate limit|too many requests", re.IGNORECASE)
_RETRY_HINT = re.compile(r"retry[ -]after:?\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\b", re.IGNORECASE)
_HINT_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}
_RELEASE_LINE = re.compile(r'^\{"id":.*"version":\s*\d+.*\}\s*$')
_MEANINGFUL = re.compile(r"[^\W_]")  # a letter or a digit: not a separator like `-------`
OUTPUT_TAIL = 50  # lines of a deploy's output kept for its error message (flyctl's comes last)


def _read_outcome(result: FlyResult) -> str:
    """ok; timeout (killed after read_timeout), rate limited (429) or transient (5xx, 126,
    flyctl's deadline, or a message the reference calls transient): all retried; or failed."""
    if result.exit_code == 0:
        return "ok"
    if result.exit_code == ExitCode.TIMEOUT:
        return "timeout"
    if _RATE_LIMITED.search(result.stderr):
        return "rate-limited"
    if result.exit_code == 126 or _TRANSIENT.search(result.stderr):
        return "transient"
    return "failed"


def retry_hint(text: str) -> float | None:
    """The seconds flyctl asks a client to wait (`retry after 5s`, `Retry-After: 5`), or None."""
    found = _RETRY_HINT.search(text)
    if found is None:
        return None
    return float(found[1]) * _HINT_UNITS[(found[2] or "s").lower()]


class TransientFlyError(Exception):
    """A read-only flyctl call failed in a way the reference calls transient; `retry_after`:
    the wait flyctl asked for, if it named one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class FlyResult:
    exit_code: int
    stdout: str
    stderr: str  # of a deploy (whose stderr goes to its stdout): the tail of its output

    @property
    def message(self) -> str | None:
        """flyctl's `Error: <message>`, else its last line with a letter or a digit in it:
        an interrupted flyctl (exit 127) prints no error, and may end on `-------`."""
        lines = [line.strip() for line in self.stderr.splitlines()]
        errors = [
            line.removeprefix("Error:").strip() for line in lines if line.startswith("Error:")
        ]
        said = [line for line in errors or lines if _MEANINGFUL.search(line)]
        return said[-1] if said else None

    def failure(self, command: str) -> str:
        said = self.message
        if self.exit_code == ExitCode.TIMEOUT and said:  # Shipyard stopped it: no exit of its own
            return f"flyctl {command} {said}"
        exited = f"flyctl {command} exited {self.exit_code}"
        return f"{exited}: {said}" if said else f"{exited} with no error message"


@dataclass(frozen=True)
class Flyctl:
    """flyctl at `binary`, run in `cwd` for `app`; a read-only call lasts `read_timeout`
    seconds at most."""

    binary: str
    app: str
    cwd: Path
    read_timeout: float

    def command_line(self, args: Sequence[str]) -> str:
        """`flyctl ARGS` as a person would type it (the binary by its name)."""
        return shlex.join([Path(self.binary).name, *args])

    def _start(
        self, args: Sequence[str], *, stderr: int, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """flyctl ARGS in its own process group (so it can be stopped whole), stdout piped."""
        return subprocess.Popen(
            [self.binary, *args],
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            errors="replace",
            start_new_session=True,
        )

    def run(self, args: Sequence[str], stop: threading.Event) -> FlyResult:
        """A short read-only call: stdout (JSON) and stderr (the error) kept apart; a call
        still running after `read_timeout` is killed with its group and reads as exit 124."""
        process = self._start(args, stderr=subprocess.PIPE)
        output = communicate_within(process, self.read_timeout, stop, poll=0.2)
        if output is not None:
            return FlyResult(process.returncode, *output)
        if stop.is_set():
            return FlyResult(int(ExitCode.INTERRUPTED), "", "interrupted")
        late = f"no answer within {self.read_timeout:g}s (read_timeout)"
        return FlyResult(int(ExitCode.TIMEOUT), "", late)

    def stream(
        self, args: Sequence[str], call: Call, *, deadline: float | None = None
    ) -> tuple[FlyResult, dict[str, Any] | None]:
        """A deploy: output streamed line by line through `call.say` (which masks it), the
        release JSON line picked out wherever it appears, stopped (SIGTERM, then SIGKILL of its
        group after `Pace.stop_grace`) on `call.stop` or once it has run `deadline` seconds;
        a deploy stopped at its deadline ends as FlyResult(124, ...) naming it."""
        process = self._start(
            args, stderr=subprocess.STDOUT, env={**os.environ, "FLY_EMIT_RELEASE_JSON": "1"}
        )
        late = threading.Event()
        watcher = threading.Thread(
            target=_stop_when_asked, args=(process, call.stop, deadline, late), daemon=True
        )
        watcher.start()
        created, tail = None, deque[str](maxlen=OUTPUT_TAIL)
        for line in process.stdout or ():
            text = line.rstrip("\n")
            call.say(text)
            created = created or _release_line(text)
            tail.append(text)
        exit_code = process.wait()
        watcher.join()
        if late.is_set():
            tail.append(f"Error: {_stopped_late(deadline or 0.0, exit_code)}")
            return FlyResult(int(ExitCode.TIMEOUT), "", "\n".join(tail)), created
        return FlyResult(exit_code, "", "\n".join(tail)), created

    def read_json(self, call: Call, *args: str) -> Any:
        """A read-only `--json` call, retried on transient errors (bounded in attempts and
        time, honouring flyctl's retry hint), each failed attempt said through `call.say`."""
        command = " ".join(args[:2]) if args[:1] == ("machines",) else args[0]
        what, pace = f"flyctl {command}", PACE
        observe = call.observe or _print_retries
        attempts, started = 0, time.monotonic()

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            observe(what, attempts, "start", None)
            result = self.run([*args, "--app", self.app, "--json"], call.stop)
            outcome = _read_outcome(result)
            observe(what, attempts, outcome, result.exit_code)
            said = result.message or f"exit {result.exit_code}"
            if outcome in ("timeout", "transient", "rate-limited"):
                call.say(f"{what}: attempt {attempts} {outcome} (exit {result.exit_code}): {said}")
                raise TransientFlyError(said, retry_hint(result.stderr))
            if result.exit_code != 0:
                raise StepFailed(result.failure(command))
            return _parse_json(result.stdout, command)

        try:
            return _retrying(pace, what, call)(attempt)
        except TransientFlyError as error:
            spent = time.monotonic() - started
            raise StepFailed(
                f"flyctl {command} kept failing ({attempts} attempts): {error}"
                f" (transient: retries exhausted after {spent:.1f}s, bound {pace.read_seconds:g}s)"
            ) from None


def _retrying(pace: Pace, what: str, call: Call) -> Retrying:
    """Attempts of a read: a transient failure is retried, within `pace`'s bounds."""
    return Retrying(
        stop=stop_after_attempt(pace.read_attempts)
        | stop_after_delay(pace.read_seconds)
        | _hint_beyond(pace.read_seconds),
        wait=_backoff(pace),
        retry=retry_if_exception_type(TransientFlyError),
        sleep=_sleeper(what, call),
        reraise=True,
    )


def _failed_with(state: RetryCallState) -> TransientFlyError | None:
    error = state.outcome.exception() if state.outcome else None
    return error if isinstance(error, TransientFlyError) else None


def _backoff(pace: Pace) -> Any:
    """Exponential with jitter, or flyctl's hint when longer; never past `read_seconds`."""

    def wait(state: RetryCallState) -> float:
        exponential = min(pace.backoff * 2 ** (state.attempt_number - 1), pace.backoff_max)
        jitter = pace.backoff * 0.5 * (os.urandom(1)[0] / 255)
        error = _failed_with(state)
        hint = (error.retry_after if error else None) or 0.0
        left = pace.read_seconds - (state.seconds_since_start or 0.0)
        return float(max(0.0, min(max(exponential + jitter, hint), left)))

    return wait


def _hint_beyond(seconds: float) -> Any:
    """Stop when flyctl asks for a wait that would end after the read's bound."""

    def stop(state: RetryCallState) -> bool:
        error = _failed_with(state)
        hint = error.retry_after if error else None
        return hint is not None and (state.seconds_since_start or 0.0) + hint > seconds

    return stop


def _sleeper(what: str, call: Call) -> Any:
    def sleep(seconds: float) -> None:
        call.say(f"{what}: retrying in {seconds:.1f}s")
        call.stop.wait(seconds)

    return sleep


def _stop_when_asked(
    process: subprocess.Popen[str],
    stop: threading.Event,
    deadline: float | None,
    late: threading.Event,
) -> None:
    """Stop the deploy's group on `stop`, or (setting `late`) once it has run `deadline`."""
    ends = time.monotonic() + deadline if deadline is not None else None
    while process.poll() is None:
        if stop.wait(0.2):
            terminate_group(process, grace=PACE.stop_grace)
            return
        if ends is not None and time.monotonic() >= ends:
            late.set()
            terminate_group(process, grace=PACE.stop_grace)
            return


def _stopped_late(deadline: float, exit_code: int) -> str:
    how = "killed with SIGKILL" if exit_code == -9 else f"stopped by SIGTERM (exit {exit_code})"
    return f"still running after its deadline of {deadline:g}s: {how}"


@dataclass(frozen=True)
class Deadline:
    seconds: float
    why: str


def deploy_deadline(wait_timeout: float, machines: int) -> Deadline:
    """How long a `flyctl deploy` may run: `wait_timeout` for each machine (at least one),
    plus `Pace.deploy_margin` for the image build, the release command and the API."""
    counted = max(machines, 1)
    seconds = wait_timeout * counted + PACE.deploy_margin
    why = f"wait_timeout {wait_timeout:g}s x {counted} + {PACE.deploy_margin:g}s margin"
    return Deadline(seconds, why)


def _release_line(line: str) -> dict[str, Any] | None:
    """The FLY_EMIT_RELEASE_JSON line `{"id":…,"version":N,"image_ref":…}`, or None."""
    if not _RELEASE_LINE.match(line.strip()):
        return None
    try:
        created = json.loads(line)
    except ValueError:
        return None
    return created if isinstance(created, dict) else None


def _parse_json(text: str, command: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        raise StepFailed(f"flyctl {command} printed something that is not JSON") from None


def _print_retries(command: str, attempt: int, outcome: str, exit_code: int | None) -> None:
    if outcome not in ("start", "ok"):
        print(f"{command}: attempt {attempt} {outcome} (exit {exit_code})", file=sys.stderr)
