"""The GitHub Actions workflows and the composite action: valid, audited, and calling only
tasks, sessions and flags that exist.

The validators (check-jsonschema, zizmor) run as real subprocesses, offline. The call check
reads every `run:` script, finds each `inv`, `shipyard` and `nox` command in it, and compares
it with what the programs themselves report in this repository: `inv --list --list-format=json`,
`inv --help TASK` and `nox -l --json`.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml
from helpers import BIN, REPO, cli_env, run_cli

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
DEPLOY = REPO / ".github" / "workflows" / "deploy-staging.yml"
GATES = REPO / ".github" / "workflows" / "gates.yml"
CI = REPO / ".github" / "workflows" / "ci.yml"
DEPENDABOT = REPO / ".github" / "dependabot.yml"
ACTION = REPO / "ci" / "github" / "action.yml"
RUN_FILES = [*WORKFLOWS, ACTION]

# What the scripts may refer to: the deploy workflow's environment defaults to staging.
DEFAULT_VARIABLES = {"SHIPYARD_ENV": "staging"}
INVOKE_PROGRAMS = {"inv": "inv", "invoke": "inv", "shipyard": "shipyard"}
SHELL_KEYWORDS = frozenset({"if", "then", "else", "elif", "fi", "do", "done", "while", "until"})
SHELL_PREFIXES = frozenset({"!", "time", "exec", "command", "{", "}"})
# `-c STRING, --config=STRING`, `-d, --dry-run`, `--no-dedupe`, `-h [STRING], --help[=STRING]`
HELP_OPTION = re.compile(r"^\s+(?:(-\w)(?: \[?[A-Z]+\]?)?, )?(--[\w-]+)(\[?=[A-Z]+\]?)?(?:\s|$)")
PINNED_USES = re.compile(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def tool(name: str) -> str:
    """A console script of this environment (the dev extra), found even when PATH lacks it."""
    found = BIN / name
    if found.exists():
        return str(found)
    on_path = shutil.which(name)
    if on_path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return on_path


def relative(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


# --- validators -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"]
)
def test_workflows_pass_check_jsonschema(schema):
    done = run_cli(
        [tool("check-jsonschema"), "--builtin-schema", schema, *map(str, WORKFLOWS)], REPO
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok -- validation done" in done.stdout


def test_action_passes_check_jsonschema():
    done = run_cli(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", str(ACTION)], REPO
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dependabot_config_passes_check_jsonschema():
    done = run_cli(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot", str(DEPENDABOT)], REPO
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("persona", ["regular", "pedantic", "auditor"])
def test_zizmor_finds_nothing(persona):
    done = run_cli(
        [tool("zizmor"), "--offline", "--persona", persona, ".github", "ci/github"], REPO
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for path in [*RUN_FILES, DEPENDABOT]:
        assert f"completed {relative(path)}" in done.stderr  # every file was audited


def test_every_action_is_pinned_to_a_full_sha_with_its_version():
    """Every action from elsewhere; a workflow of this repository (`./…`) is read at the
    caller's own commit."""
    local = 0
    for path in RUN_FILES:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.match(r"\s*(- )?uses: \./\.github/workflows/[\w-]+\.yml(\s|$)", line):
                local += 1
            elif re.match(r"\s*(- )?uses:", line):
                assert PINNED_USES.search(line), f"{relative(path)}:{number}: {line.strip()}"
    assert local == 2  # ci.yml and deploy-staging.yml call gates.yml


# --- finding the calls in `run:` scripts ------------------------------------------------------


@dataclass(frozen=True)
class Call:
    file: str
    step: str  # "job deploy, step 'Deploy'"
    program: str  # inv, shipyard or nox
    args: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.file}: {self.step}: `{shlex.join([self.program, *self.args])}`"


def run_scripts(path: Path) -> Iterator[tuple[str, str]]:
    """(where, script) for every `run:` of a workflow's jobs or a composite action."""
    document = yaml.safe_load(path.read_text())
    jobs = document.get("jobs") or {"(composite)": document.get("runs", {})}
    for job_id, job in jobs.items():
        for number, step in enumerate(job.get("steps", []), start=1):
            if "run" in step:
                label = step.get("name") or step.get("id") or f"#{number}"
                yield f"job {job_id}, step {label!r}", step["run"]


def expand(script: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        script = re.sub(rf"\$(?:\{{{name}\}}|{name}\b)", value, script)
    return script


def simple_commands(script: str) -> Iterator[list[str]]:
    """The words of each simple command, split at `;`, `&&`, `||`, `|`, `&` and newlines."""
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in lexer:
            if token and set(token) <= set(";&|()"):
                yield words
                words = []
            else:
                words.append(token)
        yield words


def command_words(words: list[str]) -> list[str]:
    """Drop shell keywords and `NAME=value` assignments in front of the program."""
    while words and (
        words[0] in SHELL_KEYWORDS
        or words[0] in SHELL_PREFIXES
        or re.fullmatch(r"[A-Za-z_]\w*=.*", words[0])
    ):
        words = words[1:]
    return words


def as_call(words: list[str]) -> tuple[str, list[str]] | None:
    """(program, arguments) when the command runs invoke, shipyard or nox."""
    if len(words) >= 3 and re.fullmatch(r"python[\d.]*", Path(words[0]).name) and words[1] == "-m":
        words = [words[2], *words[3:]]
    if not words:
        return None
    name = Path(words[0]).name
    if name in INVOKE_PROGRAMS:
        return INVOKE_PROGRAMS[name], words[1:]
    if name == "nox":
        return "nox", words[1:]
    return None


def calls_in(path: Path, variables: dict[str, str] = DEFAULT_VARIABLES) -> list[Call]:
    found = []
    for where, script in run_scripts(path):
        for words in simple_commands(expand(script, variables)):
            call = as_call(command_words(words))
            if call:
                found.append(Call(relative(path), where, call[0], tuple(call[1])))
    return found


# --- what exists: asked of the programs themselves --------------------------------------------


def _ask(args: list[str]) -> str:
    done = run_cli(args, REPO, env=cli_env())
    assert done.returncode == 0, f"{shlex.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def _flatten(collection: dict, prefix: str = "") -> Iterator[str]:
    for task in collection["tasks"]:
        for name in (task["name"], *task["aliases"]):
            yield prefix + name
    for sub in collection["collections"]:
        if sub["default"]:
            yield prefix + sub["name"]
        yield from _flatten(sub, f"{prefix}{sub['name']}.")


@cache
def task_names(program: str) -> frozenset[str]:
    listing = json.loads(_ask([tool(program), "--list", "--list-format=json"]))
    return frozenset(_flatten(listing))


@cache
def options(program: str, task: str | None) -> dict[str, bool]:
    """Every flag (short and long) of a task, or the core flags: does it take a value?"""
    text = _ask([tool(program), "--help", *([task] if task else [])])
    flags: dict[str, bool] = {}
    for line in text.splitlines():
        match = HELP_OPTION.match(line)
        if match:
            short, long, value = match.groups()
            takes_value = bool(value) and not value.startswith("[")
            flags[long] = takes_value
            if short:
                flags[short] = takes_value
    return flags


@cache
def positional(task: str) -> tuple[str, ...]:
    """The task's positional arguments (which `--help` does not mark), from its definition."""
    from shipyard.tasks import namespace

    return tuple(namespace()[task].positional)


@cache
def nox_sessions() -> frozenset[str]:
    listing = json.loads(_ask([tool("nox"), "-l", "--json"]))
    return frozenset(name for entry in listing for name in (entry["session"], entry["name"]))


# --- checking a call --------------------------------------------------------------------------


def _flag_problem(
    program: str, task: str | None, args: tuple[str, ...], index: int
) -> tuple[str | None, int]:
    """(problem or None, the index after the flag and its value)."""
    flags = options(program, task)
    name, equals, _ = args[index].partition("=")
    if name in flags:
        return None, index + (2 if flags[name] and not equals else 1)
    owner = f"task {task}" if task else f"{program} itself"
    problem = f"{owner} takes no flag {name} (it takes {', '.join(sorted(flags))})"
    following = args[index + 1] if index + 1 < len(args) else "-"
    # An unknown flag's value (if it has one) should not be reported as a task as well.
    takes_following = not (equals or following.startswith("-") or following in task_names(program))
    return problem, index + (2 if takes_following else 1)


def invoke_problems(program: str, args: tuple[str, ...]) -> list[str]:
    problems, task, filled, index = [], None, 0, 0
    while index < len(args) and args[index] != "--":
        word = args[index]
        if "$" in word:
            return problems  # a name only known at run time (an action input): not checkable
        if word.startswith("-"):
            problem, index = _flag_problem(program, task, args, index)
            problems += [problem] if problem else []
            continue
        if task and word not in task_names(program) and filled < len(positional(task)):
            filled += 1  # a positional argument, e.g. the NAME of `step NAME`
        elif word in task_names(program):
            task, filled = word, 0
        else:
            problems.append(
                f"no task named {word!r} ({program} --list has: {sorted(task_names(program))})"
            )
        index += 1
    return problems


def nox_problems(args: tuple[str, ...]) -> list[str]:
    named, index = [], 0
    while index < len(args) and args[index] != "--":
        word = args[index]
        if word.startswith(("--session=", "--sessions=")):
            named += word.partition("=")[2].split(",")
        elif word in {"-s", "--session", "--sessions", "-e"}:
            while index + 1 < len(args) and not args[index + 1].startswith("-"):
                index += 1
                named.append(args[index])
        index += 1
    return [
        f"no nox session named {name!r} (nox -l has: {sorted(nox_sessions())})"
        for name in named
        if "$" not in name and name not in nox_sessions()
    ]


def call_problems(calls: list[Call]) -> list[str]:
    report = []
    for call in calls:
        if call.program == "nox":
            problems = nox_problems(call.args)
        else:
            problems = invoke_problems(call.program, call.args)
        report += [f"{call}: {problem}" for problem in problems]
    return report


def test_the_scripts_call_inv_and_nox_at_all():
    """The check below would pass vacuously if the parser found nothing."""
    calls = [str(call) for path in RUN_FILES for call in calls_in(path)]
    expected = [
        "gates.yml: job plan, step 'List the gates': `shipyard gates --list`",
        "ci.yml: job proof, step 'Proof': `inv proof.check`",
        "deploy-staging.yml: job deploy, step 'Build application': `inv build`",
        "deploy-staging.yml: job deploy, step 'Smoke': `inv smoke --env staging`",
        "deploy-staging.yml: job deploy, step 'Deploy': `inv deploy.staging --no-build`",
        "step 'Rollback (dry-run)': `inv rollback --env staging --dry-run`",
        "deploy-staging.yml: job deploy, step 'Rollback': `inv rollback --env staging`",
        "ci/github/action.yml: job (composite), step 'Run the task': `inv '$TASK'`",
        "ci/github/action.yml: job (composite), step 'Run the task': `shipyard '$TASK'`",
    ]
    for wanted in expected:
        assert any(wanted in call for call in calls), f"{wanted} not in {calls}"


def test_every_task_session_and_flag_called_exists():
    calls = [call for path in RUN_FILES for call in calls_in(path)]
    problems = call_problems(calls)
    assert not problems, "\n".join(problems)


def test_the_checker_flags_a_task_a_session_and_a_flag_that_do_not_exist(tmp_path):
    workflow = tmp_path / "bad.yml"
    workflow.write_text(
        "jobs:\n"
        "  ship:\n"
        "    steps:\n"
        "      - name: Deploy\n"
        "        run: inv deploy.prod && inv rollback --env $SHIPYARD_ENV --dry-runn\n"
        "      - name: Lint\n"
        "        run: |\n"
        "          nox -s lints\n"
        "          inv step lint build --jobs 2\n"
    )
    problems = call_problems(calls_in(workflow))
    assert len(problems) == 4, problems
    deploy, rollback, nox, build = problems
    assert deploy.startswith(f"{workflow}: job ship, step 'Deploy': `inv deploy.prod`: ")
    assert "no task named 'deploy.prod'" in deploy and "deploy.staging" in deploy
    assert "`inv rollback --env staging --dry-runn`" in rollback
    assert "task rollback takes no flag --dry-runn" in rollback
    assert nox.startswith(f"{workflow}: job ship, step 'Lint': `nox -s lints`: ")
    assert "no nox session named 'lints'" in nox
    assert "task build takes no flag --jobs" in build  # `lint` filled step's NAME


# --- the deploy workflow's contract -----------------------------------------------------------


@pytest.fixture(scope="module")
def deploy_workflow() -> dict:
    return yaml.safe_load(DEPLOY.read_text())


def steps_by_name(workflow: dict, job: str = "deploy") -> dict[str, dict]:
    return {step.get("name"): step for step in workflow["jobs"][job]["steps"]}


def test_deploy_steps_have_the_names_evidence_and_runbooks_use(deploy_workflow):
    names = [step.get("name") for step in deploy_workflow["jobs"]["deploy"]["steps"]]
    wanted = [
        "Build application",
        "Smoke",
        "Deploy",
        "Rollback (dry-run)",
        "Rollback",
        "Upload evidence",
    ]
    assert [name for name in names if name in wanted] == wanted
    steps = steps_by_name(deploy_workflow)
    assert steps["Deploy"]["id"] == "deploy"
    assert steps["Rollback (dry-run)"]["if"] == "always()"
    assert steps["Rollback"]["if"].startswith("failure()")
    assert "steps.deploy.outputs.exit-code == '4'" in steps["Rollback"]["if"]


def test_deploy_runs_one_at_a_time_and_is_never_cancelled(deploy_workflow):
    """Per environment, on the deploy job: the gates of newer pushes run meanwhile."""
    job = deploy_workflow["jobs"]["deploy"]
    assert job["concurrency"] == {
        "group": "deploy-${{ inputs.environment || 'staging' }}",
        "cancel-in-progress": False,
    }
    assert "concurrency" not in deploy_workflow  # one group, not two
    assert job["environment"] == {
        "name": "${{ inputs.environment || 'staging' }}",
        "url": "${{ steps.deploy.outputs.url }}",  # Shipyard's `url` output
    }


def test_a_commit_deploys_only_after_its_gates_passed_in_the_same_run(deploy_workflow):
    jobs = deploy_workflow["jobs"]
    assert jobs["gates"]["uses"] == "./.github/workflows/gates.yml"
    assert jobs["deploy"]["needs"] == "gates"
    assert "if" not in jobs["deploy"]  # the default success(): every gate passed
    assert yaml.safe_load(CI.read_text())["jobs"]["gates"]["uses"] == jobs["gates"]["uses"]
    # `on:` is read by PyYAML as True
    dispatch = deploy_workflow[True]["workflow_dispatch"]["inputs"]["environment"]
    assert dispatch["type"] == "environment" and dispatch["default"] == "staging"


SARIF_UPLOAD = {"contents": "read", "actions": "read", "security-events": "write"}
PERMISSIONS = {  # (workflow, job) -> what it may do, beyond `contents: read` for every job
    ("deploy-staging.yml", "deploy"): {"id-token": "write", "attestations": "write"},
    ("gates.yml", "sarif"): SARIF_UPLOAD,
    # a caller grants what the called workflow's jobs ask for; each asks for its own part
    ("ci.yml", "gates"): SARIF_UPLOAD,
    ("deploy-staging.yml", "gates"): SARIF_UPLOAD,
}


@pytest.mark.parametrize("path", WORKFLOWS, ids=relative)
def test_each_job_has_only_the_permissions_it_needs(path):
    document = yaml.safe_load(path.read_text())
    assert document["permissions"] == {}
    for name, job in document["jobs"].items():
        wanted = {"contents": "read", **PERMISSIONS.get((path.name, name), {})}
        assert job["permissions"] == wanted, f"{relative(path)}: job {name}"


def test_the_secret_scan_report_goes_to_code_scanning_also_when_it_found_something():
    sarif = yaml.safe_load(GATES.read_text())["jobs"]["sarif"]
    assert sarif["needs"] == "gate"
    assert sarif["if"].startswith("${{ !cancelled() && ")  # a failed scan gate uploads too
    assert "head.repo.full_name == github.repository" in sarif["if"]  # forks cannot write
    (upload,) = [s for s in sarif["steps"] if "upload-sarif" in s.get("uses", "")]
    assert upload["uses"].startswith("github/codeql-action/upload-sarif@")
    assert upload["with"] == {
        "sarif_file": "${{ steps.report.outputs.file }}",
        "category": "secret-scan",
    }


def test_the_deploy_attests_the_artifact_it_deployed(deploy_workflow):
    steps = steps_by_name(deploy_workflow)
    attest = steps["Attest the artifact"]
    assert attest["uses"].startswith("actions/attest-build-provenance@")
    assert attest["with"] == {"subject-path": "${{ steps.deploy.outputs.artifact }}"}
    assert steps["Provenance into the evidence"]["run"] == "inv evidence.attest"
    names = list(steps)
    assert (
        names.index("Deploy") < names.index("Attest the artifact") < names.index("Upload evidence")
    )


def test_each_gate_runs_on_its_own_runner_and_one_job_verifies_them_all():
    jobs = yaml.safe_load(GATES.read_text())["jobs"]
    gate = jobs["gate"]
    assert gate["needs"] == "plan"
    assert gate["strategy"]["matrix"]["leg"] == "${{ fromJSON(needs.plan.outputs.legs) }}"
    assert gate["strategy"]["fail-fast"] is False
    assert gate["env"]["GATE"] == "${{ matrix.leg.gate }}"
    assert gate["env"]["SHIPYARD_SHARD"] == "${{ matrix.leg.shard }}"
    assert [step["run"] for step in gate["steps"] if step.get("name") == "Gate"] == [
        'nox -s "$GATE"'
    ]
    uv = [step for step in gate["steps"] if step.get("uses", "").startswith("astral-sh/setup-uv@")]
    assert uv and uv[0]["with"]["enable-cache"] is True  # nox's environments, cached
    upload = next(s for s in gate["steps"] if s.get("name") == "Upload evidence")
    assert upload["with"]["name"].startswith("evidence-gate-${{ matrix.leg.slug }}-")
    evidence = jobs["evidence"]
    assert evidence["needs"] == ["plan", "gate"]
    assert "!cancelled()" in evidence["if"]  # also when a gate failed
    download = next(s for s in evidence["steps"] if s.get("name") == "Download evidence")
    assert download["with"] == {"pattern": "evidence-gate-*", "path": "bundles"}
    verify = next(s for s in evidence["steps"] if s.get("name") == "Verify every bundle")
    assert verify["run"] == "inv evidence.verify --bundles bundles"


def plan_legs(root: Path, tmp_path: Path) -> list[dict]:
    """What gates.yml's plan job outputs for the project at `root`: its script, run as the
    runner runs it, with the real `shipyard` on PATH."""
    plan = yaml.safe_load(GATES.read_text())["jobs"]["plan"]
    (step,) = [step for step in plan["steps"] if step.get("id") == "list"]
    output = tmp_path / "github_output"
    output.write_text("")
    script = tmp_path / "plan.sh"
    script.write_text(step["run"])
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=root,
        env=cli_env(GITHUB_OUTPUT=str(output)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = output.read_text().splitlines()
    name, _, value = line.partition("=")
    assert name == "legs"
    return json.loads(value)


def test_the_plan_job_lists_the_real_gates_and_grows_with_them(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    config = (REPO / "shipyard.yaml").read_text()
    (root / "shipyard.yaml").write_text(config)
    legs = plan_legs(root, tmp_path)
    gates = yaml.safe_load(config)["gates"]
    steps = yaml.safe_load(config)["steps"]
    assert [leg["gate"] for leg in legs] == [
        gate for gate in gates for _ in range(steps[gate].get("shards", 1))
    ]
    sharded = [leg for leg in legs if leg["gate"] == "test:ci"]
    assert [(leg["shard"], leg["shards"]) for leg in sharded] == [(1, 2), (2, 2)]
    assert [leg["slug"] for leg in sharded] == ["test-ci-1-of-2", "test-ci-2-of-2"]
    # a gate more in shipyard.yaml: a leg more in the matrix
    grown = config.replace("gates: [fmt, lint", "gates: [fmt, audit, lint")
    grown = grown.replace("steps:\n", "steps:\n  audit: {run: pip-audit}\n", 1)
    (root / "shipyard.yaml").write_text(grown)
    more = plan_legs(root, tmp_path)
    assert [leg["gate"] for leg in more] == ["fmt", "audit", *[leg["gate"] for leg in legs[1:]]]


def test_dependabot_keeps_the_actions_pins_and_python_dependencies_fresh():
    updates = yaml.safe_load(DEPENDABOT.read_text())["updates"]
    assert {(u["package-ecosystem"], u["directory"]) for u in updates} == {
        ("github-actions", "/"),
        ("pip", "/"),
    }


@pytest.mark.parametrize("path", [p for p in RUN_FILES if p != CI], ids=relative)
def test_evidence_is_uploaded_whatever_happened(path):
    document = yaml.safe_load(path.read_text())
    jobs = document.get("jobs") or {"composite": document["runs"]}
    uploads = [
        step
        for job in jobs.values()
        for step in job.get("steps", [])  # a job that calls a workflow has none
        if step.get("uses", "").startswith("actions/upload-artifact@")
    ]
    assert uploads, f"{relative(path)} uploads no evidence"
    for step in uploads:
        assert "always()" in step["if"]
        assert step["with"]["if-no-files-found"] == "error"
        assert step["with"]["path"].split() == ["artifacts/", "feedback/"]
        assert "${{ github.run_attempt }}" in step["with"]["name"]  # unique per attempt


@pytest.mark.parametrize(("inv_exit", "step_exit"), [(0, 0), (6, 0), (1, 1), (5, 5)])
def test_rollback_dry_run_step_treats_nothing_to_roll_back_as_success(
    tmp_path, deploy_workflow, inv_exit, step_exit
):
    fake = tmp_path / "bin" / "inv"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "inv $*"\nexit {inv_exit}\n')
    fake.chmod(0o755)
    script = tmp_path / "step.sh"
    script.write_text(steps_by_name(deploy_workflow)["Rollback (dry-run)"]["run"])
    env = cli_env(PATH=f"{fake.parent}:/usr/bin:/bin", SHIPYARD_ENV="staging")
    # The runner's own command line for `shell: bash`.
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == step_exit, done.stdout + done.stderr
    assert "inv rollback --env staging --dry-run" in done.stdout
    assert ("::notice " in done.stdout) == (inv_exit == 6)


def run_step_script(script: str, cwd: Path, tmp_path: Path) -> tuple[int, str, dict[str, str]]:
    """A `run:` script as the runner runs it (`shell: bash`): its exit code, stdout and the
    outputs it wrote to GITHUB_OUTPUT."""
    output = tmp_path / "github_output"
    output.write_text("")
    (tmp_path / "step.sh").write_text(script)
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(tmp_path / "step.sh")],
        cwd=cwd,
        env=cli_env(GITHUB_OUTPUT=str(output)),
        capture_output=True,
        text=True,
        check=False,
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return done.returncode, done.stdout, outputs


def test_the_sarif_job_finds_the_report_in_the_gates_evidence(tmp_path):
    (step,) = [
        s
        for s in yaml.safe_load(GATES.read_text())["jobs"]["sarif"]["steps"]
        if s.get("id") == "report"
    ]
    report = tmp_path / "bundles/evidence-gate-scan-py3.12-1/artifacts/devops/2026-12-02"
    report = report / "reports/20261202T000000Z-0000/secret-scan.sarif"
    report.parent.mkdir(parents=True)
    report.write_text("{}")
    code, _, outputs = run_step_script(step["run"], tmp_path, tmp_path)
    assert code == 0 and outputs == {"file": str(report.relative_to(tmp_path))}
    report.unlink()
    code, stdout, outputs = run_step_script(step["run"], tmp_path, tmp_path)
    assert code == 1 and not outputs
    assert "::error title=secret scan::no secret-scan.sarif" in stdout


def test_pull_requests_run_the_proof_gate_and_an_edited_description_only_that():
    ci = yaml.safe_load(CI.read_text())
    assert ci[True]["pull_request"]["types"] == ["opened", "synchronize", "reopened", "edited"]
    assert ci["jobs"]["gates"]["if"] == "github.event.action != 'edited'"
    assert "edited" in ci["concurrency"]["group"]  # an edit never cancels a push's gates
    proof = ci["jobs"]["proof"]
    assert "if" not in proof
    (checkout,) = [s for s in proof["steps"] if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["fetch-depth"] == 0  # the base and the commits since
    assert [s["run"] for s in proof["steps"] if s.get("name") == "Proof"] == ["inv proof.check"]
