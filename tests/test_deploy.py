"""`inv deploy.staging`, `inv rollback`, `inv releases`, `inv status` on the embedded target,
run as a user runs them: real `inv` processes, the real example app, real HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    BIN,
    REPO,
    cli_env,
    evidence_dir,
    ok,
    run_cli,
    run_here,
    sha256sum_check,
    write_project,
)

from shipyard.server import free_port

CONFIG = """
version: 1
heartbeat: {{interval: 1s}}
steps:
  build: {{run: "{build}", artifact: "dist/webapp-*.tar.gz"}}
environments:
  staging:
    target: local
    start: python3 -m webapp --port {{port}}
    port: {port}
    env: {{APP_ENV: staging}}
    smoke: {{path: /, expect_status: 200, timeout: 4s}}
    keep_releases: {keep}
    proxy: direct  # these tests follow the server's pid; tests/test_proxy.py covers Caddy
"""
BUILD = "python3 app/build.py --out dist"


class Staging:
    """A project with the example app, deployed to its own port."""

    def __init__(self, root: Path, *, build: str = BUILD, keep: int = 5) -> None:
        self.port = free_port()
        self.root = write_project(root, CONFIG.format(build=build, port=self.port, keep=keep))
        shutil.copytree(
            REPO / "examples" / "webapp", root / "app", ignore=shutil.ignore_patterns("__pycache__")
        )
        self.state = root / ".shipyard" / "staging"

    def inv(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_cli([str(BIN / "inv"), *args], self.root, timeout=timeout)

    def here(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The same task run in this process (`run_here`): for the quick tests."""
        return run_here(list(args), self.root, env=env)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(BIN / "inv"), *args],
            cwd=self.root,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def get(self, path: str = "/") -> tuple[int | None, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""
        except OSError:
            return None, ""

    def set_version(self, version: str) -> None:
        (self.root / "app" / "VERSION").write_text(version + "\n")

    def break_page(self, condition: str = "True") -> None:
        """Make `/` answer 500 when `condition` holds (a Python expression over `info`)."""
        server = self.root / "app" / "webapp" / "server.py"
        text = server.read_text()
        patched = text.replace('"/": Response(200,', f'"/": Response(500 if {condition} else 200,')
        assert patched != text
        server.write_text(patched)

    def current(self) -> str | None:
        link = self.state / "current"
        return os.readlink(link).split("/")[-1] if link.is_symlink() else None

    def release(self, version: str) -> dict:
        return json.loads((self.state / "releases" / version / "release.json").read_text())

    def server_pid(self) -> int | None:
        state = self.state / "server" / "state.json"
        return json.loads(state.read_text())["pid"] if state.exists() else None

    def snapshot(self) -> dict[str, tuple]:
        """Every path under the state folder: content (or link target) and mtime."""
        found = {}
        for path in sorted(self.state.rglob("*")):
            stat = path.lstat()
            if path.is_symlink():
                content = os.readlink(path)
            elif path.is_file():
                content = path.read_bytes()
            else:
                content = "dir"
            found[str(path.relative_to(self.state))] = (content, stat.st_mtime_ns, stat.st_mode)
        return found

    def last_record(self) -> dict:
        runs = sorted(
            (evidence_dir(self.root) / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime_ns
        )
        return json.loads(runs[-1].read_text())

    def stop(self) -> None:
        pid = self.server_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture(name="staging")
def staging_fixture(tmp_path):
    """`staging(**options)` makes a Staging project; every server it started is stopped after."""
    created: list[Staging] = []

    def make(**options) -> Staging:
        created.append(Staging(tmp_path / f"proj{len(created)}", **options))
        return created[-1]

    yield make
    for each in created:
        each.stop()


@pytest.mark.e2e
def test_deploy_change_dry_run_rollback(staging):
    app = staging()
    first = app.inv("deploy.staging")
    assert first.returncode == 0, first.stdout + first.stderr
    status, page = app.get()
    assert status == 200 and "version=1.0.0" in page and "release=v1" in page

    app.set_version("2.0.0")
    ok(app.inv("deploy.staging"))
    status, page = app.get()
    assert status == 200 and "version=2.0.0" in page and "release=v2" in page

    before = app.snapshot()
    dry = app.inv("rollback", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "v2 -> v1" in dry.stdout and "python3 -m webapp --port" in dry.stdout
    assert app.snapshot() == before  # paths, contents, link targets, mtimes: untouched
    assert "release=v2" in app.get()[1]

    back = app.inv("rollback")
    assert back.returncode == 0, back.stdout + back.stderr
    status, page = app.get()
    assert status == 200 and "version=1.0.0" in page and "release=v1" in page
    listed = json.loads(app.inv("releases", "--json").stdout)
    assert {r["version"]: (r["status"], r["current"]) for r in listed} == {
        "v1": ("complete", True),
        "v2": ("bad", False),
    }
    record = app.last_record()
    assert record["rollback"]["rolled_back_to"] == "v1"
    assert [s["name"] for s in record["steps"]] == ["Rollback"]
    assert app.inv("rollback", "--dry-run").returncode == 6  # v2 is bad, nothing older than v1
    assert sha256sum_check(evidence_dir(app.root)).returncode == 0
    events = [
        json.loads(line)["event"] for line in (app.state / "audit.jsonl").read_text().splitlines()
    ]
    assert events == ["deploy", "deploy", "rollback"]


@pytest.mark.e2e
def test_status_reports_the_running_release(staging):
    app = staging()
    assert app.inv("status").returncode == 1  # nothing deployed yet
    ok(app.inv("deploy.staging"))
    shown = json.loads(app.inv("status", "--json").stdout)
    assert shown["serving"] == shown["current"] == "v1"
    assert shown["pid"] == app.server_pid() and shown["healthy"] is True
    assert "serving v1" in app.inv("status").stdout


@pytest.mark.e2e
def test_a_build_that_fails_its_artifact_smoke_switches_nothing(staging):
    app = staging()
    ok(app.inv("deploy.staging"))
    pid = app.server_pid()
    app.break_page()
    done = app.inv("deploy.staging")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "artifact smoke failed" in done.stdout
    assert "server log" in done.stdout
    assert app.current() == "v1" and app.server_pid() == pid
    assert app.get()[0] == 200
    assert [s["name"] for s in app.last_record()["steps"]] == ["Build application", "Smoke"]


@pytest.mark.e2e
def test_a_release_failing_only_in_staging_is_rolled_back_with_exit_3(staging):
    app = staging()
    ok(app.inv("deploy.staging"))
    app.break_page('info.app_env == "staging"')
    done = app.inv("deploy.staging")
    assert done.returncode == 3, done.stdout + done.stderr
    status, page = app.get()
    assert status == 200 and "release=v1" in page
    assert app.current() == "v1"
    assert app.release("v2")["status"] == "failed"
    record = app.last_record()
    assert [s["name"] for s in record["steps"]] == [
        "Build application",
        "Smoke",
        "Deploy",
        "Smoke staging",
        "Rollback",
    ]
    assert [s["status"] for s in record["steps"]] == ["ok", "ok", "ok", "failed", "ok"]
    deployed = record["deploy"]
    assert (deployed["release"], deployed["previous"], deployed["rolled_back_to"]) == (
        "v2",
        "v1",
        "v1",
    )
    assert (deployed["environment"], deployed["target"]) == ("staging", "local")
    assert record["exit_code"] == 3


@pytest.mark.e2e
def test_a_failed_first_deploy_exits_4_and_leaves_nothing_current(staging):
    app = staging()
    app.break_page('info.app_env == "staging"')
    done = app.inv("deploy.staging")
    assert done.returncode == 4, done.stdout + done.stderr
    assert app.current() is None
    assert app.get()[0] is None  # nothing half-up on the port
    assert app.release("v1")["status"] == "failed"


@pytest.mark.e2e
def test_two_deploys_at_once_one_proceeds_one_exits_5(staging):
    app = staging(build=f"sleep 1 && {BUILD}")
    first, second = app.spawn("deploy.staging"), app.spawn("deploy.staging")
    outcomes = sorted([(p.wait(timeout=120), p.stderr.read()) for p in (first, second)])
    assert [code for code, _ in outcomes] == [0, 5], outcomes
    refusal = outcomes[1][1]
    assert "locked by pid" in refusal and "deploy.staging" in refusal
    assert refusal.count("\n") == 1


@pytest.mark.e2e
def test_lock_wait_lets_the_second_deploy_follow_the_first(staging):
    app = staging(build=f"sleep 1 && {BUILD}")
    first = app.spawn("deploy.staging")
    time.sleep(0.5)
    second = app.inv("deploy.staging", "--lock-wait", "60s")
    assert first.wait(timeout=120) == 0
    assert second.returncode == 0, second.stdout + second.stderr
    assert app.current() == "v2"


@pytest.mark.e2e
def test_pruning_keeps_complete_releases_current_and_rollback_target(staging):
    app = staging(keep=2)
    for _ in range(4):
        ok(app.inv("deploy.staging"))
    kept = sorted(p.name for p in (app.state / "releases").iterdir())
    assert kept == ["v3", "v4"]
    assert app.current() == "v4"
    assert "prune" in (app.state / "audit.jsonl").read_text()


@pytest.mark.e2e
def test_rollback_to_a_named_release_and_bad_names(staging):
    app = staging()
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        app.set_version(version)
        ok(app.inv("deploy.staging"))
    assert app.inv("rollback", "--to", "v9").returncode == 2
    assert app.inv("rollback", "--to", "latest").returncode == 2
    done = app.inv("rollback", "--to", "v1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "version=1.0.0" in app.get()[1]
    assert app.release("v3")["status"] == "bad"


@pytest.mark.e2e
def test_rollback_dry_run_refuses_a_tampered_release(staging):
    app = staging()
    ok(app.inv("deploy.staging"))
    ok(app.inv("deploy.staging"))
    (app.state / "releases" / "v1" / "webapp" / "server.py").write_text("tampered\n")
    done = app.inv("rollback", "--dry-run")
    assert done.returncode == 1
    assert "v1 files do not match their recorded sha256" in done.stdout


def test_a_release_whose_app_wrote_bytecode_beside_its_code_can_be_rolled_back_to(staging):
    """Outside a sandbox, Python writes __pycache__ into the release folder the first time the
    app runs; that is not tampering, and the rollback to it must work."""
    app = staging()
    env = {k: v for k, v in cli_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
    for version in ("1.0.0", "2.0.0"):
        app.set_version(version)
        ok(run_cli([str(BIN / "inv"), "deploy.staging"], app.root, env=env))
    assert list((app.state / "releases" / "v1").rglob("__pycache__/*.pyc"))
    ok(run_cli([str(BIN / "inv"), "rollback"], app.root, env=env))
    assert "release=v1" in app.get()[1]


def heartbeat_events(app: Staging) -> int:
    logs = list((app.root / "artifacts").rglob("heartbeat.log"))
    return sum(len(log.read_text().splitlines()) for log in logs)


def kill_after_events(app: Staging, task: tuple[str, ...], events: int, delay: float) -> None:
    """Start `inv TASK`, SIGKILL it `delay` seconds after its `events`-th heartbeat line."""
    baseline = heartbeat_events(app)
    process = app.spawn(*task)
    deadline = time.monotonic() + 30
    while heartbeat_events(app) < baseline + events and process.poll() is None:
        assert time.monotonic() < deadline, f"no heartbeat line {events} within 30 s"
        time.sleep(0.005)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


@pytest.mark.parametrize("kills", [5, pytest.param(100, marks=pytest.mark.e2e)])
def test_sigkill_at_any_moment_leaves_current_complete_and_the_next_deploy_works(staging, kills):
    """Killed after one of the first heartbeat events of a deploy (Build, Smoke, Deploy and
    Smoke staging each start and end: 5 kills hit every other one, so each phase, 100 hit each
    ten times, mid-unpack and mid-smoke too), plus a random delay; no cleanup between kills."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    app = staging()
    ok(app.inv("deploy.staging"))
    for kill in range(kills):
        events, delay = (kill * 2 + kill // 5) % 10, rng.uniform(0, 0.05)
        kill_after_events(app, ("deploy.staging",), events, delay)
        where = f"seed {seed}, kill {kill}: {delay:.3f}s after event {events}"
        current = app.current()
        assert current is not None, f"{where}: no current"
        assert app.release(current)["status"] == "complete", f"{where}: {current}"
    ok(app.inv("deploy.staging"))
    status, page = app.get()
    assert status == 200 and f"release={app.current()}" in page


@pytest.mark.e2e
def test_smoke_task_checks_the_built_artifact(staging):
    app = staging()
    ok(app.inv("build"))
    good = app.inv("smoke")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "-> 200" in good.stdout
    app.break_page()
    ok(app.inv("build"))
    bad = app.inv("smoke")
    assert bad.returncode == 1
    assert "did not answer 200" in bad.stdout and "server log" in bad.stdout
    assert app.get()[0] is None  # the smoke server is gone with its process group


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_interrupted_deploy_releases_the_lock_restores_and_exits_128_plus_signal(staging, signum):
    app = staging()
    ok(app.inv("deploy.staging"))
    app.break_page('info.app_env == "staging"')  # the staging smoke will keep retrying
    earlier = set((app.root / "artifacts").rglob("Smoke_staging.log"))
    process = app.spawn("deploy.staging")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until this deploy's staging smoke is probing
        logs = set((app.root / "artifacts").rglob("Smoke_staging.log")) - earlier
        if logs and "attempt" in logs.pop().read_text():
            break
        time.sleep(0.05)
    process.send_signal(signum)
    assert process.wait(timeout=60) == 128 + signum
    assert not (app.state / "lock").exists()
    assert app.current() == "v1"
    assert "release=v1" in app.get()[1]
    record = app.last_record()
    assert (record["exit_code"], record["outcome"]) == (128 + signum, "interrupted")
    assert record["reason"] == f"interrupted by {signum.name}; v1 restored"


@pytest.mark.e2e
def test_rollback_dry_run_json_is_the_plan(staging):
    app = staging()
    ok(app.inv("deploy.staging"))
    ok(app.inv("deploy.staging"))
    shown = app.inv("rollback", "--dry-run", "--json")
    plan = json.loads(shown.stdout)
    assert (plan["current"], plan["to"], plan["possible"], plan["exit_code"]) == (
        "v2",
        "v1",
        True,
        0,
    )
    assert any("python3 -m webapp --port" in action for action in plan["actions"])


def test_contract_says_it_deploys_and_its_dry_run_changes_nothing(staging):
    app = staging()
    before = app.snapshot()
    done = app.here("contract", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("contract (dry run): the deploy to staging it would make;")
    assert "deploy staging (local): v1, the first release" in done.stdout  # its plan
    checks = "Build application, Smoke, Deploy, Smoke staging, Rollback, evidence"
    assert f"then: a rollback dry-run, and the checks: {checks}" in done.stdout
    assert app.snapshot() == before and not (app.root / "dist").exists()


@pytest.mark.e2e
def test_contract_holds_after_a_good_deploy_and_names_what_breaks(staging):
    app = staging()
    ok(app.inv("deploy.staging"))
    held = app.inv("contract")
    assert held.returncode == 0, held.stdout + held.stderr
    assert held.stdout.startswith("contract: deploying to staging for real")
    for name in ("Build application", "Smoke", "Deploy", "Smoke staging", "Rollback", "evidence"):
        assert f"ok   {name}: " in held.stdout
    assert "contract: held" in held.stdout
    app.break_page()
    broken = app.inv("contract")
    assert broken.returncode == 1
    assert "FAIL Smoke: step failed" in broken.stdout
    assert "contract: broken: Smoke, Deploy, Smoke staging" in broken.stdout


@pytest.mark.e2e
def test_deploy_without_build_uses_the_artifact_built_before(staging):
    app = staging()
    ok(app.inv("build"))
    done = app.inv("deploy.staging", "--no-build")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [s["name"] for s in app.last_record()["steps"]] == ["Smoke", "Deploy", "Smoke staging"]


def test_a_rollback_during_a_deploy_is_refused_with_exit_5(staging):
    app = staging(build=f"if [ -e slow ]; then sleep 1; fi && {BUILD}")
    ok(app.here("deploy.staging"))
    ok(app.here("deploy.staging"))
    (app.root / "slow").touch()
    deploying = app.spawn("deploy.staging")
    deadline = time.monotonic() + 30
    while not (app.state / "lock" / "owner.json").exists():  # the deploy holds the lock
        assert time.monotonic() < deadline and deploying.poll() is None
        time.sleep(0.01)
    refused = app.here("rollback")
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "locked by pid" in refused.stderr
    assert deploying.wait(timeout=120) == 0
    assert app.current() == "v3"


def test_a_server_that_dies_in_staging_is_caught_at_once_and_rolled_back(staging):
    app = staging()
    ok(app.here("deploy.staging"))
    main = app.root / "app" / "webapp" / "__main__.py"
    main.write_text(
        main.read_text().replace(
            "    options = parse_args(argv)",
            "    options = parse_args(argv)\n"
            '    if os.environ.get("APP_ENV") == "staging":\n'
            "        return 3",
        )
    )
    done = app.here("deploy.staging")
    assert done.returncode == 3, done.stdout + done.stderr
    # dead before Shipyard's health check, or during the smoke's probes: either is named
    assert "the server exited" in done.stdout or "is not running" in done.stdout, done.stdout
    assert "release=v1" in app.get()[1]


def test_a_port_taken_by_another_process_is_a_clear_preflight_error(staging):
    import socket

    app = staging()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", app.port))
        squatter.listen()
        done = app.here("deploy.staging")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"port {app.port} on 127.0.0.1 is in use by another process" in done.stderr
    assert not app.last_record()["steps"]  # refused before building anything
    assert app.current() is None


def test_damaged_state_reads_safely_and_the_next_deploy_repairs_it(staging):
    app = staging()
    ok(app.here("deploy.staging"))
    ok(app.here("deploy.staging"))
    (app.state / "releases" / "v1" / "release.json").write_text('{"status": "comp')
    listed = json.loads(app.here("releases", "--json").stdout)
    assert [r["status"] for r in listed] == ["building", "complete"]
    assert app.here("rollback", "--dry-run").returncode == 6
    (app.state / "current").unlink()
    (app.state / "current").symlink_to("releases/v9")
    (app.state / "audit.jsonl").open("ab").write(b'\xff\xfe garbage\n{"trunc')
    status = json.loads(app.here("status", "--json").stdout)
    assert status["current"] is None and status["serving"] == "v2"
    done = app.here("deploy.staging")
    assert done.returncode == 0, done.stdout + done.stderr
    assert app.current() == "v3" and "release=v3" in app.get()[1]


def test_nothing_written_is_world_or_group_writable_even_with_umask_0(staging):
    app = staging()
    done = subprocess.run(
        f"umask 000 && {BIN / 'inv'} deploy.staging",
        shell=True,
        cwd=app.root,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    written = [
        p
        for folder in ("artifacts", "feedback", ".shipyard", "dist")
        for p in (app.root / folder).rglob("*")
        if not p.is_symlink()
    ]
    assert written
    loose = [str(p) for p in written if p.stat().st_mode & 0o022]
    assert not loose


def test_five_deploys_at_once_one_proceeds_four_exit_5(staging):
    app = staging(build=f"sleep 1.5 && {BUILD}")
    deploys = [app.spawn("deploy.staging") for _ in range(5)]
    codes = sorted(process.wait(timeout=120) for process in deploys)
    assert codes == [0, 5, 5, 5, 5]
    assert app.current() == "v1"


def killed_rollbacks(app: Staging, kills: int) -> Iterator[str]:
    """`kills` rollbacks back and forth between v1 and v2 (v2 current first), each SIGKILLed
    at a random moment of a rollback's run; after each, where it was killed (with the seed)."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    began = time.monotonic()
    ok(app.inv("rollback"))  # v2 -> v1, and how long a rollback takes here
    duration = time.monotonic() - began
    for kill in range(kills):
        moment = rng.uniform(0, duration)
        process = app.spawn("rollback", "--to", "v2" if app.current() == "v1" else "v1")
        time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        yield f"seed {seed}, kill {kill} at {moment:.3f}s"


@pytest.mark.parametrize("kills", [5, pytest.param(100, marks=pytest.mark.e2e)])
def test_sigkill_of_a_rollback_at_any_moment_leaves_current_complete(staging, kills):
    """Rollbacks between v1 and v2, each SIGKILLed at a random moment of its run; no cleanup
    between kills."""
    app = staging()
    for version in ("1.0.0", "2.0.0"):
        app.set_version(version)
        ok(app.inv("deploy.staging"))
    for where in killed_rollbacks(app, kills):
        current = app.current()
        assert current in ("v1", "v2"), f"{where}: current is {current}"
        assert app.release(current)["status"] == "complete", f"{where}: {current}"
    ok(app.inv("deploy.staging"))
    assert f"release={app.current()}" in app.get()[1]
