"""Load and validate `shipyard.yaml` into frozen, typed objects.

The model below is the contract the rest of the package codes against. The rest of the
module turns a file into that model, or into one `ConfigError` line:
`<file>:<line>: <key.path>: <problem>`. `python -m shipyard.config [PATH]` checks a file.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import string
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

import yaml

from shipyard.errors import ConfigError, ExitCode
from shipyard.redact import SECRET_NAME_PARTS

CONFIG_FILENAME = "shipyard.yaml"
CONFIG_ENV_VAR = "SHIPYARD_CONFIG"
DEFAULT_AGENT = "devops"
DEFAULT_HEARTBEAT_INTERVAL = 15.0
DEFAULT_KILL_GRACE = 3.0
DURATION_EXAMPLES = "a duration like 30s, 500ms, 5m or 1h"


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
    strategy: str = "rolling"  # fly: canary | rolling | immediate | bluegreen
    wait_timeout: float = 300.0  # fly: --wait-timeout of every flyctl deploy
    read_timeout: float = 30.0  # fly: one read-only flyctl call (releases, status...) at most
    flyctl: str | None = None  # fly: path of the flyctl binary (default: flyctl or fly on PATH)
    rollback_release_command: bool = False  # fly: run [deploy] release_command on rollbacks


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


# --- Public API ----------------------------------------------------------------------

_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)")
_SECONDS_PER_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in `500ms`, `30s`, `1.5m` or `1h`; ValueError unless it is a positive duration."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"expected {DURATION_EXAMPLES}, got {_quote(text)}")
    seconds = float(match[1]) * _SECONDS_PER_UNIT[match[2]]
    if seconds <= 0:
        raise ValueError(f"expected a duration greater than zero, got {_quote(text)}")
    return seconds


def log_name(step_name: str) -> str:
    """The file name (without `.log`) that holds a step's output."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", step_name)


def find_config(
    explicit: str | os.PathLike[str] | None = None,
    *,
    start: Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Path:
    """The config file to use, as an absolute path.

    `explicit` (`--config PATH`) wins, then `$SHIPYARD_CONFIG`, then the nearest
    `shipyard.yaml` in `start` (default: the working directory) or one of its parents.
    """
    if explicit is not None:
        return _existing_file(Path(explicit), f"--config {_printable(os.fspath(explicit))}")
    from_environ = environ.get(CONFIG_ENV_VAR)
    if from_environ:
        return _existing_file(Path(from_environ), f"{CONFIG_ENV_VAR}={_printable(from_environ)}")
    return _nearest_config(_absolute(start or Path.cwd()))


def load_config(path: str | os.PathLike[str]) -> Config:
    """Parse and validate the file at `path`; any problem is one `ConfigError` line."""
    config_path = _absolute(Path(path))
    text = _read(config_path)
    try:
        return _build_config(_parse_yaml(text), config_path)
    except _Invalid as invalid:
        raise ConfigError(_error_line(config_path, invalid)) from None


def load(
    explicit: str | os.PathLike[str] | None = None,
    *,
    start: Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Config:
    """Find the config file (see `find_config`) and load it."""
    return load_config(find_config(explicit, start=start, environ=environ))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m shipyard.config [PATH]`: check a config file and summarise it."""
    parser = argparse.ArgumentParser(
        prog="python -m shipyard.config", description=f"Check a {CONFIG_FILENAME} file."
    )
    parser.add_argument("path", nargs="?", help="the file (default: found as shipyard finds it)")
    arguments = parser.parse_args(argv)
    try:
        config = load(arguments.path)
    except ConfigError as error:
        print(error.message, file=sys.stderr)
        return int(error.exit_code)
    print(
        f"ok: {len(config.steps)} steps, {len(config.gates)} gates,"
        f" {len(config.environments)} environments"
    )
    return int(ExitCode.OK)


# --- Finding and reading the file ------------------------------------------------------


def _absolute(path: Path) -> Path:
    """`path` made absolute and free of `..`, without resolving symlinks."""
    return Path(os.path.normpath(path.absolute()))


def _existing_file(path: Path, given_as: str) -> Path:
    if not path.exists():
        raise ConfigError(f"{given_as}: no such file")
    if not path.is_file():
        raise ConfigError(f"{given_as}: not a file")
    return _absolute(path)


def _nearest_config(start: Path) -> Path:
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_FILENAME} in {_printable(str(start))} or any parent directory"
        f" (give --config PATH or set {CONFIG_ENV_VAR})"
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{_shown_path(path)}: no such file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{_shown_path(path)}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{_shown_path(path)}: cannot read: {error.strerror}") from None


def _shown_path(path: Path) -> str:
    """`path` relative to the working directory when it is under it, else absolute."""
    try:
        shown = path.relative_to(Path.cwd())
    except (ValueError, OSError):
        shown = path
    return _printable(str(shown))


def _error_line(path: Path, invalid: _Invalid) -> str:
    where = invalid.where
    key_path = f"{where.path}: " if where.path else ""
    message = f"{_shown_path(path)}:{where.line}: {key_path}{invalid.problem}"
    return " ".join(message.splitlines())  # the one-line promise holds whatever a problem says


# --- Where a value is, and how messages show it ----------------------------------------

_QUOTE_LIMIT = 40


@dataclass(frozen=True)
class _Where:
    """A place in the file: its key path, line, and the scalar as written there."""

    path: str  # "" for the document itself
    line: int
    source: str | None = None

    def child(self, key: str, line: int, source: str | None = None) -> _Where:
        shown = _printable(key)
        return _Where(f"{self.path}.{shown}" if self.path else shown, line, source)

    def item(self, index: int, line: int, source: str | None = None) -> _Where:
        return _Where(f"{self.path}[{index}]", line, source)

    def fail(self, problem: str) -> NoReturn:
        raise _Invalid(self, problem)

    def expected(self, what: str, value: object) -> NoReturn:
        self.fail(f"expected {what}, got {self.describe(value)}")

    def describe(self, value: object) -> str:
        """`value` as written; text and numbers under a secret-looking key only by kind."""
        if value is None:
            return "null" if self.source else "an empty value"
        if isinstance(value, bool):  # true/yes/off... cannot carry a secret
            return f"{self.source or value} (a boolean)"
        if not isinstance(value, (str, int, float)):
            return _kind(value)
        if self.under_secret_looking_key:
            return f"{_kind(value)} (not shown: it may be a secret)"
        return _quote(value) if isinstance(value, str) else self.source or str(value)

    @property
    def under_secret_looking_key(self) -> bool:
        """The last key of the path names a secret, as the redactor judges names."""
        last_key = re.sub(r"(\[\d+\])+$", "", self.path).rsplit(".", 1)[-1].upper()
        return any(part in last_key for part in SECRET_NAME_PARTS)


class _Invalid(Exception):
    """A problem at one place in the file; `load_config` turns it into a ConfigError."""

    def __init__(self, where: _Where, problem: str) -> None:
        super().__init__(problem)
        self.where = where
        self.problem = problem


def _quote(text: str) -> str:
    """`text` quoted, escaped and shortened to fit in a one-line message."""
    return repr(text if len(text) <= _QUOTE_LIMIT else text[:_QUOTE_LIMIT] + "…")


def _printable(text: str) -> str:
    return text if text.isprintable() else repr(text)


_KINDS: tuple[tuple[type, str], ...] = (
    (type(None), "null"),
    (bool, "a boolean"),  # before int: a bool is an int to Python
    (int, "a number"),
    (float, "a number"),
    (str, "text"),
    (dict, "a mapping"),
    (list, "a list"),
)


def _kind(value: object) -> str:
    return next((name for kind, name in _KINDS if isinstance(value, kind)), type(value).__name__)


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"expected one of: {', '.join(choices)}" if choices else "none are defined"


# --- YAML with line numbers ------------------------------------------------------------

_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _LineMapping(dict[str, Any]):
    """A YAML mapping that remembers each key's line and how each scalar value was written."""

    def __init__(self) -> None:
        super().__init__()
        self.key_lines: dict[str, int] = {}
        self.sources: dict[str, str | None] = {}


class _LineList(list[Any]):
    """A YAML sequence that remembers each item's line and how each scalar item was written."""

    def __init__(self) -> None:
        super().__init__()
        self.item_lines: list[int] = []
        self.sources: list[str | None] = []


def _source(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


class _LineLoader(yaml.SafeLoader):
    """SafeLoader building `_LineMapping`/`_LineList` and refusing duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.where = _Where("", 1)  # the value being built, for duplicate-key messages

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError) as error:  # an explicit tag on a bad value: `!!int abc`
            problem = f"cannot read {node.tag} value: {error}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None

    def construct_line_mapping(self, node: yaml.MappingNode) -> _LineMapping:
        explicit_count = sum(key_node.tag != _MERGE_TAG for key_node, _ in node.value)
        self.flatten_mapping(node)  # pairs merged in with `<<:` come first and may be overridden
        first_explicit = len(node.value) - explicit_count
        mapping = _LineMapping()
        explicit_lines: dict[str, int] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            key, where = self._key(key_node)
            if index >= first_explicit:
                if key in explicit_lines:
                    where.fail(f"duplicate key (first defined on line {explicit_lines[key]})")
                explicit_lines[key] = where.line
            mapping[key] = self._construct_at(where, value_node)
            mapping.key_lines[key] = where.line
            mapping.sources[key] = _source(value_node)
        return mapping

    def construct_line_list(self, node: yaml.SequenceNode) -> _LineList:
        items = _LineList()
        for index, item_node in enumerate(node.value):
            where = self.where.item(index, item_node.start_mark.line + 1)
            items.append(self._construct_at(where, item_node))
            items.item_lines.append(where.line)
            items.sources.append(_source(item_node))
        return items

    def _key(self, key_node: yaml.Node) -> tuple[str, _Where]:
        key = self.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            source = _source(key_node)
            where = self.where.child(source or "?", line, source)
            where.expected("a text key (quote it)", key)
        return key, self.where.child(key, line)

    def _construct_at(self, where: _Where, node: yaml.Node) -> Any:
        outer, self.where = self.where, where
        value = self.construct_object(node, deep=True)
        self.where = outer
        return value


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_line_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_line_list)
# No field is a date, and `2024-13-01` must stay text rather than break the load.
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _parse_yaml(text: str) -> Any:
    try:
        return _load_document(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        _Where("", mark.line + 1 if mark else 1).fail(f"invalid YAML: {_yaml_problem(error)}")
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        problem = f"unacceptable character #x{error.character:04x}: {error.reason}"
        _Where("", line).fail(f"invalid YAML: {problem}")
    except RecursionError:
        _Where("", 1).fail("invalid YAML: nested too deeply")


def _load_document(text: str) -> Any:
    loader = _LineLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(error: yaml.MarkedYAMLError) -> str:
    problem = error.problem or error.context or "unreadable"
    if "'\\t'" in problem:
        problem += " (indent with spaces, not tabs)"
    opened, found = error.context_mark, error.problem_mark
    if error.problem and error.context and opened and found and opened.line != found.line:
        problem = f"{error.context} on line {opened.line + 1}: {problem}"  # e.g. an unclosed [
    return problem


# --- The schema ------------------------------------------------------------------------

_Check = Callable[[Any, _Where], Any]

_AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]*")
_ENVIRONMENT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_VAR_WHAT = "an environment variable name (letters, digits and '_', not starting with a digit)"
_TARGET_NEEDS = {
    "local": ("start", "the command that starts the server"),
    "fly": ("app", "the Fly app name"),
}


def _build_config(document: object, path: Path) -> Config:
    top = _Where("", 1)
    if document is None:
        top.fail("no settings in the file (it needs at least 'version: 1')")
    if not isinstance(document, _LineMapping):
        top.fail(f"expected a mapping of settings (version, steps, ...), got {_kind(document)}")
    fields = _fields(document, top, _TOP_LEVEL_FIELDS, "a mapping")
    _require(fields, top, "version", "add 'version: 1'")
    gates = _defined_gates(fields.pop("gates", {}), fields.get("steps", {}))
    if "heartbeat" in fields:
        fields["heartbeat_interval"] = fields.pop("heartbeat")
    return Config(path=path, root=path.parent, gates=gates, **fields)


def _fields(
    value: object, where: _Where, schema: Mapping[str, _Check], what: str
) -> dict[str, Any]:
    """Each key of a mapping checked by its entry in `schema`, in file order."""
    mapping = _mapping(value, where, what)
    checked: dict[str, Any] = {}
    for key, child, child_where in _entries(mapping, where):
        check = schema.get(key)
        if check is None:
            child_where.fail(f"unknown key ({_did_you_mean(key, list(schema))})")
        checked[key] = check(child, child_where)
    return checked


def _require(fields: Mapping[str, Any], where: _Where, key: str, why: str) -> None:
    if key not in fields:
        where.fail(f"missing required key '{key}' ({why})")


def _mapping(value: object, where: _Where, what: str) -> _LineMapping:
    if not isinstance(value, _LineMapping):
        where.expected(what, value)
    return value


def _entries(mapping: _LineMapping, where: _Where) -> Iterator[tuple[str, Any, _Where]]:
    for key, value in mapping.items():
        yield key, value, where.child(key, mapping.key_lines[key], mapping.sources[key])


def _unique_items(value: object, where: _Where, item: _Check, what: str) -> dict[Any, _Where]:
    """A list's checked items (in order) with their places; an item listed twice is an error."""
    if not isinstance(value, _LineList):
        where.expected(what, value)
    places: dict[Any, _Where] = {}
    for index, raw in enumerate(value):
        item_where = where.item(index, value.item_lines[index], value.sources[index])
        checked = item(raw, item_where)
        if checked in places:
            item_where.fail(f"already listed as {places[checked].path}")
        places[checked] = item_where
    return places


# --- Checks for single values ----------------------------------------------------------


def _text(what: str) -> _Check:
    def check(value: object, where: _Where) -> str:
        if not isinstance(value, str) or not value.strip():
            where.expected(what, value)
        return value

    return check


def _matching(pattern: re.Pattern[str], what: str) -> _Check:
    def check(value: object, where: _Where) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            where.expected(what, value)
        return value

    return check


def _starting_with(prefixes: tuple[str, ...], what: str) -> _Check:
    def check(value: object, where: _Where) -> str:
        if not isinstance(value, str) or not value.startswith(prefixes):
            where.expected(what, value)
        return value

    return check


def _integer(low: int, high: int | None = None) -> _Check:
    what = f"an integer of at least {low}" if high is None else f"an integer from {low} to {high}"

    def check(value: object, where: _Where) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            where.expected(what, value)
        if value < low or (high is not None and value > high):
            where.expected(what, value)
        return value

    return check


def _duration(value: object, where: _Where) -> float:
    if not isinstance(value, str):
        where.expected(DURATION_EXAMPLES, value)
    try:
        return parse_duration(value)
    except ValueError as error:
        where.fail(str(error))


FLY_STRATEGIES = ("rolling", "immediate", "canary", "bluegreen")


def _one_of(choices: tuple[str, ...]) -> _Check:
    def check(value: object, where: _Where) -> str:
        if not isinstance(value, str):
            where.expected(f"one of: {', '.join(choices)}", value)
        if value not in choices:
            where.fail(f"unknown value {_quote(value)} ({_did_you_mean(value, list(choices))})")
        return value

    return check


def _boolean(value: object, where: _Where) -> bool:
    if not isinstance(value, bool):
        where.expected("true or false", value)
    return value


def _version(value: object, where: _Where) -> int:
    if type(value) is not int:
        where.expected("the number 1", value)
    if value != 1:
        where.fail(f"unsupported version {value} (this shipyard reads version 1)")
    return value


def _target(value: object, where: _Where) -> str:
    targets = list(_TARGET_NEEDS)
    if not isinstance(value, str):
        where.expected(f"one of: {', '.join(targets)}", value)
    if value not in _TARGET_NEEDS:
        where.fail(f"unknown target {_quote(value)} ({_did_you_mean(value, targets)})")
    return value


START_PLACEHOLDERS = ("port", "release", "release_dir")


def _start_command(value: object, where: _Where) -> str:
    """A shell command whose only `{placeholders}` are the ones Shipyard fills in."""
    command: str = _text("the command that starts the server")(value, where)
    try:
        fields = [
            (name, spec or conversion)
            for _, name, spec, conversion in string.Formatter().parse(command)
            if name is not None
        ]
    except ValueError as error:
        where.fail(f"{error} (write a literal brace as {{{{ or }}}})")
    allowed = ", ".join("{" + p + "}" for p in START_PLACEHOLDERS)
    for name, extra in fields:
        if name not in START_PLACEHOLDERS:
            where.fail(f"unknown placeholder {{{name}}} (allowed: {allowed})")
        if extra:
            where.fail(
                f"placeholder {{{name}}}: write it plain, without ! or : (allowed: {allowed})"
            )
    return command


def _relative_dir(value: object, where: _Where) -> str:
    if not isinstance(value, str) or not value.strip() or _escapes_root(value):
        where.expected("a relative directory inside the project root", value)
    return value


def _relative_glob(value: object, where: _Where) -> str:
    """A glob of files inside the project: pathlib cannot glob an absolute pattern, and a
    release must not be built from files outside the project."""
    if not isinstance(value, str) or not value.strip() or _escapes_root(value):
        where.expected("a file glob relative to the project root (like dist/app-*.tar.gz)", value)
    return value


def _escapes_root(path: str) -> bool:
    normal = PurePosixPath(os.path.normpath(path))
    return normal.is_absolute() or ".." in normal.parts


# --- Checks for sections ---------------------------------------------------------------


def _heartbeat(value: object, where: _Where) -> float:
    fields = _fields(value, where, {"interval": _duration}, "a mapping like {interval: 15s}")
    interval: float = fields.get("interval", DEFAULT_HEARTBEAT_INTERVAL)
    return interval


def _secrets(value: object, where: _Where) -> tuple[str, ...]:
    names = _matching(_ENV_VAR_NAME, _ENV_VAR_WHAT)
    return tuple(_unique_items(value, where, names, "a list of environment variable names"))


def _gates(value: object, where: _Where) -> dict[str, _Where]:
    return _unique_items(value, where, _text("a step name"), "a list of step names")


def _defined_gates(gates: Mapping[str, _Where], steps: Mapping[str, Step]) -> tuple[str, ...]:
    for name, where in gates.items():
        if name not in steps:
            where.fail(f"undefined step {_quote(name)} ({_did_you_mean(name, list(steps))})")
    return tuple(gates)


def _env(value: object, where: _Where) -> dict[str, str]:
    mapping = _mapping(value, where, "a mapping of environment variable names to values")
    env: dict[str, str] = {}
    for name, raw, var_where in _entries(mapping, where):
        if not _ENV_VAR_NAME.fullmatch(name):
            var_where.fail(f"invalid name: expected {_ENV_VAR_WHAT}")
        env[name] = _env_value(raw, var_where)
    return env


def _env_value(value: object, where: _Where) -> str:
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


def _steps(value: object, where: _Where) -> dict[str, Step]:
    mapping = _mapping(value, where, "a mapping of step names to commands")
    steps: dict[str, Step] = {}
    for name, spec, step_where in _entries(mapping, where):
        if not _STEP_NAME.fullmatch(name):
            step_where.fail(
                "invalid step name (use letters, digits, ':', '.', '_' and '-',"
                " starting with a letter or digit)"
            )
        _refuse_shared_log(name, steps, step_where)
        steps[name] = _step(name, spec, step_where)
    return steps


def _refuse_shared_log(name: str, earlier: Iterable[str], where: _Where) -> None:
    """Two steps must not write one log file (compared without case, as macOS disks do)."""
    for other in earlier:
        if log_name(other).casefold() == log_name(name).casefold():
            where.fail(
                f"same log file as step {other!r} ({log_name(other)}.log); rename one of them"
            )


def _step(name: str, spec: object, where: _Where) -> Step:
    if isinstance(spec, str):
        return Step(name=name, run=_SHELL_COMMAND(spec, where))
    fields = _fields(spec, where, _STEP_FIELDS, "a shell command or a mapping with 'run'")
    _require(fields, where, "run", "the shell command to run")
    return Step(name=name, **fields)


def _environments(value: object, where: _Where) -> dict[str, Environment]:
    mapping = _mapping(value, where, "a mapping of environment names to settings")
    environments: dict[str, Environment] = {}
    for name, spec, environment_where in _entries(mapping, where):
        if not _ENVIRONMENT_NAME.fullmatch(name):
            environment_where.fail(
                "invalid environment name (use lowercase letters, digits, '_' and '-',"
                " starting with a letter or digit)"
            )
        environments[name] = _environment(name, spec, environment_where)
    return environments


def _environment(name: str, spec: object, where: _Where) -> Environment:
    fields = _fields(spec, where, _ENVIRONMENT_FIELDS, "a mapping with at least 'target'")
    _require(fields, where, "target", f"one of: {', '.join(_TARGET_NEEDS)}")
    needed, meaning = _TARGET_NEEDS[fields["target"]]
    _require(fields, where, needed, f"target '{fields['target']}' needs {meaning}")
    return Environment(name=name, **fields)


def _smoke(value: object, where: _Where) -> Smoke:
    return Smoke(**_fields(value, where, _SMOKE_FIELDS, "a mapping like {path: /, timeout: 30s}"))


_SHELL_COMMAND = _text("a shell command")
_STEP_FIELDS: Mapping[str, _Check] = {
    "run": _SHELL_COMMAND,
    "timeout": _duration,
    "retries": _integer(0, 10),
    "grace": _duration,
    "artifact": _relative_glob,
    "cwd": _relative_dir,
    "env": _env,
}
_SMOKE_FIELDS: Mapping[str, _Check] = {
    "path": _starting_with(("/",), "a path starting with '/'"),
    "url": _starting_with(("http://", "https://"), "a URL starting with http:// or https://"),
    "expect_status": _integer(100, 599),
    "timeout": _duration,
    "contains": _text("the text the response must contain"),
}
_ENVIRONMENT_FIELDS: Mapping[str, _Check] = {
    "target": _target,
    "start": _start_command,
    "port": _integer(1, 65535),
    "env": _env,
    "smoke": _smoke,
    "keep_releases": _integer(1),
    "app": _text("a Fly app name"),
    "fly_config": _text("a path to a fly.toml"),
    "strategy": _one_of(FLY_STRATEGIES),
    "wait_timeout": _duration,
    "read_timeout": _duration,
    "flyctl": _text("a path to the flyctl binary"),
    "rollback_release_command": _boolean,
}
_TOP_LEVEL_FIELDS: Mapping[str, _Check] = {
    "version": _version,
    "agent": _matching(
        _AGENT_NAME,
        "a folder name (letters, digits, '.', '_' and '-', starting with a letter or digit)",
    ),
    "heartbeat": _heartbeat,
    "secrets": _secrets,
    "steps": _steps,
    "gates": _gates,
    "environments": _environments,
}


if __name__ == "__main__":
    sys.exit(main())
