"""invoke tasks: a few lines each over `shipyard.commands`.

Use from a project's `tasks.py`:

    from shipyard.tasks import namespace
    ns = namespace()
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Collection, Context, Exit, task

from shipyard import commands
from shipyard.config import DEFAULT_AGENT, Config, load
from shipyard.errors import ShipyardError

CONFIG_HELP = "shipyard.yaml to use (default: $SHIPYARD_CONFIG, or found upwards from here)"


def _exits(body: Callable[..., int]) -> Callable[..., None]:
    """A command's exit code, or a ShipyardError, as invoke's `Exit`: one line, no traceback."""

    @functools.wraps(body)
    def wrapper(c: Context, *args: Any, **kwargs: Any) -> None:
        try:
            code = body(c, *args, **kwargs)
        except ShipyardError as error:
            raise Exit(error.message, int(error.exit_code)) from None
        if code:
            raise Exit(code=code)

    return wrapper


@task(
    help={
        "config": CONFIG_HELP,
        "jobs": "parallel steps: a number or 'auto' (CPUs)",
        "fail-fast": "start no further gate after the first failure",
    }
)
@_exits
def gates(c: Context, config: str = "", jobs: str = "auto", fail_fast: bool = False) -> int:
    """Run all gates in parallel and report every failure."""
    return commands.gates(load(config or None), jobs=jobs, fail_fast=fail_fast)


@task(positional=["name"], help={"name": "a step from shipyard.yaml", "config": CONFIG_HELP})
@_exits
def step(c: Context, name: str, config: str = "") -> int:
    """Run one configured step, with heartbeat and evidence."""
    return commands.step(load(config or None), name)


@task(help={"config": CONFIG_HELP})
@_exits
def build(c: Context, config: str = "") -> int:
    """Build the release artifact (the `build` step)."""
    return commands.build(load(config or None))


@task(
    help={
        "config": CONFIG_HELP,
        "baseline": "allowlist file (default .secrets.baseline)",
        "write-baseline": "accept every current finding into the baseline",
    }
)
@_exits
def scan(c: Context, config: str = "", baseline: str = "", write_baseline: bool = False) -> int:
    """Secret-scan the git-tracked files; SARIF into the evidence."""
    found = commands.optional_config(config or None)
    root, agent = _root_and_agent(found)
    return commands.scan(root, agent, baseline=baseline, write_baseline=write_baseline)


@task(positional=["agent"], help={"agent": "evidence folder name, e.g. devops"})
@_exits
def heartbeat(c: Context, agent: str) -> int:
    """Run `-- CMD...` in the heartbeat, keeping its exit code."""
    return commands.heartbeat(agent, shlex.split(c.remainder))


@task(help={"date": "UTC day as YYYY-MM-DD (default today)", "config": CONFIG_HELP})
@_exits
def verify(c: Context, date: str = "", config: str = "") -> int:
    """Re-hash a day's evidence; name every file that differs."""
    found = commands.optional_config(config or None)
    root, agent = _root_and_agent(found)
    return commands.verify_evidence(root, agent, date)


def _root_and_agent(config: Config | None) -> tuple[Path, str]:
    return (config.root, config.agent) if config else (Path.cwd(), DEFAULT_AGENT)


def namespace() -> Collection:
    """The task collection: the same for `inv` (via tasks.py) and the `shipyard` script."""
    return Collection(gates, step, build, scan, heartbeat, Collection("evidence", verify))
