"""The embedded default target: releases in a folder on this machine, served by a detached process.

    .shipyard/<env>/releases/v<N>/     unpacked artifact + release.json
    .shipyard/<env>/current            symlink to releases/v<N>, switched by os.replace()
    .shipyard/<env>/server/            state.json (pid, release, port) and one log per release
    .shipyard/<env>/audit.jsonl        deploys, rollbacks, lock breaks, prunes

Invariant: `current` only ever points at a `complete` release. A new release is served and
smoke-tested first, marked complete, and only then made current; so a crash at any instant
leaves `current` on a release that passed its smoke.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

from shipyard import artifact, audit, server
from shipyard.config import Config, Environment
from shipyard.errors import PreflightError, StepFailed
from shipyard.heartbeat import iso_timestamp
from shipyard.process import start_ticks, tools_path
from shipyard.smoke import SmokeCheck
from shipyard.targets.base import (
    DeployPlan,
    Observer,
    Release,
    ReleaseStatus,
    RollbackPlan,
    Say,
    Status,
    state_dir,
)

DEFAULT_PORT = 8787
STOP_GRACE = 5.0
RELEASE_FILE = "release.json"
_VERSION = re.compile(r"v([1-9][0-9]*)")
# What a served app writes beside its own code (Python's bytecode, unless
# PYTHONDONTWRITEBYTECODE is set): not a change to the release's files.
_CACHES = frozenset({"__pycache__"})


class LocalTarget:
    name = "local"

    created: str | None = None  # the release folder this deploy made
    observe: Observer | None = None  # nothing here is retried
    stop: threading.Event | None = None  # nothing here runs long

    def __init__(self, config: Config, environment: Environment) -> None:
        self.config = config
        self.env = environment
        self.state_dir = state_dir(config, environment)
        self.port = environment.port or DEFAULT_PORT

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
    def audit_path(self) -> Path:
        return self.state_dir / "audit.jsonl"

    def release_dir(self, version: str) -> Path:
        return self.releases_dir / version

    # --- reading the state (never changes anything) ------------------------------------

    def releases(self) -> list[Release]:
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

    def serving(self) -> dict[str, Any] | None:
        """The server this target started, while it still runs: pid, release, port, started."""
        try:
            state = json.loads((self.server_dir / "state.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or not isinstance(state.get("pid"), int):
            return None
        return state if _is_our_server(state) else None

    def smoke_check(self) -> SmokeCheck:
        smoke = self.env.smoke
        url = smoke.url or f"http://127.0.0.1:{self.port}{smoke.path}"
        return SmokeCheck(url, smoke.expect_status, smoke.contains, smoke.timeout)

    def status(self) -> Status:
        state = self.serving()
        current = self.current_version()
        if state is None:
            return Status(self.env.name, self.name, current, detail="no server running")
        from shipyard.smoke import probe

        check = self.smoke_check()
        answer = probe(SmokeCheck(check.url, check.expect_status, check.contains, 0.1), say=_quiet)
        mismatch = "" if state["release"] == current else f" (current is {current or 'none'})"
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

    # --- deploy ------------------------------------------------------------------------

    def preflight(self) -> None:
        """Nothing to check before reading the state."""

    def preflight_deploy(self) -> None:
        self._check_port()

    def plan_deploy(self, artifact_path: str | None) -> DeployPlan:
        version = f"v{self._last_number() + 1}"
        previous = self.current_version()
        folder = self._shown(self.release_dir(version))
        return DeployPlan(
            environment=self.env.name,
            target=self.name,
            release=version,
            previous=previous,
            artifact=artifact_path,
            actions=(
                f"unpack {artifact_path} into {folder}",
                f"stop the server of {previous or 'nothing'}: SIGTERM, {STOP_GRACE:g}s, SIGKILL",
                f"start `{self._command(version)}` in {folder} on port {self.port}",
                f"smoke {self.smoke_check().url} (expect {self.env.smoke.expect_status})",
                f"mark {version} complete, point {self._shown(self.current_link)} at it, prune"
                f" to {self.env.keep_releases} releases",
            ),
        )

    def deploy(self, plan: DeployPlan, say: Say) -> None:
        folder = self.release_dir(plan.release)
        self.releases_dir.mkdir(parents=True, exist_ok=True)
        folder.mkdir()  # claims the version: no two deploys write one folder
        self.created = plan.release
        archive = Path(plan.artifact or "")
        record = self._new_record(plan.release, archive)
        self._write_record(plan.release, record)
        artifact.unpack(archive, folder)
        self._write_record(plan.release, {**record, "tree_sha256": self._tree(plan.release)})
        say(f"unpacked {archive.name} into {self._shown(folder)}")
        self._serve(plan.release, say)

    def health(self, say: Say) -> None:
        state = self.serving()
        if state is None:
            raise StepFailed(
                f"the server of {self.env.name} is not running (see {self._shown(self.server_dir)})"
            )
        say(f"server of {state['release']} runs: pid {state['pid']}")

    def alive(self) -> bool:
        return self.serving() is not None

    def commit(self, plan: DeployPlan, say: Say) -> None:
        self._set_status(plan.release, ReleaseStatus.COMPLETE)
        self._switch(plan.release)
        say(f"{plan.release} is complete and current")
        self._prune(say)

    def restore(self, plan: DeployPlan, say: Say) -> bool:
        """Back to the release that was current; False when there is none to go back to."""
        self._stop_server(say)
        self._set_status(plan.release, ReleaseStatus.FAILED)
        say(f"marked {plan.release} failed")
        if plan.previous is None:
            say("no earlier complete release to restore: staging is down")
            return False
        self._serve(plan.previous, say)
        return True

    # --- rollback ----------------------------------------------------------------------

    def plan_rollback(self, to: str | None = None) -> RollbackPlan:
        current = self.current_version()
        releases = self.releases()
        chosen, reason = _choose(releases, current, to)
        if chosen is None:
            return RollbackPlan(self.env.name, self.name, current, None, reason)
        check, problems = self._verify(chosen)
        return RollbackPlan(
            environment=self.env.name,
            target=self.name,
            current=current,
            to=chosen.version,
            reason=reason,
            actions=self._rollback_actions(current, chosen.version),
            checks=(check,),
            problems=problems,
        )

    def _rollback_actions(self, current: str | None, to: str) -> tuple[str, ...]:
        state = self.serving()
        running = f"pid {state['pid']}, {state['release']}" if state else "none running"
        folder = self._shown(self.release_dir(to))
        mark_bad = (f"mark {current} bad, so later rollbacks skip it",) if current else ()
        return (
            f"take the lock {self._shown(self.state_dir / 'lock')}",
            f"stop the server ({running}): SIGTERM to its group, up to {STOP_GRACE:g}s, SIGKILL",
            f"start `{self._command(to)}` in {folder} on port {self.port}",
            f"smoke {self.smoke_check().url} (expect {self.env.smoke.expect_status},"
            f" up to {self.env.smoke.timeout:g}s)",
            *mark_bad,
            f"point {self._shown(self.current_link)} at releases/{to} (atomic rename)",
        )

    def _verify(self, release: Release) -> tuple[str, tuple[str, ...]]:
        recorded = self._record(release.version).get("tree_sha256")
        actual = self._tree(release.version)
        if recorded and recorded == actual:
            return f"{release.version} files intact (sha256 {actual[:12]})", ()
        folder = self._shown(self.release_dir(release.version))
        problem = f"{release.version} files do not match their recorded sha256 ({folder})"
        return f"{release.version} files checked", (problem,)

    def rollback(self, plan: RollbackPlan, say: Say) -> None:
        _, problems = self._verify(self._release(plan.to or "", plan.current))
        if problems:
            raise StepFailed(problems[0])
        self._serve(plan.to or "", say)

    def commit_rollback(self, plan: RollbackPlan, say: Say) -> None:
        """Make the release rolled back to current, then mark the one left bad: in this order
        `current` never points at a bad release, whenever the process dies."""
        target = plan.to or ""
        if self._release(target, None).status is ReleaseStatus.BAD:
            self._set_status(target, ReleaseStatus.COMPLETE)  # it just passed its smoke again
            say(f"{target} passed its smoke again: complete")
        self._switch(target)
        say(f"{target} is current")
        if plan.current:
            self._set_status(plan.current, ReleaseStatus.BAD)
            say(f"marked {plan.current} bad")

    def undo_rollback(self, plan: RollbackPlan, say: Say) -> bool:
        if plan.current is None:
            self._stop_server(say)
            return False
        self._serve(plan.current, say)
        return True

    # --- the server --------------------------------------------------------------------

    def _command(self, version: str) -> str:
        folder = self.release_dir(version)
        return server.render(
            self.env.start or "", port=self.port, release=version, release_dir=folder
        )

    def _serve(self, version: str, say: Say) -> int:
        self._stop_server(say)
        command = self._command(version)
        log_path = self.server_dir / f"{version}.log"
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
            }
            self._write_json(self.server_dir / "state.json", state)
        say(f"started {version}: pid {pid}, `{command}`, log {self._shown(log_path)}")
        return pid

    def _stop_server(self, say: Say) -> None:
        state = self.serving()
        if state is None:
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

    def _new_record(self, version: str, archive: Path) -> dict[str, Any]:
        from shipyard.pipeline import git_sha

        return {
            "version": version,
            "status": ReleaseStatus.BUILDING.value,
            "created_at": iso_timestamp(),
            "artifact": archive.name,
            "artifact_sha256": artifact.file_sha256(archive),
            "git_sha": git_sha(self.config.root),
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
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.state_dir / f".{path.name}.{secrets.token_hex(4)}.tmp"
        temp.write_text(json.dumps(document, indent=2) + "\n")
        temp.replace(path)

    def _switch(self, version: str) -> None:
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

    def _prune(self, say: Say) -> None:
        releases = self.releases()
        complete = [r.version for r in releases if r.status is ReleaseStatus.COMPLETE]
        protected = {
            *complete[-self.env.keep_releases :],
            self.current_version(),
            self.plan_rollback().to,
            releases[-1].version if releases else None,  # the newest keeps the numbering going
        }
        removed = [r.version for r in releases if r.version not in protected]
        for version in removed:
            self._remove_release(version)
        if removed:
            say(f"pruned {', '.join(removed)}")
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
    releases: list[Release], current: str | None, to: str | None
) -> tuple[Release | None, str]:
    """The release to roll back to and why: the one asked for, or the newest good one before."""
    by_version = {release.version: release for release in releases}
    if to is not None:
        return _chosen(by_version.get(to), to, current)
    if current is None:
        return None, "no current release: nothing has been deployed successfully"
    older = [
        r
        for r in releases
        if r.status is ReleaseStatus.COMPLETE and r.number < by_version[current].number
    ]
    if not older:
        return None, f"no complete, not-bad release older than {current}"
    return older[-1], f"newest complete, not-bad release older than {current}"


def _chosen(release: Release | None, to: str, current: str | None) -> tuple[Release | None, str]:
    if release is None:
        return None, f"--to {to}: no such release"
    if release.version == current:
        return None, f"--to {to}: that is the current release"
    if release.status not in (ReleaseStatus.COMPLETE, ReleaseStatus.BAD):
        return None, f"--to {to}: it is {release.status.value}, never passed its smoke"
    marked = (
        " (marked bad earlier; chosen explicitly)" if release.status is ReleaseStatus.BAD else ""
    )
    return release, f"asked for with --to{marked}"


def _is_our_server(state: dict[str, Any]) -> bool:
    """The pid still runs and is the process we started: the same start time as recorded
    (a reused pid has another). Without /proc both are None: the pid and its group are
    what there is to go by."""
    pid = state["pid"]
    return server.alive(pid) and start_ticks(pid) == state.get("start_ticks")


def _quiet(_: str) -> None:
    pass
