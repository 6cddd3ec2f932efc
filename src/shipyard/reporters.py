"""Which reporters a run has: in GitHub Actions its groups and annotations plus the step
summary; on a terminal a live board; plain lines otherwise. The only module that knows them
all (the pipeline is handed one `Reporter`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO

from shipyard.console import (
    BoardConsole,
    PassthroughConsole,
    PlainConsole,
    SilentConsole,
    wants_board,
)
from shipyard.redact import Redactor
from shipyard.report import Reporter, Reporters


def in_actions(environ: Mapping[str, str] = os.environ) -> bool:
    """`GITHUB_ACTIONS=true` (not merely `CI`)."""
    return environ.get("GITHUB_ACTIONS") == "true"


def for_run(
    *,
    jobs: int,
    redactor: Redactor | None = None,
    stream: TextIO | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Reporter:
    """A run's reporters. With one job a step's output streams live; with several each step's
    output is printed whole when it ends. `redactor` gives the values to `::add-mask::` first."""
    stream = stream or sys.stdout
    live_output = jobs <= 1
    if in_actions(environ):
        from shipyard.gha import GithubConsole

        console = GithubConsole(stream, live_output=live_output, redactor=redactor or Redactor())
        return _with_summary(console, redactor, stream, environ)
    if wants_board(stream, environ):
        return BoardConsole(stream, live_output=live_output)
    return PlainConsole(stream, live_output=live_output)


def quiet(*, redactor: Redactor | None = None, environ: Mapping[str, str] = os.environ) -> Reporter:
    """Nothing on stdout but what the command prints itself (`--json`); the last line on stderr."""
    return _with_summary(SilentConsole(sys.stdout, live_output=False), redactor, None, environ)


def passthrough(
    *, redactor: Redactor | None = None, environ: Mapping[str, str] = os.environ
) -> Reporter:
    """Only the wrapped command's own output (`shipyard heartbeat`)."""
    console = PassthroughConsole(sys.stdout, live_output=True)
    return _with_summary(console, redactor, None, environ)


def _with_summary(
    console: Reporter,
    redactor: Redactor | None,
    stream: TextIO | None,
    environ: Mapping[str, str],
) -> Reporter:
    """In Actions, the step summary too; its `::error` comes before the console's last line."""
    if not in_actions(environ):
        return console
    from shipyard.gha import ActionsSummary

    summary = ActionsSummary(redactor or Redactor(), stream=stream, environ=environ)
    return Reporters(summary, console)
