"""How a run is reported: the `Reporter` protocol every output implements (the terminal, the
live board, GitHub Actions) and the `RunEnd` each one is given when the run is over.

The pipeline hands its steps' progress and its end to one `Reporter`; `Reporters` fans them
out to several. Which reporters a run has is chosen in `shipyard.reporters`, above this layer:
the core knows nothing of any particular one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shipyard.errors import Outcome, Verdict
from shipyard.redact import Redactor
from shipyard.runner import StepListener, StepResult


@dataclass(frozen=True)
class RunEnd:
    """Everything a reporter says about a finished run, all from one verdict."""

    command: str
    run_id: str
    evidence: str  # the bundle's folder, relative to the project, e.g. artifacts/devops/<date>
    verdict: Verdict
    results: Sequence[StepResult]
    serving: str | None = None  # the release serving after a deploy or rollback
    warnings: Sequence[str] = field(default=())

    @property
    def footer(self) -> str:
        """The console's last line."""
        return f"{self.verdict.headline()} · evidence in {self.evidence}/ (run {self.run_id})"

    @property
    def refused(self) -> bool:
        return self.verdict.outcome is Outcome.REFUSED


class Reporter(StepListener, Protocol):
    def write(self, text: str) -> None: ...  # a line of the run's own (plans, warnings)
    def step_finished(self, result: StepResult) -> None: ...
    def run_finished(self, end: RunEnd) -> None: ...
    def close(self) -> None: ...


class QuietReporter:
    """A reporter that shows nothing: the base of one that only acts when the run ends."""

    def write(self, text: str) -> None:
        pass

    def step_started(self, step: str, attempt: int) -> None:
        pass

    def step_output(self, step: str, text: str) -> None:
        pass

    def step_beat(self, step: str, elapsed: float, quiet: float) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        pass

    def run_finished(self, end: RunEnd) -> None:
        pass

    def close(self) -> None:
        pass


# Makes a run's reporter once the run knows its secrets (what Actions must `::add-mask::`).
ReporterFor = Callable[[Redactor], Reporter]


class Reporters:
    """Several reporters as one, each called in turn (the first one's output comes first)."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = reporters

    def write(self, text: str) -> None:
        for reporter in self.reporters:
            reporter.write(text)

    def step_started(self, step: str, attempt: int) -> None:
        for reporter in self.reporters:
            reporter.step_started(step, attempt)

    def step_output(self, step: str, text: str) -> None:
        for reporter in self.reporters:
            reporter.step_output(step, text)

    def step_beat(self, step: str, elapsed: float, quiet: float) -> None:
        for reporter in self.reporters:
            reporter.step_beat(step, elapsed, quiet)

    def step_finished(self, result: StepResult) -> None:
        for reporter in self.reporters:
            reporter.step_finished(result)

    def run_finished(self, end: RunEnd) -> None:
        for reporter in self.reporters:
            reporter.run_finished(end)

    def close(self) -> None:
        for reporter in self.reporters:
            reporter.close()
