"""Speaking to the GitHub CLI, `gh`: finding it, checking it is logged in, a bounded call in
its own process group, `--json` output parsed, and `gh api` answers read with their HTTP
status. What a team already has on a laptop and on every GitHub-hosted runner.

A token never goes on a command line: gh reads `GH_TOKEN` (or `GITHUB_TOKEN`, or what
`gh auth login` stored) itself. gh's exit codes (cli/cli `internal/ghcmd/cmd.go`): 0 ok,
1 an error (an API error too), 2 cancelled, 4 not logged in, 8 pending. Anything gh says
reaches a log only through a run's redactor (`say`, a step's error).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.errors import PreflightError, ShipyardError
from shipyard.process import communicate_within

GH = "gh"
CALL_TIMEOUT = 60.0  # seconds one gh call may take (the API, a log download)
NOT_LOGGED_IN = 4  # gh's exit code when it has no token at all
AUTH_FIX = (
    "run `gh auth login`, or set GH_TOKEN to a token that can read the repository"
    " (in GitHub Actions: `env: GH_TOKEN: ${{ github.token }}`)"
)
NOT_INSTALLED = (
    "the GitHub CLI (gh) is not on PATH: install it (https://cli.github.com/; GitHub-hosted"
    " runners have it), then run `gh auth login` or set GH_TOKEN"
)
_HTTP_STATUS = re.compile(r"\(HTTP (\d{3})\)|\bHTTP (\d{3}):")
_REJECTED = re.compile(r"\bHTTP 401\b|Bad credentials")
_LOGGED_IN = re.compile(r"Logged in to \S+ account .*")
_MEANINGFUL = re.compile(r"[^\W_]")
# gh's own switches that would change what it prints or make it wait for a person.
_QUIET_GH = {"GH_PROMPT_DISABLED": "1", "GH_NO_UPDATE_NOTIFIER": "1", "NO_COLOR": "1"}
_LOUD_GH = ("GH_FORCE_TTY", "CLICOLOR_FORCE", "GH_DEBUG", "DEBUG")

Say = Callable[[str], None]


class GhError(ShipyardError):
    """A gh call failed (exit 1: an API error, no answer in time, output that is not JSON);
    `result` is the call, when there was one."""

    def __init__(self, message: str, result: GhResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class GhUnavailable(PreflightError):
    """gh is missing, not logged in, or its token is refused: refused (exit 2), with the fix."""


@dataclass(frozen=True)
class GhResult:
    args: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def command(self) -> str:
        return shlex.join([GH, *self.args])

    @property
    def message(self) -> str:
        """What gh said went wrong: its last line with a letter or a digit in it."""
        said = [line.strip() for line in self.stderr.splitlines() if _MEANINGFUL.search(line)]
        return said[-1] if said else f"exit {self.exit_code} with no message"

    @property
    def http_status(self) -> int | None:
        """The HTTP status gh's error names (`gh: Not Found (HTTP 404)`, `HTTP 404: …`)."""
        found = _HTTP_STATUS.search(self.stderr)
        return int(found[1] or found[2]) if found else None


@dataclass(frozen=True)
class ApiAnswer:
    """What `gh api PATH` answered: the HTTP status (200 for any success) and the body."""

    path: str
    status: int
    body: Any
    message: str = ""  # GitHub's `message` of an error (`Branch not protected`)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def describe(self) -> str:
        """`Branch not protected (HTTP 404)`, as gh says it."""
        return f"{self.message} (HTTP {self.status})" if self.message else f"HTTP {self.status}"


@dataclass(frozen=True)
class Gh:
    """gh at `binary`, run in `cwd` (the checkout, whose git remote names the repository);
    each call lasts `timeout` seconds at most and ends early when `stop` is set."""

    binary: str
    cwd: Path
    stop: threading.Event | None = None
    timeout: float = CALL_TIMEOUT
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @classmethod
    def find(
        cls,
        cwd: Path,
        *,
        stop: threading.Event | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Gh:
        """gh on PATH; GhUnavailable (exit 2) saying how to install it when it is not."""
        environ = dict(os.environ if environ is None else environ)
        binary = shutil.which(GH, path=environ.get("PATH"))
        if binary is None:
            raise GhUnavailable(NOT_INSTALLED)
        return cls(binary, cwd, stop, environ=environ)

    def run(self, *args: str) -> GhResult:
        """`gh ARGS`, stdout and stderr kept apart; GhError when it outlives `timeout`."""
        process = subprocess.Popen(
            [self.binary, *args],
            cwd=self.cwd,
            env=self._environ(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,  # stopped with everything it started
        )
        output = communicate_within(process, self.timeout, self.stop)
        command = shlex.join([GH, *args])
        if output is None:
            stopped = self.stop is not None and self.stop.is_set()
            said = "stopped" if stopped else f"gave no answer within {self.timeout:g}s"
            raise GhError(f"`{command}` {said}")
        return GhResult(args, process.returncode, *output)

    def _environ(self) -> dict[str, str]:
        kept = {k: v for k, v in self.environ.items() if k not in _LOUD_GH}
        return {**kept, **_QUIET_GH}

    def checked(self, *args: str) -> GhResult:
        """`gh ARGS` that must succeed: GhUnavailable when gh is logged out or its token is
        refused (exit 2), GhError for any other failure (exit 1)."""
        result = self.run(*args)
        if result.exit_code == 0:
            return result
        if result.exit_code == NOT_LOGGED_IN or _REJECTED.search(result.stderr):
            raise GhUnavailable(f"`{result.command}`: {result.message}; {AUTH_FIX}")
        raise GhError(f"`{result.command}` exited {result.exit_code}: {result.message}", result)

    def read_json(self, *args: str) -> Any:
        """The JSON document `gh ARGS` prints (`--json FIELDS`)."""
        result = self.checked(*args)
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError as error:
            raise GhError(f"`{result.command}` printed no JSON ({error})", result) from None

    def api(self, path: str) -> ApiAnswer:
        """`gh api PATH` (a GET). An HTTP error is an answer too (a 404 says a branch is not
        protected); only a failure without an HTTP status, or a refused token, raises."""
        result = self.run("api", path)
        body = _json_or_none(result.stdout)
        if result.exit_code == 0:
            return ApiAnswer(path, 200, body)
        status = _status_of(body) or result.http_status
        if status == 401 or result.exit_code == NOT_LOGGED_IN:
            raise GhUnavailable(f"`{result.command}`: {result.message}; {AUTH_FIX}")
        if status is None:
            raise GhError(f"`{result.command}` exited {result.exit_code}: {result.message}", result)
        message = body.get("message", "") if isinstance(body, dict) else ""
        return ApiAnswer(path, status, body, str(message))

    def version(self) -> str:
        """`gh version 2.60.0 (2024-10-24)`: the first line of `gh --version`."""
        lines = self.checked("--version").stdout.splitlines()
        return lines[0].strip() if lines else "gh (version unknown)"

    def login(self) -> str:
        """`Logged in to github.com account octocat (GH_TOKEN)`, from `gh auth status`;
        GhUnavailable (exit 2) with gh's reason and the fix when it is not logged in."""
        result = self.run("auth", "status")
        if result.exit_code != 0:
            raise GhUnavailable(f"gh is not logged in: {result.message}; {AUTH_FIX}")
        # Only this line: the others show part of the token (`gho_****…`, or more of a token
        # without gh's own prefix).
        found = _LOGGED_IN.search(result.stdout)
        return found[0] if found else "logged in"


def connect(
    cwd: Path,
    say: Say,
    *,
    stop: threading.Event | None = None,
    environ: Mapping[str, str] | None = None,
) -> Gh:
    """gh found and logged in, its version and account said: the first step of a command
    built on gh. GhUnavailable (exit 2) when it is missing or logged out."""
    gh = Gh.find(cwd, stop=stop, environ=environ)
    say(f"{gh.version()} at {gh.binary}")
    say(gh.login())
    return gh


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return None


def _status_of(body: Any) -> int | None:
    """The `status` GitHub puts in an error's body (`"404"`), when it does."""
    status = body.get("status") if isinstance(body, dict) else None
    return int(status) if isinstance(status, str | int) and str(status).isdigit() else None


__all__ = [
    "AUTH_FIX",
    "GH",
    "ApiAnswer",
    "Gh",
    "GhError",
    "GhResult",
    "GhUnavailable",
    "Say",
    "connect",
]
