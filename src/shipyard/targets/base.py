"""What every deploy target speaks: the `Target` protocol and the data its plans are made of."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from shipyard.config import Config, Environment
from shipyard.errors import ShipyardError, StepFailed
from shipyard.smoke import SmokeCheck

Say = Callable[[str], None]
# (what, attempt, outcome, exit code) of a call a target makes and may retry: for the heartbeat.
# outcome is "start" before the attempt, then "ok", "timeout", "rate-limited" (429),
# "transient" (5xx and the like) or "failed".
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
    problems: tuple[str, ...] = field(default=())  # what the checks found
    forced: bool = False  # `--force`: carried out despite its problems (audited with the plan)

    @property
    def possible(self) -> bool:
        return self.to is not None and (self.forced or not self.problems)

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
            *(["forced: --force goes past the problems above"] if self.forced else []),
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
    writes: tuple[str, ...] = ()  # files written into a release since it was made, named
    proxy: str | None = None  # the local target's proxy (proxy mode): pid, port, upstream
    servers: tuple[str, ...] = ()  # proxy mode: each release's server, and its part

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _silent(_: str) -> None:
    pass


@dataclass(frozen=True)
class Call:
    """What a target call needs from its caller, passed in (a target keeps no caller state):
    where it says what it does, when it must stop, and who watches each attempt of a call it
    retries (None: retries are reported on stderr)."""

    say: Say = _silent
    stop: threading.Event = field(default_factory=threading.Event)  # never set by default
    observe: Observer | None = None

    def unstoppable(self) -> Call:
        """The same call that no stop ends: a restore runs to its end, after ^C too."""
        return replace(self, stop=threading.Event())


@dataclass(frozen=True)
class Made:
    """What a deploy, rollback or restore made, as the target lists it afterwards; handed back
    to the calls that follow it (health, commit, restore)."""

    release: str | None = None  # the release it made; None when it made none (or unknown)
    known: bool = True  # False: the target could not be read afterwards to tell
    image: str | None = None  # the image the release runs, for targets that deploy images


class TargetFailed(StepFailed):
    """A deploy, rollback or restore that failed; `made` is what it made all the same. `like`:
    the error it stands for, whose exit code and outcome it keeps (a hostile artifact is 2)."""

    def __init__(self, message: str, made: Made, *, like: ShipyardError | None = None) -> None:
        super().__init__(message)
        self.made = made
        if like is not None:
            self.exit_code, self.outcome = like.exit_code, like.outcome


class Target(Protocol):
    """What a deploy target does. Plans are data; the calls that change something return what
    they made, and that value is handed to the calls that follow. No attribute is set by a
    caller. The call order:

        create (runs preflight) → preflight_deploy → plan_deploy → deploy → health
            → [the caller's HTTP smoke] → commit
          failing after deploy:  restore(plan, made)  (with call.unstoppable())
            A deploy that fails before its switch (before it stopped or changed anything that
            serves) raises TargetFailed with Made(None) and removes what it half made; then
            restore(plan, Made(None)) leaves whatever still serves untouched and returns
            Made(None) ("nothing to put back"), starting `plan.previous` only when nothing
            serves. A restore never does more harm than doing nothing.
        plan_rollback → rollback → health → [smoke] → commit_rollback
          failing after rollback: undo_rollback(plan, made)  (with call.unstoppable())

    `releases`, `status`, `smoke_check` and `alive` only read, and may be called any time.
    """

    name: str

    def preflight(self) -> None: ...  # raises PreflightError naming what is missing
    def preflight_deploy(self) -> None: ...  # what only a deploy needs (a free port)
    def plan_deploy(self, artifact: str | None, call: Call) -> DeployPlan: ...
    def deploy(self, plan: DeployPlan, call: Call) -> Made: ...  # raises TargetFailed
    def health(self, made: Made, call: Call) -> None: ...  # the target's own verdict
    def alive(self) -> bool: ...  # False once the smoke cannot pass any more (server gone)
    def smoke_check(self) -> SmokeCheck: ...
    def commit(self, plan: DeployPlan, made: Made, call: Call) -> None: ...
    def restore(self, plan: DeployPlan, made: Made, call: Call) -> Made | None: ...  # None: nothing
    def releases(self, call: Call) -> list[Release]: ...
    def plan_rollback(self, to: str | None, call: Call) -> RollbackPlan: ...
    def rollback(self, plan: RollbackPlan, call: Call) -> Made: ...  # raises TargetFailed
    def commit_rollback(self, plan: RollbackPlan, made: Made, call: Call) -> None: ...
    def undo_rollback(self, plan: RollbackPlan, made: Made, call: Call) -> Made | None: ...
    def status(self, call: Call) -> Status: ...
