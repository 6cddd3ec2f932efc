"""The local target's choices, on release folders written by hand (no server involved)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from shipyard import server
from shipyard.artifact import tree_sha256
from shipyard.config import Config, Environment
from shipyard.process import start_ticks
from shipyard.targets import ReleaseStatus
from shipyard.targets.local import LocalTarget


def target(tmp_path: Path) -> LocalTarget:
    config = Config(path=tmp_path / "shipyard.yaml", root=tmp_path)
    return LocalTarget(config, Environment(name="staging", target="local", start="serve"))


def release(local: LocalTarget, version: str, status: str, *, current: bool = False) -> None:
    folder = local.release_dir(version)
    folder.mkdir(parents=True)
    (folder / "app.py").write_text(f"# {version}\n")
    digest = tree_sha256(folder, skip=frozenset({"release.json"}))
    (folder / "release.json").write_text(json.dumps({"status": status, "tree_sha256": digest}))
    if current:
        local.current_link.unlink(missing_ok=True)
        local.current_link.symlink_to(Path("releases") / version)


def test_rollback_target_is_the_newest_complete_release_before_current(tmp_path):
    local = target(tmp_path)
    release(local, "v1", "complete")
    release(local, "v2", "complete")
    release(local, "v3", "bad")
    release(local, "v4", "failed")
    release(local, "v5", "complete", current=True)
    release(local, "v6", "building")
    plan = local.plan_rollback()
    assert (plan.current, plan.to, plan.possible) == ("v5", "v2", True)
    assert plan.checks[0].startswith("v2 files intact (sha256 ")


def test_nothing_to_roll_back_to(tmp_path):
    local = target(tmp_path)
    assert local.plan_rollback().to is None
    release(local, "v1", "complete", current=True)
    plan = local.plan_rollback()
    assert (plan.to, plan.possible) == (None, False)
    assert "no complete, not-bad release older than v1" in plan.reason


def test_named_release_rules(tmp_path):
    local = target(tmp_path)
    release(local, "v1", "bad")
    release(local, "v2", "failed")
    release(local, "v3", "complete", current=True)
    assert local.plan_rollback("v1").to == "v1"
    assert "marked bad earlier" in local.plan_rollback("v1").reason
    assert local.plan_rollback("v2").to is None
    assert local.plan_rollback("v3").to is None
    assert "no such release" in local.plan_rollback("v9").reason


def test_dangling_or_foreign_current_reads_as_none(tmp_path):
    local = target(tmp_path)
    release(local, "v1", "complete", current=True)
    local.current_link.unlink()
    local.current_link.symlink_to("releases/v7")
    assert local.current_version() is None
    local.current_link.unlink()
    local.current_link.symlink_to("/etc")
    assert local.current_version() is None


def test_unreadable_release_json_is_never_a_rollback_target(tmp_path):
    local = target(tmp_path)
    release(local, "v1", "complete")
    release(local, "v2", "complete", current=True)
    (local.release_dir("v1") / "release.json").write_text('{"status": "comp')
    assert local.releases()[0].status is ReleaseStatus.BUILDING
    assert local.plan_rollback().to is None


def test_deploy_plan_numbers_after_the_highest_folder(tmp_path):
    local = target(tmp_path)
    release(local, "v2", "failed")
    release(local, "v10", "complete", current=True)
    plan = local.plan_deploy("dist/app.tar.gz")
    assert (plan.release, plan.previous) == ("v11", "v10")


def test_a_live_pid_that_is_not_the_server_we_started_is_not_ours(tmp_path):
    """A state.json whose pid now belongs to another process (pid reuse, a stale file) is not
    our server: Shipyard neither stops it nor counts it as serving."""
    local = target(tmp_path)
    other = server.start("sleep 30", cwd=tmp_path, env=os.environ, log_path=tmp_path / "log")
    try:
        ticks = start_ticks(other)
        assert ticks is not None
        state = {"pid": other, "release": "v1", "port": 1, "started_at": 0.0}
        local.server_dir.mkdir(parents=True)
        for recorded, ours in ((None, False), (ticks - 1, False), (ticks, True)):
            (local.server_dir / "state.json").write_text(
                json.dumps({**state, "start_ticks": recorded})
            )
            assert (local.serving() is not None) is ours
    finally:
        server.stop(other, grace=0.5)
