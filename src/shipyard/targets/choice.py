"""Which release a rollback goes back to: one rule for every target, to which a target adds its
judges (`RollbackRules`).

`--to vN` is refused when the target lists no vN, when going back to it would change nothing
(the target judges), or when it never passed its smoke (neither `complete` nor `bad`); a `bad`
one may be chosen so, and the reason says it. Without `--to`: the newest `complete` release
older than the current one that the target does not pass over, naming each one passed over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shipyard.targets.base import Release, ReleaseStatus

# A target's word on one release: why (it is refused, skipped, or what to add), or None.
Judge = Callable[[Release], "str | None"]


def _nothing_to_say(_: Release) -> str | None:
    return None


def _no_such_release(_: str) -> str:
    return "no such release"


@dataclass(frozen=True)
class RollbackRules:
    """What a target adds to the shared choice; by default, nothing."""

    in_place: Judge = _nothing_to_say  # why `--to` it would change nothing: refused
    passed_over: Judge = _nothing_to_say  # why the automatic choice skips a complete release
    note: Judge = _nothing_to_say  # what choosing it with `--to` adds to the reason
    missing: Callable[[str], str] = _no_such_release  # what `--to vN` of an unlisted vN says


@dataclass(frozen=True)
class Choice:
    release: Release | None  # the release to roll back to; None: there is none
    reason: str  # why that one, or why none


def choose_rollback(
    releases: Sequence[Release], current: str | None, to: str | None, rules: RollbackRules
) -> Choice:
    """The release `--to` names, if it may be gone back to; or else the newest complete one
    older than `current` that `rules` do not pass over."""
    if to is not None:
        return _asked(releases, to, rules)
    if current is None:
        return Choice(None, "no current release: nothing has been deployed successfully")
    return _newest_older(releases, current, rules)


def _asked(releases: Sequence[Release], to: str, rules: RollbackRules) -> Choice:
    release = next((r for r in releases if r.version == to), None)
    if release is None:
        return Choice(None, f"--to {to}: {rules.missing(to)}")
    in_place = rules.in_place(release)
    if in_place is not None:
        return Choice(None, f"--to {to}: {in_place}")
    if release.status not in (ReleaseStatus.COMPLETE, ReleaseStatus.BAD):
        return Choice(None, f"--to {to}: it is {release.status.value}, never passed its smoke")
    bad = release.status is ReleaseStatus.BAD
    marked = " (marked bad earlier; chosen explicitly)" if bad else ""
    note = rules.note(release)
    return Choice(release, f"asked for with --to{marked}" + (f": {note}" if note else ""))


def _newest_older(releases: Sequence[Release], current: str, rules: RollbackRules) -> Choice:
    below = int(current.lstrip("v"))
    older = [r for r in releases if r.status is ReleaseStatus.COMPLETE and r.number < below]
    skipped: list[str] = []
    for release in sorted(older, key=lambda r: r.number, reverse=True):
        why = rules.passed_over(release)
        if why is None:
            reason = f"newest complete, not-bad release older than {current}"
            return Choice(release, reason + _skipped(skipped))
        skipped.append(f"{release.version}: {why}")
    return Choice(None, f"no complete, not-bad release older than {current}" + _skipped(skipped))


def _skipped(skipped: list[str]) -> str:
    return f"; skipped {'; '.join(skipped)}" if skipped else ""
