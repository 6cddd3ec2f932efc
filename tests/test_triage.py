"""`inv ci.triage` (shipyard.triage): the newest failed run of a workflow, its failing job
and step, and its log's tail, read through gh (the fake in tests/fakes, which follows
README-gh.md), as a Shipyard run: masked on the terminal, in the step log, the run record and
the feedback entry. gh missing or logged out: refused (exit 2), with the fix."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from fakes.gh_state import (
    FAKES,
    STATE_ENV,
    FakeGh,
    failed_deploy_run,
    job,
    new_run,
    step,
)
from helpers import (
    BIN,
    cli_env,
    evidence_dir,
    random_secret,
    run_cli,
    sha256sum_check,
    write_project,
)

from shipyard.config import load_config
from shipyard.errors import ExitCode, Outcome, UsageError, Verdict
from shipyard.github import Gh, GhError, GhUnavailable
from shipyard.triage import TAIL_LINES, WorkflowRun, checked_options, triage_command

CONFIG = """
version: 1
heartbeat: {interval: 1s}
secrets: [FLY_API_TOKEN]
steps:
  fmt: {run: "true"}
gates: [fmt]
environments:
  staging: {target: local, start: "python3 -m http.server {port}", port: 18787}
"""
RUN_URL = "https://github.com/octo-org/webapp/actions/runs/{}"


@dataclass
class Scene:
    gh: FakeGh
    root: Path
    secret: str  # FLY_API_TOKEN's value: a secret Shipyard knows, printed by a failing job
    token: str  # GH_TOKEN's value: gh's token, never on a command line

    def add_runs(self, *runs: dict) -> None:
        with self.gh.change() as state:
            state["runs"].extend(runs)


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scene:
    # A token with `_` inside: gh's `auth status` shows such a token up to its last `_`.
    token = f"{random_secret()}_{random_secret()}"
    gh = FakeGh(tmp_path, token=token)
    for name in list(os.environ):
        if name.startswith(("GH_", "GITHUB_", "SHIPYARD_")) or name == "CI":
            monkeypatch.delenv(name)
    for name, value in gh.env.items():
        monkeypatch.setenv(name, value)
    secret = random_secret()
    monkeypatch.setenv("FLY_API_TOKEN", secret)
    root = write_project(tmp_path / "proj", CONFIG)
    monkeypatch.chdir(root)
    return Scene(gh, root, secret, token)


def triage(scene: Scene, capfd: pytest.CaptureFixture[str], **options: str) -> tuple[Verdict, str]:
    verdict = triage_command(load_config(scene.root / "shipyard.yaml"), **options)
    captured = capfd.readouterr()
    return verdict, captured.out + captured.err


def written(root: Path) -> dict[str, str]:
    """Every file the run wrote: the evidence bundle and the feedback entry."""
    files = [*(root / "artifacts").rglob("*"), *(root / "feedback").rglob("*")]
    return {str(p.relative_to(root)): p.read_text(errors="replace") for p in files if p.is_file()}


def leaks(scene: Scene, terminal: str) -> list[str]:
    """Where the secret, or any 12 characters of gh's token, shows: the terminal, a file the
    run wrote, or a command line gh was given."""
    places = {"terminal": terminal, **written(scene.root)}
    places["gh argv"] = json.dumps([call["argv"] for call in scene.gh.calls])
    windows = [scene.token[i : i + 12] for i in range(len(scene.token) - 11)]
    return [
        where
        for where, text in places.items()
        if scene.secret in text or any(window in text for window in windows)
    ]


def step_log(root: Path, name: str) -> str:
    (log,) = evidence_dir(root).glob(f"logs/*/{name}.log")
    return log.read_text()


def feedback(root: Path) -> str:
    (entry,) = (root / "feedback" / "devops").glob("*.md")
    return entry.read_text()


# --- a failed run ------------------------------------------------------------------------


def test_names_the_failed_run_its_job_and_step_and_the_logs_last_lines(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    scene.add_runs(
        failed_deploy_run(41, ["an older failure"], created="2026-11-30T10:00:00Z"),
        failed_deploy_run(42, ["unpacking", "Error: smoke of staging: 502 Bad Gateway"]),
        new_run(43, [], conclusion="success", created="2026-12-01T12:00:00Z"),
    )
    verdict, terminal = triage(scene, capfd)
    assert (verdict.outcome, verdict.exit_code) == (Outcome.OK, ExitCode.OK)
    assert f"failed: {RUN_URL.format(42)}" in terminal
    assert "failing job: deploy (staging), step 3: Deploy (failure)" in terminal
    assert "Error: smoke of staging: 502 Bad Gateway" in terminal
    assert "once fixed, re-run its failed jobs: gh run rerun 42 --failed" in terminal
    assert terminal.rstrip().splitlines()[-1].startswith("ok · evidence in artifacts/devops/")
    log = step_log(scene.root, "Failing_step_s_log")
    assert log.splitlines()[1:] == [
        "2026-12-01T10:00:00.0000000Z unpacking",
        "2026-12-01T10:00:00.0000000Z Error: smoke of staging: 502 Bad Gateway",
    ]
    entry = feedback(scene.root)
    assert f"- Failing run: {RUN_URL.format(42)}\n" in entry
    assert "- Failing job: deploy (staging), step: Deploy\n" in entry
    assert "### deploy (staging) / Deploy: the last 2 lines of its log" in entry
    assert "Z Error: smoke of staging: 502 Bad Gateway\n```" in entry
    assert sha256sum_check(evidence_dir(scene.root)).returncode == 0


def test_a_secret_in_the_failing_log_is_masked_everywhere_and_no_token_is_on_a_command_line(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    scene.add_runs(
        failed_deploy_run(
            7, [f"flyctl deploy --access-token {scene.secret}", f"Error: {scene.secret} refused"]
        )
    )
    verdict, terminal = triage(scene, capfd)
    assert verdict.ok
    assert "Z Error: *** refused" in terminal
    assert "Z Error: *** refused" in step_log(scene.root, "Failing_step_s_log")
    assert "Z Error: *** refused" in feedback(scene.root)
    assert leaks(scene, terminal) == []
    assert {call["token_source"] for call in scene.gh.calls} == {"GH_TOKEN"}


def test_the_log_tail_is_its_last_lines_only(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    log = [f"line {n}" for n in range(1, 100)] + ["``` a fence in the log"]
    scene.add_runs(failed_deploy_run(8, log))
    verdict, terminal = triage(scene, capfd)
    assert verdict.ok
    assert f"the last {TAIL_LINES} of 100 lines" in terminal
    assert "Z line 70\n" not in terminal
    assert "Z line 71\n" in terminal
    entry = feedback(scene.root)
    assert entry.count("```") == 2  # the tail's own fence, which nothing in it closes
    assert "Z ''' a fence in the log\n```" in entry


def test_a_failed_step_without_a_log_says_so(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    failing = job("deploy", [step("Deploy", 1, "failure", log=None)], job_id=1, run_id=14)
    scene.add_runs(new_run(14, [failing]))
    verdict, terminal = triage(scene, capfd)
    assert verdict.ok
    assert "gh printed no log for deploy / Deploy" in terminal
    assert "### deploy" not in feedback(scene.root)


def test_a_run_that_failed_before_any_job_is_named_a_workflow_file_issue(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    scene.add_runs(new_run(9, [], conclusion="startup_failure"))
    verdict, terminal = triage(scene, capfd, run_id="9")
    assert verdict.ok
    assert "no job ran: the run likely failed because of a workflow file issue" in terminal
    assert "Failing step's log" not in terminal
    assert f"- Failing run: {RUN_URL.format(9)}" in feedback(scene.root)


def test_a_run_still_running_names_its_failed_job_and_waits_for_its_log(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    failed = job("lint", [step("Lint", 1, "failure", log=["E501"])], job_id=1, run_id=10)
    running = job("test", [], job_id=2, run_id=10, status="in_progress", conclusion="")
    scene.add_runs(new_run(10, [failed, running], status="in_progress"))
    verdict, terminal = triage(scene, capfd, run_id="10")
    assert verdict.ok
    assert "failing job: lint, step 1: Lint (failure)" in terminal
    assert "still in progress: its logs can be read once it has completed" in terminal
    assert not any("--log-failed" in call["argv"] for call in scene.gh.calls)


def test_logs_that_are_gone_fail_the_run_and_keep_its_url(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    run = failed_deploy_run(11, ["x"])
    run["logs_available"] = False
    scene.add_runs(run)
    verdict, _ = triage(scene, capfd)
    assert (verdict.outcome, verdict.exit_code) == (Outcome.FAILED, ExitCode.STEP_FAILED)
    assert "failed to get run log: log not found" in verdict.reason
    assert f"- Failing run: {RUN_URL.format(11)}" in feedback(scene.root)


# --- nothing to triage -------------------------------------------------------------------


def test_no_failed_run_says_so_and_exits_0(scene: Scene, capfd: pytest.CaptureFixture[str]) -> None:
    scene.add_runs(new_run(12, [], conclusion="success"))
    verdict, terminal = triage(scene, capfd)
    assert (verdict.outcome, verdict.exit_code) == (Outcome.OK, ExitCode.OK)
    assert "no failed run of deploy-staging.yml: nothing to triage" in terminal
    assert "- No failed run of deploy-staging.yml\n" in feedback(scene.root)
    searched = next(call["argv"] for call in scene.gh.calls if call["argv"][:2] == ["run", "list"])
    assert searched == [
        "run", "list", "--workflow", "deploy-staging.yml", "--status", "failure",
        "--limit", "1", "--json", "databaseId,url,createdAt",
    ]  # fmt: skip


def test_the_run_option_reads_that_run_even_when_it_did_not_fail(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    scene.add_runs(new_run(13, [], conclusion="success"))
    verdict, terminal = triage(scene, capfd, run_id="13")
    assert verdict.ok
    assert "run 13 did not fail: nothing to triage" in terminal
    assert f"- Run 13 did not fail: {RUN_URL.format(13)}" in feedback(scene.root)


# --- refusals ----------------------------------------------------------------------------


def refused(verdict: Verdict) -> bool:
    return (verdict.outcome, verdict.exit_code) == (Outcome.REFUSED, ExitCode.USAGE)


def test_gh_missing_is_refused_with_how_to_install_it(
    scene: Scene, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tools = tmp_path / "tools"  # python and git, and no gh (GitHub's runners do have one)
    tools.mkdir()
    for tool in ("git", "python3"):
        (tools / tool).symlink_to(shutil.which(tool) or sys.executable)
    monkeypatch.setenv("PATH", str(tools))
    verdict, terminal = triage(scene, capfd)
    assert refused(verdict)
    assert (
        "the GitHub CLI (gh) is not on PATH: install it (https://cli.github.com/" in verdict.reason
    )
    assert "`gh auth login` or set GH_TOKEN" in verdict.reason
    record = json.loads(next(evidence_dir(scene.root).glob("runs/*.json")).read_text())
    assert (record["outcome"], record["exit_code"]) == ("refused", 2)
    assert "refused (exit 2)" in terminal


def test_not_logged_in_is_refused_with_gh_auth_login_or_gh_token(
    scene: Scene, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GH_TOKEN")
    verdict, _ = triage(scene, capfd)
    assert refused(verdict)
    assert "gh is not logged in: You are not logged into any GitHub hosts" in verdict.reason
    assert "run `gh auth login`, or set GH_TOKEN" in verdict.reason


def test_a_refused_token_is_refused_and_stays_masked(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    with scene.gh.change() as state:
        state["token_valid"] = False
    verdict, terminal = triage(scene, capfd)
    assert refused(verdict)
    assert "The token in GH_TOKEN is invalid." in verdict.reason
    assert leaks(scene, terminal) == []


def test_an_unknown_workflow_is_the_options_mistake(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    verdict, _ = triage(scene, capfd, workflow="deploy-prod.yml")
    assert refused(verdict)
    assert verdict.reason.startswith("Find the failed run: --workflow deploy-prod.yml: not found")


def test_an_unknown_run_is_the_options_mistake(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    verdict, _ = triage(scene, capfd, run_id="404")
    assert refused(verdict)
    assert "--run 404: not found in the repository" in verdict.reason


def test_gh_failing_without_an_answer_fails_the_run(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    with scene.gh.change() as state:
        state["offline"] = True
    verdict, _ = triage(scene, capfd)
    assert (verdict.outcome, verdict.exit_code) == (Outcome.FAILED, ExitCode.STEP_FAILED)
    assert "check your internet connection" in verdict.reason


@pytest.mark.parametrize("run_id", ["abc", "12a", "-1"])
def test_a_run_option_that_is_not_a_number_is_refused_before_anything_runs(run_id: str) -> None:
    with pytest.raises(UsageError, match="--run: expected a run's number"):
        checked_options("deploy-staging.yml", run_id)


def test_options_default_to_the_deploy_workflow() -> None:
    assert checked_options("  ", " 42 ") == ("deploy-staging.yml", "42")


# --- reading gh's JSON -------------------------------------------------------------------


def test_the_failing_step_is_the_first_failed_by_number() -> None:
    steps = [
        {"name": "Later", "number": 5, "conclusion": "failure"},
        {"name": "Timed out", "number": 3, "conclusion": "timed_out"},
        {"name": "Fine", "number": 1, "conclusion": "success"},
    ]
    jobs = [
        {"name": "ok", "conclusion": "success", "steps": [steps[2]]},
        {"name": "build", "conclusion": "failure", "url": "u", "steps": steps},
        {"name": "cancelled", "conclusion": "cancelled", "steps": []},
        {"name": "lost runner", "conclusion": "failure", "steps": [steps[2]]},
    ]
    run = WorkflowRun.from_json(
        {"databaseId": 1, "status": "completed", "conclusion": "failure", "jobs": jobs}
    )
    assert [(j.job, j.step, j.number) for j in run.failed_jobs] == [
        ("build", "Timed out", 3),
        ("lost runner", None, None),
    ]
    assert run.failed_jobs[1].describe() == "failing job: lost runner (failure; no step failed)"


# --- the gh client both commands use (shipyard.github) ----------------------------------


def test_a_gh_call_that_hangs_is_stopped_at_its_timeout(tmp_path: Path) -> None:
    fake = FakeGh(tmp_path, token="t" * 20)
    with fake.change() as state:
        state["delay_seconds"] = 60
    gh = replace(Gh.find(tmp_path, environ=fake.env), timeout=0.5)
    began = time.monotonic()
    said = re.escape("`gh api 'repos/{owner}/{repo}'` gave no answer within 0.5s")
    with pytest.raises(GhError, match=said):
        gh.api("repos/{owner}/{repo}")
    assert time.monotonic() - began < 5  # and no process is left (conftest checks)


def test_a_gh_call_ends_when_the_run_is_stopped(tmp_path: Path) -> None:
    fake = FakeGh(tmp_path, token="t" * 20)
    with fake.change() as state:
        state["delay_seconds"] = 60
    stop = threading.Event()
    gh = Gh.find(tmp_path, environ=fake.env, stop=stop)
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(GhError, match="stopped"):
        gh.run("api", "repos/{owner}/{repo}")


def test_api_answers_http_errors_and_refuses_a_rejected_token(tmp_path: Path) -> None:
    fake = FakeGh(tmp_path, token="t" * 20)
    gh = Gh.find(tmp_path, environ=fake.env)
    missing = gh.api("repos/{owner}/{repo}/environments")
    assert (missing.ok, missing.status, missing.describe()) == (False, 404, "Not Found (HTTP 404)")
    with fake.change() as state:
        state["token_valid"] = False
    with pytest.raises(GhUnavailable, match=r"Bad credentials \(HTTP 401\); run `gh auth login`"):
        gh.api("repos/{owner}/{repo}")


# --- end to end, through `inv` (enabled once tasks.py has ci.triage) ---------------------


@pytest.mark.e2e
def test_inv_ci_triage_end_to_end(scene: Scene) -> None:
    env = cli_env(
        **{
            STATE_ENV: scene.gh.env[STATE_ENV],
            "GH_TOKEN": scene.token,
            "GH_CONFIG_DIR": scene.gh.env["GH_CONFIG_DIR"],
            "FLY_API_TOKEN": scene.secret,
        }
    )
    env["PATH"] = os.pathsep.join([str(FAKES), str(BIN), env["PATH"]])
    scene.add_runs(failed_deploy_run(77, [f"Error: {scene.secret} refused"]))
    result = run_cli(
        [str(BIN / "inv"), "ci.triage", "--workflow", "deploy-staging.yml"], scene.root, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"failed: {RUN_URL.format(77)}" in result.stdout
    assert "Z Error: *** refused" in result.stdout
    assert leaks(scene, result.stdout + result.stderr) == []
    missing = run_cli([str(BIN / "inv"), "ci.triage", "--run", "x1"], scene.root, env=env)
    assert missing.returncode == 2
