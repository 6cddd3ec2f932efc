"""How a run is reported: the `Reporter` protocol every output implements (the terminal, the
live board, GitHub Actions, `--json`) and the `RunEnd` each one is given when the run is over.

The pipeline hands its steps' progress and its end to one `Reporter`; `Reporters` fans them
out to several. Which reporters a run has is chosen in `shipyard.reporters`, above this layer:
the core knows nothing of any particular one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

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
    section: tuple[str, Mapping[str, Any]] | None = None  # ("deploy", its record) or rollback's
    root: Path | None = None  # the project's folder, which `evidence` is relative to
    recorded: bool = True  # False: the evidence could not be written (the record is on stderr)

    @property
    def footer(self) -> str:
        """The console's last line."""
        return f"{self.verdict.headline()} · {self.where} (run {self.run_id})"

    @property
    def where(self) -> str:
        """Where the run's evidence is: the bundle, or stderr when it could not be written."""
        if self.recorded:
            return f"evidence in {self.evidence}/"
        return f"no evidence written in {self.evidence}/: the run record is on stderr"

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

    def step_output(self, step: str, data: bytes) -> None:
        pass

    def step_beat(self, step: str, elapsed: float, quiet: float) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        pass

    def run_finished(self, end: RunEnd) -> None:
        pass

    def close(self) -> None:
        pass


def json_text(document: object, redactor: Redactor) -> str:
    """A JSON document as Shipyard prints it (`--json`): indented, masked as a whole."""
    return redactor.mask(json.dumps(document, indent=2, ensure_ascii=False))


class JsonReport(QuietReporter):
    """`--json` for a run: one document on stdout when the run is over (`run_document`), masked
    by the run's redactor; while it runs, nothing (the people's console writes to stderr)."""

    def __init__(self, redactor: Redactor, stream: TextIO | None = None) -> None:
        self.redactor = redactor
        self.stream = stream or sys.stdout  # taken now: a live board redirects sys.stdout

    def run_finished(self, end: RunEnd) -> None:
        print(json_text(run_document(end), self.redactor), file=self.stream, flush=True)


def run_document(end: RunEnd) -> dict[str, Any]:
    """What `--json` prints for a run (docs/cli.md, "JSON output")."""
    document: dict[str, Any] = {
        "command": end.command,
        "run_id": end.run_id,
        **end.verdict.to_json(),
        "evidence": f"{end.evidence}/",
        "steps": [_step_document(result, end.root) for result in end.results],
        "warnings": list(end.warnings),
    }
    if end.section is None:
        return document
    name, record = end.section
    document |= {"serving": end.serving, name: dict(record)}
    plan = record.get("plan") if name == "rollback" else None
    # A rollback's plan keys come first, as `rollback --json` printed them before runs had JSON.
    return {**plan, **document} if isinstance(plan, dict) else document


def _step_document(result: StepResult, root: Path | None) -> dict[str, Any]:
    return {
        "name": result.name,
        "status": result.status.value,
        "exit_code": result.exit_code,
        "duration": round(result.duration, 3),
        "attempts": len(result.attempts),
        "log": _log_path(result, root),
        "error": result.error,
    }


def _log_path(result: StepResult, root: Path | None) -> str | None:
    """The step's log, relative to the project as `evidence` is; None when it never ran."""
    if not result.attempts:
        return None
    if root is not None and result.log_path.is_relative_to(root):
        return result.log_path.relative_to(root).as_posix()
    return str(result.log_path)


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

    def step_output(self, step: str, data: bytes) -> None:
        for reporter in self.reporters:
            reporter.step_output(step, data)

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
