"""Process groups: start a command in its own session and make sure nothing of it survives."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_PROC = Path("/proc")
_POLL_SECONDS = 0.05


def shell() -> str:
    return shutil.which("bash") or "/bin/sh"


def spawn_shell(command: str, *, cwd: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start `command` under the shell as the leader of a new session and process group.

    stdout and stderr share one pipe so their lines keep their order; stdin is closed.
    """
    return subprocess.Popen(
        [shell(), "-c", command],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def group_alive(pgid: int) -> bool:
    """True while any process of the group is still running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if sys.platform != "linux":
        return True
    return any(_live_member(stat, pgid) for stat in _PROC.glob("[0-9]*/stat"))


def _live_member(stat: Path, pgid: int) -> bool:
    fields = _stat_fields(stat)
    return bool(fields) and fields[2] == str(pgid) and fields[0] not in ("Z", "X")


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (Linux); None without /proc or process.

    Unlike the pid, (pid, start) names one process for good: a pid reused by another process
    has another start time. It also holds across exec, unlike /proc/<pid>/environ, which reads
    empty while the process is in the middle of an exec.
    """
    fields = _stat_fields(_PROC / str(pid) / "stat")
    return int(fields[19]) if fields else None


def _stat_fields(stat: Path) -> list[str]:
    """The fields of /proc/<pid>/stat after `(comm)`: state first, starttime at index 19."""
    try:
        text = stat.read_text()
    except OSError:
        return []
    return text[text.rindex(")") + 2 :].split()


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def terminate_group(process: subprocess.Popen[Any], *, grace: float) -> None:
    """SIGTERM the whole group of `process`, wait up to `grace` seconds, then SIGKILL it."""
    pgid = process.pid
    if _settled(process, pgid):
        return
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if _settled(process, pgid):
            return
        time.sleep(_POLL_SECONDS)
    signal_group(pgid, signal.SIGKILL)
    process.wait()


def _settled(process: subprocess.Popen[Any], pgid: int) -> bool:
    process.poll()  # reap the leader so it stops counting as a member
    return not group_alive(pgid)


def exit_status(returncode: int) -> int:
    """A shell-style exit status: a death by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def tools_path(environ: Mapping[str, str]) -> str:
    """`PATH` with the folder of the Python running Shipyard first, so a venv's tools (ruff,
    pytest, shipyard, python3) are found without activating it."""
    return os.pathsep.join([str(Path(sys.executable).parent), environ.get("PATH", os.defpath)])
