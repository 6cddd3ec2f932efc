"""What serves the local target's releases: `server/state.json` (the server's pid and start
ticks, its release and port, and the switch under way), the server it names, recognised as
ours by its pid and start time, started held until it is recorded, and stopped.

    <state dir>/server/   state.json and one log per release

Serving a release that is not `current` is a switch: state.json records it ("switching":
from, to, at, and the process switching) before the old server is stopped, and it is cleared
once `current` follows or the old release serves again. A switch left recorded by a process
that is gone was interrupted: what serves may not be `current` (`target` repairs it).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard import server
from shipyard.config import Environment
from shipyard.errors import PreflightError
from shipyard.heartbeat import iso_timestamp
from shipyard.process import start_ticks, tools_path
from shipyard.targets.local.store import ReleaseStore, write_json

STOP_GRACE = 5.0
STATE_FILE = "state.json"
SWITCHING = "switching"  # state.json's record of the switch under way


@dataclass(frozen=True)
class Switch:
    """A change of what serves, from the release `current` named to another one."""

    source: str | None  # "from": the release current pointed at, if any
    target: str  # "to": the release being started
    at: str | None = None
    pid: int | None = None  # the Shipyard process switching; None: inferred, not recorded
    start_ticks: int | None = None

    @classmethod
    def read(cls, record: object) -> Switch | None:
        if not isinstance(record, dict) or not isinstance(record.get("to"), str):
            return None
        source, at, pid, ticks = (record.get(key) for key in ("from", "at", "pid", "start_ticks"))
        return cls(
            source=source if isinstance(source, str) else None,
            target=record["to"],
            at=at if isinstance(at, str) else None,
            pid=pid if isinstance(pid, int) else None,
            start_ticks=ticks if isinstance(ticks, int) else None,
        )

    @classmethod
    def begin(cls, source: str | None, target: str) -> Switch:
        """A switch by this process, starting now."""
        pid = os.getpid()
        return cls(source, target, iso_timestamp(), pid, start_ticks(pid))

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "at": self.at,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
        }

    @property
    def under_way(self) -> bool:
        """The process switching still runs (with its recorded start time: not a reused pid)."""
        return self.pid is not None and _process_runs(self.pid, self.start_ticks)

    def describe(self) -> str:
        return f"a switch from {self.source or 'nothing'} to {self.target}"


class ServerState:
    """The server of an environment's releases, as `server/state.json` records it."""

    def __init__(self, environment: Environment, port: int, store: ReleaseStore) -> None:
        self.env = environment
        self.port = port  # where the server listens, on 127.0.0.1
        self.store = store  # the releases served, and which one is current
        self.server_dir = store.state_dir / "server"

    @property
    def state_path(self) -> Path:
        return self.server_dir / STATE_FILE

    def log(self, version: str) -> Path:
        return self.server_dir / f"{version}.log"

    # --- reading (never changes anything) ------------------------------------------------

    def recorded(self) -> dict[str, Any]:
        """state.json as last written, whether its server still runs or not."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def serving(self) -> dict[str, Any] | None:
        """The server this target started, while it still runs: pid, release, port, started."""
        state = self.recorded()
        if not isinstance(state.get("pid"), int):
            return None
        return state if _is_our_server(state) else None

    def switch(self) -> Switch | None:
        """The switch state.json records, unless `current` already names its release (then
        only the bookkeeping after it was cut short)."""
        switch = Switch.read(self.recorded().get(SWITCHING))
        if switch is None or switch.target == self.store.current_version():
            return None
        return switch

    def interrupted_switch(self) -> Switch | None:
        """A switch that no running process will finish: recorded by a process that is gone,
        or (a state.json written before switches were recorded) a server of a release that
        is not current."""
        switch = self.switch()
        if switch is not None:
            return None if switch.under_way else switch
        state, current = self.serving(), self.store.current_version()
        if state is None or current is None or state["release"] == current:
            return None
        return Switch(source=current, target=state["release"])

    def command(self, version: str) -> str:
        """The environment's `start`, filled in for `version`."""
        folder = self.store.release_dir(version)
        return server.render(
            self.env.start or "", port=self.port, release=version, release_dir=folder
        )

    def check_port(self) -> None:
        """PreflightError when the port is taken by a process that is not our server."""
        if self.serving() is None and server.port_in_use(self.port):
            raise PreflightError(
                f"port {self.port} on 127.0.0.1 is in use by another process (not a Shipyard"
                f" server of {self.env.name}); stop it or set environments.{self.env.name}.port"
            )

    # --- changing what serves --------------------------------------------------------------

    def begin_switch(self, version: str) -> Switch:
        """Record the switch from `current` to `version` before the old server stops: a crash
        from here on leaves it."""
        switch = Switch.begin(self.store.current_version(), version)
        self._write({**self.recorded(), SWITCHING: switch.to_json()})
        return switch

    def end_switch(self) -> None:
        state = self.recorded()
        if state.pop(SWITCHING, None) is not None:
            self._write(state)

    def start(self, version: str, switch: Switch | None = None) -> dict[str, Any]:
        """Start `version`'s server; state.json names it (and keeps `switch`, if any), and is
        what this returns."""
        command = self.command(version)
        log_path = self.log(version)
        folder, env = self.store.release_dir(version), self._server_env(version)
        # held until state.json names it: killed in between, no unrecorded server takes the port
        with server.held(command, cwd=folder, env=env, log_path=log_path) as pid:
            state = {
                "pid": pid,
                "start_ticks": start_ticks(pid),
                "release": version,
                "port": self.port,
                "started_at": time.time(),
                "command": command,
                **({SWITCHING: switch.to_json()} if switch else {}),
            }
            self._write(state)
        return state

    def stop(self) -> dict[str, Any] | None:
        """Stop our server, if it runs (SIGTERM to its group, up to STOP_GRACE, SIGKILL);
        what state.json recorded of it, or None when none ran."""
        state = self.serving()
        if state is not None:
            server.stop(state["pid"], grace=STOP_GRACE)
        return state

    def remove_log(self, version: str) -> None:
        self.log(version).unlink(missing_ok=True)

    def _server_env(self, version: str) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": tools_path(os.environ),
            **self.env.env,
            "PORT": str(self.port),
            "SHIPYARD_ENV": self.env.name,
            "SHIPYARD_RELEASE": version,
        }

    def _write(self, state: dict[str, Any]) -> None:
        write_json(self.state_path, state, scratch=self.store.state_dir)


def _process_runs(pid: int, ticks: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it runs
    return start_ticks(pid) == ticks


def _is_our_server(state: dict[str, Any]) -> bool:
    """The pid still runs and is the process we started: the same start time as recorded
    (a reused pid has another). Without /proc both are None: the pid and its group are
    what there is to go by."""
    pid = state["pid"]
    return server.alive(pid) and start_ticks(pid) == state.get("start_ticks")
