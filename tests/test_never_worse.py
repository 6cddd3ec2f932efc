"""A failed deploy never leaves staging worse than it found it, and damaged state is named and
recoverable: a deploy that fails before its switch (a corrupt archive, a full disk) leaves the
release that served serving, by the same process; a damaged `state.json` stops every command
that reads it with one line naming it and `inv stop`; `inv stop` stops the environment's
server even then, and never a foreign process on its port.

The quick tests run `inv` in this process (`Staging.here`); the full-disk test mounts a real
tmpfs at `.shipyard/` (root only) and is marked e2e."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ok
from test_deploy import Staging, staging_fixture  # noqa: F401

from shipyard import deploy, server, unpacking
from shipyard.lock import DeployLock
from shipyard.process import start_ticks

# What a deploy that failed before its switch exits with: failed (1), or refused (2) when its
# artifact was (hostile, too big, no room). Never 3 or 4: nothing was switched or taken down.
BEFORE_THE_SWITCH = (1, 2)


def serving(app: Staging) -> tuple[int, int | None]:
    """The pid of the server state.json names, and that process's start time."""
    pid = app.server_pid()
    assert pid is not None
    return pid, start_ticks(pid)


def runs(pid: int, ticks: int | None) -> bool:
    """`pid` is still the process that started at `ticks`, and is not a zombie."""
    return server.alive(pid) and start_ticks(pid) == ticks


def assert_v1_untouched(app: Staging, before: tuple[int, int | None], done) -> None:
    """v1 still serves, by the same process; nothing of v2 is left; the run says so."""
    output = done.stdout + done.stderr
    assert done.returncode in BEFORE_THE_SWITCH, output
    assert serving(app) == before  # the same process: never stopped, never restarted
    status, page = app.get()
    assert status == 200 and "release=v1" in page
    assert app.current() == "v1"
    assert sorted(p.name for p in (app.state / "releases").iterdir()) == ["v1"]
    assert "failed before the switch" in output and "v1 still serves, untouched" in output
    assert "stopped the server" not in output and "started v1" not in output
    record = app.last_record()
    assert (record["deploy"]["release"], record["deploy"]["serving"]) == (None, "v1")
    assert "Traceback" not in output


def truncate_after_its_smoke(monkeypatch, archive_name: str = "webapp-") -> None:
    """The built archive passes its smoke, then is cut in half before the Deploy unpacks it."""
    smoke = deploy.smoke_artifact

    def smoke_then_truncate(environment, archive: Path, say, stop, *rest, **options) -> str:
        tested = smoke(environment, archive, say, stop, *rest, **options)
        assert archive.name.startswith(archive_name)
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
        return tested

    monkeypatch.setattr(deploy, "smoke_artifact", smoke_then_truncate)


def test_a_corrupt_archive_leaves_the_serving_release_untouched(staging, monkeypatch):
    app = staging()
    ok(app.here("deploy.staging"))
    before = serving(app)
    truncate_after_its_smoke(monkeypatch)
    done = app.here("deploy.staging")
    assert "not a readable tar archive" in done.stdout
    assert_v1_untouched(app, before, done)
    assert "nothing to put back" in done.stdout


def test_a_full_disk_mid_unpack_leaves_the_serving_release_untouched(staging, monkeypatch):
    app = staging()
    ok(app.here("deploy.staging"))
    before = serving(app)
    unpack = unpacking.unpack

    def unpack_until_the_disk_is_full(archive: Path, destination: Path, *args, **kwargs) -> None:
        if app.state not in destination.parents:  # the artifact smoke's temporary folder
            return unpack(archive, destination, *args, **kwargs)
        unpack(archive, destination, *args, **kwargs)  # what fitted, then the disk was full
        (destination / "webapp" / "big.bin").write_bytes(b"\0" * 2**16)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(destination / "big.bin"))

    monkeypatch.setattr(unpacking, "unpack", unpack_until_the_disk_is_full)
    done = app.here("deploy.staging")
    assert "No space left on device" in done.stdout
    assert_v1_untouched(app, before, done)
    assert not list((app.state / "releases").glob(".trash-*"))

    monkeypatch.undo()  # room again: the next deploy works, and serves
    app.set_version("2.0.0")
    ok(app.here("deploy.staging"))
    assert app.current() == "v2" and "version=2.0.0" in app.get()[1]


@pytest.mark.e2e
def test_a_full_tmpfs_fails_the_deploy_before_the_switch(staging, monkeypatch):
    """A real small disk under `.shipyard/` and an artifact larger than it: the deploy fails
    before its switch, v1 serves on, the disk's room is back; a smaller artifact then deploys."""
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root on Linux")
    app = staging()
    disk = app.root / ".shipyard"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m,mode=0755", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {mounted.stderr.strip()}")
    # the deploy's own preflight wants 100 MiB free: this test is about what comes after it
    monkeypatch.setattr(deploy, "MIN_FREE_BYTES", 0)
    try:
        ok(app.here("deploy.staging"))
        before = serving(app)
        used = shutil.disk_usage(disk).used
        big = app.root / "app" / "webapp" / "blob.py"  # the build packs every *.py
        big.write_bytes(os.urandom(16 * 2**20))  # incompressible, larger than the disk
        done = app.here("deploy.staging")
        assert_v1_untouched(app, before, done)
        assert shutil.disk_usage(disk).used <= used + 64 * 2**10  # v2's room is back
        big.unlink()
        app.set_version("2.0.0")
        ok(app.here("deploy.staging"))
        assert app.current() == "v2" and "version=2.0.0" in app.get()[1]
    finally:
        app.stop()  # its working directory is on the tmpfs
        time.sleep(0.2)
        subprocess.run(["umount", "-l", str(disk)], check=False)


# --- damaged state.json ------------------------------------------------------------------


def damage(state_json: Path, how: str) -> None:
    text = state_json.read_text()
    state_json.unlink()
    if how == "a directory":
        state_json.mkdir()
        (state_json / "pid").write_text("1\n")
    elif how == "truncated":
        state_json.write_text(text[: len(text) // 2])
    elif how == "not as written":
        state_json.write_text(json.dumps({**json.loads(text), "pid": "1234"}))
    else:
        state_json.write_bytes(b"\xff\xfe\x00 not json at all")


@pytest.mark.parametrize("how", ["a directory", "truncated", "garbage", "not as written"])
def test_a_damaged_state_json_is_named_and_inv_stop_recovers(staging, how):
    app = staging()
    ok(app.here("deploy.staging"))
    before = serving(app)
    state_json = app.state / "server" / "state.json"
    damage(state_json, how)
    for task in ("status", "deploy.staging", "rollback", "releases"):
        done = app.here(task)
        assert done.returncode == 2, f"{task}: {done.stdout}{done.stderr}"
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, f"{task}: {done.stderr}"
        assert lines[0].startswith(".shipyard/staging/server/state.json is damaged (")
        assert lines[0].endswith("run `inv stop --env staging`, then deploy again")
        assert "Traceback" not in done.stdout + done.stderr
        assert runs(*before), f"{task} stopped the server"
    assert app.get()[0] == 200 and app.current() == "v1"

    stopped = app.here("stop", "--env", "staging")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    found = f"stopped v1 (pid {before[0]}, found listening on port {app.port})"
    assert stopped.stdout.splitlines()[0] == found
    assert "set the damaged .shipyard/staging/server/state.json aside as" in stopped.stdout
    assert app.get()[0] is None and not runs(*before)
    assert not state_json.exists() and list(state_json.parent.glob("state.json.damaged-*"))
    assert app.current() == "v1"  # inv stop leaves current as it is

    app.set_version("2.0.0")
    ok(app.here("deploy.staging"))
    assert app.current() == "v2" and "version=2.0.0" in app.get()[1]


def test_a_current_that_is_not_a_link_is_named(staging):
    app = staging()
    ok(app.here("deploy.staging"))
    (app.state / "current").unlink()
    (app.state / "current").mkdir()
    done = app.here("deploy.staging")
    assert done.returncode == 2, done.stdout + done.stderr
    assert ".shipyard/staging/current is damaged (not a link to a release)" in done.stderr
    assert "release=v1" in app.get()[1]


# --- inv stop ------------------------------------------------------------------------------


def audit_entries(app: Staging) -> list[dict]:
    return [json.loads(line) for line in (app.state / "audit.jsonl").read_text().splitlines()]


def test_inv_stop_stops_the_server_audits_and_the_next_deploy_serves(staging):
    app = staging()
    ok(app.here("deploy.staging"))
    pid, ticks = serving(app)
    done = app.here("stop")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f"stopped v1 (pid {pid})"
    assert "current still names v1" in done.stdout
    assert app.get()[0] is None and not runs(pid, ticks)
    entry = audit_entries(app)[-1]
    assert entry["event"] == "stop" and entry["stopped"] == [
        {"release": "v1", "pid": pid, "found_by": "state.json"}
    ]

    status = app.here("status")
    assert status.returncode == 1 and "serving nothing" in status.stdout
    again = app.here("stop")
    assert again.returncode == 0 and again.stdout.splitlines()[0] == "nothing was running"
    assert audit_entries(app)[-1]["stopped"] == []

    app.set_version("2.0.0")
    ok(app.here("deploy.staging"))
    assert app.current() == "v2" and "version=2.0.0" in app.get()[1]


def test_inv_stop_never_stops_a_foreign_process_on_the_port(staging):
    app = staging()
    listen = (
        "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen();"
        " print('up', flush=True); time.sleep(60)"
    )
    foreign = subprocess.Popen(
        [sys.executable, "-c", listen.format(port=app.port)],
        cwd=app.root,  # the project, not .shipyard/staging/
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert foreign.stdout is not None and foreign.stdout.readline() == "up\n"
        done = app.here("stop")
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.splitlines()[0] == "nothing was running"
        assert foreign.poll() is None  # still running: it is not a server of staging
    finally:
        foreign.kill()
        foreign.wait()


def test_inv_stop_waits_for_no_one_a_held_lock_is_exit_5(staging):
    app = staging()
    ok(app.here("deploy.staging"))
    before = serving(app)
    with DeployLock(app.state, command="inv deploy.staging"):
        done = app.here("stop")
    assert done.returncode == 5, done.stdout + done.stderr
    assert runs(*before) and app.get()[0] == 200


def test_inv_stop_on_a_fly_environment_is_a_usage_error(staging):
    app = staging()
    config = app.root / "shipyard.yaml"
    config.write_text(
        config.read_text()
        + "  fly-staging:\n    target: fly\n    app: webapp-staging\n    fly_config: fly.toml\n"
    )
    (app.root / "fly.toml").write_text('app = "webapp-staging"\n')
    done = app.here("stop", "--env", "fly-staging")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("inv stop is for the local target; fly-staging deploys to fly")


def test_an_artifact_over_the_environments_member_limit_is_refused_and_v1_untouched(staging):
    app = staging()
    ok(app.here("deploy.staging"))
    before = serving(app)
    config = app.root / "shipyard.yaml"
    config.write_text(
        config.read_text().replace("    port:", "    max_archive_members: 3\n    port:")
    )
    done = app.here("deploy.staging")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "max_archive_members" in done.stdout or "members" in done.stdout
    assert serving(app) == before and app.current() == "v1"
    assert sorted(p.name for p in (app.state / "releases").iterdir()) == ["v1"]
