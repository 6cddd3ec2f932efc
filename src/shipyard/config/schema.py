"""Which keys `shipyard.yaml` has, what each must be, and how the document becomes a `Config`.

The tables at the bottom map each key of a section to its check; the functions above them
check whole sections and the rules that span keys (gates name steps, a target's required key).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.config.checks import (
    Check,
    duration,
    entries,
    env,
    env_var_name,
    fields,
    integer,
    mapping,
    matching,
    path_glob,
    relative_dir,
    relative_glob,
    require,
    starting_with,
    text,
    unique_items,
)
from shipyard.config.document import LineMapping
from shipyard.config.model import (
    DEFAULT_HEARTBEAT_INTERVAL,
    Config,
    Environment,
    Hooks,
    Proof,
    Smoke,
    Step,
    log_name,
)
from shipyard.config.where import Where, did_you_mean, kind, quote

START_PLACEHOLDERS = ("port", "release", "release_dir")
MAX_SHARDS = 64  # a CI matrix of runners: GitHub allows 256 jobs in one

_AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]*")
_ENVIRONMENT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def build_config(document: object, path: Path) -> Config:
    """The `Config` in a parsed document; any problem is `Invalid` at its place."""
    top = Where("", 1)
    if document is None:
        top.fail("no settings in the file (it needs at least 'version: 1')")
    if not isinstance(document, LineMapping):
        top.fail(f"expected a mapping of settings (version, steps, ...), got {kind(document)}")
    settings = fields(document, top, _TOP_LEVEL_FIELDS, "a mapping")
    require(settings, top, "version", "add 'version: 1'")
    steps = settings.get("steps", {})
    gates = _defined_steps(settings.pop("gates", {}), steps)
    if "hooks" in settings:
        settings["hooks"] = _defined_hooks(settings["hooks"], steps)
    if "heartbeat" in settings:
        settings["heartbeat_interval"] = settings.pop("heartbeat")
    return Config(path=path, root=path.parent, gates=gates, **settings)


# --- Checks for top-level values -------------------------------------------------------


def _version(value: object, where: Where) -> int:
    if type(value) is not int:
        where.expected("the number 1", value)
    if value != 1:
        where.fail(f"unsupported version {value} (this shipyard reads version 1)")
    return value


def _heartbeat(value: object, where: Where) -> float:
    settings = fields(value, where, {"interval": duration}, "a mapping like {interval: 15s}")
    interval: float = settings.get("interval", DEFAULT_HEARTBEAT_INTERVAL)
    return interval


def _variable_names(value: object, where: Where) -> tuple[str, ...]:
    return tuple(unique_items(value, where, env_var_name, "a list of environment variable names"))


def _step_names(value: object, where: Where) -> dict[str, Where]:
    return unique_items(value, where, text("a step name"), "a list of step names")


def _defined_steps(names: Mapping[str, Where], steps: Mapping[str, Step]) -> tuple[str, ...]:
    for name, where in names.items():
        if name not in steps:
            where.fail(f"undefined step {quote(name)} ({did_you_mean(name, list(steps))})")
    return tuple(names)


def _proof(value: object, where: Where) -> Proof:
    settings = fields(value, where, _PROOF_FIELDS, "a mapping like {paths: [deploy/**]}")
    return Proof(**settings)


def _path_globs(value: object, where: Where) -> tuple[str, ...]:
    return tuple(unique_items(value, where, path_glob, "a list of path globs like deploy/**"))


def _hooks(value: object, where: Where) -> dict[str, dict[str, Where]]:
    """Each hook's step names with their places: that they are defined is checked once the
    steps are known (`_defined_hooks`)."""
    return fields(value, where, _HOOKS_FIELDS, "a mapping like {pre_push: [fmt, lint]}")


def _defined_hooks(hooks: Mapping[str, Mapping[str, Where]], steps: Mapping[str, Step]) -> Hooks:
    return Hooks(**{hook: _defined_steps(names, steps) for hook, names in hooks.items()})


# --- Steps -----------------------------------------------------------------------------


def _steps(value: object, where: Where) -> dict[str, Step]:
    section = mapping(value, where, "a mapping of step names to commands")
    steps: dict[str, Step] = {}
    log_owners: dict[str, str] = {}  # each log file, without case, to the step writing it
    for name, spec, step_where in entries(section, where):
        if not _STEP_NAME.fullmatch(name):
            step_where.fail(
                "invalid step name (use letters, digits, ':', '.', '_' and '-',"
                " starting with a letter or digit)"
            )
        _claim_log(name, log_owners, step_where)
        steps[name] = _step(name, spec, step_where)
    return steps


def _claim_log(name: str, log_owners: dict[str, str], where: Where) -> None:
    """Two steps must not write one log file (compared without case, as macOS disks do): one
    look-up per step, so that a file of thousands of steps is checked in linear time."""
    other = log_owners.setdefault(log_name(name).casefold(), name)
    if other != name:
        where.fail(f"same log file as step {other!r} ({log_name(other)}.log); rename one of them")


def _step(name: str, spec: object, where: Where) -> Step:
    if isinstance(spec, str):
        return Step(name=name, run=_SHELL_COMMAND(spec, where))
    settings = fields(spec, where, _STEP_FIELDS, "a shell command or a mapping with 'run'")
    require(settings, where, "run", "the shell command to run")
    return Step(name=name, **settings)


# --- Environments ----------------------------------------------------------------------


def _environments(value: object, where: Where) -> dict[str, Environment]:
    section = mapping(value, where, "a mapping of environment names to settings")
    environments: dict[str, Environment] = {}
    for name, spec, environment_where in entries(section, where):
        if not _ENVIRONMENT_NAME.fullmatch(name):
            environment_where.fail(
                "invalid environment name (use lowercase letters, digits, '_' and '-',"
                " starting with a letter or digit)"
            )
        environments[name] = _environment(name, spec, environment_where)
    return environments


def _environment(name: str, spec: object, where: Where) -> Environment:
    """The shared keys checked here; every other key kept as written, with its place, for
    the target's own module to check (shipyard.targets.check)."""
    section = mapping(spec, where, "a mapping with at least 'target'")
    shared: dict[str, Any] = {}
    options: dict[str, Any] = {}
    places: dict[str, Where] = {}
    for key, value, key_where in entries(section, where):
        places[key] = key_where
        check = ENVIRONMENT_FIELDS.get(key)
        if check is None:
            options[key] = value
        else:
            shared[key] = check(value, key_where)
    require(shared, where, "target", "which deploy target it uses")
    return Environment(name=name, **shared, options=options, places=places, place=where)


def _start_command(value: object, where: Where) -> str:
    """A shell command whose only `{placeholders}` are the ones Shipyard fills in."""
    command: str = text("the command that starts the server")(value, where)
    try:
        placeholders = [
            (name, spec or conversion)
            for _, name, spec, conversion in string.Formatter().parse(command)
            if name is not None
        ]
    except ValueError as error:
        where.fail(f"{error} (write a literal brace as {{{{ or }}}})")
    allowed = ", ".join("{" + p + "}" for p in START_PLACEHOLDERS)
    for name, extra in placeholders:
        if name not in START_PLACEHOLDERS:
            where.fail(f"unknown placeholder {{{name}}} (allowed: {allowed})")
        if extra:
            where.fail(
                f"placeholder {{{name}}}: write it plain, without ! or : (allowed: {allowed})"
            )
    return command


def _smoke(value: object, where: Where) -> Smoke:
    return Smoke(**fields(value, where, _SMOKE_FIELDS, "a mapping like {path: /, timeout: 30s}"))


# --- The tables ------------------------------------------------------------------------

_SHELL_COMMAND = text("a shell command")
_STEP_FIELDS: Mapping[str, Check[Any]] = {
    "run": _SHELL_COMMAND,
    "timeout": duration,
    "retries": integer(0, 10),
    "grace": duration,
    "artifact": relative_glob,
    "cwd": relative_dir,
    "env": env,
    "shards": integer(1, MAX_SHARDS),
}
_SMOKE_FIELDS: Mapping[str, Check[Any]] = {
    "path": starting_with(("/",), "a path starting with '/'"),
    "url": starting_with(("http://", "https://"), "a URL starting with http:// or https://"),
    "expect_status": integer(100, 599),
    "timeout": duration,
    "contains": text("the text the response must contain"),
}
_PROOF_FIELDS: Mapping[str, Check[Any]] = {"paths": _path_globs}
_HOOKS_FIELDS: Mapping[str, Check[Any]] = {"pre_push": _step_names}
# The keys every environment may have, whatever its target; a target adds its own.
ENVIRONMENT_FIELDS: Mapping[str, Check[Any]] = {
    "target": text("the name of a deploy target"),
    "start": _start_command,
    "env": env,
    "pass_env": _variable_names,
    "smoke": _smoke,
    "max_unpacked_mib": integer(1),
    "max_archive_members": integer(1),
}
_TOP_LEVEL_FIELDS: Mapping[str, Check[Any]] = {
    "version": _version,
    "agent": matching(
        _AGENT_NAME,
        "a folder name (letters, digits, '.', '_' and '-', starting with a letter or digit)",
    ),
    "heartbeat": _heartbeat,
    "secrets": _variable_names,
    "steps": _steps,
    "gates": _step_names,
    "environments": _environments,
    "proof": _proof,
    "hooks": _hooks,
}
