"""Fly.io through flyctl: deploy, a health verdict from Fly's own state, releases, rollback.

flyctl has no rollback command: a rollback is `flyctl deploy --image <ImageRef>` of an earlier
release, which creates a new release (release numbers never go back), as Fly's own rollback
guide does. flyctl's commands, JSON and exit codes are those of https://fly.io/docs/flyctl/
(tests/fakes/flyctl follows them). The token reaches flyctl only through its environment.

`client` speaks to flyctl (reads retried, a deploy bounded by its deadline); `options` are
the keys the target adds to an environment; `state` reads Fly's releases and machines from
flyctl's JSON; `health` polls the machines and their checks to a verdict; `target` is the Fly
policy (`FlyTarget`, and `FLY`, how the registry makes one).
"""

from __future__ import annotations

from shipyard.targets.fly.client import Flyctl, FlyResult
from shipyard.targets.fly.options import FLY_STRATEGIES, FlyOptions
from shipyard.targets.fly.target import FLY, FlyTarget

__all__ = ["FLY", "FLY_STRATEGIES", "FlyOptions", "FlyResult", "FlyTarget", "Flyctl"]
