"""What a loaded `shipyard.yaml` is: frozen, typed objects, the contract the rest of the package
codes against, and their defaults."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.config.where import Where
from shipyard.errors import UsageError

DEFAULT_AGENT = "devops"
DEFAULT_HEARTBEAT_INTERVAL = 15.0
DEFAULT_KILL_GRACE = 3.0
DEFAULT_MAX_UNPACKED_MIB = 2048
DEFAULT_MAX_ARCHIVE_MEMBERS = 100_000
# What changes need a committed heartbeat log (shipyard.proof): globs from the repository's top.
DEFAULT_PROOF_PATHS = (".github/workflows/**", "deploy/**", "scripts/ci/**", "shipyard.yaml")


@dataclass(frozen=True)
class Step:
    name: str
    run: str
    timeout: float | None = None  # seconds; None = no limit
    retries: int = 0  # extra attempts after a failure (tenacity); 0 = run once
    grace: float = DEFAULT_KILL_GRACE  # seconds between SIGTERM and SIGKILL of the group
    artifact: str | None = None  # glob (relative to root) of what the step builds
    cwd: str | None = None  # relative to Config.root
    env: Mapping[str, str] = field(default_factory=dict)
    # runners a CI matrix splits the step across (SHIPYARD_SHARD of SHIPYARD_SHARDS each)
    shards: int = 1


@dataclass(frozen=True)
class Smoke:
    path: str = "/"
    url: str | None = None
    expect_status: int = 200
    timeout: float = 30.0
    contains: str | None = None


@dataclass(frozen=True)
class Environment:
    """The keys every target shares, checked here; the target's own keys (`options`) are
    checked by the target's module (shipyard.targets), with `places` saying where each is."""

    name: str
    target: str  # a key of the target registry, shipyard.targets.TARGETS
    start: str | None = None  # the server command: the artifact smoke runs it on any target
    env: Mapping[str, str] = field(default_factory=dict)
    # the deployer's variables its server also gets (beyond server.BASE_VARIABLES), when set
    pass_env: tuple[str, ...] = ()
    smoke: Smoke = field(default_factory=Smoke)
    # what a deploy may unpack from one artifact: the files' total size, and how many members
    max_unpacked_mib: int = DEFAULT_MAX_UNPACKED_MIB
    max_archive_members: int = DEFAULT_MAX_ARCHIVE_MEMBERS
    options: Mapping[str, Any] = field(default_factory=dict)  # as written, in file order
    places: Mapping[str, Where] = field(default_factory=dict, compare=False, repr=False)
    place: Where | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Proof:
    """`proof:`: the changes that `proof.check` asks a committed heartbeat log for."""

    paths: tuple[str, ...] = DEFAULT_PROOF_PATHS  # globs, matched from the repository's top


@dataclass(frozen=True)
class Hooks:
    """`hooks:`: what the git hooks `shipyard hooks install` writes run."""

    pre_push: tuple[str, ...] | None = None  # step names; None: the gates


@dataclass(frozen=True)
class Config:
    path: Path  # absolute path of the file
    root: Path  # the file's directory: steps run here, evidence is written here
    version: int = 1
    agent: str = DEFAULT_AGENT
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    secrets: tuple[str, ...] = ()
    steps: Mapping[str, Step] = field(default_factory=dict)  # in file order
    gates: tuple[str, ...] = ()
    environments: Mapping[str, Environment] = field(default_factory=dict)
    proof: Proof = field(default_factory=Proof)
    hooks: Hooks = field(default_factory=Hooks)

    @property
    def pre_push_steps(self) -> tuple[str, ...]:
        """The steps the pre-push hook runs: `hooks.pre_push`, else the gates."""
        return self.gates if self.hooks.pre_push is None else self.hooks.pre_push

    def env_mappings(self) -> tuple[Mapping[str, str], ...]:
        """Every `env:` of the file, each step's and each environment's: their secret-named
        values are masked like the process environment's (see Redactor.from_environ)."""
        steps = (step.env for step in self.steps.values())
        return (*steps, *(environment.env for environment in self.environments.values()))

    def environment(self, name: str = "") -> Environment:
        """The named environment (`--env`); without a name, `staging` or the only one there is."""
        if name:
            if name not in self.environments:
                known = ", ".join(self.environments) or "none configured"
                raise UsageError(f"--env {name}: no such environment in {self.path.name} ({known})")
            return self.environments[name]
        if "staging" in self.environments:
            return self.environments["staging"]
        if len(self.environments) == 1:
            return next(iter(self.environments.values()))
        configured = ", ".join(self.environments) or "none"
        raise UsageError(f"which environment? pass --env (configured: {configured})")


def log_name(step_name: str) -> str:
    """The file name (without `.log`) that holds a step's output: each run of characters
    outside `A-Za-z0-9._-` made one `_`, none at either end (`Rollback (dry-run)` ->
    `Rollback_dry-run`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", step_name).strip("_") or "step"
