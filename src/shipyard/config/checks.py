"""Checks: each turns a raw value from the file into a typed one, or fails at its `Where`.

A `Check[T]` is called as `check(value, where)` and returns a `T`. Single values: `text`,
`matching`, `starting_with`, `integer`, `one_of`, `duration`, `boolean`, `relative_dir`,
`relative_glob`, `relative_path`, `env_var_name`, `env`. Sections: `fields` checks each key
of a mapping by its entry in a schema (a mapping of key to check) and `require` insists on a
key; `mapping`, `entries` and `unique_items` serve sections keyed by names or listed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any, TypeAlias, TypeVar

from shipyard.config.document import LineList, LineMapping
from shipyard.config.where import Invalid, Where, did_you_mean, quote

__all__ = [
    "DURATION_EXAMPLES",
    "MAX_DURATION_SECONDS",
    "Check",
    "Invalid",
    "Where",
    "boolean",
    "duration",
    "entries",
    "env",
    "env_var_name",
    "fields",
    "integer",
    "mapping",
    "matching",
    "one_of",
    "parse_duration",
    "path_glob",
    "relative_dir",
    "relative_glob",
    "relative_path",
    "require",
    "starting_with",
    "text",
    "unique_items",
]

T = TypeVar("T")
Check: TypeAlias = Callable[[object, Where], T]

DURATION_EXAMPLES = "a duration like 30s, 500ms, 5m or 1h"
# A day bounds every wait (a step's timeout, the heartbeat, a smoke check, --lock-wait), far
# below what a thread can wait for (threading.TIMEOUT_MAX; beyond it, OverflowError).
MAX_DURATION_SECONDS = 24 * 3600.0
_DURATION = re.compile(r"(-?[0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")  # ASCII digits: not `٣s`
_SECONDS_PER_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_VAR_WHAT = "an environment variable name (letters, digits and '_', not starting with a digit)"


def parse_duration(text: str) -> float:
    """Seconds in `500ms`, `30s`, `1.5m` or `1h`; ValueError unless it is a duration greater
    than zero and at most a day (`MAX_DURATION_SECONDS`)."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"expected {DURATION_EXAMPLES}, got {quote(text)}")
    seconds = float(match[1]) * _SECONDS_PER_UNIT[match[2]]
    if seconds <= 0:
        raise ValueError(f"expected a duration greater than zero, got {quote(text)}")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"expected a duration of at most 24h, got {quote(text)}")
    return seconds


# --- Checks for sections ---------------------------------------------------------------


def fields(
    value: object, where: Where, schema: Mapping[str, Check[Any]], what: str
) -> dict[str, Any]:
    """Each key of a mapping checked by its entry in `schema`, in file order."""
    checked: dict[str, Any] = {}
    for key, child, child_where in entries(mapping(value, where, what), where):
        check = schema.get(key)
        if check is None:
            child_where.fail(f"unknown key ({did_you_mean(key, list(schema))})")
        checked[key] = check(child, child_where)
    return checked


def require(checked: Mapping[str, Any], where: Where, key: str, why: str) -> None:
    if key not in checked:
        where.fail(f"missing required key '{key}' ({why})")


def mapping(value: object, where: Where, what: str) -> LineMapping:
    if not isinstance(value, LineMapping):
        where.expected(what, value)
    return value


def entries(section: LineMapping, where: Where) -> Iterator[tuple[str, Any, Where]]:
    for key, value in section.items():
        yield key, value, where.child(key, section.key_lines[key], section.sources[key])


def unique_items(value: object, where: Where, item: Check[T], what: str) -> dict[T, Where]:
    """A list's checked items (in order) with their places; an item listed twice is an error."""
    if not isinstance(value, LineList):
        where.expected(what, value)
    places: dict[T, Where] = {}
    for index, raw in enumerate(value):
        item_where = where.item(index, value.item_lines[index], value.sources[index])
        checked = item(raw, item_where)
        if checked in places:
            item_where.fail(f"already listed as {places[checked].path}")
        places[checked] = item_where
    return places


# --- Checks for single values ----------------------------------------------------------


def text(what: str) -> Check[str]:
    def check(value: object, where: Where) -> str:
        if not isinstance(value, str) or not value.strip():
            where.expected(what, value)
        return value

    return check


def matching(pattern: re.Pattern[str], what: str) -> Check[str]:
    def check(value: object, where: Where) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            where.expected(what, value)
        return value

    return check


def starting_with(prefixes: tuple[str, ...], what: str) -> Check[str]:
    def check(value: object, where: Where) -> str:
        if not isinstance(value, str) or not value.startswith(prefixes):
            where.expected(what, value)
        return value

    return check


def integer(low: int, high: int | None = None) -> Check[int]:
    what = f"an integer of at least {low}" if high is None else f"an integer from {low} to {high}"

    def check(value: object, where: Where) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            where.expected(what, value)
        if value < low or (high is not None and value > high):
            where.expected(what, value)
        return value

    return check


def one_of(choices: tuple[str, ...]) -> Check[str]:
    def check(value: object, where: Where) -> str:
        if not isinstance(value, str):
            where.expected(f"one of: {', '.join(choices)}", value)
        if value not in choices:
            where.fail(f"unknown value {quote(value)} ({did_you_mean(value, list(choices))})")
        return value

    return check


def duration(value: object, where: Where) -> float:
    if not isinstance(value, str):
        where.expected(DURATION_EXAMPLES, value)
    try:
        return parse_duration(value)
    except ValueError as error:
        where.fail(str(error))


def boolean(value: object, where: Where) -> bool:
    if not isinstance(value, bool):
        where.expected("true or false", value)
    return value


def relative_dir(value: object, where: Where) -> str:
    if not isinstance(value, str) or not value.strip() or _escapes_root(value):
        where.expected("a relative directory inside the project root", value)
    return value


def relative_glob(value: object, where: Where) -> str:
    """A glob of files inside the project: pathlib cannot glob an absolute pattern, and a
    release must not be built from files outside the project. No `..` at all, not even one
    that seems to come back (`dist/*/../x`): after a link, `..` is the parent of wherever the
    link points."""
    if not isinstance(value, str) or not value.strip() or _absolute_or_up(value):
        where.expected(
            "a file glob relative to the project root, without '..' (like dist/app-*.tar.gz)",
            value,
        )
    return value


def path_glob(value: object, where: Where) -> str:
    """A glob of paths from the repository's top, as git names them (`deploy/**`,
    `.github/workflows/*.yml`): not absolute, no `..`, `.` or empty part, no `!` (no
    negation), not ending in `/` (a folder's files are `folder/**`)."""
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        where.expected("a path glob like deploy/** or .github/workflows/*.yml", value)
    problem = _glob_problem(value)
    if problem:
        where.fail(f"{quote(value)} {problem}")
    return value


def _glob_problem(pattern: str) -> str | None:
    parts = pattern.split("/")
    problems = (
        (pattern != pattern.strip(), "starts or ends with a blank"),
        (
            pattern.startswith("/"),
            "is absolute (globs are matched from the repository's top: leave out the first '/')",
        ),
        (
            pattern.startswith("!"),
            "starts with '!': there is no negation (list only the paths that need a proof)",
        ),
        (pattern.endswith("/"), f"ends with '/' (write {pattern}** for everything under it)"),
        (".." in parts, "has '..', which leads out of the repository"),
        (
            "." in parts or "" in parts,
            "has a '.' or empty part, which no path git names has (deploy/**, not ./deploy/**)",
        ),
    )
    return next((problem for found, problem in problems if found), None)


def relative_path(value: object, where: Where) -> str:
    """A path inside a folder, normalised (`log/` and `./log` are `log`): not absolute, no
    `..` anywhere, not the folder itself, no blank at either end."""
    what = "a relative path like log or var/cache"
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        where.expected(what, value)
    if value != value.strip():
        where.fail(f"{quote(value)} starts or ends with a blank (expected {what})")
    path = PurePosixPath(value)
    if path.is_absolute():
        where.fail(f"{quote(value)} is absolute (expected {what})")
    if ".." in path.parts:
        where.fail(f"{quote(value)} has '..', which leads out (expected {what})")
    if not path.parts:
        where.fail(f"{quote(value)} is the folder itself (expected {what})")
    return path.as_posix()


def _absolute_or_up(pattern: str) -> bool:
    path = PurePosixPath(pattern)
    return path.is_absolute() or ".." in path.parts


def _escapes_root(path: str) -> bool:
    normal = PurePosixPath(os.path.normpath(path))
    return normal.is_absolute() or ".." in normal.parts


env_var_name: Check[str] = matching(_ENV_VAR_NAME, _ENV_VAR_WHAT)


def env(value: object, where: Where) -> dict[str, str]:
    """A mapping of environment variable names to text values."""
    variables = mapping(value, where, "a mapping of environment variable names to values")
    checked: dict[str, str] = {}
    for name, raw, var_where in entries(variables, where):
        if not _ENV_VAR_NAME.fullmatch(name):
            var_where.fail(f"invalid name: expected {_ENV_VAR_WHAT}")
        checked[name] = _env_value(raw, var_where)
    return checked


def _env_value(value: object, where: Where) -> str:
    """Text as is; numbers as written (`1.10` stays `1.10`); booleans and null refused."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        where.fail(
            f'expected a text value, got {where.describe(value)}; quote it: "{where.source}"'
        )
    if isinstance(value, (int, float)) and where.source is not None:
        return where.source
    where.expected("a text value", value)
