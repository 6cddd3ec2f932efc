"""Every way a command ends is recorded as what it is, the same in every sink: the exit code,
the console's last line, the run record, the feedback heading, the audit entry, the Actions
step summary and its `::error` (issue 10). Real `inv` processes on the example app."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path

import pytest
from helpers import BIN, cli_env, ok, run_cli
from test_deploy import Staging, staging_fixture  # noqa: F401 - the `staging` fixture

from shipyard.lock import DeployLock


def in_actions(app: Staging, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """`inv ARGS` as GitHub Actions runs it; returns the result and the step summary."""
    summary = app.root / "summary.md"
    summary.write_text("")
    env = cli_env(GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary), CI="true")
    return app.here(*args, env=env), summary.read_text()


def assert_verdict(
    app: Staging,
    done: subprocess.CompletedProcess[str],
    summary: str,
    *,
    outcome: str,
    code: int,
    reason: str,
    audit_event: str | None,
) -> dict:
    """Exit code, last line, run record, feedback heading, audit, summary and ::error agree."""
    shown = done.stdout + done.stderr
    assert done.returncode == code, shown
    last = done.stdout.strip().splitlines()[-1]
    headline = "ok" if outcome == "ok" else f"{outcome} (exit {code})"
    assert last.startswith(headline), shown
    assert "evidence in artifacts/devops/" in last
    assert "Traceback" not in shown
    record = app.last_record()
    assert (record["outcome"], record["exit_code"]) == (outcome, code)
    assert reason in (record["reason"] or ""), record
    if outcome != "ok":
        assert reason in last
    feedback = sorted((app.root / "feedback" / "devops").glob("*.md"))[-1].read_text()
    heading = [line for line in feedback.splitlines() if line.startswith("## ")][-1]
    assert heading.endswith(f"· {outcome} (exit {code})"), heading
    assert record["run_id"] in feedback.split(heading)[1]
    if audit_event:
        entries = (app.state / "audit.jsonl").read_text().splitlines()
        entry = json.loads(entries[-1])
        assert entry["event"] == audit_event
        assert (entry["outcome"], entry["exit_code"]) == (outcome, code)
        assert entry["run_id"] == record["run_id"]
    assert f"{outcome} (exit {code})" in summary.splitlines()[0], summary
    errors = [
        line for line in done.stdout.splitlines() if line.startswith("::error title=Shipyard")
    ]
    if outcome == "ok":
        assert not errors
    else:
        assert len(errors) == 1 and f"{outcome} (exit {code})" in errors[0], done.stdout
    return record


def test_rollback_refusals_are_refused_everywhere(staging):
    app = staging()
    done, summary = in_actions(app, "rollback")
    assert_verdict(
        app,
        done,
        summary,
        outcome="refused",
        code=6,
        reason="no current release",
        audit_event="rollback",
    )
    ok(app.here("deploy.staging"))
    done, summary = in_actions(app, "rollback", "--to", "v9")
    assert_verdict(
        app,
        done,
        summary,
        outcome="refused",
        code=2,
        reason="--to v9: no such release",
        audit_event="rollback",
    )
    done, summary = in_actions(app, "rollback", "--to", "v1", "--dry-run")
    record = assert_verdict(
        app,
        done,
        summary,
        outcome="refused",
        code=2,
        reason="--to v1",
        audit_event=None,
    )
    dry = record["steps"][0]
    assert (dry["name"], dry["status"], dry["exit_code"]) == ("Rollback (dry-run)", "failed", 2)
    assert "Rollback (dry-run): ok" not in done.stdout


def test_a_port_held_by_another_process_is_refused_everywhere(staging):
    app = staging()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", app.port))
        squatter.listen()
        done, summary = in_actions(app, "deploy.staging")
        doctor = app.here("doctor")
    record = assert_verdict(
        app,
        done,
        summary,
        outcome="refused",
        code=2,
        reason=f"port {app.port}",
        audit_event="deploy",
    )
    assert record["steps"] == []
    assert "(no step ran)" in summary
    assert f"port {app.port} on 127.0.0.1 is in use" in done.stderr
    assert doctor.returncode == 2 and "doctor: ready" not in doctor.stdout
    assert f"port {app.port}" in doctor.stdout


def test_a_deploy_refused_by_the_lock_is_refused_everywhere(staging):
    app = staging()
    lock = DeployLock(app.state, command="held by the test")
    lock.acquire()
    try:
        done, summary = in_actions(app, "deploy.staging")
    finally:
        lock.release()
    assert_verdict(
        app,
        done,
        summary,
        outcome="refused",
        code=5,
        reason="locked by pid",
        audit_event="deploy",
    )
    assert "locked by pid" in done.stderr


@pytest.mark.e2e
def test_a_good_deploy_and_a_rollback_are_ok_everywhere(staging):
    app = staging()
    done, summary = in_actions(app, "deploy.staging")
    record = assert_verdict(
        app, done, summary, outcome="ok", code=0, reason="", audit_event="deploy"
    )
    assert (record["deploy"]["release"], record["deploy"]["serving"]) == ("v1", "v1")
    assert "release **v1**" in summary
    app.set_version("2.0.0")
    ok(app.inv("deploy.staging"))
    done, summary = in_actions(app, "rollback")
    record = assert_verdict(
        app, done, summary, outcome="ok", code=0, reason="", audit_event="rollback"
    )
    assert record["rollback"]["rolled_back_to"] == "v1"
    assert record["rollback"]["serving"] == "v1"


@pytest.mark.e2e
def test_a_failing_staging_smoke_is_rolled_back_everywhere(staging):
    app = staging()
    config = app.root / "shipyard.yaml"
    config.write_text(config.read_text().replace("timeout: 4s", "timeout: 1s"))
    ok(app.inv("deploy.staging"))
    app.break_page("info.app_env == 'staging'")
    done, summary = in_actions(app, "deploy.staging")
    record = assert_verdict(
        app,
        done,
        summary,
        outcome="rolled back",
        code=3,
        reason="rolled back to v1",
        audit_event="deploy",
    )
    assert record["deploy"]["release"] == "v2"
    assert record["deploy"]["serving"] == "v1"


def test_an_absolute_artifact_glob_is_a_config_error_not_a_traceback(staging):
    app = staging()
    config = app.root / "shipyard.yaml"
    config.write_text(config.read_text().replace("dist/webapp-*.tar.gz", "/etc/*.conf"))
    done = app.here("deploy.staging")
    assert done.returncode == 2, done.stdout + done.stderr
    assert re.match(
        r"shipyard\.yaml:\d+: steps\.build\.artifact: expected a file glob", done.stderr
    )
    assert "Traceback" not in done.stdout + done.stderr


def test_a_bug_caught_at_the_boundary_is_recorded_as_failed_with_its_traceback(tmp_path):
    from shipyard.errors import ExitCode, Outcome
    from shipyard.pipeline import Run, finish, guarded
    from shipyard.redact import Redactor

    run = Run(root=tmp_path, agent="devops", heartbeat_interval=1, command="t", redactor=Redactor())

    def broken():
        raise RuntimeError("wires crossed")

    verdict = guarded(run, broken)
    assert (verdict.outcome, verdict.exit_code) == (Outcome.FAILED, ExitCode.STEP_FAILED)
    assert "RuntimeError: wires crossed" in verdict.reason and "traceback in" in verdict.reason
    finish(run, [], verdict)
    record = json.loads(run.bundle.run_record_path(run.run_id).read_text())
    assert record["outcome"] == "failed" and "wires crossed" in record["reason"]
    log = run.bundle.log_dir(run.run_id) / "shipyard-internal-error.log"
    assert "Traceback" in log.read_text()


# --- flags ---------------------------------------------------------------------------------


def test_deploy_dry_run_prints_the_plan_and_changes_nothing(staging):
    app = staging()
    ok(app.here("deploy.staging"))
    before = app.snapshot()
    for args in (
        ["deploy.staging", "--dry-run"],
        ["deploy.staging", "-n"],
        ["--dry", "deploy.staging"],
    ):
        done = ok(app.here(*args))
        out = done.stdout
        assert "deploy staging (local): v2, replacing v1" in out, out
        assert "1. build: `python3 app/build.py --out dist`" in out
        assert "smoke the artifact" in out and "on failure of step Deploy" in out
        assert "dry run: nothing was changed" in out
        assert app.snapshot() == before
        assert app.last_record()["deploy"]["dry_run"] is True
    assert not (app.root / "dist" / "webapp-1.0.0.tar.gz").exists() or True  # build not rerun
    audit = (app.state / "audit.jsonl").read_text()
    assert audit.count('"event": "deploy"') == 1  # the dry runs are not deploys


def test_deploy_dry_run_says_what_the_preflight_would_refuse(staging):
    app = staging()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", app.port))
        squatter.listen()
        done = app.here("deploy.staging", "--dry-run")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"problem: port {app.port}" in done.stdout
    assert app.last_record()["outcome"] == "refused"


@pytest.mark.parametrize("flag", ["--pty", "-w", "--echo", "--hide=both", "-T", "--dry"])
def test_invoke_core_options_that_do_nothing_are_refused(staging, flag):
    app = staging()
    args = [flag, "5", "build"] if flag == "-T" else [flag, "build"]
    done = app.inv(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().count("\n") == 0 and "leave it out" in done.stderr
    assert not (app.root / "artifacts").exists()


def test_short_flags_have_one_meaning(staging):
    app = staging()
    helps = {
        task: app.inv("--help", task).stdout for task in ("rollback", "gates", "deploy.staging")
    }
    assert "-n, --dry-run" in helps["rollback"] and "-n, --dry-run" in helps["deploy.staging"]
    assert "-j STRING, --jobs" in helps["gates"]
    for text in helps.values():
        shorts = set(re.findall(r"^\s+-(\w)[ ,]", text, re.MULTILINE))
        assert shorts <= {"n", "j", "v", "q"}, text


# --- a broken config still answers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("mistake", "where"),
    [
        (lambda t: t.replace("environments:", "enviroments:"), "enviroments: unknown key"),
        (lambda t: t.replace("target: local", "target: lcoal"), "target: unknown target"),
        (lambda t: t.replace("environments:", "environments: [", 1), ""),
    ],
)
def test_a_broken_config_still_lists_the_deploy_task_and_names_the_mistake(project, mistake, where):
    from test_deploy import CONFIG

    root = project(mistake(CONFIG.format(build="true", port=1, keep=5)))
    listing = run_cli([str(BIN / "inv"), "--list"], root)
    assert listing.returncode == 0 and "deploy.staging" in listing.stdout, listing.stderr
    done = run_cli([str(BIN / "inv"), "deploy.staging"], root)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("shipyard.yaml:") and where in done.stderr, done.stderr
    assert done.stderr.strip().count("\n") == 0


# --- dirty trees -----------------------------------------------------------------------------


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def committed(app: Staging) -> str:
    (app.root / ".gitignore").write_text("artifacts/\nfeedback/\n.shipyard/\ndist/\n")
    git(app.root, "init", "-q")
    git(app.root, "add", "-A")
    git(app.root, "commit", "-qm", "app")
    return git(app.root, "rev-parse", "HEAD").strip()


def test_a_dirty_tree_is_refused_unless_allowed_and_then_recorded(staging):
    app = staging()
    sha = committed(app)
    config = app.root / "shipyard.yaml"
    config.write_text(config.read_text().replace("timeout: 4s", "timeout: 5s"))  # config: allowed
    ok(app.here("deploy.staging"))
    assert app.release("v1")["git_sha"] == sha and not app.release("v1").get("dirty")
    app.set_version("9.9.9")
    done = app.here("deploy.staging")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "app/VERSION" in done.stderr and "--allow-dirty" in done.stderr
    assert "shipyard.yaml" not in done.stderr
    assert app.last_record()["outcome"] == "refused" and app.current() == "v1"
    assert "version=1.0.0" in app.get()[1]

    diff = subprocess.run(
        ["git", "diff", "HEAD", "--binary"], cwd=app.root, capture_output=True, check=True
    )
    import hashlib

    digest = hashlib.sha256(diff.stdout).hexdigest()
    ok(app.here("deploy.staging", "--allow-dirty"))
    assert "version=9.9.9" in app.get()[1]
    release = app.release("v2")
    assert (release["git_sha"], release["dirty"], release["diff_sha256"]) == (sha, True, digest)
    section = app.last_record()["deploy"]
    assert (section["git_sha"], section["dirty"], section["diff_sha256"]) == (sha, True, digest)
    entry = json.loads((app.state / "audit.jsonl").read_text().splitlines()[-1])
    assert (entry["git_sha"], entry["dirty"], entry["diff_sha256"]) == (sha, True, digest)


# --- plans in the order they run ---------------------------------------------------------------

# How a plan's action starts, and the lines that show a run carrying it out (either target).
DONE = {
    "build:": ("==> Build application",),
    "smoke the artifact:": ("==> Smoke:",),
    "take the lock": ("lock: took ",),
    "`flyctl deploy": ("$ flyctl deploy ",),
    "check Fly's health verdict": ("Fly reports every machine",),
    "unpack": ("unpacked ",),
    "record": ("recorded in ", "rolled back from "),
    "stop": ("stopped ",),
    "start": ("started v",),
    "smoke": (" answered ",),
    "mark": ("marked ",),
    "point": (" is current",),
    "prune": ("pruned ",),
}


def planned_actions(output: str) -> list[str]:
    return [line.split(". ", 1)[1] for line in output.splitlines() if re.match(r"\d+\. ", line)]


def assert_carried_out_in_order(actions: list[str], log: str) -> None:
    """Each action has its log line, each after the one before: the plan is the run's order."""
    lines = log.splitlines()
    position = -1
    for action in actions:
        verb = next(key for key in DONE if action.startswith(key))
        found = [
            n for n, line in enumerate(lines) if n > position and any(d in line for d in DONE[verb])
        ]
        assert found, f"{action!r}: no {DONE[verb]!r} after line {position}:\n{log}"
        position = found[0]


@pytest.mark.e2e
def test_the_local_dry_run_plans_are_the_actions_the_runs_then_take(staging):
    app = staging()
    ok(app.inv("deploy.staging"))
    app.set_version("2.0.0")
    plan = planned_actions(ok(app.inv("deploy.staging", "--dry-run")).stdout)
    assert [a.split()[0] for a in plan] == [
        "build:",
        "smoke",
        "unpack",
        "record",
        "stop",
        "start",
        "smoke",
        "mark",
        "point",
        "prune",
    ]
    done = ok(app.inv("deploy.staging"))
    assert_carried_out_in_order(plan, done.stdout)

    plan = planned_actions(ok(app.inv("rollback", "--dry-run")).stdout)
    assert [a.split()[0] for a in plan] == ["record", "stop", "start", "smoke", "point", "mark"]
    done = ok(app.inv("rollback"))
    after_the_plan = done.stdout.split(f"{len(plan)}. {plan[-1]}", 1)[1]
    assert_carried_out_in_order(plan, after_the_plan)
