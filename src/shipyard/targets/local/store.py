"""The local target's releases on disk: one folder per release, beside its unpacked files its
`release.json` (status, who made it, from what), and the `current` link. Only files: what
serves is `serving`'s, which release to make or go back to is `target`'s.

    <state dir>/releases/v<N>/   unpacked artifact + release.json + release.files.json,
                                 and a link to each shared path (`shared`)
    <state dir>/current          symlink to releases/v<N>, switched by os.replace()

A state file that no code path can read or replace safely (`current` that is not a link, a
`release.json` that is a directory; `serving` adds a damaged `state.json`) is `DamagedState`:
named in one line with the way out, before anything is changed (exit 2).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import Any

from shipyard import artifact, audit, files, unpacking
from shipyard.errors import PreflightError, StepFailed
from shipyard.heartbeat import iso_timestamp
from shipyard.targets.base import DeployPlan, Release, ReleaseStatus
from shipyard.targets.local import shared, written
from shipyard.targets.local.written import FILE_LIST, Written

RELEASE_FILE = "release.json"
VERSION = re.compile(r"v([1-9][0-9]*)")
# What a served app writes beside its own code (Python's bytecode, unless
# PYTHONDONTWRITEBYTECODE is set): not a change to the release's files.
_CACHES = frozenset({"__pycache__"})


class DamagedState(PreflightError):
    """A file of the environment's state that cannot be read or replaced safely: refused
    before anything runs (exit 2), in one line naming it and the way out."""


def shown(path: Path, root: Path) -> str:
    """`path` as a plan or a run names it: relative to the project's root when under it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def write_json(path: Path, document: dict[str, Any], *, scratch: Path) -> None:
    """`document` to `path` with `files.write_atomic`, its temp file in `scratch`."""
    data = (json.dumps(document, indent=2) + "\n").encode()
    files.write_atomic(path, data, scratch=scratch)


def new_record(plan: DeployPlan, archive: Path, *, root: Path) -> dict[str, Any]:
    """release.json: who made the release, from what (the tree's state is the plan's)."""
    from shipyard.git import head_sha

    dirty = {"dirty": True, "diff_sha256": plan.diff_sha256} if plan.dirty else {}
    return {
        "version": plan.release,
        "status": ReleaseStatus.BUILDING.value,
        "created_at": iso_timestamp(),
        "artifact": archive.name,
        "artifact_sha256": artifact.file_sha256(archive),
        "git_sha": plan.git_sha or head_sha(root),
        **dirty,
        "user": audit.current_user(),
        "host": socket.gethostname(),
    }


class ReleaseStore:
    """The release folders and the `current` link in an environment's state folder."""

    def __init__(
        self,
        state_dir: Path,
        limits: unpacking.UnpackLimits = unpacking.DEFAULT_LIMITS,
        shared_paths: tuple[str, ...] = (),
    ) -> None:
        self.state_dir = state_dir
        self.limits = limits  # what an artifact may unpack to
        self.shared_paths = shared_paths  # linked into each new release (`shared:`)

    @property
    def releases_dir(self) -> Path:
        return self.state_dir / "releases"

    @property
    def current_link(self) -> Path:
        return self.state_dir / "current"

    @property
    def shared_dir(self) -> Path:
        return self.state_dir / shared.SHARED_DIR

    @property
    def root(self) -> Path:
        """The project's root: a state folder is `<root>/.shipyard/<env>`."""
        return self.state_dir.parent.parent

    def release_dir(self, version: str) -> Path:
        return self.releases_dir / version

    # --- reading (never changes anything) ------------------------------------------------

    def releases(self) -> list[Release]:
        """Every release folder, oldest first; an unreadable release.json reads as `building`."""
        if not self.releases_dir.is_dir():
            return []
        current = self.current_version()
        versions = [p.name for p in self.releases_dir.iterdir() if VERSION.fullmatch(p.name)]
        found = [self.release(version, current) for version in versions]
        return sorted(found, key=lambda release: release.number)

    def release(self, version: str, current: str | None) -> Release:
        """`version` as its release.json describes it; `current` names the current release."""
        record = self.record(version)
        try:
            status = ReleaseStatus(record.get("status"))
        except ValueError:
            status = ReleaseStatus.BUILDING  # unreadable: never served, never a rollback target
        return Release(
            version=version,
            status=status,
            created_at=record.get("created_at"),
            git_sha=record.get("git_sha"),
            artifact_sha256=record.get("artifact_sha256"),
            user=record.get("user"),
            current=version == current,
        )

    def record(self, version: str) -> dict[str, Any]:
        """The release's release.json; {} when it is missing or unreadable."""
        try:
            record = json.loads((self.release_dir(version) / RELEASE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def current_version(self) -> str | None:
        """The release `current` points at, or None (no link, a dangling or foreign one)."""
        try:
            target = self.current_link.readlink()
        except OSError:
            return None
        version = Path(target).name
        if not VERSION.fullmatch(version) or not self.release_dir(version).is_dir():
            return None
        return version

    def linked(self, version: str) -> tuple[str, ...]:
        """The shared paths linked into the release when it was deployed (release.json's
        `shared`): its tree's sha256 leaves them out."""
        paths = self.record(version).get("shared")
        return tuple(p for p in paths if isinstance(p, str)) if isinstance(paths, list) else ()

    def entries(self, version: str, linked: tuple[str, ...]) -> dict[str, str]:
        """The release's files and links as its tree's sha256 hashes them: release.json, its
        file list, the `linked` shared paths and caches left out."""
        return artifact.tree_entries(
            self.release_dir(version),
            skip=frozenset({RELEASE_FILE, FILE_LIST, *linked}),
            skip_folders=_CACHES,
        )

    def tree(self, version: str) -> str:
        """The sha256 of the release's files, as unpacked (see `entries`)."""
        return artifact.digest(self.entries(version, self.linked(version)))

    def changed(self, version: str) -> str | None:
        """None when the release's files are as unpacked (their sha256 is the one recorded);
        else which ones were written, added or removed since, in one line."""
        now = self.entries(version, self.linked(version))
        if self.record(version).get("tree_sha256") == artifact.digest(now):
            return None
        listed = written.recorded(self.release_dir(version))
        if listed is None:
            return f"which ones is not known: {version} has no {FILE_LIST} (an older Shipyard's)"
        return Written.between(self.release_dir(version), listed, now).describe()

    def check(self) -> None:
        """DamagedState when `current` is there but is not a link (a deploy could not replace
        it), or a release's `release.json` is a directory (its status could not be written).
        A dangling `current` and an unreadable `release.json` are not damage: they read as
        no current release and as `building`, and the next deploy repairs them."""
        link, env = self.current_link, self.state_dir.name
        if link.exists() and not link.is_symlink():
            raise DamagedState(
                f"{shown(link, self.root)} is damaged (not a link to a release): move it away,"
                f" then deploy again (or `inv rollback --env {env} --to vN`)"
            )
        for release in self.releases():
            record = self.release_dir(release.version) / RELEASE_FILE
            if record.is_dir():
                raise DamagedState(
                    f"{shown(record, self.root)} is damaged (a directory, not a file): remove"
                    f" it ({release.version} then reads as `building`), then deploy again"
                )

    def last_number(self) -> int:
        """The highest release number there is a folder for; 0 when there is none."""
        numbers = [
            int(match[1])
            for path in (self.releases_dir.iterdir() if self.releases_dir.is_dir() else ())
            if (match := VERSION.fullmatch(path.name))
        ]
        return max(numbers, default=0)

    # --- writing ---------------------------------------------------------------------------

    def claim(self, version: str) -> None:
        """Make the release's folder, which claims the version: no two deploys write one."""
        self.releases_dir.mkdir(parents=True, exist_ok=True)
        self.release_dir(version).mkdir()

    def unpack(self, version: str, archive: Path, record: dict[str, Any]) -> str:
        """The artifact into the claimed folder, beside release.json (`record`), the shared
        paths linked into it; then its file list and, in release.json, the shared paths and
        the sha256 of the tree, which this returns once release.json reads back with it."""
        folder, linked = self.release_dir(version), self.shared_paths
        self.write_record(version, record)
        written.record(folder, {}, scratch=self.state_dir)  # a member of that name: refused
        unpacking.unpack(archive, folder, self.limits)
        shared.link(folder, self.shared_dir, linked, artifact=archive.name, root=self.root)
        entries = self.entries(version, linked)
        written.record(folder, entries, scratch=self.state_dir)
        tree = artifact.digest(entries)
        self.write_record(
            version, {**record, **({"shared": list(linked)} if linked else {}), "tree_sha256": tree}
        )
        if self.record(version).get("tree_sha256") != tree:
            where = shown(self.release_dir(version) / RELEASE_FILE, self.root)
            raise StepFailed(f"{where} does not read back with the unpacked tree's sha256")
        return tree

    def ensure_shared(self, version: str) -> None:
        """The shared folders linked into the release, made again when missing (removed by
        hand since it was deployed), before its server starts."""
        for path in self.linked(version):
            shared.ensure(self.shared_dir, path, root=self.root)

    def set_status(self, version: str, status: ReleaseStatus) -> None:
        record = self.record(version)
        self.write_record(
            version, {**record, "status": status.value, "updated_at": iso_timestamp()}
        )

    def write_record(self, version: str, record: dict[str, Any]) -> None:
        write_json(self.release_dir(version) / RELEASE_FILE, record, scratch=self.state_dir)

    def point_current(self, version: str) -> None:
        """Point `current` at the release with one rename(2): readers see old or new, never none."""
        temp = self.state_dir / f".current.{secrets.token_hex(4)}"
        temp.symlink_to(Path("releases") / version)
        temp.replace(self.current_link)

    def remove(self, version: str) -> None:
        """The release's folder, gone at once (renamed away), then deleted."""
        trash = self.releases_dir / f".trash-{version}-{secrets.token_hex(4)}"
        self.release_dir(version).rename(trash)  # gone at once; deleting may take longer
        shutil.rmtree(trash, ignore_errors=True)

    def discard(self, version: str) -> str | None:
        """A release that never served, removed (its space back on a full disk); None when
        it is gone, else why it is not."""
        try:
            self.remove(version)
        except OSError as error:
            shutil.rmtree(self.release_dir(version), ignore_errors=True)
            if self.release_dir(version).exists():
                return f"{error.strerror or error}"
        return None
