"""Release artifacts: find the one a build made, unpack it safely, fingerprint what was unpacked."""

from __future__ import annotations

import hashlib
import os
import posixpath
import tarfile
from pathlib import Path

from shipyard.errors import UsageError
from shipyard.evidence import file_sha256

__all__ = ["UnsafeArtifact", "file_sha256", "find_artifact", "tree_sha256", "unpack"]


class UnsafeArtifact(UsageError):
    """An archive member would land outside the release folder, or is not a plain file."""

    exit_code = UsageError.exit_code


def find_artifact(root: Path, pattern: str) -> Path:
    """The newest file matching `pattern` (a glob relative to `root`)."""
    try:
        matches = [path for path in root.glob(pattern) if path.is_file()]
    except (NotImplementedError, ValueError) as error:  # an absolute or empty pattern
        problem = f"artifact: '{pattern}' is not a glob relative to {root} ({error})"
        raise UsageError(problem) from None
    if not matches:
        raise UsageError(f"no artifact matches '{pattern}' under {root} (run the build first)")
    return max(matches, key=lambda path: (path.stat().st_mtime_ns, path.name))


def unpack(archive: Path, destination: Path) -> None:
    """Extract a tarball into `destination`, refusing anything that could escape it.

    Refused: absolute names, `..`, links whose target leaves the folder, hard links,
    devices and fifos, setuid/setgid/sticky bits. Nothing is written unless all members pass.
    """
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            destination.mkdir(parents=True, exist_ok=True)
            for member in members:
                _extract(tar, member, destination)
                _apply_mode(member, destination)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise UsageError(f"{archive.name}: not a readable tar archive ({error})") from None


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = member.name
    normal = posixpath.normpath(name)
    where = f"{archive.name}: member {name!r}"
    if name.startswith("/") or normal == ".." or normal.startswith("../"):
        raise UnsafeArtifact(f"{where} would be written outside the release folder")
    if member.islnk():
        raise UnsafeArtifact(f"{where} is a hard link (not allowed in artifacts)")
    if member.issym() and _link_escapes(normal, member.linkname):
        raise UnsafeArtifact(f"{where} links outside the release folder ({member.linkname!r})")
    if not (member.isfile() or member.isdir() or member.issym()):
        raise UnsafeArtifact(f"{where} is a device, fifo or other special file")
    if member.mode & 0o7000:
        raise UnsafeArtifact(f"{where} has setuid, setgid or sticky bits")


def _link_escapes(member_name: str, target: str) -> bool:
    if target.startswith("/"):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(member_name), target))
    return resolved == ".." or resolved.startswith("../")


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, destination: Path) -> None:
    """Members were checked above; the stdlib's own filter (3.12+, backports) is the second line."""
    if hasattr(tarfile, "data_filter"):
        tar.extract(member, destination, set_attrs=False, filter="data")
    else:  # pragma: no cover - a Python without the extraction filters
        tar.extract(member, destination, set_attrs=False)


def _apply_mode(member: tarfile.TarInfo, destination: Path) -> None:
    if member.isfile():
        executable = member.mode & 0o111
        (destination / member.name).chmod(0o755 if executable else 0o644)


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
