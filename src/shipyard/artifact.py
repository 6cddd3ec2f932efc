"""Release artifacts: find the one a build made, and fingerprint what was unpacked (unpacking
it safely is `shipyard.unpacking`)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from shipyard.errors import UsageError
from shipyard.evidence import file_sha256
from shipyard.unpacking import UnsafeArtifact

__all__ = ["file_sha256", "find_artifact", "tree_sha256"]


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
    but the relative paths in `skip` and any folder named in `skip_folders`, wherever it is."""
    digest = hashlib.sha256()
    for folder, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(name for name in dirnames if name not in skip_folders)
        for name in sorted(filenames + [d for d in dirnames if Path(folder, d).is_symlink()]):
            path = Path(folder, name)
            relative = path.relative_to(directory).as_posix()
            if relative in skip:
                continue
            content = str(path.readlink()) if path.is_symlink() else file_sha256(path)
            digest.update(f"{relative}\0{content}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
