"""An environment's audit trail: `.shipyard/<env>/audit.jsonl`, one JSON object a line.

{"at": "2026-11-30T06:38:08.123Z", "event": "deploy", "user": "alice", "host": "ci-7",
 "pid": 4121, "release": "v12", ...}                                (one line, wrapped here)

Each entry is a single `write` on an `O_APPEND` descriptor, so entries of concurrent
processes never interleave. `read` skips whatever is not a whole entry (a line cut short by
a crash, a hand edit) rather than failing: a damaged trail must not stop a deploy.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
from pathlib import Path

from shipyard.heartbeat import iso_timestamp
from shipyard.redact import Redactor

__all__ = ["append", "current_user", "read"]


def append(
    path: Path, event: str, /, *, redactor: Redactor | None = None, **fields: object
) -> dict[str, object]:
    """Append one entry (string values masked by `redactor`) and return it as written."""
    entry = {
        "at": iso_timestamp(),
        "event": event,
        "user": current_user(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        **fields,
    }
    masked = _masked_entry(entry, redactor or Redactor())
    _append_line(path, (json.dumps(masked) + "\n").encode("utf-8"))
    return masked


def read(path: Path) -> list[dict[str, object]]:
    """Every well-formed entry in order; a missing file is an empty trail."""
    try:
        with path.open("rb") as handle:
            return [entry for line in handle if (entry := _parse(line)) is not None]
    except FileNotFoundError:
        return []


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _append_line(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # The flock only makes the check below exact; O_APPEND alone keeps lines whole.
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _ends_mid_line(fd):
            data = b"\n" + data  # a crash cut the last line short: don't glue onto it
        os.write(fd, data)
    finally:
        os.close(fd)


def _ends_mid_line(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _parse(line: bytes) -> dict[str, object] | None:
    try:
        entry = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return entry if isinstance(entry, dict) else None


def _masked_entry(entry: dict[str, object], redactor: Redactor) -> dict[str, object]:
    return {key: _masked(value, redactor) for key, value in entry.items()}


def _masked(value: object, redactor: Redactor) -> object:
    """`value` as JSON data, every string in it masked (objects other than JSON's own
    scalars and containers are written as their `str`, masked too)."""
    if isinstance(value, dict):
        return {str(key): _masked(item, redactor) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(item, redactor) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redactor.mask(value if isinstance(value, str) else str(value))
