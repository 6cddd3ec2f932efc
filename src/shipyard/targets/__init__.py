"""Deploy targets: one `Target` protocol, one module per target, a plain registry dict.

Adding a target is one new module, which declares its `TargetKind` (the keys it adds to an
environment, checked with the config's checkers, and how to make one), and one entry in
`TARGETS`; nothing else, the config included, names a target.
"""

from __future__ import annotations

from shipyard.config import Config, Environment
from shipyard.config.loading import error_line
from shipyard.config.where import Invalid, Where, did_you_mean, quote
from shipyard.errors import ConfigError
from shipyard.targets.base import (
    Call,
    DeployPlan,
    Made,
    Observer,
    Release,
    ReleaseStatus,
    RollbackPlan,
    Say,
    Status,
    Target,
    TargetFailed,
    state_dir,
)
from shipyard.targets.fly import FLY
from shipyard.targets.kinds import TargetKind
from shipyard.targets.local import LOCAL

__all__ = [
    "TARGETS",
    "Call",
    "DeployPlan",
    "Made",
    "Observer",
    "Release",
    "ReleaseStatus",
    "RollbackPlan",
    "Say",
    "Status",
    "Target",
    "TargetFailed",
    "TargetKind",
    "check",
    "create",
    "kind_of",
    "state_dir",
]

TARGETS: dict[str, TargetKind] = {
    "local": LOCAL,
    "fly": FLY,
}


def kind_of(config: Config, environment: Environment) -> TargetKind:
    """The registry entry of the environment's target; an unknown one is a config error."""
    kind = TARGETS.get(environment.target)
    if kind is None:
        where = environment.places.get("target") or environment.place or Where("", 1)
        problem = f"unknown target {quote(environment.target)}"
        invalid = Invalid(where, f"{problem} ({did_you_mean(environment.target, list(TARGETS))})")
        raise ConfigError(error_line(config.path, invalid))
    return kind


def check(config: Config) -> None:
    """Every environment's target exists and its options hold (ConfigError otherwise)."""
    for environment in config.environments.values():
        kind_of(config, environment).checked_options(config, environment)


def create(config: Config, environment: Environment) -> Target:
    """The environment's target, after its options are checked and its preflight has passed
    (a bad option is exit 2, as is a missing tool or token)."""
    kind = kind_of(config, environment)
    target = kind.make(config, environment, kind.checked_options(config, environment))
    target.preflight()
    return target
