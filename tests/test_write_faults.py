"""A log that cannot be written ends the step, never hangs it: the file-size limit (EFBIG,
`ulimit -f`), a full disk (ENOSPC: /dev/full, a small tmpfs), the heartbeat log failing.
The step's processes are gone after, and the error is one line naming the file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_process_tree import WAIT_FOR_PIDS, recorded_pids
from test_runner import Recorder, alive, context

from shipyard.config import Step
from shipyard.heartbeat import Heartbeat
from shipyard.runner import StepStatus, WriteFailed, run_action, run_step

pytestmark = pytest.mark.timeout(30)  # a hang is the bug these attack

DEV_FULL = Path("/dev/full")  # every write to it fails with ENOSPC
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full here")

# A step that starts a background process (its pid in `pids`), records its own, then prints
# 3 MB and would sleep on: only the write failure can end it early.
LOUD = (
    "sh -c 'echo $$ >> pids; exec sleep 300' &\n"
    f"{WAIT_FOR_PIDS}\necho $$ >> pids\n"
    "head -c 3M /dev/zero | tr '\\0' x\nsleep 30"
)

# Runs LOUD through run_step in a process of its own (argv: root, log folder) and prints the
# outcome as JSON.
CHILD = textwrap.dedent("""
    import json, os, sys, threading, time
    from pathlib import Path
    from shipyard.config import Step
    from shipyard.heartbeat import Heartbeat
    from shipyard.redact import Redactor
    from shipyard.runner import StepContext, WriteFailed, run_step

    class Quiet:
        def step_started(self, step, attempt): pass
        def step_output(self, step, data): pass
        def step_beat(self, step, elapsed, quiet): pass

    root, logs = Path(sys.argv[1]), Path(sys.argv[2])
    redactor = Redactor([])
    ctx = StepContext(root, dict(os.environ), redactor,
        Heartbeat(root / "heartbeat.log", agent="t", run_id="r", redactor=redactor),
        logs, 15.0, threading.Event(), Quiet())
    began = time.monotonic()
    try:
        run_step(Step("big", sys.argv[3], grace=0.5), ctx)
        outcome = {"raised": None}
    except WriteFailed as failed:
        outcome = {"raised": failed.message, "status": failed.result.status.value,
                   "exit_code": failed.result.exit_code, "error": failed.result.error}
    outcome["elapsed"] = time.monotonic() - began
    print(json.dumps(outcome))
""")


def run_child(argv_before: list[str], root: Path, logs: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*argv_before, sys.executable, "-c", CHILD, str(root), str(logs), LOUD],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=25,
        check=False,
    )


def assert_stopped_by(outcome: dict[str, object], message: str, root: Path) -> None:
    assert outcome["raised"] == message
    assert (outcome["status"], outcome["exit_code"], outcome["error"]) == ("failed", 1, message)
    assert outcome["elapsed"] < 10  # the step itself would sleep 30 s more
    pids = recorded_pids(root)
    assert len(pids) == 2  # the background process, then the shell
    assert not any(alive(pid) for pid in pids)


def test_a_file_size_limit_ends_the_step_with_one_line(tmp_path):
    """`ulimit -f 200` (200 KiB): the log's write fails with EFBIG, as the issue saw."""
    done = run_child(["bash", "-c", 'ulimit -f 200; exec "$@"', "-"], tmp_path, tmp_path / "logs")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    message = "cannot write logs/big.log: [Errno 27] File too large"
    assert_stopped_by(json.loads(done.stdout), message, tmp_path)
    assert (tmp_path / "logs" / "big.log").read_text() == "x" * 200 * 1024  # what fit is kept


def test_a_full_tmpfs_ends_the_step_with_one_line(tmp_path):
    """ENOSPC from a real file system: a 64 KiB tmpfs in a private mount namespace (it goes
    with the process); needs the right to mount, so skipped where that is refused."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare here (util-linux)")
    mount = tmp_path / "small"
    mount.mkdir()
    script = 'mount -t tmpfs -o size=64k tmpfs "$1" || exit 77; shift; exec "$@"'
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "-", str(mount), "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()[:200]}")
    done = run_child(["unshare", "-m", "sh", "-c", script, "-", str(mount)], tmp_path, mount)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    message = "cannot write small/big.log: [Errno 28] No space left on device"
    assert_stopped_by(json.loads(done.stdout), message, tmp_path)


def full_log(tmp_path: Path, name: str) -> None:
    """The step `name`'s log is /dev/full: every write to it fails with ENOSPC."""
    (tmp_path / "logs").mkdir(exist_ok=True)
    (tmp_path / "logs" / f"{name}.log").symlink_to(DEV_FULL)


@needs_dev_full
def test_a_full_disk_ends_the_step_and_it_is_not_retried(tmp_path):
    full_log(tmp_path, "full")
    listener = Recorder()
    step = Step("full", LOUD.replace("sleep 30", "exit 1"), retries=2, grace=0.5)
    began = time.monotonic()
    with pytest.raises(WriteFailed) as raised:
        run_step(step, context(tmp_path, listener=listener))
    assert time.monotonic() - began < 10
    message = "cannot write logs/full.log: [Errno 28] No space left on device"
    assert raised.value.message == message
    assert raised.value.exit_code == 1
    result = raised.value.result
    assert (result.status, result.exit_code, result.error) == (StepStatus.FAILED, 1, message)
    assert len(result.attempts) == 1  # a full disk is not worth another attempt
    assert listener.output == []  # the console shows no more than the log holds
    assert not any(alive(pid) for pid in recorded_pids(tmp_path))
    assert "status=failed exit=1" in (tmp_path / "heartbeat.log").read_text()


def test_a_log_that_cannot_be_created_fails_before_the_step_runs(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    ctx = replace(context(tmp_path), log_dir=tmp_path / "file" / "logs")
    with pytest.raises(WriteFailed) as raised:
        run_step(Step("never", "touch ran"), ctx)
    assert raised.value.message == ("cannot write file/logs/never.log: [Errno 20] Not a directory")
    assert raised.value.result.attempts == ()
    assert not (tmp_path / "ran").exists()


def break_heartbeat(tmp_path: Path, heartbeat: Heartbeat) -> None:
    """Point the heartbeat at /dev/full from now on."""
    full = tmp_path / "heartbeat-full.log"
    full.symlink_to(DEV_FULL)
    heartbeat.path = full


@needs_dev_full
def test_a_heartbeat_that_fails_at_the_start_ends_the_step(tmp_path, capfd):
    ctx = context(tmp_path)
    break_heartbeat(tmp_path, ctx.heartbeat)
    began = time.monotonic()
    with pytest.raises(WriteFailed) as raised:
        run_step(Step("beating", f"echo $$ >> pids; {WAIT_FOR_PIDS}; sleep 30"), ctx)
    assert time.monotonic() - began < 10
    message = "cannot write heartbeat-full.log: [Errno 28] No space left on device"
    assert raised.value.message == message
    assert raised.value.result.log_path.read_text() == ""  # the log itself was fine
    assert not any(alive(pid) for pid in recorded_pids(tmp_path))
    stderr = capfd.readouterr().err
    assert stderr.count("heartbeat stopped") == 1
    assert "Traceback" not in stderr


@needs_dev_full
def test_a_heartbeat_that_fails_while_beating_ends_the_step(tmp_path, capfd):
    ctx = context(tmp_path, interval=0.1)
    threading.Timer(0.4, break_heartbeat, (tmp_path, ctx.heartbeat)).start()
    began = time.monotonic()
    with pytest.raises(WriteFailed, match=r"heartbeat-full\.log: \[Errno 28\]"):
        run_step(Step("beating", "sleep 30", grace=0.5), ctx)
    assert time.monotonic() - began < 10
    assert "event=beat" in (tmp_path / "heartbeat.log").read_text()  # it beat, then failed
    assert capfd.readouterr().err.count("heartbeat stopped") == 1


@needs_dev_full
def test_no_step_starts_once_the_heartbeat_has_failed(tmp_path):
    ctx = context(tmp_path)
    break_heartbeat(tmp_path, ctx.heartbeat)
    ctx.heartbeat.emit("earlier", "start")  # fails: the heartbeat is stopped from here
    with pytest.raises(WriteFailed) as raised:
        run_step(Step("later", "touch ran"), ctx)
    assert raised.value.result.attempts == ()
    assert not (tmp_path / "ran").exists()


@needs_dev_full
def test_a_python_step_runs_to_its_end_when_its_heartbeat_fails(tmp_path, monkeypatch):
    """A deploy or a restore is never cut short by a full disk; its beat thread dies with no
    traceback; the failure is raised after."""
    thread_errors: list[object] = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    ctx = context(tmp_path, interval=0.05)
    break_heartbeat(tmp_path, ctx.heartbeat)
    finished = []

    def action(say) -> None:
        say("working")
        time.sleep(0.3)  # several beats, each of which would fail
        finished.append(True)

    with pytest.raises(WriteFailed) as raised:
        run_action("Deploy", "deploy v2", action, ctx)
    assert finished == [True]
    result = raised.value.result
    assert result.status is StepStatus.FAILED
    assert result.attempts[0].status is StepStatus.OK  # what the action itself did
    assert result.log_path.read_text() == "working\n"
    assert not thread_errors


@needs_dev_full
def test_a_python_steps_log_that_fails_is_raised_after_the_action(tmp_path):
    full_log(tmp_path, "Smoke")
    said = []

    def action(say) -> None:
        say("checking")  # does not raise into the action
        said.append(True)

    with pytest.raises(WriteFailed, match=r"logs/Smoke\.log: \[Errno 28\]"):
        run_action("Smoke", "smoke", action, context(tmp_path))
    assert said == [True]


def test_a_listener_that_raises_stops_the_step_instead_of_hanging_it(tmp_path):
    class Broken(Recorder):
        def step_output(self, step: str, data: bytes) -> None:
            raise RuntimeError("console gone")

    command = f"echo $$ >> pids; {WAIT_FOR_PIDS}; echo hello; sleep 30"
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="console gone"):
        run_step(Step("shown", command, grace=0.5), context(tmp_path, listener=Broken()))
    assert time.monotonic() - began < 10
    assert not any(alive(pid) for pid in recorded_pids(tmp_path))
    assert os.path.getsize(tmp_path / "logs" / "shown.log") > 0
