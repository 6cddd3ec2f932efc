"""Typed errors and the one place that maps them to exit codes (see docs/cli.md)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    STEP_FAILED = 1
    USAGE = 2
    DEPLOY_RESTORED = 3
    DEPLOY_NOT_RESTORED = 4
    LOCKED = 5
    NOTHING_TO_ROLL_BACK = 6
    TIMEOUT = 124
    INTERRUPTED = 130


class ShipyardError(Exception):
    """An expected failure: printed as one line, never as a traceback."""

    exit_code: ExitCode = ExitCode.STEP_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ShipyardError):
    """`shipyard.yaml` is missing or wrong: `file:line: key.path: what was expected`."""

    exit_code = ExitCode.USAGE


class UsageError(ShipyardError):
    """A command was called wrongly (unknown step, bad option value)."""

    exit_code = ExitCode.USAGE


class PreflightError(ShipyardError):
    """Something the run needs is missing or taken: a tool, a credential, a port."""

    exit_code = ExitCode.USAGE


class NothingToRollBack(ShipyardError):
    exit_code = ExitCode.NOTHING_TO_ROLL_BACK


class StepFailed(ShipyardError):
    exit_code = ExitCode.STEP_FAILED


class StepTimedOut(ShipyardError):
    exit_code = ExitCode.TIMEOUT


class Interrupted(ShipyardError):
    exit_code = ExitCode.INTERRUPTED


class LockHeld(ShipyardError):
    """Another deploy or rollback holds this environment's lock."""

    exit_code = ExitCode.LOCKED


def exit_code_for(error: BaseException) -> int:
    """The documented exit code for `error`; anything unexpected is a failure (1)."""
    if isinstance(error, ShipyardError):
        return int(error.exit_code)
    if isinstance(error, KeyboardInterrupt):
        return int(ExitCode.INTERRUPTED)
    return int(ExitCode.STEP_FAILED)
