"""`inv ci.triage`: the newest failed run of a workflow (or the run `--run` names), its failing
job and step, and the last lines of that step's log, read through the GitHub CLI:

    GitHub CLI → Find the failed run → Failing step's log

Each is a Python step of a Shipyard run, so the heartbeat, the step logs (masked), the run
record, the seal and the feedback entry come as for any run; the entry adds `Failing run:
<url>`, the failing job and step, and the log's tail. Finding a failed run and reporting it
is a success (exit 0), and so is finding none; gh missing or logged out is refused (exit 2).
See docs/runbooks/red-deploy.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shipyard import github
from shipyard.commands import command_line
from shipyard.config import Config
from shipyard.errors import UsageError, Verdict
from shipyard.feedback import Addendum
from shipyard.github import Gh, GhError, Say
from shipyard.operation import Flow
from shipyard.pipeline import Run
from shipyard.report import ReporterFor
from shipyard.wording import counted

if TYPE_CHECKING:
    from shipyard.console import Output

DEFAULT_WORKFLOW = "deploy-staging.yml"
TAIL_LINES = 30  # of the failing step's log, on the terminal, in its step log and the feedback
GITHUB_CLI = "GitHub CLI"
FIND = "Find the failed run"
LOG = "Failing step's log"
# gh's IsFailureState (cli/cli pkg/cmd/run/shared/shared.go): the conclusions `--log-failed`
# prints a step's log for.
FAILED = frozenset({"action_required", "failure", "startup_failure", "timed_out"})
LIST_FIELDS = "databaseId,url,createdAt"
VIEW_FIELDS = (
    "databaseId,url,status,conclusion,headSha,headBranch,event,workflowName,displayTitle,"
    "attempt,jobs"
)


@dataclass(frozen=True)
class FailedJob:
    """A job of the run that failed, and its first failed step (None: the job failed
    without one, e.g. it was cancelled or its runner was lost)."""

    job: str
    conclusion: str
    url: str
    step: str | None = None
    number: int | None = None

    def describe(self) -> str:
        if self.step is None:
            return f"failing job: {self.job} ({self.conclusion}; no step failed)"
        return f"failing job: {self.job}, step {self.number}: {self.step} ({self.conclusion})"


@dataclass(frozen=True)
class WorkflowRun:
    """A run as `gh run view ID --json …` describes it."""

    run_id: int
    url: str
    workflow: str
    title: str
    branch: str
    sha: str
    event: str
    attempt: int
    status: str
    conclusion: str
    failed_jobs: tuple[FailedJob, ...]
    jobs: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkflowRun:
        jobs = data.get("jobs") or []
        return cls(
            run_id=int(data["databaseId"]),
            url=str(data.get("url", "")),
            workflow=str(data.get("workflowName", "")),
            title=str(data.get("displayTitle", "")),
            branch=str(data.get("headBranch", "")),
            sha=str(data.get("headSha", "")),
            event=str(data.get("event", "")),
            attempt=int(data.get("attempt") or 1),
            status=str(data.get("status", "")),
            conclusion=str(data.get("conclusion", "")),
            failed_jobs=tuple(_failed_jobs(jobs)),
            jobs=len(jobs),
        )

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def failed(self) -> bool:
        """It failed, or (still running) one of its jobs already did."""
        return (self.completed and self.conclusion in FAILED) or bool(self.failed_jobs)

    def lines(self) -> list[str]:
        """What the step says of the run."""
        state = f"{self.status}, {self.conclusion}" if self.conclusion else self.status
        head = (
            f"run {self.run_id} of {self.workflow} (attempt {self.attempt}): {self.title!r}"
            f" on {self.branch} at {self.sha[:12]} ({self.event}): {state}"
        )
        said = [f"{'failed' if self.failed else 'run'}: {self.url}", head]
        said += [job.describe() for job in self.failed_jobs]
        if self.failed and not self.jobs:
            said.append("no job ran: the run likely failed because of a workflow file issue")
        if not self.completed:
            said.append("still in progress: its logs can be read once it has completed")
        elif not self.failed:
            said.append(f"run {self.run_id} did not fail: nothing to triage")
        else:
            said.append(f"once fixed, re-run its failed jobs: gh run rerun {self.run_id} --failed")
        return said


def _failed_jobs(jobs: Sequence[dict[str, Any]]) -> Iterator[FailedJob]:
    for job in jobs:
        steps = sorted(job.get("steps") or [], key=lambda step: int(step.get("number", 0)))
        step = next((s for s in steps if s.get("conclusion") in FAILED), None)
        if job.get("conclusion") not in FAILED and step is None:
            continue
        yield FailedJob(
            job=str(job.get("name", "")),
            conclusion=str(job.get("conclusion") or (step or {}).get("conclusion", "")),
            url=str(job.get("url", "")),
            step=str(step["name"]) if step else None,
            number=int(step["number"]) if step else None,
        )


@dataclass
class Triage:
    """What the run found, filled in by its steps, for its feedback entry."""

    workflow: str
    searched: bool = False  # the step Find the failed run got an answer
    run: WorkflowRun | None = None
    tail: list[str] = field(default_factory=list)

    @property
    def first_failure(self) -> FailedJob | None:
        return self.run.failed_jobs[0] if self.run and self.run.failed_jobs else None

    def addendum(self) -> Addendum:
        found, first = self.run, self.first_failure
        if found is None:
            return Addendum([f"No failed run of {self.workflow}"] if self.searched else [])
        if not found.failed:
            return Addendum([f"Run {found.run_id} did not fail: {found.url}"])
        lines = [f"Failing run: {found.url}"]
        if first is not None:
            lines.append(
                f"Failing job: {first.job}" + (f", step: {first.step}" if first.step else "")
            )
        if not self.tail or first is None:
            return Addendum(lines)
        title = f"{first.job} / {first.step}: the last {counted(len(self.tail), 'line')} of its log"
        return Addendum(lines, [(title, list(self.tail))])


def triage(
    config: Config, *, workflow: str, run_id: str, command: str, reporter: ReporterFor
) -> Verdict:
    """Triage the newest failed run of `workflow`, or the run `run_id` (digits) when given."""
    run = Run.for_config(config, command=command)
    flow = Flow(run, reporter(run.redactor))
    found = Triage(workflow)

    def body() -> Verdict:
        connected: list[Gh] = []
        step = flow.action(
            GITHUB_CLI,
            "gh --version; gh auth status",
            lambda say: connected.append(github.connect(config.root, say, stop=run.stop)),
        )
        if not step.ok:
            return flow.verdict()
        gh = connected[0]
        what = f"gh run view {run_id}" if run_id else f"gh run list --workflow {workflow}"
        if not flow.action(FIND, what, lambda say: _find(gh, found, run_id, say)).ok:
            return flow.verdict()
        failed_run, first = found.run, found.first_failure
        if failed_run and failed_run.completed and first and first.step:

            def read_log(say: Say) -> None:
                found.tail = _log_tail(gh, failed_run.run_id, first, say)

            flow.action(LOG, f"gh run view {failed_run.run_id} --log-failed", read_log)
        return flow.verdict()

    return flow.conclude(body, addendum=found.addendum)


def _find(gh: Gh, found: Triage, run_id: str, say: Say) -> None:
    """The run `run_id`, else the newest failed run of the workflow: said, kept in `found`."""
    if not run_id:
        runs = _read(
            gh,
            f"--workflow {found.workflow}",
            ("run", "list", "--workflow", found.workflow, "--status", "failure"),
            ("--limit", "1", "--json", LIST_FIELDS),
        )
        if not runs:
            found.searched = True
            say(f"no failed run of {found.workflow}: nothing to triage")
            return
        run_id = str(runs[0]["databaseId"])
    found.run = WorkflowRun.from_json(
        _read(gh, f"--run {run_id}", ("run", "view", run_id), ("--json", VIEW_FIELDS))
    )
    found.searched = True
    for line in found.run.lines():
        say(line)


def _read(gh: Gh, option: str, command: Sequence[str], fields: Sequence[str]) -> Any:
    """`gh COMMAND FIELDS`'s document; a workflow or run the repository does not have is the
    option's mistake (exit 2), not a failed call."""
    try:
        return gh.read_json(*command, *fields)
    except GhError as error:
        said = error.result.stderr if error.result else ""
        if error.result and (error.result.http_status == 404 or "could not find any" in said):
            message = error.result.message
            raise UsageError(f"{option}: not found in the repository ({message})") from None
        raise


def _log_tail(gh: Gh, run_id: int, first: FailedJob, say: Say) -> list[str]:
    """The failing step's log, from `gh run view ID --log-failed`: its last TAIL_LINES lines,
    said."""
    printed = gh.checked("run", "view", str(run_id), "--log-failed").stdout
    lines = [
        text for job, step, text in _log_lines(printed) if (job, step) == (first.job, first.step)
    ]
    if not lines:
        kept = "GitHub keeps logs 90 days by default"
        say(f"gh printed no log for {first.job} / {first.step} ({kept})")
        return []
    tail = lines[-TAIL_LINES:]
    say(f"{first.job} / {first.step}: the last {len(tail)} of {counted(len(lines), 'line')}:")
    for line in tail:
        say(line)
    return tail


def _log_lines(printed: str) -> Iterator[tuple[str, str, str]]:
    """`--log-failed` prints `<job>\\t<step>\\t<line>` for each line of each failed step."""
    for line in printed.splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3:
            yield parts[0], parts[1], parts[2]


def checked_options(workflow: str, run_id: str) -> tuple[str, str]:
    """`--workflow` and `--run` as given, or UsageError (exit 2) before anything runs."""
    workflow, run_id = workflow.strip() or DEFAULT_WORKFLOW, run_id.strip()
    if run_id and not run_id.isdigit():
        raise UsageError(
            f"--run: expected a run's number (in its URL, …/actions/runs/<number>), got '{run_id}'"
        )
    return workflow, run_id


def triage_command(
    config: Config,
    *,
    workflow: str = DEFAULT_WORKFLOW,
    run_id: str = "",
    output: Output | None = None,
) -> Verdict:
    """`inv ci.triage [--workflow FILE] [--run ID]`, reported as every run is."""
    from shipyard import reporters

    workflow, run_id = checked_options(workflow, run_id)
    return triage(
        config,
        workflow=workflow,
        run_id=run_id,
        command=command_line(),
        reporter=lambda redactor: reporters.for_run(jobs=1, redactor=redactor, output=output),
    )
