"""`shipyard.hooks` and `.pre-commit-hooks.yaml`: the pre-push hook written into real git
repositories in tmp_path, run by a real `git push` to a local bare remote."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import (
    BIN,
    GIT,
    REPO,
    cli_env,
    evidence_dir,
    random_secret,
    run_cli,
    run_here,
    write_project,
)

from shipyard.config import load_config
from shipyard.errors import ConfigError, ExitCode, UsageError
from shipyard.hooks import MARKER, hooks_command

CONFIG = """\
version: 1
steps:
  fmt: echo "formatted $DEPLOY_TOKEN"
  lint: echo linted
  slow: "echo 'the long suite'; exit 0"
  broken: echo "broken $DEPLOY_TOKEN"; exit 3
gates: [fmt, lint, slow]
hooks:
  pre_push: [fmt, lint]
"""
FOREIGN = b"#!/bin/sh\n# a team's own hook\nexec ./ci/check-branch-name\n"


def git(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*GIT, *args], cwd=root, capture_output=True, text=True, check=False, env=env
    )


def checked_git(root: Path, *args: str) -> str:
    done = git(root, *args)
    assert done.returncode == 0, f"git {args}: {done.stderr}"
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = write_project(tmp_path / "app", CONFIG)
    (root / ".gitignore").write_text("/artifacts/\n/feedback/\n")
    checked_git(root, "init", "-q", "-b", "main")
    checked_git(root, "add", ".")
    checked_git(root, "commit", "-q", "-m", "base")
    return root


def command(root: Path, action: str, capsys, *, force: bool = False) -> tuple[int, str]:
    """`hooks_command` as the task calls it, from the project's folder: exit code and output."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        ended = hooks_command(action, force=force, environ={})
    code = ended if isinstance(ended, int) else ended.exit_code
    return int(code), capsys.readouterr().out


def refused(root: Path, action: str, *, force: bool = False) -> str:
    with pytest.MonkeyPatch.context() as patch, pytest.raises(UsageError) as refusal:
        patch.chdir(root)
        hooks_command(action, force=force, environ={})
    assert refusal.value.exit_code == ExitCode.USAGE
    return refusal.value.message


def hook_of(root: Path) -> Path:
    return root / ".git" / "hooks" / "pre-push"


# --- install -------------------------------------------------------------------------------


def test_install_writes_an_executable_hook_that_says_shipyard_wrote_it(repo: Path, capsys):
    code, out = command(repo, "install", capsys)
    assert code == 0
    assert out == (
        "installed .git/hooks/pre-push: git push first runs fmt, lint (hooks.pre_push) through"
        " Shipyard; git push --no-verify skips it\n"
    )
    hook = hook_of(repo)
    assert hook.stat().st_mode & 0o777 == 0o755
    lines = hook.read_text().splitlines()
    assert lines[0] == "#!/bin/sh"
    assert lines[1].startswith(MARKER)
    assert "config=shipyard.yaml" in lines
    assert f"python={sys.executable}" in lines
    assert subprocess.run(["sh", "-n", str(hook)], check=False).returncode == 0


def test_without_hooks_pre_push_the_hook_runs_the_gates(repo: Path, capsys) -> None:
    (repo / "shipyard.yaml").write_text(CONFIG.split("hooks:", maxsplit=1)[0])
    code, out = command(repo, "install", capsys)
    assert code == 0
    assert "git push first runs fmt, lint, slow (the gates) through Shipyard" in out


def test_install_again_rewrites_its_own_hook(repo: Path, capsys) -> None:
    command(repo, "install", capsys)
    hook_of(repo).write_text(hook_of(repo).read_text().replace("fmt", "old"))
    code, _ = command(repo, "install", capsys)
    assert code == 0
    assert "old" not in hook_of(repo).read_text()


def test_nothing_to_run_is_refused(repo: Path) -> None:
    (repo / "shipyard.yaml").write_text("version: 1\nsteps: {a: 'true'}\n")
    assert (
        refused(repo, "install") == "shipyard.yaml: nothing for a pre-push hook to run (no gates)"
    )
    (repo / "shipyard.yaml").write_text(CONFIG.replace("[fmt, lint]", "[]"))
    assert refused(repo, "install") == (
        "shipyard.yaml: nothing for a pre-push hook to run (hooks.pre_push is empty)"
    )
    assert not hook_of(repo).exists()


def test_install_respects_core_hooks_path(repo: Path, capsys) -> None:
    checked_git(repo, "config", "core.hooksPath", "ci/githooks")
    code, out = command(repo, "install", capsys)
    assert code == 0
    assert out.startswith("installed ci/githooks/pre-push: ")
    assert (repo / "ci" / "githooks" / "pre-push").is_file()
    assert not hook_of(repo).exists()


def test_a_project_in_a_subfolder_hooks_its_repository(tmp_path: Path, capsys) -> None:
    top = tmp_path / "mono"
    root = write_project(top / "services" / "api", CONFIG)
    checked_git(top, "init", "-q", "-b", "main")
    code, out = command(root, "install", capsys)
    assert code == 0
    assert out.startswith(f"installed {top / '.git' / 'hooks' / 'pre-push'}: ")
    assert "config=services/api/shipyard.yaml" in hook_of(top).read_text().splitlines()


def test_outside_git_install_is_refused(tmp_path: Path) -> None:
    root = write_project(tmp_path / "plain", CONFIG)
    assert refused(root, "install") == f"hooks: {root} is not in a git repository"


# --- A hook Shipyard did not write -----------------------------------------------------


def foreign_hook(root: Path) -> Path:
    hook = hook_of(root)
    hook.write_bytes(FOREIGN)
    hook.chmod(0o750)
    return hook


def test_a_foreign_hook_is_never_overwritten(repo: Path) -> None:
    hook = foreign_hook(repo)
    assert refused(repo, "install") == (
        ".git/hooks/pre-push: a hook Shipyard did not write is there; left as it is (--force"
        " sets it aside as pre-push.before-shipyard and installs Shipyard's)"
    )
    assert hook.read_bytes() == FOREIGN
    assert hook.stat().st_mode & 0o777 == 0o750


def test_a_foreign_hook_is_never_removed(repo: Path) -> None:
    hook = foreign_hook(repo)
    assert refused(repo, "uninstall") == (
        ".git/hooks/pre-push: a hook Shipyard did not write; left as it is (remove it yourself"
        " if it should go)"
    )
    assert hook.read_bytes() == FOREIGN


def test_a_symlinked_hook_is_foreign_and_not_followed(repo: Path) -> None:
    target = repo / "ci-hook.sh"
    target.write_bytes(FOREIGN)
    hook_of(repo).symlink_to(target)
    assert "a hook Shipyard did not write is there" in refused(repo, "install")
    assert hook_of(repo).is_symlink()
    assert target.read_bytes() == FOREIGN


def test_force_sets_a_foreign_hook_aside_and_uninstall_puts_it_back(repo: Path, capsys):
    hook = foreign_hook(repo)
    code, out = command(repo, "install", capsys, force=True)
    assert code == 0
    assert out.splitlines()[0] == (
        "set aside .git/hooks/pre-push as pre-push.before-shipyard (hooks uninstall puts it back)"
    )
    assert (hook.parent / "pre-push.before-shipyard").read_bytes() == FOREIGN
    assert MARKER in hook.read_text()
    code, out = command(repo, "uninstall", capsys)
    assert (code, out) == (
        0,
        "removed .git/hooks/pre-push; put back the hook that was there before (from"
        " pre-push.before-shipyard)\n",
    )
    assert hook.read_bytes() == FOREIGN
    assert hook.stat().st_mode & 0o777 == 0o750
    assert not (hook.parent / "pre-push.before-shipyard").exists()


def test_force_never_overwrites_a_hook_already_set_aside(repo: Path) -> None:
    foreign_hook(repo)
    earlier = hook_of(repo).with_name("pre-push.before-shipyard")
    earlier.write_bytes(b"#!/bin/sh\necho earlier\n")
    assert refused(repo, "install", force=True) == (
        ".git/hooks/pre-push: a hook Shipyard did not write is there, and"
        " .git/hooks/pre-push.before-shipyard too; left as they are (move one of them away)"
    )
    assert hook_of(repo).read_bytes() == FOREIGN
    assert earlier.read_bytes() == b"#!/bin/sh\necho earlier\n"


# --- uninstall -------------------------------------------------------------------------


def test_uninstall_removes_only_its_own_hook(repo: Path, capsys) -> None:
    command(repo, "install", capsys)
    sample = hook_of(repo).with_name("pre-commit")
    sample.write_bytes(FOREIGN)
    assert command(repo, "uninstall", capsys) == (0, "removed .git/hooks/pre-push\n")
    assert not hook_of(repo).exists()
    assert sample.read_bytes() == FOREIGN


def test_uninstall_without_a_hook_says_so(repo: Path, capsys) -> None:
    assert command(repo, "uninstall", capsys) == (
        0,
        "no Shipyard hook installed (.git/hooks/pre-push)\n",
    )


def test_uninstall_works_with_a_broken_config(repo: Path, capsys) -> None:
    command(repo, "install", capsys)
    (repo / "shipyard.yaml").write_text("version: 1\nstpes: {}\n")
    assert command(repo, "uninstall", capsys)[0] == 0
    assert not hook_of(repo).exists()


def test_an_unknown_action_is_refused(repo: Path) -> None:
    assert refused(repo, "remove") == (
        "hooks: unknown action 'remove' (expected one of: install, uninstall, run)"
    )


# --- run, and git push -----------------------------------------------------------------


def test_run_runs_the_pre_push_steps_as_one_run_with_evidence(repo: Path, capsys) -> None:
    assert command(repo, "run", capsys)[0] == 0
    records = list((evidence_dir(repo) / "runs").glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["command"] == "shipyard hooks run"
    assert [step["name"] for step in record["steps"]] == ["fmt", "lint"]


def push(clone: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli([*GIT, "push", "-q", "origin", "main"], clone, env=env, timeout=120)


def remote_head(remote: Path) -> str:
    done = git(remote, "rev-parse", "--verify", "-q", "refs/heads/main")
    return done.stdout.strip()


def test_git_push_runs_the_hook_and_a_failing_step_stops_the_push(
    repo: Path, tmp_path: Path, capsys
) -> None:
    remote = tmp_path / "remote.git"
    checked_git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    checked_git(repo, "remote", "add", "origin", str(remote))
    (repo / "shipyard.yaml").write_text(CONFIG.replace("[fmt, lint]", "[fmt, broken]"))
    assert command(repo, "install", capsys)[0] == 0
    secret = random_secret()
    env = cli_env(DEPLOY_TOKEN=secret, PATH="/usr/bin:/bin")  # no venv on PATH: as a terminal

    stopped = push(repo, env)
    assert stopped.returncode != 0
    assert "failed: broken (exit 3)" in stopped.stderr + stopped.stdout
    assert "shipyard pre-push hook: exit 1, the push is stopped" in stopped.stderr
    assert remote_head(remote) == ""
    record = json.loads(next((evidence_dir(repo) / "runs").glob("*.json")).read_text())
    assert (record["command"], record["outcome"]) == (
        "shipyard hooks run --config shipyard.yaml",
        "failed",
    )
    assert (
        "broken ***" in (evidence_dir(repo) / "logs" / record["run_id"] / "broken.log").read_text()
    )

    (repo / "shipyard.yaml").write_text(CONFIG)  # the hook reads the config at each push
    pushed = push(repo, env)
    assert pushed.returncode == 0, pushed.stderr
    assert remote_head(remote) == checked_git(repo, "rev-parse", "HEAD").strip()
    assert len(list((evidence_dir(repo) / "runs").glob("*.json"))) == 2
    everything = pushed.stdout + pushed.stderr + stopped.stdout + stopped.stderr
    for path in (repo / "artifacts").rglob("*"):
        everything += path.read_text(errors="replace") if path.is_file() else ""
    assert secret not in everything


def test_a_hook_whose_python_is_gone_stops_the_push_saying_why(
    repo: Path, tmp_path: Path, capsys
) -> None:
    remote = tmp_path / "remote.git"
    checked_git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    checked_git(repo, "remote", "add", "origin", str(remote))
    command(repo, "install", capsys)
    hook = hook_of(repo)
    hook.write_text(hook.read_text().replace(f"python={sys.executable}", "python=/gone/python"))
    stopped = push(repo, cli_env(PATH="/usr/bin:/bin"))
    assert stopped.returncode != 0
    assert "neither /gone/python nor shipyard on PATH (run shipyard hooks install again)" in (
        stopped.stderr
    )
    assert remote_head(remote) == ""


def test_an_unknown_action_is_refused_in_one_line(repo: Path) -> None:
    done = run_here(["hooks", "remove"], repo)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "remove" in done.stderr


def test_a_refusal_is_one_line_with_exit_2(repo: Path) -> None:
    foreign_hook(repo)
    done = run_here(["hooks", "install", "--config", "shipyard.yaml"], repo)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1


# --- hooks: in shipyard.yaml -------------------------------------------------------------


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        ("hooks: [fmt]", "2: hooks: expected a mapping like {pre_push: [fmt, lint]}, got a list"),
        ("hooks: {pre-push: [fmt]}", "2: hooks.pre-push: unknown key (did you mean 'pre_push'?)"),
        ("hooks: {pre_push: fmt}", "2: hooks.pre_push: expected a list of step names, got 'fmt'"),
        (
            "hooks:\n  pre_push: [fmt, lnit]",
            "3: hooks.pre_push[1]: undefined step 'lnit' (did you mean 'lint'?)",
        ),
        (
            "hooks:\n  pre_push: [fmt, fmt]",
            "3: hooks.pre_push[1]: already listed as hooks.pre_push[0]",
        ),
    ],
)
def test_a_bad_hooks_section_is_one_line_naming_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hooks: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shipyard.yaml").write_text("version: 1\n" + hooks + "\nsteps: {fmt: x, lint: y}\n")
    with pytest.raises(ConfigError) as refusal:
        load_config("shipyard.yaml")
    assert refusal.value.message == f"shipyard.yaml:{message}"


def test_pre_push_steps_are_hooks_pre_push_else_the_gates(tmp_path: Path) -> None:
    path = tmp_path / "shipyard.yaml"
    path.write_text(CONFIG)
    assert load_config(path).pre_push_steps == ("fmt", "lint")
    path.write_text(CONFIG.replace("[fmt, lint]", "[]"))
    assert load_config(path).pre_push_steps == ()
    path.write_text(CONFIG.split("hooks:", maxsplit=1)[0])
    assert load_config(path).pre_push_steps == ("fmt", "lint", "slow")


# --- .pre-commit-hooks.yaml ----------------------------------------------------------------

MANIFEST = REPO / ".pre-commit-hooks.yaml"


def test_the_pre_commit_manifest_validates_with_pre_commit() -> None:
    """pre-commit's own check of a manifest (check-jsonschema has no built-in schema for it);
    a key it does not know would be a warning on its output."""
    done = run_cli([str(BIN / "pre-commit"), "validate-manifest", str(MANIFEST)], REPO)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_each_pre_commit_hook_runs_a_shipyard_command() -> None:
    hooks = {hook["id"]: hook for hook in yaml.safe_load(MANIFEST.read_text())}
    assert {hook_id: hooks[hook_id]["entry"] for hook_id in hooks} == {
        "shipyard-scan": "shipyard scan",
        "shipyard-step": "shipyard step",
        "shipyard-heartbeat": "shipyard heartbeat",
    }
    for hook in hooks.values():
        assert hook["language"] == "python"
        assert hook["pass_filenames"] is False


def test_the_pre_commit_hooks_entries_run_as_pre_commit_would_run_them(repo: Path) -> None:
    """Each hook's `entry` plus the `args` its documentation shows, as pre-commit runs it
    (the repository's root as the working folder, the hook's environment on PATH)."""
    hooks = {hook["id"]: hook for hook in yaml.safe_load(MANIFEST.read_text())}
    env = cli_env()
    for hook_id, args in [
        ("shipyard-scan", []),
        ("shipyard-step", ["lint"]),
        ("shipyard-heartbeat", ["devops", "--", "echo", "wrapped"]),
    ]:
        argv = [*hooks[hook_id]["entry"].split(), *args]
        done = run_cli([str(BIN / argv[0]), *argv[1:]], repo, env=env)
        assert done.returncode == 0, f"{hook_id}: {done.stdout}{done.stderr}"
    assert "wrapped" in (evidence_dir(repo) / "logs" / "heartbeat.log").read_text()


# --- End to end, through the task ----------------------------------------------------------
# ENABLE once src/shipyard/tasks.py has `hooks` with its positional action (remove the mark).


def test_hooks_task_installs_refuses_and_uninstalls(repo: Path) -> None:
    installed = run_here(["hooks", "install"], repo, program="shipyard")
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.startswith("installed .git/hooks/pre-push: ")
    assert stat.S_IMODE(hook_of(repo).stat().st_mode) == 0o755
    removed = run_here(["hooks", "uninstall"], repo, program="shipyard")
    assert (removed.returncode, removed.stdout) == (0, "removed .git/hooks/pre-push\n")
    foreign_hook(repo)
    kept = run_here(["hooks", "install"], repo, program="shipyard")
    assert kept.returncode == 2
    assert kept.stderr.strip().endswith("installs Shipyard's)")
    assert hook_of(repo).read_bytes() == FOREIGN
    ran = run_here(["hooks", "run"], repo, program="shipyard")
    assert ran.returncode == 0, ran.stderr
