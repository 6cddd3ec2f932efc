"""The feedback entry: one Markdown section per run, appended to `feedback/<agent>/<date>.md`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import Verdict
from shipyard.evidence import Bundle, Sealed, locked, tail_lines
from shipyard.redact import Redactor
from shipyard.runner import StepResult, StepStatus

TAIL_LINES = 20


@dataclass(frozen=True)
class Addendum:
    """What a command adds to its run's entry beyond the steps: `- ` lines under the heading
    (`Failing run: <url>`), and quoted blocks after the steps, each (title, lines)."""

    lines: Sequence[str] = ()
    quotes: Sequence[tuple[str, Sequence[str]]] = ()


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    command: str
    started: str
    verdict: Verdict
    git_sha: str | None
    results: Sequence[StepResult]
    sealed: Sealed
    warnings: Sequence[str] = ()
    addendum: Addendum = Addendum()


def render(summary: RunSummary, bundle: Bundle) -> str:
    evidence = bundle.dir.relative_to(bundle.root).as_posix()
    verdict = summary.verdict
    heading = f"{verdict.outcome.value} (exit {int(verdict.exit_code)})"
    manifest = summary.sealed.manifest_sha256 or "not rewritten (an earlier seal is broken)"
    parts = [
        f"## {summary.started} · `{summary.command}` · {heading}",
        "",
        *([f"- reason: {_one_line(verdict.reason)}"] if verdict.reason else []),
        f"- run: `{summary.run_id}`, git: `{summary.git_sha or 'unknown'}`",
        f"- evidence: `{evidence}/` (run record `runs/{summary.run_id}.json`)",
        f"- seal sha256: `{summary.sealed.seal_sha256}` (`seals/{summary.run_id}.sha256`)",
        f"- manifest sha256: `{manifest}`",
        *(f"- {_one_line(line)}" for line in summary.addendum.lines),
        *(f"- warning: {_one_line(line)}" for line in summary.warnings),
        "",
        *_table(summary.results),
    ]
    for result in summary.results:
        if result.status not in (StepStatus.OK, StepStatus.SKIPPED):
            parts += _failure(result)
    for title, lines in summary.addendum.quotes:
        parts += _quote(title, lines)
    return "\n".join(parts) + "\n"


def _table(results: Sequence[StepResult]) -> list[str]:
    if not results:
        return ["(no step ran)", ""]
    head = ["| step | status | exit | attempts | duration |", "|---|---|---|---|---|"]
    return [*head, *(_row(result) for result in results), ""]


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("`", "'")


def _row(result: StepResult) -> str:
    exit_code = "" if result.exit_code is None else str(result.exit_code)
    cells = [result.name, result.status.value, exit_code, str(len(result.attempts))]
    return "| " + " | ".join([*cells, f"{result.duration:.1f}s"]) + " |"


def _failure(result: StepResult) -> list[str]:
    title = f"{result.name}: {result.status.value} (exit {result.exit_code})"
    return _quote(title, tail(result.log_path, TAIL_LINES))


def _quote(title: str, lines: Sequence[str]) -> list[str]:
    """A heading and `lines` in a fence that nothing in them can close."""
    fenced = [line.replace("```", "'''") for line in lines]
    return [f"### {_one_line(title)}", "", "```text", *fenced, "```", ""]


def tail(path: Path, count: int) -> list[str]:
    """The log's last lines, with nothing in them that could close the Markdown fence."""
    return [line.replace("```", "'''") for line in tail_lines(path, count)]


def append(summary: RunSummary, bundle: Bundle, redactor: Redactor) -> Path:
    path = bundle.feedback_path
    section = redactor.mask(render(summary, bundle))
    with locked(bundle):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            if handle.tell() == 0:
                handle.write(f"# Feedback: {bundle.agent}, {bundle.date}\n\n")
            handle.write(section + "\n")
    return path
