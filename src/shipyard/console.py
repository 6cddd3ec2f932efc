"""What a person sees: plain lines when piped or in CI, a live board on a terminal (each a
`Reporter`; `shipyard.reporters` chooses).

Output is already masked when it gets here. With one job a step's output streams live;
with several, each step's output is printed whole when it ends, so blocks never interleave.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from shipyard.report import RunEnd
from shipyard.runner import StepResult, StepStatus

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table

_COPY_CHUNK = 65536


class PlainConsole:
    def __init__(self, stream: TextIO, *, live_output: bool) -> None:
        self.stream = stream
        self.live_output = live_output
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)
            self.stream.flush()

    def step_started(self, step: str, attempt: int) -> None:
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self.write(f"==> {step}: started{again}\n")

    def step_output(self, step: str, text: str) -> None:
        if self.live_output:
            self.write(text)

    def step_beat(self, step: str, elapsed: float, quiet: float) -> None:
        self.write(f"... {step}: running for {elapsed:.0f}s, last output {quiet:.0f}s ago\n")

    def step_finished(self, result: StepResult) -> None:
        with self._lock:
            if not self.live_output:
                copy_log(result, self.stream.write)
            self.stream.write(f"<== {result.name}: {describe(result)}\n")
            self.stream.flush()

    def run_finished(self, end: RunEnd) -> None:
        """Warnings, a refusal's reason on stderr, the table of steps, then the last line."""
        for line in end.warnings:
            self.write(f"warning: {line}\n")
        if end.refused:
            self.error(end.verdict.reason)
        self.write(summary_table(end.results) + end.footer + "\n")

    def error(self, line: str) -> None:
        """A refusal's reason on stderr too, where scripts and people look for it."""
        print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class BoardConsole(PlainConsole):
    """A rich live board of running steps; finished steps print their block above it."""

    def __init__(self, stream: TextIO, *, live_output: bool) -> None:
        from rich.console import Console
        from rich.live import Live

        super().__init__(stream, live_output=live_output)
        self._console = Console(file=stream, highlight=False, markup=False)
        self._running: dict[str, float] = {}
        self._live: Live = Live(
            get_renderable=self._board, console=self._console, refresh_per_second=4, transient=True
        )
        self._live.start()

    def write(self, text: str) -> None:
        with self._lock:
            self._console.print(text, end="", markup=False, highlight=False, soft_wrap=True)

    def step_started(self, step: str, attempt: int) -> None:
        self._running[step] = time.monotonic()

    def step_beat(self, step: str, elapsed: float, quiet: float) -> None:
        pass  # the board shows elapsed time continuously

    def step_finished(self, result: StepResult) -> None:
        self._running.pop(result.name, None)
        if not self.live_output:
            copy_log(result, self.write)
        self.write(f"<== {result.name}: {describe(result)}\n")

    def close(self) -> None:
        self._live.stop()

    def _board(self) -> Table:
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        now = time.monotonic()
        for step, began in list(self._running.items()):
            table.add_row("⠿", step, f"{now - began:5.1f}s")
        return table


def describe(result: StepResult) -> str:
    if result.status is StepStatus.SKIPPED:
        return "skipped"
    retried = f", {len(result.attempts)} attempts" if len(result.attempts) > 1 else ""
    return f"{result.status.value} (exit {result.exit_code}, {result.duration:.1f}s{retried})"


def summary_table(results: Sequence[StepResult]) -> str:
    width = max((len(result.name) for result in results), default=4)
    rows = [f"{result.name:<{width}}  {describe(result)}" for result in results]
    return "\n".join(["", *rows, ""])


def copy_log(result: StepResult, write: Callable[[str], object]) -> None:
    if not result.log_path.exists():
        return
    with result.log_path.open(encoding="utf-8", errors="replace") as log:
        while chunk := log.read(_COPY_CHUNK):
            write(chunk)


def wants_board(stream: TextIO, environ: Mapping[str, str]) -> bool:
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    return is_tty and not environ.get("CI") and environ.get("TERM") != "dumb"


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


class SilentConsole(PassthroughConsole):
    """Nothing on stdout (for `--json`): steps still go to their logs and the evidence, and
    the run's last line goes to stderr."""

    def write(self, text: str) -> None:
        pass

    def step_output(self, step: str, text: str) -> None:
        pass

    def run_finished(self, end: RunEnd) -> None:
        for line in end.warnings:
            print(f"warning: {line}", file=sys.stderr)
        print(end.footer, file=sys.stderr, flush=True)
