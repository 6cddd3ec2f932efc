"""The one rollback choice (`shipyard.targets.choice`), with each target's judges: which
release `inv rollback` goes back to and the `why:` line it prints, or why it goes nowhere.
Plain data in, no processes."""

from __future__ import annotations

import pytest

from shipyard.targets.base import Release, ReleaseStatus
from shipyard.targets.choice import Choice, RollbackRules, choose_rollback
from shipyard.targets.fly.state import RunningImage
from shipyard.targets.fly.target import rollback_rules as fly_rules
from shipyard.targets.local.plans import rollback_choice
from shipyard.targets.local.plans import rollback_rules as local_rules
from shipyard.targets.local.serving import Switch

COMPLETE, BAD, FAILED = ReleaseStatus.COMPLETE, ReleaseStatus.BAD, ReleaseStatus.FAILED


def image(number: int) -> str:
    return f"registry.fly.io/app:deployment-{number}"


def releases(*statuses: ReleaseStatus, images: tuple[int, ...] = ()) -> list[Release]:
    """v1, v2, ... with these statuses; each runs image N (v<N>'s own), or `images`[N-1]."""
    return [
        Release(f"v{n}", status, image=image(images[n - 1] if images else n))
        for n, status in enumerate(statuses, 1)
    ]


def running(reference: str | None, *, made_by: str) -> RunningImage:
    """Two machines on the image `reference`, put there by the deploy of `made_by`."""
    return RunningImage(((str(reference), ""), (str(reference), "")), (made_by,))


def chosen(choice: Choice) -> tuple[str | None, str]:
    return (choice.release.version if choice.release else None, choice.reason)


# --- without --to: the newest complete release older than current ----------------------------


def test_no_current_release_is_nothing_to_roll_back_to_for_every_target():
    fly = fly_rules([], None, RunningImage((), ()))
    for rules in (RollbackRules(), local_rules(None, None), fly):
        assert chosen(choose_rollback([], None, None, rules)) == (
            None,
            "no current release: nothing has been deployed successfully",
        )


def test_the_newest_complete_release_older_than_current_skipping_any_other_status():
    listed = releases(COMPLETE, COMPLETE, BAD, FAILED, COMPLETE, ReleaseStatus.BUILDING)
    choice = choose_rollback(listed, "v5", None, local_rules("v5", "v5"))
    assert chosen(choice) == ("v2", "newest complete, not-bad release older than v5")


def test_none_older_names_what_it_looked_for():
    choice = choose_rollback(releases(BAD, COMPLETE), "v2", None, local_rules("v2", "v2"))
    assert chosen(choice) == (None, "no complete, not-bad release older than v2")


def test_fly_passes_over_the_image_that_runs_and_says_so():
    # v4 (v2's image) was rolled back to from v3; Fly lists v3 as bad
    listed = releases(COMPLETE, COMPLETE, BAD, COMPLETE, images=(1, 2, 3, 2))
    rules = fly_rules(listed, "v4", running(image(2), made_by="v4"))
    assert chosen(choose_rollback(listed, "v4", None, rules)) == (
        "v1",
        "newest complete, not-bad release older than v4;"
        f" skipped v2: its image {image(2)} is already running (as v4)",
    )


def test_fly_passes_over_an_image_rolled_back_from_under_another_release():
    # v5 ran v3's image and was rolled back from (to v2's image, as v6)
    listed = releases(COMPLETE, COMPLETE, COMPLETE, BAD, BAD, COMPLETE, images=(1, 2, 3, 4, 3, 2))
    rules = fly_rules(listed, "v6", running(image(2), made_by="v6"))
    assert chosen(choose_rollback(listed, "v6", None, rules)) == (
        "v1",
        "newest complete, not-bad release older than v6;"
        " skipped v3: its image was rolled back from as v5;"
        f" v2: its image {image(2)} is already running (as v6)",
    )


def test_fly_with_every_older_image_passed_over_goes_nowhere_and_names_them():
    listed = releases(COMPLETE, BAD, COMPLETE, images=(1, 2, 1))
    rules = fly_rules(listed, "v3", running(image(1), made_by="v3"))
    assert chosen(choose_rollback(listed, "v3", None, rules)) == (
        None,
        "no complete, not-bad release older than v3;"
        f" skipped v1: its image {image(1)} is already running (as v3)",
    )


# --- --to vN ----------------------------------------------------------------------------------

TARGETS = ["local", "fly"]


def serving_current(target: str, listed: list[Release], current: str) -> RollbackRules:
    """The target's judges while `current` serves (on Fly: its image, on every machine)."""
    if target == "local":
        return local_rules(current, current)
    runs = next(release for release in listed if release.version == current)
    return fly_rules(listed, current, running(runs.image, made_by=current))


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("local", "--to v9: no such release"),
        (
            "fly",
            "--to v9: Fly lists no release v9 with an image, nor does the audit trail record one",
        ),
    ],
)
def test_to_a_release_not_listed_is_refused_in_the_targets_words(target, reason):
    listed = releases(COMPLETE, COMPLETE)
    choice = choose_rollback(listed, "v2", "v9", serving_current(target, listed, "v2"))
    assert chosen(choice) == (None, reason)


@pytest.mark.parametrize("status", [FAILED, ReleaseStatus.BUILDING, ReleaseStatus.INTERRUPTED])
@pytest.mark.parametrize("target", TARGETS)
def test_to_a_release_that_never_passed_its_smoke_is_refused(target, status):
    listed = releases(COMPLETE, status, COMPLETE)
    choice = choose_rollback(listed, "v3", "v2", serving_current(target, listed, "v3"))
    assert chosen(choice) == (None, f"--to v2: it is {status.value}, never passed its smoke")


@pytest.mark.parametrize("target", TARGETS)
def test_to_a_complete_release_or_a_bad_one_is_chosen_and_a_bad_one_says_so(target):
    listed = releases(COMPLETE, BAD, COMPLETE)
    rules = serving_current(target, listed, "v3")
    assert chosen(choose_rollback(listed, "v3", "v1", rules)) == ("v1", "asked for with --to")
    assert chosen(choose_rollback(listed, "v3", "v2", rules)) == (
        "v2",
        "asked for with --to (marked bad earlier; chosen explicitly)",
    )


def test_to_the_local_release_current_and_serving_is_refused():
    listed = releases(COMPLETE, COMPLETE)
    choice = choose_rollback(listed, "v2", "v2", local_rules("v2", "v2"))
    assert chosen(choice) == (None, "--to v2: that is the release already serving (and current)")


@pytest.mark.parametrize(("serves", "note"), [(None, "nothing serves"), ("v3", "v3 serves")])
def test_to_the_local_current_release_that_does_not_serve_starts_it_again(serves, note):
    listed = releases(COMPLETE, COMPLETE, ReleaseStatus.BUILDING)
    choice = choose_rollback(listed, "v2", "v2", local_rules("v2", serves))
    assert chosen(choice) == ("v2", f"asked for with --to: v2 is current, but {note}")


def test_to_a_fly_release_whose_image_every_machine_runs_is_refused():
    listed = releases(COMPLETE, COMPLETE, BAD, COMPLETE, images=(1, 2, 3, 2))
    rules = fly_rules(listed, "v4", running(image(2), made_by="v4"))
    assert chosen(choose_rollback(listed, "v4", "v2", rules)) == (
        None,
        f"--to v2: v2's image {image(2)} is already running (as v4)",
    )


def test_to_the_current_fly_release_is_refused_even_when_its_image_does_not_run():
    listed = releases(COMPLETE, COMPLETE, images=(1, 2))
    # the machines were put back on v1's image outside Shipyard
    rules = fly_rules(listed, "v2", running(image(1), made_by="v1"))
    assert chosen(choose_rollback(listed, "v2", "v2", rules)) == (
        None,
        "--to v2: it is the current release",
    )


# --- the local target's own case: after an interrupted switch, back to current -----------------

SWITCH = Switch("v2", "v3")  # v2 was current; the switch to v3 never finished


@pytest.mark.parametrize(("serves", "note"), [(None, "nothing serves"), ("v3", "v3 serves")])
def test_after_an_interrupted_switch_the_local_rollback_goes_back_to_current(serves, note):
    listed = releases(COMPLETE, COMPLETE, ReleaseStatus.BUILDING)
    assert chosen(rollback_choice(listed, "v2", serves, SWITCH, None)) == (
        "v2",
        f"a switch from v2 to v3 was interrupted ({note}): back to v2, the current release,"
        " which is not marked bad",
    )


def test_after_an_interrupted_switch_to_and_a_current_not_complete_take_the_shared_choice():
    listed = releases(COMPLETE, COMPLETE, ReleaseStatus.BUILDING)
    assert chosen(rollback_choice(listed, "v2", "v3", SWITCH, "v1")) == (
        "v1",
        "asked for with --to",
    )
    listed = releases(COMPLETE, BAD, ReleaseStatus.BUILDING)
    assert chosen(rollback_choice(listed, "v2", None, SWITCH, None)) == (
        "v1",
        "newest complete, not-bad release older than v2",
    )
