from __future__ import annotations

import fcntl
import os
import signal
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from helpers import random_secret

from shipyard.config import Step
from shipyard.heartbeat import Heartbeat
from shipyard.pipeline import Stop
from shipyard.redact import Redactor, StreamMasker
from shipyard.runner import OutputPump, StepContext, StepStatus, run_step


class Recorder:
    def __init__(self) -> None:
        self.output: list[str] = []
        self.started: list[int] = []
        self.beats = 0

    def step_started(self, step: str, attempt: int) -> None:
        self.started.append(attempt)

    def step_output(self, step: str, data: bytes) -> None:
        self.output.append(data.decode())

    def step_beat(self, step: str, elapsed: float, quiet: float) -> None:
        self.beats += 1


class Discard(Recorder):
    def step_output(self, step: str, data: bytes) -> None:
        pass


def context(tmp_path: Path, *, secrets=(), interval=15.0, stop=None, listener=None) -> StepContext:
    redactor = Redactor(secrets)
    return StepContext(
        root=tmp_path,
        environ={**os.environ, "PATH": os.environ["PATH"]},
        redactor=redactor,
        heartbeat=Heartbeat(tmp_path / "heartbeat.log", agent="t", run_id="r", redactor=redactor),
        log_dir=tmp_path / "logs",
        heartbeat_interval=interval,
        stop=stop or threading.Event(),
        listener=listener or Recorder(),
    )


def events(tmp_path: Path) -> list[str]:
    return [
        line.split(" event=")[1].split()[0]
        for line in (tmp_path / "heartbeat.log").read_text().splitlines()
    ]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_output_streams_to_log_and_listener_and_exit_code_decides(tmp_path):
    listener = Recorder()
    result = run_step(
        Step("say", "echo out; echo err >&2; exit 3"), context(tmp_path, listener=listener)
    )
    assert (result.status, result.exit_code) == (StepStatus.FAILED, 3)
    assert result.log_path.read_text() == "out\nerr\n"
    assert "".join(listener.output) == "out\nerr\n"
    assert events(tmp_path) == ["start", "end"]
    assert "status=failed exit=3" in (tmp_path / "heartbeat.log").read_text()


def test_secret_is_masked_in_log_listener_and_heartbeat(tmp_path):
    secret = random_secret()
    listener = Recorder()
    ctx = context(tmp_path, secrets=[secret], listener=listener)
    result = run_step(Step("leak", f"echo token={secret}"), ctx)
    assert result.ok
    for text in (
        result.log_path.read_text(),
        "".join(listener.output),
        (tmp_path / "heartbeat.log").read_text(),
    ):
        assert secret not in text
        assert "***" in text


class RawRecorder(Recorder):
    def step_output(self, step: str, data: bytes) -> None:
        self.output.append(data)  # type: ignore[arg-type]


def octal(data: bytes) -> str:
    """`data` as printf's format string spells it."""
    return "".join(f"\\{byte:03o}" for byte in data)


def test_output_is_passed_on_as_the_bytes_printed_with_secrets_masked(tmp_path):
    """Bytes that are not UTF-8 reach the log and the console as they are, as through tee."""
    secret = random_secret()
    listener = RawRecorder()
    ctx = context(tmp_path, secrets=[secret], listener=listener)
    printed = b"caf\xe9 \xff\xfe " + secret.encode() + b" \xe2\x82\xac \xe2\x82"
    result = run_step(Step("raw", f"printf '{octal(printed)}'"), ctx)
    expected = b"caf\xe9 \xff\xfe *** \xe2\x82\xac \xe2\x82"
    assert result.log_path.read_bytes() == expected
    assert b"".join(listener.output) == expected  # type: ignore[arg-type]


def test_a_secret_that_is_not_utf8_is_masked_as_its_bytes(tmp_path):
    """An environment value that is not UTF-8 reaches Python surrogate-escaped; a step prints
    its bytes, which are what is masked."""
    raw = b"\xff" + random_secret().encode() + b"\xfe\x80"
    value = os.fsdecode(raw)  # as os.environ holds it
    result = run_step(
        Step("raw", f"printf 'token={octal(raw)}\\n'"), context(tmp_path, secrets=[value])
    )
    assert result.log_path.read_bytes() == b"token=***\n"


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="Linux pipes only")
def test_the_pump_widens_its_pipe_where_the_system_allows():
    read, write = os.pipe()
    try:
        with open(read, "rb", buffering=0) as pipe:
            OutputPump(pipe, StreamMasker(Redactor()), lambda data: None)
            size = fcntl.fcntl(read, fcntl.F_GETPIPE_SZ)
    finally:
        os.close(write)
    allowed = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    assert size == 1 << 20 or allowed < 1 << 20


def test_step_longer_than_the_interval_beats(tmp_path):
    listener = Recorder()
    run_step(Step("slow", "sleep 0.7"), context(tmp_path, interval=0.2, listener=listener))
    assert events(tmp_path).count("beat") >= 2
    beat = next(
        line
        for line in (tmp_path / "heartbeat.log").read_text().splitlines()
        if "event=beat" in line
    )
    assert all(f" {field}=" in beat for field in ("elapsed", "quiet", "out_bytes"))
    assert listener.beats >= 2


STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
grandchild = subprocess.Popen([sys.executable, "-c", code])
open(sys.argv[1], "w").write(f"{os.getpid()} {grandchild.pid}")
print("ready", flush=True)
time.sleep(60)
"""


def test_timeout_kills_the_whole_group_even_processes_ignoring_sigterm(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    pids_file = tmp_path / "pids"
    step = Step("hang", f"{sys.executable} {script} {pids_file}", timeout=1.0, grace=0.5)
    result = run_step(step, context(tmp_path))
    assert (result.status, result.exit_code) == (StepStatus.TIMEOUT, 124)
    pids = [int(pid) for pid in pids_file.read_text().split()]
    assert len(pids) == 2
    assert not any(alive(pid) for pid in pids)
    assert "status=timeout exit=124" in (tmp_path / "heartbeat.log").read_text()


def test_background_leftovers_do_not_outlive_a_successful_step(tmp_path):
    pid_file = tmp_path / "pid"
    result = run_step(Step("bg", f"sleep 60 & echo $! > {pid_file}"), context(tmp_path))
    assert result.ok
    assert not alive(int(pid_file.read_text()))


def test_stop_event_interrupts_with_130(tmp_path):
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    began = time.monotonic()
    result = run_step(Step("long", "sleep 30"), context(tmp_path, stop=stop))
    assert (result.status, result.exit_code) == (StepStatus.INTERRUPTED, 130)
    assert time.monotonic() - began < 25  # far below the step's own 30 s: it was stopped


def test_a_step_stopped_by_a_signal_exits_128_plus_its_number(tmp_path):
    stop = Stop()  # the pipeline's: it remembers which signal set it
    threading.Timer(0.3, stop.by_signal, (signal.SIGTERM,)).start()
    result = run_step(Step("long", "sleep 30"), context(tmp_path, stop=stop))
    assert (result.status, result.exit_code) == (StepStatus.INTERRUPTED, 143)
    assert "status=interrupted exit=143" in (tmp_path / "heartbeat.log").read_text()


def test_retries_record_every_attempt_in_result_and_heartbeat(tmp_path):
    counter = tmp_path / "count"
    command = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ]"
    )
    listener = Recorder()
    result = run_step(Step("flaky", command, retries=3), context(tmp_path, listener=listener))
    assert result.ok
    assert [a.status for a in result.attempts] == [
        StepStatus.FAILED,
        StepStatus.FAILED,
        StepStatus.OK,
    ]
    log = (tmp_path / "heartbeat.log").read_text()
    assert [f"attempt={n}" in log for n in (1, 2, 3)] == [True, True, True]
    assert listener.started == [1, 2, 3]
    assert "--- attempt 3 of 4 ---" in result.log_path.read_text()


def test_retries_stop_at_the_limit(tmp_path):
    result = run_step(Step("broken", "exit 7", retries=1), context(tmp_path))
    assert (result.status, result.exit_code, len(result.attempts)) == (StepStatus.FAILED, 7, 2)


@pytest.mark.parametrize("chunking", ["lines", "one-long-line"])
def test_memory_stays_flat_whatever_a_step_prints(tmp_path, chunking):
    megabytes = 40
    command = (
        f"yes 'a line of build output that goes on' | head -c {megabytes}M"
        if chunking == "lines"
        else f"head -c {megabytes}M /dev/zero | tr '\\0' x"
    )
    tracemalloc.start()
    result = run_step(Step("loud", command), context(tmp_path, listener=Discard()))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.ok
    assert result.log_path.stat().st_size == megabytes * 1024 * 1024
    assert peak < 8 * 1024 * 1024  # a fraction of what was printed: streamed, not accumulated
