"""The real commands, run as a user runs them: `inv` and `shipyard` in subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import (
    BIN,
    ISO,
    REPO,
    cli_env,
    evidence_dir,
    ok,
    random_secret,
    run_cli,
    run_here,
    sha256sum_check,
)

GATES = """
version: 1
heartbeat: {interval: 200ms}
secrets: [DEPLOY_KEY]
steps:
  fmt: {run: echo formatted}
  lint: {run: "echo lint broke; exit 1"}
  "test:ci": {run: "sleep 0.5; echo tests passed"}
  scan: {run: echo "key=$DEPLOY_KEY"}
  build: {run: mkdir -p dist && echo app > dist/app.txt}
gates: [fmt, lint, "test:ci", scan]
"""


def inv(*args: str) -> list[str]:
    return [str(BIN / "inv"), *args]


def shipyard(*args: str) -> list[str]:
    return [str(BIN / "shipyard"), *args]


def task(*args: str) -> list[str]:
    """The arguments of `inv` or `shipyard` run in this process (run_here)."""
    return list(args)


def heartbeat_lines(root: Path) -> list[str]:
    return (evidence_dir(root) / "logs" / "heartbeat.log").read_text().splitlines()


def test_gates_run_all_report_all_failures_and_leave_verified_evidence(project):
    root = project(GATES)
    secret = random_secret()
    done = run_here(task("gates"), root, env=cli_env(DEPLOY_KEY=secret))
    assert done.returncode == 1, done.stdout + done.stderr
    for name in ("fmt", "lint", "test:ci", "scan"):
        assert re.search(rf"<== {re.escape(name)}: (ok|failed)", done.stdout)
    assert "<== lint: failed (exit 1" in done.stdout
    assert "tests passed" in done.stdout
    day = evidence_dir(root)
    assert sha256sum_check(day).returncode == 0
    lines = heartbeat_lines(root)
    for name in ("fmt", "lint", "test:ci", "scan"):
        step_lines = [line for line in lines if f" step={name} " in line]
        assert any(" event=start " in line for line in step_lines)
        assert any(" event=end " in line for line in step_lines)
        assert all(re.match(ISO + " ", line) for line in step_lines)
    assert any(" step=test:ci event=beat " in line for line in lines)
    record = json.loads(next((day / "runs").glob("*.json")).read_text())
    assert record["outcome"] == "failed" and record["exit_code"] == 1
    assert {s["name"]: s["status"] for s in record["steps"]} == {
        "fmt": "ok",
        "lint": "failed",
        "test:ci": "ok",
        "scan": "ok",
    }
    feedback = (root / "feedback" / "devops" / f"{day.name}.md").read_text()
    assert f"`{record['run_id']}`" in feedback
    assert "| lint | failed | 1 |" in feedback
    assert "lint broke" in feedback  # the failing step's log tail
    everything = (
        done.stdout
        + done.stderr
        + feedback
        + "".join(p.read_text(errors="replace") for p in day.rglob("*") if p.is_file())
    )
    assert secret not in everything


def test_fail_fast_skips_the_gates_not_yet_started(project):
    root = project(GATES)
    done = run_here(task("gates", "--jobs", "1", "--fail-fast"), root)
    assert done.returncode == 1
    assert "<== test:ci: skipped" in done.stdout
    assert "<== scan: skipped" in done.stdout


def test_timeout_exits_124_quickly_and_leaves_no_process(project):
    root = project("""
        version: 1
        steps:
          hang: {run: "sleep 30 & echo $! > sleeper.pid; sleep 30", timeout: 1s, grace: 1s}
    """)
    began = time.monotonic()
    done = run_here(task("step", "hang"), root)
    assert done.returncode == 124, done.stdout + done.stderr
    assert time.monotonic() - began < 20
    pid = int((root / "sleeper.pid").read_text())
    assert (
        not Path(f"/proc/{pid}").exists()
        or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
    )
    assert "status=timeout exit=124" in "\n".join(heartbeat_lines(root))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_steps_writes_evidence_and_exits_128_plus_its_number(project, signum):
    root = project("""
        version: 1
        steps:
          long: {run: "echo started; sleep 60"}
    """)
    process = subprocess.Popen(
        inv("step", "long"),
        cwd=root,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().startswith("==> long")
    assert process.stdout.readline() == "started\n"
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 128 + signum, out + err
    assert f"status=interrupted exit={128 + signum}" in "\n".join(heartbeat_lines(root))
    assert f"interrupted (exit {128 + signum}): interrupted by {signum.name}" in out
    assert sha256sum_check(evidence_dir(root)).returncode == 0
    assert (
        "interrupted"
        in (root / "feedback" / "devops" / f"{evidence_dir(root).name}.md").read_text()
    )


def test_bad_config_exits_2_with_one_line_and_runs_nothing(project):
    root = project("""
        version: 1
        steps:
          lint: {run: touch ran, retries: three}
        gates: [lint]
    """)
    done = run_here(task("gates"), root)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith("shipyard.yaml:3: steps.lint.retries: ")
    assert "Traceback" not in done.stdout + done.stderr
    assert not (root / "ran").exists() and not (root / "artifacts").exists()


def test_unknown_step_is_a_usage_error_with_a_suggestion(project):
    root = project(GATES)
    done = run_here(task("step", "lnit"), root)
    assert done.returncode == 2
    assert "unknown step 'lnit' (did you mean 'lint'?)" in done.stderr


def test_config_flag_and_env_var_point_at_a_config_elsewhere(project, tmp_path):
    root = project(GATES)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    by_flag = run_here(task("step", "fmt", "--config", str(root / "shipyard.yaml")), elsewhere)
    by_env = run_cli(
        shipyard("step", "fmt"), elsewhere, env=cli_env(SHIPYARD_CONFIG=str(root / "shipyard.yaml"))
    )
    assert (by_flag.returncode, by_env.returncode) == (0, 0), by_flag.stderr + by_env.stderr
    assert "formatted" in by_flag.stdout and "formatted" in by_env.stdout


def test_build_and_list(project):
    root = project(GATES)
    ok(run_here(task("build"), root))
    assert (root / "dist" / "app.txt").exists()
    listing = run_here(task("--list"), root).stdout
    tasks = (
        "gates",
        "step",
        "doctor",
        "contract",
        "build",
        "scan",
        "smoke",
        "rollback",
        "releases",
        "status",
        "heartbeat",
        "stop",
        "evidence.verify",
        "evidence.attest",
        "hooks",
        "proof.check",
        "ci.triage",
        "audit.github",
        "lock.status",
        "lock.release",
        "init",
    )
    entries = [line.split()[0] for line in listing.splitlines()[2:] if line.strip()]
    assert sorted(entries) == sorted(tasks), listing  # each help fits on its one line
    same_tasks = run_here(task("--list"), root).stdout
    assert same_tasks.splitlines()[1:] == listing.splitlines()[1:]


def test_evidence_verify_reports_tampering(project):
    root = project(GATES)
    run_here(task("step", "fmt"), root)
    ok(run_here(task("evidence.verify"), root))
    day = evidence_dir(root)
    log = next(day.glob("logs/*/fmt.log"))
    log.write_text("forged\n")
    (day / "extra.txt").write_text("x")
    done = run_here(task("evidence.verify", "--date", day.name), root)
    assert done.returncode == 1
    assert f"changed: {log.relative_to(day).as_posix()}" in done.stdout
    assert "added: extra.txt" in done.stdout
    assert run_here(task("evidence.verify", "--date", "30-11-2026"), root).returncode == 2


@pytest.mark.parametrize("wrapper", ["shipyard", "shim"])
def test_heartbeat_wrapper_keeps_exit_code_and_argv(tmp_path, wrapper):
    command = (
        shipyard("heartbeat", "release-bot", "--")
        if wrapper == "shipyard"
        else [str(REPO / "scripts" / "policy" / "with-heartbeat.sh"), "release-bot", "--"]
    )
    script = 'printf "%s|" "$@"; exit 7'
    done = run_cli(
        [*command, "bash", "-c", script, "x", "a b", "--flag", "*"],
        tmp_path,
        env=cli_env(SHIPYARD_HEARTBEAT_INTERVAL="100ms"),
    )
    assert done.returncode == 7, done.stderr
    assert done.stdout == "a b|--flag|*|"
    lines = heartbeat_lines_for(tmp_path, "release-bot")
    assert re.match(
        ISO + r" agent=release-bot run=\S+ step=bash event=start pid=\d+ cmd=", lines[0]
    )
    assert re.search(r" event=end status=failed exit=7 elapsed=", lines[-1])
    assert sha256sum_check(evidence_dir(tmp_path, "release-bot")).returncode == 0


def heartbeat_lines_for(root: Path, agent: str) -> list[str]:
    return (evidence_dir(root, agent) / "logs" / "heartbeat.log").read_text().splitlines()


def test_heartbeat_wrapper_usage_error(tmp_path):
    done = run_cli(shipyard("heartbeat", "devops"), tmp_path)
    assert done.returncode == 2 and "usage: shipyard heartbeat AGENT -- CMD..." in done.stderr


def test_no_config_anywhere_is_a_clear_usage_error(tmp_path):
    done = run_here(task("gates"), tmp_path, env=cli_env(SHIPYARD_CONFIG=""))
    assert done.returncode == 2
    assert "shipyard.yaml" in done.stderr and "Traceback" not in done.stderr


def test_parallel_output_blocks_do_not_interleave(project):
    root = project("""
        version: 1
        steps:
          a: {run: "for i in 1 2 3 4 5; do echo a$i; sleep 0.05; done"}
          b: {run: "for i in 1 2 3 4 5; do echo b$i; sleep 0.05; done"}
        gates: [a, b]
    """)
    out = run_here(task("gates", "--jobs", "2"), root).stdout
    assert "a1\na2\na3\na4\na5\n" in out and "b1\nb2\nb3\nb4\nb5\n" in out


def test_no_traceback_when_piped_output_closes(project):
    root = project(GATES)
    listing = subprocess.run(
        f"{BIN / 'shipyard'} --list | head -1",
        shell=True,
        cwd=root,
        env=cli_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Traceback" not in listing.stderr


def test_step_environment_has_this_python_first_on_path(project):
    root = project("""
        version: 1
        steps:
          which: {run: "command -v shipyard"}
    """)
    env = cli_env()
    env["PATH"] = os.defpath
    done = run_cli([str(BIN / "inv"), "step", "which"], root, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(BIN / "shipyard") in done.stdout


LEAKY_STEP = """
import base64, json, os, sys, urllib.parse
for name in ("DEPLOY_KEY", "MY_API_TOKEN"):
    value = os.environ[name]
    print(value)
    print(base64.b64encode(("user:" + value).encode()).decode())
    print(urllib.parse.quote(value, safe=""), json.dumps({"token": value}))
    print(value[:9], end="", flush=True)
    print(value[9:], file=sys.stderr, flush=True)
"""


def secret_forms(value: str) -> list[str]:
    import base64
    import json
    import urllib.parse

    return [
        value,
        base64.b64encode(("user:" + value).encode()).decode()[8:-4],
        urllib.parse.quote(value, safe=""),
        json.dumps(value)[1:-1],
    ]


def test_no_secret_form_reaches_terminal_logs_heartbeat_record_or_feedback(project):
    root = project("""
        version: 1
        secrets: [DEPLOY_KEY]
        steps:
          leak: {run: "python leak.py; exit 1"}
          "echo:cmd": {run: "echo $DEPLOY_KEY $MY_API_TOKEN"}
        gates: [leak, "echo:cmd"]
    """)
    (root / "leak.py").write_text(LEAKY_STEP)
    listed = random_secret() + '"&%+/ü'
    by_name = random_secret()
    done = run_here(task("gates"), root, env=cli_env(DEPLOY_KEY=listed, MY_API_TOKEN=by_name))
    assert done.returncode == 1
    written = [p for p in (root / "artifacts").rglob("*") if p.is_file()]
    written += list((root / "feedback").rglob("*.md"))
    assert len(written) >= 5
    sinks = [done.stdout, done.stderr, *(p.read_text(errors="replace") for p in written)]
    for form in secret_forms(listed) + secret_forms(by_name):
        assert not any(form in sink for sink in sinks), form
    assert "***" in done.stdout


def test_two_gate_runs_at_once_share_a_day_of_evidence_that_still_verifies(project):
    root = project("""
        version: 1
        heartbeat: {interval: 100ms}
        steps:
          a: {run: "for i in 1 2 3; do echo a$i; sleep 0.2; done"}
          b: {run: "for i in 1 2 3; do echo b$i; sleep 0.1; done"}
        gates: [a, b]
    """)
    runs = [
        subprocess.Popen(
            inv("gates"),
            cwd=root,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    assert [run.wait(timeout=60) for run in runs] == [0, 0]
    day = evidence_dir(root)
    assert sha256sum_check(day).returncode == 0
    records = [json.loads(p.read_text()) for p in (day / "runs").glob("*.json")]
    assert len(records) == 2 and records[0]["run_id"] != records[1]["run_id"]
    for record in records:
        for step in record["steps"]:
            log = (day / step["log"]).read_text()
            assert log == "".join(f"{step['name']}{i}\n" for i in (1, 2, 3))
    starts = [line for line in heartbeat_lines(root) if " event=start " in line]
    assert len(starts) == 4


def test_evidence_verify_reports_a_renamed_file_as_missing_and_added(project):
    root = project(GATES)
    run_here(task("step", "fmt"), root)
    day = evidence_dir(root)
    log = next(day.glob("logs/*/fmt.log"))
    log.rename(log.with_name("renamed.log"))
    done = run_here(task("evidence.verify"), root)
    assert done.returncode == 1
    relative = log.relative_to(day).as_posix()
    assert f"missing: {relative}" in done.stdout
    assert f"added: {relative.replace('fmt.log', 'renamed.log')}" in done.stdout
