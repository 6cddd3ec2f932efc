"""What every deploy target speaks: the `Target` protocol and the data its plans are made of."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from shipyard.config import Config, Environment
from shipyard.smoke import SmokeCheck

Say = Callable[[str], None]
# (what, attempt, outcome, exit code) of a call a target makes and may retry: for the heartbeat.
# outcome is "start" before the attempt, then "ok", "transient" or "failed".
Observer = Callable[[str, int, str, "int | None"], None]


STATE_DIR = ".shipyard"


def state_dir(config: Config, environment: Environment) -> Path:
    """`.shipyard/<env>/` beside shipyard.yaml: the environment's lock and audit log (and, for
    the local target, its releases and server)."""
    return config.root / STATE_DIR / environment.name


class ReleaseStatus(str, Enum):
    BUILDING = "building"
    COMPLETE = "complete"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped part way (flyctl on SIGINT/SIGTERM)
    BAD = "bad"


@dataclass(frozen=True)
class Release:
    version: str  # "v3"
    status: ReleaseStatus
    created_at: str | None = None
    git_sha: str | None = None
    artifact_sha256: str | None = None
    user: str | None = None
    current: bool = False
    image: str | None = None  # a container image reference, for targets that deploy images

    @property
    def number(self) -> int:
        return int(self.version.lstrip("v"))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}


@dataclass(frozen=True)
class DeployPlan:
    environment: str
    target: str
    release: str  # the version this deploy expects to create
    previous: str | None  # the current release before it
    artifact: str | None = None
    artifact_sha256: str | None = None
    actions: tuple[str, ...] = ()
    git_sha: str | None = None  # the commit the artifact was built from
    dirty: bool = False  # built from uncommitted changes (deployed with --allow-dirty)
    diff_sha256: str | None = None  # sha256 of `git diff HEAD --binary`, when dirty


@dataclass(frozen=True)
class RollbackPlan:
    environment: str
    target: str
    current: str | None  # the release rolled back from
    to: str | None  # the release rolled back to; None when there is none
    reason: str  # why that one, or why none
    actions: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()  # the read-only checks made, with their results
    problems: tuple[str, ...] = field(default=())

    @property
    def possible(self) -> bool:
        return self.to is not None and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "possible": self.possible}

    def lines(self) -> list[str]:
        moves = f"{self.current or 'nothing'} -> {self.to or 'nothing'}"
        head = f"rollback {self.environment} ({self.target}): {moves}"
        return [
            head,
            f"why: {self.reason}",
            *(f"check: {check}" for check in self.checks),
            *(f"problem: {problem}" for problem in self.problems),
            *(f"{number}. {action}" for number, action in enumerate(self.actions, 1)),
        ]


@dataclass(frozen=True)
class Status:
    environment: str
    target: str
    current: str | None
    serving: str | None = None
    pid: int | None = None
    url: str | None = None
    uptime: float | None = None
    healthy: bool | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Target(Protocol):
    """What a deploy target does. Plans are data; only the other methods change anything."""

    name: str
    observe: Observer | None  # set by the caller to see every attempt of a retried call
    stop: threading.Event | None  # set by the caller: long calls end when it is set
    created: str | None  # after deploy(), even a failed one: the release it made, or None

    def preflight(self) -> None: ...  # raises PreflightError naming what is missing
    def preflight_deploy(self) -> None: ...  # what only a deploy needs (a free port)
    def plan_deploy(self, artifact: str | None) -> DeployPlan: ...
    def deploy(self, plan: DeployPlan, say: Say) -> None: ...  # serve a new release
    def health(self, say: Say) -> None: ...  # the target's own verdict, before the HTTP smoke
    def alive(self) -> bool: ...  # False once the smoke cannot pass any more (server gone)
    def smoke_check(self) -> SmokeCheck: ...
    def commit(self, plan: DeployPlan, say: Say) -> None: ...
    def restore(self, plan: DeployPlan, say: Say) -> bool: ...
    def releases(self) -> list[Release]: ...
    def plan_rollback(self, to: str | None = None) -> RollbackPlan: ...
    def rollback(self, plan: RollbackPlan, say: Say) -> None: ...
    def commit_rollback(self, plan: RollbackPlan, say: Say) -> None: ...
    def undo_rollback(self, plan: RollbackPlan, say: Say) -> bool: ...
    def status(self) -> Status: ...
