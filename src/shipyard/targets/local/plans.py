"""The local target's plans: the release a rollback goes back to, what a deploy or rollback
will mark, and its actions, one line each, in the order `target` carries them out (each
answered by a line the run says).

A deploy or rollback after an interrupted switch first marks the release it half-switched to
`failed`; a rollback that takes a release out of service marks it `bad`, after `current` has
moved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shipyard.smoke import SmokeCheck
from shipyard.targets.base import DeployPlan, Release, ReleaseStatus, RollbackPlan
from shipyard.targets.choice import Choice, RollbackRules, choose_rollback
from shipyard.targets.local.serving import STOP_GRACE, ServerState, Switch
from shipyard.targets.local.store import shown


@dataclass(frozen=True)
class LocalDeployPlan(DeployPlan):
    mark_failed: str | None = None  # the release an interrupted switch left half-switched


@dataclass(frozen=True)
class LocalRollbackPlan(RollbackPlan):
    mark_failed: str | None = None  # the release an interrupted switch left half-switched
    mark_bad: str | None = None  # the release this rollback takes out of service
    revive: str | None = None  # the `bad` release rolled back to: complete again once smoked


def rollback_choice(
    releases: list[Release],
    current: str | None,
    running: str | None,
    interrupted: Switch | None,
    to: str | None,
) -> Choice:
    """The release to roll back to and why: after an interrupted switch (and unless `--to`
    names one), the current one when it is complete; else the shared choice."""
    now = next((r for r in releases if r.version == current), None)
    if to is None and interrupted is not None and now and now.status is ReleaseStatus.COMPLETE:
        return Choice(
            now,
            f"{interrupted.describe()} was interrupted ({_serves(running)}): back to {current},"
            " the current release, which is not marked bad",
        )
    return choose_rollback(releases, current, to, rollback_rules(current, running))


def rollback_rules(current: str | None, running: str | None) -> RollbackRules:
    """The local judges: `--to` the release that is current and serves changes nothing; `--to`
    the current one when it does not serve starts it again, and says so."""

    def in_place(release: Release) -> str | None:
        if release.version == current == running:
            return "that is the release already serving (and current)"
        return None

    def note(release: Release) -> str | None:
        if release.version == current:
            return f"{release.version} is current, but {_serves(running)}"
        return None

    return RollbackRules(in_place=in_place, note=note)


def _serves(running: str | None) -> str:
    return f"{running} serves" if running else "nothing serves"


def marks(plan: DeployPlan | RollbackPlan) -> tuple[str | None, str | None]:
    """(to mark failed, to mark bad) as this target planned; a plan made elsewhere repairs
    nothing and marks the release it rolls back from bad, as rollbacks always did."""
    if isinstance(plan, LocalRollbackPlan):
        return plan.mark_failed, plan.mark_bad
    if isinstance(plan, LocalDeployPlan):
        return plan.mark_failed, None
    if isinstance(plan, RollbackPlan) and plan.current != plan.to:
        return None, plan.current
    return None, None


@dataclass(frozen=True)
class PlanActions:
    """The action lines of an environment's plans."""

    root: Path  # the project's root: paths are shown relative to it
    server: ServerState  # what serves, the command that starts a release, its port
    smoke: SmokeCheck
    keep_releases: int

    def for_deploy(self, plan: LocalDeployPlan, interrupted: Switch | None) -> tuple[str, ...]:
        version, folder = plan.release, self._folder(plan.release)
        return (
            *repair(plan.mark_failed, interrupted),
            f"unpack {plan.artifact} into {folder}{self._linking()}",
            self._record(plan.previous, version),
            self._stop(),
            f"start `{self.server.command(version)}` in {folder} on port {self.server.port}",
            f"smoke {self.smoke.url} (expect {self.smoke.expect_status})",
            f"mark {version} complete",
            self._point(version),
            self._prune(),
        )

    def for_rollback(
        self, plan: LocalRollbackPlan, chosen: Release, interrupted: Switch | None
    ) -> tuple[str, ...]:
        to, folder = chosen.version, self._folder(chosen.version)
        revive = chosen.status is ReleaseStatus.BAD
        return (
            *repair(plan.mark_failed, interrupted),
            *((self._record(plan.current, to),) if to != plan.current else ()),
            self._stop(),
            f"start `{self.server.command(to)}` in {folder} on port {self.server.port}",
            f"smoke {self.smoke.url} (expect {self.smoke.expect_status},"
            f" up to {self.smoke.timeout:g}s)",
            *((f"mark {to} complete again: it passed its smoke",) if revive else ()),
            self._point(to),
            *((f"mark {plan.mark_bad} bad, so later rollbacks skip it",) if plan.mark_bad else ()),
        )

    def _prune(self) -> str:
        return (
            f"prune to the newest {self.keep_releases} complete releases (and current,"
            f" the rollback target, the newest folder, bad ones among the newest"
            f" {self.keep_releases})"
        )

    def _linking(self) -> str:
        """What the unpack action adds: the shared paths linked into the release, if any."""
        store = self.server.store
        if not store.shared_paths:
            return ""
        shared = shown(store.shared_dir, self.root)
        return f", and link its shared paths {', '.join(store.shared_paths)} to {shared}/"

    def _folder(self, version: str) -> str:
        return shown(self.server.store.release_dir(version), self.root)

    def _record(self, source: str | None, version: str) -> str:
        state = shown(self.server.state_path, self.root)
        return f"record in {state} the switch from {source or 'nothing'} to {version}"

    def _stop(self) -> str:
        state = self.server.serving()
        running = f"of {state['release']} (pid {state['pid']})" if state else "(none running)"
        return f"stop the server {running}: SIGTERM to its group, up to {STOP_GRACE:g}s, SIGKILL"

    def _point(self, version: str) -> str:
        current = shown(self.server.store.current_link, self.root)
        return f"point {current} at releases/{version} (atomic rename)"


def repair(half: str | None, interrupted: Switch | None) -> tuple[str, ...]:
    if half is None or interrupted is None:
        return ()
    return (f"mark {half} failed: {interrupted.describe()} was interrupted before its smoke",)
