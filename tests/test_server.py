from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shipyard import process, server


def test_placeholders_are_shell_quoted_so_values_cannot_inject():
    command = server.render(
        "serve --port {port} --dir {release_dir}", port=8787, release_dir="a b; rm -rf /"
    )
    assert command == "serve --port 8787 --dir 'a b; rm -rf /'"


def test_started_server_is_detached_logs_and_is_stopped_with_its_group(tmp_path):
    log = tmp_path / "server.log"
    script = (
        "import signal,subprocess,sys,time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']);"
        " print('up', flush=True); time.sleep(60)"
    )
    pid = server.start(
        f'{sys.executable} -c "{script}"', cwd=tmp_path, env=os.environ, log_path=log
    )
    try:
        assert os.getsid(pid) == pid  # its own session: a terminal's ^C does not reach it
        deadline = time.monotonic() + 10
        while "up" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "up" in log.read_text()
        assert server.alive(pid)
    finally:
        server.stop(pid, grace=0.5)  # ignores SIGTERM: SIGKILL after the grace
    assert not server.alive(pid), f"still in group {pid}: {group_members(pid)}"


def group_members(pgid: int) -> list[str]:
    """Each process of the group: pid, state and command line (for a failure's message)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if fields[2] == str(pgid):
            found.append(f"{stat.parent.name} {fields[0]} {command.strip()}")
    return found


def test_port_in_use_and_free_port():
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert server.port_in_use(port)
    assert not server.port_in_use(server.free_port())


def test_start_ticks_name_one_process_across_exec(tmp_path):
    """The server's identity holds from the moment it starts, through the exec of `sh -c
    'exec …'` (where /proc/<pid>/environ reads empty for a moment), and differs for a new pid."""
    command = f"{sys.executable} -c 'import time; time.sleep(30)'"
    first = server.start(command, cwd=tmp_path, env=os.environ, log_path=tmp_path / "a.log")
    second = server.start(command, cwd=tmp_path, env=os.environ, log_path=tmp_path / "b.log")
    try:
        ticks = process.start_ticks(first)
        assert ticks is not None
        for _ in range(50):
            assert process.start_ticks(first) == ticks
            time.sleep(0.005)
        assert process.start_ticks(second) is not None
    finally:
        server.stop(first, grace=0.5)
        server.stop(second, grace=0.5)
    assert not server.alive(first)


HOLDER = """
import os, signal, sys
from pathlib import Path
from shipyard import server

folder = Path(sys.argv[1])
command = "sh -c 'touch ran; exec sleep 30'"
with server.held(command, cwd=folder, env=os.environ, log_path=folder / "log") as pid:
    print(pid, flush=True)
    if sys.argv[2] == "die":
        os.kill(os.getpid(), signal.SIGKILL)  # before the pid is recorded, say
"""


def _holder(tmp_path, how: str) -> int:
    """Run HOLDER in a child process; the pid of the server it started."""
    done = subprocess.run(
        [sys.executable, "-c", HOLDER, str(tmp_path), how],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return int(done.stdout)


def _settle(pid: int) -> None:
    deadline = time.monotonic() + 20  # a bound, not a measure: a loaded machine is slow
    while server.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_held_server_whose_starter_dies_before_releasing_it_never_runs(tmp_path):
    """So an `inv` SIGKILLed between starting a server and recording its pid leaves no
    unrecorded server on the port."""
    pid = _holder(tmp_path, "die")
    _settle(pid)
    assert not server.alive(pid)
    assert not (tmp_path / "ran").exists()


def test_a_held_server_runs_once_released(tmp_path):
    pid = _holder(tmp_path, "release")
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "ran").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (tmp_path / "ran").exists()
        assert server.alive(pid)  # detached: it outlives the process that started it
        if Path("/proc").is_dir():  # the gate was its shell's stdin, not the server's
            assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    finally:
        server.stop(pid, grace=0.5)


def test_a_held_server_does_not_run_when_the_body_fails(tmp_path):
    with (
        pytest.raises(RuntimeError),
        server.held(
            "sh -c 'touch ran; exec sleep 30'",
            cwd=tmp_path,
            env=os.environ,
            log_path=tmp_path / "log",
        ) as pid,
    ):
        raise RuntimeError("could not record it")
    _settle(pid)
    assert not server.alive(pid)
    assert not (tmp_path / "ran").exists()


# Serves HTTP 200 on $PORT from the folder it runs in; the start commands below reach it
# through assignments, `cd … &&` and `;`, as a user's `start:` may.
SERVE_PORT = (
    "import http.server, os; http.server.test(http.server.SimpleHTTPRequestHandler,"
    " port=int(os.environ['PORT']), bind='127.0.0.1')"
)
SHELL_COMMANDS = [
    "PORT={port} python3 serve.py",
    "cd app && PORT={port} python3 ../serve.py",
    "true; export PORT={port}; python3 serve.py",
    "echo starting; PORT={port} exec python3 serve.py  # a comment",
    "PORT={port} python3 serve.py 2>&1 | tee -a serve.log",  # a pipeline: the shell stays
]


def _answers(port: int, pid: int) -> bool:
    import urllib.request

    deadline = time.monotonic() + 30  # a bound, not a measure: a loaded machine is slow
    while time.monotonic() < deadline and server.alive(pid):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            time.sleep(0.05)
    return False


@pytest.mark.parametrize("template", SHELL_COMMANDS)
def test_a_start_command_may_be_any_shell_command_and_stops_whole(tmp_path, template):
    (tmp_path / "serve.py").write_text(SERVE_PORT)
    (tmp_path / "app").mkdir()
    port = server.free_port()
    command = server.render(template, port=port)
    env = {key: value for key, value in os.environ.items() if key != "PORT"}
    with server.held(command, cwd=tmp_path, env=env, log_path=tmp_path / "log") as pid:
        pass
    try:
        assert _answers(port, pid), (tmp_path / "log").read_text()
    finally:
        server.stop(pid, grace=2)
    assert not server.alive(pid), f"still in group {pid}: {group_members(pid)}"
    assert not server.port_in_use(port)


DYING_STARTER = """
import os, signal, sys, time
from pathlib import Path
from shipyard import server

folder, port = Path(sys.argv[1]), sys.argv[2]
command = f"cd {folder} && PORT={port} python3 serve.py 2>&1 | cat"  # the shell stays
log = folder / "log"
pid = server.start(command, cwd=folder, env=dict(os.environ), log_path=log, die_with_parent=True)
print(pid, flush=True)
time.sleep(60)
"""


def test_a_compound_command_started_to_die_with_its_parent_dies_with_it(tmp_path):
    """The artifact smoke's server: a SIGKILLed `inv` leaves no app behind, even when `start`
    is a list the shell stays the parent of."""
    (tmp_path / "serve.py").write_text(SERVE_PORT)
    port = server.free_port()
    starter = subprocess.Popen(
        [sys.executable, "-c", DYING_STARTER, str(tmp_path), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert starter.stdout is not None
        pid = int(starter.stdout.readline())
        assert _answers(port, pid), (tmp_path / "log").read_text()
    finally:
        starter.kill()
        starter.wait(timeout=10)
    _settle(pid)
    assert not server.alive(pid), f"still in group {pid}: {group_members(pid)}"
