"""The embedded default target: releases in a folder on this machine, served by a detached process.

    .shipyard/<env>/releases/v<N>/     unpacked artifact + release.json
    .shipyard/<env>/current            symlink to releases/v<N>, switched by os.replace()
    .shipyard/<env>/server/            state.json (pid, release, port; the switch under way)
                                       and one log per release
    .shipyard/<env>/audit.jsonl        deploys, rollbacks, lock breaks, prunes

Invariant: `current` only ever points at a `complete` release. A new release is served and
smoke-tested first, marked complete, and only then made current; so a crash at any instant
leaves `current` on a release that passed its smoke.

Serving a release that is not `current` is a switch: state.json records it ("switching":
from, to, at, and the process switching) before the old server is stopped, and it is cleared
once `current` follows or the old release serves again. A switch left recorded by a process
that is gone was interrupted: what serves may not be `current`. The next deploy or rollback
repairs it: the release it half-switched to is marked `failed` (never `bad`), and `current`
is never marked bad for it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shipyard import artifact, audit, files, server
from shipyard.config import Config, Environment
from shipyard.config.checks import integer
from shipyard.errors import PreflightError, ShipyardError, StepFailed
from shipyard.heartbeat import iso_timestamp
from shipyard.process import start_ticks, tools_path
from shipyard.smoke import SmokeCheck
from shipyard.targets.base import (
    Call,
    DeployPlan,
    Made,
    Release,
    ReleaseStatus,
    RollbackPlan,
    Say,
    Status,
    TargetFailed,
    state_dir,
)
from shipyard.targets.kinds import TargetKind

DEFAULT_PORT = 8787
STOP_GRACE = 5.0
RELEASE_FILE = "release.json"
STATE_FILE = "state.json"
SWITCHING = "switching"  # state.json's record of the switch under way
_VERSION = re.compile(r"v([1-9][0-9]*)")
# What a served app writes beside its own code (Python's bytecode, unless
# PYTHONDONTWRITEBYTECODE is set): not a change to the release's files.
_CACHES = frozenset({"__pycache__"})


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


@dataclass(frozen=True)
class LocalDeployPlan(DeployPlan):
    mark_failed: str | None = None  # the release an interrupted switch left half-switched


@dataclass(frozen=True)
class LocalRollbackPlan(RollbackPlan):
    mark_failed: str | None = None  # the release an interrupted switch left half-switched
    mark_bad: str | None = None  # the release this rollback takes out of service


@dataclass(frozen=True)
class LocalOptions:
    """The keys the local target adds to an environment."""

    port: int = DEFAULT_PORT  # where the release's server listens, on 127.0.0.1
    keep_releases: int = 5  # complete releases kept (besides current and the rollback target)


class LocalTarget:
    """The `Target` of releases on this machine. Nothing here is retried or runs long, so a
    call's `stop` and `observe` go unused; only its `say` is heard."""

    name = "local"

    def __init__(
        self, config: Config, environment: Environment, options: LocalOptions | None = None
    ) -> None:
        self.config = config
        self.env = environment
        self.options = options or LocalOptions(**LOCAL.checked_options(config, environment))
        self.state_dir = state_dir(config, environment)
        self.port = self.options.port

    # --- paths -------------------------------------------------------------------------

    @property
    def releases_dir(self) -> Path:
        return self.state_dir / "releases"

    @property
    def current_link(self) -> Path:
        return self.state_dir / "current"

    @property
    def server_dir(self) -> Path:
        return self.state_dir / "server"

    @property
    def state_path(self) -> Path:
        return self.server_dir / STATE_FILE

    @property
    def audit_path(self) -> Path:
        return self.state_dir / "audit.jsonl"

    def release_dir(self, version: str) -> Path:
        return self.releases_dir / version

    # --- reading the state (never changes anything) ------------------------------------

    def releases(self, call: Call) -> list[Release]:
        """Every release folder, oldest first; an unreadable release.json reads as `building`."""
        if not self.releases_dir.is_dir():
            return []
        current = self.current_version()
        versions = [p.name for p in self.releases_dir.iterdir() if _VERSION.fullmatch(p.name)]
        found = [self._release(version, current) for version in versions]
        return sorted(found, key=lambda release: release.number)

    def _release(self, version: str, current: str | None) -> Release:
        record = self._record(version)
        try:
            status = ReleaseStatus(record.get("status"))
        except ValueError:
            status = ReleaseStatus.BUILDING  # unreadable: never served, never a rollback target
        return Release(
            version=version,
            status=status,
            created_at=record.get("created_at"),
            git_sha=record.get("git_sha"),
            artifact_sha256=record.get("artifact_sha256"),
            user=record.get("user"),
            current=version == current,
        )

    def _record(self, version: str) -> dict[str, Any]:
        try:
            record = json.loads((self.release_dir(version) / RELEASE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def current_version(self) -> str | None:
        """The release `current` points at, or None (no link, a dangling or foreign one)."""
        try:
            target = self.current_link.readlink()
        except OSError:
            return None
        version = Path(target).name
        if not _VERSION.fullmatch(version) or not self.release_dir(version).is_dir():
            return None
        return version

    def _server_state(self) -> dict[str, Any]:
        """state.json as last written, whether its server still runs or not."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def serving(self) -> dict[str, Any] | None:
        """The server this target started, while it still runs: pid, release, port, started."""
        state = self._server_state()
        if not isinstance(state.get("pid"), int):
            return None
        return state if _is_our_server(state) else None

    def switch(self) -> Switch | None:
        """The switch state.json records, unless `current` already names its release (then
        only the bookkeeping after it was cut short)."""
        switch = Switch.read(self._server_state().get(SWITCHING))
        if switch is None or switch.target == self.current_version():
            return None
        return switch

    def interrupted_switch(self) -> Switch | None:
        """A switch that no running process will finish: recorded by a process that is gone,
        or (a state.json written before switches were recorded) a server of a release that
        is not current."""
        switch = self.switch()
        if switch is not None:
            return None if switch.under_way else switch
        state, current = self.serving(), self.current_version()
        if state is None or current is None or state["release"] == current:
            return None
        return Switch(source=current, target=state["release"])

    def smoke_check(self) -> SmokeCheck:
        smoke = self.env.smoke
        url = smoke.url or f"http://127.0.0.1:{self.port}{smoke.path}"
        return SmokeCheck(url, smoke.expect_status, smoke.contains, smoke.timeout)

    def status(self, call: Call) -> Status:
        """`serving` is what runs (the recorded server, alive), `current` the link; `detail`
        names both when they differ, and the switch recorded between them."""
        state = self.serving()
        current = self.current_version()
        mismatch = self._mismatch(current, state["release"] if state else None)
        if state is None:
            return Status(self.env.name, self.name, current, detail="no server running" + mismatch)
        from shipyard.smoke import probe

        check = self.smoke_check()
        answer = probe(SmokeCheck(check.url, check.expect_status, check.contains, 0.1), say=_quiet)
        return Status(
            environment=self.env.name,
            target=self.name,
            current=current,
            serving=state["release"],
            pid=state["pid"],
            url=check.url,
            uptime=round(time.time() - state["started_at"], 1),
            healthy=answer.ok,
            detail=answer.reason + mismatch,
        )

    def _mismatch(self, current: str | None, running: str | None) -> str:
        """What `detail` adds: what serves when it is not current, and the switch recorded."""
        notes = []
        if running is not None and running != current:
            notes.append(f"{running} serves but current is {current or 'none'}")
        switch = self.switch()
        if switch is not None:
            state = f"is under way (pid {switch.pid})" if switch.under_way else "was interrupted"
            notes.append(f"{switch.describe()} {state}" + (f" at {switch.at}" if switch.at else ""))
        return "".join(f"; {note}" for note in notes)

    # --- deploy ------------------------------------------------------------------------

    def preflight(self) -> None:
        """Nothing to check before reading the state."""

    def preflight_deploy(self) -> None:
        self._check_port()

    def plan_deploy(self, artifact: str | None, call: Call) -> LocalDeployPlan:
        # `artifact`, the archive's path, as the protocol names it (callers may pass it by
        # keyword); it hides the artifact module, which planning does not use
        version = f"v{self._last_number() + 1}"
        previous = self.current_version()
        folder = self._shown(self.release_dir(version))
        interrupted = self.interrupted_switch()
        half = self._half_switched(interrupted)
        actions = (  # in the order deploy(), the smoke and commit() carry them out
            *_repair_actions(half, interrupted),
            f"unpack {artifact} into {folder}",
            self._record_action(previous, version),
            self._stop_action(),
            f"start `{self._command(version)}` in {folder} on port {self.port}",
            f"smoke {self.smoke_check().url} (expect {self.env.smoke.expect_status})",
            f"mark {version} complete",
            self._point_action(version),
            f"prune to the newest {self.options.keep_releases} complete releases (and current,"
            " the rollback target, the newest folder)",
        )
        return LocalDeployPlan(
            environment=self.env.name,
            target=self.name,
            release=version,
            previous=previous,
            artifact=artifact,
            actions=actions,
            mark_failed=half,
        )

    def deploy(self, plan: DeployPlan, call: Call) -> Made:
        """Unpack and serve the new release. A failure raises TargetFailed carrying what was
        made: Made(plan.release) once its folder is claimed, Made(None) before."""
        made = Made(None)
        try:
            self._mark_failed(_marks(plan)[0], call.say)
            self.releases_dir.mkdir(parents=True, exist_ok=True)
            # claims the version: no two deploys write one folder
            self.release_dir(plan.release).mkdir()
            made = Made(plan.release)
            self._unpack(plan, call.say)
            self._serve(plan.release, call.say)
        except Exception as error:
            raise _failed(error, made, call.say) from error
        return made

    def _unpack(self, plan: DeployPlan, say: Say) -> None:
        """The artifact into the claimed folder, beside release.json (`building`, then with the
        sha256 of the unpacked tree)."""
        folder, archive = self.release_dir(plan.release), Path(plan.artifact or "")
        record = self._new_record(plan, archive)
        self._write_record(plan.release, record)
        artifact.unpack(archive, folder)
        self._write_record(plan.release, {**record, "tree_sha256": self._tree(plan.release)})
        say(f"unpacked {archive.name} into {self._shown(folder)}")

    def health(self, made: Made, call: Call) -> None:
        state = self.serving()
        if state is None:
            raise StepFailed(
                f"the server of {self.env.name} is not running (see {self._shown(self.server_dir)})"
            )
        call.say(f"server of {state['release']} runs: pid {state['pid']}")

    def alive(self) -> bool:
        return self.serving() is not None

    def commit(self, plan: DeployPlan, made: Made, call: Call) -> None:
        self._set_status(plan.release, ReleaseStatus.COMPLETE)
        call.say(f"marked {plan.release} complete")
        self._make_current(plan.release, call.say)
        self._prune(call)

    def restore(self, plan: DeployPlan, made: Made, call: Call) -> Made | None:
        """Back to the release that was current; None when there is none to go back to.
        Either way the switch recorded by the deploy is over. Made(None) when it serves
        again: restarting `plan.previous`, made by an earlier deploy, makes no release."""
        self._stop_server(call.say)
        self._set_status(plan.release, ReleaseStatus.FAILED)
        call.say(f"marked {plan.release} failed")
        if plan.previous is None:
            self._end_switch()
            call.say("no earlier complete release to restore: staging is down")
            return None
        self._start(plan.previous, call.say)
        return Made(None)

    # --- rollback ----------------------------------------------------------------------

    def plan_rollback(self, to: str | None, call: Call) -> LocalRollbackPlan:
        current = self.current_version()
        state = self.serving()
        interrupted = self.interrupted_switch()
        releases = self.releases(call)
        running = state["release"] if state else None
        chosen, reason = _choose(releases, current, running, interrupted, to)
        if chosen is None:
            return LocalRollbackPlan(self.env.name, self.name, current, None, reason)
        check, problems = self._verify(chosen)
        # the release taken out of service is marked bad: not one an interrupted switch left
        # current without serving, nor the one rolled back to
        leaves = current if interrupted is None and current != chosen.version else None
        half = self._half_switched(interrupted)
        plan = LocalRollbackPlan(
            environment=self.env.name,
            target=self.name,
            current=current,
            to=chosen.version,
            reason=reason,
            checks=(check,),
            problems=problems,
            mark_failed=half,
            mark_bad=leaves,
        )
        return replace(plan, actions=self._rollback_actions(plan, chosen, interrupted))

    def _rollback_actions(
        self, plan: LocalRollbackPlan, chosen: Release, interrupted: Switch | None
    ) -> tuple[str, ...]:
        """In the order rollback(), the smoke and commit_rollback() carry them out."""
        to, folder = chosen.version, self._shown(self.release_dir(chosen.version))
        revive = chosen.status is ReleaseStatus.BAD
        return (
            *_repair_actions(plan.mark_failed, interrupted),
            *((self._record_action(plan.current, to),) if to != plan.current else ()),
            self._stop_action(),
            f"start `{self._command(to)}` in {folder} on port {self.port}",
            f"smoke {self.smoke_check().url} (expect {self.env.smoke.expect_status},"
            f" up to {self.env.smoke.timeout:g}s)",
            *((f"mark {to} complete again: it passed its smoke",) if revive else ()),
            self._point_action(to),
            *((f"mark {plan.mark_bad} bad, so later rollbacks skip it",) if plan.mark_bad else ()),
        )

    def _verify(self, release: Release) -> tuple[str, tuple[str, ...]]:
        recorded = self._record(release.version).get("tree_sha256")
        actual = self._tree(release.version)
        if recorded and recorded == actual:
            return f"{release.version} files intact (sha256 {actual[:12]})", ()
        folder = self._shown(self.release_dir(release.version))
        problem = f"{release.version} files do not match their recorded sha256 ({folder})"
        return f"{release.version} files checked", (problem,)

    def rollback(self, plan: RollbackPlan, call: Call) -> Made:
        """Serve the release rolled back to. That release exists already: a rollback makes
        none here, so it returns Made(None), and a failure raises TargetFailed with it."""
        try:
            _, problems = self._verify(self._release(plan.to or "", plan.current))
            if problems:
                raise StepFailed(problems[0])
            self._mark_failed(_marks(plan)[0], call.say)
            self._serve(plan.to or "", call.say)
        except Exception as error:
            raise _failed(error, Made(None), call.say) from error
        return Made(None)

    def commit_rollback(self, plan: RollbackPlan, made: Made, call: Call) -> None:
        """Make the release rolled back to current, then mark the one left bad: in this order
        `current` never points at a bad release, whenever the process dies."""
        target = plan.to or ""
        if self._release(target, None).status is ReleaseStatus.BAD:
            self._set_status(target, ReleaseStatus.COMPLETE)  # it just passed its smoke again
            call.say(f"marked {target} complete again: it passed its smoke")
        self._make_current(target, call.say)
        leaves = _marks(plan)[1]
        if leaves:
            self._set_status(leaves, ReleaseStatus.BAD)
            call.say(f"marked {leaves} bad")

    def undo_rollback(self, plan: RollbackPlan, made: Made, call: Call) -> Made | None:
        """Back to the release `current` names; the switch recorded by the rollback is over.
        None when no release is current; else Made(None), as in restore()."""
        self._stop_server(call.say)
        if plan.current is None:
            self._end_switch()
            return None
        self._start(plan.current, call.say)
        return Made(None)

    # --- switches and their repair -------------------------------------------------------

    def _half_switched(self, interrupted: Switch | None) -> str | None:
        """The release an interrupted switch started that never passed its smoke (still
        `building`): the next deploy or rollback marks it failed. Never `current`."""
        if interrupted is None or not self.release_dir(interrupted.target).is_dir():
            return None
        release = self._release(interrupted.target, self.current_version())
        building = release.status is ReleaseStatus.BUILDING and not release.current
        return release.version if building else None

    def _mark_failed(self, version: str | None, say: Say) -> None:
        if version is None:
            return
        self._set_status(version, ReleaseStatus.FAILED)
        say(f"marked {version} failed: it served in a switch that was interrupted")

    def _record_action(self, source: str | None, version: str) -> str:
        shown = self._shown(self.state_path)
        return f"record in {shown} the switch from {source or 'nothing'} to {version}"

    def _stop_action(self) -> str:
        state = self.serving()
        running = f"of {state['release']} (pid {state['pid']})" if state else "(none running)"
        return f"stop the server {running}: SIGTERM to its group, up to {STOP_GRACE:g}s, SIGKILL"

    def _point_action(self, version: str) -> str:
        return f"point {self._shown(self.current_link)} at releases/{version} (atomic rename)"

    def _begin_switch(self, version: str, say: Say) -> Switch:
        """Record the switch before the old server stops: a crash from here on leaves it."""
        switch = Switch.begin(self.current_version(), version)
        self._write_json(self.state_path, {**self._server_state(), SWITCHING: switch.to_json()})
        say(
            f"recorded in {self._shown(self.state_path)} the switch from"
            f" {switch.source or 'nothing'} to {version}"
        )
        return switch

    def _end_switch(self) -> None:
        state = self._server_state()
        if state.pop(SWITCHING, None) is not None:
            self._write_json(self.state_path, state)

    def _make_current(self, version: str, say: Say) -> None:
        """Point `current` at what now serves; the switch to it is over."""
        self._point_current(version)
        self._end_switch()
        say(f"{version} is current")

    # --- the server --------------------------------------------------------------------

    def _command(self, version: str) -> str:
        folder = self.release_dir(version)
        return server.render(
            self.env.start or "", port=self.port, release=version, release_dir=folder
        )

    def _serve(self, version: str, say: Say) -> None:
        """Stop what serves and start `version`: a switch, recorded, unless it is current."""
        switch = self._begin_switch(version, say) if version != self.current_version() else None
        self._stop_server(say)
        self._start(version, say, switch)

    def _start(self, version: str, say: Say, switch: Switch | None = None) -> int:
        """Start `version`'s server; state.json names it (and keeps `switch`, if any)."""
        command = self._command(version)
        log_path = self.server_log(version)
        folder, env = self.release_dir(version), self._server_env(version)
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
            self._write_json(self.state_path, state)
        say(f"started {version}: pid {pid}, `{command}`, log {self._shown(log_path)}")
        return pid

    def _stop_server(self, say: Say) -> None:
        state = self.serving()
        if state is None:
            say("stopped nothing: no server running")
            return
        server.stop(state["pid"], grace=STOP_GRACE)
        say(f"stopped the server of {state['release']} (pid {state['pid']})")

    def server_log(self, version: str) -> Path:
        return self.server_dir / f"{version}.log"

    def _server_env(self, version: str) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": tools_path(os.environ),
            **self.env.env,
            "PORT": str(self.port),
            "SHIPYARD_ENV": self.env.name,
            "SHIPYARD_RELEASE": version,
        }

    def _check_port(self) -> None:
        if self.serving() is None and server.port_in_use(self.port):
            raise PreflightError(
                f"port {self.port} on 127.0.0.1 is in use by another process (not a Shipyard"
                f" server of {self.env.name}); stop it or set environments.{self.env.name}.port"
            )

    # --- writing the state ---------------------------------------------------------------

    def _new_record(self, plan: DeployPlan, archive: Path) -> dict[str, Any]:
        """release.json: who made the release, from what (the tree's state is the plan's)."""
        from shipyard.git import head_sha

        dirty = {"dirty": True, "diff_sha256": plan.diff_sha256} if plan.dirty else {}
        return {
            "version": plan.release,
            "status": ReleaseStatus.BUILDING.value,
            "created_at": iso_timestamp(),
            "artifact": archive.name,
            "artifact_sha256": artifact.file_sha256(archive),
            "git_sha": plan.git_sha or head_sha(self.config.root),
            **dirty,
            "user": audit.current_user(),
            "host": socket.gethostname(),
        }

    def _set_status(self, version: str, status: ReleaseStatus) -> None:
        record = self._record(version)
        self._write_record(
            version, {**record, "status": status.value, "updated_at": iso_timestamp()}
        )

    def _write_record(self, version: str, record: dict[str, Any]) -> None:
        self._write_json(self.release_dir(version) / RELEASE_FILE, record)

    def _write_json(self, path: Path, document: dict[str, Any]) -> None:
        data = (json.dumps(document, indent=2) + "\n").encode()
        files.write_atomic(path, data, scratch=self.state_dir)

    def _point_current(self, version: str) -> None:
        """Point `current` at the release with one rename(2): readers see old or new, never none."""
        temp = self.state_dir / f".current.{secrets.token_hex(4)}"
        temp.symlink_to(Path("releases") / version)
        temp.replace(self.current_link)

    def _tree(self, version: str) -> str:
        return artifact.tree_sha256(
            self.release_dir(version), skip=frozenset({RELEASE_FILE}), skip_folders=_CACHES
        )

    def _last_number(self) -> int:
        numbers = [
            int(match[1])
            for path in (self.releases_dir.iterdir() if self.releases_dir.is_dir() else ())
            if (match := _VERSION.fullmatch(path.name))
        ]
        return max(numbers, default=0)

    def _prune(self, call: Call) -> None:
        releases = self.releases(call)
        complete = [r.version for r in releases if r.status is ReleaseStatus.COMPLETE]
        protected = {
            *complete[-self.options.keep_releases :],
            self.current_version(),
            self.plan_rollback(None, call).to,
            releases[-1].version if releases else None,  # the newest keeps the numbering going
        }
        removed = [r.version for r in releases if r.version not in protected]
        for version in removed:
            self._remove_release(version)
        if not removed:
            call.say(f"pruned nothing: {len(releases)} releases, all kept")
            return
        call.say(f"pruned {', '.join(removed)}")
        audit.append(self.audit_path, "prune", environment=self.env.name, removed=removed)

    def _remove_release(self, version: str) -> None:
        trash = self.releases_dir / f".trash-{version}-{secrets.token_hex(4)}"
        self.release_dir(version).rename(trash)  # gone at once; deleting may take longer
        shutil.rmtree(trash, ignore_errors=True)
        self.server_log(version).unlink(missing_ok=True)

    def _shown(self, path: Path) -> str:
        try:
            return path.relative_to(self.config.root).as_posix()
        except ValueError:
            return str(path)


def _choose(
    releases: list[Release],
    current: str | None,
    running: str | None,
    interrupted: Switch | None,
    to: str | None,
) -> tuple[Release | None, str]:
    """The release to roll back to and why: the one asked for; after an interrupted switch,
    the current one; or else the newest good one before it."""
    by_version = {release.version: release for release in releases}
    if to is not None:
        return _chosen(by_version.get(to), to, current, running)
    if current is None:
        return None, "no current release: nothing has been deployed successfully"
    if interrupted is not None and by_version[current].status is ReleaseStatus.COMPLETE:
        serves = f"{running} serves" if running else "nothing serves"
        return by_version[current], (
            f"{interrupted.describe()} was interrupted ({serves}): back to {current},"
            " the current release, which is not marked bad"
        )
    older = [
        r
        for r in releases
        if r.status is ReleaseStatus.COMPLETE and r.number < by_version[current].number
    ]
    if not older:
        return None, f"no complete, not-bad release older than {current}"
    return older[-1], f"newest complete, not-bad release older than {current}"


def _chosen(
    release: Release | None, to: str, current: str | None, running: str | None
) -> tuple[Release | None, str]:
    if release is None:
        return None, f"--to {to}: no such release"
    if release.version == current == running:
        return None, f"--to {to}: that is the release already serving (and current)"
    if release.status not in (ReleaseStatus.COMPLETE, ReleaseStatus.BAD):
        return None, f"--to {to}: it is {release.status.value}, never passed its smoke"
    if release.version == current:
        serves = f"{running} serves" if running else "nothing serves"
        return release, f"asked for with --to: {to} is current, but {serves}"
    marked = (
        " (marked bad earlier; chosen explicitly)" if release.status is ReleaseStatus.BAD else ""
    )
    return release, f"asked for with --to{marked}"


def _repair_actions(half: str | None, interrupted: Switch | None) -> tuple[str, ...]:
    if half is None or interrupted is None:
        return ()
    return (f"mark {half} failed: {interrupted.describe()} was interrupted before its smoke",)


def _marks(plan: DeployPlan | RollbackPlan) -> tuple[str | None, str | None]:
    """(to mark failed, to mark bad) as this target planned; a plan made elsewhere repairs
    nothing and marks the release it rolls back from bad, as rollbacks always did."""
    if isinstance(plan, LocalRollbackPlan):
        return plan.mark_failed, plan.mark_bad
    if isinstance(plan, LocalDeployPlan):
        return plan.mark_failed, None
    if isinstance(plan, RollbackPlan) and plan.current != plan.to:
        return None, plan.current
    return None, None


def _failed(error: Exception, made: Made, say: Say) -> TargetFailed:
    """`error` as the TargetFailed that carries `made`, ending the step as `error` would have:
    its message and exit code, or for an unexpected error its traceback said first."""
    if isinstance(error, TargetFailed):
        return error
    if not isinstance(error, ShipyardError):
        say(traceback.format_exc().rstrip())
        return TargetFailed(f"{type(error).__name__}: {error}", made)
    return TargetFailed(error.message, made, like=error)  # a bad artifact stays exit 2


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


def _quiet(_: str) -> None:
    pass


LOCAL = TargetKind(
    options={"port": integer(1, 65535), "keep_releases": integer(1)},
    make=lambda config, environment, options: LocalTarget(
        config, environment, LocalOptions(**options)
    ),
    required={"start": "the command that starts the server"},
)
