"""Servers started detached from Shipyard: their own session, a pid, a log file."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from shipyard.evidence import tail_lines
from shipyard.process import group_alive, shell, signal_group, tools_path

LOOPBACK = "127.0.0.1"  # where servers listen and are probed

_POLL_SECONDS = 0.01  # a stopped app is seen gone within 10 ms: the port is free sooner
_PR_SET_PDEATHSIG = 1
_KILL_WAIT = 5.0  # SIGKILL always ends a process, but a loaded machine can take its time
_PROC = Path("/proc")
_LISTEN, _ESTABLISHED = "0A", "01"  # a socket's state in /proc/net/tcp
_LOG_MODE = 0o600  # a server's log may hold what the app prints of its settings
# What a server takes from the deployer's environment unasked: where programs are (PATH),
# whose the process is and where its files go (HOME, USER, LOGNAME, TMPDIR), and how it
# speaks and tells the time (LANG, LC_*, TZ). No credential is among them: the app gets
# another of the deployer's variables only when the environment's `pass_env` names it.
BASE_VARIABLES = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR")
BASE_PREFIXES = ("LC_",)


def render(template: str, **values: object) -> str:
    """Fill `{port}`-style placeholders with shell-quoted values: no value can inject syntax."""
    return template.format_map({key: shlex.quote(str(value)) for key, value in values.items()})


def environment(
    base: Mapping[str, str],
    *,
    port: int,
    release: str,
    env: Mapping[str, str] | None = None,
    pass_env: Iterable[str] = (),
    name: str | None = None,
) -> dict[str, str]:
    """A server's whole environment. From `base` (the deployer's), only the base set and the
    names in `pass_env`, those set there (`PATH` with Shipyard's tools first); `HOST` as
    127.0.0.1 unless those set it; then `env` (an environment's `env:`); then what Shipyard
    sets, which nothing overrides: `PORT`, `SHIPYARD_RELEASE`, and `SHIPYARD_ENV` when the
    environment's `name` is given."""
    named = set(BASE_VARIABLES) | set(pass_env)
    taken = {k: v for k, v in base.items() if k in named or k.startswith(BASE_PREFIXES)}
    shipyard = {"PORT": str(port), "SHIPYARD_RELEASE": release}
    if name is not None:
        shipyard["SHIPYARD_ENV"] = name
    return {"HOST": LOOPBACK, **taken, "PATH": tools_path(base), **(env or {}), **shipyard}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((LOOPBACK, port)) == 0


def listeners(port: int) -> list[int]:
    """The pids of the processes with a socket listening on `port` (TCP, any address), read
    from /proc on Linux; [] elsewhere, or for a process this user may not look into."""
    inodes = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    found = set()
    for fds in _PROC.glob("[0-9]*/fd") if inodes else ():
        with contextlib.suppress(OSError):  # gone meanwhile, or another user's
            if any(_link(fd) in inodes for fd in fds.iterdir()):
                found.add(int(fds.parent.name))
    return sorted(found)


def working_dir(pid: int) -> Path | None:
    """The current directory of `pid` (Linux), or None when it cannot be read."""
    target = _link(_PROC / str(pid) / "cwd")
    return Path(target) if target else None


def connections(port: int) -> int:
    """The established TCP connections to `port` on this machine (Linux; 0 elsewhere): what
    a server taken out of a proxy's rotation still has to finish."""
    return len(_sockets(port, _ESTABLISHED))


def _listening_inodes(port: int) -> set[str]:
    """The inodes of the TCP sockets in state LISTEN on `port`, from /proc/net/tcp{,6}."""
    return set(_sockets(port, _LISTEN)) - {"0"}


def _sockets(port: int, state: str) -> list[str]:
    """The inodes of the TCP sockets on local `port` in `state`, from /proc/net/tcp{,6}."""
    inodes = []
    for table in ("tcp", "tcp6"):
        try:
            rows = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()  # sl local_address rem_address st ... uid timeout inode
            if len(fields) > 9 and fields[3] == state and fields[1].endswith(f":{port:04X}"):
                inodes.append(fields[9])
    return inodes


def _link(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return ""


def start(
    command: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    die_with_parent: bool = False,
) -> int:
    """Start `command`, any shell command (`PORT=8000 npm start`, `cd web && node server.js`,
    `a; b`), as the leader of a new session writing to `log_path`; return its pid.

    A simple command replaces the shell, so the pid is the app's; a list keeps the shell as the
    session's leader. Either way `stop` signals the whole process group. It outlives this
    process (nothing waits for it) unless `die_with_parent`: then, on Linux, the shell gets
    SIGTERM when this process dies, even by SIGKILL, and passes it on to its group.
    """
    if not die_with_parent:
        return _spawn(command, cwd=cwd, env=env, log_path=log_path)
    forwarding = f"trap 'trap - TERM; kill -TERM 0' TERM\n{{ {command}\n}} &\nwait $!"
    return _spawn(forwarding, cwd=cwd, env=env, log_path=log_path, preexec=_death_signal())


@contextlib.contextmanager
def held(command: str, *, cwd: Path, env: Mapping[str, str], log_path: Path) -> Iterator[int]:
    """Start `command` as `start` does, but held at a gate: yields its pid, and the command
    runs only once the body has returned (say, once it has recorded that pid).

    Should the body raise, or this process die first (even by SIGKILL), the gate reads
    end-of-file and the shell exits without running the command: no server that nobody
    recorded is left listening on the port.
    """
    reader, writer = os.pipe()
    with os.fdopen(writer, "wb", buffering=0) as gate:  # closed unwritten: the shell gives up
        try:
            pid = _spawn(
                # then a shell of its own runs the command, the gate not its stdin
                'read -r _ || exit 1; exec "$0" -c "$1" </dev/null',
                command,
                cwd=cwd,
                env=env,
                log_path=log_path,
                stdin=reader,
            )
        finally:
            os.close(reader)
        yield pid
        with contextlib.suppress(BrokenPipeError):  # it died waiting: its health check says so
            gate.write(b"go\n")


def _spawn(
    script: str,
    *arguments: str,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    stdin: int = subprocess.DEVNULL,
    preexec: Callable[[], None] | None = None,
) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with _open_log(log_path) as log:
        process = subprocess.Popen(
            [shell(), "-c", script, shell(), *arguments],
            cwd=cwd,
            env=dict(env),
            stdin=stdin,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,  # noqa: PLW1509 - see _death_signal
        )
    process.returncode = 0  # never reaped by us: keep Popen's destructor from warning
    return process.pid


def _open_log(path: Path) -> io.BufferedWriter:
    """`path` opened to append, readable by its owner only (0600), even when it was there."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _LOG_MODE)
    try:
        os.fchmod(fd, _LOG_MODE)  # a log from before, created 0644, is made private too
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab")


def _death_signal() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux for SIGTERM when this process dies (PR_SET_PDEATHSIG).

    It is built here, in the parent: the forked child only calls a ready C function, taking
    no Python lock, so it cannot deadlock beside other threads.
    """
    if sys.platform != "linux":
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return hook


def alive(pid: int) -> bool:
    """True while `pid`, or a process of its group, runs (a zombie does not count): a
    pipeline's leader may exit before the commands it started have."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own finished child
    return group_alive(pid)


def stop(pid: int, *, grace: float = 5.0) -> None:
    """SIGTERM the server's process group, wait up to `grace`, then SIGKILL it."""
    if not alive(pid):
        return
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(_POLL_SECONDS)
    signal_group(pid, signal.SIGKILL)
    killed = time.monotonic() + _KILL_WAIT
    while alive(pid) and time.monotonic() < killed:
        time.sleep(_POLL_SECONDS)


def log_tail(path: Path, count: int = 20) -> str:
    return "\n".join(tail_lines(path, count)) if path.exists() else "(no server log)"
