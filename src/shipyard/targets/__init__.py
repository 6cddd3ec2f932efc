"""Deploy targets: one `Target` protocol, one module per target, a plain registry dict.

Adding a target is one new module and one entry in `TARGETS`.
"""

from __future__ import annotations

from collections.abc import Callable

from shipyard.config import Config, Environment
from shipyard.errors import UsageError
from shipyard.targets.base import (
    DeployPlan,
    Release,
    ReleaseStatus,
    RollbackPlan,
    Say,
    Status,
    Target,
)
from shipyard.targets.local import LocalTarget

__all__ = [
    "TARGETS",
    "DeployPlan",
    "Release",
    "ReleaseStatus",
    "RollbackPlan",
    "Say",
    "Status",
    "Target",
    "create",
]

TARGETS: dict[str, Callable[[Config, Environment], Target]] = {
    "local": LocalTarget,
}


def create(config: Config, environment: Environment) -> Target:
    factory = TARGETS.get(environment.target)
    if factory is None:
        raise UsageError(
            f"environments.{environment.name}.target: '{environment.target}' is not available"
            f" in this version (available: {', '.join(TARGETS)})"
        )
    return factory(config, environment)
