"""Deploy, the same for every target:

    preflight → lock → Build application → Smoke (the artifact) → Deploy → Smoke <env>
              → Rollback (only when Deploy or Smoke <env> failed)
    --dry-run: preflight → plan, shown as one step; nothing is built or changed
    smoke (`inv smoke`): the artifact smoke alone

The preflight (`deploy_preflight`, which `inv doctor` makes too) runs before the lock and
before anything is built; the record's `deploy` section carries the tree it was built from.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from shipyard import artifact, git
from shipyard.artifact_smoke import docker_problem, docker_unusable, smoke_artifact
from shipyard.config import Config, Environment, Step
from shipyard.errors import (
    OK,
    ExitCode,
    Outcome,
    PreflightError,
    ShipyardError,
    Verdict,
    verdict_for,
)
from shipyard.operation import (
    BUILD,
    DEPLOY,
    DEPLOY_DRY_RUN,
    ROLLBACK,
    SMOKE,
    Finished,
    Flow,
    Operation,
    build_step,
    check_serving,
    smoke_title,
)
from shipyard.pipeline import Run
from shipyard.report import ReporterFor
from shipyard.runner import StepResult
from shipyard.targets import DeployPlan, Made, Say, Target, TargetFailed, state_dir
from shipyard.targets.images import BuildsImages, BuiltImage, Source

MIN_FREE_BYTES = 100 * 2**20  # room a deploy needs in .shipyard/ (a release, logs, state)
BUILD_IMAGE = "Build image"  # the step of a target that ships an image (Fly)


def deploy(
    config: Config,
    env_name: str,
    *,
    command: str,
    reporter: ReporterFor,
    lock_wait: float = 0.0,
    build: bool = True,
    dry_run: bool = False,
    allow_dirty: bool = False,
) -> Finished:
    """`build=False` deploys the newest artifact already built (CI's separate build step).
    `reporter` makes the run's reporter, given the run's redactor."""
    environment = config.environment(env_name)
    op = Operation.start(config, environment, command=command, reporter=reporter)
    op.record.dry_run = dry_run
    if dry_run:
        return op.conclude(
            "deploy", lambda: _dry_run_deploy(op, build=build, allow_dirty=allow_dirty)
        )

    def body() -> Verdict:
        step = build_step(config)
        _preflight_deploy(op, allow_dirty=allow_dirty)  # before the lock and before building
        return op.locked(lock_wait, lambda: _deploy_steps(op, step, build=build))

    return op.conclude("deploy", body)


def deploy_preflight(
    config: Config, environment: Environment, target: Target, *, allow_dirty: bool
) -> tuple[git.TreeState, list[str]]:
    """Every check a deploy makes before it builds anything (`inv doctor` makes the same):
    the target's own (a free port), room in `.shipyard/`, and the tree's uncommitted changes."""
    problems: list[str] = []
    try:
        target.preflight_deploy()
    except PreflightError as error:
        problems.append(error.message)
    folder = state_dir(config, environment)
    free = free_bytes(folder)
    if free is not None and free < MIN_FREE_BYTES:
        problems.append(
            f"only {free // 2**20} MiB free on the disk of {folder} (a deploy needs at least"
            f" {MIN_FREE_BYTES // 2**20} MiB): free some space"
        )
    tree = git.tree_state(config.root, ignore=(config.path,))
    if tree.dirty and not allow_dirty:
        problems.append(
            "the working tree has uncommitted changes to tracked files"
            f" ({tree.describe_changes()}); commit or stash them, or pass --allow-dirty to"
            " deploy them (recorded as dirty)"
        )
    return tree, problems


def free_bytes(folder: Path) -> int | None:
    """Free bytes on the disk that holds `folder` (or its nearest existing parent)."""
    for candidate in (folder, *folder.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def _preflight_deploy(op: Operation, *, allow_dirty: bool) -> None:
    """The deploy's preflight, recorded: a refusal names every problem in one line."""
    tree, problems = deploy_preflight(op.config, op.environment, op.target, allow_dirty=allow_dirty)
    op.record.git_sha = tree.sha
    op.record.dirty, op.record.diff_sha256 = tree.dirty, tree.diff_sha256
    op.record.config_sha256 = artifact.file_sha256(op.config.path)
    if problems:
        raise PreflightError("; ".join(problems))


def _deploy_steps(op: Operation, step: Step, *, build: bool) -> Verdict:
    flow = op.flow
    if build and not flow.shell(step).ok:
        return flow.verdict()
    archive = artifact.find_artifact(op.config.root, step.artifact or "")
    relative = archive.relative_to(op.config.root).as_posix()
    built: list[BuiltImage] = []
    if isinstance(op.target, BuildsImages) and not _build_image(op, op.target, built, build):
        return flow.verdict()
    image = built[0] if built else None
    no_docker = docker_problem(image) if image else "no image"
    if op.environment.start or no_docker is None:
        if not _smoke(op, archive, image, no_docker).ok:
            return flow.verdict()
    else:
        why = f"environments.{op.environment.name} has no start"
        why += f", and docker cannot run the image: {no_docker}" if image else ""
        flow.reporter.write(f"(no artifact smoke: {why})\n")
        op.record.smoke_tested = f"nothing ({why})"
    plan = _with_tree(op, op.target.plan_deploy(image.ref if image else relative, op.call()))
    op.record.planned, op.record.previous = plan.release, plan.previous
    if image is not None:  # the image is what ships: Fly promotes it as it was built
        op.record.artifact, op.record.artifact_sha256 = image.ref, None
    else:
        op.record.artifact, op.record.artifact_sha256 = relative, artifact.file_sha256(archive)
    failed, made = _deploy_and_smoke(op, plan)
    if failed is None:
        op.record.serving = op.record.release
        return OK
    return _roll_back_deploy(op, plan, failed, made)


def _source(op: Operation) -> Source:
    return Source(op.record.git_sha, op.record.dirty, op.record.diff_sha256)


def _build_image(op: Operation, target: BuildsImages, built: list[BuiltImage], build: bool) -> bool:
    """The step `Build image`: the image built once (or reused), appended to `built`."""

    def build_image(say: Say) -> None:
        built.append(target.build_image(_source(op), op.call(say), build=build))

    return op.flow.action(BUILD_IMAGE, "build and push the image once", build_image).ok


def _smoke(
    op: Operation, archive: Path, image: BuiltImage | None, no_docker: str | None
) -> StepResult:
    """The step `Smoke`: the image when docker can run it, else the archive; recorded."""
    root = op.config.root
    relative = archive.relative_to(root).as_posix()

    def smoke(say: Say) -> None:
        op.record.smoke_tested = smoke_artifact(
            op.environment, archive, say, op.run.stop, image, no_docker=no_docker, root=root
        )

    what = f"image {image.ref} (with docker), else {relative}" if image else relative
    return op.flow.action(SMOKE, f"smoke {what} on a free 127.0.0.1 port", smoke)


def _with_tree(op: Operation, plan: DeployPlan) -> DeployPlan:
    """The plan, carrying what the release must record about the tree it was built from."""
    record = op.record
    return replace(plan, git_sha=record.git_sha, dirty=record.dirty, diff_sha256=record.diff_sha256)


def _deploy_and_smoke(op: Operation, plan: DeployPlan) -> tuple[str | None, Made]:
    """(None, made) when the new release serves and passed its smoke; else the step that
    failed, and what the deploy made all the same."""
    flow, target = op.flow, op.target
    made = Made()

    def deploy_release(say: Say) -> None:
        nonlocal made
        try:
            made = target.deploy(plan, op.call(say))
        except TargetFailed as failed:
            made = failed.made
            raise
        finally:
            op.record.release = made.release  # what exists now, whether it passed or not
            op.made(made.release)

    if not flow.action(DEPLOY, "; ".join(plan.actions), deploy_release).ok or flow.interrupted:
        return DEPLOY, made

    def smoke_and_commit(say: Say) -> None:
        check_serving(target, made, op.call(say))
        target.commit(plan, made, op.call(say))

    title = smoke_title(op.environment)
    passed = flow.action(title, target.smoke_check().url, smoke_and_commit).ok
    return (None if passed else title), made


def _roll_back_deploy(op: Operation, plan: DeployPlan, failed: str, made: Made) -> Verdict:
    """The new release failed where it serves: back to the previous one. A Deploy that failed
    before its switch (the target made nothing) changed nothing: the step checks that."""
    if failed == DEPLOY and made.known and made.release is None:
        return _failed_before_the_switch(op, plan)
    new = op.record.release or plan.release
    verdict = op.put_back(
        ROLLBACK,
        plan.previous,
        lambda call: op.target.restore(plan, made, call),
        restored=Verdict(
            Outcome.ROLLED_BACK,
            ExitCode.DEPLOY_RESTORED,
            f"{failed} failed for {new}; rolled back to {plan.previous}",
        ),
        down=f"{failed} failed for {new} and no earlier release could be restored",
    )
    op.record.rolled_back_to = op.record.serving
    return verdict


def _failed_before_the_switch(op: Operation, plan: DeployPlan) -> Verdict:
    """Exit 1 (2 when the artifact was refused: hostile, too big, no room), and nothing that
    served was changed: the Rollback step only checks (the target's restore of Made(None)
    leaves what serves untouched) that the previous release still serves."""
    step = op.flow.results[-1]  # the Deploy step: its error says why (a bad archive: exit 2)
    refused = step.exit_code == ExitCode.USAGE
    outcome, code = (
        (Outcome.REFUSED, ExitCode.USAGE) if refused else (Outcome.FAILED, ExitCode.STEP_FAILED)
    )
    why = f"{DEPLOY} failed before the switch" + (f" ({step.error})" if step.error else "")
    if plan.previous is None:
        return Verdict(outcome, code, f"{why}; nothing served and nothing was changed")
    return op.put_back(
        ROLLBACK,
        plan.previous,
        lambda call: op.target.restore(plan, Made(None), call),
        restored=Verdict(outcome, code, f"{why}; {plan.previous} still serves, untouched"),
        down=f"{why} and {plan.previous} does not serve",
        untouched=True,
    )


def _dry_run_deploy(op: Operation, *, build: bool, allow_dirty: bool) -> Verdict:
    """The deploy's plan, with the preflight's verdict; nothing is built or changed."""
    step = build_step(op.config)
    refusal: list[ShipyardError] = []

    def show(say: Say) -> None:
        try:
            _preflight_deploy(op, allow_dirty=allow_dirty)
            tree = f"git {(op.record.git_sha or 'none')[:12]}"
            if op.record.dirty:
                tree += f", dirty (git diff sha256 {(op.record.diff_sha256 or '?')[:12]})"
            say(f"check: preflight passes ({tree})")
        except PreflightError as error:
            refusal.append(error)
            say(f"problem: {error.message}")
        for line in deploy_plan_lines(op, step, build=build):
            say(line)
        say("dry run: nothing was changed")
        if refusal:
            raise refusal[0]

    op.flow.action(DEPLOY_DRY_RUN, "plan the deploy; change nothing", show)
    return verdict_for(refusal[0]) if refusal else op.flow.verdict()


def deploy_plan_lines(op: Operation, step: Step, *, build: bool) -> list[str]:
    """The deploy's steps in the order a real run takes them."""
    pattern = step.artifact or ""
    if build:
        source = f"the artifact step 1 builds (newest match of {pattern})"
        steps = [f"build: `{step.run}` (step {BUILD})"]
    else:
        found = artifact.find_artifact(op.config.root, pattern)
        source = found.relative_to(op.config.root).as_posix()
        steps = [f"no build (--no-build): deploy {source}"]
    environment, target = op.environment, op.target
    ships_image = isinstance(target, BuildsImages)
    if isinstance(target, BuildsImages):  # the image shipped, built (or reused) once
        line, source = target.plan_image(_source(op), op.call(), build=build)
        steps.append(f"{line} (step {BUILD_IMAGE})")
    docker = docker_unusable() if ships_image else "no image"  # as the Smoke step will find
    if environment.start or docker is None:
        smoke = environment.smoke
        start = f"`{environment.start}`" if environment.start else ""
        image = "the image with docker" + (f", else {start}" if start else "")
        what = image if docker is None else start
        steps.append(
            f"smoke the artifact: {what} on a free 127.0.0.1 port, GET"
            f" {smoke.path} expects {smoke.expect_status} within {smoke.timeout:g}s (step {SMOKE})"
        )
    plan = target.plan_deploy(source, op.call())
    op.record.planned, op.record.previous = plan.release, plan.previous  # the dry run's record
    head = f"deploy {environment.name} ({environment.target}): {plan.release}"
    head += f", replacing {plan.previous}" if plan.previous else ", the first release"
    steps += list(plan.actions)  # steps Deploy and Smoke <env>
    back = (
        f"stop {plan.release}, mark it failed and bring back {plan.previous} (smoked again);"
        f" exit 3, or 4 if {plan.previous} cannot be brought back. A {DEPLOY} that fails before"
        f" its switch changes nothing: {plan.previous} keeps serving (smoked again), exit 1"
        if plan.previous
        else f"stop {plan.release} and mark it failed; nothing to bring back: exit 4 (exit 1"
        f" when {DEPLOY} fails before its switch: nothing changed)"
    )
    mode = getattr(target, "mode", None)  # the local target: proxy or direct mode
    return [
        head,
        *([mode] if mode else []),
        *(f"{number}. {line}" for number, line in enumerate(steps, 1)),
        f"on failure of step {DEPLOY} or {smoke_title(environment)} (step {ROLLBACK}): {back}",
    ]


def smoke(
    config: Config, env_name: str, *, command: str, reporter: ReporterFor, archive: str = ""
) -> Verdict:
    """`inv smoke`: the built artifact on a free port, probed; exit 1 with the server log tail."""
    environment = config.environment(env_name)
    run = Run.for_config(config, command=command, extra_environ=environment.env)
    flow = Flow(run, reporter(run.redactor))

    def body() -> Verdict:
        path = (
            Path(archive)
            if archive
            else artifact.find_artifact(config.root, build_step(config).artifact or "")
        )

        def smoke_it(say: Say) -> None:
            smoke_artifact(environment, path, say, run.stop)

        flow.action(SMOKE, f"start {path.name} on a free 127.0.0.1 port and probe it", smoke_it)
        return flow.verdict()

    return flow.conclude(body)
