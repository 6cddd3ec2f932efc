"""`inv audit.github` (shipyard.repo_audit): the repository's branch protection, environments,
environment secrets (names only), secret scanning and Actions token, read through gh (the fake
in tests/fakes, answering as GitHub's REST reference says: README-gh.md), each finding with its
fix; exit 1 when any is not ok, 2 when gh is missing or logged out."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakes.gh_state import (
    FAKES,
    REPOSITORY,
    STATE_ENV,
    FakeGh,
    environment_body,
    environments_body,
    error_body,
    gate_checks,
    protection_body,
    put_api,
    repo_body,
    rules_body,
    secrets_body,
    well_kept,
    workflow_permissions_body,
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
from shipyard.console import Output
from shipyard.errors import ExitCode, Outcome, Verdict
from shipyard.github import ApiAnswer
from shipyard.repo_audit import (
    Repository,
    Status,
    audit_command,
    environment_finding,
    needed_secrets,
    protection_finding,
    scanning_findings,
    secrets_finding,
    token_finding,
)

CONFIG = """
version: 1
heartbeat: {interval: 1s}
secrets: [FLY_API_TOKEN, DATABASE_URL]
steps:
  fmt: {run: "true"}
  lint: {run: "true"}
  "test:ci": {run: "true", shards: 2}
gates: [fmt, lint, "test:ci"]
environments:
  staging: {target: local, start: "python3 -m http.server {port}", port: 18787}
  fly-staging:
    target: fly
    app: webapp-staging
    start: node server.js
    pass_env: [DATABASE_URL, LOG_LEVEL]
"""
LEGS = ["fmt", "lint", "test:ci (1/2)", "test:ci (2/2)"]
BASE = f"repos/{REPOSITORY}"
REPO = Repository(REPOSITORY, "main", "private", None)


@dataclass
class Scene:
    gh: FakeGh
    root: Path
    secret: str
    token: str

    def answer(self, tail: str, body: Any, status: int = 200) -> None:
        with self.gh.change() as state:
            put_api(state, f"{BASE}/{tail}" if tail else BASE, body, status)


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scene:
    token = f"{random_secret()}_{random_secret()}"
    gh = FakeGh(tmp_path, token=token)
    with gh.change() as state:
        well_kept(
            state,
            legs=LEGS,
            environments=("staging", "fly-staging"),
            secrets={"fly-staging": ("FLY_API_TOKEN", "DATABASE_URL")},
        )
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


def audit(
    scene: Scene, capfd: pytest.CaptureFixture[str], *, as_json: bool = False
) -> tuple[Verdict, str, str]:
    verdict = audit_command(
        load_config(scene.root / "shipyard.yaml"), output=Output(as_json=as_json)
    )
    captured = capfd.readouterr()
    return verdict, captured.out, captured.err


def leaks(scene: Scene, *printed: str) -> list[str]:
    files = [*(scene.root / "artifacts").rglob("*"), *(scene.root / "feedback").rglob("*")]
    places = {str(p): p.read_text(errors="replace") for p in files if p.is_file()}
    places["printed"] = "".join(printed)
    places["gh argv"] = json.dumps([call["argv"] for call in scene.gh.calls])
    windows = [scene.token[i : i + 12] for i in range(len(scene.token) - 11)]
    return [
        where
        for where, text in places.items()
        if scene.secret in text or any(window in text for window in windows)
    ]


# --- the whole audit, through the fake gh ------------------------------------------------


def test_a_well_kept_repository_passes_every_check(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    verdict, out, _ = audit(scene, capfd)
    assert (verdict.outcome, verdict.exit_code) == (Outcome.OK, ExitCode.OK)
    findings = [
        line for line in out.splitlines() if line.startswith(("ok  ", "FAILED ", "UNKNOWN "))
    ]
    assert findings == [
        "ok       branch protection: main requires every gate: fmt (Python 3.12),"
        " lint (Python 3.12), test:ci (1/2) (Python 3.12), test:ci (2/2) (Python 3.12)",
        "ok       environment staging: staging exists, protected by required reviewers and"
        " deployment branches, self-review prevented",
        "ok       environment fly-staging: fly-staging exists, protected by required reviewers"
        " and deployment branches, self-review prevented",
        "ok       secrets of staging: staging (local) needs no secret",
        "ok       secrets of fly-staging: FLY_API_TOKEN, DATABASE_URL set (names only; values"
        " never read)",
        "ok       secret scanning: enabled",
        "ok       push protection: enabled",
        "ok       actions token: the default GITHUB_TOKEN is read-only",
    ]
    (report,) = evidence_dir(scene.root).glob("reports/*/github-audit.json")
    kept = json.loads(report.read_text())
    assert (kept["repository"], kept["ok"], len(kept["findings"])) == (REPOSITORY, True, 8)
    assert sha256sum_check(evidence_dir(scene.root)).returncode == 0
    assert leaks(scene, out) == []


def test_each_problem_is_found_with_its_fix_and_the_run_fails(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    scene.answer("branches/main/protection", protection_body(gate_checks(LEGS[:3])))
    scene.answer("environments", environments_body(environment_body("staging", ["wait_timer"])))
    scene.answer("environments/fly-staging/secrets", error_body("Not Found", 404), 404)
    scene.answer("", repo_body(push_protection="disabled"))
    scene.answer("actions/permissions/workflow", workflow_permissions_body("write"))
    verdict, out, _ = audit(scene, capfd)
    assert (verdict.outcome, verdict.exit_code) == (Outcome.FAILED, ExitCode.STEP_FAILED)
    assert verdict.reason == (
        "6 of 8 checks did not pass: branch protection, environment staging,"
        " environment fly-staging, secrets of fly-staging, push protection, actions token"
    )
    assert "FAILED   branch protection: main's required checks lack the gates test:ci (2/2)" in out
    assert "`gates / test:ci (2/2) (Python <version>)`" in out
    assert (
        "FAILED   environment staging: staging exists without protection rules (only: wait_timer)"
        in out
    )
    assert f"create it (`gh api --method PUT {BASE}/environments/fly-staging`)" in out
    assert "`gh secret set FLY_API_TOKEN --env fly-staging`" in out
    assert "-f 'security_and_analysis[secret_scanning_push_protection][status]=enabled'" in out
    assert "-f default_workflow_permissions=read" in out
    assert leaks(scene, out) == []


def test_a_token_without_admin_rights_leaves_checks_unknown_not_passed(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    scene.answer("", repo_body(admin=False))
    scene.answer("branches/main/protection", error_body("Not Found", 404), 404)
    scene.answer("actions/permissions/workflow", error_body("Not Found", 404), 404)
    verdict, out, _ = audit(scene, capfd)
    assert verdict.exit_code == ExitCode.STEP_FAILED
    assert "UNKNOWN  branch protection: main's branch protection could not be read" in out
    assert "UNKNOWN  secret scanning: not shown to this token" in out
    assert (
        "UNKNOWN  actions token: could not read the workflow permissions (Not Found (HTTP 404))"
        in out
    )
    assert "fix: run the audit with a token of a repository admin" in out


def test_json_prints_one_document_and_the_run_on_stderr(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    scene.answer("rules/branches/main", rules_body(gate_checks(LEGS, ("3.10", "3.13"))))
    scene.answer("branches/main/protection", error_body("Branch not protected", 404), 404)
    verdict, out, err = audit(scene, capfd, as_json=True)
    document = json.loads(out)  # stdout is the document and nothing else
    assert verdict.ok
    assert (document["ok"], document["outcome"], document["exit_code"]) == (True, "ok", 0)
    assert document["repository"] == REPOSITORY
    assert document["evidence"].startswith("artifacts/devops/")
    assert document["findings"][0] == {
        "check": "branch protection",
        "status": "ok",
        "detail": "main requires every gate: fmt (Python 3.10, 3.13), lint (Python 3.10, 3.13),"
        " test:ci (1/2) (Python 3.10, 3.13), test:ci (2/2) (Python 3.10, 3.13)",
        "fix": None,
    }
    assert "==> Branch protection: started" in err
    assert leaks(scene, out, err) == []


def test_gh_missing_is_refused_and_json_still_prints_one_document(
    scene: Scene, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("git", "python3"):
        (tools / tool).symlink_to(shutil.which(tool) or sys.executable)
    monkeypatch.setenv("PATH", str(tools))
    verdict, out, _ = audit(scene, capfd, as_json=True)
    assert (verdict.outcome, verdict.exit_code) == (Outcome.REFUSED, ExitCode.USAGE)
    document = json.loads(out)
    assert (document["outcome"], document["exit_code"], document["findings"]) == ("refused", 2, [])
    assert "the GitHub CLI (gh) is not on PATH" in document["reason"]


def test_not_logged_in_is_refused_with_the_fix(
    scene: Scene, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GH_TOKEN")
    verdict, _, _ = audit(scene, capfd)
    assert (verdict.outcome, verdict.exit_code) == (Outcome.REFUSED, ExitCode.USAGE)
    assert "run `gh auth login`, or set GH_TOKEN" in verdict.reason


def test_a_repository_gh_cannot_see_fails_at_once(
    scene: Scene, capfd: pytest.CaptureFixture[str]
) -> None:
    scene.answer("", error_body("Not Found", 404), 404)
    verdict, out, _ = audit(scene, capfd)
    assert (verdict.outcome, verdict.exit_code) == (Outcome.FAILED, ExitCode.STEP_FAILED)
    assert (
        "Repository (exit 1: `gh api repos/{owner}/{repo}`: Not Found (HTTP 404))" in verdict.reason
    )
    assert "Branch protection" not in out


# --- branch protection -------------------------------------------------------------------


def answer(body: Any, status: int = 200) -> ApiAnswer:
    message = body.get("message", "") if isinstance(body, dict) and status >= 400 else ""
    return ApiAnswer("path", status, body, message)


NOT_PROTECTED = answer(error_body("Branch not protected", 404), 404)
NO_RULES = answer([])


def test_required_checks_count_from_protection_and_rulesets_together() -> None:
    classic = answer(protection_body(gate_checks(["fmt", "lint"], ("3.12",))))
    rules = answer(rules_body(gate_checks(["test:ci (1/2)", "test:ci (2/2)"], ("3.10",))))
    finding = protection_finding("main", LEGS, classic, rules)
    assert finding.status is Status.OK


def test_a_gate_required_on_no_python_is_missing() -> None:
    checks = ["gates / fmt", "gates / lint-extra (Python 3.12)", "lint (Python 3.12)"]
    finding = protection_finding("main", ["fmt", "lint"], answer(protection_body(checks)), NO_RULES)
    assert finding.status is Status.FAILED
    assert finding.detail == "main's required checks lack the gates fmt"


def test_a_branch_with_no_rule_at_all_is_not_protected() -> None:
    finding = protection_finding("main", LEGS, NOT_PROTECTED, NO_RULES)
    assert (finding.status, finding.detail) == (
        Status.FAILED,
        "main is not protected (no branch protection rule, no ruleset)",
    )
    assert "Require status checks to pass" in (finding.fix or "")


def test_protection_without_required_checks_lacks_every_gate() -> None:
    body = protection_body([])
    body["required_status_checks"] = None
    finding = protection_finding("main", ["fmt"], answer(body), NO_RULES)
    assert finding.detail == "main's required checks lack the gates fmt"


def test_unreadable_protection_is_unknown_unless_rulesets_require_every_gate() -> None:
    hidden = answer(error_body("Not Found", 404), 404)
    assert protection_finding("main", ["fmt"], hidden, NO_RULES).status is Status.UNKNOWN
    rules = answer(rules_body(gate_checks(["fmt"])))
    assert protection_finding("main", ["fmt"], hidden, rules).status is Status.OK


# --- environments and their secrets ------------------------------------------------------


def test_an_environment_needs_reviewers_or_deployment_branches() -> None:
    assert environment_finding(REPO, "staging", None).status is Status.FAILED
    timer_only = environment_body("staging", ["wait_timer"])
    assert environment_finding(REPO, "staging", timer_only).status is Status.FAILED
    branches = environment_body("staging", ["branch_policy"])
    assert environment_finding(REPO, "staging", branches).detail == (
        "staging exists, protected by deployment branches"
    )


def test_the_secrets_an_environment_needs(scene: Scene) -> None:
    config = load_config(scene.root / "shipyard.yaml")
    assert needed_secrets(config, config.environments["staging"]) == []
    # LOG_LEVEL is passed too, but it is not listed under secrets: no secret needed for it.
    assert needed_secrets(config, config.environments["fly-staging"]) == [
        "FLY_API_TOKEN",
        "DATABASE_URL",
    ]


def test_secret_names_are_compared_as_github_keeps_them() -> None:
    present = answer(secrets_body("fly_api_token"))
    assert secrets_finding("fly", ["FLY_API_TOKEN"], present).status is Status.OK
    missing = secrets_finding("fly", ["FLY_API_TOKEN", "DATABASE_URL"], present)
    assert (missing.status, missing.detail) == (Status.FAILED, "DATABASE_URL missing from fly")
    assert "never put it on a command line" in (missing.fix or "")
    forbidden = secrets_finding("fly", ["X"], answer(error_body("Forbidden", 403), 403))
    assert forbidden.status is Status.UNKNOWN


# --- secret scanning and the Actions token ------------------------------------------------


def test_scanning_hidden_from_a_non_admin_is_unknown() -> None:
    assert [f.status for f in scanning_findings(REPO)] == [Status.UNKNOWN, Status.UNKNOWN]


def test_scanning_disabled_is_failed_with_the_api_call_that_enables_it() -> None:
    security = {"secret_scanning": {"status": "disabled"}}
    scanning, push = scanning_findings(Repository(REPOSITORY, "main", "public", security))
    assert (scanning.status, scanning.detail) == (Status.FAILED, "disabled")
    assert (push.status, push.detail) == (Status.FAILED, "not available")
    assert f"gh api --method PATCH repos/{REPOSITORY}" in (scanning.fix or "")


def test_the_default_actions_token_must_be_read_only() -> None:
    assert token_finding(REPO, answer(workflow_permissions_body("read"))).status is Status.OK
    write = token_finding(REPO, answer(workflow_permissions_body("write")))
    assert (write.status, write.detail) == (Status.FAILED, "the default GITHUB_TOKEN can write")
    assert token_finding(REPO, answer({}, 403)).status is Status.UNKNOWN


# --- end to end, through `inv` (enabled once tasks.py has audit.github) -------------------


@pytest.mark.e2e
def test_inv_audit_github_json_end_to_end(scene: Scene) -> None:
    env = cli_env(
        **{
            STATE_ENV: scene.gh.env[STATE_ENV],
            "GH_TOKEN": scene.token,
            "GH_CONFIG_DIR": scene.gh.env["GH_CONFIG_DIR"],
            "FLY_API_TOKEN": scene.secret,
        }
    )
    env["PATH"] = os.pathsep.join([str(FAKES), str(BIN), env["PATH"]])
    ok = run_cli([str(BIN / "inv"), "audit.github", "--json"], scene.root, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    scene.answer("actions/permissions/workflow", workflow_permissions_body("write"))
    failed = run_cli([str(BIN / "inv"), "audit.github"], scene.root, env=env)
    assert failed.returncode == 1
    assert "FAILED   actions token" in failed.stdout
    assert leaks(scene, ok.stdout, ok.stderr, failed.stdout, failed.stderr) == []
