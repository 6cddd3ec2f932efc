"""A step's whole process tree ends with it: what detached itself (setsid, a double fork, job
control) too, whether the step ended, timed out or held its output pipe open; and nothing
that is not the step's is touched (a server, another step's shell)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_runner import alive, context

from shipyard import server
from shipyard.config import Step
from shipyard.runner import StepStatus, run_step

# Each escapee writes its pid to `pids`, then becomes `sleep 300.<random>`: the random
# fraction is the marker its argv is found by.
RECORD = "sh -c 'echo $$ >> pids; exec sleep {sleep}'"
ESCAPES = {
    "setsid -f": f"setsid -f {RECORD}",
    "job control": f"set -m; {RECORD} &",
    "setsid &": f"setsid {RECORD} &",
    "double fork": f"( ( {RECORD} & ) & )",
    # no environment, so no mark: known only because it was seen under the shell
    "env -i, seen": f"env -i setsid {RECORD} & sleep 0.5",
}
WAIT_FOR_PIDS = "while [ ! -s pids ]; do sleep 0.01; done"


@pytest.fixture
def sleep_marker(tmp_path: Path):
    """`300.<random>` for `sleep`; afterwards, anything recorded in `pids` is killed by pid (a
    failing test must not leave them, and the `env -i` one has no hygiene mark)."""
    yield f"300.{secrets.randbelow(10**6):06d}"
    for pid in recorded_pids(tmp_path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def recorded_pids(root: Path) -> list[int]:
    path = root / "pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def zombie_children() -> set[int]:
    """The zombies whose parent is this (the test's) process."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z" and int(fields[1]) == os.getpid():
                found.add(int(stat.parent.name))
    return found


def assert_all_gone(root: Path, marker: str, zombies_before: set[int]) -> None:
    pids = recorded_pids(root)
    assert pids, "the escapee never started: this test proves nothing"
    assert not processes_with(marker)
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]  # not even a zombie
    assert zombie_children() <= zombies_before


@pytest.mark.parametrize("escape", ESCAPES.values(), ids=ESCAPES.keys())
def test_what_a_step_detaches_ends_with_it(tmp_path, sleep_marker, escape):
    zombies = zombie_children()
    command = f"{escape.format(sleep=sleep_marker)}\n{WAIT_FOR_PIDS}\necho done"
    result = run_step(Step("detach", command, grace=0.5), context(tmp_path))
    assert result.ok, result.log_path.read_text()
    assert_all_gone(tmp_path, sleep_marker, zombies)


@pytest.mark.parametrize("escape", ESCAPES.values(), ids=ESCAPES.keys())
def test_what_a_timed_out_step_detached_ends_with_it(tmp_path, sleep_marker, escape):
    zombies = zombie_children()
    command = f"{escape.format(sleep=sleep_marker)}\n{WAIT_FOR_PIDS}\nsleep 30"
    began = time.monotonic()
    result = run_step(Step("detach", command, timeout=1.5, grace=0.5), context(tmp_path))
    assert (result.status, result.exit_code) == (StepStatus.TIMEOUT, 124)
    assert time.monotonic() - began < 6
    assert_all_gone(tmp_path, sleep_marker, zombies)


def test_an_interrupted_step_takes_what_it_detached(tmp_path, sleep_marker):
    stop = threading.Event()
    command = f"{ESCAPES['setsid -f'].format(sleep=sleep_marker)}\n{WAIT_FOR_PIDS}\nsleep 30"

    def stop_once_it_detached() -> None:
        deadline = time.monotonic() + 20
        while not recorded_pids(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()

    zombies = zombie_children()
    threading.Thread(target=stop_once_it_detached, daemon=True).start()
    result = run_step(Step("detach", command, grace=0.5), context(tmp_path, stop=stop))
    assert (result.status, result.exit_code) == (StepStatus.INTERRUPTED, 130)
    assert_all_gone(tmp_path, sleep_marker, zombies)


HOLDER = (
    # detached, keeps the step's stdout, ignores SIGTERM and prints on after the shell exits
    'setsid sh -c \'echo $$ >> pids; trap "" TERM; echo early; '
    "while :; do echo tick; sleep 0.1; done' &\n"
    f"{WAIT_FOR_PIDS}\nsleep 0.3\necho shell-done"
)


def test_a_detached_child_holding_the_output_pipe_ends_within_the_grace(tmp_path, monkeypatch):
    thread_errors: list[object] = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    grace = 1.0
    began = time.monotonic()
    result = run_step(Step("held", HOLDER, grace=grace), context(tmp_path))
    elapsed = time.monotonic() - began
    assert result.ok
    assert elapsed < 0.3 + grace + 1.0  # no 5 s stall waiting for the pipe to close
    log = result.log_path.read_text()
    assert log.startswith("early\n")  # what it wrote before the end is kept
    assert "shell-done\n" in log
    assert "tick\n" in log
    assert not thread_errors  # no "I/O operation on closed file"
    assert not any(alive(pid) for pid in recorded_pids(tmp_path))


def test_a_server_started_outside_any_step_outlives_the_steps(tmp_path, sleep_marker):
    """Shipyard is a subreaper, and the local target's servers are its children: only a
    step's own processes may go."""
    log = tmp_path / "server.log"
    pid = server.start(f"sleep {sleep_marker}", cwd=tmp_path, env=os.environ, log_path=log)
    try:
        command = f"{ESCAPES['setsid -f'].format(sleep=sleep_marker + '1')}\n{WAIT_FOR_PIDS}"
        assert run_step(Step("detach", command, grace=0.5), context(tmp_path)).ok
        assert server.alive(pid)
    finally:
        server.stop(pid, grace=0.5)
    assert not server.alive(pid)
    assert pid not in zombie_children()  # server.alive reaped it: it is our child


def test_parallel_steps_keep_their_own_exit_codes(tmp_path, sleep_marker):
    """While one step's orphans are reaped, another thread's step shells end: reaping only
    what is the step's (never `waitpid(-1)`) leaves their exit codes to their own Popen."""
    leaving = f"{ESCAPES['double fork'].format(sleep=sleep_marker)}; setsid -f sleep {sleep_marker}"

    def failing(index: int) -> int | None:
        folder = tmp_path / f"f{index}"
        folder.mkdir()
        return run_step(Step("fails", "exit 3"), context(folder)).exit_code

    def orphaning(index: int) -> bool:
        folder = tmp_path / f"o{index}"
        folder.mkdir()
        return run_step(Step("orphans", leaving, grace=0.2), context(folder)).ok

    with ThreadPoolExecutor(max_workers=2) as pool:
        orphaned = pool.map(orphaning, range(12))
        codes = list(pool.map(failing, range(12)))
    assert all(orphaned)
    assert codes == [3] * 12
    assert not processes_with(sleep_marker)


def test_process_tree_needs_no_privilege_to_adopt_orphans():
    from shipyard.process import become_subreaper, is_subreaper

    if sys.platform != "linux":
        pytest.skip("the child subreaper is Linux's")
    assert become_subreaper()
    assert is_subreaper()
