"""A kind of deploy target as the registry knows it: the keys it adds to an environment,
checked with the config's own checkers (the same `file:line: key: problem` errors), and how
to make one from the checked values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipyard.config import ENVIRONMENT_FIELDS, Config, Environment
from shipyard.config.checks import Check, Invalid, Where, require
from shipyard.config.loading import error_line
from shipyard.config.where import did_you_mean, quote
from shipyard.errors import ConfigError
from shipyard.targets.base import Target


@dataclass(frozen=True)
class TargetKind:
    options: Mapping[str, Check[Any]]  # the keys this target adds, and their checks
    make: Callable[[Config, Environment, Mapping[str, Any]], Target]  # from checked options
    required: Mapping[str, str] = field(
        default_factory=dict
    )  # keys it needs (its own or shared), why

    def checked_options(self, config: Config, environment: Environment) -> dict[str, Any]:
        """The environment's target options, checked; a problem is one ConfigError line."""
        try:
            return self._check(environment)
        except Invalid as invalid:
            raise ConfigError(error_line(config.path, invalid)) from None

    def _check(self, environment: Environment) -> dict[str, Any]:
        known = [*ENVIRONMENT_FIELDS, *self.options]
        checked: dict[str, Any] = {}
        for key, value in environment.options.items():
            # an Environment made in code (a test) has no places: name the key all the same
            where = environment.places.get(key) or Where(
                f"environments.{environment.name}.{key}", 0
            )
            check = self.options.get(key)
            if check is None:
                where.fail(
                    f"unknown key for target {quote(environment.target)}"
                    f" ({did_you_mean(key, known)})"
                )
            checked[key] = check(value, where)
        present = {**checked, **{k: v for k, v in _shared(environment).items() if v is not None}}
        if environment.place is not None:
            for key, why in self.required.items():
                require(
                    present, environment.place, key, f"target '{environment.target}' needs {why}"
                )
        return checked


def _shared(environment: Environment) -> dict[str, Any]:
    return {key: getattr(environment, key, None) for key in ENVIRONMENT_FIELDS}
