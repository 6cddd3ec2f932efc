"""Build once, promote; and the history of what was promoted.

A Fly deploy builds its image once, before the artifact smoke:
`flyctl deploy --build-only --push --image-label <label>` (no release, no machine changed:
reference §2 step 2), and reads the ref from flyctl's `image: <ref>` line. The deploy then
promotes that ref with `flyctl deploy --image <ref>`, so what was smoke-tested (when docker
could run it) is what Fly runs. A later deploy of the same clean commit reuses the ref an
earlier run recorded, once Fly confirms it still has it.

Whether Fly still has an image is asked with `flyctl deploy --build-only --image <ref>`: it
resolves the image (local docker daemon, then Fly's API) and returns before any release
(reference §2: `--image` → resolve; `--build-only` returns there), failing with
`could not find image "<ref>"` when it is gone.

The environment's audit trail (`.shipyard/<env>/audit.jsonl`) keeps, besides the deploy and
rollback entries, one `fly_image` entry per image pushed and one `fly_release` entry per
release a Shipyard flyctl deploy made (its image and how flyctl ended), so releases older than
the 25 `flyctl releases` lists can still be rolled back to.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shipyard import audit
from shipyard.errors import StepFailed, UsageError
from shipyard.targets.base import Call, Made, Release, ReleaseStatus
from shipyard.targets.fly.client import Flyctl, FlyResult
from shipyard.targets.images import BuiltImage, Source, image_label

FLY_LISTS = 25  # `flyctl releases` shows the newest 25 releases, no more (reference §3)
REGISTRY = "registry.fly.io"
IMAGE_EVENT = "fly_image"
RELEASE_EVENT = "fly_release"
_IMAGE_LINE = re.compile(r"^\s*image:\s*(\S+)\s*$")  # not `image size: …`
_GONE = "could not find image"
_INTERNAL_PORT = re.compile(r"^\s*internal_port\s*=\s*(\d+)", re.MULTILINE)
_STATUSES = {s.value: s for s in (ReleaseStatus.COMPLETE, ReleaseStatus.FAILED)}


def build_args(app: str, fly_config: str, label: str) -> list[str]:
    return [
        *("deploy", "--app", app, "--config", fly_config),
        *("--build-only", "--push", "--image-label", label),
    ]


def check_args(app: str, fly_config: str, ref: str) -> list[str]:
    return ["deploy", "--app", app, "--config", fly_config, "--build-only", "--image", ref]


def expected_ref(app: str, label: str) -> str:
    """The ref a build labelled `label` pushes (reference §10.2); the `image:` line decides."""
    return f"{REGISTRY}/{app}:{label}"


def image_line(line: str) -> str | None:
    """The ref of flyctl's `image: <ref>` line, or None."""
    found = _IMAGE_LINE.match(line)
    return found.group(1) if found else None


def internal_port(fly_toml: Path) -> int | None:
    """The first `internal_port = N` of the fly.toml ([http_service] or [[services]]): where
    the app listens inside its image. A regular expression, not TOML: Python 3.10 has none."""
    try:
        found = _INTERNAL_PORT.search(fly_toml.read_text(errors="replace"))
    except OSError:
        return None
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class ImageCheck:
    """Whether Fly still has an image: True, False (flyctl says it cannot find it) or None
    (not checked: flyctl failed otherwise), and what was asked or why not."""

    found: bool | None
    detail: str

    def line(self, ref: str) -> str:
        if self.found is None:
            return f"image {ref}: not checked ({self.detail})"
        return f"image {ref}: {'found on Fly' if self.found else 'gone from Fly'} ({self.detail})"


def judge_check(result: FlyResult, command: str) -> ImageCheck:
    if result.exit_code == 0:
        return ImageCheck(True, f"`{command}` resolved it")
    if _GONE in result.stderr:
        return ImageCheck(False, f"`{command}`: {result.message}")
    return ImageCheck(None, result.failure("deploy --build-only --image"))


def check_image(client: Flyctl, fly_config: str, ref: str, stop: threading.Event) -> ImageCheck:
    """Ask Fly whether it still has `ref` (bounded by read_timeout; never retried)."""
    args = check_args(client.app, fly_config, ref)
    return judge_check(client.run(args, stop), client.command_line(args))


@dataclass(frozen=True)
class History:
    """The Fly part of an environment's audit trail, for one app."""

    trail: Path
    app: str

    def _entries(self, event: str) -> Iterable[dict[str, Any]]:
        for entry in audit.read(self.trail):
            if entry.get("event") == event and entry.get("app") == self.app:
                yield entry

    def pushed(self, label: str, git_sha: str) -> dict[str, Any] | None:
        """The newest image entry an earlier run pushed for this clean commit and label."""
        found = None
        for entry in self._entries(IMAGE_EVENT):
            clean = entry.get("dirty") is False and entry.get("git_sha") == git_sha
            if clean and entry.get("label") == label and isinstance(entry.get("image"), str):
                found = entry
        return found

    def record_image(self, image: BuiltImage, source: Source) -> None:
        audit.append(
            self.trail,
            IMAGE_EVENT,
            app=self.app,
            image=image.ref,
            label=image.label,
            git_sha=source.git_sha,
            dirty=source.dirty,
        )

    def record_release(self, made: Made, status: str) -> None:
        """A release a flyctl deploy made, with its image: Fly lists only its newest 25."""
        if made.release and made.image:
            audit.append(
                self.trail,
                RELEASE_EVENT,
                app=self.app,
                release=made.release,
                image=made.image,
                status=status,
            )

    def releases_before(self, oldest: int, *, bad: set[str], current: int) -> list[Release]:
        """The recorded releases older than v`oldest` (the oldest Fly lists), oldest first."""
        found: dict[int, Release] = {}
        for entry in self._entries(RELEASE_EVENT):
            version = str(entry.get("release") or "")
            if not (version.startswith("v") and version[1:].isdigit()):
                continue
            number = int(version[1:])
            if number >= oldest:
                continue
            status = _STATUSES.get(str(entry.get("status")), ReleaseStatus.BUILDING)
            if status is ReleaseStatus.COMPLETE and version in bad:
                status = ReleaseStatus.BAD
            found[number] = Release(
                version=version,
                status=status,
                created_at=str(entry.get("at") or "") or None,
                user=str(entry.get("user") or "") or None,
                current=number == current,
                image=str(entry.get("image") or "") or None,
            )
        return [found[number] for number in sorted(found)]


@dataclass(frozen=True)
class ImageBuilder:
    """Builds an environment's image once, or finds the one an earlier run pushed."""

    client: Flyctl
    fly_config: str  # as flyctl's --config gets it (relative to the project)
    fly_toml: Path
    history: History

    def plan(self, source: Source, call: Call, *, build: bool) -> tuple[str, str]:
        """The dry run's line and the ref the deploy would promote (read-only: one check)."""
        label = image_label(source)
        reusable = self._reusable(source, label, call)
        if reusable is not None:
            return f"image: reuse {reusable[0]} ({reusable[1]})", reusable[0]
        if not build:
            raise UsageError(self._nothing_to_reuse(source, label))
        args = build_args(self.client.app, self.fly_config, label)
        ref = expected_ref(self.client.app, label)
        return f"`{self.client.command_line(args)}` (builds and pushes {ref})", ref

    def build(self, source: Source, call: Call, *, build: bool) -> BuiltImage:
        label = image_label(source)
        port = internal_port(self.fly_toml)
        reusable = self._reusable(source, label, call)
        if reusable is not None:
            call.say(f"reusing {reusable[0]}: {reusable[1]}; not built again")
            return BuiltImage(reusable[0], label, reused=True, internal_port=port)
        if not build:
            raise UsageError(self._nothing_to_reuse(source, label))
        image = BuiltImage(self._push(label, call), label, internal_port=port)
        self.history.record_image(image, source)
        call.say(f"built and pushed {image.ref}")
        return image

    def _push(self, label: str, call: Call) -> str:
        """`flyctl deploy --build-only --push --image-label LABEL`, streamed; its image ref."""
        args = build_args(self.client.app, self.fly_config, label)
        refs: list[str] = []

        def say(line: str) -> None:
            call.say(line)
            ref = image_line(line)
            refs.extend([ref] if ref else [])

        call.say(f"$ {self.client.command_line(args)}")
        result, _ = self.client.stream(args, replace(call, say=say))
        if result.exit_code != 0:
            raise StepFailed(result.failure("deploy --build-only"))
        if not refs:
            raise StepFailed("flyctl deploy --build-only printed no `image: <ref>` line")
        return refs[-1]

    def _reusable(self, source: Source, label: str, call: Call) -> tuple[str, str] | None:
        """The ref an earlier run pushed for this clean commit, and why it may be reused;
        None when there is none, or Fly no longer has it (said)."""
        entry = self.history.pushed(label, source.git_sha or "") if source.reusable else None
        if entry is None:
            return None
        ref = str(entry["image"])
        check = check_image(self.client, self.fly_config, ref, call.stop)
        if check.found is False:
            call.say(f"{check.line(ref)}: building it again")
            return None
        pushed = f"pushed for {label} by the run of {entry.get('at')}"
        return ref, f"{pushed}; {check.line(ref)}"

    def _nothing_to_reuse(self, source: Source, label: str) -> str:
        if not source.reusable:
            tree = "uncommitted changes" if source.git_sha else "no git commit"
            return f"--no-build: only a clean commit's image is reused, and this tree has {tree}"
        return (
            f"--no-build: no image {label} of {self.client.app} recorded in"
            f" {self.history.trail} (or Fly no longer has it): deploy without --no-build"
        )
