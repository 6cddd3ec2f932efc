"""Release artifacts: find the one a build made, and fingerprint what was unpacked (unpacking
it safely is `shipyard.unpacking`)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from shipyard.errors import UsageError
from shipyard.evidence import file_sha256
from shipyard.unpacking import UnsafeArtifact

__all__ = ["digest", "file_sha256", "find_artifact", "tree_entries", "tree_sha256"]


def find_artifact(root: Path, pattern: str) -> Path:
    """The newest file matching `pattern` (a glob relative to `root`)."""
    try:
        matches = [path for path in root.glob(pattern) if path.is_file()]
    except (NotImplementedError, ValueError) as error:  # an absolute or empty pattern
        problem = f"artifact: '{pattern}' is not a glob relative to {root} ({error})"
        raise UsageError(problem) from None
    if not matches:
        raise UsageError(f"no artifact matches '{pattern}' under {root} (run the build first)")
    newest = max(matches, key=lambda path: (path.stat().st_mtime_ns, path.name))
    real, top = newest.resolve(), root.resolve()
    if top != real and top not in real.parents:  # through a link that leaves the project
        raise UnsafeArtifact(f"artifact: {newest.relative_to(root)} is {real}, outside {top}")
    return newest


# --- fingerprints --------------------------------------------------------------------------


def tree_sha256(
    directory: Path,
    *,
    skip: frozenset[str] = frozenset(),
    skip_folders: frozenset[str] = frozenset(),
) -> str:
    """One digest over every file and link under `directory` (names, contents, link targets),
    but the relative paths in `skip` (a folder with all under it) and any folder named in
    `skip_folders`, wherever it is."""
    return digest(tree_entries(directory, skip=skip, skip_folders=skip_folders))


def tree_entries(
    directory: Path,
    *,
    skip: frozenset[str] = frozenset(),
    skip_folders: frozenset[str] = frozenset(),
) -> dict[str, str]:
    """Each file and link under `directory` (relative POSIX path) and what `tree_sha256` hashes
    of it: a file's sha256, a link's target; in the order the digest takes them."""
    entries: dict[str, str] = {}
    for folder, dirnames, filenames in os.walk(directory):
        below = Path(folder).relative_to(directory)
        dirnames[:] = sorted(
            name
            for name in dirnames
            if name not in skip_folders and (below / name).as_posix() not in skip
        )
        for name in sorted(filenames + [d for d in dirnames if Path(folder, d).is_symlink()]):
            path = Path(folder, name)
            relative = path.relative_to(directory).as_posix()
            if relative not in skip:
                entries[relative] = _content(path)
    return entries


def _content(path: Path) -> str:
    """What the digest takes of one entry: a link's target, a file's sha256; for what cannot
    be read as a file (a socket or FIFO an app made, a file it made unreadable), the reason,
    never a wait on a FIFO or an error."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return str(path.readlink())
    if not stat.S_ISREG(mode):
        return "not a regular file"
    try:
        return file_sha256(path)
    except OSError as error:
        return f"unreadable: {error.strerror or error}"


def digest(entries: dict[str, str]) -> str:
    """The sha256 of a tree's entries, as `tree_entries` lists them."""
    hashed = hashlib.sha256()
    for relative, content in entries.items():
        hashed.update(f"{relative}\0{content}\n".encode("utf-8", "surrogateescape"))
    return hashed.hexdigest()
