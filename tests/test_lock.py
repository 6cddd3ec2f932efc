from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from helpers import ISO, run_here, write_project

from shipyard import audit
from shipyard.errors import ExitCode, LockHeld
from shipyard.lock import DeployLock, LockOwner
from shipyard.process import start_ticks

COMMAND = "inv deploy.staging"

# Tries to take the lock once the file `go` exists, holds it for `hold` seconds.
CONTENDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from shipyard.errors import LockHeld
    from shipyard.lock import DeployLock

    state, go, hold = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    lock = DeployLock(state, command="inv deploy.staging", audit_path=state / "audit.jsonl")
    print("READY", flush=True)
    while not go.exists():
        time.sleep(0.002)
    try:
        lock.acquire()
    except LockHeld as error:
        print("LOCKED", error, flush=True)
        sys.exit(error.exit_code)
    print("ACQUIRED", flush=True)
    time.sleep(hold)
    lock.release()
    """
)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / ".shipyard" / "staging"


def start_contenders(state: Path, go: Path, count: int, hold: float) -> list[subprocess.Popen]:
    """`count` processes that all try the lock at the same instant, when `go` appears."""
    contenders = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(state), str(go), str(hold)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for contender in contenders:
        assert contender.stdout is not None
        assert contender.stdout.readline().strip() == "READY"
    go.touch()
    return contenders


def outcomes(contenders: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    results = []
    for contender in contenders:
        out, err = contender.communicate(timeout=30)
        results.append((contender.returncode, out, err))
    return results


def write_lock(state: Path, *, legacy: bool = False, **overrides: object) -> dict[str, object]:
    """A lock as another process would have left it; `legacy`: as a Shipyard that recorded no
    start time did."""
    owner = {
        "pid": 999_999,
        "host": socket.gethostname(),
        "user": "alice",
        "started": "2026-11-30T06:38:08.123Z",
        "command": "inv rollback",
        "token": "ab" * 16,
        "start_ticks": 4242,
        **overrides,
    }
    if legacy:
        del owner["start_ticks"]
    (state / "lock").mkdir(parents=True)
    (state / "lock" / "owner.json").write_text(json.dumps(owner))
    return owner


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def sleeper():
    """A live process that is not Shipyard: what a reused pid points at."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.lstat().st_mtime_ns, path.lstat().st_size)
        for path in [root, *root.rglob("*")]
    }


def test_acquire_records_the_owner_and_release_removes_the_lock(state):
    lock = DeployLock(state, command=COMMAND)
    owner = lock.acquire()
    owner_file = state / "lock" / "owner.json"
    assert json.loads(owner_file.read_text()) == asdict(owner)
    assert (owner.pid, owner.host, owner.user, owner.command) == (
        os.getpid(),
        socket.gethostname(),
        audit.current_user(),
        COMMAND,
    )
    assert re.fullmatch(ISO, owner.started)
    assert re.fullmatch(r"[0-9a-f]{32}", owner.token)
    assert isinstance(owner.start_ticks, int)
    assert owner.start_ticks == start_ticks(os.getpid())
    assert owner_file.stat().st_mode & 0o777 & ~0o644 == 0
    assert state.stat().st_mode & 0o777 & ~0o755 == 0
    lock.release()
    lock.release()
    assert sorted(path.name for path in state.iterdir()) == ["lock.guard"]


def test_each_acquisition_gets_its_own_token(state):
    lock = DeployLock(state, command=COMMAND)
    first = lock.acquire()
    lock.release()
    assert lock.acquire().token != first.token


def test_holder_names_the_owner_and_changes_nothing(state):
    lock = DeployLock(state, command=COMMAND)
    assert lock.holder() is None
    assert not state.exists()
    owner = lock.acquire()
    before = snapshot(state)
    time.sleep(0.01)
    assert DeployLock(state, command="inv status").holder() == owner
    assert snapshot(state) == before


def test_holder_and_state_do_not_break_a_stale_lock(state):
    write_lock(state, pid=dead_pid())
    before = snapshot(state)
    lock = DeployLock(state, command="inv status")
    assert lock.holder() is not None
    found = lock.state()
    assert found is not None
    assert (found.stale, found.reason) == (True, "process is gone")
    assert snapshot(state) == before


def test_a_second_lock_is_refused_at_once_naming_the_holder(state):
    owner = DeployLock(state, command=COMMAND).acquire()
    started = time.monotonic()
    with pytest.raises(LockHeld) as refused:
        DeployLock(state, command="inv rollback").acquire()
    assert time.monotonic() - started < 1.0
    message = refused.value.message
    assert message.startswith("staging is locked by ")
    assert "\n" not in message
    for detail in (str(os.getpid()), owner.host, owner.user, owner.started, COMMAND):
        assert detail in message
    assert refused.value.exit_code == ExitCode.LOCKED
    assert DeployLock(state, command="inv status").holder() == owner


def test_of_five_simultaneous_processes_exactly_one_gets_the_lock(state, tmp_path):
    results = outcomes(start_contenders(state, tmp_path / "go", count=5, hold=0.5))
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 5, 5, 5, 5], results
    assert sum(out.startswith("ACQUIRED") for _, out, _ in results) == 1
    refusals = [out for code, out, _ in results if code == 5]
    assert all("staging is locked by pid" in out and COMMAND in out for out in refusals)
    assert sorted(path.name for path in state.iterdir()) == ["lock.guard"]


def test_a_waiter_gets_the_lock_when_the_holder_releases_it(state, tmp_path):
    (holder,) = start_contenders(state, tmp_path / "go", count=1, hold=1.0)
    assert holder.stdout is not None
    assert holder.stdout.readline().startswith("ACQUIRED")
    started = time.monotonic()
    with pytest.raises(LockHeld, match=r"waited 0\.3s"):
        DeployLock(state, command=COMMAND).acquire(wait=0.3)
    assert 0.3 <= time.monotonic() - started < 0.9
    with DeployLock(state, command=COMMAND, wait=5) as owner:
        assert owner.pid == os.getpid()
        assert holder.wait(timeout=5) == 0
    assert time.monotonic() - started < 3


def test_a_stale_lock_is_broken_with_a_warning_and_an_audit_line(state):
    old = write_lock(state, pid=dead_pid())
    warnings: list[str] = []
    audit_path = state / "audit.jsonl"
    lock = DeployLock(state, command=COMMAND, audit_path=audit_path, warn=warnings.append)
    owner = lock.acquire()
    assert DeployLock(state, command="inv status").holder() == owner
    assert warnings == [
        f"breaking stale lock of pid {old['pid']} on {old['host']} by alice "
        f"since {old['started']}: inv rollback: process is gone"
    ]
    (entry,) = audit.read(audit_path)
    assert entry["event"] == "lock_break"
    assert entry["owner"] == old
    assert entry["pid"] == os.getpid()
    assert not [path for path in state.iterdir() if path.name.startswith(".lock-")]


def test_a_stale_lock_is_broken_once_when_five_processes_find_it(state, tmp_path):
    write_lock(state, pid=dead_pid())
    results = outcomes(start_contenders(state, tmp_path / "go", count=5, hold=0.5))
    assert sorted(code for code, _, _ in results) == [0, 5, 5, 5, 5], results
    assert sum("breaking stale lock" in err for _, _, err in results) == 1
    assert [entry["event"] for entry in audit.read(state / "audit.jsonl")] == ["lock_break"]


def test_a_live_owner_is_never_broken(state, sleeper):
    write_lock(state, pid=sleeper.pid, start_ticks=start_ticks(sleeper.pid))
    before = snapshot(state / "lock")
    with pytest.raises(LockHeld, match=f"pid {sleeper.pid} on ") as refused:
        DeployLock(state, command=COMMAND, warn=pytest.fail).acquire()
    assert refused.value.message.endswith("; try again later or pass --lock-wait 60s")
    assert snapshot(state / "lock") == before


def test_a_pid_reused_by_another_process_is_broken_with_a_warning_and_an_audit_line(state, sleeper):
    ticks = start_ticks(sleeper.pid)
    assert ticks is not None
    old = write_lock(state, pid=sleeper.pid, start_ticks=ticks - 1)  # the owner started earlier
    warnings: list[str] = []
    audit_path = state / "audit.jsonl"
    lock = DeployLock(state, command=COMMAND, audit_path=audit_path, warn=warnings.append)
    owner = lock.acquire()
    assert DeployLock(state, command="inv status").holder() == owner
    reason = (
        f"pid {sleeper.pid} is now another process (started at tick {ticks}, the owner at "
        f"{ticks - 1})"
    )
    assert warnings == [
        f"breaking stale lock of pid {sleeper.pid} on {old['host']} by alice "
        f"since {old['started']}: inv rollback: {reason}"
    ]
    (entry,) = audit.read(audit_path)
    assert (entry["event"], entry["owner"], entry["reason"]) == ("lock_break", old, reason)
    assert sleeper.poll() is None  # breaking a lock touches no process


def test_a_lock_without_start_time_is_held_while_its_pid_lives_and_says_so(state, sleeper):
    write_lock(state, legacy=True, pid=sleeper.pid)
    with pytest.raises(LockHeld) as refused:
        DeployLock(state, command=COMMAND, warn=pytest.fail).acquire()
    message = refused.value.message
    assert message.startswith(f"staging is locked by pid {sleeper.pid} on ")
    assert "owner.json has no start time (a lock from before Shipyard recorded them)" in message
    assert message.endswith("if it is not running, `inv lock.release --env staging --force`")
    assert "\n" not in message
    found = DeployLock(state, command="inv status").state()
    assert found is not None
    assert (found.stale, found.unsure, found.holder.start_ticks) == (False, True, None)


def test_a_lock_without_start_time_whose_pid_is_gone_is_broken(state):
    write_lock(state, legacy=True, pid=dead_pid())
    warnings: list[str] = []
    DeployLock(state, command=COMMAND, warn=warnings.append).acquire()
    assert len(warnings) == 1
    assert warnings[0].endswith(": inv rollback: process is gone")


def test_keys_a_newer_shipyard_adds_to_owner_json_are_left_aside(state):
    old = write_lock(state, pid=os.getpid(), start_ticks=start_ticks(os.getpid()), kind="auto")
    holder = DeployLock(state, command="inv status").holder()
    assert holder is not None
    assert (holder.pid, holder.token) == (old["pid"], old["token"])


def test_a_lock_from_another_host_is_never_broken(state):
    old = write_lock(state, pid=dead_pid(), host="build-42.example")
    long_ago = time.time() - 86_400
    os.utime(state / "lock", (long_ago, long_ago))
    with pytest.raises(LockHeld, match=re.escape("on build-42.example by alice")) as refused:
        DeployLock(state, command=COMMAND, warn=pytest.fail).acquire()
    assert "taken on build-42.example, whose processes cannot be checked" in refused.value.message
    assert json.loads((state / "lock" / "owner.json").read_text()) == old


def test_release_leaves_a_lock_that_is_not_ours(state):
    lock = DeployLock(state, command=COMMAND)
    owner = lock.acquire()
    taken_over = {**asdict(owner), "token": "f" * 32}
    (state / "lock" / "owner.json").write_text(json.dumps(taken_over))
    lock.release()
    assert json.loads((state / "lock" / "owner.json").read_text()) == taken_over


def test_release_of_a_vanished_lock_is_quiet(state):
    lock = DeployLock(state, command=COMMAND)
    lock.acquire()
    shutil.rmtree(state / "lock")
    lock.release()
    DeployLock(state, command=COMMAND).release()
    assert not (state / "lock").exists()


def test_the_lock_is_released_when_the_block_raises(state):
    with pytest.raises(RuntimeError), DeployLock(state, command=COMMAND) as owner:
        assert DeployLock(state, command="inv status").holder() == owner
        raise RuntimeError("deploy failed")
    assert DeployLock(state, command="inv status").holder() is None


@pytest.mark.parametrize(
    "owner_json",
    [
        None,
        b"",
        b'{"pid": 12',
        b'{"pid": "12", "host": "h"}',
        b"\xff\xfe",
        b'{"pid": 12, "host": "h", "user": "u", "started": "t", "command": "c", "token": "0",'
        b' "start_ticks": "9"}',
    ],
    ids=["missing", "empty", "truncated", "wrong-shape", "binary", "start-ticks-not-a-number"],
)
def test_an_ownerless_lock_is_held_for_30s_then_broken(state, owner_json):
    (state / "lock").mkdir(parents=True)
    if owner_json is not None:
        (state / "lock" / "owner.json").write_bytes(owner_json)
    with pytest.raises(LockHeld, match="locked by an unknown owner since"):
        DeployLock(state, command=COMMAND).acquire()
    assert (state / "lock").is_dir()
    long_ago = time.time() - 31
    os.utime(state / "lock", (long_ago, long_ago))
    warnings: list[str] = []
    owner = DeployLock(state, command=COMMAND, warn=warnings.append).acquire()
    assert json.loads((state / "lock" / "owner.json").read_text()) == asdict(owner)
    assert len(warnings) == 1
    assert "breaking stale lock of an unknown owner" in warnings[0]


def test_describe_is_one_line_naming_the_holder():
    owner = LockOwner(
        pid=4121,
        host="ci-7",
        user="alice",
        started="2026-11-30T06:38:08.123Z",
        command=COMMAND,
        token="0" * 32,
    )
    assert owner.describe() == (
        "pid 4121 on ci-7 by alice since 2026-11-30T06:38:08.123Z: inv deploy.staging"
    )


# --- inv lock.status, inv lock.release -----------------------------------------------------

PROJECT = """
version: 1
steps:
  build: {run: "true", artifact: "dist/app-*.tar.gz"}
environments:
  staging:
    target: local
    start: python3 -m webapp --port {port}
    port: 8765
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj", PROJECT)


def inv(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_here(list(args), root)


def test_lock_commands_without_a_lock_say_unlocked_and_exit_0(project):
    status = inv(project, "lock.status")
    assert (status.returncode, status.stdout, status.stderr) == (0, "staging: unlocked\n", "")
    as_json = inv(project, "lock.status", "--json")
    assert json.loads(as_json.stdout) == {"environment": "staging", "locked": False}
    assert not (project / ".shipyard").exists()  # status reads only
    release = inv(project, "lock.release", "--env", "staging")
    assert (release.returncode, release.stdout) == (0, "staging: unlocked\n")
    assert audit.read(project / ".shipyard" / "staging" / "audit.jsonl") == []
    unknown = inv(project, "lock.status", "--env", "prod")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "--env prod: no such environment in shipyard.yaml (staging)"


def test_a_live_holder_is_shown_refused_and_released_only_by_force(project, sleeper):
    state = project / ".shipyard" / "staging"
    old = write_lock(state, pid=sleeper.pid, start_ticks=start_ticks(sleeper.pid))
    before, before_lock = snapshot(state), snapshot(state / "lock")
    holder = f"pid {sleeper.pid} on {old['host']} by alice since {old['started']}: inv rollback"
    held = f"held: pid {sleeper.pid} is running (its start time matches)"
    status = inv(project, "lock.status")
    assert (status.returncode, status.stdout) == (0, f"staging: locked by {holder}; {held}\n")
    document = json.loads(inv(project, "lock.status", "--json").stdout)
    assert (document["locked"], document["state"], document["holder"]) == (True, "held", old)
    assert snapshot(state) == before

    refused = inv(project, "lock.release")
    assert refused.returncode == 5
    assert refused.stderr == (
        f"staging is locked by {holder}; {held}; pass --force to release it anyway\n"
    )
    assert snapshot(state / "lock") == before_lock

    forced = inv(project, "lock.release", "--force")
    assert (forced.returncode, forced.stdout) == (
        0,
        f"staging: released by --force the held lock of {holder}; {held}\n",
    )
    assert not (state / "lock").exists()
    assert sleeper.poll() is None
    (entry,) = audit.read(state / "audit.jsonl")
    assert entry["event"] == "lock_release"
    assert (entry["owner"], entry["forced"], entry["state"]) == (old, True, "held")
    assert (entry["command"], entry["pid"]) == ("inv lock.release --force", os.getpid())
    assert entry["user"] == audit.current_user()


@pytest.mark.parametrize("how", ["gone", "pid-reused"])
def test_a_stale_lock_is_shown_and_released_without_force(project, sleeper, how):
    state = project / ".shipyard" / "staging"
    pid = dead_pid() if how == "gone" else sleeper.pid
    old = write_lock(state, pid=pid, start_ticks=(start_ticks(sleeper.pid) or 0) + 1)
    status = inv(project, "lock.status")
    assert status.returncode == 0
    assert status.stdout.startswith(f"staging: locked by pid {pid} on ")
    assert "; stale: " in status.stdout
    assert status.stdout.endswith(
        "; the next deploy or rollback breaks it, or `inv lock.release --env staging` now\n"
    )
    assert (state / "lock").exists()

    release = inv(project, "lock.release")
    assert release.returncode == 0, release.stderr
    assert release.stdout.startswith(f"staging: released the stale lock of pid {pid} on ")
    assert not (state / "lock").exists()
    (entry,) = audit.read(state / "audit.jsonl")
    assert (entry["event"], entry["owner"], entry["forced"]) == ("lock_release", old, False)
    assert entry["reason"] in release.stdout
