"""Fly's state as flyctl's JSON shows it: a release of `flyctl releases --json` as a `Release`,
and the machines of `flyctl machines list --json`: which serve the app, what they run
(`RunningImage`), and what keeps one from counting as healthy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shipyard.targets.base import Release, ReleaseStatus
from shipyard.wording import counted

# Fly's release statuses; any other (running, pending...) reads as `building`
_STATUS = {
    "complete": ReleaseStatus.COMPLETE,
    "failed": ReleaseStatus.FAILED,
    "interrupted": ReleaseStatus.INTERRUPTED,
}
# flaps ListActive leaves out release-command and console machines (reference §5)
_NOT_THE_APP = ("fly_app_release_command", "fly_app_console")


def release_of(item: dict[str, Any], *, bad: set[str], current: int) -> Release:
    """One item of `flyctl releases --json`; a complete one in `bad` reads as `bad`."""
    version = f"v{item.get('Version', 0)}"
    status = _STATUS.get(str(item.get("Status")), ReleaseStatus.BUILDING)
    if status is ReleaseStatus.COMPLETE and version in bad:
        status = ReleaseStatus.BAD
    user = item.get("User") or {}
    return Release(
        version=version,
        status=status,
        created_at=item.get("CreatedAt"),
        user=user.get("Email") or user.get("Name") or None,
        current=item.get("Version") == current,
        image=item.get("ImageRef") or None,
    )


def serves_the_app(machine: dict[str, Any]) -> bool:
    metadata = (machine.get("config") or {}).get("metadata") or {}
    return (
        machine.get("state") not in ("destroyed", "destroying")
        and metadata.get("fly_process_group") not in _NOT_THE_APP
    )


@dataclass(frozen=True)
class Problem:
    """What keeps a machine from counting as healthy; `output`: a check's last output."""

    machine: str  # its id ("" for a problem of the app: no machine serves it)
    what: str
    output: str | None = None

    def __str__(self) -> str:
        said = f"machine {self.machine} {self.what}" if self.machine else self.what
        return f"{said}: {self.output}" if self.output else said


def machine_health(machine: dict[str, Any], version: int) -> list[Problem]:
    """Why the machine does not count as healthy on release v`version` (0: on any release)."""
    name = str(machine.get("id", "?"))
    problems = []
    if machine.get("state") != "started":
        problems.append(Problem(name, f"is {machine.get('state')}"))
    for check in machine.get("checks") or []:
        if check.get("status") != "passing":
            what = f"check {check.get('name')} is {check.get('status') or 'unknown'}"
            problems.append(Problem(name, what, check.get("output") or None))
    metadata = (machine.get("config") or {}).get("metadata") or {}
    on = metadata.get("fly_release_version")
    if version and on != str(version):
        problems.append(Problem(name, f"runs release v{on}, not v{version}"))
    return problems


@dataclass(frozen=True)
class RunningImage:
    """What the app's machines run: each one's `config.image` and `image_ref.digest`, and the
    releases whose deploys put them there (`fly_release_version` in their metadata)."""

    machines: tuple[tuple[str, str], ...]  # (image, digest) per machine
    releases: tuple[str, ...]  # "v5", oldest first

    @classmethod
    def of(cls, machines: Iterable[dict[str, Any]]) -> RunningImage:
        pairs: list[tuple[str, str]] = []
        releases: set[int] = set()
        for machine in machines:
            config = machine.get("config") or {}
            digest = (machine.get("image_ref") or {}).get("digest") or ""
            pairs.append((str(config.get("image") or ""), str(digest)))
            version = (config.get("metadata") or {}).get("fly_release_version")
            releases |= {int(str(version))} if str(version).isdigit() else set()
        return cls(tuple(pairs), tuple(f"v{number}" for number in sorted(releases)))

    @property
    def image(self) -> str | None:
        """The one image every machine runs, or None (no machines, or several images)."""
        images = {image for image, _ in self.machines}
        return images.pop() if len(images) == 1 and "" not in images else None

    def is_only(self, image: str | None) -> bool:
        """Whether every machine runs `image` (by reference, or by its `@sha256:` digest):
        deploying it again would change nothing."""
        digest = (image or "").partition("@")[2]
        return bool(image and self.machines) and all(
            image == runs or (digest and digest == runs_digest)
            for runs, runs_digest in self.machines
        )

    def where(self) -> str:
        return f"(as {', '.join(self.releases)})" if self.releases else "(on every machine)"

    def describe(self) -> str:
        if not self.machines:
            return "nothing: no machine serves the app"
        images = ", ".join(sorted({image or "(no image)" for image, _ in self.machines}))
        made = f" (as {', '.join(self.releases)})" if self.releases else ""
        return f"{images}{made} on {counted(len(self.machines), 'machine')}"
