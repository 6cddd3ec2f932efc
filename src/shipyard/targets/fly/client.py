"""Speaking to flyctl: starting it in its own process group, a bounded read, a deploy's
streamed output, retried `--json` reads, and what its exit codes and messages say.

`Flyctl` knows the binary, the app and where to run it; it keeps nothing between calls and
knows nothing of releases, machines or rollbacks (that is the target's policy).
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
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from shipyard.errors import ExitCode, StepFailed
from shipyard.process import terminate_group
from shipyard.targets.base import Call

STOP_GRACE = 10.0  # flyctl marks the release interrupted when it gets SIGTERM
READ_ATTEMPTS = 4
READ_SECONDS = 60.0
_TRANSIENT = re.compile(
    r"request canceled|Client\.Timeout|timeout|timed out|\b50[234]\b|connection reset|"
    r"connection refused|\bEOF\b|temporarily unavailable|i/o timeout",
    re.IGNORECASE,
)
_RELEASE_LINE = re.compile(r'^\{"id":.*"version":\s*\d+.*\}\s*$')
_MEANINGFUL = re.compile(r"[^\W_]")  # a letter or a digit: not a separator like `-------`
OUTPUT_TAIL = 50  # lines of a deploy's output kept for its error message (flyctl's comes last)


def _read_outcome(result: FlyResult) -> str:
    """ok; timeout (killed after read_timeout) or transient (126, flyctl's deadline, or a
    message the reference calls transient): both retried; or failed."""
    if result.exit_code == 0:
        return "ok"
    if result.exit_code == ExitCode.TIMEOUT:
        return "timeout"
    if result.exit_code == 126 or _TRANSIENT.search(result.stderr):
        return "transient"
    return "failed"


class TransientFlyError(Exception):
    """A read-only flyctl call failed in a way the reference calls transient."""


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
        deadline = time.monotonic() + self.read_timeout
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                stdout, stderr = process.communicate(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            return FlyResult(process.returncode, stdout, stderr)
        terminate_group(process, grace=1.0)
        process.communicate()
        if stop.is_set():
            return FlyResult(int(ExitCode.INTERRUPTED), "", "interrupted")
        late = f"no answer within {self.read_timeout:g}s (read_timeout)"
        return FlyResult(int(ExitCode.TIMEOUT), "", late)

    def stream(self, args: Sequence[str], call: Call) -> tuple[FlyResult, dict[str, Any] | None]:
        """A deploy: output streamed line by line through `call.say` (which masks it), the
        release JSON line picked out wherever it appears, stopped (SIGTERM, then SIGKILL) on
        `call.stop`."""
        process = self._start(
            args, stderr=subprocess.STDOUT, env={**os.environ, "FLY_EMIT_RELEASE_JSON": "1"}
        )
        watcher = threading.Thread(target=_stop_when_asked, args=(process, call.stop), daemon=True)
        watcher.start()
        created, tail = None, deque[str](maxlen=OUTPUT_TAIL)
        for line in process.stdout or ():
            text = line.rstrip("\n")
            call.say(text)
            created = created or _release_line(text)
            tail.append(text)
        return FlyResult(process.wait(), "", "\n".join(tail)), created

    def read_json(self, call: Call, *args: str) -> Any:
        """A read-only `--json` call, retried on transient errors (bounded in attempts and time)."""
        command = " ".join(args[:2]) if args[:1] == ("machines",) else args[0]
        observe = call.observe or _print_retries
        attempt_number = 0

        def attempt() -> Any:
            nonlocal attempt_number
            attempt_number += 1
            observe(f"flyctl {command}", attempt_number, "start", None)
            result = self.run([*args, "--app", self.app, "--json"], call.stop)
            outcome = _read_outcome(result)
            observe(f"flyctl {command}", attempt_number, outcome, result.exit_code)
            if outcome in ("timeout", "transient"):
                raise TransientFlyError(result.message or f"exit {result.exit_code}")
            if result.exit_code != 0:
                raise StepFailed(result.failure(command))
            return _parse_json(result.stdout, command)

        retrying = Retrying(
            stop=stop_after_attempt(READ_ATTEMPTS) | stop_after_delay(READ_SECONDS),
            wait=wait_exponential(multiplier=0.5, max=4) + wait_random(0, 0.25),
            retry=retry_if_exception_type(TransientFlyError),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except TransientFlyError as error:
            raise StepFailed(
                f"flyctl {command} kept failing ({attempt_number} attempts): {error}"
            ) from None


def _stop_when_asked(process: subprocess.Popen[str], stop: threading.Event) -> None:
    while process.poll() is None:
        if stop.wait(0.2):
            terminate_group(process, grace=STOP_GRACE)
            return


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
