"""The fake gh (tests/fakes/gh) behaves as tests/fakes/README-gh.md says gh v2.60.0 does: run
as a subprocess, as shipyard.github runs it, against a state file in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.gh_state import (
    REPOSITORY,
    FakeGh,
    error_body,
    failed_deploy_run,
    job,
    new_run,
    protection_body,
    put_api,
    step,
)
from helpers import random_secret

API = f"https://api.github.com/repos/{REPOSITORY}"


@pytest.fixture
def gh(tmp_path: Path) -> FakeGh:
    return FakeGh(tmp_path, token="ghp_" + random_secret())


def add_runs(gh: FakeGh, *runs: dict) -> None:
    with gh.change() as state:
        state["runs"].extend(runs)


# --- authentication --------------------------------------------------------------------


def test_version_needs_no_token(gh: FakeGh) -> None:
    result = gh.run("--version", GH_TOKEN=None)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "gh version 2.60.0 (2024-10-24)\nhttps://github.com/cli/cli/releases/tag/v2.60.0\n"
    )


def test_a_command_without_any_token_exits_4_with_gh_auth_login(gh: FakeGh) -> None:
    result = gh.run("run", "list", "--json", "url", GH_TOKEN=None)
    assert result.returncode == 4
    assert result.stdout == ""
    assert "please run:  gh auth login" in result.stderr
    assert "populate the GH_TOKEN environment variable" in result.stderr


def test_in_actions_the_auth_help_names_github_token(gh: FakeGh) -> None:
    result = gh.run("api", "repos/{owner}/{repo}", GH_TOKEN=None, GITHUB_ACTIONS="true")
    assert result.returncode == 4
    assert "GH_TOKEN: ${{ github.token }}" in result.stderr


def test_auth_status_logged_in_shows_the_account_and_hides_the_token(tmp_path: Path) -> None:
    token = "ghp_" + "a1b2c3d4e5" * 4  # pragma: allowlist secret
    gh = FakeGh(tmp_path, token=token)
    result = gh.run("auth", "status")
    assert result.returncode == 0
    assert result.stdout.splitlines()[:2] == [
        "github.com",
        "  ✓ Logged in to github.com account octocat (GH_TOKEN)",
    ]
    assert f"  - Token: ghp_{'*' * 40}" in result.stdout
    assert "  - Token scopes: 'gist', 'read:org', 'repo', 'workflow'" in result.stdout
    assert token not in result.stdout + result.stderr


def test_auth_status_shows_a_token_up_to_its_last_underscore(tmp_path: Path) -> None:
    """gh's displayToken keeps a prefix; a token without gh's own prefix shows part of itself
    (why Shipyard says only the `Logged in` line)."""
    gh = FakeGh(tmp_path, token="first_part_secret")
    assert "  - Token: first_part_******" in gh.run("auth", "status").stdout


def test_auth_status_without_any_login_exits_1(gh: FakeGh) -> None:
    result = gh.run("auth", "status", GH_TOKEN=None)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "You are not logged into any GitHub hosts. To log in, run: gh auth login\n"
    )


def test_auth_status_with_a_refused_token_exits_1_on_stderr(gh: FakeGh) -> None:
    with gh.change() as state:
        state["token_valid"] = False
    result = gh.run("auth", "status")
    assert result.returncode == 1
    assert "  X Failed to log in to github.com using token (GH_TOKEN)" in result.stderr
    assert "  - The token in GH_TOKEN is invalid." in result.stderr


def test_a_stored_login_is_used_without_an_environment_token(gh: FakeGh) -> None:
    with gh.change() as state:
        state["login"]["stored"] = True
    result = gh.run("auth", "status", GH_TOKEN=None)
    assert result.returncode == 0
    assert "gh-config/hosts.yml)" in result.stdout
    assert gh.calls[-1]["token_source"] == "hosts.yml"


def test_calls_record_where_the_token_came_from_never_its_value(gh: FakeGh) -> None:
    gh.run("api", "repos/{owner}/{repo}")
    gh.run("api", "repos/{owner}/{repo}", GH_TOKEN=None, GITHUB_TOKEN="x" * 20)
    assert [call["token_source"] for call in gh.calls] == ["GH_TOKEN", "GITHUB_TOKEN"]
    assert gh.env["GH_TOKEN"] not in gh.path.read_text()


# --- gh run list -------------------------------------------------------------------------


def test_run_list_json_is_compact_sorted_and_newest_first(gh: FakeGh) -> None:
    add_runs(
        gh,
        new_run(101, [], created="2026-12-01T09:00:00Z"),
        new_run(103, [], created="2026-12-01T11:00:00Z", conclusion="success"),
        new_run(102, [], created="2026-12-01T10:00:00Z"),
    )
    result = gh.run(
        "run", "list", "--workflow", "deploy-staging.yml", "--status", "failure",
        "--limit", "1", "--json", "url,databaseId,workflowName",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        '[{"databaseId":102,"url":"https://github.com/octo-org/webapp/actions/runs/102",'
        '"workflowName":"deploy-staging"}]\n'
    )


def test_run_list_with_no_match_prints_an_empty_list(gh: FakeGh) -> None:
    result = gh.run("run", "list", "-s", "failure", "--json", "databaseId")
    assert (result.returncode, result.stdout) == (0, "[]\n")


def test_run_list_refuses_an_unknown_json_field(gh: FakeGh) -> None:
    result = gh.run("run", "list", "--json", "id")
    assert result.returncode == 1
    assert result.stderr.startswith('Unknown JSON field: "id"\nAvailable fields:\n  attempt\n')


def test_run_list_refuses_an_unknown_status_and_a_zero_limit(gh: FakeGh) -> None:
    bad_status = gh.run("run", "list", "--status", "red", "--json", "url")
    assert bad_status.returncode == 1
    assert 'invalid argument "red" for "-s, --status" flag: valid values are {' in bad_status.stderr
    zero = gh.run("run", "list", "--limit", "0", "--json", "url")
    assert (zero.returncode, zero.stderr) == (1, "invalid limit: 0\n")


def test_run_list_of_a_workflow_file_the_repository_lacks_is_a_404(gh: FakeGh) -> None:
    result = gh.run("run", "list", "--workflow", "deploy-prod.yml", "--json", "url")
    assert result.returncode == 1
    assert result.stderr == (f"HTTP 404: Not Found ({API}/actions/workflows/deploy-prod.yml)\n")


def test_run_list_of_a_workflow_name_the_repository_lacks(gh: FakeGh) -> None:
    result = gh.run("run", "list", "--workflow", "Deploy Prod", "--json", "url")
    assert (result.returncode, result.stderr) == (
        1,
        "could not find any workflows named Deploy Prod\n",
    )
    by_name = gh.run("run", "list", "--workflow", "DEPLOY-STAGING", "--json", "url")
    assert by_name.returncode == 0


def test_run_list_with_a_refused_token_says_how_to_log_in(gh: FakeGh) -> None:
    with gh.change() as state:
        state["token_valid"] = False
    result = gh.run("run", "list", "--workflow", "deploy-staging.yml", "--json", "url")
    assert result.returncode == 1
    assert result.stderr == (
        f"HTTP 401: Bad credentials ({API}/actions/workflows/deploy-staging.yml)\n"
        "Try authenticating with:  gh auth login\n"
    )


def test_without_a_git_remote_the_repository_comes_from_gh_repo(tmp_path: Path) -> None:
    gh = FakeGh(tmp_path, token="t" * 20)
    with gh.change() as state:
        state["repository"] = None
    lost = gh.run("run", "list", "--json", "url")
    assert (lost.returncode, lost.stderr) == (
        1,
        "failed to determine base repo: no git remotes found\n",
    )
    assert gh.run("run", "list", "--json", "url", GH_REPO=REPOSITORY).returncode == 0


# --- gh run view -------------------------------------------------------------------------


def test_run_view_json_jobs_carry_gh_field_names(gh: FakeGh) -> None:
    add_runs(gh, failed_deploy_run(200, ["boom"]))
    result = gh.run("run", "view", "200", "--json", "jobs,conclusion,headSha")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert list(document) == ["conclusion", "headSha", "jobs"]
    deploy = document["jobs"][1]
    assert list(deploy) == [
        "completedAt", "conclusion", "databaseId", "name", "startedAt", "status", "steps", "url",
    ]  # fmt: skip
    assert list(deploy["steps"][2]) == [
        "completedAt", "conclusion", "name", "number", "startedAt", "status",
    ]  # fmt: skip
    assert (deploy["name"], deploy["conclusion"], deploy["steps"][2]["name"]) == (
        "deploy (staging)", "failure", "Deploy",
    )  # fmt: skip


def test_run_view_of_an_unknown_run(gh: FakeGh) -> None:
    result = gh.run("run", "view", "999", "--json", "url")
    assert result.returncode == 1
    assert result.stderr == (
        f"failed to get run: HTTP 404: Not Found ({API}/actions/runs/999"
        "?exclude_pull_requests=true)\n"
    )


def test_run_view_needs_an_id_when_not_interactive(gh: FakeGh) -> None:
    result = gh.run("run", "view", "--json", "url")
    assert (result.returncode, result.stderr) == (
        1, "run or job ID required when not running interactively\n",
    )  # fmt: skip


def test_log_failed_prints_failed_steps_as_job_step_line(gh: FakeGh) -> None:
    passing = job("lint", [step("Lint", 1, log=["fine"])], job_id=1, run_id=300)
    failing = job(
        "deploy",
        [step("Deploy", 2, "failure", log=["one", "two"]), step("Setup", 1, "failure", log=["s"])],
        job_id=2,
        run_id=300,
    )
    add_runs(gh, new_run(300, [passing, failing]))
    result = gh.run("run", "view", "300", "--log-failed")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "deploy\tSetup\t2026-12-01T10:00:00.0000000Z s\n"
        "deploy\tDeploy\t2026-12-01T10:00:00.0000000Z one\n"
        "deploy\tDeploy\t2026-12-01T10:00:00.0000000Z two\n"
    )
    everything = gh.run("run", "view", "300", "--log")
    assert "lint\tLint\t" in everything.stdout


def test_log_failed_waits_for_the_run_to_complete(gh: FakeGh) -> None:
    add_runs(gh, new_run(400, [], status="in_progress"))
    result = gh.run("run", "view", "400", "--log-failed")
    assert result.returncode == 1
    assert result.stderr == (
        "run 400 is still in progress; logs will be available when it is complete\n"
    )


def test_log_failed_of_a_run_whose_logs_are_gone(gh: FakeGh) -> None:
    run = failed_deploy_run(500, ["x"])
    run["logs_available"] = False
    add_runs(gh, run)
    result = gh.run("run", "view", "500", "--log-failed")
    assert (result.returncode, result.stderr) == (1, "failed to get run log: log not found\n")


def test_log_and_log_failed_together_are_refused(gh: FakeGh) -> None:
    add_runs(gh, failed_deploy_run(600, ["x"]))
    result = gh.run("run", "view", "600", "--log", "--log-failed")
    assert (result.returncode, result.stderr) == (1, "specify only one of --log or --log-failed\n")


# --- gh api ------------------------------------------------------------------------------


def test_api_fills_owner_and_repo_and_prints_the_body(gh: FakeGh) -> None:
    with gh.change() as state:
        put_api(state, f"repos/{REPOSITORY}/branches/main/protection", protection_body(["c"]))
    result = gh.run("api", "repos/{owner}/{repo}/branches/main/protection")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["required_status_checks"]["contexts"] == ["c"]


def test_api_http_error_body_on_stdout_and_message_on_stderr(gh: FakeGh) -> None:
    with gh.change() as state:
        body = error_body("Branch not protected", 404)
        put_api(state, f"repos/{REPOSITORY}/branches/main/protection", body, status=404)
    result = gh.run("api", "/repos/{owner}/{repo}/branches/main/protection")
    assert result.returncode == 1
    assert json.loads(result.stdout)["message"] == "Branch not protected"
    assert result.stderr == "gh: Branch not protected (HTTP 404)\n"


def test_api_with_a_refused_token_is_a_401(gh: FakeGh) -> None:
    with gh.change() as state:
        state["token_valid"] = False
    result = gh.run("api", "repos/{owner}/{repo}")
    assert (result.returncode, result.stderr) == (1, "gh: Bad credentials (HTTP 401)\n")


def test_api_offline_is_an_error_without_http_status(gh: FakeGh) -> None:
    with gh.change() as state:
        state["offline"] = True
    result = gh.run("api", "repos/{owner}/{repo}")
    assert result.returncode == 1
    assert result.stderr == (
        "error connecting to api.github.com\n"
        "check your internet connection or https://githubstatus.com\n"
    )


def test_what_the_fake_does_not_implement_says_so(gh: FakeGh) -> None:
    result = gh.run("api", "--method", "PUT", "repos/{owner}/{repo}/environments/x")
    assert result.returncode == 64
    assert result.stderr.startswith("fake gh: not implemented: ")
