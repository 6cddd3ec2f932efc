"""Load and validate `shipyard.yaml` into frozen, typed objects.

The model below is the contract the rest of the package codes against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_FILENAME = "shipyard.yaml"
DEFAULT_AGENT = "devops"
DEFAULT_HEARTBEAT_INTERVAL = 15.0
DEFAULT_KILL_GRACE = 3.0


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


@dataclass(frozen=True)
class Smoke:
    path: str = "/"
    url: str | None = None
    expect_status: int = 200
    timeout: float = 30.0
    contains: str | None = None


@dataclass(frozen=True)
class Environment:
    name: str
    target: str  # a key of the target registry: "local" or "fly"
    start: str | None = None
    port: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    smoke: Smoke = field(default_factory=Smoke)
    keep_releases: int = 5
    app: str | None = None
    fly_config: str | None = None


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
