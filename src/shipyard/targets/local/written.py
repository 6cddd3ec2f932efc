"""What was written into a release folder after it was unpacked: the list of its files taken
then (`release.files.json`, beside release.json: each file's sha256, each link's target, as
the tree's sha256 hashes them) compared with what is there now. `inv status` and a
rollback's plan name what differs, with each file's mtime, instead of only refusing.

A release unpacked before the list was kept has none: that its files changed is known (its
tree's sha256), which ones is not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from shipyard import files
from shipyard.wording import counted

FILE_LIST = "release.files.json"
SHOWN = 5  # files named in one line; the rest are counted


@dataclass(frozen=True)
class Change:
    path: str  # relative to the release folder
    how: str  # "added", "changed" or "removed"
    mtime: float | None = None  # when it was last written; None for a removed file


@dataclass(frozen=True)
class Written:
    """The files of a release folder that differ from its recorded list."""

    changes: tuple[Change, ...]

    @classmethod
    def between(cls, folder: Path, recorded: Mapping[str, str], now: Mapping[str, str]) -> Written:
        """`now` (the folder's entries) against `recorded`: written ones first, oldest first."""
        present = [
            Change(path, "changed" if path in recorded else "added", _mtime(folder / path))
            for path, content in now.items()
            if recorded.get(path) != content
        ]
        present.sort(key=lambda change: (change.mtime or 0.0, change.path))
        removed = [Change(path, "removed") for path in recorded if path not in now]
        return cls((*present, *removed))

    def describe(self) -> str:
        """One line: how many files were written since when, the first few of them with their
        mtimes, then the removed ones."""
        present = [c for c in self.changes if c.how != "removed"]
        removed = [c for c in self.changes if c.how == "removed"]
        parts = []
        if present:
            since = _when(present[0].mtime)
            named = [f"{_shown(c.path)} ({c.how} {_when(c.mtime)})" for c in present[:SHOWN]]
            parts.append(
                f"{counted(len(present), 'file')} written since {since}: {_list(named, present)}"
            )
        if removed:
            named = [_shown(c.path) for c in removed[:SHOWN]]
            parts.append(f"{counted(len(removed), 'file')} removed: {_list(named, removed)}")
        return "; ".join(parts) or "every file is as listed in its " + FILE_LIST


def record(folder: Path, entries: Mapping[str, str], *, scratch: Path) -> None:
    """The release's file list, written beside its files (atomically, through `scratch`)."""
    document = {"files": dict(entries)}
    files.write_atomic(folder / FILE_LIST, json.dumps(document).encode(), scratch=scratch)


def recorded(folder: Path) -> dict[str, str] | None:
    """The release's file list; None when there is none, or it does not read as one."""
    try:
        document = json.loads((folder / FILE_LIST).read_bytes())
    except (OSError, ValueError):
        return None
    listed = document.get("files") if isinstance(document, dict) else None
    if not isinstance(listed, dict) or not all(isinstance(v, str) for v in listed.values()):
        return None
    return listed


def _mtime(path: Path) -> float | None:
    try:
        return path.lstat().st_mtime
    except OSError:  # gone since it was listed
        return None


def _when(mtime: float | None) -> str:
    if mtime is None:
        return "?"  # gone since it was listed
    return datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _list(named: list[str], changes: list[Change]) -> str:
    more = len(changes) - len(named)
    return ", ".join(named) + (f" and {more} more" if more else "")


def _shown(path: str) -> str:
    return path if path.isprintable() else repr(path)
