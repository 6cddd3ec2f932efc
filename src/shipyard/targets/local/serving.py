"""What serves the local target's releases: `server/state.json` (the server's pid and start
ticks, its release and port, and the switch under way), the server it names, recognised as
ours by its pid and start time, started held until it is recorded, and stopped.

    <state dir>/server/   state.json and one log per release

Serving a release that is not `current` is a switch: state.json records it ("switching":
from, to, at, and the process switching) before the old server is stopped, and it is cleared
once `current` follows or the old release serves again. A switch left recorded by a process
that is gone was interrupted: what serves may not be `current` (`target` repairs it).

A state.json that does not read as such a record (a directory, truncated, garbage) is
`DamagedState`: nothing that reads it goes on (exit 2, naming it and `inv stop`). `stop_all`
needs no state.json: it also finds this environment's servers as the processes listening on
its port from a folder under the environment's (never a foreign process on the port).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shipyard import server
from shipyard.config import Environment
from shipyard.errors import PreflightError
from shipyard.heartbeat import iso_timestamp
from shipyard.process import start_ticks
from shipyard.targets.local.store import VERSION, DamagedState, ReleaseStore, shown, write_json

STOP_GRACE = 5.0
STATE_FILE = "state.json"
SWITCHING = "switching"  # state.json's record of the switch under way
# proxy mode's records: Caddy, each release's server, the release kept warm
PROXY, SERVERS, WARM = "proxy", "servers", "warm"
_SERVER_KEYS = (
    "pid",
    "start_ticks",
    "release",
    "port",
    "started_at",
    "command",
    PROXY,
    SERVERS,
    WARM,
)
# what each key of state.json must hold, when it is there
_KINDS: dict[str, tuple[type, ...]] = {
    "pid": (int,),
    "start_ticks": (int, type(None)),
    "release": (str,),
    "port": (int,),
    "started_at": (int, float),
    "command": (str,),
    SWITCHING: (dict, type(None)),
    PROXY: (dict,),
    SERVERS: (dict,),
    WARM: (str, type(None)),
}


@dataclass(frozen=True)
class Switch:
    """A change of what serves, from the release `current` named to another one."""

    source: str | None  # "from": the release current pointed at, if any
    target: str  # "to": the release being started
    at: str | None = None
    pid: int | None = None  # the Shipyard process switching; None: inferred, not recorded
    start_ticks: int | None = None
    deploy: bool = False  # to the release a deploy makes (not one a rollback goes back to)

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
            deploy=record.get("deploy") is True,
        )

    @classmethod
    def begin(cls, source: str | None, target: str, *, deploy: bool = False) -> Switch:
        """A switch by this process, starting now."""
        pid = os.getpid()
        return cls(source, target, iso_timestamp(), pid, start_ticks(pid), deploy)

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "at": self.at,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            **({"deploy": True} if self.deploy else {}),
        }

    @property
    def under_way(self) -> bool:
        """The process switching still runs (with its recorded start time: not a reused pid)."""
        return self.pid is not None and _process_runs(self.pid, self.start_ticks)

    def describe(self) -> str:
        return f"a switch from {self.source or 'nothing'} to {self.target}"


@dataclass(frozen=True)
class Stopped:
    """A server `stop_all` stopped: its release (None when its folder does not say), its pid,
    and how it was found (state.json, or as the port's owner)."""

    release: str | None
    pid: int
    found_by: str

    def describe(self) -> str:
        found = "" if self.found_by == STATE_FILE else f", found {self.found_by}"
        return f"stopped {self.release or 'a server'} (pid {self.pid}{found})"

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "pid": self.pid, "found_by": self.found_by}


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
        """state.json as last written, whether its server still runs or not ({} when there
        is none); DamagedState when it does not read as one."""
        state, problem = self._read()
        if problem is not None:
            raise DamagedState(
                f"{shown(self.state_path, self.store.root)} is damaged ({problem}): run"
                f" `inv stop --env {self.env.name}`, then deploy again"
            )
        return state

    def check(self) -> None:
        """DamagedState when state.json is damaged."""
        self.recorded()

    def _read(self) -> tuple[dict[str, Any], str | None]:
        """(state.json, None), ({}, None) when there is none, or ({}, what is wrong with it)."""
        path = self.state_path
        if path.exists() and not path.is_file():
            return {}, "a directory, not a file" if path.is_dir() else "not a regular file"
        try:
            state = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}, None
        except OSError as error:
            return {}, f"unreadable: {error.strerror or error}"
        except ValueError:
            return {}, "truncated, or not JSON"
        problem = _problem(state)
        return ({}, problem) if problem else (state, None)

    def serving(self) -> dict[str, Any] | None:
        """The server this target started, while it still runs: pid, release, port, started."""
        state = self.recorded()
        if not isinstance(state.get("pid"), int):
            return None
        return state if is_our_server(state) else None

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

    def command(self, version: str, port: int | None = None) -> str:
        """The environment's `start`, filled in for `version` (on `port`, else the
        environment's)."""
        folder = self.store.release_dir(version)
        return server.render(
            self.env.start or "", port=port or self.port, release=version, release_dir=folder
        )

    def proxy_left(self) -> int | None:
        """The pid of a Caddy that a deploy in proxy mode started and that still runs."""
        found = _proxy_mode_records(self.recorded())
        return next((record["pid"] for name, record in found if name == _THE_PROXY), None)

    def check_no_proxy(self, mode: str) -> None:
        """PreflightError when a Caddy from an earlier deploy in proxy mode still serves the
        port while this run is in `mode` (direct)."""
        pid = self.proxy_left()
        if pid is not None:
            raise PreflightError(
                f"port {self.port} is served by {self.env.name}'s Caddy (pid {pid}) from an"
                f" earlier deploy in proxy mode, and this run is in {mode}: run `inv stop --env"
                f" {self.env.name}` first (or make Caddy available again)"
            )

    def check_port(self) -> None:
        """PreflightError when the port is taken by a process that is not our server."""
        if self.serving() is None and server.port_in_use(self.port):
            raise PreflightError(
                f"port {self.port} on 127.0.0.1 is in use by another process (not a Shipyard"
                f" server of {self.env.name}); stop it or set environments.{self.env.name}.port"
            )

    # --- changing what serves --------------------------------------------------------------

    def begin_switch(self, version: str, *, deploy: bool = False) -> Switch:
        """Record the switch from `current` to `version` before the old server stops: a crash
        from here on leaves it."""
        switch = Switch.begin(self.store.current_version(), version, deploy=deploy)
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

    def stop_all(self) -> list[Stopped]:
        """Every server of this environment, stopped (SIGTERM to its group, up to STOP_GRACE,
        SIGKILL), whatever state.json holds: the one it names, when it reads and that pid is
        still ours; then each process listening on the port from a folder under the
        environment's (a server state.json no longer names). state.json is left as it is."""
        stopped = []
        state, _ = self._read()
        for name, record in _proxy_mode_records(state):  # Caddy and the releases behind it
            server.stop(record["pid"], grace=STOP_GRACE)
            stopped.append(Stopped(name, record["pid"], STATE_FILE))
        if isinstance(state.get("pid"), int) and is_our_server(state):
            server.stop(state["pid"], grace=STOP_GRACE)
            stopped.append(Stopped(state["release"], state["pid"], STATE_FILE))
        for group, release in self._strays():
            server.stop(group, grace=STOP_GRACE)
            stopped.append(Stopped(release, group, f"listening on port {self.port}"))
        return stopped

    def _strays(self) -> list[tuple[int, str | None]]:
        """(process group, release) of each listener on the port whose working directory
        is under the environment's folder, and so is its group's leader's (unless the leader
        is gone): our servers lead their own group, in their release's folder."""
        found: dict[int, str | None] = {}
        for pid in server.listeners(self.port):
            where = self._ours(pid)
            try:
                group = os.getpgid(pid)
            except OSError:
                continue
            leader = self._ours(group) if group != pid else where
            if where is not None and (leader is not None or start_ticks(group) is None):
                found[group] = _release_in(where)
        return sorted(found.items())

    def _ours(self, pid: int) -> Path | None:
        """The working directory of `pid`, relative to the environment's folder when under
        it; None otherwise."""
        folder = server.working_dir(pid)
        if folder is None or pid == os.getpid():
            return None
        try:
            return folder.relative_to(self.store.state_dir.resolve())
        except ValueError:
            return None

    def forget_server(self) -> str:
        """state.json made to say that no server runs, after `stop_all`; what was done. A
        damaged one is set aside (renamed, for a look); a readable one loses its server and
        keeps a switch it records, for the next deploy to repair (or goes, when empty)."""
        path = self.state_path
        state, problem = self._read()
        if problem is not None:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            aside = path.with_name(f"{STATE_FILE}.damaged-{stamp}")
            path.rename(aside)
            return f"set the damaged {shown(path, self.store.root)} aside as {aside.name}"
        left = {key: value for key, value in state.items() if key not in _SERVER_KEYS}
        if left:
            self._write(left)
        else:
            path.unlink(missing_ok=True)
        return f"{shown(path, self.store.root)} records no server"

    def remove_log(self, version: str) -> None:
        self.log(version).unlink(missing_ok=True)

    def _server_env(self, version: str, port: int | None = None) -> dict[str, str]:
        return server.environment(
            os.environ,
            port=port or self.port,
            release=version,
            env=self.env.env,
            pass_env=self.env.pass_env,
            name=self.env.name,
        )

    def _write(self, state: dict[str, Any]) -> None:
        write_json(self.state_path, state, scratch=self.store.state_dir)


def _problem(state: object) -> str | None:
    """What makes `state` (state.json, parsed) not a record Shipyard wrote; None: nothing."""
    if not isinstance(state, dict):
        return "not a JSON object"
    wrong = [k for k, kinds in _KINDS.items() if k in state and not isinstance(state[k], kinds)]
    if "pid" in state and not {"release", "started_at"} <= state.keys():
        wrong.append("pid without release and started_at")
    return f"not as Shipyard writes it: {', '.join(wrong)}" if wrong else None


_THE_PROXY = "the proxy"


def _proxy_mode_records(state: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, record) of proxy mode's processes state.json records that still run: Caddy
    ("the proxy") and each release's server."""
    records = [(_THE_PROXY, state.get(PROXY))]
    servers = state.get(SERVERS)
    records += sorted(servers.items()) if isinstance(servers, dict) else []
    return [
        (name, record)
        for name, record in records
        if isinstance(record, dict) and isinstance(record.get("pid"), int) and is_our_server(record)
    ]


def _release_in(folder: Path) -> str | None:
    """The release whose folder `folder` is in (relative to the environment's), if any."""
    parts = folder.parts
    is_release = len(parts) >= 2 and parts[0] == "releases" and VERSION.fullmatch(parts[1])
    return parts[1] if is_release else None


def _process_runs(pid: int, ticks: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it runs
    return start_ticks(pid) == ticks


def is_our_server(state: dict[str, Any]) -> bool:
    """The pid still runs and is the process we started: the same start time as recorded
    (a reused pid has another). Without /proc both are None: the pid and its group are
    what there is to go by."""
    pid = state["pid"]
    return server.alive(pid) and start_ticks(pid) == state.get("start_ticks")
