"""Fly.io through flyctl: deploy, a health verdict from Fly's own state, releases, rollback.

flyctl has no rollback command: a rollback is `flyctl deploy --image <ImageRef>` of an earlier
release, which creates a new release (release numbers never go back), as Fly's own rollback
guide does. flyctl's commands, JSON and exit codes are those of https://fly.io/docs/flyctl/
(tests/fakes/flyctl follows them). The token reaches flyctl only through its environment.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from shipyard import audit
from shipyard.config import Config, Environment
from shipyard.errors import ExitCode, PreflightError, StepFailed
from shipyard.process import terminate_group
from shipyard.records import DeployRecord
from shipyard.smoke import SmokeCheck
from shipyard.targets.base import (
    DeployPlan,
    Observer,
    Release,
    ReleaseStatus,
    RollbackPlan,
    Say,
    Status,
    state_dir,
)

TOKEN_VARIABLES = ("FLY_ACCESS_TOKEN", "FLY_API_TOKEN")  # flyctl reads ACCESS first
STOP_GRACE = 10.0  # flyctl marks the release interrupted when it gets SIGTERM
READ_ATTEMPTS = 4
READ_SECONDS = 60.0
_TRANSIENT = re.compile(
    r"request canceled|Client\.Timeout|timeout|timed out|\b50[234]\b|connection reset|"
    r"connection refused|\bEOF\b|temporarily unavailable|i/o timeout",
    re.IGNORECASE,
)
_RELEASE_LINE = re.compile(r'^\{"id":.*"version":\s*\d+.*\}\s*$')
_MEANINGFUL = re.compile(r"[^\W_]")  # a letter or a digit: not a separator like `-------`
# flaps ListActive leaves out release-command and console machines (reference §5)
_NOT_THE_APP = ("fly_app_release_command", "fly_app_console")
OUTPUT_TAIL = 50  # lines of a deploy's output kept for its error message (flyctl's comes last)
_STATUS = {
    "complete": ReleaseStatus.COMPLETE,
    "failed": ReleaseStatus.FAILED,
    "interrupted": ReleaseStatus.INTERRUPTED,
}
# How Shipyard's audit log records a rollback that took, and a deploy that had to be undone.
# ("rolled back" is what rollback events said before their outcome became "ok".)
_ROLLED_BACK = {"rollback": ("ok", "rolled back"), "deploy": ("rolled back", "down")}


def _read_outcome(result: FlyResult) -> str:
    """ok; timeout (killed after read_timeout) or transient (126, flyctl's deadline, or a
    message the reference calls transient): both retried; or failed."""
    if result.exit_code == 0:
        return "ok"
    if result.exit_code == ExitCode.TIMEOUT:
        return "timeout"
    if result.exit_code == 126 or _TRANSIENT.search(result.stderr):
        return "transient"
    return "failed"


class TransientFlyError(Exception):
    """A read-only flyctl call failed in a way the reference calls transient."""


@dataclass(frozen=True)
class FlyResult:
    exit_code: int
    stdout: str
    stderr: str  # of a deploy (whose stderr goes to its stdout): the tail of its output

    @property
    def message(self) -> str | None:
        """flyctl's `Error: <message>`, else its last line with a letter or a digit in it:
        an interrupted flyctl (exit 127) prints no error, and may end on `-------`."""
        lines = [line.strip() for line in self.stderr.splitlines()]
        errors = [
            line.removeprefix("Error:").strip() for line in lines if line.startswith("Error:")
        ]
        said = [line for line in errors or lines if _MEANINGFUL.search(line)]
        return said[-1] if said else None

    def failure(self, command: str) -> str:
        said = self.message
        exited = f"flyctl {command} exited {self.exit_code}"
        return f"{exited}: {said}" if said else f"{exited} with no error message"


class FlyTarget:
    name = "fly"

    def __init__(self, config: Config, environment: Environment) -> None:
        self.config = config
        self.env = environment
        self.app = environment.app or ""
        self.state_dir = state_dir(config, environment)
        self.observe: Observer | None = None
        self.stop: threading.Event | None = None
        self.created: str | None = None  # the release this deploy made, as Fly lists it
        self._deployed: str | None = None  # the release the last flyctl deploy made
        self._made_none = False  # the last flyctl deploy failed and Fly lists nothing new
        self._newest_seen = 0  # the newest release number Fly has listed to us
        self._ran_before: RunningImage | None = None  # the machines' image, as a rollback began

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
        if self.env.fly_config and not self.fly_toml.is_file():
            raise PreflightError(
                f"environments.{self.env.name}.fly_config: {self.env.fly_config} not found"
                f" under {self.config.root} (run `fly launch --no-deploy` or fix the path)"
            )

    def preflight_deploy(self) -> None:
        """Everything a Fly deploy needs was checked by `preflight`."""

    def flyctl(self) -> str:
        if self.env.flyctl:
            path = Path(self.env.flyctl)
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
        return self.config.root / (self.env.fly_config or "fly.toml")

    # --- running flyctl --------------------------------------------------------------------

    def _argv(self, *args: str) -> list[str]:
        return [self.flyctl(), *args]

    def _start(
        self, args: Sequence[str], *, stderr: int, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """flyctl ARGS in its own process group (so it can be stopped whole), stdout piped."""
        return subprocess.Popen(
            self._argv(*args),
            cwd=self.config.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            errors="replace",
            start_new_session=True,
        )

    def _run(self, args: Sequence[str]) -> FlyResult:
        """A short read-only call: stdout (JSON) and stderr (the error) kept apart; a call
        still running after `read_timeout` is killed with its group and reads as exit 124."""
        process = self._start(args, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.env.read_timeout
        stop = self.stop or threading.Event()
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                stdout, stderr = process.communicate(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            return FlyResult(process.returncode, stdout, stderr)
        terminate_group(process, grace=1.0)  # type: ignore[arg-type]
        process.communicate()
        if stop.is_set():
            return FlyResult(int(ExitCode.INTERRUPTED), "", "interrupted")
        late = f"no answer within {self.env.read_timeout:g}s (read_timeout)"
        return FlyResult(int(ExitCode.TIMEOUT), "", late)

    def _stream(self, args: Sequence[str], say: Say) -> tuple[FlyResult, dict[str, Any] | None]:
        """A deploy: output streamed line by line through `say` (which masks it), the release
        JSON line picked out wherever it appears, stopped (SIGTERM, then SIGKILL) on `stop`."""
        process = self._start(
            args, stderr=subprocess.STDOUT, env={**os.environ, "FLY_EMIT_RELEASE_JSON": "1"}
        )
        watcher = threading.Thread(target=self._stop_when_asked, args=(process,), daemon=True)
        watcher.start()
        created, tail = None, deque[str](maxlen=OUTPUT_TAIL)
        for line in process.stdout or ():
            text = line.rstrip("\n")
            say(text)
            created = created or _release_line(text)
            tail.append(text)
        return FlyResult(process.wait(), "", "\n".join(tail)), created

    def _stop_when_asked(self, process: subprocess.Popen[str]) -> None:
        stop = self.stop or threading.Event()
        while process.poll() is None:
            if stop.wait(0.2):
                terminate_group(process, grace=STOP_GRACE)  # type: ignore[arg-type]
                return

    def _read_json(self, *args: str) -> Any:
        """A read-only `--json` call, retried on transient errors (bounded in attempts and time)."""
        command = " ".join(args[:2]) if args[:1] == ("machines",) else args[0]
        observe = self.observe or _print_retries
        attempt_number = 0

        def attempt() -> Any:
            nonlocal attempt_number
            attempt_number += 1
            observe(f"flyctl {command}", attempt_number, "start", None)
            result = self._run([*args, "--app", self.app, "--json"])
            outcome = _read_outcome(result)
            observe(f"flyctl {command}", attempt_number, outcome, result.exit_code)
            if outcome in ("timeout", "transient"):
                raise TransientFlyError(result.message or f"exit {result.exit_code}")
            if result.exit_code != 0:
                raise StepFailed(result.failure(command))
            return _parse_json(result.stdout, command)

        retrying = Retrying(
            stop=stop_after_attempt(READ_ATTEMPTS) | stop_after_delay(READ_SECONDS),
            wait=wait_exponential(multiplier=0.5, max=4) + wait_random(0, 0.25),
            retry=retry_if_exception_type(TransientFlyError),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except TransientFlyError as error:
            raise StepFailed(
                f"flyctl {command} kept failing ({attempt_number} attempts): {error}"
            ) from None

    # --- reading Fly's state -------------------------------------------------------------

    def releases(self) -> list[Release]:
        """Fly's releases (its 25 newest), oldest first; rolled-back-from ones read as `bad`."""
        listed = self._read_json("releases") or []
        bad = self._rolled_back_from()
        newest = max((item.get("Version", 0) for item in listed), default=0)
        self._newest_seen = max(self._newest_seen, newest)
        found = [_release(item, bad=bad, current=newest) for item in listed]
        return sorted(found, key=lambda release: release.number)

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

    def status(self) -> Status:
        state = self._read_json("status")
        current = f"v{state.get('Version', 0)}" if state.get("Version") else None
        problems = self._health_problems(state.get("Version", 0))
        return Status(
            environment=self.env.name,
            target=self.name,
            current=current,
            serving=current,
            url=self.smoke_check().url,
            healthy=not problems,
            detail="; ".join(problems) or f"{len(self._machines())} machine(s) started and passing",
        )

    def _machines(self) -> list[dict[str, Any]]:
        listed = self._read_json("machines", "list") or []
        return [m for m in listed if _serves_the_app(m)]

    def running(self) -> RunningImage:
        """What the app's machines run now, from `flyctl machines list` (not from the newest
        release's ImageRef: a failed or interrupted deploy leaves machines on other images)."""
        return RunningImage.of(self._machines())

    def _health_problems(self, version: int) -> list[str]:
        machines = self._machines()
        if not machines:
            return ["no machines serve the app"]
        problems: list[str] = []
        for machine in machines:
            problems += _machine_problems(machine, version)
        return problems

    def smoke_check(self) -> SmokeCheck:
        smoke = self.env.smoke
        url = smoke.url or f"https://{self.app}.fly.dev{smoke.path}"
        return SmokeCheck(url, smoke.expect_status, smoke.contains, smoke.timeout)

    # --- deploy ------------------------------------------------------------------------

    def deploy_args(self, image: str | None = None, *, rollback: bool = False) -> list[str]:
        args = ["deploy", "--app", self.app, "--config", self.env.fly_config or "fly.toml"]
        args += ["--image", image] if image else []
        args += ["--strategy", self.env.strategy, "--wait-timeout", f"{self.env.wait_timeout:g}s"]
        if rollback and not self.env.rollback_release_command:
            args.append("--skip-release-command")
        return args

    def command_line(self, args: Sequence[str]) -> str:
        return shlex.join([Path(self.flyctl()).name, *args])

    def plan_deploy(self, artifact_path: str | None) -> DeployPlan:
        releases = self.releases()
        previous = _newest_good(releases)
        return DeployPlan(
            environment=self.env.name,
            target=self.name,
            release=f"v{(releases[-1].number if releases else 0) + 1}",
            previous=previous.version if previous else None,
            artifact=artifact_path,
            actions=(f"`{self.command_line(self.deploy_args())}` with FLY_EMIT_RELEASE_JSON=1",),
        )

    def deploy(self, plan: DeployPlan, say: Say) -> None:
        """One flyctl deploy (never retried); `created` is the release it made, if any."""
        self._deploy_and_record(self.deploy_args(), say)

    def _deploy_and_record(self, args: list[str], say: Say) -> None:
        """`_deploy`; then `created` names the release Fly lists as made by it (or None), even
        when it failed."""
        self._deployed = None
        try:
            self._deploy(args, say)
        finally:
            self.created = self._deployed

    def _deploy(self, args: list[str], say: Say) -> None:
        """`flyctl deploy ARGS`; afterwards `_deployed` names the release it made: from the
        release JSON line, else from Fly's list (any release newer than the newest listed
        before, which every caller has read), else None: nothing is claimed that Fly does not
        show."""
        before = self._newest_seen
        say(f"$ {self.command_line(args)}")
        result, created = self._stream(args, say)
        if created and result.exit_code == 0:
            self._deployed = f"v{created['version']}"
            self._newest_seen = max(self._newest_seen, int(created["version"]))
            self._made_none = False
        else:
            listed, self._deployed = self._made_since(before, say)
            self._made_none = listed and self._deployed is None
        if result.exit_code != 0:
            raise StepFailed(result.failure("deploy"))
        image = created.get("image_ref") if created else "image unknown"
        say(f"fly release {self._deployed or '(none listed)'}: {image}")

    def _made_since(self, before: int, say: Say) -> tuple[bool, str | None]:
        """Whether Fly's releases could be read, and the newest one above `before` there: read
        after a deploy that printed no release line (after ^C too: the read is bounded)."""
        stop, self.stop = self.stop, None
        try:
            made = [r for r in self.releases() if r.number > before]
        except StepFailed as error:
            say(f"could not read Fly's releases to see what this deploy made: {error.message}")
            return False, None
        finally:
            self.stop = stop
        if not made:
            say(f"Fly lists no release after v{before}: this deploy made none")
            return True, None
        say(f"Fly lists {made[-1].version} ({made[-1].status.value}) as made by this deploy")
        return True, made[-1].version

    def health(self, say: Say) -> None:
        """Fly's verdict: every machine started, every check passing, all on the new release."""
        deployed = int((self._deployed or "v0").lstrip("v"))
        version = deployed or int(self._read_json("status").get("Version") or 0)
        problems = self._health_problems(version)
        for problem in problems:
            say(f"unhealthy: {problem}")
        if problems:
            raise StepFailed(f"Fly reports {len(problems)} problem(s): {problems[0]}")
        say(f"Fly reports every machine started, passing and on v{version}")

    def alive(self) -> bool:
        return True  # nothing local to watch: the smoke's own timeout bounds it

    def commit(self, plan: DeployPlan, say: Say) -> None:
        say(f"{self._deployed or 'the deployed release'} is Fly's current release")

    def restore(self, plan: DeployPlan, say: Say) -> bool:
        """Deploy the image of the newest good release before the failed one (nothing to do
        when the failed deploy made no release: Fly still runs what it ran)."""
        self.created = None
        if self._made_none and plan.previous:
            say("the deploy made no release on Fly, so nothing there changed")
            return True
        good = _newest_good([r for r in self.releases() if r.version != self._deployed])
        if good is None or not good.image:
            say("no earlier complete release with an image to restore")
            return False
        self._deploy_and_record(self.deploy_args(good.image, rollback=True), say)
        return True

    # --- rollback ----------------------------------------------------------------------

    def plan_rollback(self, to: str | None = None) -> RollbackPlan:
        releases = self.releases()
        current = releases[-1].version if releases else None
        self._ran_before = running = self.running()
        chosen, reason = _choose(releases, current, to, running)
        checks = (f"Fly's machines run {running.describe()}",)
        if chosen is None:
            return RollbackPlan(self.env.name, self.name, current, None, reason, checks=checks)
        command = self.command_line(self.deploy_args(chosen.image, rollback=True))
        return RollbackPlan(
            environment=self.env.name,
            target=self.name,
            current=current,
            to=chosen.version,
            reason=reason,
            actions=(
                f"take the lock {self.state_dir.relative_to(self.config.root) / 'lock'}",
                f"`{command}` (a new release with {chosen.version}'s image)",
                f"check Fly's health verdict, then smoke {self.smoke_check().url}",
                f"record {current} as rolled back from, so later rollbacks skip it and its image",
            ),
            checks=(*checks, f"{chosen.version} is complete with image {chosen.image}"),
        )

    def rollback(self, plan: RollbackPlan, say: Say) -> None:
        """Deploy `plan.to`'s image; `created` is the release that made (or None)."""
        self.created = None
        image = self._image_of(plan.to)
        self._deploy_and_record(self.deploy_args(image, rollback=True), say)

    def commit_rollback(self, plan: RollbackPlan, say: Say) -> None:
        made = f" as {self.created}" if self.created else ""
        say(f"rolled back from {plan.current} to {plan.to}'s image{made}")

    def undo_rollback(self, plan: RollbackPlan, say: Say) -> bool:
        """Put back the image the machines ran before the rollback (`plan.current`'s when they
        ran several); `created` is the release that made (or None)."""
        self.created = None
        if self._made_none:  # flyctl gave up before making a release: nothing moved
            say("the rollback made no release on Fly, so nothing there changed")
            return True
        before = self._ran_before.image if self._ran_before else None
        image = before or self._image_of(plan.current)
        self._deploy_and_record(self.deploy_args(image, rollback=True), say)
        return True

    def _image_of(self, version: str | None) -> str:
        for release in self.releases():
            if release.version == version and release.image:
                return release.image
        raise StepFailed(f"{version}: no such release with an image on Fly")


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
        return f"{images}{made} on {len(self.machines)} machine(s)"


def _release(item: dict[str, Any], *, bad: set[str], current: int) -> Release:
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


def _newest_good(releases: list[Release]) -> Release | None:
    good = [r for r in releases if r.status is ReleaseStatus.COMPLETE and r.image]
    return good[-1] if good else None


def _choose(
    releases: list[Release], current: str | None, to: str | None, running: RunningImage
) -> tuple[Release | None, str]:
    """The release whose image to deploy, and why; or None and why none. By image, not by
    number: a rollback to the image already running would change nothing."""
    if to is not None:
        return _check_asked(releases, current, to, running)
    if current is None:
        return None, "the app has no releases"
    number = int(current.lstrip("v"))
    older = [r for r in reversed(releases) if r.number < number]
    chosen, skipped = _newest_other_image(older, running, _images_left(releases))
    notes = f"; skipped {'; '.join(skipped)}" if skipped else ""
    if chosen is None:
        return None, (
            f"no complete release older than {current} with an image other than the one running"
            f" (releases rolled back from, and their images, are skipped){notes}"
        )
    return chosen, (
        f"newest complete release older than {current} whose image is not the running one"
        f" and was not rolled back from{notes}"
    )


def _newest_other_image(
    newest_first: list[Release], running: RunningImage, left: dict[str, list[str]]
) -> tuple[Release | None, list[str]]:
    """The first good release whose image neither runs now nor was rolled back from, and
    why each good release before it was skipped."""
    skipped: list[str] = []
    for release in newest_first:
        if release.status is not ReleaseStatus.COMPLETE or not release.image:
            continue
        if running.is_only(release.image):
            why = f"its image {release.image} is already running {running.where()}"
        elif release.image in left:
            why = f"its image was rolled back from as {', '.join(left[release.image])}"
        else:
            return release, skipped
        skipped.append(f"{release.version}: {why}")
    return None, skipped


def _images_left(releases: list[Release]) -> dict[str, list[str]]:
    """Image -> the releases rolled back from that ran it (a rollback rejects an image, and
    other releases of the same image are no better)."""
    left: dict[str, list[str]] = {}
    for release in releases:
        if release.status is ReleaseStatus.BAD and release.image:
            left.setdefault(release.image, []).append(release.version)
    return left


def _check_asked(
    releases: list[Release], current: str | None, to: str, running: RunningImage
) -> tuple[Release | None, str]:
    """`--to vN`: any complete release (even one rolled back from) whose image is not the
    one every machine runs now."""
    chosen = next((r for r in releases if r.version == to), None)
    if chosen is None or not chosen.image:
        return None, f"--to {to}: Fly lists no release {to} with an image (of its 25 newest)"
    if running.is_only(chosen.image):
        return None, f"--to {to}: {to}'s image {chosen.image} is already running {running.where()}"
    if chosen.version == current:
        return None, f"--to {to}: it is the current release"
    if chosen.status not in (ReleaseStatus.COMPLETE, ReleaseStatus.BAD):
        return None, f"--to {to}: it is {chosen.status.value}"
    return chosen, "asked for with --to"


def _serves_the_app(machine: dict[str, Any]) -> bool:
    metadata = (machine.get("config") or {}).get("metadata") or {}
    return (
        machine.get("state") not in ("destroyed", "destroying")
        and metadata.get("fly_process_group") not in _NOT_THE_APP
    )


def _machine_problems(machine: dict[str, Any], version: int) -> list[str]:
    name = machine.get("id", "?")
    problems = []
    if machine.get("state") != "started":
        problems.append(f"machine {name} is {machine.get('state')}")
    for check in machine.get("checks") or []:
        if check.get("status") != "passing":
            problems.append(f"machine {name} check {check.get('name')} is {check.get('status')}")
    metadata = (machine.get("config") or {}).get("metadata") or {}
    on = metadata.get("fly_release_version")
    if version and on != str(version):
        problems.append(f"machine {name} runs release v{on}, not v{version}")
    return problems


def _release_line(line: str) -> dict[str, Any] | None:
    """The FLY_EMIT_RELEASE_JSON line `{"id":…,"version":N,"image_ref":…}`, or None."""
    if not _RELEASE_LINE.match(line.strip()):
        return None
    try:
        created = json.loads(line)
    except ValueError:
        return None
    return created if isinstance(created, dict) else None


def _parse_json(text: str, command: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        raise StepFailed(f"flyctl {command} printed something that is not JSON") from None


def _print_retries(command: str, attempt: int, outcome: str, exit_code: int | None) -> None:
    if outcome not in ("start", "ok"):
        print(f"{command}: attempt {attempt} {outcome} (exit {exit_code})", file=sys.stderr)
