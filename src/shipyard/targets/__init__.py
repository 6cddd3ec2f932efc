"""Deploy targets: one `Target` protocol, one module per target, a plain registry dict.

Adding a target is one new module and one entry in `TARGETS`.
"""

from __future__ import annotations

from collections.abc import Callable

from shipyard.config import Config, Environment
from shipyard.errors import UsageError
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
from shipyard.targets.fly import FlyTarget
from shipyard.targets.local import LocalTarget

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
    "create",
    "state_dir",
]

TARGETS: dict[str, Callable[[Config, Environment], Target]] = {
    "local": LocalTarget,
    "fly": FlyTarget,
}


def create(config: Config, environment: Environment) -> Target:
    """The environment's target, after its preflight (a missing tool or token is exit 2 here)."""
    factory = TARGETS.get(environment.target)
    if factory is None:
        raise UsageError(
            f"environments.{environment.name}.target: '{environment.target}' is not available"
            f" in this version (available: {', '.join(TARGETS)})"
        )
    target = factory(config, environment)
    target.preflight()
    return target
