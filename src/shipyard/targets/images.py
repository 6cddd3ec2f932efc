"""What a target that deploys container images adds to a deploy: it builds (or reuses) the
image once, before the artifact smoke, and the deploy then promotes that very image.

A target is such a target when it satisfies `BuildsImages` (the Fly target does; the local
target deploys the tarball itself). The image is labelled from the tree it is built from
(`image_label`), so a later deploy of the same clean commit can find it again.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

from shipyard.targets.base import Call

LABEL_SHA = 12  # hex digits of the commit (and of the diff) in a label


@dataclass(frozen=True)
class Source:
    """The tree an image is built from, as the deploy's preflight recorded it."""

    git_sha: str | None
    dirty: bool = False
    diff_sha256: str | None = None

    @property
    def reusable(self) -> bool:
        """Only a clean commit names what is in the image: a dirty tree or no git never does."""
        return bool(self.git_sha) and not self.dirty


def image_label(source: Source, *, now: datetime | None = None) -> str:
    """`sha-<12 hex>` for a clean commit; `sha-<12 hex>-dirty-<12 hex of git diff HEAD>-<6 hex>`
    for uncommitted changes; `build-<UTC time>-<6 hex>` outside git. (Docker tags:
    [A-Za-z0-9_.-].) Only a clean commit's label names one content: the others end with a
    random part, so a build never takes over the tag of an earlier image a rollback may need
    (the diff leaves untracked files out, and two builds can share a second)."""
    unique = secrets.token_hex(3)
    if not source.git_sha:
        moment = now or datetime.now(timezone.utc)
        return f"build-{moment.strftime('%Y%m%dT%H%M%SZ')}-{unique}"
    label = f"sha-{source.git_sha[:LABEL_SHA]}"
    if source.dirty:
        label += f"-dirty-{(source.diff_sha256 or 'unknown')[:LABEL_SHA]}-{unique}"
    return label


@dataclass(frozen=True)
class BuiltImage:
    """The image a deploy smoke-tests and promotes."""

    ref: str  # as the build printed it (`image: <ref>`), passed verbatim to the deploy
    label: str
    reused: bool = False  # pushed by an earlier run for the same clean commit: not rebuilt
    internal_port: int | None = None  # where the app listens inside the image (fly.toml)


@runtime_checkable
class BuildsImages(Protocol):
    """A target whose deploy ships an image built from the tree rather than the tarball."""

    def plan_image(self, source: Source, call: Call, *, build: bool) -> tuple[str, str]:
        """The dry run's line (the build command and the ref, or the image reused), and the
        ref the deploy would promote. Read-only."""
        ...

    def build_image(self, source: Source, call: Call, *, build: bool) -> BuiltImage:
        """Build and push the image (or reuse the one an earlier run pushed for this clean
        commit; with `build=False` only reuse, else UsageError)."""
        ...
