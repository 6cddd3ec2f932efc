"""The heartbeat log: one ISO-timestamped logfmt line per step event, appended and flushed at once.

2026-11-30T06:38:08.123Z agent=devops run=20261130T063808Z-4f2a step=build event=start
  pid=4121 cmd="npm run build"        (one line, wrapped here)
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from shipyard.errors import cannot_write
from shipyard.redact import Redactor

_BARE_VALUE = re.compile(r"[^\s\"=\\]+")


def iso_timestamp(moment: datetime | None = None) -> str:
    """UTC, millisecond precision, `Z` suffix: `2026-11-30T06:38:08.123Z`."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def logfmt_value(value: object) -> str:
    text = f"{value:.1f}" if isinstance(value, float) else str(value)
    if _BARE_VALUE.fullmatch(text):
        return text
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


def format_line(fields: Mapping[str, object], moment: datetime | None = None) -> str:
    pairs = " ".join(f"{key}={logfmt_value(value)}" for key, value in fields.items())
    return f"{iso_timestamp(moment)} {pairs}\n"


class Heartbeat:
    """Appends events for one run to `heartbeat.log`; safe across threads and processes.

    Each line is a single `write` on an `O_APPEND` descriptor, so lines from concurrent
    runs never interleave, and it reaches the file before `emit` returns.

    A write that fails (a full disk, a file-size limit, a read-only or failing file system)
    never raises, in whichever thread it happens: the heartbeat stops there, says so once on
    stderr (one line, masked), and keeps the error in `failure`; the runner then ends the
    step it belongs to with a WriteFailed (see runner.py).
    """

    def __init__(self, path: Path, *, agent: str, run_id: str, redactor: Redactor) -> None:
        self.path = path
        self._prefix = {"agent": agent, "run": run_id}
        self._redactor = redactor
        self._lock = threading.Lock()
        self.failure: OSError | None = None  # the write that failed; nothing is written after it

    def emit(self, step: str, event: str, **fields: object) -> None:
        masked = {key: self._mask(value) for key, value in fields.items()}
        line = format_line({**self._prefix, "step": step, "event": event, **masked})
        data = self._redactor.mask(line).encode("utf-8", "surrogateescape")
        with self._lock:
            if self.failure is not None:
                return
            try:
                self._append(data)
            except OSError as error:
                self.failure = error
                stopped = f"shipyard: heartbeat stopped: {cannot_write(self.path, error)}"
                with contextlib.suppress(OSError, ValueError):  # stderr may be gone too
                    print(self._redactor.mask(stopped), file=sys.stderr, flush=True)

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            write_all(fd, data)  # a short write (a size limit reached) raises at the next one
        finally:
            os.close(fd)

    def _mask(self, value: object) -> object:
        return self._redactor.mask(value) if isinstance(value, str) else value


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd`, however many writes it takes; an OSError says why not."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
