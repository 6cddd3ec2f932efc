"""What a person sees: plain lines when piped or in CI, a live board on a terminal (each a
`Reporter`; `shipyard.reporters` chooses), in colour or not, quiet, normal or verbose.

Output is already masked when it gets here. With one job a step's output streams live;
with several, each step's output is printed whole when it ends, so blocks never interleave.
It stays the bytes the step printed on its way to a plain console; only the live board,
which draws text, decodes it.
Colour is only ever added here, on the way to a terminal, to the status words: what is
written to logs, evidence and JSON never passes through this module.
"""

from __future__ import annotations

import codecs
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, TextIO

from shipyard.report import RunEnd
from shipyard.runner import StepResult, StepStatus
from shipyard.streams import write_bytes

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table

_COPY_CHUNK = 65536
_GREEN, _RED, _YELLOW, _BOLD, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"
_WARNING = "warning:"


class Verbosity(Enum):
    QUIET = "quiet"  # -q: the last line (and errors, warnings on stderr)
    NORMAL = "normal"
    VERBOSE = "verbose"  # -v: each step's command and log path too


@dataclass(frozen=True)
class Output:
    """How a command reports, the same options for every command: `-q/--quiet`,
    `-v/--verbose`, `--no-color`, `--json`."""

    verbosity: Verbosity = Verbosity.NORMAL
    no_color: bool = False
    as_json: bool = False


@dataclass(frozen=True)
class Paint:
    """Colours for the status words, or none: the text is the same either way."""

    on: bool = False

    def _wrap(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.on and text else text

    def good(self, text: str) -> str:
        return self._wrap(_GREEN, text)

    def bad(self, text: str) -> str:
        return self._wrap(_RED, text)

    def warn(self, text: str) -> str:
        return self._wrap(_YELLOW, text)

    def bold(self, text: str) -> str:
        return self._wrap(_BOLD, text)

    def status(self, word: str) -> str:
        """A step status or an outcome: ok green, skipped yellow, anything else red."""
        stripped = word.strip()
        if stripped in ("ok", "complete", "ready"):
            return self.good(word)
        if stripped in ("skipped", "building"):
            return self.warn(word)
        return self.bad(word)

    def warning_line(self, text: str) -> str:
        """`warning: ...` with the word `warning:` in yellow; any other text as it is."""
        if text.startswith(_WARNING):
            return self.warn(_WARNING) + text[len(_WARNING) :]
        return text


PLAIN = Paint()


def wants_color(stream: TextIO, environ: Mapping[str, str], *, no_color: bool = False) -> bool:
    """`--no-color` or a non-empty `NO_COLOR`: never. A `FORCE_COLOR` other than empty or `0`:
    always. Else only on a terminal that is not `TERM=dumb` (never into a file or a pipe)."""
    if no_color or environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR", "0") not in ("", "0"):
        return True
    return _is_terminal(stream) and environ.get("TERM") != "dumb"


def paint_for(stream: TextIO, output: Output, environ: Mapping[str, str] = os.environ) -> Paint:
    return Paint(on=wants_color(stream, environ, no_color=output.no_color))


def wants_board(stream: TextIO, environ: Mapping[str, str]) -> bool:
    return _is_terminal(stream) and not environ.get("CI") and environ.get("TERM") != "dumb"


def _is_terminal(stream: TextIO) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


@dataclass(frozen=True)
class Style:
    """What a console adds to the bare lines: colour, how much it says, and (for `-v`) each
    step's command, already masked."""

    paint: Paint = PLAIN
    verbosity: Verbosity = Verbosity.NORMAL
    commands: Mapping[str, str] = field(default_factory=dict)

    @property
    def verbose(self) -> bool:
        return self.verbosity is Verbosity.VERBOSE

    def header(self, step: str, attempt: int = 1) -> str:
        again = f" (attempt {attempt})" if attempt > 1 else ""
        line = self.paint.bold(f"==> {step}: started{again}") + "\n"
        command = self.commands.get(step) if self.verbose else None
        if command:  # a multi-line `run:` keeps its lines under the `$`
            line += "    $ " + command.replace("\n", "\n      ") + "\n"
        return line

    def trailer(self, result: StepResult) -> str:
        line = f"{self.paint.bold(f'<== {result.name}:')} {describe(result, self.paint)}\n"
        if self.verbose and result.attempts:
            line += f"    log: {os.path.relpath(result.log_path)}\n"
        return line


class PlainConsole:
    """Plain lines: `==> NAME: started`, the step's output, `<== NAME: STATUS`, a beat line
    while a long step runs, then the table of steps and the last line."""

    def __init__(self, stream: TextIO, *, live_output: bool, style: Style | None = None) -> None:
        self.stream = stream
        self.live_output = live_output
        self.style = style or Style()
        self._lock = threading.Lock()
        self._running: dict[str, float] = {}  # step -> when it started, the oldest first
        self._mid_line = False  # a step's output ended without a newline

    def write(self, text: str) -> None:
        """A line of the run's own (a plan, `lock: took ...`, a warning)."""
        self._out(self.style.paint.warning_line(text))

    def _out(self, text: str) -> None:
        with self._lock:
            self.stream.write(self._line_start() + text)
            self.stream.flush()

    def _line_start(self) -> str:
        """A newline when a step's output stopped mid-line (`printf done`), so that what the
        console writes next is a line of its own (the caller holds the lock)."""
        mid_line, self._mid_line = self._mid_line, False
        return "\n" if mid_line else ""

    def step_started(self, step: str, attempt: int) -> None:
        self._started(step)
        self._out(self.style.header(step, attempt))

    def _started(self, step: str) -> None:
        self._running.setdefault(step, time.monotonic())  # a retry keeps its first start

    def step_output(self, step: str, data: bytes) -> None:
        if self.live_output:
            with self._lock:
                self._out_bytes(step, data)

    def _out_bytes(self, step: str, data: bytes) -> None:
        """A step's output (the caller holds the lock)."""
        write_bytes(self.stream, data)
        self._ended(data)

    def _ended(self, data: bytes) -> None:
        if data:
            self._mid_line = not data.endswith(b"\n")

    def step_beat(self, step: str, elapsed: float, quiet: float) -> None:
        """One line per heartbeat interval in total, however many steps run: only the beat of
        the step running longest is shown, naming the others (all beat into heartbeat.log)."""
        running = list(self._running.items())
        if not running or running[0][0] != step:
            return
        now = time.monotonic()
        others = ", ".join(f"{name} {now - began:.0f}s" for name, began in running[1:])
        also = f" (also running: {others})" if others else ""
        self._out(f"... {step}: running for {elapsed:.0f}s, last output {quiet:.0f}s ago{also}\n")

    def step_finished(self, result: StepResult) -> None:
        self._running.pop(result.name, None)
        with self._lock:
            if not self.live_output:
                copy_log(result, lambda data: self._out_bytes(result.name, data))
            self.stream.write(self._line_start() + self.style.trailer(result))
            self.stream.flush()

    def run_finished(self, end: RunEnd) -> None:
        """Warnings, a refusal's reason on stderr, the table of steps, then the last line."""
        for line in end.warnings:
            self.write(f"warning: {line}\n")
        if end.refused:
            self.error(end.verdict.reason)
        paint = self.style.paint
        self._out(summary_table(end.results, paint) + footer(end, paint) + "\n")

    def error(self, line: str) -> None:
        """A refusal's reason on stderr too, where scripts and people look for it (once: not
        again when this console already writes to stderr, as with `--json`)."""
        if self.stream is not sys.stderr:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class BoardConsole(PlainConsole):
    """A rich live board of running steps; finished steps print their block above it. The
    board is redrawn whenever a step starts or ends, so it always names the running ones."""

    def __init__(self, stream: TextIO, *, live_output: bool, style: Style | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        super().__init__(stream, live_output=live_output, style=style)
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}
        self._console = Console(file=stream, highlight=False, markup=False)
        self._live: Live = Live(
            get_renderable=self._board, console=self._console, refresh_per_second=4, transient=True
        )
        self._live.start()

    def _out(self, text: str) -> None:
        with self._lock:
            self._print(self._line_start() + text)

    def _print(self, text: str) -> None:
        self._console.print(text, end="", markup=False, highlight=False, soft_wrap=True)

    def _out_bytes(self, step: str, data: bytes) -> None:
        """Decoded for the board: a character cut between two reads waits for its end."""
        if step not in self._decoders:
            self._decoders[step] = codecs.getincrementaldecoder("utf-8")("replace")
        self._print(self._decoders[step].decode(data))
        self._ended(data)

    def step_started(self, step: str, attempt: int) -> None:
        self._started(step)
        self._live.refresh()
        if self.live_output:  # its output follows at once; with several jobs, at its end
            self._out(self.style.header(step, attempt))

    def step_beat(self, step: str, elapsed: float, quiet: float) -> None:
        pass  # the board shows elapsed time continuously

    def step_finished(self, result: StepResult) -> None:
        self._running.pop(result.name, None)
        self._live.refresh()  # before the block is printed: it redraws the board below it
        if self.live_output:
            self._out(self.style.trailer(result))
            return
        with self._lock:  # the whole block at once, its header first
            if result.attempts:
                self._print(self.style.header(result.name))
            copy_log(result, lambda data: self._out_bytes(result.name, data))
            self._print(self._line_start() + self.style.trailer(result))

    def close(self) -> None:
        self._live.stop()

    def _board(self) -> Table:
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        now = time.monotonic()
        for step, began in list(self._running.items()):
            table.add_row("⠿", step, f"{now - began:5.1f}s")
        return table


def describe(result: StepResult, paint: Paint = PLAIN) -> str:
    if result.status is StepStatus.SKIPPED:
        return paint.status("skipped")
    retried = f", {len(result.attempts)} attempts" if len(result.attempts) > 1 else ""
    status = paint.status(result.status.value)
    return f"{status} (exit {result.exit_code}, {result.duration:.1f}s{retried})"


def summary_table(results: Sequence[StepResult], paint: Paint = PLAIN) -> str:
    width = max((len(result.name) for result in results), default=4)
    rows = [f"{result.name:<{width}}  {describe(result, paint)}" for result in results]
    return "\n".join(["", *rows, ""])


def footer(end: RunEnd, paint: Paint = PLAIN) -> str:
    """The run's last line, its outcome in colour."""
    outcome = end.verdict.outcome.value
    return paint.status(outcome) + end.footer[len(outcome) :]


def copy_log(result: StepResult, write: Callable[[bytes], object]) -> None:
    if not result.log_path.exists():
        return
    with result.log_path.open("rb") as log:
        while chunk := log.read(_COPY_CHUNK):
            write(chunk)


class PassthroughConsole(PlainConsole):
    """Only the wrapped command's own output: for `shipyard heartbeat`, a transparent wrapper."""

    def step_started(self, step: str, attempt: int) -> None:
        pass

    def step_beat(self, step: str, elapsed: float, quiet: float) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        pass

    def run_finished(self, end: RunEnd) -> None:
        pass


class QuietConsole(PassthroughConsole):
    """`-q`: only the last line; warnings and a refusal's reason on stderr."""

    def write(self, text: str) -> None:
        if text.startswith(_WARNING):
            print(text, end="", file=sys.stderr, flush=True)

    def step_output(self, step: str, data: bytes) -> None:
        pass

    def run_finished(self, end: RunEnd) -> None:
        for line in end.warnings:
            print(f"warning: {line}", file=sys.stderr, flush=True)
        if end.refused:
            self.error(end.verdict.reason)
        self._out(footer(end, self.style.paint) + "\n")
