"""`inv audit.github`: is the repository on GitHub set up as Shipyard's workflows assume?
Read through the GitHub CLI (`gh api`), one Python step of a Shipyard run per concern:

    GitHub CLI → Repository → Branch protection → Environments → Environment secrets
               → Secret scanning → Actions token

Each step says its findings (`ok`, `FAILED` or `UNKNOWN`, the last when the token may not
read it), each not ok with its fix; the run fails (exit 1) when any is not ok. gh missing or
logged out is refused (exit 2). Secrets are read by name only: GitHub never gives a value.

What "required checks include the gates" means: every leg of the gates (`inv gates --list`:
one per gate, one per shard) is required on the default branch, by its branch protection or
by a ruleset, as the check gates.yml's job reports it through the caller's `gates` job,
`gates / <leg> (Python <version>)`, for at least one Python version.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shipyard import evidence, github
from shipyard.commands import command_line, gate_legs
from shipyard.config import Config, Environment
from shipyard.errors import OK, ExitCode, Outcome, StepFailed, Verdict, cannot_write
from shipyard.github import ApiAnswer, Gh, GhError, Say
from shipyard.operation import Flow
from shipyard.pipeline import Run
from shipyard.redact import Redactor
from shipyard.report import Reporter, ReporterFor, json_text

if TYPE_CHECKING:
    from shipyard.console import Output

GITHUB_CLI = "GitHub CLI"
REPOSITORY = "Repository"
REPORT_NAME = "github-audit.json"  # in the run's reports/<run-id>/, sealed with the run
# The secret each target needs in its GitHub environment: what the deploy workflow passes
# (`env: FLY_API_TOKEN: ${{ secrets.FLY_API_TOKEN }}`, docs/runbooks/env-requirements.md).
TARGET_SECRETS: Mapping[str, tuple[str, ...]] = {"fly": ("FLY_API_TOKEN",)}
# The protection rules that keep a deploy from just anyone or any branch (a wait timer alone
# does not).
GUARDING_RULES = {
    "required_reviewers": "required reviewers",
    "branch_policy": "deployment branches",
}
NOT_PROTECTED = "Branch not protected"  # GitHub's 404 message for a branch with no rule
ADMIN_FIX = "run the audit with a token of a repository admin (`gh auth login` as one)"


class Status(str, Enum):
    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the token may not read it: not proven either way


@dataclass(frozen=True)
class Finding:
    check: str  # `branch protection`, `environment staging`, `secrets of staging`, ...
    status: Status
    detail: str
    fix: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def lines(self) -> list[str]:
        word = {Status.OK: "ok", Status.FAILED: "FAILED", Status.UNKNOWN: "UNKNOWN"}[self.status]
        said = [f"{word:<8} {self.check}: {self.detail}"]
        return said + ([f"{'':<8} fix: {self.fix}"] if self.fix and not self.ok else [])

    def to_json(self) -> dict[str, Any]:
        fix = None if self.ok else self.fix
        return {"check": self.check, "status": self.status.value, "detail": self.detail, "fix": fix}


@dataclass(frozen=True)
class Repository:
    """What `gh api repos/{owner}/{repo}` says of the repository."""

    full_name: str
    default_branch: str
    visibility: str
    security: Mapping[str, Any] | None  # `security_and_analysis`: shown to admins only

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Repository:
        security = body.get("security_and_analysis")
        return cls(
            full_name=str(body["full_name"]),
            default_branch=str(body.get("default_branch") or "main"),
            visibility=str(
                body.get("visibility") or ("private" if body.get("private") else "public")
            ),
            security=security if isinstance(security, Mapping) else None,
        )


@dataclass(frozen=True)
class Scene:
    """What every check reads from: the config, gh, and the repository."""

    config: Config
    gh: Gh
    repo: Repository

    def api(self, tail: str) -> ApiAnswer:
        return self.gh.api(f"repos/{self.repo.full_name}/{tail}")


# --- the checks: each reads what it needs and returns its findings ---------------------


def branch_protection(scene: Scene) -> list[Finding]:
    config, branch = scene.config, scene.repo.default_branch
    if not config.gates:
        detail = f"{config.path.name} lists no gates, so there is nothing for {branch} to require"
        return [Finding("branch protection", Status.FAILED, detail, "add a `gates:` list")]
    legs = [str(leg["name"]) for leg in gate_legs(config)]
    classic = scene.api(f"branches/{quote(branch, safe='')}/protection")
    rules = scene.api(f"rules/branches/{quote(branch, safe='')}")
    return [protection_finding(branch, legs, classic, rules)]


def protection_finding(
    branch: str, legs: Sequence[str], classic: ApiAnswer, rules: ApiAnswer
) -> Finding:
    """Whether every leg of the gates is a required check of `branch`, by its branch
    protection (`classic`) or a ruleset (`rules`); unknown when the protection could not be
    read (it needs admin rights) and the rulesets do not require them all."""
    required = required_checks(classic) | ruleset_checks(rules)
    versions = {leg: _versions(leg, required) for leg in legs}
    missing = [leg for leg in legs if not versions[leg]]
    if not missing:
        shown = ", ".join(f"{leg} (Python {', '.join(versions[leg])})" for leg in legs)
        return Finding("branch protection", Status.OK, f"{branch} requires every gate: {shown}")
    if not classic.ok and classic.message != NOT_PROTECTED:
        detail = (
            f"{branch}'s branch protection could not be read ({classic.describe()}; it needs"
            f" admin rights), and no ruleset requires {', '.join(missing)}"
        )
        return Finding("branch protection", Status.UNKNOWN, detail, ADMIN_FIX)
    if not classic.ok and not _has_rules(rules):
        detail = f"{branch} is not protected (no branch protection rule, no ruleset)"
    else:
        detail = f"{branch}'s required checks lack the gates {', '.join(missing)}"
    checks = ", ".join(f"`gates / {leg} (Python <version>)`" for leg in missing)
    fix = (
        f"Settings → Branches (or Rules → Rulesets): protect {branch} with 'Require status"
        f" checks to pass' and add {checks}, for the Python versions gates.yml runs"
    )
    return Finding("branch protection", Status.FAILED, detail, fix)


def required_checks(classic: ApiAnswer) -> set[str]:
    """The required checks of a branch protection: `contexts`, and `checks[].context`."""
    if not classic.ok or not isinstance(classic.body, Mapping):
        return set()
    status_checks = classic.body.get("required_status_checks") or {}
    checks = [c.get("context") for c in status_checks.get("checks") or [] if isinstance(c, Mapping)]
    return {str(c) for c in [*(status_checks.get("contexts") or []), *checks] if c}


def ruleset_checks(rules: ApiAnswer) -> set[str]:
    """The checks the active rulesets require of a branch (`required_status_checks` rules)."""
    if not rules.ok or not isinstance(rules.body, list):
        return set()
    return {
        str(check.get("context"))
        for rule in rules.body
        if isinstance(rule, Mapping) and rule.get("type") == "required_status_checks"
        for check in (rule.get("parameters") or {}).get("required_status_checks") or []
        if isinstance(check, Mapping) and check.get("context")
    }


def _has_rules(rules: ApiAnswer) -> bool:
    return rules.ok and isinstance(rules.body, list) and bool(rules.body)


def _versions(leg: str, required: Iterable[str]) -> list[str]:
    """The Python versions for which `leg` is required: `gates / fmt (Python 3.12)`, or the
    job's own name `fmt (Python 3.12)` when it is not called through another workflow."""
    pattern = re.compile(rf"(?:.+ / )?{re.escape(leg)} \(Python (?P<python>[^()]+)\)")
    found = (pattern.fullmatch(check) for check in required)
    return sorted({match["python"] for match in found if match})


def environments(scene: Scene) -> list[Finding]:
    answer = scene.api("environments?per_page=100")
    if not answer.ok and answer.status != 404:
        why = f"could not list the environments ({answer.describe()})"
        return [
            Finding(f"environment {name}", Status.UNKNOWN, why, ADMIN_FIX)
            for name in scene.config.environments
        ]
    listed = (
        answer.body.get("environments") if answer.ok and isinstance(answer.body, Mapping) else []
    )
    on_github = {str(e.get("name")): e for e in listed or [] if isinstance(e, Mapping)}
    return [
        environment_finding(scene.repo, name, on_github.get(name))
        for name in scene.config.environments
    ]


def environment_finding(repo: Repository, name: str, found: Mapping[str, Any] | None) -> Finding:
    check, rules_fix = (
        f"environment {name}",
        (
            f"Settings → Environments → {name}: add required reviewers (tick 'Prevent self-review')"
            f" and 'Deployment branches and tags': selected, {repo.default_branch} only"
        ),
    )
    if found is None:
        detail = (
            f"{repo.full_name} has no environment {name}: a deploy job would create it unprotected"
        )
        create = f"`gh api --method PUT repos/{repo.full_name}/environments/{name}`"
        return Finding(check, Status.FAILED, detail, f"create it ({create}), then {rules_fix}")
    rules = [r for r in found.get("protection_rules") or [] if isinstance(r, Mapping)]
    kinds = [str(r.get("type")) for r in rules]
    guarding = [GUARDING_RULES[kind] for kind in kinds if kind in GUARDING_RULES]
    if not guarding:
        has = f" (only: {', '.join(kinds)})" if kinds else ""
        return Finding(
            check, Status.FAILED, f"{name} exists without protection rules{has}", rules_fix
        )
    self_review = any(
        r.get("prevent_self_review") for r in rules if r.get("type") == "required_reviewers"
    )
    note = ", self-review prevented" if self_review else ""
    return Finding(check, Status.OK, f"{name} exists, protected by {' and '.join(guarding)}{note}")


def environment_secrets(scene: Scene) -> list[Finding]:
    findings = []
    for name, environment in scene.config.environments.items():
        needed = needed_secrets(scene.config, environment)
        if not needed:
            detail = f"{name} ({environment.target}) needs no secret"
            findings.append(Finding(f"secrets of {name}", Status.OK, detail))
            continue
        answer = scene.api(f"environments/{quote(name, safe='')}/secrets?per_page=100")
        findings.append(secrets_finding(name, needed, answer))
    return findings


def needed_secrets(config: Config, environment: Environment) -> list[str]:
    """The secrets an environment's deploy job needs: its target's credential (Fly:
    FLY_API_TOKEN), and each `pass_env` variable listed under `secrets:` (the server gets it
    from the deployer, who gets it from the environment)."""
    target = TARGET_SECRETS.get(environment.target, ())
    passed = [name for name in environment.pass_env if name in config.secrets]
    return list(dict.fromkeys([*target, *passed]))


def secrets_finding(name: str, needed: Sequence[str], answer: ApiAnswer) -> Finding:
    check = f"secrets of {name}"
    set_them = "; ".join(f"`gh secret set {secret} --env {name}`" for secret in needed)
    how = f"{set_them} (gh reads each value from standard input: never put it on a command line)"
    if answer.status == 404:
        detail = f"no environment {name} to hold {', '.join(needed)}"
        return Finding(check, Status.FAILED, detail, f"create the environment, then {how}")
    if not answer.ok:
        detail = f"could not list them ({answer.describe()}; needs collaborator access)"
        return Finding(check, Status.UNKNOWN, detail, ADMIN_FIX)
    body = answer.body if isinstance(answer.body, Mapping) else {}
    present = {
        str(s.get("name", "")).upper() for s in body.get("secrets") or [] if isinstance(s, Mapping)
    }
    missing = [secret for secret in needed if secret.upper() not in present]
    if missing:
        return Finding(check, Status.FAILED, f"{', '.join(missing)} missing from {name}", how)
    return Finding(check, Status.OK, f"{', '.join(needed)} set (names only; values never read)")


def secret_scanning(scene: Scene) -> list[Finding]:
    return scanning_findings(scene.repo)


def scanning_findings(repo: Repository) -> list[Finding]:
    """Secret scanning and push protection, from `security_and_analysis`."""
    features = (
        ("secret scanning", "secret_scanning"),
        ("push protection", "secret_scanning_push_protection"),
    )
    if repo.security is None:
        why = "not shown to this token (GitHub shows security_and_analysis to admins only)"
        return [Finding(check, Status.UNKNOWN, why, ADMIN_FIX) for check, _ in features]
    findings = []
    for check, key in features:
        status = str((repo.security.get(key) or {}).get("status") or "not available")
        if status == "enabled":
            findings.append(Finding(check, Status.OK, "enabled"))
            continue
        fix = (
            f"`gh api --method PATCH repos/{repo.full_name} -f"
            f" 'security_and_analysis[{key}][status]=enabled'` (or Settings → Code security)"
        )
        findings.append(Finding(check, Status.FAILED, status, fix))
    return findings


def actions_token(scene: Scene) -> list[Finding]:
    return [token_finding(scene.repo, scene.api("actions/permissions/workflow"))]


def token_finding(repo: Repository, answer: ApiAnswer) -> Finding:
    """Actions' default GITHUB_TOKEN permissions: read-only, so each job asks for what it
    needs (`permissions:`), as Shipyard's workflows do."""
    check = "actions token"
    if not answer.ok or not isinstance(answer.body, Mapping):
        detail = f"could not read the workflow permissions ({answer.describe()})"
        return Finding(check, Status.UNKNOWN, detail, ADMIN_FIX)
    default = str(answer.body.get("default_workflow_permissions"))
    if default == "read":
        approve = answer.body.get("can_approve_pull_request_reviews")
        also = "; Actions may approve pull requests" if approve else ""
        return Finding(check, Status.OK, f"the default GITHUB_TOKEN is read-only{also}")
    fix = (
        f"`gh api --method PUT repos/{repo.full_name}/actions/permissions/workflow"
        " -f default_workflow_permissions=read` (or Settings → Actions → General →"
        " Workflow permissions: read)"
    )
    return Finding(check, Status.FAILED, f"the default GITHUB_TOKEN can {default}", fix)


Check = Callable[[Scene], list[Finding]]
CHECKS: tuple[tuple[str, str, Check], ...] = (
    ("Branch protection", "required checks of the default branch", branch_protection),
    ("Environments", "each environment of shipyard.yaml, protected", environments),
    ("Environment secrets", "each environment's secrets, by name", environment_secrets),
    ("Secret scanning", "secret scanning and push protection", secret_scanning),
    ("Actions token", "Actions' default token permissions", actions_token),
)


# --- the run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Audit:
    """How the audit ended, its run, and what it found."""

    verdict: Verdict
    run: Run
    repository: Repository | None
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return self.verdict.ok and all(finding.ok for finding in self.findings)

    def report(self) -> dict[str, Any]:
        """The findings: what the evidence keeps and `--json` prints."""
        repo = self.repository
        return {
            "repository": repo.full_name if repo else None,
            "default_branch": repo.default_branch if repo else None,
            "ok": self.ok,
            "findings": [finding.to_json() for finding in self.findings],
        }

    def document(self) -> dict[str, Any]:
        """`--json`: the report, and the run's verdict and evidence (docs/cli.md)."""
        where = self.run.bundle.dir.relative_to(self.run.root).as_posix()
        return {
            **self.report(),
            "command": self.run.command,
            "run_id": self.run.run_id,
            **self.verdict.to_json(),
            "evidence": f"{where}/",
        }


def audit(config: Config, *, command: str, reporter: ReporterFor) -> Audit:
    """Audit the repository of `config.root`'s checkout (or GH_REPO) through gh."""
    run = Run.for_config(config, command=command)
    flow = Flow(run, reporter(run.redactor))
    findings: list[Finding] = []
    scenes: list[Scene] = []

    def body() -> Verdict:
        scene = _scene(flow, config)
        if scene is None:
            return flow.verdict()
        scenes.append(scene)
        for title, description, check in CHECKS:
            flow.action(title, description, _checking(title, check, scene, findings))
            if flow.interrupted or flow.results[-1].exit_code == ExitCode.USAGE:
                return flow.verdict()
        _keep_report(run, scene.repo, findings)
        return _verdict(flow, findings)

    verdict = flow.conclude(body)
    return Audit(verdict, run, scenes[0].repo if scenes else None, tuple(findings))


def _scene(flow: Flow, config: Config) -> Scene | None:
    """The steps `GitHub CLI` and `Repository`: gh logged in, the repository read; None when
    either failed (the run ends there)."""
    connected: list[Gh] = []
    scenes: list[Scene] = []

    def connect(say: Say) -> None:
        connected.append(github.connect(config.root, say, stop=flow.run.stop))

    def read(say: Say) -> None:
        answer = connected[0].api("repos/{owner}/{repo}")
        if not answer.ok or not isinstance(answer.body, Mapping):
            raise StepFailed(f"`gh api repos/{{owner}}/{{repo}}`: {answer.describe()}")
        repo = Repository.from_json(answer.body)
        say(f"{repo.full_name} ({repo.visibility}), default branch {repo.default_branch}")
        scenes.append(Scene(config, connected[0], repo))

    if not flow.action(GITHUB_CLI, "gh --version; gh auth status", connect).ok:
        return None
    flow.action(REPOSITORY, "gh api repos/{owner}/{repo}", read)
    return scenes[0] if scenes else None


def _checking(title: str, check: Check, scene: Scene, into: list[Finding]) -> Callable[[Say], None]:
    """The step of one check: each finding said (with its fix), the step failed when any is
    not ok. A gh call that fails for another reason than an HTTP answer is an unknown."""

    def act(say: Say) -> None:
        try:
            findings = check(scene)
        except GhError as error:
            findings = [
                Finding(title.lower(), Status.UNKNOWN, error.message, "run the audit again")
            ]
        for finding in findings:
            for line in finding.lines():
                say(line)
        into.extend(findings)
        bad = [f"{f.check} ({f.status.value})" for f in findings if not f.ok]
        if bad:
            raise StepFailed(f"did not pass: {', '.join(bad)}")

    return act


def _keep_report(run: Run, repo: Repository, findings: Sequence[Finding]) -> None:
    """reports/<run-id>/github-audit.json, sealed with the run's other files."""
    path = run.bundle.report_dir(run.run_id) / REPORT_NAME
    report = Audit(OK, run, repo, tuple(findings)).report()
    try:
        evidence.write_json(run.bundle, path, report, run.redactor)
    except OSError as error:
        raise StepFailed(cannot_write(path, error, run.root)) from None


def _verdict(flow: Flow, findings: Sequence[Finding]) -> Verdict:
    """The steps' verdict; a failure for findings counts them and names their checks."""
    verdict = flow.verdict()
    bad = [finding for finding in findings if not finding.ok]
    if verdict.outcome is not Outcome.FAILED or not bad:
        return verdict
    names = ", ".join(dict.fromkeys(finding.check for finding in bad))
    reason = f"{len(bad)} of {len(findings)} checks did not pass: {names}"
    return Verdict(Outcome.FAILED, ExitCode.STEP_FAILED, reason)


def audit_command(config: Config, *, output: Output | None = None) -> Verdict:
    """`inv audit.github [--json]`: with `--json`, the run's progress goes to stderr and one
    document (`Audit.document`) to stdout, masked by the run's redactor."""
    from shipyard import reporters

    as_json = output is not None and output.as_json
    shown = replace(output, as_json=False) if output is not None else None
    stream = sys.stderr if as_json else None

    def reporter(redactor: Redactor) -> Reporter:
        return reporters.for_run(jobs=1, redactor=redactor, output=shown, stream=stream)

    done = audit(config, command=command_line(), reporter=reporter)
    if as_json:
        print(json_text(done.document(), done.run.redactor), flush=True)
    return done.verdict
