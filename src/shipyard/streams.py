"""Standard output and error that outlive their reader: `inv build | head -3`.

When the reader of a pipe leaves, every later write to it fails with EPIPE. A run must not end
there: its steps, evidence and verdict do not depend on who reads the terminal. So the first
such failure turns the stream off: its descriptor is pointed at /dev/null (so that nothing
after it fails either: invoke's last message, the interpreter's final flush) and the run goes
on to its end and its exit code, with the record and feedback written as always.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, TextIO

__all__ = ["ReaderGone", "outlive_readers", "write_bytes"]


class ReaderGone:
    """`stream`, whose writes and flushes never raise BrokenPipeError: once its reader has
    gone, they are dropped."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._leave()
        return len(text)

    def write_bytes(self, data: bytes) -> None:
        if not self.gone:
            try:
                write_bytes(self._stream, data)
            except BrokenPipeError:
                self._leave()

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._leave()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self._stream, name)

    def _leave(self) -> None:
        self.gone = True
        with contextlib.suppress(OSError, ValueError):  # no descriptor: nothing to point
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)


def outlive_readers() -> None:
    """From now on, sys.stdout and sys.stderr as `ReaderGone` streams (once: a second call
    changes nothing)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, ReaderGone):
            setattr(sys, name, ReaderGone(stream))


def write_bytes(stream: TextIO, data: bytes) -> None:
    """`data` into a text stream as the bytes they are (a step's output, as it printed it):
    into its binary buffer, after what its text layer holds, where it has one; decoded into
    one that has none (a StringIO)."""
    if isinstance(stream, ReaderGone):
        stream.write_bytes(data)
        return
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(data.decode("utf-8", "replace"))
        stream.flush()
        return
    stream.flush()
    buffer.write(data)
    buffer.flush()
