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
from helpers import ISO

from shipyard import audit
from shipyard.errors import ExitCode, LockHeld
from shipyard.lock import DeployLock, LockOwner

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


def write_lock(state: Path, **overrides: object) -> dict[str, object]:
    """A lock as another process would have left it."""
    owner = {
        "pid": 999_999,
        "host": socket.gethostname(),
        "user": "alice",
        "started": "2026-11-30T06:38:08.123Z",
        "command": "inv rollback",
        "token": "ab" * 16,
        **overrides,
    }
    (state / "lock").mkdir(parents=True)
    (state / "lock" / "owner.json").write_text(json.dumps(owner))
    return owner


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


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


def test_holder_does_not_break_a_stale_lock(state):
    write_lock(state, pid=dead_pid())
    before = snapshot(state)
    assert DeployLock(state, command="inv status").holder() is not None
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


def test_a_live_owner_is_never_broken(state):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        write_lock(state, pid=sleeper.pid)
        before = snapshot(state / "lock")
        with pytest.raises(LockHeld, match=f"pid {sleeper.pid} on "):
            DeployLock(state, command=COMMAND, warn=pytest.fail).acquire()
        assert snapshot(state / "lock") == before
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_lock_from_another_host_is_never_broken(state):
    old = write_lock(state, pid=dead_pid(), host="build-42.example")
    long_ago = time.time() - 86_400
    os.utime(state / "lock", (long_ago, long_ago))
    with pytest.raises(LockHeld, match=re.escape("on build-42.example by alice")):
        DeployLock(state, command=COMMAND, warn=pytest.fail).acquire()
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
    [None, b"", b'{"pid": 12', b'{"pid": "12", "host": "h"}', b"\xff\xfe"],
    ids=["missing", "empty", "truncated", "wrong-shape", "binary"],
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
