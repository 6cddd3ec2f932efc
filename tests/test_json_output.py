"""`--json` on every command that reports (docs/cli.md, "JSON output"): stdout is exactly one
JSON document, the progress goes to stderr, the exit code is the one the command has without
`--json`, and every secret is masked in it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import cli_env, evidence_dir, random_secret, run_here, write_project
from test_deploy import Staging, staging_fixture  # noqa: F401 - the `staging` fixture

from shipyard.redact import ENGINE_VARIABLE, ENGINES, default_engine

GATES = """
version: 1
steps:
  a: {run: "echo alpha"}
  b: {run: "echo beta; exit 4"}
  build: {run: "mkdir -p dist && echo app > dist/app.txt"}
  later: {run: "echo never"}
gates: [a, b]
"""
RUN_KEYS = ["command", "run_id", "outcome", "exit_code", "reason", "evidence", "steps", "warnings"]
STEP_KEYS = ["name", "status", "exit_code", "duration", "attempts", "log", "error"]


def document(done: subprocess.CompletedProcess[str]) -> dict:
    """stdout as the one JSON document it must be (json.loads refuses anything around it)."""
    assert "\x1b" not in done.stdout
    return json.loads(done.stdout)


def check_run(root: Path, shown: dict, *, outcome: str, exit_code: int) -> None:
    """The fields every run's document has, and that they agree with its run record."""
    assert set(RUN_KEYS) <= set(shown)
    assert (shown["outcome"], shown["exit_code"]) == (outcome, exit_code)
    assert shown["evidence"] == f"{evidence_dir(root).relative_to(root).as_posix()}/"
    record = json.loads((root / shown["evidence"] / "runs" / f"{shown['run_id']}.json").read_text())
    assert (record["outcome"], record["exit_code"]) == (outcome, exit_code)
    assert [step["name"] for step in shown["steps"]] == [step["name"] for step in record["steps"]]
    for step in shown["steps"]:
        assert list(step) == STEP_KEYS
        assert step["log"] is None or (root / step["log"]).is_file()


def test_gates_json(project):
    root = project(GATES)
    done = run_here(["gates", "--json", "--jobs", "2"], root)
    assert done.returncode == 1
    shown = document(done)
    check_run(root, shown, outcome="failed", exit_code=1)
    assert shown["reason"] == "failed: b (exit 4)"
    assert shown["command"].endswith("inv gates --json --jobs 2")
    a, b = shown["steps"]
    assert (a["name"], a["status"], a["exit_code"], a["attempts"]) == ("a", "ok", 0, 1)
    assert (b["name"], b["status"], b["exit_code"]) == ("b", "failed", 4)
    assert (root / b["log"]).read_text() == "beta\n"
    assert shown["warnings"] == []
    # the people's progress went to stderr, the step's own output included
    assert "<== b: failed (exit 4" in done.stderr and "beta" in done.stderr


def test_step_json(project):
    root = project(GATES)
    done = run_here(["step", "a", "--json"], root)
    assert done.returncode == 0
    shown = document(done)
    check_run(root, shown, outcome="ok", exit_code=0)
    assert shown["reason"] is None
    assert [step["name"] for step in shown["steps"]] == ["a"]


def test_build_json(project):
    root = project(GATES)
    done = run_here(["build", "--json", "--quiet"], root)
    assert done.returncode == 0
    shown = document(done)
    check_run(root, shown, outcome="ok", exit_code=0)
    assert shown["steps"][0]["name"] == "build" and (root / "dist" / "app.txt").exists()
    assert done.stderr.startswith("ok · evidence in ")  # -q: the last line alone, on stderr
    assert done.stderr.count("\n") == 1


def test_a_refusal_before_the_run_is_a_json_document_too(project):
    root = project(GATES)
    done = run_here(["step", "nosuch", "--json"], root)
    assert done.returncode == 2
    shown = document(done)
    assert shown == {
        "outcome": "refused",
        "exit_code": 2,
        "reason": "unknown step 'nosuch'; configured steps: a, b, build, later",
    }
    assert done.stderr.strip() == shown["reason"]
    assert not (root / "artifacts").exists()


def test_secrets_are_masked_in_json(tmp_path):
    secret = random_secret()
    root = write_project(tmp_path / f"at-{secret}", GATES)
    config = str(root / "shipyard.yaml")
    done = run_here(
        ["step", "a", "--json", "--config", config], root, env=cli_env(APP_TOKEN=secret)
    )
    assert done.returncode == 0
    shown = document(done)
    assert secret not in done.stdout + done.stderr
    assert shown["command"].endswith(f"--config {tmp_path}/at-***/shipyard.yaml")


def test_json_in_github_actions_keeps_stdout_for_the_document(project):
    root = project(GATES)
    secret = random_secret()
    env = cli_env(GITHUB_ACTIONS="true", CI="true", FORCE_COLOR="1", APP_TOKEN=secret)
    done = run_here(["gates", "--json"], root, env=env)
    assert done.returncode == 1
    assert document(done)["outcome"] == "failed"
    assert f"::add-mask::{secret}" in done.stderr.splitlines()
    commands = [line for line in done.stderr.splitlines() if line.startswith("::")]
    assert "::group::b" in commands
    assert "::error title=Shipyard%3A failed (exit 1)::failed: b (exit 4)" in commands
    assert all("\x1b" not in line for line in commands)


def test_doctor_json(project):
    root = project(GATES.replace("echo alpha", "no-such-tool-here --check"))
    done = run_here(["doctor", "--json"], root)
    assert done.returncode == 2
    shown = document(done)
    assert list(shown) == ["ready", "problems", "checks"]
    assert (shown["ready"], shown["problems"]) == (False, 1)
    failed = [check for check in shown["checks"] if not check["ok"]]
    assert failed == [{"ok": False, "detail": "step a: `no-such-tool-here` not found on PATH"}]
    assert any(check["detail"].startswith("python ") for check in shown["checks"])
    assert done.stderr == ""


def test_doctor_json_when_the_config_does_not_load(project):
    root = project("version: 1\nsteps: [oops]\n")
    done = run_here(["doctor", "--json"], root)
    assert done.returncode == 2
    shown = document(done)
    assert shown["ready"] is False and shown["checks"][-1]["ok"] is False
    assert "shipyard.yaml:2" in shown["checks"][-1]["detail"]


def test_evidence_verify_json(project):
    root = project(GATES)
    run_here(["step", "a"], root)
    day = evidence_dir(root)
    log = next((day / "logs").rglob("a.log"))
    log.write_text("edited\n")
    done = run_here(["evidence.verify", "--json", "--date", day.name], root)
    assert done.returncode == 1
    shown = document(done)
    assert (shown["date"], shown["ok"], shown["seals"]) == (day.name, False, 1)
    assert shown["evidence"] == f"artifacts/devops/{day.name}/"
    changed = [f for f in shown["findings"] if f["kind"] == "changed"]
    assert [f["path"] for f in changed] == [log.relative_to(day).as_posix()]
    assert set(changed[0]) == {"kind", "path", "notes", "breaks_seal"}
    assert changed[0]["breaks_seal"] is True


def test_evidence_verify_json_names_a_missing_day(project):
    root = project(GATES)
    done = run_here(["evidence.verify", "--json", "--date", "2001-01-01"], root)
    assert done.returncode == 2
    assert document(done)["reason"].startswith("no evidence for 2001-01-01")


def test_deploy_json(staging):
    app = staging()
    done = app.here("deploy.staging", "--json")
    assert done.returncode == 0, done.stderr
    shown = document(done)
    check_run(app.root, shown, outcome="ok", exit_code=0)
    assert [step["name"] for step in shown["steps"]] == [
        "Build application",
        "Smoke",
        "Deploy",
        "Smoke staging",
    ]
    assert shown["serving"] == "v1"
    record = shown["deploy"]
    assert (record["environment"], record["release"], record["previous"]) == ("staging", "v1", None)
    assert record["artifact"].startswith("dist/webapp-") and len(record["artifact_sha256"]) == 64
    assert "<== Smoke staging: ok" in done.stderr


def test_deploy_dry_run_json(staging):
    app = staging()
    done = app.here("deploy.staging", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    shown = document(done)
    check_run(app.root, shown, outcome="ok", exit_code=0)
    assert [step["name"] for step in shown["steps"]] == ["Deploy (dry-run)"]
    record = shown["deploy"]
    assert (record["dry_run"], record["planned"], record["release"]) == (True, "v1", None)
    assert shown["serving"] is None
    assert app.current() is None


def test_rollback_json_with_nothing_to_roll_back(staging):
    app = staging()
    done = app.here("rollback", "--json")
    assert done.returncode == 6
    shown = document(done)
    check_run(app.root, shown, outcome="refused", exit_code=6)
    assert (shown["current"], shown["to"], shown["possible"]) == (None, None, False)
    assert shown["rollback"]["plan"]["reason"].startswith("no ")  # the plan's own why
    assert shown["steps"] == []


def test_releases_json(staging):
    app = staging()
    assert app.here("deploy.staging", "-q").returncode == 0
    done = app.here("releases", "--json")
    assert done.returncode == 0
    (release,) = document(done)
    assert (release["version"], release["status"], release["current"]) == ("v1", "complete", True)


def test_status_json_keeps_its_exit_code(staging):
    app = staging()
    done = app.here("status", "--json")
    assert done.returncode == 1  # nothing healthy serves: as without --json
    shown = document(done)
    assert (shown["environment"], shown["current"], shown["serving"]) == ("staging", None, None)
    assert shown["mismatch"] is False and shown["healthy"] is not True


@pytest.mark.parametrize("task", ["gates", "doctor", "evidence.verify", "status", "releases"])
def test_every_reporting_task_offers_json(project, task):
    root = project(GATES)
    done = run_here(["--help", task], root)
    assert "--json" in done.stdout and "--no-color" in done.stdout


@pytest.mark.parametrize("engine", list(ENGINES))
def test_the_masking_engine_chosen_is_named_by_doctor_and_the_run_record(project, engine):
    root = project(
        "version: 1\nsecrets: [DEPLOY_KEY]\nsteps:\n  say: {run: 'echo k=$DEPLOY_KEY'}\n"
    )
    secret = random_secret()
    env = cli_env(**{ENGINE_VARIABLE: engine, "DEPLOY_KEY": secret})
    checks = document(run_here(["doctor", "--json"], root, env=env))["checks"]
    (line,) = [check for check in checks if check["detail"].startswith("masking engine: ")]
    assert line == {"ok": True, "detail": line["detail"]}
    assert line["detail"].startswith(f"masking engine: {engine}")
    assert run_here(["step", "say"], root, env=env).returncode == 0
    (record,) = [json.loads(p.read_text()) for p in (evidence_dir(root) / "runs").glob("*.json")]
    assert record["masking_engine"] == line["detail"].removeprefix("masking engine: ")
    (log,) = (evidence_dir(root) / "logs").rglob("say.log")
    assert log.read_text() == "k=***\n"


def test_an_engine_that_is_not_installed_is_a_problem_doctor_names(project):
    root = project(
        "version: 1\nsecrets: [DEPLOY_KEY]\nsteps:\n  say: {run: 'echo k=$DEPLOY_KEY'}\n"
    )
    env = cli_env(**{ENGINE_VARIABLE: "turbo", "DEPLOY_KEY": random_secret()})
    done = run_here(["doctor"], root, env=env)
    assert done.returncode == 2
    expected = f"{ENGINE_VARIABLE}='turbo' names no engine installed here ({', '.join(ENGINES)})"
    assert f"FAIL masking engine: {default_engine()}" in done.stdout
    assert expected in done.stdout
    assert run_here(["step", "say"], root, env=env).returncode == 0  # masked by the default
    (log,) = (evidence_dir(root) / "logs").rglob("say.log")
    assert log.read_text() == "k=***\n"
