"""The state file of a fake CLI (flyctl, gh): JSON, read without a lock (writes are atomic),
changed under an flock by one process at a time. Runs on Python 3.10, as the fakes do."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with Path(f"{path}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read(path: Path | str) -> dict[str, Any]:
    """The state as last written (writes are atomic, so no lock is needed to read)."""
    return json.loads(Path(path).read_text())


def _replace(path: Path, state: dict[str, Any]) -> None:
    """Write a temp file beside `path`, then rename it over `path` (the caller holds the lock)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(state, indent=2, ensure_ascii=False))
    os.replace(temp, path)


def write(path: Path | str, state: dict[str, Any]) -> None:
    with _locked(Path(path)):
        _replace(Path(path), state)


@contextlib.contextmanager
def transaction(path: Path | str) -> Iterator[dict[str, Any]]:
    """Read the state under the lock, let the caller change it, write it back atomically."""
    path = Path(path)
    with _locked(path):
        state = read(path)
        yield state
        _replace(path, state)
