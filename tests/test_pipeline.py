from __future__ import annotations

import io
import json
import signal
import subprocess
from pathlib import Path

from helpers import GIT

from shipyard.config import Step
from shipyard.console import PlainConsole
from shipyard.errors import ExitCode, Outcome
from shipyard.pipeline import Run, Stop, execute, git_sha, steps_verdict
from shipyard.redact import Redactor
from shipyard.runner import StepResult, StepStatus


def make_run(root: Path, interval: float = 15.0) -> Run:
    return Run(
        root=root, agent="devops", heartbeat_interval=interval, command="test", redactor=Redactor()
    )


def status_result(status: StepStatus) -> StepResult:
    return StepResult("s", status, 0, None, 0.0, (), Path("x.log"))


def test_the_steps_verdict_takes_the_most_severe_status():
    def verdict(*statuses: StepStatus, signum: int | None = None) -> tuple[str, int]:
        stop = Stop()
        if signum is not None:
            stop.by_signal(signum)
        found = steps_verdict([status_result(s) for s in statuses], stop)
        return found.outcome.value, int(found.exit_code)

    assert verdict(StepStatus.OK, StepStatus.OK) == ("ok", 0)
    assert verdict(StepStatus.OK, StepStatus.FAILED, StepStatus.SKIPPED) == ("failed", 1)
    assert verdict(StepStatus.FAILED, StepStatus.TIMEOUT) == ("timed out", 124)
    assert verdict(StepStatus.TIMEOUT, StepStatus.INTERRUPTED) == ("interrupted", 130)
    assert verdict(StepStatus.OK, signum=signal.SIGINT) == ("interrupted", 130)
    assert verdict(StepStatus.OK, signum=signal.SIGHUP) == ("interrupted", 129)
    assert verdict(StepStatus.OK, signum=signal.SIGTERM) == ("interrupted", 143)
    assert verdict() == ("ok", 0)


def test_runs_started_in_the_same_second_get_distinct_ids(tmp_path):
    runs = [make_run(tmp_path) for _ in range(200)]
    assert len({run.run_id for run in runs}) == 200


def test_execute_writes_record_manifest_and_feedback(tmp_path):
    run = make_run(tmp_path)
    steps = [Step("ok", "echo fine"), Step("bad", "echo broken; exit 2")]
    stream = io.StringIO()
    verdict = execute(run, steps, jobs=2, reporter=PlainConsole(stream, live_output=False))
    assert (verdict.outcome, verdict.exit_code) == (Outcome.FAILED, ExitCode.STEP_FAILED)
    assert verdict.reason == "failed: bad (exit 2)"
    record = json.loads(run.bundle.run_record_path(run.run_id).read_text())
    assert [s["status"] for s in record["steps"]] == ["ok", "failed"]
    assert (record["outcome"], record["exit_code"], record["reason"]) == (
        "failed",
        1,
        verdict.reason,
    )
    assert record["steps"][1]["log"] == f"logs/{run.run_id}/bad.log"
    assert record["steps"][1]["attempts"][0]["exit_code"] == 2
    assert run.bundle.manifest_path.exists()
    assert "broken" in run.bundle.feedback_path.read_text()
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("failed (exit 1): failed: bad (exit 2) · evidence in artifacts/devops/")


def test_git_sha_inside_and_outside_a_work_tree(tmp_path):
    assert git_sha(tmp_path) is None
    subprocess.run([*GIT, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*GIT, "commit", "-q", "--allow-empty", "-m", "x"], cwd=tmp_path, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert git_sha(tmp_path) == head.stdout.strip()
