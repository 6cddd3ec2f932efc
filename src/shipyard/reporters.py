"""Which reporters a run has: in GitHub Actions its groups and annotations plus the step
summary; on a terminal a live board; plain lines otherwise; with `--json`, the document on
stdout and all of that on stderr. The only module that knows them all (the pipeline is handed
one `Reporter`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO

from shipyard.console import (
    BoardConsole,
    Output,
    PassthroughConsole,
    PlainConsole,
    QuietConsole,
    Style,
    Verbosity,
    paint_for,
    wants_board,
)
from shipyard.redact import Redactor
from shipyard.report import JsonReport, Reporter, Reporters


def in_actions(environ: Mapping[str, str] = os.environ) -> bool:
    """`GITHUB_ACTIONS=true` (not merely `CI`)."""
    return environ.get("GITHUB_ACTIONS") == "true"


def for_run(
    *,
    jobs: int,
    redactor: Redactor | None = None,
    output: Output | None = None,
    commands: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Reporter:
    """A run's reporters. With one job a step's output streams live; with several each step's
    output is printed whole when it ends. `redactor` gives the values to `::add-mask::` first
    and masks `--json`; `commands` (step name -> its `run:`) are shown with `-v`."""
    output = output or Output()
    redactor = redactor or Redactor()
    json_report = JsonReport(redactor) if output.as_json else None  # before a board starts
    stream = stream or (sys.stderr if output.as_json else sys.stdout)
    shown = {name: redactor.mask(command) for name, command in (commands or {}).items()}
    style = Style(paint_for(stream, output, environ), output.verbosity, shown)
    console = _console(jobs <= 1, redactor, style, stream, environ)
    reporter = _with_summary(console, redactor, stream, environ)
    return Reporters(reporter, json_report) if json_report else reporter


def _console(
    live_output: bool,
    redactor: Redactor,
    style: Style,
    stream: TextIO,
    environ: Mapping[str, str],
) -> Reporter:
    quiet = style.verbosity is Verbosity.QUIET
    if in_actions(environ):
        from shipyard.gha import GithubConsole, announce_masks

        if quiet:
            announce_masks(stream, redactor)
            return QuietConsole(stream, live_output=live_output, style=style)
        return GithubConsole(stream, live_output=live_output, redactor=redactor, style=style)
    if quiet:
        return QuietConsole(stream, live_output=live_output, style=style)
    if wants_board(stream, environ):
        return BoardConsole(stream, live_output=live_output, style=style)
    return PlainConsole(stream, live_output=live_output, style=style)


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
