"""The Fly policy: releases and their statuses, the health verdict from the machines, which
release a rollback deploys (by image), and deploy, restore and undo, through `Flyctl`; Fly's
JSON is read by `state`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard import audit
from shipyard.config import Config, Environment
from shipyard.errors import PreflightError, StepFailed
from shipyard.records import DeployRecord
from shipyard.smoke import SmokeCheck
from shipyard.targets.base import (
    Call,
    DeployPlan,
    Made,
    Release,
    ReleaseStatus,
    RollbackPlan,
    Status,
    TargetFailed,
    state_dir,
)
from shipyard.targets.choice import Choice, Judge, RollbackRules, choose_rollback
from shipyard.targets.fly import images
from shipyard.targets.fly.client import Flyctl, deploy_deadline
from shipyard.targets.fly.health import (
    default_health_timeout,
    problems_of,
    settle_seconds,
    wait_until_healthy,
)
from shipyard.targets.fly.options import CHECKS, REQUIRED, FlyOptions
from shipyard.targets.fly.state import RunningImage, release_of, serves_the_app
from shipyard.targets.images import BuiltImage, Source
from shipyard.targets.kinds import TargetKind
from shipyard.wording import counted

TOKEN_VARIABLES = ("FLY_ACCESS_TOKEN", "FLY_API_TOKEN")  # flyctl reads ACCESS first
# How Shipyard's audit log records a rollback that took, and a deploy that had to be undone.
# ("rolled back" is what rollback events said before their outcome became "ok".)
_ROLLED_BACK = {"rollback": ("ok", "rolled back"), "deploy": ("rolled back", "down")}


@dataclass(frozen=True)
class FlyRollbackPlan(RollbackPlan):
    """A rollback plan that also names what its undo puts back."""

    running_image: str | None = None  # the one image every machine ran as it was planned


class FlyTarget:
    """The `Target` of a Fly app. It keeps nothing between calls: what a deploy made travels
    in the `Made` it returns, and "the newest release before this deploy" comes from its plan."""

    name = "fly"

    def __init__(
        self, config: Config, environment: Environment, options: FlyOptions | None = None
    ) -> None:
        self.config = config
        self.env = environment
        self.options = options or FlyOptions(**FLY.checked_options(config, environment))
        self.app = self.options.app
        self.state_dir = state_dir(config, environment)

    # --- preflight -----------------------------------------------------------------------

    def preflight(self) -> None:
        """flyctl, a token, the fly.toml: one line naming what is missing and how to fix it."""
        self.flyctl()
        if not any(os.environ.get(name) for name in TOKEN_VARIABLES):
            raise PreflightError(
                f"FLY_API_TOKEN is not set (nor FLY_ACCESS_TOKEN): environment {self.env.name}"
                f" deploys to Fly app {self.app}; create a token with"
                f" `fly tokens create deploy -a {self.app}` and export it as FLY_API_TOKEN"
                " (in GitHub Actions: an environment secret)"
            )
        if self.options.fly_config and not self.fly_toml.is_file():
            raise PreflightError(
                f"environments.{self.env.name}.fly_config: {self.options.fly_config} not found"
                f" under {self.config.root} (run `fly launch --no-deploy` or fix the path)"
            )

    def preflight_deploy(self) -> None:
        """Everything a Fly deploy needs was checked by `preflight`."""

    def flyctl(self) -> str:
        if self.options.flyctl:
            path = Path(self.options.flyctl)
            path = path if path.is_absolute() else self.config.root / path
            if not os.access(path, os.X_OK):
                raise PreflightError(
                    f"environments.{self.env.name}.flyctl: {path} is not an executable"
                )
            return str(path)
        found = shutil.which("flyctl") or shutil.which("fly")
        if found is None:
            raise PreflightError(
                "flyctl not found on PATH (nor fly): install it (https://fly.io/docs/flyctl/install/)"
                f" or set environments.{self.env.name}.flyctl"
            )
        return found

    @property
    def fly_toml(self) -> Path:
        return self.config.root / (self.options.fly_config or "fly.toml")

    def _client(self) -> Flyctl:
        """flyctl as this environment runs it, the binary found afresh as `preflight` finds it."""
        return Flyctl(self.flyctl(), self.app, self.config.root, self.options.read_timeout)

    # --- reading Fly's state -------------------------------------------------------------

    def releases(self, call: Call) -> list[Release]:
        """Fly's releases (its 25 newest), oldest first; rolled-back-from ones read as `bad`.
        When Fly lists 25, the older ones this environment's deploys recorded come first."""
        listed = self._client().read_json(call, "releases") or []
        bad = self._rolled_back_from()
        newest = max((item.get("Version", 0) for item in listed), default=0)
        found = [release_of(item, bad=bad, current=newest) for item in listed]
        if len(listed) >= images.FLY_LISTS:
            oldest = min(release.number for release in found)
            found += self._history().releases_before(oldest, bad=bad, current=newest)
        return sorted(found, key=lambda release: release.number)

    def _history(self) -> images.History:
        return images.History(self.state_dir / "audit.jsonl", self.app)

    def _rolled_back_from(self) -> set[str]:
        """Releases this environment left by a rollback, or whose deploy was rolled back."""
        bad: set[str] = set()
        for entry in audit.read(self.state_dir / "audit.jsonl"):
            event = entry.get("event")
            if entry.get("outcome") not in _ROLLED_BACK.get(str(event), ()):
                continue
            record = DeployRecord.from_json(entry)
            left = record.previous if event == "rollback" else record.release
            if left:
                bad.add(left)
        return bad

    def status(self, call: Call) -> Status:
        state = self._client().read_json(call, "status")
        current = f"v{state.get('Version', 0)}" if state.get("Version") else None
        machines = self._machines(call)  # one snapshot: the count and the problems agree
        problems = [str(problem) for problem in problems_of(machines, state.get("Version", 0))]
        started = f"{counted(len(machines), 'machine')} started and passing"
        return Status(
            environment=self.env.name,
            target=self.name,
            current=current,
            serving=current,
            url=self.smoke_check().url,
            healthy=not problems,
            detail="; ".join(problems) or started,
        )

    def _machines(self, call: Call) -> list[dict[str, Any]]:
        listed = self._client().read_json(call, "machines", "list") or []
        return [m for m in listed if serves_the_app(m)]

    def running(self, call: Call) -> RunningImage:
        """What the app's machines run now, from `flyctl machines list` (not from the newest
        release's ImageRef: a failed or interrupted deploy leaves machines on other images)."""
        return RunningImage.of(self._machines(call))

    def smoke_check(self) -> SmokeCheck:
        smoke = self.env.smoke
        url = smoke.url or f"https://{self.app}.fly.dev{smoke.path}"
        return SmokeCheck(url, smoke.expect_status, smoke.contains, smoke.timeout)

    # --- deploy ------------------------------------------------------------------------

    def deploy_args(self, image: str | None = None, *, rollback: bool = False) -> list[str]:
        args = ["deploy", "--app", self.app, "--config", self.options.fly_config or "fly.toml"]
        args += ["--image", image] if image else []
        args += [
            "--strategy",
            self.options.strategy,
            "--wait-timeout",
            f"{self.options.wait_timeout:g}s",
        ]
        if rollback and not self.options.rollback_release_command:
            args.append("--skip-release-command")
        return args

    def command_line(self, args: Sequence[str]) -> str:
        return self._client().command_line(args)

    def plan_deploy(self, artifact: str | None, call: Call) -> DeployPlan:
        """`release` is the newest release Fly lists plus one: what the deploy expects to make,
        and the bound above which a deploy that printed no release line looks for it."""
        releases = self.releases(call)
        previous = _newest_good(releases)
        return DeployPlan(
            environment=self.env.name,
            target=self.name,
            release=f"v{(releases[-1].number if releases else 0) + 1}",
            previous=previous.version if previous else None,
            artifact=artifact,
            actions=(
                f"`{self.command_line(self.deploy_args(artifact))}` with FLY_EMIT_RELEASE_JSON=1",
            ),
        )

    def deploy(self, plan: DeployPlan, call: Call) -> Made:
        """One flyctl deploy (never retried) of the image built (`plan.artifact`: the ref
        `build_image` returned): the release it made, as Fly lists it."""
        return self._deploy(self.deploy_args(plan.artifact), _number(plan.release) - 1, call)

    def plan_image(self, source: Source, call: Call, *, build: bool) -> tuple[str, str]:
        return self._images().plan(source, call, build=build)

    def build_image(self, source: Source, call: Call, *, build: bool) -> BuiltImage:
        return self._images().build(source, call, build=build)

    def _images(self) -> images.ImageBuilder:
        fly_config = self.options.fly_config or "fly.toml"
        return images.ImageBuilder(self._client(), fly_config, self.fly_toml, self._history())

    def _deploy(self, args: list[str], newest: int, call: Call) -> Made:
        """`flyctl deploy ARGS`, after which Fly's newest release was v`newest`. What it made
        comes from its release JSON line, else from Fly's list (a release newer than
        `newest`), else it is none: nothing is claimed that Fly does not show. A failure
        raises TargetFailed carrying that."""
        deadline = self._deploy_deadline(call)
        call.say(f"$ {self.command_line(args)}")
        result, created = self._client().stream(args, call, deadline=deadline)
        if created and result.exit_code == 0:
            made = Made(f"v{created['version']}", image=created.get("image_ref"))
        else:
            made = self._made_since(newest, call)
        self._record_release(made, "complete" if result.exit_code == 0 else "failed", call)
        if result.exit_code != 0:
            raise TargetFailed(result.failure("deploy"), made)
        image = created.get("image_ref") if created else "image unknown"
        call.say(f"fly release {made.release or '(none listed)'}: {image}")
        return made

    def _record_release(self, made: Made, status: str, call: Call) -> None:
        """Into the audit trail, for rollbacks beyond the 25 releases Fly lists."""
        try:
            self._history().record_release(made, status)
        except OSError as error:
            call.say(f"warning: {made.release} was not recorded in the audit trail: {error}")

    def _deploy_deadline(self, call: Call) -> float:
        """How long one flyctl deploy may run (`deploy_deadline`), for the machines serving
        the app now (one when Fly cannot be read); said in the step's output."""
        try:
            machines = len(self._machines(call))
        except StepFailed as error:
            call.say(f"could not count Fly's machines ({error.message}): counting one")
            machines = 1
        deadline = deploy_deadline(self.options.wait_timeout, machines)
        call.say(f"flyctl deploy deadline: {deadline.seconds:g}s ({deadline.why})")
        return deadline.seconds

    def _made_since(self, newest: int, call: Call) -> Made:
        """The newest release Fly lists above v`newest` (`known=False` when Fly could not be
        read): read after a deploy that printed no release line, after ^C too (the read is
        bounded, and no stop ends it)."""
        try:
            made = [r for r in self.releases(call.unstoppable()) if r.number > newest]
        except StepFailed as error:
            call.say(f"could not read Fly's releases to see what this deploy made: {error.message}")
            return Made(None, known=False)
        if not made:
            call.say(f"Fly lists no release after v{newest}: this deploy made none")
            return Made(None)
        call.say(f"Fly lists {made[-1].version} ({made[-1].status.value}) as made by this deploy")
        return Made(made[-1].version, image=made[-1].image)

    def health(self, made: Made, call: Call) -> None:
        """Fly's verdict: every machine started, every check passing, all on the new release
        (`made`'s, else the one Fly's status names)."""
        version = _number(made.release) or int(
            self._client().read_json(call, "status").get("Version") or 0
        )
        timeout = self.options.health_timeout or default_health_timeout(self.fly_toml)
        settle = settle_seconds(self.fly_toml)
        wait_until_healthy(lambda: self._machines(call), version, timeout, call, settle=settle)

    def alive(self) -> bool:
        return True  # nothing local to watch: the smoke's own timeout bounds it

    def commit(self, plan: DeployPlan, made: Made, call: Call) -> None:
        call.say(f"{made.release or 'the deployed release'} is Fly's current release")

    def restore(self, plan: DeployPlan, made: Made, call: Call) -> Made | None:
        """Deploy the image of the newest good release other than the one `made` (Made(None)
        when the failed deploy is known to have made no release: Fly still runs what it ran;
        None when there is no such release)."""
        if _made_none(made) and plan.previous:
            call.say("the deploy made no release on Fly, so nothing there changed")
            return Made(None)
        releases = self.releases(call)
        good = self._restorable([r for r in releases if r.version != made.release], call)
        if good is None or not good.image:
            call.say("no earlier complete release with an image Fly still has to restore")
            return None
        newest = max(_number(plan.release) - 1, _number(made.release), _newest(releases))
        return self._deploy(self.deploy_args(good.image, rollback=True), newest, call)

    def _restorable(self, releases: list[Release], call: Call) -> Release | None:
        """The newest complete release whose image Fly has not lost (asked first, as a
        rollback's plan asks: a restore that deploys a gone image fails and leaves the
        failed release in place); an image that could not be checked is tried."""
        gone = self._gone_judge({}, call)
        for release in reversed([r for r in releases if r.status is ReleaseStatus.COMPLETE]):
            why = gone(release) if release.image else "it has no image"
            if why is None:
                return release
            call.say(f"passing over {release.version} for the restore: {why}")
        return None

    # --- rollback ----------------------------------------------------------------------

    def plan_rollback(self, to: str | None, call: Call) -> FlyRollbackPlan:
        releases = self.releases(call)
        current = releases[-1].version if releases else None
        running = self.running(call)
        checked: dict[str, images.ImageCheck] = {}
        choice = _choose(releases, current, to, running, self._gone_judge(checked, call))
        checks = (
            f"Fly's machines run {running.describe()}",
            *(check.line(ref) for ref, check in checked.items()),
        )
        chosen = choice.release
        if chosen is None:
            return FlyRollbackPlan(
                self.env.name,
                self.name,
                current,
                None,
                choice.reason,
                checks=checks,
                running_image=running.image,
            )
        command = self.command_line(self.deploy_args(chosen.image, rollback=True))
        return FlyRollbackPlan(
            environment=self.env.name,
            target=self.name,
            current=current,
            to=chosen.version,
            reason=choice.reason,
            actions=(
                f"take the lock {self.state_dir.relative_to(self.config.root) / 'lock'}",
                f"`{command}` (a new release with {chosen.version}'s image)",
                f"check Fly's health verdict, then smoke {self.smoke_check().url}",
                f"record {current} as rolled back from, so later rollbacks skip it and its image",
            ),
            checks=(*checks, f"{chosen.version} is complete with image {chosen.image}"),
            running_image=running.image,
        )

    def _gone_judge(self, checked: dict[str, images.ImageCheck], call: Call) -> Judge:
        """Why a release's image is known to be gone from Fly (None: found, or not checked);
        each image asked about once, its answer kept in `checked` for the plan's checks."""
        fly_config = self.options.fly_config or "fly.toml"

        def gone(release: Release) -> str | None:
            ref = release.image or ""
            if ref not in checked:
                checked[ref] = images.check_image(self._client(), fly_config, ref, call.stop)
            if checked[ref].found is False:
                return f"its image {ref} is gone from Fly ({checked[ref].detail})"
            return None

        return gone

    def rollback(self, plan: RollbackPlan, call: Call) -> Made:
        """Deploy `plan.to`'s image as a new release; returns the release it made. When its
        image cannot be found (or Fly not read) no deploy ran: TargetFailed carries
        Made(None, known=False), so the undo still puts back what ran, as it always did."""
        try:
            image, listed = self._image_of(plan.to, call)
        except StepFailed as error:
            raise TargetFailed(error.message, Made(None, known=False)) from error
        newest = max(_number(plan.current), listed)
        return self._deploy(self.deploy_args(image, rollback=True), newest, call)

    def commit_rollback(self, plan: RollbackPlan, made: Made, call: Call) -> None:
        as_made = f" as {made.release}" if made.release else ""
        call.say(f"rolled back from {plan.current} to {plan.to}'s image{as_made}")

    def undo_rollback(self, plan: RollbackPlan, made: Made, call: Call) -> Made | None:
        """Put back the image the machines ran as the rollback was planned (`plan.current`'s
        when they ran several, or the plan was made elsewhere); returns the release that made."""
        if _made_none(made):  # flyctl gave up before making a release: nothing moved
            call.say("the rollback made no release on Fly, so nothing there changed")
            return Made(None)
        newest = max(_number(plan.current), _number(made.release))
        image = plan.running_image if isinstance(plan, FlyRollbackPlan) else None
        if image is None:
            image, listed = self._image_of(plan.current, call)
            newest = max(newest, listed)
        return self._deploy(self.deploy_args(image, rollback=True), newest, call)

    def _image_of(self, version: str | None, call: Call) -> tuple[str, int]:
        """`version`'s image, and the newest release number Fly lists."""
        releases = self.releases(call)
        for release in releases:
            if release.version == version and release.image:
                return release.image, _newest(releases)
        raise StepFailed(f"{version}: no such release with an image on Fly")


def _made_none(made: Made) -> bool:
    """Fly was read after the deploy (or rollback) and lists no release it made."""
    return made.known and made.release is None


def _number(version: str | None) -> int:
    return int((version or "v0").lstrip("v"))


def _newest(releases: list[Release]) -> int:
    return releases[-1].number if releases else 0


def _newest_good(releases: list[Release]) -> Release | None:
    good = [r for r in releases if r.status is ReleaseStatus.COMPLETE and r.image]
    return good[-1] if good else None


def _choose(
    releases: list[Release],
    current: str | None,
    to: str | None,
    running: RunningImage,
    gone: Judge = lambda _: None,
) -> Choice:
    """The release whose image to deploy, and why; or None and why none. Fly can go back only
    to a release with an image, and chooses by image, not by number."""
    rules = rollback_rules(releases, current, running, gone)
    return choose_rollback([r for r in releases if r.image], current, to, rules)


def rollback_rules(
    releases: list[Release],
    current: str | None,
    running: RunningImage,
    gone: Judge = lambda _: None,
) -> RollbackRules:
    """Fly's judges: deploying the image every machine runs would change nothing, nor would
    the current release (refused with `--to`); the automatic choice also passes over every
    image rolled back from (a rollback rejects an image: other releases of it are no better).
    `gone` says why a release's image is known to be gone from Fly: refused, passed over."""
    left = _images_left(releases)

    def in_place(release: Release) -> str | None:
        if running.is_only(release.image):
            return f"{release.version}'s image {release.image} is already running {running.where()}"
        if release.version == current:
            return "it is the current release"
        passed = release.status in (ReleaseStatus.COMPLETE, ReleaseStatus.BAD)
        return gone(release) if passed else None

    def passed_over(release: Release) -> str | None:
        if running.is_only(release.image):
            return f"its image {release.image} is already running {running.where()}"
        rolled_back_from = left.get(release.image or "")
        if rolled_back_from:
            return f"its image was rolled back from as {', '.join(rolled_back_from)}"
        return gone(release)

    def missing(to: str) -> str:
        return f"Fly lists no release {to} with an image, nor does the audit trail record one"

    return RollbackRules(in_place=in_place, passed_over=passed_over, missing=missing)


def _images_left(releases: list[Release]) -> dict[str, list[str]]:
    """Image -> the releases rolled back from that ran it."""
    left: dict[str, list[str]] = {}
    for release in releases:
        if release.status is ReleaseStatus.BAD and release.image:
            left.setdefault(release.image, []).append(release.version)
    return left


FLY = TargetKind(
    options=CHECKS,
    make=lambda config, environment, options: FlyTarget(config, environment, FlyOptions(**options)),
    required=REQUIRED,
)
