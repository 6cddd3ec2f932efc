"""Shared paths (an environment's `shared:`): folders every release of the environment uses,
kept in the state folder and linked into each release folder when it is deployed, before its
server starts and before its tree's sha256 is taken. What the app writes there (logs, caches,
a SQLite file, Flask's `instance/`) outlives the release and is no change to its files.

    <state dir>/shared/<path>/    the folder, made by the first deploy that lists it; kept
    releases/v<N>/<path>          a relative link to it (`../../shared/<path>`)

Something the artifact has at a shared path is refused (exit 2, nothing that serves touched):
the link would hide what the build put there. An empty folder is the one exception: the link
replaces it, as nothing is lost.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from shipyard.config.checks import Check, Where, relative_path, unique_items
from shipyard.config.where import quote
from shipyard.errors import PreflightError
from shipyard.unpacking import UnsafeArtifact

SHARED_DIR = "shared"


def paths_check(reserved: Iterable[str]) -> Check[tuple[str, ...]]:
    """The check of `shared:`: a list of relative paths (no `..`, not absolute), each listed
    once, none inside another, none a file Shipyard keeps in a release folder (`reserved`)."""
    taken = frozenset(reserved)

    def check(value: object, where: Where) -> tuple[str, ...]:
        what = "a list of relative paths, like [log, tmp, instance]"
        places = unique_items(value, where, relative_path, what)
        for path, place in places.items():
            if path.split("/")[0] in taken:
                place.fail(f"{quote(path)} is a file Shipyard keeps in each release folder")
            outer = next((other for other in places if path.startswith(other + "/")), None)
            if outer is not None:
                place.fail(
                    f"{quote(path)} is inside {quote(outer)}, listed as {places[outer].path}"
                )
        return tuple(places)

    return check


def link(
    release: Path, shared_dir: Path, paths: Iterable[str], *, artifact: str, root: Path
) -> None:
    """Each of `paths` in the release folder made a link to its folder under `shared_dir`
    (made when missing). Every path is checked before anything is made: UnsafeArtifact when
    the artifact (named `artifact`) has something there, or a link or file on the way."""
    paths = tuple(paths)
    for path in paths:
        _make_room(release, path, artifact)
    for path in paths:
        source = ensure(shared_dir, path, root=root)
        place = release / path
        place.parent.mkdir(parents=True, exist_ok=True)
        place.symlink_to(os.path.relpath(source, place.parent))


def ensure(shared_dir: Path, path: str, *, root: Path) -> Path:
    """The shared folder of `path`, made when missing; PreflightError when something else
    (a file) is in its place (shown relative to the project's `root`)."""
    source = shared_dir / path
    try:
        source.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        shown = source.relative_to(root) if source.is_relative_to(root) else source
        raise PreflightError(
            f"{shown} is not a folder, and `shared:` keeps one there: move it away, then"
            " deploy again"
        ) from None
    return source


def _make_room(release: Path, path: str, artifact: str) -> None:
    """Nothing at `path` in the release folder, or an empty folder (removed); folders only on
    the way to it, so that the link lands where it is named."""
    parts = Path(path).parts
    for depth in range(1, len(parts)):
        on_the_way = release.joinpath(*parts[:depth])
        if on_the_way.is_symlink() or (on_the_way.exists() and not on_the_way.is_dir()):
            raise UnsafeArtifact(
                f"{artifact}: {'/'.join(parts[:depth])} is not a folder, so the shared path"
                f" {quote(path)} cannot be linked there: leave it out of the build, or out of"
                " `shared:`"
            )
    place = release / path
    if place.is_dir() and not place.is_symlink() and not any(place.iterdir()):
        place.rmdir()  # an empty folder: the link replaces it, nothing is lost
    elif place.is_symlink() or place.exists():
        raise UnsafeArtifact(
            f"{artifact}: has {quote(path)}, a path listed in `shared:`, whose link would hide"
            " it: leave it out of the build (an empty folder is fine), or out of `shared:`"
        )
