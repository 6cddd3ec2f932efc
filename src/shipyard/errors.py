"""How a command ends: exit codes, outcomes, typed errors, and the one place that maps an
error or a set of step results to a `Verdict` (see docs/cli.md).

Every sink that reports how a run ended (the console's last line, the run record, the
feedback heading, the audit entry, the Actions step summary and `::error`, the exit code)
is written from one `Verdict`, so they cannot disagree.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from enum import Enum, IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    OK = 0
    STEP_FAILED = 1
    USAGE = 2
    DEPLOY_RESTORED = 3
    DEPLOY_NOT_RESTORED = 4
    LOCKED = 5
    NOTHING_TO_ROLL_BACK = 6
    TIMEOUT = 124
    HANGUP = 129  # 128 + SIGHUP, as a shell reports a command a signal ended
    INTERRUPTED = 130  # 128 + SIGINT
    TERMINATED = 143  # 128 + SIGTERM


class Outcome(str, Enum):
    """What happened, in one word a reviewer can trust."""

    OK = "ok"
    FAILED = "failed"  # a step or a check failed; nothing that served was changed
    REFUSED = "refused"  # the command would not start: usage, config, preflight, lock
    ROLLED_BACK = "rolled back"  # a deploy failed where it serves; the previous release is back
    RESTORED = "restored"  # a rollback failed its smoke; the release it left serves again
    DOWN = "down"  # a deploy or rollback failed and nothing good could be put back
    INTERRUPTED = "interrupted"  # SIGINT, SIGTERM or SIGHUP
    TIMED_OUT = "timed out"  # a step ran past its timeout


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    exit_code: ExitCode | int  # an ExitCode; `shipyard heartbeat` passes on its command's own
    reason: str = ""  # one line: why, for every outcome but ok

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def headline(self) -> str:
        """`ok`, or `refused (exit 5): <reason>`: the start of the console's last line."""
        if self.ok and self.exit_code == ExitCode.OK:
            return "ok"
        head = f"{self.outcome.value} (exit {int(self.exit_code)})"
        return f"{head}: {self.reason}" if self.reason else head

    def to_json(self) -> dict[str, object]:
        return {
            "outcome": self.outcome.value,
            "exit_code": int(self.exit_code),
            "reason": self.reason or None,
        }


OK = Verdict(Outcome.OK, ExitCode.OK)


class ShipyardError(Exception):
    """An expected failure: printed as one line, never as a traceback."""

    exit_code: ExitCode = ExitCode.STEP_FAILED
    outcome: Outcome = Outcome.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ShipyardError):
    """`shipyard.yaml` is missing or wrong: `file:line: key.path: what was expected`."""

    exit_code = ExitCode.USAGE
    outcome = Outcome.REFUSED


class UsageError(ShipyardError):
    """A command was called wrongly (unknown step, bad option value, no such release)."""

    exit_code = ExitCode.USAGE
    outcome = Outcome.REFUSED


class PreflightError(ShipyardError):
    """Something the run needs is missing or taken: a tool, a credential, a port, a clean tree."""

    exit_code = ExitCode.USAGE
    outcome = Outcome.REFUSED


def cannot_write(path: str | os.PathLike[str], error: OSError, root: Path | None = None) -> str:
    """`cannot write artifacts/…/build.log: [Errno 28] No space left on device`: the path
    relative to `root` (or the working folder) when it is inside it."""
    reason = f"[Errno {error.errno}] {error.strerror}" if error.errno else str(error)
    shown = Path(path)
    with contextlib.suppress(OSError, ValueError):  # outside it, or no working folder
        shown = shown.relative_to(root or Path.cwd())
    return f"cannot write {shown}: {reason}"


class CannotWrite(PreflightError):
    """A file or folder Shipyard must write (evidence, a log, state) cannot be written: a
    read-only folder, a full disk, a file-size limit. Before a run starts: refused, exit 2."""

    @classmethod
    def of(
        cls, path: str | os.PathLike[str], error: OSError, root: Path | None = None
    ) -> CannotWrite:
        return cls(cannot_write(path, error, root))


class NothingToRollBack(ShipyardError):
    exit_code = ExitCode.NOTHING_TO_ROLL_BACK
    outcome = Outcome.REFUSED


class StepFailed(ShipyardError):
    exit_code = ExitCode.STEP_FAILED


class LockHeld(ShipyardError):
    """Another deploy or rollback holds this environment's lock."""

    exit_code = ExitCode.LOCKED
    outcome = Outcome.REFUSED


_SIGNAL_EXITS = {
    signal.SIGHUP: ExitCode.HANGUP,
    signal.SIGINT: ExitCode.INTERRUPTED,
    signal.SIGTERM: ExitCode.TERMINATED,
}


def interrupted(signum: int | None, after: str = "") -> Verdict:
    """A run a signal stopped: exit 128 + the signal (SIGINT when it is not known), as a shell
    reports it; `after`: what was done since (a restore)."""
    known = signal.Signals(signum) if signum in _SIGNAL_EXITS else signal.SIGINT
    reason = f"interrupted by {known.name}" + (f"; {after}" if after else "")
    return Verdict(Outcome.INTERRUPTED, _SIGNAL_EXITS[known], reason)


def verdict_for(error: BaseException) -> Verdict:
    """The verdict of a command that ended by `error`; anything unexpected is a failure."""
    if isinstance(error, ShipyardError):
        return Verdict(error.outcome, error.exit_code, error.message)
    if isinstance(error, KeyboardInterrupt):
        return interrupted(signal.SIGINT)
    return Verdict(
        Outcome.FAILED, ExitCode.STEP_FAILED, f"internal error: {type(error).__name__}: {error}"
    )


def exit_code_for(error: BaseException) -> int:
    """The documented exit code for `error`."""
    return int(verdict_for(error).exit_code)
