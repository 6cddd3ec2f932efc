"""`shipyard.proof` (the `proof.check` gate): real git repositories in tmp_path, real evidence
bundles made by real runs (`shipyard step`), committed with `git add -f` as a user does, and
the event file GitHub Actions writes for a pull request."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import GIT, cli_env, evidence_dir, ok, random_secret, run_here, write_project

from shipyard.config import DEFAULT_PROOF_PATHS, load_config
from shipyard.errors import ConfigError, ExitCode, UsageError
from shipyard.proof import check, glob_pattern, proof_command

CONFIG = """\
version: 1
steps:
  check: echo "checked $DEPLOY_TOKEN"
"""
PROOF = "artifacts/devops/{day}/logs/heartbeat.log"


def git(root: Path, *args: str) -> str:
    done = subprocess.run([*GIT, *args], cwd=root, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {args}: {done.stderr}"
    return done.stdout


def write(root: Path, path: str, text: str = "x\n") -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text)


def commit(root: Path, *paths: str, proof: str = "", message: str = "change") -> None:
    """Commit `paths`, and the bundle holding the heartbeat log `proof` with `git add -f`, as
    docs/proof.md says (artifacts/ is ignored)."""
    if paths:
        git(root, "add", "--", *paths)
    if proof:
        git(root, "add", "-f", "--", str(Path(proof).parents[1]))
    git(root, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A project on `main` whose `.gitignore` leaves out `artifacts/` (as `shipyard init`
    writes it), then a branch `change` on which each test commits its change."""
    root = write_project(tmp_path / "app", CONFIG)
    write(root, ".gitignore", "/artifacts/\n/feedback/\n/.shipyard/\n")
    write(root, "README.md", "# app\n")
    git(root, "init", "-q", "-b", "main")
    commit(root, ".", message="base")
    git(root, "switch", "-q", "-c", "change")
    return root


def run_step(root: Path, env: dict[str, str] | None = None) -> str:
    """A real run of the `check` step; the path of the day's heartbeat log, from the top."""
    ok(run_here(["step", "check"], root, env=env))
    return evidence_dir(root).relative_to(root).as_posix() + "/logs/heartbeat.log"


def gate(root: Path, *, base: str = "main", environ: dict[str, str] | None = None):
    """The gate's exit code and its one line, as the task prints it."""
    return proof_command(load_config(root / "shipyard.yaml"), base=base, environ=environ or {})


def gate_line(root: Path, capsys: pytest.CaptureFixture[str], **options) -> tuple[int, str]:
    code = gate(root, **options)
    lines = capsys.readouterr().out.splitlines()
    if code and "GITHUB_ACTIONS" in options.get("environ", {}):  # and its annotation
        assert lines.pop() == f"::error title=Shipyard proof.check (exit 1)::{lines[0]}"
    assert len(lines) == 1, lines  # one line, whatever it says
    return int(code), lines[0]


def event_file(tmp_path: Path, *, base_sha: str, body: str | None) -> dict[str, str]:
    """A `pull_request` event as GitHub writes it to GITHUB_EVENT_PATH (the parts read here)."""
    path = tmp_path / "event.json"
    event = {
        "action": "synchronize",
        "number": 7,
        "pull_request": {"number": 7, "body": body, "base": {"ref": "main", "sha": base_sha}},
    }
    path.write_text(json.dumps(event))
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(path),
    }


# --- Which changes need a proof ------------------------------------------------------


def test_a_change_outside_the_deploy_paths_passes_in_one_line(repo: Path, capsys) -> None:
    write(repo, "README.md", "# app, changed\n")
    write(repo, "src/app.py")
    commit(repo, ".")
    code, line = gate_line(repo, capsys)
    assert (code, line) == (
        0,
        "proof: no deploy path changed since main (2 paths changed, none in proof.paths)",
    )


@pytest.mark.parametrize(
    "path", [".github/workflows/ci.yml", "deploy/run.sh", "scripts/ci/x/y.sh", "shipyard.yaml"]
)
def test_each_default_deploy_path_needs_a_committed_heartbeat_log(
    repo: Path, capsys, path: str
) -> None:
    write(repo, path, CONFIG + "# changed\n" if path == "shipyard.yaml" else "x\n")
    commit(repo, path)
    code, line = gate_line(repo, capsys)
    assert code == 1
    assert line == (
        "proof: failed: no artifacts/<agent>/<date>/logs/heartbeat.log is committed (after a run:"
        " git add -f artifacts/<agent>/<date>/, then commit)"
        f" (deploy paths changed since main: {path})"
    )


def test_only_committed_changes_count(repo: Path, capsys) -> None:
    write(repo, "deploy/run.sh")  # in the work tree, never committed
    git(repo, "add", "deploy/run.sh")  # staged is not committed either
    code, line = gate_line(repo, capsys)
    assert code == 0
    assert line.startswith("proof: no deploy path changed since main (0 paths changed")


def test_a_rename_out_of_a_deploy_path_is_a_change_to_it(repo: Path, capsys) -> None:
    write(repo, "deploy/run.sh")
    commit(repo, "deploy/run.sh")
    git(repo, "switch", "-q", "main")
    git(repo, "merge", "-q", "--ff-only", "change")
    git(repo, "switch", "-q", "-c", "move")
    (repo / "tools").mkdir()
    git(repo, "mv", "deploy/run.sh", "tools/run.sh")
    git(repo, "commit", "-q", "-m", "move")
    code, line = gate_line(repo, capsys)
    assert code == 1
    assert line.endswith("(deploy paths changed since main: deploy/run.sh)")


def test_configured_paths_replace_the_default(repo: Path, capsys) -> None:
    (repo / "shipyard.yaml").write_text(CONFIG + "proof:\n  paths: ['infra/**/*.tf']\n")
    commit(repo, "shipyard.yaml", message="paths")  # no longer a deploy path itself
    git(repo, "branch", "-f", "main")
    write(repo, "deploy/run.sh")
    write(repo, "infra/main.tf")
    write(repo, "infra/modules/db/db.tf")
    write(repo, "infra/README.md")
    commit(repo, ".")
    code, line = gate_line(repo, capsys)
    assert code == 1
    assert line.endswith("(deploy paths changed since main: infra/main.tf, infra/modules/db/db.tf)")


def test_more_than_five_deploy_paths_are_counted(repo: Path, capsys) -> None:
    for index in range(8):
        write(repo, f"deploy/{index}.sh")
    commit(repo, "deploy")
    _, line = gate_line(repo, capsys)
    assert line.endswith(
        "(deploy paths changed since main: deploy/0.sh, deploy/1.sh, deploy/2.sh, deploy/3.sh,"
        " deploy/4.sh and 3 more)"
    )


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("deploy/**", "deploy/run.sh", True),
        ("deploy/**", "deploy/a/b/run.sh", True),
        ("deploy/**", "deploy", False),
        ("deploy/**", "src/deploy/run.sh", False),
        (".github/workflows/**", ".github/workflows/ci.yml", True),
        (".github/workflows/*.yml", ".github/workflows/sub/ci.yml", False),
        ("**/Dockerfile", "Dockerfile", True),
        ("**/Dockerfile", "services/api/Dockerfile", True),
        ("**/Dockerfile", "services/api/Dockerfile.dev", False),
        ("shipyard.yaml", "shipyard.yaml", True),
        ("shipyard.yaml", "app/shipyard.yaml", False),
        ("shipyard.yaml", "shipyardXyaml", False),
        ("scripts/ci/?.sh", "scripts/ci/a.sh", True),
        ("scripts/ci/?.sh", "scripts/ci/ab.sh", False),
        ("infra/**/*.tf", "infra/main.tf", True),
        ("infra/**/*.tf", "infra/a/b/main.tf", True),
        ("a[b]c", "a[b]c", True),
        ("a[b]c", "abc", False),
    ],
)
def test_globs_match_as_github_paths_filters_do(glob: str, path: str, matches: bool) -> None:
    assert bool(glob_pattern(glob).fullmatch(path)) is matches


# --- What a proof is -------------------------------------------------------------------


def test_a_committed_bundle_that_verifies_is_a_proof(repo: Path, capsys) -> None:
    write(repo, "deploy/run.sh")
    proof = run_step(repo)
    commit(repo, "deploy/run.sh", proof=proof)
    code, line = gate_line(repo, capsys)
    assert (code, line) == (
        0,
        f"proof: {proof} verifies (deploy paths changed since main: deploy/run.sh)",
    )


def test_the_bundle_is_judged_as_committed_not_as_it_is_now(repo: Path, capsys) -> None:
    write(repo, "deploy/run.sh")
    proof = run_step(repo)
    commit(repo, "deploy/run.sh", proof=proof)
    run_step(repo)  # a later run the same day: the folder changes, uncommitted
    assert gate_line(repo, capsys)[0] == 0
    (repo / proof).write_text("rewritten\n")  # the work tree's copy no longer verifies
    assert gate_line(repo, capsys)[0] == 0


def test_a_bundle_in_the_work_tree_only_is_no_proof(repo: Path, capsys) -> None:
    write(repo, "deploy/run.sh")
    run_step(repo)
    commit(repo, "deploy/run.sh")
    code, line = gate_line(repo, capsys)
    assert code == 1
    assert "no artifacts/<agent>/<date>/logs/heartbeat.log is committed" in line


def test_a_heartbeat_log_committed_without_its_bundle_names_what_is_missing(
    repo: Path, capsys
) -> None:
    write(repo, "deploy/run.sh")
    proof = run_step(repo)
    day = Path(proof).parents[1]
    git(repo, "add", "-f", "--", proof, str(day / "sha256_manifest.txt"))
    commit(repo, "deploy/run.sh")
    code, line = gate_line(repo, capsys)
    assert code == 1
    run_id = next((repo / day / "runs").glob("*.json")).stem
    assert line.startswith(f"proof: failed: {proof} does not verify as committed (missing ")
    assert f"runs/{run_id}.json" in line
    assert f"seals/{run_id}.sha256" in line


def test_an_edited_heartbeat_log_is_named_changed(repo: Path, capsys) -> None:
    write(repo, "deploy/run.sh")
    proof = run_step(repo)
    with (repo / proof).open("r+") as log:  # the same length, one byte different
        first = log.read(1)
        log.seek(0)
        log.write("X" if first != "X" else "Y")
    commit(repo, "deploy/run.sh", proof=proof)
    code, line = gate_line(repo, capsys)
    assert code == 1
    assert f"{proof} does not verify as committed (changed logs/heartbeat.log)" in line


def test_a_hand_made_bundle_no_run_sealed_is_no_proof(repo: Path, capsys) -> None:
    day = repo / "artifacts" / "me" / "2026-01-02"
    write(repo, "artifacts/me/2026-01-02/logs/heartbeat.log", "all fine, trust me\n")
    manifest = subprocess.run(
        ["sha256sum", "logs/heartbeat.log"], cwd=day, capture_output=True, check=True
    ).stdout
    (day / "sha256_manifest.txt").write_bytes(manifest)
    write(repo, "deploy/run.sh")
    commit(repo, "deploy/run.sh", proof="artifacts/me/2026-01-02/logs/heartbeat.log")
    code, line = gate_line(repo, capsys)
    assert code == 1
    assert (
        "artifacts/me/2026-01-02/logs/heartbeat.log is in a bundle no run sealed"
        " (no seals/ committed)"
    ) in line


def test_a_deleted_heartbeat_log_is_no_proof(repo: Path, capsys) -> None:
    proof = run_step(repo)
    commit(repo, proof=proof)
    git(repo, "branch", "-f", "main")
    git(repo, "rm", "-q", "--", proof)
    write(repo, "deploy/run.sh")
    commit(repo, "deploy/run.sh")
    code, line = gate_line(repo, capsys)
    assert code == 1
    assert "no artifacts/<agent>/<date>/logs/heartbeat.log is committed" in line


def test_any_agent_folder_is_a_proof(repo: Path, capsys) -> None:
    (repo / "shipyard.yaml").write_text(CONFIG.replace("version: 1", "version: 1\nagent: ci.2"))
    write(repo, "deploy/run.sh")
    ok(run_here(["step", "check"], repo))
    day = evidence_dir(repo, "ci.2")
    commit(repo, "shipyard.yaml", "deploy/run.sh", proof=f"{day.relative_to(repo)}/logs/x")
    code, line = gate_line(repo, capsys)
    assert code == 0
    assert line.startswith(f"proof: artifacts/ci.2/{day.name}/logs/heartbeat.log verifies")


def test_a_project_in_a_subfolder_finds_its_proof_under_it(tmp_path: Path, capsys) -> None:
    top = tmp_path / "mono"
    root = write_project(top / "services" / "api", CONFIG)
    write(top, "README.md")
    git(top, "init", "-q", "-b", "main")
    commit(top, ".", message="base")
    git(top, "switch", "-q", "-c", "change")
    write(top, "deploy/run.sh")
    ok(run_here(["step", "check"], root))
    day = evidence_dir(root)
    commit(top, "deploy/run.sh", proof=f"{day.relative_to(top)}/logs/x")
    code, line = gate_line(root, capsys)
    assert code == 0
    assert line.startswith(f"proof: services/api/artifacts/devops/{day.name}/logs/heartbeat.log")


def test_committed_evidence_holds_no_secret_and_the_line_shows_none(repo: Path, capsys) -> None:
    secret = random_secret()
    write(repo, "deploy/run.sh")
    proof = run_step(repo, env=cli_env(DEPLOY_TOKEN=secret))
    commit(repo, "deploy/run.sh", proof=proof)
    assert "checked ***" in git(repo, "grep", "-h", "checked", "HEAD", "--", "artifacts")
    found = subprocess.run(
        [*GIT, "grep", "-F", secret, "HEAD"], cwd=repo, capture_output=True, check=False
    )
    assert found.returncode == 1  # nothing in the commit holds it
    code = gate(repo, environ={"DEPLOY_TOKEN": secret})
    out = capsys.readouterr().out
    assert code == 0
    assert secret not in out


# --- The pull request's body -----------------------------------------------------------


def test_in_a_pull_request_the_body_must_name_the_proof(repo: Path, tmp_path: Path, capsys) -> None:
    base = git(repo, "rev-parse", "main").strip()
    write(repo, "deploy/run.sh")
    proof = run_step(repo)
    commit(repo, "deploy/run.sh", proof=proof)
    silent = event_file(tmp_path, base_sha=base, body="Moves the deploy script.")
    code, line = gate_line(repo, capsys, base="", environ=silent)
    assert code == 1
    assert line == (
        f"proof: failed: the pull request's body does not name {proof}"
        f" (deploy paths changed since {base[:12]}: deploy/run.sh)"
    )
    named = event_file(tmp_path, base_sha=base, body=f"Moves it.\r\n\r\nProof: `{proof}`\r\n")
    code, line = gate_line(repo, capsys, base="", environ=named)
    assert (code, line) == (
        0,
        f"proof: {proof} verifies, named in the pull request's body"
        f" (deploy paths changed since {base[:12]}: deploy/run.sh)",
    )


def test_a_pull_request_without_a_body_or_a_proof_names_both(
    repo: Path, tmp_path: Path, capsys
) -> None:
    base = git(repo, "rev-parse", "main").strip()
    write(repo, "deploy/run.sh")
    commit(repo, "deploy/run.sh")
    code = gate(repo, base="", environ=event_file(tmp_path, base_sha=base, body=None))
    out = capsys.readouterr().out
    assert code == 1
    line, error = out.splitlines()
    assert "no artifacts/<agent>/<date>/logs/heartbeat.log is committed" in line
    assert "; the pull request's body does not name the heartbeat log (" in line
    assert error.startswith("::error title=Shipyard proof.check (exit 1)::proof: failed: ")


def test_the_pull_requests_base_must_be_fetched(repo: Path, tmp_path: Path) -> None:
    environ = event_file(tmp_path, base_sha="1" * 40, body="")
    with pytest.raises(UsageError) as refused:
        gate(repo, base="", environ=environ)
    assert refused.value.exit_code == ExitCode.USAGE
    assert refused.value.message == (
        "the pull request's base 111111111111 (pull_request.base.sha in GITHUB_EVENT_PATH):"
        " not a commit here (a shallow clone? check out with fetch-depth: 0)"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{", "not JSON"),
        ('{"pull_request": {"body": "x"}}', "no pull_request.base.sha in it"),
        ('{"pull_request": {"base": {"sha": "main"}}}', "no pull_request.base.sha in it"),
        ("[]", "no pull_request.base.sha in it"),
    ],
)
def test_a_bad_event_file_is_refused(repo: Path, tmp_path: Path, content: str, problem: str):
    environ = event_file(tmp_path, base_sha="0" * 40, body="")
    Path(environ["GITHUB_EVENT_PATH"]).write_text(content)
    with pytest.raises(UsageError, match=f": {problem}$"):
        gate(repo, base="", environ=environ)


def test_other_events_read_no_event_file(repo: Path, capsys) -> None:
    environ = {"GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": "/nonexistent/event.json"}
    assert gate_line(repo, capsys, environ=environ)[0] == 0


# --- The base ---------------------------------------------------------------------------


def test_the_default_base_is_origins_default_branch(repo: Path, tmp_path: Path, capsys) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "trunk", str(remote))
    git(repo, "push", "-q", str(remote), "main:trunk")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(remote), str(clone))
    git(clone, "switch", "-q", "-c", "change")
    write(clone, "deploy/run.sh")
    commit(clone, "deploy/run.sh")
    code, line = gate_line(clone, capsys, base="")
    assert code == 1
    assert line.endswith("(deploy paths changed since origin/trunk: deploy/run.sh)")


def test_without_a_remote_the_default_base_is_main(repo: Path, capsys) -> None:
    write(repo, "deploy/run.sh")
    commit(repo, "deploy/run.sh")
    assert gate_line(repo, capsys, base="")[1].endswith("since main: deploy/run.sh)")


def test_without_main_or_a_remote_a_base_must_be_given(repo: Path) -> None:
    git(repo, "branch", "-q", "-m", "main", "trunk")
    with pytest.raises(UsageError) as refused:
        gate(repo, base="")
    assert refused.value.message == (
        "proof.check: no base to compare with (none of origin/HEAD, origin/main, main exists"
        " here); give --base REF"
    )


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("nope", "--base nope: not a commit here"),
        ("-p", "--base -p: not a ref (a ref does not start with '-')"),
        ("main^{tree}", "--base main^{tree}: not a commit here"),
    ],
)
def test_a_bad_base_is_refused_with_exit_2(repo: Path, base: str, message: str) -> None:
    with pytest.raises(UsageError) as refused:
        gate(repo, base=base)
    assert refused.value.exit_code == ExitCode.USAGE
    assert refused.value.message == message


def test_a_base_with_no_common_commit_is_refused(repo: Path) -> None:
    config = load_config(repo / "shipyard.yaml")
    git(repo, "switch", "-q", "--orphan", "other")
    write(repo, "other.txt")
    commit(repo, "other.txt")
    with pytest.raises(UsageError) as refused:
        proof_command(config, base="main", environ={})
    assert refused.value.message == (
        "main and HEAD have no common commit here (a shallow clone? check out with fetch-depth: 0)"
    )


def test_outside_git_the_gate_is_refused(tmp_path: Path) -> None:
    root = write_project(tmp_path / "plain", CONFIG)
    with pytest.raises(UsageError, match=r"is not in a git work tree$"):
        check(root, DEFAULT_PROOF_PATHS, base="main", environ={})


# --- proof.paths in shipyard.yaml -----------------------------------------------------


@pytest.mark.parametrize(
    ("proof", "message"),
    [
        ("proof: [deploy]", "4: proof: expected a mapping like {paths: [deploy/**]}, got a list"),
        ("proof: {path: [x]}", "4: proof.path: unknown key (did you mean 'paths'?)"),
        (
            "proof: {paths: deploy/**}",
            "4: proof.paths: expected a list of path globs like deploy/**, got 'deploy/**'",
        ),
        (
            "proof:\n  paths:\n    - deploy/",
            "6: proof.paths[0]: 'deploy/' ends with '/' (write deploy/** for everything under it)",
        ),
        (
            "proof:\n  paths: [/etc/x]",
            "5: proof.paths[0]: '/etc/x' is absolute (globs are matched from the repository's"
            " top: leave out the first '/')",
        ),
        (
            "proof:\n  paths: [deploy/../x]",
            "5: proof.paths[0]: 'deploy/../x' has '..', which leads out of the repository",
        ),
        (
            "proof:\n  paths: [./deploy/**]",
            "5: proof.paths[0]: './deploy/**' has a '.' or empty part, which no path git names"
            " has (deploy/**, not ./deploy/**)",
        ),
        (
            "proof:\n  paths: ['!docs/**']",
            "5: proof.paths[0]: '!docs/**' starts with '!': there is no negation (list only the"
            " paths that need a proof)",
        ),
        ("proof:\n  paths: [a, b, a]", "5: proof.paths[2]: already listed as proof.paths[0]"),
        (
            "proof:\n  paths: ['']",
            "5: proof.paths[0]: expected a path glob like deploy/** or .github/workflows/*.yml,"
            " got ''",
        ),
    ],
)
def test_a_bad_proof_section_is_one_line_naming_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proof: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shipyard.yaml").write_text(CONFIG + proof + "\n")
    with pytest.raises(ConfigError) as refused:
        load_config("shipyard.yaml")
    assert refused.value.exit_code == ExitCode.USAGE
    assert refused.value.message == f"shipyard.yaml:{message}"


def test_proof_paths_default_and_may_be_empty(tmp_path: Path) -> None:
    (tmp_path / "shipyard.yaml").write_text(CONFIG)
    assert load_config(tmp_path / "shipyard.yaml").proof.paths == DEFAULT_PROOF_PATHS
    assert DEFAULT_PROOF_PATHS == (
        ".github/workflows/**",
        "deploy/**",
        "scripts/ci/**",
        "shipyard.yaml",
    )
    (tmp_path / "shipyard.yaml").write_text(CONFIG + "proof: {paths: []}\n")
    assert load_config(tmp_path / "shipyard.yaml").proof.paths == ()


# --- End to end, through the task ------------------------------------------------------
# ENABLE once src/shipyard/tasks.py has `proof.check` (remove the mark).


def test_proof_check_task_fails_then_passes_with_a_committed_proof(repo: Path) -> None:
    write(repo, "deploy/run.sh")
    commit(repo, "deploy/run.sh")
    refused = run_here(["proof.check", "--base", "main"], repo, program="shipyard")
    assert refused.returncode == 1
    assert refused.stdout.startswith("proof: failed: no artifacts/<agent>/<date>/logs/")
    proof = run_step(repo)
    commit(repo, proof=proof)
    passed = ok(run_here(["proof.check"], repo, program="shipyard"))
    assert (
        passed.stdout
        == f"proof: {proof} verifies (deploy paths changed since main: deploy/run.sh)\n"
    )
    bad = run_here(["proof.check", "--base", "nope"], repo, program="shipyard")
    assert (bad.returncode, bad.stderr.strip()) == (2, "--base nope: not a commit here")
