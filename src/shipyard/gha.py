"""GitHub Actions: workflow commands on stdout, the step summary and the step outputs.

Used only when `GITHUB_ACTIONS=true` (not merely `CI`): `shipyard.reporters` decides.
Escaping follows actions/toolkit's packages/core/src/command.ts
(https://github.com/actions/toolkit/blob/main/packages/core/src/command.ts).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from shipyard.console import PlainConsole, Style, copy_log
from shipyard.evidence import Bundle, Verification, tail_lines
from shipyard.redact import Redactor
from shipyard.report import QuietReporter, RunEnd
from shipyard.runner import StepResult, StepStatus
from shipyard.wording import counted

MAX_ERRORS_PER_STEP = 10  # GitHub shows at most 10 error annotations per step
ERROR_TAIL_LINES = 5


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
    """`::add-mask::` for every secret value and every form derived from it (encoded, escaped),
    and each line of a multi-line one: the runner then masks what Shipyard never printed too."""
    values: list[str] = []
    for value in (*redactor.values, *redactor.patterns):
        values += [value, *(line.strip() for line in value.splitlines() if len(line.strip()) >= 6)]
    return [command("add-mask", value) for value in dict.fromkeys(values) if value.strip()]


def announce_masks(stream: TextIO, redactor: Redactor) -> None:
    """The `::add-mask::` lines, before anything else reaches the log."""
    stream.write("".join(line + "\n" for line in mask_commands(redactor)))
    stream.flush()


class GithubConsole(PlainConsole):
    """Each step in a `::group::`, its own output fenced by `::stop-commands::` so that a line
    starting with `::` cannot act as a command, and a failed step annotated with `::error`."""

    def __init__(
        self, stream: TextIO, *, live_output: bool, redactor: Redactor, style: Style | None = None
    ) -> None:
        super().__init__(stream, live_output=live_output, style=style)
        self._fence = secrets.token_hex(16)
        self._errors = 0
        announce_masks(stream, redactor)  # before anything else reaches the log

    def step_started(self, step: str, attempt: int) -> None:
        self._started(step)
        if self.live_output and attempt == 1:
            self._out(f"{command('group', step)}\n::stop-commands::{self._fence}\n")
        elif self.live_output:
            self._out(f"==> {step}: attempt {attempt}\n")

    def step_beat(self, step: str, elapsed: float, quiet: float) -> None:
        if self.live_output:
            super().step_beat(step, elapsed, quiet)

    def step_finished(self, result: StepResult) -> None:
        self._running.pop(result.name, None)
        with self._lock:
            if not self.live_output:
                self.stream.write(
                    f"{command('group', result.name)}\n::stop-commands::{self._fence}\n"
                )
                copy_log(result, lambda data: self._out_bytes(result.name, data))
            if self.live_output and not result.attempts:
                self.stream.write(
                    f"{command('group', result.name)}\n::stop-commands::{self._fence}\n"
                )
            self.stream.write(f"{self._line_start()}::{self._fence}::\n::endgroup::\n")
            self.stream.write(self.style.trailer(result))  # colour only outside commands
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


def summary_markdown(end: RunEnd) -> str:
    """The run's section of the step summary: outcome, reason, steps, release, evidence."""
    icon = {"ok": "✅", "skipped": "⏭️"}
    rows = [
        f"| {r.name} | {icon.get(r.status.value, '❌')} {r.status.value} | "
        f"{'' if r.exit_code is None else r.exit_code} | {r.duration:.1f}s |"
        for r in end.results
    ]
    verdict = end.verdict
    head = (
        f"### Shipyard: `{end.command}`: {icon.get(verdict.outcome.value, '❌')} "
        f"{verdict.outcome.value} (exit {int(verdict.exit_code)})"
    )
    reason = [f"> {verdict.reason}", ""] if verdict.reason else []
    table = ["| step | status | exit | duration |", "|---|---|---|---|", *rows]
    steps = table if rows else ["(no step ran)"]
    released = f"release **{end.serving}** · " if end.serving else ""
    evidence = f"evidence `{end.evidence}/`" if end.recorded else end.where
    footer = f"{released}run `{end.run_id}` · {evidence}"
    return "\n".join([head, "", *reason, *steps, "", footer, "", ""])


def evidence_summary(under: Path, checked: Sequence[tuple[str, Bundle, Verification]]) -> str:
    """`evidence.verify --bundles`' section of the step summary: every step every run of
    those bundles ran (the gates of a whole matrix, say), and whether each bundle verified."""
    icon = {"ok": "✅", "skipped": "⏭️"}
    rows = []
    for shown, bundle, result in checked:
        leg = shown.split("/", 1)[0]  # the artifact's folder: one per runner
        verified = (
            "✅ matches" if result.ok else f"❌ {counted(len(result.findings), 'difference')}"
        )
        for record in _run_records(bundle):
            for step in record.get("steps") or []:
                status, code = str(step.get("status")), step.get("exit_code")
                rows.append(
                    f"| {step.get('name')} | {icon.get(status, '❌')} {status} | "
                    f"{'' if code is None else code} | {float(step.get('duration') or 0):.1f}s | "
                    f"`{record.get('run_id')}` | `{leg}` | {verified} |"
                )
    ok = all(result.ok for _, _, result in checked)
    head = f"### Shipyard: evidence of {counted(len(checked), 'bundle')} in `{under}`: " + (
        "✅ all match" if ok else "❌ not all match"
    )
    table = [
        "| step | status | exit | duration | run | bundle | evidence |",
        "|---|---|---|---|---|---|---|",
    ]
    return "\n".join([head, "", *(table + rows if rows else ["(no step ran)"]), "", ""])


def _run_records(bundle: Bundle) -> list[dict[str, Any]]:
    """The bundle's run records, oldest first; one that does not read is left out (the
    verification names it)."""
    records = []
    for path in sorted((bundle.dir / "runs").glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(record, dict):
                records.append(record)
    return sorted(records, key=lambda record: str(record.get("started")))


def append_summary(environ: Mapping[str, str], text: str) -> None:
    """`text` at the end of GITHUB_STEP_SUMMARY, in GitHub Actions (`CI` alone is not)."""
    if environ.get("GITHUB_ACTIONS") == "true":
        _append(environ.get("GITHUB_STEP_SUMMARY"), text)


def step_outputs(end: RunEnd) -> dict[str, str]:
    """GITHUB_OUTPUT: the run, its verdict, and for a deploy or rollback the release serving,
    the environment's `url` (for a job's `environment.url`) and the `artifact` file deployed
    (to attest)."""
    found = {
        "run-id": end.run_id,
        "evidence": f"{end.evidence}/",
        "exit-code": str(int(end.verdict.exit_code)),
        "outcome": end.verdict.outcome.value,
    }
    if end.serving:
        found["release"] = end.serving
    record = end.section[1] if end.section else {}
    if isinstance(record.get("url"), str) and record["url"]:
        found["url"] = record["url"]
    if isinstance(record.get("artifact"), str) and record.get("artifact_sha256"):
        found["artifact"] = record["artifact"]  # a file (on Fly an image: no sha256, no file)
    return found


def run_annotation(end: RunEnd) -> str | None:
    """One `::error` for every outcome but ok, naming the outcome, exit code and reason."""
    verdict = end.verdict
    if verdict.ok:
        return None
    title = f"Shipyard: {verdict.outcome.value} (exit {int(verdict.exit_code)})"
    return command("error", verdict.reason or verdict.outcome.value, title=title)


class ActionsSummary(QuietReporter):
    """The reporter of a run's end in Actions: its `::error` (when it did not end ok) on
    stdout, its section of GITHUB_STEP_SUMMARY and its GITHUB_OUTPUT lines, all masked. Steps
    are shown by the console; this one says nothing while they run."""

    def __init__(
        self,
        redactor: Redactor,
        *,
        stream: TextIO | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.redactor = redactor
        self.stream = stream or sys.stdout
        self.environ = environ

    def run_finished(self, end: RunEnd) -> None:
        annotation = run_annotation(end)
        if annotation:
            self.stream.write(self.redactor.mask(annotation) + "\n")
            self.stream.flush()
        mask = self.redactor.mask
        _append(self.environ.get("GITHUB_STEP_SUMMARY"), mask(summary_markdown(end)))
        _append(self.environ.get("GITHUB_OUTPUT"), mask(output_lines(step_outputs(end))))


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
