"""Unpacking a release archive safely: `unpack` reads every member's header before it writes
anything and refuses the archive unless all of them pass (`_plan`): names, kinds, the links
between members, the size and member caps (`UnpackLimits`, an environment's
`max_unpacked_mib` and `max_archive_members`), the room on the disk. Only then does it write,
itself rather than through `tarfile`'s extraction, from the release folder down through
descriptors that never follow a link, and it takes back what it wrote if a write fails part
way.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.config import DEFAULT_MAX_ARCHIVE_MEMBERS, DEFAULT_MAX_UNPACKED_MIB, Environment
from shipyard.errors import ExitCode, ShipyardError, UsageError

try:
    import lzma

    _LZMA_ERRORS: tuple[type[Exception], ...] = (lzma.LZMAError,)
except ImportError:  # pragma: no cover - a Python built without lzma opens no .xz archive
    _LZMA_ERRORS = ()

MiB = 2**20
BLOCK_SIZE = 4096  # a member takes up to one filesystem block more than its size
ROOM_MARGIN = 10 * MiB  # left free beside the release: release.json, logs, state files
MAX_LINK_HOPS = 40  # links met inside links, at most (Linux follows 40 in one path)
PATH_MAX = 4096  # Linux's longest path; longer names or link targets serve no release
COPY_CHUNK = MiB
_READ_ERRORS: tuple[type[Exception], ...] = (
    tarfile.TarError,
    EOFError,
    OSError,
    zlib.error,
    *_LZMA_ERRORS,
)
# not in tarfile's __all__, but there since Python 3.2: a header that does not parse
_DAMAGED_HEADER: tuple[type[Exception], ...] = (
    tarfile.InvalidHeaderError,  # type: ignore[attr-defined]
    tarfile.TruncatedHeaderError,  # type: ignore[attr-defined]
)
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

Parts = tuple[str, ...]  # a member's path, split: ("app", "main.py"); () is the release folder


@dataclass(frozen=True)
class UnpackLimits:
    """What one archive may unpack to; beyond either figure it is refused before anything is
    written. The defaults sit far above a real release (an app with its dependencies is tens
    to hundreds of MiB; a bundled `node_modules` is tens of thousands of files) and far below
    what hurts a host: a gzip bomb stops at 2 GiB instead of filling the disk, and 100,000
    headers are a few tens of MiB in memory."""

    max_bytes: int = DEFAULT_MAX_UNPACKED_MIB * MiB
    max_members: int = DEFAULT_MAX_ARCHIVE_MEMBERS

    @classmethod
    def of(cls, environment: Environment) -> UnpackLimits:
        """An environment's `max_unpacked_mib` and `max_archive_members`."""
        return cls(environment.max_unpacked_mib * MiB, environment.max_archive_members)


DEFAULT_LIMITS = UnpackLimits()


class UnsafeArtifact(UsageError):
    """The archive could write or point outside the release folder, holds something other than
    plain files, folders and links, or is bigger than its `UnpackLimits`."""


class NoRoom(UsageError):
    """The disk that would hold the release folder has too little room for the archive."""


class UnpackFailed(ShipyardError):
    """Writing failed part way (disk full, file too big); the message says what is left."""

    exit_code = ExitCode.STEP_FAILED


class _Unreadable(Exception):
    """The archive could not be read while its files were being written."""


def unpack(archive: Path, destination: Path, limits: UnpackLimits = DEFAULT_LIMITS) -> None:
    """Extract a tarball into `destination`, refusing anything that could escape it.

    Refused (`UnsafeArtifact`, exit 2): absolute names and any `..` in a name; hard links,
    devices, fifos; setuid/setgid/sticky bits; a name used twice (but for folders); a member
    whose path goes through a link or a file; a link whose target, followed through the
    archive's own links, leaves the folder or goes round in a loop; more bytes or members
    than `limits`; in a `destination` already there, a member that would replace what is
    there (but a folder by a folder). `NoRoom` (exit 2) if the disk lacks the room (see
    `_check_room`). Nothing is written unless every member passes. Files get mode 0644, or
    0755 if any execute bit was set.

    If writing fails part way (`UnpackFailed`, exit 1; an unreadable archive: `UsageError`),
    everything this call wrote is removed, `destination` too if this call made it, and the
    message says so; if something could not be removed, the message says that it is left.
    """
    try:
        with tarfile.open(archive, tarinfo=_StrictHeader) as tar:
            plan = _plan(tar, archive, destination, limits)
            _check_clashes(archive, plan, destination)
            _check_room(archive, plan, destination)
            _write(tar, plan, archive, destination)
    except _READ_ERRORS as error:
        raise UsageError(f"{archive.name}: not a readable tar archive ({error})") from None


# --- checking: every header, before anything is written ----------------------------------


class _StrictHeader(tarfile.TarInfo):
    """tarfile ends an archive quietly at a header it cannot parse, so a damaged archive would
    unpack as a shorter release that looks whole; here that header is an error."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> _StrictHeader:
        try:
            return super().fromtarfile(tar)
        except _DAMAGED_HEADER as error:
            raise tarfile.ReadError(f"a damaged header at byte {tar.offset:,}: {error}") from None


@dataclass
class _Plan:
    members: list[tuple[tarfile.TarInfo, Parts]] = field(default_factory=list)
    total_bytes: int = 0


def _plan(tar: tarfile.TarFile, archive: Path, destination: Path, limits: UnpackLimits) -> _Plan:
    """The members to write, once every header has passed; `UnsafeArtifact` at the first that
    does not. Headers are read one by one, so a bomb stops at its first figure over a cap."""
    plan, tree = _Plan(), _Tree()
    for count, member in enumerate(tar, 1):
        if count > limits.max_members:
            raise UnsafeArtifact(
                f"{archive.name}: more than {limits.max_members:,} members (the limit)"
            )
        where = f"{archive.name}: member {_shown(member.name)}"
        parts = _checked_parts(member, where)
        tree.add(parts, member, where)
        plan.total_bytes += member.size if member.isfile() else 0
        if plan.total_bytes > limits.max_bytes:
            raise UnsafeArtifact(
                f"{where} brings the archive to {_mib(plan.total_bytes)} unpacked,"
                f" over the limit of {_mib(limits.max_bytes)}"
            )
        if parts:
            plan.members.append((member, parts))
    tree.check_links()
    for member, _ in plan.members:
        if member.issym():
            _stdlib_filter(member, destination, f"{archive.name}: member {_shown(member.name)}")
    return plan


def _checked_parts(member: tarfile.TarInfo, where: str) -> Parts:
    """The member's path, split, if its name, kind and mode are allowed."""
    if max(len(member.name), len(member.linkname)) > PATH_MAX:
        raise UnsafeArtifact(f"{where}: its name or link target is over {PATH_MAX:,} characters")
    parts = tuple(part for part in member.name.split("/") if part not in ("", "."))
    if member.name.startswith("/") or ".." in parts:
        raise UnsafeArtifact(f"{where} would be written outside the release folder")
    if member.islnk():
        raise UnsafeArtifact(f"{where} is a hard link (not allowed in artifacts)")
    if member.issym() and (not member.linkname or member.linkname.startswith("/")):
        raise UnsafeArtifact(
            f"{where} links outside the release folder ({_shown(member.linkname)})"
        )
    if not (member.isfile() or member.isdir() or member.issym()):
        raise UnsafeArtifact(f"{where} is a device, fifo or other special file")
    if member.mode & 0o7000:
        raise UnsafeArtifact(f"{where} has setuid, setgid or sticky bits")
    if member.size < 0:
        raise UnsafeArtifact(f"{where} declares a negative size (a damaged or forged header)")
    if not parts and not member.isdir():
        raise UnsafeArtifact(f"{where} would replace the release folder itself")
    return parts


@dataclass(eq=False)
class _Node:
    """One path of the release folder as the archive would leave it."""

    kind: str  # "folder", "file" or "link"
    parent: _Node | None  # None for the release folder itself
    children: dict[str, _Node] = field(default_factory=dict)
    target: str = ""  # a link's
    where: str = ""  # "<archive>: member '<name>'", for a refusal


class _Tree:
    """The release folder as the archive would leave it, from the headers alone. A parent no
    member names is a folder, as tar makes it. Each path is one thing for good: a name used
    twice is refused unless both are folders, so what is checked is what gets written."""

    def __init__(self) -> None:
        self.root = _Node("folder", None)
        self.links: list[_Node] = []
        self._resolved: dict[_Node, _Node | None] = {}

    def add(self, parts: Parts, member: tarfile.TarInfo, where: str) -> None:
        node = self.root
        for depth, name in enumerate(parts[:-1], 1):
            child = node.children.get(name)
            if child is None:
                child = node.children[name] = _Node("folder", node)
            elif child.kind != "folder":
                through = "/".join(parts[:depth])
                raise UnsafeArtifact(
                    f"{where} would be written through the {child.kind} {_shown(through)}"
                )
            node = child
        kind = "folder" if member.isdir() else "link" if member.issym() else "file"
        earlier = node.children.get(parts[-1]) if parts else self.root
        if earlier is not None and (earlier.kind, kind) != ("folder", "folder"):
            raise UnsafeArtifact(f"{where} is named twice (it would replace a {earlier.kind})")
        if earlier is None:
            leaf = _Node(kind, node, target=member.linkname if kind == "link" else "", where=where)
            node.children[parts[-1]] = leaf
            if kind == "link":
                self.links.append(leaf)

    def check_links(self) -> None:
        """Every link, followed through the links as the archive leaves them, lands in the
        folder: judged once all members are known, since a later link can change where an
        earlier one leads."""
        for link in self.links:
            if self._resolve(link, hops=1) is None:
                raise UnsafeArtifact(
                    f"{link.where} links outside the release folder or in a loop"
                    f" ({_shown(link.target)}, followed through the archive's links)"
                )

    def _resolve(self, link: _Node, *, hops: int) -> _Node | None:
        """Where `link` leads, walked as the kernel would from its folder: `..` to the parent,
        each link met followed (a path no member names is taken as a folder, where the kernel
        would fail instead). None if that leaves the root, loops, or passes MAX_LINK_HOPS.
        Each link is walked once (remembered), so the work is that of reading the targets."""
        if link in self._resolved or hops > MAX_LINK_HOPS:
            return self._resolved.get(link)
        self._resolved[link] = None  # while it is walked: met again, it is a loop
        position: _Node | None = link.parent
        for part in link.target.split("/"):
            if position is None:
                break
            if part == "..":
                position = position.parent
            elif part not in ("", "."):
                child = position.children.get(part) or _Node("folder", position)
                position = self._resolve(child, hops=hops + 1) if child.kind == "link" else child
        self._resolved[link] = position
        return position


def _stdlib_filter(member: tarfile.TarInfo, destination: Path, where: str) -> None:
    """tarfile's own `data` filter (3.12, 3.11.4, 3.10.12 and later), where there is one: a
    second opinion on a link, which it resolves through what is already on the disk (a link
    the folder held before this archive came), as the rules above cannot. Files and folders
    need none: the writer never goes through a link (O_NOFOLLOW at every step)."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:
        return
    try:
        data_filter(member, str(destination))
    except tarfile.FilterError as error:
        raise UnsafeArtifact(f"{where} is refused by tarfile's data filter ({error})") from None


def _check_clashes(archive: Path, plan: _Plan, destination: Path) -> None:
    """In a folder that is already there (the local target writes release.json first), no
    member may take the place of what is there, but a folder that of a folder."""
    if not destination.is_dir():
        return
    for member, parts in plan.members:
        path = destination.joinpath(*parts)
        try:
            there = path.lstat()
        except OSError:  # not there (or under a file, which writing will find)
            continue
        if not (member.isdir() and stat.S_ISDIR(there.st_mode)):
            raise UnsafeArtifact(
                f"{archive.name}: member {_shown(member.name)} would replace {path}, already there"
            )


def _check_room(archive: Path, plan: _Plan, destination: Path) -> None:
    """Room for the declared bytes, one block per member and `ROOM_MARGIN` to spare."""
    needed = plan.total_bytes + BLOCK_SIZE * len(plan.members) + ROOM_MARGIN
    folder = next(path for path in (destination, *destination.parents) if path.exists())
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise NoRoom(
            f"{archive.name}: unpacking needs {_mib(needed)}, {_mib(free)} free on the"
            f" filesystem of {folder}"
        )


def _shown(name: str) -> str:
    """A name for a one-line message: quoted, and cut if it is long."""
    return repr(name) if len(name) <= 200 else f"{name[:150]!r}...({len(name):,} characters)"


def _mib(count: int) -> str:
    return f"{count / MiB:,.1f} MiB"


# --- writing: only what was checked, never through a link --------------------------------


@dataclass
class _Written:
    """What one unpack made, in order, so that a failure can take it all back."""

    destination: Path
    folders_above: list[Path] = field(default_factory=list)  # destination and parents made
    entries: list[tuple[Parts, bool]] = field(default_factory=list)  # path, is a folder

    def remove(self) -> bool:
        """Remove what was made, newest first; False if something could not be removed."""
        removed = True
        for parts, is_folder in reversed(self.entries):
            removed &= _remove(self.destination.joinpath(*parts), folder=is_folder)
        for folder in reversed(self.folders_above):
            removed &= _remove(folder, folder=True)
        return removed


def _remove(path: Path, *, folder: bool) -> bool:
    try:
        if folder:
            path.rmdir()
        else:
            path.unlink()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _write(tar: tarfile.TarFile, plan: _Plan, archive: Path, destination: Path) -> None:
    written = _Written(destination)
    what = f"into {destination}"
    try:
        root = _open_destination(destination, written)
        try:
            for member, parts in plan.members:
                what = f"member {_shown(member.name)}"
                _write_member(tar, member, parts, root, written)
        finally:
            os.close(root)
    except BaseException as error:
        removed = written.remove()
        if isinstance(error, (OSError, _Unreadable)):
            raise _failure(error, archive, what, written, removed=removed) from None
        raise


def _open_destination(destination: Path, written: _Written) -> int:
    """A descriptor of `destination`, made (with any missing parent) if it is not there."""
    missing = []
    for folder in (destination, *destination.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        folder.mkdir(mode=0o755)
        written.folders_above.append(folder)
    return os.open(destination, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _write_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, parts: Parts, root: int, written: _Written
) -> None:
    folder = _open_folder(root, parts if member.isdir() else parts[:-1], written)
    try:
        if member.issym():
            os.symlink(member.linkname, parts[-1], dir_fd=folder)
            written.entries.append((parts, False))
        elif member.isfile():
            _write_file(tar, member, parts, folder, written)
    finally:
        os.close(folder)


def _open_folder(root: int, parts: Parts, written: _Written) -> int:
    """A descriptor of the folder `parts` under `root`, each folder made if missing; a link
    or a file on the way fails (O_NOFOLLOW), whatever the checks above concluded."""
    folder = os.dup(root)
    try:
        for depth, name in enumerate(parts, 1):
            try:
                inner = os.open(name, _FOLDER_FLAGS, dir_fd=folder)
            except FileNotFoundError:
                os.mkdir(name, 0o755, dir_fd=folder)
                written.entries.append((parts[:depth], True))
                inner = os.open(name, _FOLDER_FLAGS, dir_fd=folder)
            os.close(folder)
            folder = inner
    except BaseException:
        os.close(folder)
        raise
    return folder


def _write_file(
    tar: tarfile.TarFile, member: tarfile.TarInfo, parts: Parts, folder: int, written: _Written
) -> None:
    out = os.open(parts[-1], _NEW_FILE_FLAGS, 0o600, dir_fd=folder)
    written.entries.append((parts, False))
    try:
        os.fchmod(out, 0o755 if member.mode & 0o111 else 0o644)
        for chunk in _chunks(tar, member):
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view) :]
    finally:
        os.close(out)


def _chunks(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes]:
    """The member's data, counted as it is read: exactly its declared size, so a header
    cannot make more land on the disk than the caps were checked against."""
    try:
        source = tar.extractfile(member)
        remaining = member.size
        while remaining > 0:
            chunk = source.read(min(COPY_CHUNK, remaining)) if source is not None else b""
            if not chunk:
                raise _Unreadable("it ends inside the member")
            remaining -= len(chunk)
            yield chunk
    except _READ_ERRORS as error:
        raise _Unreadable(_cause(error)) from error


def _cause(error: BaseException) -> str:
    return error.strerror if isinstance(error, OSError) and error.strerror else str(error)


def _failure(
    error: BaseException, archive: Path, what: str, written: _Written, *, removed: bool
) -> ShipyardError:
    """One line: what failed, and what a caller finds in the folder now."""
    if not removed:
        left = f"some of what it wrote is left in {written.destination}: remove it"
    elif written.folders_above:
        left = f"{written.destination} is removed"
    else:
        left = f"what it wrote in {written.destination} is removed"
    if isinstance(error, _Unreadable):
        return UsageError(f"{archive.name}: not a readable tar archive at {what} ({error}); {left}")
    return UnpackFailed(f"{archive.name}: unpacking {what} failed ({_cause(error)}); {left}")
