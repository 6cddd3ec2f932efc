"""Process groups and process trees: start a command in its own session and make sure nothing
of it survives, not even what detached itself from it (setsid, a double fork)."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PROC = Path("/proc")
_POLL_SECONDS = 0.05
_KILL_WAIT = 5.0  # SIGKILL always ends a process, but a loaded machine can take its time
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_GONE = ("Z", "X")  # a zombie or a dead process: it runs no more
_YOUNG_SECONDS = 1.0  # a step this young cannot have forked its way round all the pids

STEP_MARK = "SHIPYARD_STEP_MARK"  # in a step's environment: finds its orphans (ProcessTree)


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


@dataclass(frozen=True)
class _Stat:
    """What /proc/<pid>/stat says of one process."""

    state: str
    ppid: int
    pgid: int
    sid: int
    start: int  # clock ticks since boot: with the pid, it names one process for good


def _read_stat(pid: int) -> _Stat | None:
    try:
        fd = os.open(f"{_PROC}/{pid}/stat", os.O_RDONLY)
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        fields = data[data.rindex(b")") + 2 :].split()  # `(comm)` may hold spaces
        return _Stat(
            fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])
        )
    except (OSError, ValueError, IndexError):
        return None


def _process_table(since: int = 0) -> dict[int, _Stat]:
    """The processes of the machine (Linux; empty without /proc) by pid, or only those whose
    pid is `since` or above: each costs a read of /proc, 10 to 30 µs."""
    try:
        with os.scandir(_PROC) as entries:
            pids = [int(entry.name) for entry in entries if entry.name.isdigit()]
    except OSError:
        return {}
    table = {}
    for pid in pids:
        if pid >= since and (stat := _read_stat(pid)) is not None:
            table[pid] = stat
    return table


def _last_pid() -> int:
    """The pid the kernel handed out last (in this pid namespace); 0 if unknown."""
    try:
        return int((_PROC / "loadavg").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return 0


def group_alive(pgid: int) -> bool:
    """True while any process of the group is still running (zombies do not count).

    Zombies of the group that are our own children, adopted because Shipyard is a subreaper
    (see `become_subreaper`), are reaped on the way, so none is left behind; the leader is
    left to whoever started it (its Popen, or server.alive)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if sys.platform != "linux":
        return True
    leader = _read_stat(pgid)
    if leader is not None and leader.pgid == pgid and leader.state not in _GONE:
        return True  # the leader runs: one read, not the whole process table
    members = {pid: stat for pid, stat in _process_table().items() if stat.pgid == pgid}
    if pgid != os.getpgrp():
        _reap(pid for pid, stat in members.items() if pid != pgid and _adopted_zombie(stat))
    return any(stat.state not in _GONE for stat in members.values())


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (Linux); None without /proc or process.

    Unlike the pid, (pid, start) names one process for good: a pid reused by another process
    has another start time. It also holds across exec, unlike /proc/<pid>/environ, which reads
    empty while the process is in the middle of an exec.
    """
    stat = _read_stat(pid)
    return stat.start if stat else None


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


def communicate_within(
    process: subprocess.Popen[str],
    timeout: float,
    stop: threading.Event | None = None,
    *,
    poll: float = 0.1,
) -> tuple[str, str] | None:
    """`process.communicate()` for at most `timeout` seconds, ended early by `stop`: its
    (stdout, stderr); None when it was still running then, and its group has been stopped
    (SIGTERM, a second's grace, SIGKILL) and its pipes drained."""
    deadline = time.monotonic() + timeout
    while not (stop is not None and stop.is_set()) and time.monotonic() < deadline:
        try:
            return process.communicate(timeout=poll)
        except subprocess.TimeoutExpired:
            continue
    terminate_group(process, grace=1.0)
    process.communicate()
    return None


def _settled(process: subprocess.Popen[Any], pgid: int) -> bool:
    process.poll()  # reap the leader so it stops counting as a member
    return not group_alive(pgid)


# --- a step's process tree ------------------------------------------------------------------


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if sys.platform != "linux":
        return None
    import ctypes

    prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return prctl


def is_subreaper() -> bool:
    """True when this process adopts its orphaned descendants (Linux's child subreaper)."""
    prctl = _prctl()
    if prctl is None:
        return False
    import ctypes

    flag = ctypes.c_int(0)
    return prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0 and flag.value != 0


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux 3.4+, no privilege
    needed); True once it is one.

    A step's process that detaches (setsid, a double fork whose middle process exits) is then
    re-parented to Shipyard instead of init, so `ProcessTree` still finds it, and reaps it.
    It is a property of the whole process (every thread) and is not inherited by children;
    call it in the Shipyard process before its first step (run_step does, and it is cheap
    to call again). The detached servers of server.py are Shipyard's children anyway."""
    prctl = _prctl()
    if prctl is None:
        return False
    if not is_subreaper():
        prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    return is_subreaper()


@dataclass(frozen=True)
class _Found:
    members: dict[int, _Stat]  # the step's processes now present (zombies too)
    undecided: bool  # an orphan whose environment could not be read yet (it is in an exec)


class ProcessTree:
    """The processes of one step, found while it runs and at its end, to end them all.

    A process belongs to the step when it descends from the step's shell, from a process of
    the step already seen, or shares a process group or session with one (only a step's
    processes can join those); or when it is an orphan re-parented to Shipyard (the
    subreaper) whose environment carries the step's mark (`STEP_MARK`). Processes are
    remembered by pid and start time, so one seen under the shell is still known after it
    detaches, and a reused pid is never taken for it. Without the subreaper (not Linux, or
    refused) orphans go to init: then every process's environment is searched for the mark.

    What escapes: a process that both clears its environment and detaches between two
    `watch` calls (0.2 s apart while a step runs). cgroups v2 would close that gap, but need
    a delegated, writable hierarchy, which neither CI runners nor most desktops give a user.
    """

    def __init__(self, root: int, mark: str) -> None:
        self._root = root
        self._root_start = start_ticks(root)
        self._mark = f"{STEP_MARK}={mark}".encode()
        self._members: dict[int, int] = {} if self._root_start is None else {root: self._root_start}
        self._strangers: set[tuple[int, int]] = set()  # (pid, start): read, and not the step's
        self._termed: set[tuple[int, int]] = set()
        self._empty: Counter[tuple[int, int]] = Counter()  # our children whose environ read empty
        self._everywhere = not is_subreaper()
        self._born = time.monotonic()

    def watch(self) -> None:
        """Remember the step's processes as they are now (call it now and then as it runs)."""
        self._find(self._table())

    def terminate(self, *, grace: float) -> None:
        """SIGTERM every process of the step, SIGKILL what is left after `grace` seconds, and
        reap those that are now our children, so neither a process nor a zombie is left.
        The step's shell itself is signalled but left to its Popen to reap."""
        if self._sweep_until(signal.SIGTERM, grace):
            self._sweep_until(signal.SIGKILL, _KILL_WAIT)
        if self._members.keys() - {self._root}:  # the last to die may have become ours since
            self._reap_members(self._table())

    def _sweep_until(self, signum: int, seconds: float) -> bool:
        """Sweep with `signum` until nothing is left (False) or `seconds` have passed (True)."""
        deadline = time.monotonic() + seconds
        while self._sweep(signum):
            if time.monotonic() >= deadline:
                return True
            time.sleep(_POLL_SECONDS)
        return False

    def _sweep(self, signum: int) -> bool:
        """Signal the step's live processes (each SIGTERM once); True while any is left."""
        table = self._table()
        if not _PROC.is_dir():  # not Linux: the step's process group is all that can be found
            signal_group(self._root, signum)
            return group_alive(self._root)
        found = self._find(table)
        self._reap_members(table)
        live = {pid: stat for pid, stat in found.members.items() if stat.state not in _GONE}
        for pid, stat in live.items():
            self._signal(pid, stat.start, signum)
        return bool(live) or found.undecided

    def _signal(self, pid: int, start: int, signum: int) -> None:
        if signum == signal.SIGTERM:
            if (pid, start) in self._termed:
                return
            self._termed.add((pid, start))
        _send(pid, start, signum)
        if signum == signal.SIGTERM:
            _send(pid, start, signal.SIGCONT)  # a stopped process would never see the SIGTERM

    def _table(self) -> dict[int, _Stat]:
        """The processes that can be the step's. Pids are handed out in increasing order until
        they wrap around, so while the step is young and the last pid is still above its
        shell's, only pids above the shell's: a quick step's end reads a few files, not one
        per process of the machine (per-step overhead, bench/)."""
        young = time.monotonic() - self._born < _YOUNG_SECONDS
        return _process_table(self._root if young and _last_pid() >= self._root else 0)

    def _find(self, table: dict[int, _Stat]) -> _Found:
        roots = {pid for pid, start in self._members.items() if _is(table, pid, start)}
        roots |= self._own_group(table)
        members = _closure(table, roots)
        orphans, undecided = self._marked(table, members)
        if orphans:
            members = _closure(table, members | orphans)
        self._members = {pid: table[pid].start for pid in members}
        return _Found({pid: table[pid] for pid in members}, undecided)

    def _own_group(self, table: dict[int, _Stat]) -> set[int]:
        """The processes of the shell's group and session, also once the shell is reaped
        (unless its pid now leads someone else's: a group id is reused only after that)."""
        if self._root in table and not _is(table, self._root, self._root_start):
            return set()
        return {pid for pid, stat in table.items() if self._root in (stat.pgid, stat.sid)}

    def _marked(self, table: dict[int, _Stat], members: set[int]) -> tuple[set[int], bool]:
        """The orphans that carry the step's mark, and whether one of ours read empty: a
        process in the middle of an exec, looked at again (up to 3 times) by the caller."""
        me, marked, undecided = os.getpid(), set(), False
        for pid, stat in table.items():
            if pid in members or stat.state in _GONE or (pid, stat.start) in self._strangers:
                continue
            if not self._everywhere and stat.ppid != me:
                continue
            environ = _environ(pid)
            if self._mark in environ.split(b"\0"):
                marked.add(pid)
            elif environ or stat.ppid != me or self._empty[(pid, stat.start)] >= 2:
                self._strangers.add((pid, stat.start))  # kernel threads read empty too
            else:
                self._empty[(pid, stat.start)] += 1
                undecided = True
        self._strangers &= {(pid, stat.start) for pid, stat in table.items()}
        return marked, undecided

    def _reap_members(self, table: dict[int, _Stat]) -> None:
        _reap(
            pid
            for pid, start in self._members.items()
            if pid != self._root and _is(table, pid, start) and _adopted_zombie(table[pid])
        )


def _closure(table: dict[int, _Stat], roots: Iterable[int]) -> set[int]:
    """`roots` and every process below them or in a group or session of theirs (our own group
    and session aside: no step's process can be in those)."""
    children: dict[int, list[int]] = defaultdict(list)
    grouped: dict[int, list[int]] = defaultdict(list)  # by group id and by session id
    for pid, stat in table.items():
        children[stat.ppid].append(pid)
        grouped[stat.pgid].append(pid)
        grouped[stat.sid].append(pid)
    ours = {os.getpgrp(), os.getsid(0), 0}
    found: set[int] = set()
    todo = [pid for pid in roots if pid in table]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children[pid]
            for key in {table[pid].pgid, table[pid].sid} - ours:
                todo += grouped[key]
    return found


def _is(table: dict[int, _Stat], pid: int, start: int | None) -> bool:
    stat = table.get(pid)
    return stat is not None and stat.start == start


def _adopted_zombie(stat: _Stat) -> bool:
    return stat.state == "Z" and stat.ppid == os.getpid()


def _reap(pids: Iterable[int]) -> None:
    """waitpid each (our zombie children): never -1, which would take another thread's child."""
    for pid in list(pids):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _environ(pid: int) -> bytes:
    try:
        return (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return b"\0"  # gone, or not ours to read: not a step's orphan, and not undecided


def _send(pid: int, start: int, signum: int) -> None:
    """Signal `pid` only if it is still the process that started at `start`: a pidfd holds the
    pid while the start is checked, so a pid reused meanwhile is never hit."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd before Linux 5.3: the start check alone
        pidfd = -1
    try:
        if start_ticks(pid) == start:
            if pidfd >= 0:
                signal.pidfd_send_signal(pidfd, signum)
            else:
                os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def exit_status(returncode: int) -> int:
    """A shell-style exit status: a death by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def tools_path(environ: Mapping[str, str]) -> str:
    """`PATH` with the folder of the Python running Shipyard first, so a venv's tools (ruff,
    pytest, shipyard, python3) are found without activating it."""
    return os.pathsep.join([str(Path(sys.executable).parent), environ.get("PATH", os.defpath)])
