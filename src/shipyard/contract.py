"""`inv contract`: re-run a staging deploy and its rollback dry-run, then prove from the run
records that the pipeline's promises held and that the evidence is hashed."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shipyard import evidence, provenance, reporters
from shipyard.config import Config, Environment
from shipyard.deploy import deploy
from shipyard.errors import ExitCode
from shipyard.operation import BUILD, DEPLOY, ROLLBACK_DRY_RUN, SMOKE, smoke_title
from shipyard.pipeline import Run
from shipyard.records import DeployRecord
from shipyard.redact import Redactor
from shipyard.report import Reporter
from shipyard.rollback import rollback


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def run_contract(config: Config, env_name: str, *, command: str, dry_run: bool = False) -> int:
    """Deploy for real, dry-run its rollback, check the records; with `dry_run`, the deploy's
    plan and the checks only, changing nothing."""
    environment = config.environment(env_name)
    print(announcement(environment.name, dry_run=dry_run), flush=True)

    def reporter(redactor: Redactor) -> Reporter:
        return reporters.for_run(jobs=1, redactor=redactor)

    if dry_run:
        planned = deploy(config, environment.name, command=command, reporter=reporter, dry_run=True)
        print(f"then: a rollback dry-run, and the checks: {', '.join(check_names(environment))}")
        return int(planned.verdict.exit_code)
    runs = [
        deploy(config, environment.name, command=command, reporter=reporter).run,
        rollback(config, environment.name, command=command, reporter=reporter, dry_run=True).run,
    ]
    checks = list(contract_checks(runs, smoke=smoke_title(environment)))
    print()
    for check in checks:
        print(check.line())
    failed = [check.name for check in checks if not check.ok]
    print(f"contract: {'held' if not failed else 'broken: ' + ', '.join(failed)}")
    return int(ExitCode.STEP_FAILED if failed else ExitCode.OK)


def announcement(env_name: str, *, dry_run: bool) -> str:
    """What the contract is about to do, said before it does anything."""
    if dry_run:
        return f"contract (dry run): the deploy to {env_name} it would make; nothing changes"
    return (
        f"contract: deploying to {env_name} for real (a new release, its smoke, and a rollback"
        f" by itself if that fails), then a rollback dry-run and the checks;"
        f" `--dry-run` shows the plan and changes nothing"
    )


def check_names(environment: Environment) -> list[str]:
    return [BUILD, SMOKE, DEPLOY, smoke_title(environment), "Rollback", "evidence"]


def contract_checks(runs: list[Run], *, smoke: str) -> Iterator[Check]:
    records = [_record(run) for run in runs]
    steps = {step["name"]: step for record in records for step in record.get("steps", [])}
    for name in (BUILD, SMOKE, DEPLOY, smoke):
        yield _step_check(name, steps.get(name))
    yield _rollback_check(steps.get(ROLLBACK_DRY_RUN), records[-1] if records else {})
    for bundle in {run.bundle for run in runs}:
        yield _manifest_check(bundle)


def _record(run: Run) -> dict[str, Any]:
    try:
        record = json.loads(run.bundle.run_record_path(run.run_id).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _step_check(name: str, step: dict[str, Any] | None, *, what: str = "") -> Check:
    label = f"{what} step" if what else "step"
    if step is None:
        return Check(name, False, f"no {label} in the run records")
    ok = step.get("status") == "ok"
    return Check(
        name,
        ok,
        f"{label} {step.get('status')} (exit {step.get('exit_code')}, log {step.get('log')})",
    )


def _rollback_check(step: dict[str, Any] | None, record: dict[str, Any]) -> Check:
    plan = DeployRecord.from_json(record.get("rollback") or {}).plan or {}
    if step is not None and step.get("status") == "ok" and not plan.get("possible"):
        return Check("Rollback", False, f"dry-run: {plan.get('reason', 'no plan')}")
    return _step_check("Rollback", step, what="rollback dry-run")


def _manifest_check(bundle: evidence.Bundle) -> Check:
    shown = bundle.dir.relative_to(bundle.root).as_posix()
    if shutil.which("sha256sum") is None:
        result = provenance.verify(bundle)
        return Check(
            "evidence", result.ok, f"{shown}: {'verified' if result.ok else result.lines()[0]}"
        )
    done = subprocess.run(
        ["sha256sum", "-c", "--strict", "--quiet", evidence.MANIFEST_NAME],
        cwd=bundle.dir,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    detail = (
        "sha256sum -c --strict passes"
        if done.returncode == 0
        else (done.stdout + done.stderr).strip().splitlines()[0]
    )
    return Check("evidence", done.returncode == 0, f"{shown}: {detail}")
