"""Rollback, the same for every target:

    preflight → lock → plan → Rollback → Smoke <env> → (Restore when that failed)
    --dry-run: preflight → plan, shown as one step; nothing changes

The plan is made under the lock, so nobody moves it before it runs; `--json` prints it
(`record.plan`) with the verdict.
"""

from __future__ import annotations

from dataclasses import replace

from shipyard.config import Config
from shipyard.errors import (
    OK,
    ExitCode,
    NothingToRollBack,
    Outcome,
    ShipyardError,
    StepFailed,
    UsageError,
    Verdict,
    verdict_for,
)
from shipyard.operation import (
    RESTORE,
    ROLLBACK,
    ROLLBACK_DRY_RUN,
    Finished,
    Operation,
    check_serving,
)
from shipyard.report import ReporterFor
from shipyard.targets import Made, RollbackPlan, Say, TargetFailed


def rollback(
    config: Config,
    env_name: str,
    *,
    command: str,
    reporter: ReporterFor,
    to: str | None = None,
    dry_run: bool = False,
    lock_wait: float = 0.0,
    force: bool = False,
) -> Finished:
    """Back to the release `to` (`vN`), or the one the target chooses; with `force`, also when
    its checks found problems (files written into it since it was made)."""
    environment = config.environment(env_name)
    if to is not None and not (to.startswith("v") and to[1:].isdigit()):
        raise UsageError(f"--to {to}: expected a release like v3")
    op = Operation.start(config, environment, command=command, reporter=reporter)
    op.record.dry_run = dry_run

    def body() -> Verdict:
        op.target  # noqa: B018 - the target's preflight, before the lock
        if dry_run:
            return _dry_run(op, to, force=force)
        return op.locked(lock_wait, lambda: _rollback_steps(op, to, force=force))

    return op.conclude("rollback", body)


def plan_error(plan: RollbackPlan, to: str | None) -> ShipyardError | None:
    """Why the plan cannot be carried out, as the error a real rollback would end with."""
    if plan.possible:
        return None
    if plan.to is None:
        return UsageError(plan.reason) if to is not None else NothingToRollBack(plan.reason)
    return StepFailed(
        f"the rollback to {plan.to} cannot be carried out: {plan.problems[0]}"
        " (add --force to roll back all the same)"
    )


def _plan(op: Operation, to: str | None, *, force: bool) -> RollbackPlan:
    plan = op.target.plan_rollback(to, op.call())
    if force and plan.problems:
        plan = replace(plan, forced=True)  # recorded so: the audit entry carries the plan
    op.record.plan, op.record.previous = plan.to_json(), plan.current
    return plan


def _dry_run(op: Operation, to: str | None, *, force: bool) -> Verdict:
    plan = _plan(op, to, force=force)
    error = plan_error(plan, to)

    def show(say: Say) -> None:
        for line in plan.lines():
            say(line)
        say("dry run: nothing was changed")
        if error is not None:
            raise error

    op.flow.action(ROLLBACK_DRY_RUN, "plan the rollback; change nothing", show)
    return verdict_for(error) if error is not None else op.flow.verdict()


def _rollback_steps(op: Operation, to: str | None, *, force: bool) -> Verdict:
    plan = _plan(op, to, force=force)  # planned under the lock: nobody moves it now
    error = plan_error(plan, to)
    if error is not None:
        for line in plan.lines():
            op.flow.reporter.write(line + "\n")
        raise error
    target = op.target
    made = Made()

    def rollback_and_smoke(say: Say) -> None:
        nonlocal made
        for line in plan.lines():
            say(line)
        call = op.call(say)
        try:
            made = target.rollback(plan, call)
        except TargetFailed as failed:
            made = failed.made
            raise
        finally:
            op.record.release = made.release
            op.made(made.release)
        check_serving(target, made, call)
        target.commit_rollback(plan, made, call)

    if op.flow.action(ROLLBACK, f"{plan.current} -> {plan.to}", rollback_and_smoke).ok:
        op.record.rolled_back_to = plan.to
        op.record.serving = made.release or plan.to
        return OK
    return op.put_back(
        RESTORE,
        plan.current,
        lambda call: target.undo_rollback(plan, made, call),
        restored=Verdict(
            Outcome.RESTORED,
            ExitCode.DEPLOY_RESTORED,
            f"the rollback to {plan.to} failed its checks; {plan.current} serves again",
        ),
        down=f"the rollback to {plan.to} failed and {plan.current} could not be restored",
    )
