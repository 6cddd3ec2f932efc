"""GitHub Actions: workflow commands on stdout, the step summary and the step outputs.

Active only when `GITHUB_ACTIONS=true` (not merely `CI`). Escaping follows actions/toolkit's
command.ts (see shared/reference/ci-conventions.md §1.1).
"""

from __future__ import annotations

import os
import secrets
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from shipyard.console import PlainConsole, copy_log, describe
from shipyard.errors import Verdict
from shipyard.evidence import tail_lines
from shipyard.redact import Redactor
from shipyard.runner import StepResult, StepStatus

MAX_ERRORS_PER_STEP = 10  # GitHub shows at most 10 error annotations per step
ERROR_TAIL_LINES = 5


def active(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **properties: object) -> str:
    """One workflow command line: `::name k=v,k=v::message`, escaped."""
    shown = [(key, str(value)) for key, value in properties.items() if value not in (None, "")]
    props = ",".join(f"{key}={escape_property(value)}" for key, value in shown)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def mask_commands(redactor: Redactor) -> list[str]:
    """`::add-mask::` for every secret value, and each line of a multi-line one."""
    values: list[str] = []
    for value in redactor.values:
        values += [value, *(line.strip() for line in value.splitlines() if len(line.strip()) >= 6)]
    return [command("add-mask", value) for value in dict.fromkeys(values) if value.strip()]


class GithubConsole(PlainConsole):
    """Each step in a `::group::`, its own output fenced by `::stop-commands::` so that a line
    starting with `::` cannot act as a command, and a failed step annotated with `::error`."""

    def __init__(self, stream: TextIO, *, live_output: bool, redactor: Redactor) -> None:
        super().__init__(stream, live_output=live_output)
        self._fence = secrets.token_hex(16)
        self._errors = 0
        for line in mask_commands(redactor):  # before anything else reaches the log
            self.write(line + "\n")

    def step_started(self, step: str, attempt: int) -> None:
        if self.live_output and attempt == 1:
            self.write(f"{command('group', step)}\n::stop-commands::{self._fence}\n")
        elif self.live_output:
            self.write(f"==> {step}: attempt {attempt}\n")

    def step_beat(self, step: str, elapsed: float, quiet: float) -> None:
        if self.live_output:
            super().step_beat(step, elapsed, quiet)

    def step_finished(self, result: StepResult) -> None:
        with self._lock:
            if not self.live_output:
                self.stream.write(
                    f"{command('group', result.name)}\n::stop-commands::{self._fence}\n"
                )
                copy_log(result, self.stream.write)
            if self.live_output and not result.attempts:
                self.stream.write(
                    f"{command('group', result.name)}\n::stop-commands::{self._fence}\n"
                )
            self.stream.write(f"::{self._fence}::\n::endgroup::\n")
            self.stream.write(f"<== {result.name}: {describe(result)}\n")
            if result.status not in (StepStatus.OK, StepStatus.SKIPPED):
                self._annotate(result)
            self.stream.flush()

    def _annotate(self, result: StepResult) -> None:
        self._errors += 1
        if self._errors > MAX_ERRORS_PER_STEP:
            return
        tail = "\n".join(tail_lines(result.log_path, ERROR_TAIL_LINES))
        message = f"{result.name}: {result.status.value}, exit {result.exit_code}\n{tail}".rstrip()
        self.stream.write(command("error", message, title=f"{result.name} failed") + "\n")


# --- the step summary and outputs ------------------------------------------------------------


@dataclass(frozen=True)
class RunReport:
    command_line: str
    run_id: str
    evidence: str  # the bundle's folder, relative to the project
    verdict: Verdict
    results: Sequence[StepResult]
    release: str | None = None  # the release now serving, after a deploy or rollback

    def markdown(self) -> str:
        icon = {"ok": "✅", "skipped": "⏭️"}
        rows = [
            f"| {r.name} | {icon.get(r.status.value, '❌')} {r.status.value} | "
            f"{'' if r.exit_code is None else r.exit_code} | {r.duration:.1f}s |"
            for r in self.results
        ]
        released = f"release **{self.release}** · " if self.release else ""
        verdict = self.verdict
        head = (
            f"### Shipyard: `{self.command_line}`: {icon.get(verdict.outcome.value, '❌')} "
            f"{verdict.outcome.value} (exit {int(verdict.exit_code)})"
        )
        reason = [f"> {verdict.reason}", ""] if verdict.reason else []
        table = ["| step | status | exit | duration |", "|---|---|---|---|", *rows]
        steps = table if rows else ["(no step ran)"]
        footer = f"{released}run `{self.run_id}` · evidence `{self.evidence}`"
        return "\n".join([head, "", *reason, *steps, "", footer, "", ""])

    def outputs(self) -> dict[str, str]:
        found = {
            "run-id": self.run_id,
            "evidence": self.evidence,
            "exit-code": str(int(self.verdict.exit_code)),
            "outcome": self.verdict.outcome.value,
        }
        return {**found, "release": self.release} if self.release else found

    def annotation(self) -> str | None:
        """One `::error` for every outcome but ok, naming the outcome, exit code and reason."""
        verdict = self.verdict
        if verdict.ok:
            return None
        title = f"Shipyard: {verdict.outcome.value} (exit {int(verdict.exit_code)})"
        return command("error", verdict.reason or verdict.outcome.value, title=title)


def publish(
    report: RunReport,
    *,
    redactor: Redactor,
    environ: Mapping[str, str] = os.environ,
    stream: TextIO | None = None,
) -> None:
    """The run's `::error` (when it did not end ok) on stdout, its table appended to
    GITHUB_STEP_SUMMARY and its ids to GITHUB_OUTPUT (all masked)."""
    annotation = report.annotation()
    if annotation:
        out = stream or sys.stdout
        out.write(redactor.mask(annotation) + "\n")
        out.flush()
    _append(environ.get("GITHUB_STEP_SUMMARY"), redactor.mask(report.markdown()))
    _append(environ.get("GITHUB_OUTPUT"), redactor.mask(output_lines(report.outputs())))


def output_lines(outputs: Mapping[str, str]) -> str:
    """`name=value` lines; a value with a newline uses a random heredoc delimiter."""
    lines = []
    for name, value in outputs.items():
        if "\n" in value or "\r" in value:
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
            lines.append(f"{name}<<{delimiter}\n{value}\n{delimiter}")
        else:
            lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def _append(path: str | None, text: str) -> None:
    if path:
        with Path(path).open("a", encoding="utf-8") as handle:
            handle.write(text)
