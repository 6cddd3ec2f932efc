"""`LocalTarget`, the local target's policy: the `Target` calls that make the plans (`plans`),
carry them out and report the status, on the releases on disk (`store`) and what serves them
(`serving`).

Invariant: `current` only ever points at a `complete` release. A new release is served and
smoke-tested first, marked complete, and only then made current; so a crash at any instant
leaves `current` on a release that passed its smoke. After an interrupted switch, the next
deploy or rollback marks the release it half-switched to `failed` (never `bad`), and never
marks `current` bad for it.

Nothing that serves is touched until the new release is ready: a deploy unpacks it and
records its tree's sha256 first, and only then switches (records the switch, stops the old
server, starts the new one). A deploy that fails before the switch leaves what serves as it
was and removes its folder; its restore then changes nothing: a restore never does more harm
than doing nothing.
"""

from __future__ import annotations

import errno
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shipyard import audit, unpacking
from shipyard.config import Config, Environment
from shipyard.config.checks import boolean, integer, one_of, text
from shipyard.errors import ShipyardError, StepFailed
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
from shipyard.targets.local.plans import (
    LocalDeployPlan,
    LocalRollbackPlan,
    PlanActions,
    marks,
    rollback_choice,
)
from shipyard.targets.local.serving import ServerState, Stopped, Switch
from shipyard.targets.local.shared import paths_check
from shipyard.targets.local.store import RELEASE_FILE, ReleaseStore, new_record, shown
from shipyard.targets.local.written import FILE_LIST

DEFAULT_PORT = 8787
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})  # a full disk: expected, said in one line


@dataclass(frozen=True)
class LocalOptions:
    """The keys the local target adds to an environment."""

    port: int = DEFAULT_PORT  # where the environment is served, on 127.0.0.1
    keep_releases: int = 5  # complete releases kept (besides current and the rollback target)
    shared: tuple[str, ...] = ()  # paths linked into each release from .shipyard/<env>/shared/
    proxy: str = "auto"  # auto: Caddy when one is found; caddy: always; direct: never
    caddy: str | None = None  # the Caddy binary (a path, or a name on PATH)
    warm_previous: bool = True  # proxy mode keeps the release served before running


class LocalTarget:
    """The `Target` of releases on this machine. Nothing here is retried or runs long, so a
    call's `stop` and `observe` go unused; only its `say` is heard."""

    name = "local"

    def __init__(
        self,
        config: Config,
        environment: Environment,
        options: LocalOptions | None = None,
        *,
        direct_because: str = "proxy: direct",
    ) -> None:
        self.direct_because = direct_because
        self.config = config
        self.env = environment
        if options is None:
            options = LocalOptions(**DIRECT.checked_options(config, environment))
        self.options = options
        self.state_dir = state_dir(config, environment)
        self.port = self.options.port
        self.store = ReleaseStore(
            self.state_dir, unpacking.UnpackLimits.of(environment), self.options.shared
        )
        self.server_state = ServerState(environment, self.port, self.store)
        self.plan_actions = PlanActions(
            config.root, self.server_state, self.smoke_check(), self.options.keep_releases
        )

    @property
    def mode(self) -> str:
        """How the environment is served, said by the deploy, the plans and `inv doctor`."""
        return (
            f"direct mode: the release's server listens on port {self.port} itself"
            f" ({self.direct_because})"
        )

    # --- paths -------------------------------------------------------------------------

    @property
    def current_link(self) -> Path:
        return self.store.current_link

    @property
    def server_dir(self) -> Path:
        return self.server_state.server_dir

    @property
    def state_path(self) -> Path:
        return self.server_state.state_path

    @property
    def audit_path(self) -> Path:
        return self.state_dir / "audit.jsonl"

    def release_dir(self, version: str) -> Path:
        return self.store.release_dir(version)

    # --- reading the state (never changes anything) ------------------------------------

    def releases(self, call: Call) -> list[Release]:
        """Every release folder, oldest first; an unreadable release.json reads as `building`."""
        return self.store.releases()

    def current_version(self) -> str | None:
        """The release `current` points at, or None (no link, a dangling or foreign one)."""
        return self.store.current_version()

    def serving(self) -> dict[str, Any] | None:
        """The server this target started, while it still runs: pid, release, port, started."""
        return self.server_state.serving()

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
        writes = self._writes(current, state["release"] if state else None)
        if state is None:
            detail = "no server running" + mismatch
            return Status(self.env.name, self.name, current, detail=detail, writes=writes)
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
            writes=writes,
        )

    def _writes(self, *versions: str | None) -> tuple[str, ...]:
        """For each release named (current, what serves), the files written into its folder
        since it was unpacked, outside its shared paths, in one line; none when intact."""
        lines = []
        for version in dict.fromkeys(v for v in versions if v):
            changed = self.store.changed(version)
            if changed is not None:
                lines.append(
                    f"{version}: {changed} (not in a shared path: a rollback to {version}"
                    " refuses it without --force)"
                )
        return tuple(lines)

    def _mismatch(self, current: str | None, running: str | None) -> str:
        """What `detail` adds: what serves when it is not current, and the switch recorded."""
        notes = []
        if running is not None and running != current:
            notes.append(f"{running} serves but current is {current or 'none'}")
        proxy = self.server_state.proxy_left()
        if proxy is not None:
            notes.append(
                f"a Caddy (pid {proxy}) from a deploy in proxy mode holds port {self.port}, and"
                f" this environment is now in direct mode: `inv stop --env {self.env.name}`"
            )
        switch = self.server_state.switch()
        if switch is not None:
            state = f"is under way (pid {switch.pid})" if switch.under_way else "was interrupted"
            notes.append(f"{switch.describe()} {state}" + (f" at {switch.at}" if switch.at else ""))
        return "".join(f"; {note}" for note in notes)

    # --- deploy ------------------------------------------------------------------------

    def preflight(self) -> None:
        """DamagedState (exit 2, naming the file and the way out) when a state file cannot be
        read or replaced safely: nothing that reads it goes on, nothing is stopped."""
        self.server_state.check()
        self.store.check()

    def preflight_deploy(self) -> None:
        self.server_state.check_no_proxy(self.mode)
        self.server_state.check_port()

    def plan_deploy(self, artifact: str | None, call: Call) -> LocalDeployPlan:
        # `artifact`, the archive's path, as the protocol names it (callers may pass it by
        # keyword)
        interrupted = self.server_state.interrupted_switch()
        plan = LocalDeployPlan(
            environment=self.env.name,
            target=self.name,
            release=f"v{self.store.last_number() + 1}",
            previous=self.current_version(),
            artifact=artifact,
            mark_failed=self._half_switched(interrupted),
        )
        return replace(plan, actions=self.plan_actions.for_deploy(plan, interrupted))

    def deploy(self, plan: DeployPlan, call: Call) -> Made:
        """Make the new release ready, then switch to it: stop the old server and start the
        new one (they share the port: the stop is the switch). Failing before the switch, it
        raises TargetFailed with Made(None): what serves is as it was, the release's folder
        is gone. From the switch on, with Made(plan.release)."""
        call.say(self.mode)
        try:
            self._mark_failed(marks(plan)[0], call.say)
            switch = self._prepare(plan, call.say)
        except Exception as error:
            raise failed_as(error, Made(None), call.say, note=self._before_switch()) from error
        made = Made(plan.release)
        try:
            self._stop_server(call.say)
            self._start(plan.release, call.say, switch)
        except Exception as error:
            raise failed_as(error, made, call.say) from error
        return made

    def _prepare(self, plan: DeployPlan, say: Say) -> Switch:
        """The release unpacked, its tree's sha256 in release.json, and the switch to it
        recorded; nothing that serves touched. Should any of it fail, the folder this
        claimed is removed (a full disk gets its space back)."""
        self.store.claim(plan.release)
        try:
            self._unpack(plan, say)
            return self._begin_switch(plan.release, say, deploy=True)
        except BaseException:
            self._discard(plan.release, say)
            raise

    def _unpack(self, plan: DeployPlan, say: Say) -> None:
        """The artifact into the claimed folder, beside release.json (`building`, then with the
        sha256 of the unpacked tree, read back)."""
        folder, archive = self.release_dir(plan.release), Path(plan.artifact or "")
        record = new_record(plan, archive, root=self.config.root)
        tree = self.store.unpack(plan.release, archive, record)
        paths, shared = self.store.shared_paths, self._shown(self.store.shared_dir)
        linked = f", linked {', '.join(paths)} to {shared}/" if paths else ""
        say(f"unpacked {archive.name} into {self._shown(folder)}{linked} (tree sha256 {tree[:12]})")

    def _discard(self, version: str, say: Say) -> None:
        problem = self.store.discard(version)
        folder = self._shown(self.release_dir(version))
        say(f"could not remove {folder}: {problem}" if problem else f"removed {folder}")

    def _before_switch(self) -> str:
        """What a deploy that failed before its switch left serving, in a few words."""
        try:
            state = self.serving()
        except ShipyardError:
            return "failed before the switch"
        if state is None:
            return "failed before the switch; nothing served before it either"
        serves = f"{state['release']} still serves (pid {state['pid']}), untouched"
        return f"failed before the switch; {serves}"

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
        self.store.set_status(plan.release, ReleaseStatus.COMPLETE)
        call.say(f"marked {plan.release} complete")
        self._make_current(plan.release, call.say)
        self._prune(call)

    def restore(self, plan: DeployPlan, made: Made, call: Call) -> Made | None:
        """Put back what served before the deploy, never doing more harm than doing nothing.

        The deploy failed before the switch (it made no release: `made.release` is None):
        it stopped nothing, so while a server of ours still serves, nothing is touched and
        this returns Made(None), "nothing to put back". When none serves (none did before),
        `plan.previous` is started, as below. From the switch on: the new release's server
        stopped, the release marked failed, `plan.previous` started; the switch recorded by
        the deploy is then over. Made(None) when `plan.previous` serves (again; an earlier
        deploy made it); None when there is no release to go back to."""
        if made.release is None:
            untouched = self._untouched(call.say)
            if untouched is not None:
                return untouched
        else:
            self._stop_server(call.say)
            self._mark_restored(plan.release, call.say)
        if plan.previous is None:
            self.server_state.end_switch()
            call.say(f"no earlier complete release to restore: {self.env.name} is down")
            return None
        self._start(plan.previous, call.say)
        return Made(None)

    # --- rollback ----------------------------------------------------------------------

    def plan_rollback(self, to: str | None, call: Call) -> LocalRollbackPlan:
        self.server_state.check_no_proxy(self.mode)
        current = self.current_version()
        state = self.serving()
        interrupted = self.server_state.interrupted_switch()
        releases = self.releases(call)
        running = state["release"] if state else None
        choice = rollback_choice(releases, current, running, interrupted, to)
        chosen = choice.release
        if chosen is None:
            return LocalRollbackPlan(self.env.name, self.name, current, None, choice.reason)
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
            reason=choice.reason,
            checks=(check, self.mode),
            problems=problems,
            mark_failed=half,
            mark_bad=leaves,
            revive=chosen.version if chosen.status is ReleaseStatus.BAD else None,
        )
        return replace(plan, actions=self.plan_actions.for_rollback(plan, chosen, interrupted))

    def _verify(self, release: Release) -> tuple[str, tuple[str, ...]]:
        """(the check made, the problem found: files written into the release since it was
        unpacked, outside its shared paths, named; `--force` goes past it)."""
        changed = self.store.changed(release.version)
        if changed is None:
            recorded = self.store.record(release.version).get("tree_sha256", "")
            return f"{release.version} files intact (sha256 {recorded[:12]})", ()
        folder = self._shown(self.release_dir(release.version))
        problem = (
            f"{release.version} files do not match their recorded sha256 ({folder}): {changed}"
        )
        return f"{release.version} files checked", (problem,)

    def rollback(self, plan: RollbackPlan, call: Call) -> Made:
        """Serve the release rolled back to. That release exists already: a rollback makes
        none here, so it returns Made(None), and a failure raises TargetFailed with it."""
        call.say(self.mode)
        try:
            _, problems = self._verify(self.store.release(plan.to or "", plan.current))
            if problems and not plan.forced:
                raise StepFailed(problems[0])
            for problem in problems:
                call.say(f"forced (--force): {problem}")
            self._mark_failed(marks(plan)[0], call.say)
            self._serve(plan.to or "", call.say)
        except Exception as error:
            raise failed_as(error, Made(None), call.say) from error
        return Made(None)

    def commit_rollback(self, plan: RollbackPlan, made: Made, call: Call) -> None:
        """Make the release rolled back to current, then mark the one left bad: in this order
        `current` never points at a bad release, whenever the process dies."""
        target = plan.to or ""
        if self.store.release(target, None).status is ReleaseStatus.BAD:
            self.store.set_status(target, ReleaseStatus.COMPLETE)  # it just passed its smoke again
            call.say(f"marked {target} complete again: it passed its smoke")
        self._make_current(target, call.say)
        leaves = marks(plan)[1]
        if leaves:
            self.store.set_status(leaves, ReleaseStatus.BAD)
            call.say(f"marked {leaves} bad")

    def undo_rollback(self, plan: RollbackPlan, made: Made, call: Call) -> Made | None:
        """Back to the release `current` names; the switch recorded by the rollback is over.
        None when no release is current; else Made(None), as in restore()."""
        self._stop_server(call.say)
        if plan.current is None:
            self.server_state.end_switch()
            return None
        self._start(plan.current, call.say)
        return Made(None)

    # --- switches and their repair -------------------------------------------------------

    def _half_switched(self, interrupted: Switch | None) -> str | None:
        """The release an interrupted switch started that never passed its smoke (still
        `building`): the next deploy or rollback marks it failed. Never `current`."""
        if interrupted is None or not self.release_dir(interrupted.target).is_dir():
            return None
        release = self.store.release(interrupted.target, self.current_version())
        building = release.status is ReleaseStatus.BUILDING and not release.current
        return release.version if building else None

    def _untouched(self, say: Say) -> Made | None:
        """Made(None) when a server of ours still serves after a deploy that failed before
        its switch (it stopped nothing), said; None when none serves."""
        state = self.serving()
        if state is None:
            return None
        say(
            f"nothing to put back: the deploy failed before the switch; {state['release']}"
            f" still serves (pid {state['pid']}), untouched"
        )
        return Made(None)

    def _mark_restored(self, version: str, say: Say) -> None:
        """The release a restore took out marked failed; when that cannot be written (a full
        disk), said, and the restore goes on: it stays `building`, never a rollback target."""
        try:
            self.store.set_status(version, ReleaseStatus.FAILED)
        except OSError as error:
            say(f"could not mark {version} failed ({error}); it stays `building`")
            return
        say(f"marked {version} failed")

    def _mark_failed(self, version: str | None, say: Say) -> None:
        if version is None:
            return
        self.store.set_status(version, ReleaseStatus.FAILED)
        say(
            f"marked {version} failed: a switch to it was interrupted before the smoke that"
            " makes it current"
        )

    def _serve(self, version: str, say: Say) -> None:
        """Stop what serves and start `version`: a switch, recorded, unless it is current."""
        switch = self._begin_switch(version, say) if version != self.current_version() else None
        self._stop_server(say)
        self._start(version, say, switch)

    def _begin_switch(self, version: str, say: Say, *, deploy: bool = False) -> Switch:
        switch = self.server_state.begin_switch(version, deploy=deploy)
        say(
            f"recorded in {self._shown(self.state_path)} the switch from"
            f" {switch.source or 'nothing'} to {version}"
        )
        return switch

    def _make_current(self, version: str, say: Say) -> None:
        """Point `current` at what now serves; the switch to it is over."""
        self.store.point_current(version)
        self.server_state.end_switch()
        say(f"{version} is current")

    def _start(self, version: str, say: Say, switch: Switch | None = None) -> None:
        self.store.ensure_shared(version)
        state = self.server_state.start(version, switch)
        log = self._shown(self.server_state.log(version))
        say(f"started {version}: pid {state['pid']}, `{state['command']}`, log {log}")

    def _stop_server(self, say: Say) -> None:
        state = self.server_state.stop()
        if state is None:
            say("stopped nothing: no server running")
            return
        say(f"stopped the server of {state['release']} (pid {state['pid']})")

    # --- inv stop ----------------------------------------------------------------------

    def stop_servers(self, call: Call) -> list[Stopped]:
        """Stop every server of this environment, even with a damaged state.json (`stop_all`
        finds them), then make state.json say that none runs; audited. `current` stays: the
        next deploy, or `inv rollback --to <current>`, serves again."""
        stopped = self.server_state.stop_all()
        for each in stopped:
            call.say(each.describe())
        if not stopped:
            call.say("nothing was running")
        call.say(self.server_state.forget_server())
        audit.append(
            self.audit_path,
            "stop",
            environment=self.env.name,
            stopped=[each.to_json() for each in stopped],
        )
        current = self.current_version()
        if current is not None:
            call.say(
                f"current still names {current}: `inv deploy.{self.env.name}`, or"
                f" `inv rollback --env {self.env.name} --to {current}`, serves again"
            )
        return stopped

    # --- pruning -------------------------------------------------------------------------

    def _prune(self, call: Call) -> None:
        """Remove the releases beyond the newest `keep_releases` complete ones, but current,
        the rollback target, the newest folder, and a `bad` one among the newest
        `keep_releases` (so that one marked bad by mistake can still be marked complete)."""
        releases = self.releases(call)
        keep = self.options.keep_releases
        complete = [r.version for r in releases if r.status is ReleaseStatus.COMPLETE]
        recent_bad = [r.version for r in releases[-keep:] if r.status is ReleaseStatus.BAD]
        protected = {
            *complete[-keep:],
            *recent_bad,
            self.current_version(),
            self.plan_rollback(None, call).to,
            releases[-1].version if releases else None,  # the newest keeps the numbering going
            *self._running(),
        }
        removed = [r.version for r in releases if r.version not in protected]
        for version in removed:
            self.store.remove(version)
            self.server_state.remove_log(version)
        if not removed:
            call.say(f"pruned nothing: {len(releases)} releases, all kept")
            return
        call.say(f"pruned {', '.join(removed)}")
        audit.append(self.audit_path, "prune", environment=self.env.name, removed=removed)

    def _running(self) -> set[str]:
        """The releases whose servers run (never pruned): what serves."""
        state = self.serving()
        return {state["release"]} if state else set()

    def _shown(self, path: Path) -> str:
        return shown(path, self.config.root)


def failed_as(error: Exception, made: Made, say: Say, *, note: str = "") -> TargetFailed:
    """`error` as the TargetFailed that carries `made`, ending the step as `error` would have:
    its message (and `note`: what still serves) and exit code, or for an unexpected error its
    traceback said first (a full disk is expected: one line)."""
    tail = f"; {note}" if note else ""
    if isinstance(error, TargetFailed):
        return error
    if not isinstance(error, ShipyardError):
        if not (isinstance(error, OSError) and error.errno in _NO_ROOM):
            say(traceback.format_exc().rstrip())
        return TargetFailed(f"{type(error).__name__}: {error}{tail}", made)
    return TargetFailed(error.message + tail, made, like=error)  # a bad artifact stays exit 2


def _quiet(_: str) -> None:
    pass


# The local target's keys and their checks; `kind.LOCAL` makes the mode the environment
# asks for, this one only direct mode (a LocalTarget made without options checks them here).
DIRECT = TargetKind(
    options={
        "port": integer(1, 65535),
        "keep_releases": integer(1),
        "shared": paths_check(reserved=(RELEASE_FILE, FILE_LIST)),
        "proxy": one_of(("auto", "caddy", "direct")),
        "caddy": text("a Caddy binary (a path, or a name on PATH)"),
        "warm_previous": boolean,
    },
    make=lambda config, environment, options: LocalTarget(
        config, environment, LocalOptions(**options)
    ),
    required={"start": "the command that starts the server"},
)
