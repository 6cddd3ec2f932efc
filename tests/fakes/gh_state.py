"""The state file behind the fake `gh` (tests/fakes/gh), and helpers to build and read it.

The facts the fake follows, and where each comes from, are in tests/fakes/README-gh.md.
The fake reads the JSON file named by `FAKE_GH_STATE` on every invocation and appends its
call to `calls` (under an fcntl lock on `<state>.lock`, written back atomically):

    {
      "repository": "octo-org/webapp",  # what the checkout's git remote names (None: no remote)
      "login": {"stored": true, "user": "octocat"},  # `gh auth login` was done (hosts.yml)
      "token_valid": true,              # the API accepts the token gh sends (env or stored)
      "scopes": "gist, read:org, repo, workflow",  # X-OAuth-Scopes of a classic token
      "offline": false,                 # every API call fails as a lost connection does
      "delay_seconds": 0.0,             # every API call waits this long first (a hung call)
      "workflows": [{"id": 161335, "name": "deploy-staging",
                     "path": ".github/workflows/deploy-staging.yml", "state": "active"}],
      "runs": [{<gh's run fields: databaseId, workflowDatabaseId, name, displayTitle,
                 headBranch, headSha, event, status, conclusion, attempt, number, createdAt,
                 updatedAt, startedAt, url>,
                "jobs": [{databaseId, name, status, conclusion, startedAt, completedAt, url,
                          "steps": [{name, number, status, conclusion, startedAt,
                                     completedAt, "log": ["<line>", ...] or null}]}],
                "logs_available": true}],   # false: the run's logs were deleted or expired
      "api": {"repos/octo-org/webapp": {"status": 200, "body": {...}}},  # `gh api` GETs
      "calls": [{"argv": [...], "token_source": "GH_TOKEN", "exit": 0}]
    }

`calls` records each invocation's argv, where its token came from (`GH_TOKEN`,
`GITHUB_TOKEN`, `hosts.yml`, or None) and its exit code; never a token's value.
The API bodies below follow GitHub's REST reference (the URLs are in README-gh.md).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:  # as `fakes.<name>` from the tests, or beside the fake's script
    from fakes.state_file import read, transaction, write
except ImportError:
    from state_file import read, transaction, write  # type: ignore[no-redef]

if TYPE_CHECKING:
    import subprocess

STATE_ENV = "FAKE_GH_STATE"
FAKES = Path(__file__).resolve().parent
GH_VERSION = "2.60.0"  # cli/cli at tag v2.60.0, commit 44ee17760709bedf1cad7e452e61751489b81a33
GH_BUILD_DATE = "2024-10-24"
REPOSITORY = "octo-org/webapp"
ACTIONS_APP_ID = 15368  # the GitHub Actions app, which reports the checks of workflow jobs
WORKFLOW_ID = 161335
T0 = "2026-12-01T10:00:00Z"
T1 = "2026-12-01T10:04:12Z"


def new_state(repository: str | None = REPOSITORY) -> dict[str, Any]:
    """Logged in (a token is valid), one active workflow, no run, no API answer yet."""
    return {
        "repository": repository,
        "login": {"stored": False, "user": "octocat"},
        "token_valid": True,
        "scopes": "gist, read:org, repo, workflow",
        "offline": False,
        "delay_seconds": 0.0,
        "workflows": [workflow("deploy-staging", "deploy-staging.yml", WORKFLOW_ID)],
        "runs": [],
        "api": {},
        "calls": [],
    }


def workflow(name: str, file: str, workflow_id: int, state: str = "active") -> dict[str, Any]:
    return {"id": workflow_id, "name": name, "path": f".github/workflows/{file}", "state": state}


# --- runs, jobs, steps ------------------------------------------------------------------


def step(
    name: str, number: int, conclusion: str = "success", log: Sequence[str] | None = ()
) -> dict[str, Any]:
    """A completed step; `log`: its lines as GitHub keeps them (None: no log in the zip)."""
    return {
        "name": name,
        "number": number,
        "status": "completed",
        "conclusion": conclusion,
        "startedAt": T0,
        "completedAt": T1,
        "log": None if log is None else [f"{T0[:-1]}.0000000Z {line}" for line in log],
    }


def job(
    name: str,
    steps: Sequence[dict[str, Any]],
    *,
    job_id: int,
    run_id: int,
    conclusion: str | None = None,
    status: str = "completed",
    repository: str = REPOSITORY,
) -> dict[str, Any]:
    """A job; its conclusion is its first failed step's, else success (None: worked out)."""
    failed = [s["conclusion"] for s in steps if s["conclusion"] not in ("success", "skipped")]
    return {
        "databaseId": job_id,
        "name": name,
        "status": status,
        "conclusion": conclusion
        if conclusion is not None
        else (failed[0] if failed else "success"),
        "startedAt": T0,
        "completedAt": T1 if status == "completed" else "0001-01-01T00:00:00Z",
        "url": f"https://github.com/{repository}/actions/runs/{run_id}/job/{job_id}",
        "steps": list(steps),
    }


def new_run(
    run_id: int,
    jobs: Sequence[dict[str, Any]],
    *,
    conclusion: str = "failure",
    status: str = "completed",
    created: str = T0,
    title: str = "Deploy the new landing page",
    branch: str = "main",
    sha: str = "4c1e2f0a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e",  # pragma: allowlist secret
    attempt: int = 1,
    workflow_id: int = WORKFLOW_ID,
    repository: str = REPOSITORY,
) -> dict[str, Any]:
    return {
        "databaseId": run_id,
        "workflowDatabaseId": workflow_id,
        "name": "deploy-staging",
        "displayTitle": title,
        "headBranch": branch,
        "headSha": sha,
        "event": "push",
        "status": status,
        "conclusion": conclusion if status == "completed" else "",
        "attempt": attempt,
        "number": run_id % 1000,
        "createdAt": created,
        "updatedAt": T1,
        "startedAt": created,
        "url": f"https://github.com/{repository}/actions/runs/{run_id}",
        "jobs": list(jobs),
        "logs_available": True,
    }


def failed_deploy_run(run_id: int, log: Sequence[str], **options: Any) -> dict[str, Any]:
    """A run of deploy-staging whose gates passed and whose `Deploy` step failed with `log`."""
    gates = job(
        "gates / fmt (Python 3.12)",
        [step("Set up job", 1), step("Gate", 2)],
        job_id=run_id * 10 + 1,
        run_id=run_id,
    )
    deploy = job(
        "deploy (staging)",
        [
            step("Set up job", 1),
            step("Build application", 2, log=["==> Build application: started"]),
            step("Deploy", 3, "failure", log=log),
            step("Upload evidence", 4),
        ],
        job_id=run_id * 10 + 2,
        run_id=run_id,
    )
    return new_run(run_id, [gates, deploy], **options)


# --- `gh api` answers (GitHub's REST API) -----------------------------------------------


def put_api(state: dict[str, Any], path: str, body: Any, status: int = 200) -> None:
    state["api"][path] = {"status": status, "body": body}


def error_body(message: str, status: int, docs: str = "https://docs.github.com/rest") -> Any:
    """GitHub's error body: `message`, `documentation_url`, and `status` as a string."""
    return {"message": message, "documentation_url": docs, "status": str(status)}


def repo_body(
    full_name: str = REPOSITORY,
    *,
    default_branch: str = "main",
    admin: bool = True,
    secret_scanning: str = "enabled",
    push_protection: str = "enabled",
) -> dict[str, Any]:
    """GET /repos/{owner}/{repo}: `security_and_analysis` only for an admin (as documented)."""
    owner, name = full_name.split("/")
    body: dict[str, Any] = {
        "id": 1296269,
        "name": name,
        "full_name": full_name,
        "owner": {"login": owner, "type": "Organization"},
        "private": True,
        "visibility": "private",
        "html_url": f"https://github.com/{full_name}",
        "default_branch": default_branch,
        "permissions": {"admin": admin, "maintain": admin, "push": True, "pull": True},
    }
    if admin:
        body["security_and_analysis"] = {
            "secret_scanning": {"status": secret_scanning},
            "secret_scanning_push_protection": {"status": push_protection},
        }
    return body


def protection_body(
    contexts: Iterable[str], full_name: str = REPOSITORY, branch: str = "main"
) -> dict[str, Any]:
    """GET /repos/{owner}/{repo}/branches/{branch}/protection, requiring `contexts`."""
    url = f"https://api.github.com/repos/{full_name}/branches/{branch}/protection"
    contexts = list(contexts)
    return {
        "url": url,
        "required_status_checks": {
            "url": f"{url}/required_status_checks",
            "strict": True,
            "contexts": contexts,
            "contexts_url": f"{url}/required_status_checks/contexts",
            "checks": [{"context": c, "app_id": ACTIONS_APP_ID} for c in contexts],
        },
        "enforce_admins": {"url": f"{url}/enforce_admins", "enabled": True},
        "required_linear_history": {"enabled": False},
        "allow_force_pushes": {"enabled": False},
        "allow_deletions": {"enabled": False},
    }


def rules_body(contexts: Iterable[str], full_name: str = REPOSITORY) -> list[dict[str, Any]]:
    """GET /repos/{owner}/{repo}/rules/branches/{branch}: a ruleset requiring `contexts`."""
    rules: list[dict[str, Any]] = [
        {
            "type": "deletion",
            "ruleset_source_type": "Repository",
            "ruleset_source": full_name,
            "ruleset_id": 42,
        },
    ]
    checks = [{"context": c, "integration_id": ACTIONS_APP_ID} for c in contexts]
    if checks:
        rules.append(
            {
                "type": "required_status_checks",
                "parameters": {
                    "strict_required_status_checks_policy": True,
                    "do_not_enforce_on_create": False,
                    "required_status_checks": checks,
                },
                "ruleset_source_type": "Repository",
                "ruleset_source": full_name,
                "ruleset_id": 42,
            }
        )
    return rules


def environment_body(
    name: str,
    rules: Sequence[str] = ("required_reviewers", "branch_policy"),
    full_name: str = REPOSITORY,
) -> dict[str, Any]:
    """One environment of GET /repos/{owner}/{repo}/environments, with protection `rules`
    (`required_reviewers`, `wait_timer`, `branch_policy`)."""
    made = {
        "required_reviewers": {
            "type": "required_reviewers",
            "prevent_self_review": True,
            "reviewers": [{"type": "User", "reviewer": {"login": "octocat", "id": 1}}],
        },
        "wait_timer": {"type": "wait_timer", "wait_timer": 30},
        "branch_policy": {"type": "branch_policy"},
    }
    return {
        "id": 161088068,
        "node_id": "MDExOkVudmlyb25tZW50MTYxMDg4MDY4",
        "name": name,
        "url": f"https://api.github.com/repos/{full_name}/environments/{name}",
        "html_url": f"https://github.com/{full_name}/deployments/activity_log?environments_filter={name}",
        "created_at": "2026-11-23T22:00:40Z",
        "updated_at": "2026-11-23T22:00:40Z",
        "protection_rules": [
            {"id": 3736 + i, "node_id": "MDQ6R2F0ZTM3MzY=", **made[rule]}
            for i, rule in enumerate(rules)
        ],
        "deployment_branch_policy": (
            {"protected_branches": False, "custom_branch_policies": True}
            if "branch_policy" in rules
            else None
        ),
    }


def environments_body(*environments: dict[str, Any]) -> dict[str, Any]:
    return {"total_count": len(environments), "environments": list(environments)}


def secrets_body(*names: str) -> dict[str, Any]:
    """GET /repos/{owner}/{repo}/environments/{environment_name}/secrets: names, never values."""
    secrets = [{"name": n, "created_at": T0, "updated_at": T0} for n in names]
    return {"total_count": len(secrets), "secrets": secrets}


def workflow_permissions_body(default: str = "read", approve: bool = False) -> dict[str, Any]:
    """GET /repos/{owner}/{repo}/actions/permissions/workflow."""
    return {"default_workflow_permissions": default, "can_approve_pull_request_reviews": approve}


def gate_checks(legs: Iterable[str], pythons: Iterable[str] = ("3.12",)) -> list[str]:
    """The check names gates.yml's legs report through the callers' `gates` job."""
    return [f"gates / {leg} (Python {python})" for leg in legs for python in pythons]


def well_kept(
    state: dict[str, Any],
    *,
    legs: Sequence[str],
    environments: Sequence[str] = ("staging",),
    secrets: dict[str, Sequence[str]] | None = None,
    full_name: str = REPOSITORY,
) -> None:
    """Answers for a repository that passes every check of `inv audit.github`."""
    base = f"repos/{full_name}"
    put_api(state, base, repo_body(full_name))
    put_api(state, f"{base}/branches/main/protection", protection_body(gate_checks(legs)))
    put_api(state, f"{base}/rules/branches/main", rules_body(()))
    put_api(state, f"{base}/environments", environments_body(*map(environment_body, environments)))
    for name in environments:
        put_api(
            state,
            f"{base}/environments/{name}/secrets",
            secrets_body(*(secrets or {}).get(name, ())),
        )
    put_api(state, f"{base}/actions/permissions/workflow", workflow_permissions_body())


# --- the file ---------------------------------------------------------------------------


# --- for tests -------------------------------------------------------------------------


class FakeGh:
    """A state file in `directory` and an environment whose `gh` is the fake, with a token
    in GH_TOKEN (what a CI job or a laptop with `export GH_TOKEN=…` has)."""

    def __init__(self, directory: Path, token: str, state: dict[str, Any] | None = None) -> None:
        self.path = directory.resolve() / "gh-state.json"
        write(self.path, state if state is not None else new_state())
        # Not the caller's CI either: gh words its errors for automation when CI is set (a
        # test that wants that sets it).
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GH_", "GITHUB_")) and k != "CI"
        }
        python_bin = str(Path(sys.executable).parent)
        self.env = {
            **inherited,
            # the fake's `python3` is this interpreter (quicker to start than a pyenv shim)
            "PATH": os.pathsep.join([str(FAKES), python_bin, os.environ.get("PATH", "")]),
            STATE_ENV: str(self.path),
            "GH_TOKEN": token,
            "GH_CONFIG_DIR": str(directory.resolve() / "gh-config"),
        }

    @property
    def state(self) -> dict[str, Any]:
        return read(self.path)

    @property
    def calls(self) -> list[dict[str, Any]]:
        return self.state["calls"]

    def change(self) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """`with fake.change() as state:` edit the state."""
        return transaction(self.path)

    def run(
        self, *args: str, timeout: float = 30, **env: str | None
    ) -> subprocess.CompletedProcess[str]:
        """`gh ARGS` as a client runs it; keyword arguments set (None: unset) env vars."""
        import subprocess  # here, not above: the fake imports this module on every call

        merged = {**self.env, **env}
        return subprocess.run(
            ["gh", *args],
            env={k: v for k, v in merged.items() if v is not None},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
