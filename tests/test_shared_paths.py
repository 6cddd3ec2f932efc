"""Shared paths (`shared:` of a local environment), files written into a release folder named
by `inv status` and the rollback's plan, `inv rollback --force`, and pruning that keeps the
recent `bad` releases. Real deploys of the example app where a user would see it; the rest on
release folders and tarballs made here."""

from __future__ import annotations

import json
import os
import tarfile
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest
from helpers import ok, write_project
from test_deploy import Staging, staging_fixture  # noqa: F401 - the `staging` fixture
from test_local_target import QUIET, release, statuses, target

from shipyard import targets
from shipyard.config import load_config
from shipyard.errors import ConfigError, ExitCode
from shipyard.targets import Made, TargetFailed
from shipyard.targets.local import LocalOptions, LocalTarget

# The app writes where its release folder is its working folder: a line per start into the
# shared `log/` (made when missing, as in the artifact smoke, which has no shared paths).
WRITES_LOG = 'mkdir -p log && echo "$SHIPYARD_RELEASE" >> log/server.log && '
WRITES_NOTES = "date > notes.txt && "  # and a file beside its code


def writing(app: Staging, *, writes: str, shared: str) -> Staging:
    """`app` with its `start` prefixed by `writes`, and `shared: <shared>`."""
    config = app.root / "shipyard.yaml"
    start = "start: python3 -m webapp --port {port}"
    text = config.read_text()
    assert start in text
    text = text.replace(start, f"start: '{writes}exec python3 -m webapp --port {{port}}'")
    config.write_text(text + f"    shared: {shared}\n")
    return app


def deploy_two(app: Staging) -> str:
    """v1 and v2 deployed; what the second deploy printed."""
    printed = ""
    for version in ("1.0.0", "2.0.0"):
        app.set_version(version)
        printed = ok(app.here("deploy.staging")).stdout
    return printed


def iso(path: Path) -> str:
    mtime = path.lstat().st_mtime
    return datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- a real deploy ------------------------------------------------------------------------


def test_an_app_writing_into_a_shared_path_can_be_rolled_back_to(staging):
    app = writing(staging(), writes=WRITES_LOG, shared="[log, instance]")
    printed = deploy_two(app)
    assert (
        "unpacked webapp-2.0.0.tar.gz into .shipyard/staging/releases/v2, linked log, instance"
        " to .shipyard/staging/shared/ (tree sha256 "
    ) in printed
    v1 = app.state / "releases" / "v1"
    assert os.readlink(v1 / "log") == "../../shared/log"
    assert os.readlink(v1 / "instance") == "../../shared/instance"
    assert app.release("v1")["shared"] == ["log", "instance"]

    done = app.here("rollback")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "v1 files intact" in done.stdout
    assert "release=v1" in app.get()[1]
    # one log across releases, kept in the state folder
    log = app.state / "shared" / "log" / "server.log"
    assert log.read_text().split() == ["v1", "v2", "v1"]
    assert (app.state / "shared" / "instance").is_dir()


def test_a_write_elsewhere_is_named_and_force_rolls_back_anyway(staging):
    app = writing(staging(), writes=WRITES_LOG + WRITES_NOTES, shared="[log]")
    deploy_two(app)
    v1_notes, v2_notes = (app.state / "releases" / v / "notes.txt" for v in ("v1", "v2"))

    status = app.here("status")
    assert status.returncode == 0, status.stdout + status.stderr  # healthy: a warning only
    assert (
        f"written: v2: 1 file written since {iso(v2_notes)}: notes.txt (added {iso(v2_notes)})"
        " (not in a shared path: a rollback to v2 refuses it without --force)"
    ) in status.stdout
    assert "log" not in status.stdout.split("written:")[1]  # the shared path is not named

    named = (
        "v1 files do not match their recorded sha256 (.shipyard/staging/releases/v1):"
        f" 1 file written since {iso(v1_notes)}: notes.txt (added {iso(v1_notes)})"
    )
    plan = app.here("rollback", "--dry-run")
    assert plan.returncode == ExitCode.STEP_FAILED, plan.stdout + plan.stderr
    assert f"problem: {named}\n" in plan.stdout
    assert "(add --force to roll back all the same)" in plan.stdout

    before = app.snapshot()
    refused = app.here("rollback")
    assert refused.returncode == ExitCode.STEP_FAILED, refused.stdout + refused.stderr
    after = app.snapshot()  # nothing changed but the audit trail
    assert after.pop("audit.jsonl") != before.pop("audit.jsonl") and after == before
    assert "release=v2" in app.get()[1]

    forced = app.here("rollback", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert f"forced (--force): {named}" in forced.stdout
    assert app.current() == "v1" and "release=v1" in app.get()[1]
    audit = [json.loads(line) for line in (app.state / "audit.jsonl").read_text().splitlines()]
    last = audit[-1]
    assert (last["event"], last["outcome"], last["plan"]["forced"]) == ("rollback", "ok", True)
    assert last["plan"]["problems"] == [named]


# --- linking shared paths, on tarballs made here ------------------------------------------


def tarball(root: Path, members: dict[str, str | None]) -> Path:
    """A .tar.gz of `members`: path -> text, or None for an empty folder."""
    source = root / "src"
    for name, text in members.items():
        path = source / name
        if text is None:
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    archive = root / "app.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in members:
            tar.add(source / name, arcname=name, recursive=False)
    return archive


def local_with(tmp_path: Path, *shared: str) -> LocalTarget:
    plain = target(tmp_path)
    return LocalTarget(plain.config, plain.env, LocalOptions(shared=shared))


def test_an_empty_folder_in_the_artifact_is_replaced_by_the_link(tmp_path):
    local = local_with(tmp_path, "log", "var/cache")
    archive = tarball(tmp_path, {"app.py": "pass\n", "log": None})
    local.store.claim("v1")
    local.store.unpack("v1", archive, {"status": "building"})
    folder = local.release_dir("v1")
    assert os.readlink(folder / "log") == "../../shared/log"
    assert os.readlink(folder / "var" / "cache") == "../../../shared/var/cache"
    (folder / "log" / "app.log").write_text("written by the app\n")
    (folder / "var" / "cache" / "x").write_text("cached\n")
    assert local.store.changed("v1") is None
    assert (local.store.shared_dir / "log" / "app.log").is_file()


@pytest.mark.parametrize(
    ("members", "refusal"),
    [
        (
            {"log/keep.txt": "the build's\n"},
            "app.tar.gz: has 'log', a path listed in `shared:`, whose link would hide it:"
            " leave it out of the build (an empty folder is fine), or out of `shared:`",
        ),
        (
            {"var": "a file\n"},
            "app.tar.gz: var is not a folder, so the shared path 'var/cache' cannot be linked"
            " there: leave it out of the build, or out of `shared:`",
        ),
    ],
)
def test_something_the_artifact_has_at_a_shared_path_refuses_the_deploy(tmp_path, members, refusal):
    local = local_with(tmp_path, "log", "var/cache")
    plan = local.plan_deploy(str(tarball(tmp_path, members)), QUIET)
    with pytest.raises(TargetFailed) as failed:
        local.deploy(plan, QUIET)
    assert failed.value.message.startswith(refusal + "; failed before the switch")
    assert failed.value.exit_code == ExitCode.USAGE and failed.value.made == Made(None)
    assert statuses(local) == {}  # the folder is gone
    assert not local.store.shared_dir.exists()  # checked before anything is made


def test_an_artifact_with_a_file_named_as_the_file_list_is_refused(tmp_path):
    local = target(tmp_path)
    plan = local.plan_deploy(str(tarball(tmp_path, {"release.files.json": "{}"})), QUIET)
    with pytest.raises(TargetFailed, match=r"^app.tar.gz: member 'release.files.json' would"):
        local.deploy(plan, QUIET)
    assert statuses(local) == {}


def test_written_files_are_named_oldest_first_with_a_count_and_the_removed_ones(tmp_path):
    local = local_with(tmp_path, "log")
    archive = tarball(tmp_path, {"app.py": "pass\n", "static/a.css": "a\n", "gone.txt": "x\n"})
    local.store.claim("v1")
    local.store.unpack("v1", archive, {"status": "complete"})
    folder = local.release_dir("v1")
    (folder / "gone.txt").unlink()
    (folder / "app.py").write_text("changed\n")
    os.utime(folder / "app.py", (1_000_000_000, 1_000_000_000))  # 2001: the oldest write
    for number in range(6):
        (folder / f"new{number}.db").write_text("data\n")
    os.mkfifo(folder / "app.fifo")  # named, never opened (reading it would wait forever)
    changed = local.store.changed("v1")
    assert changed is not None
    assert changed.startswith(
        "8 files written since 2001-09-09T01:46:40Z: app.py (changed 2001-09-09T01:46:40Z), "
    )
    assert changed.count("(added ") == 4 and " and 3 more; 1 file removed: gone.txt" in changed


def test_a_release_without_a_file_list_says_which_files_is_not_known(tmp_path):
    local = target(tmp_path)
    release(local, "v1", "complete")  # as an older Shipyard made it: no release.files.json
    (local.release_dir("v1") / "app.py").write_text("changed\n")
    assert local.store.changed("v1") == (
        "which ones is not known: v1 has no release.files.json (an older Shipyard's)"
    )


# --- the config -------------------------------------------------------------------------

SHARED_CONFIG = """
    version: 1
    environments:
      staging:
        target: local
        start: serve
        shared: {shared}
"""


@pytest.mark.parametrize(
    ("shared", "problem"),
    [
        ("log", "environments.staging.shared: expected a list of relative paths, like"
         " [log, tmp, instance], got 'log'"),
        ("[/var/log]", "environments.staging.shared[0]: '/var/log' is absolute (expected a"
         " relative path like log or var/cache)"),
        ("[log, ../logs]", "environments.staging.shared[1]: '../logs' has '..', which leads out"
         " (expected a relative path like log or var/cache)"),
        ("[.]", "environments.staging.shared[0]: '.' is the folder itself (expected a relative"
         " path like log or var/cache)"),
        ("[log, ./log/]", "environments.staging.shared[1]: already listed as"
         " environments.staging.shared[0]"),
        ("[log, log/app]", "environments.staging.shared[1]: 'log/app' is inside 'log', listed"
         " as environments.staging.shared[0]"),
        ("[release.json]", "environments.staging.shared[0]: 'release.json' is a file Shipyard"
         " keeps in each release folder"),
    ],
)  # fmt: skip
def test_a_bad_shared_list_is_one_line_naming_file_line_and_key(tmp_path, shared, problem):
    root = write_project(tmp_path, textwrap.dedent(SHARED_CONFIG.format(shared=shared)))
    config = load_config(root / "shipyard.yaml")
    with pytest.raises(ConfigError) as error:
        targets.check(config)
    assert error.value.message == f"{root / 'shipyard.yaml'}:6: {problem}"
    assert error.value.exit_code == ExitCode.USAGE


# --- pruning ------------------------------------------------------------------------------


def test_pruning_keeps_a_bad_release_among_the_newest_keep_releases(tmp_path):
    plain = target(tmp_path)
    local = LocalTarget(plain.config, plain.env, LocalOptions(keep_releases=3))
    for version, status in [
        ("v1", "complete"),
        ("v2", "complete"),
        ("v3", "bad"),  # older than the newest three: pruned
        ("v4", "complete"),
        ("v5", "bad"),  # marked bad by a rollback, among the newest three: kept
        ("v6", "complete"),
    ]:
        release(local, version, status, current=version == "v6")
    shared_log = local.store.shared_dir / "log"
    shared_log.mkdir(parents=True)
    (shared_log / "app.log").write_text("kept\n")
    (local.release_dir("v1") / "log").symlink_to("../../shared/log")
    plan = local.plan_deploy("app.tar.gz", QUIET)
    release(local, plan.release, "building")
    local.commit(plan, Made(plan.release), QUIET)
    assert statuses(local) == {"v4": "complete", "v5": "bad", "v6": "complete", "v7": "complete"}
    assert (shared_log / "app.log").read_text() == "kept\n"  # a pruned release's link, not data
