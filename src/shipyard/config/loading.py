"""Which file is the config, and loading it: read, parse, check, or one `ConfigError` line
`<file>:<line>: <key.path>: <problem>`."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from shipyard.config.document import parse_yaml
from shipyard.config.model import Config
from shipyard.config.schema import build_config
from shipyard.config.where import Invalid, Where, printable
from shipyard.errors import ConfigError

CONFIG_FILENAME = "shipyard.yaml"
CONFIG_ENV_VAR = "SHIPYARD_CONFIG"
MAX_CONFIG_BYTES = 1024 * 1024  # a real config is a few kilobytes; YAML parsing is not cheap


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
        return _existing_file(Path(explicit), f"--config {printable(os.fspath(explicit))}")
    from_environ = environ.get(CONFIG_ENV_VAR)
    if from_environ:
        return _existing_file(Path(from_environ), f"{CONFIG_ENV_VAR}={printable(from_environ)}")
    return _nearest_config(_absolute(start or Path.cwd()))


def load_config(path: str | os.PathLike[str]) -> Config:
    """Parse and validate the file at `path`; any problem is one `ConfigError` line."""
    config_path = _absolute(Path(path))
    try:
        with _collector_paused():
            return build_config(parse_yaml(_read(config_path)), config_path)
    except Invalid as invalid:
        raise ConfigError(error_line(config_path, invalid)) from None


def load(
    explicit: str | os.PathLike[str] | None = None,
    *,
    start: Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Config:
    """Find the config file (see `find_config`) and load it."""
    return load_config(find_config(explicit, start=start, environ=environ))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a file loads. Loading makes about ten objects per
    value, nearly all alive until the end and none of them garbage in a cycle; the collector,
    going over them again and again as they piled up, made 10,000 steps take half as long
    again per step as 1,000 (bench/config.py). It runs as usual afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
        f"no {CONFIG_FILENAME} in {printable(str(start))} or any parent directory"
        f" (give --config PATH or set {CONFIG_ENV_VAR})"
    )


def _read(path: Path) -> str:
    """The file's text; a file over `MAX_CONFIG_BYTES` is `Invalid` before it is read whole."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
            size = os.fstat(file.fileno()).st_size  # 0 for a pipe or a device
        if len(data) > MAX_CONFIG_BYTES:
            shown = f" ({size:,} bytes)" if size > MAX_CONFIG_BYTES else ""
            Where("", 1).fail(f"the file is larger than 1 MiB{shown}, the limit for a config")
        # newlines as text mode reads them, so that every line count agrees with YAML's
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except FileNotFoundError:
        raise ConfigError(f"{_shown_path(path)}: no such file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{_shown_path(path)}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{_shown_path(path)}: cannot read: {error.strerror}") from None


# --- The one-line message --------------------------------------------------------------


def _shown_path(path: Path) -> str:
    """`path` relative to the working directory when it is under it, else absolute."""
    try:
        shown = path.relative_to(Path.cwd())
    except (ValueError, OSError):
        shown = path
    return printable(str(shown))


def error_line(path: Path, invalid: Invalid) -> str:
    where = invalid.where
    key_path = f"{where.path}: " if where.path else ""
    message = f"{_shown_path(path)}:{where.line}: {key_path}{invalid.problem}"
    return " ".join(message.splitlines())  # the one-line promise holds whatever a problem says
