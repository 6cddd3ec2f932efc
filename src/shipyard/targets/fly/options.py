"""The keys the Fly target adds to an environment, and how each is checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shipyard.config.checks import Check, boolean, duration, one_of, text

FLY_STRATEGIES = ("rolling", "immediate", "canary", "bluegreen")  # flyctl deploy --strategy


@dataclass(frozen=True)
class FlyOptions:
    """The keys the Fly target adds to an environment."""

    app: str  # the Fly app
    fly_config: str | None = None  # its fly.toml (default: fly.toml beside shipyard.yaml)
    strategy: str = "rolling"  # canary | rolling | immediate | bluegreen
    wait_timeout: float = 300.0  # --wait-timeout of every flyctl deploy
    read_timeout: float = 30.0  # one read-only flyctl call (releases, status...) at most
    health_timeout: float | None = None  # health polling after a deploy (None: from fly.toml)
    flyctl: str | None = None  # path of the flyctl binary (default: flyctl or fly on PATH)
    rollback_release_command: bool = False  # run [deploy] release_command on rollbacks


CHECKS: Mapping[str, Check[Any]] = {
    "app": text("a Fly app name"),
    "fly_config": text("a path to a fly.toml"),
    "strategy": one_of(FLY_STRATEGIES),
    "wait_timeout": duration,
    "read_timeout": duration,
    "health_timeout": duration,
    "flyctl": text("a path to the flyctl binary"),
    "rollback_release_command": boolean,
}
REQUIRED = {"app": "the Fly app name"}
