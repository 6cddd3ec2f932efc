"""The local target's choices, on release folders written by hand; then plans carried out
on a real LocalTarget serving a tiny real server (`python3 -m http.server`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import urllib.request
from pathlib import Path

import pytest

from shipyard import server
from shipyard.artifact import tree_sha256
from shipyard.config import Config, Environment, Smoke
from shipyard.errors import ExitCode
from shipyard.operation import check_serving
from shipyard.process import start_ticks
from shipyard.targets import Call, Made, ReleaseStatus, TargetFailed
from shipyard.targets.local import LocalTarget

QUIET = Call()  # says nothing, never stopped


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
    plan = local.plan_rollback(None, QUIET)
    assert (plan.current, plan.to, plan.possible) == ("v5", "v2", True)
    assert plan.checks[0].startswith("v2 files intact (sha256 ")
    assert (plan.mark_failed, plan.mark_bad) == (None, "v5")
    # in the order the run takes them: current moves first, then the release left is marked
    point = next(i for i, action in enumerate(plan.actions) if action.startswith("point "))
    assert plan.actions[point + 1 :] == ("mark v5 bad, so later rollbacks skip it",)


def test_nothing_to_roll_back_to(tmp_path):
    local = target(tmp_path)
    assert local.plan_rollback(None, QUIET).to is None
    release(local, "v1", "complete", current=True)
    plan = local.plan_rollback(None, QUIET)
    assert (plan.to, plan.possible) == (None, False)
    assert "no complete, not-bad release older than v1" in plan.reason


def test_named_release_rules(tmp_path):
    local = target(tmp_path)
    release(local, "v1", "bad")
    release(local, "v2", "failed")
    release(local, "v3", "complete", current=True)
    assert local.plan_rollback("v1", QUIET).to == "v1"
    assert "marked bad earlier" in local.plan_rollback("v1", QUIET).reason
    assert local.plan_rollback("v2", QUIET).to is None
    assert "no such release" in local.plan_rollback("v9", QUIET).reason
    # v3 is current but nothing serves it: --to v3 starts it again and marks nothing bad
    again = local.plan_rollback("v3", QUIET)
    assert (again.to, again.mark_bad, again.possible) == ("v3", None, True)
    assert "v3 is current, but nothing serves" in again.reason
    assert not any(" bad" in action for action in again.actions)


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
    assert local.releases(QUIET)[0].status is ReleaseStatus.BUILDING
    assert local.plan_rollback(None, QUIET).to is None


def test_deploy_plan_numbers_after_the_highest_folder(tmp_path):
    local = target(tmp_path)
    release(local, "v2", "failed")
    release(local, "v10", "complete", current=True)
    plan = local.plan_deploy("dist/app.tar.gz", QUIET)
    assert (plan.release, plan.previous) == ("v11", "v10")


def test_a_deploy_failing_before_its_switch_removes_its_folder_and_made_nothing(tmp_path):
    local = target(tmp_path)
    junk = tmp_path / "junk.tar.gz"
    junk.write_text("not a tarball\n")
    plan = local.plan_deploy(str(junk), QUIET)
    lines: list[str] = []
    with pytest.raises(TargetFailed, match="not a readable tar archive") as failed:
        local.deploy(plan, Call(say=lines.append))
    assert failed.value.made == Made(None)
    assert failed.value.exit_code == ExitCode.USAGE  # a bad artifact is refused, as ever
    assert failed.value.message.endswith(
        "; failed before the switch; nothing served before it either"
    )
    assert lines[1:] == ["removed .shipyard/staging/releases/v1"]
    assert lines[0].startswith("direct mode: the release's server listens on port")
    assert statuses(local) == {} and not local.state_path.exists()


def test_a_deploy_failing_before_claiming_its_folder_made_nothing(tmp_path):
    local = target(tmp_path)
    plan = local.plan_deploy(str(site(local, "one")), QUIET)
    local.release_dir(plan.release).mkdir(parents=True)  # another deploy claimed v1 first
    lines: list[str] = []
    with pytest.raises(TargetFailed, match=r"^FileExistsError: ") as failed:
        local.deploy(plan, Call(say=lines.append))
    assert failed.value.made == Made(None)
    assert failed.value.exit_code == ExitCode.STEP_FAILED
    assert lines[-1].startswith("Traceback (most recent call last):")  # unexpected: its trace


def test_a_rollback_whose_files_changed_since_its_plan_fails_having_made_nothing(tmp_path):
    local = target(tmp_path)
    release(local, "v1", "complete")
    release(local, "v2", "complete", current=True)
    plan = local.plan_rollback(None, QUIET)
    assert plan.possible, plan.reason
    (local.release_dir("v1") / "app.py").write_text("# changed\n")
    with pytest.raises(TargetFailed, match="v1 files do not match") as failed:
        local.rollback(plan, QUIET)
    assert failed.value.made == Made(None)
    assert local.serving() is None and statuses(local) == {"v1": "complete", "v2": "complete"}


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


# --- plans carried out on a real server -------------------------------------------------------

SERVE = "python3 -m http.server {port} --bind 127.0.0.1"
# the start of the line the run says when it carries out an action starting with this verb
SAID = {
    "unpack": "unpacked ",
    "record": "recorded in ",
    "stop": "stopped ",
    "start": "started ",
    "smoke": "smoke: attempt 1 ",
    "prune": "pruned ",
}


def said_for(action: str) -> str:
    verb, rest = action.split(" ", 1)
    if verb == "mark":  # "mark v2 bad, so ..." -> "marked v2 bad"
        return "marked " + re.split("[:,]", rest)[0]
    if verb == "point":  # "point .../current at releases/v2 ..." -> "v2 is current"
        return re.search(r"releases/(v[0-9]+)", rest)[1] + " is current"
    return SAID[verb]


def assert_said_in_plan_order(actions: tuple[str, ...], lines: list[str]) -> None:
    """Each action has its line, and the lines come in the plan's order."""
    position = 0
    for action in actions:
        expected = said_for(action)
        found = [i for i, line in enumerate(lines) if i >= position and line.startswith(expected)]
        assert found, f"no line {expected!r} for {action!r} after line {position}:\n" + "\n".join(
            lines
        )
        position = found[0] + 1


@pytest.fixture
def served(tmp_path):
    """A LocalTarget whose `start` is a real HTTP server of the release folder."""
    config = Config(path=tmp_path / "shipyard.yaml", root=tmp_path)
    environment = Environment(
        name="staging",
        target="local",
        start=SERVE,
        smoke=Smoke(path="/", contains="site ", timeout=15),
        options={"port": server.free_port()},
    )
    local = LocalTarget(config, environment)
    yield local
    state = local.serving()
    if state:
        server.stop(state["pid"], grace=1)


def site(local: LocalTarget, label: str) -> Path:
    """An artifact: a tarball of one index.html saying `site <label>`."""
    source = local.config.root / "src" / label
    source.mkdir(parents=True)
    (source / "index.html").write_text(f"site {label}\n")
    archive = local.config.root / f"site-{label}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "index.html", arcname="index.html")
    return archive


def page(local: LocalTarget) -> str:
    with urllib.request.urlopen(local.smoke_check().url, timeout=5) as answer:
        return answer.read().decode()


def deploy(local: LocalTarget, label: str) -> tuple[tuple[str, ...], list[str]]:
    """plan_deploy, then deploy(), the smoke and commit(), as `inv deploy.<env>` runs them."""
    lines: list[str] = []
    call = Call(say=lines.append)
    plan = local.plan_deploy(str(site(local, label)), call)
    made = local.deploy(plan, call)
    assert made == Made(plan.release)
    check_serving(local, made, call)
    local.commit(plan, made, call)
    return plan.actions, lines


def rollback(local: LocalTarget, to: str | None = None) -> tuple[tuple[str, ...], list[str]]:
    """plan_rollback, then rollback(), the smoke and commit_rollback(), as `inv rollback`."""
    lines: list[str] = []
    call = Call(say=lines.append)
    plan = local.plan_rollback(to, call)
    assert plan.possible, plan.reason
    made = local.rollback(plan, call)
    assert made == Made(None)  # the release rolled back to was made before
    check_serving(local, made, call)
    local.commit_rollback(plan, made, call)
    return plan.actions, lines


def crash_mid_deploy(local: LocalTarget, label: str) -> str:
    """Serve a new release as a deploy does, then leave as SIGKILL would: the switch stays
    recorded, by a process that is gone. Returns the half-switched release."""
    plan = local.plan_deploy(str(site(local, label)), QUIET)
    local.deploy(plan, QUIET)
    state = json.loads(local.state_path.read_text())
    assert state["switching"]["to"] == plan.release
    assert f"a switch from v1 to {plan.release} is under way" in local.status(QUIET).detail
    gone = subprocess.Popen(["true"])
    gone.wait()
    state["switching"].update(pid=gone.pid, start_ticks=None)
    local.state_path.write_text(json.dumps(state))
    return plan.release


def statuses(local: LocalTarget) -> dict[str, str]:
    return {release.version: release.status.value for release in local.releases(QUIET)}


def test_deploy_and_rollback_say_what_they_do_in_the_plans_order(served):
    local = served
    for label in ("one", "two"):
        actions, lines = deploy(local, label)
        assert_said_in_plan_order(actions, lines)
        assert page(local) == f"site {label}\n"
    assert "stop the server of v1" in actions[2]  # what served, by its pid
    actions, lines = rollback(local)
    assert_said_in_plan_order(actions, lines)
    assert [a.split(" ")[0] for a in actions[-2:]] == ["point", "mark"]  # current first
    assert lines[-2:] == ["v1 is current", "marked v2 bad"]
    assert page(local) == "site one\n"
    assert statuses(local) == {"v1": "complete", "v2": "bad"}
    assert "switching" not in json.loads(local.state_path.read_text())
    refused = local.plan_rollback("v1", QUIET)  # current, and it serves
    assert refused.to is None and "already serving" in refused.reason


def test_after_a_crash_mid_switch_status_tells_and_a_rollback_repairs(served):
    local = served
    deploy(local, "one")
    half = crash_mid_deploy(local, "two")
    status = local.status(QUIET)
    assert (status.current, status.serving) == ("v1", half)
    assert f"{half} serves but current is v1" in status.detail
    assert f"a switch from v1 to {half} was interrupted" in status.detail

    plain = local.plan_rollback(None, QUIET)  # back to current, which is not marked bad
    assert (plain.to, plain.mark_failed, plain.mark_bad) == ("v1", half, None)
    assert "was interrupted" in plain.reason
    named = local.plan_rollback("v1", QUIET)  # v1 is current but does not serve: allowed
    assert (named.to, named.mark_failed, named.mark_bad) == ("v1", half, None)
    assert named.actions[0].startswith(f"mark {half} failed: ")

    actions, lines = rollback(local, "v1")
    assert_said_in_plan_order(actions, lines)
    assert page(local) == "site one\n"
    assert statuses(local) == {"v1": "complete", half: "failed"}
    assert local.current_version() == "v1" and local.status(QUIET).serving == "v1"
    assert "switching" not in json.loads(local.state_path.read_text())


def test_a_server_left_serving_by_an_older_shipyard_counts_as_an_interrupted_switch(served):
    """A state.json from before switches were recorded: the live server is not current."""
    local = served
    deploy(local, "one")
    half = crash_mid_deploy(local, "two")
    state = json.loads(local.state_path.read_text())
    del state["switching"]
    local.state_path.write_text(json.dumps(state))
    assert f"{half} serves but current is v1" in local.status(QUIET).detail
    plan = local.plan_rollback(None, QUIET)
    assert (plan.to, plan.mark_failed, plan.mark_bad) == ("v1", half, None)


def test_after_a_crash_with_nothing_serving_the_next_deploy_repairs(served):
    local = served
    deploy(local, "one")
    half = crash_mid_deploy(local, "two")
    server.stop(local.serving()["pid"], grace=1)  # the half-switched server died too
    status = local.status(QUIET)
    assert (status.current, status.serving) == ("v1", None)
    assert f"a switch from v1 to {half} was interrupted" in status.detail
    plain = local.plan_rollback(None, QUIET)
    assert (plain.to, plain.mark_bad) == ("v1", None)
    assert "nothing serves" in plain.reason

    actions, lines = deploy(local, "three")
    assert actions[0].startswith(f"mark {half} failed: ")
    assert_said_in_plan_order(actions, lines)
    assert page(local) == "site three\n"
    assert f"marked {half} failed" in lines[1]  # repaired first, after the mode line
    # failed, so pruned at the end
    assert lines[-1] == f"pruned {half}"
    assert statuses(local) == {"v1": "complete", "v3": "complete"}
    assert "switching" not in json.loads(local.state_path.read_text())


def test_restore_serves_the_previous_release_again_and_makes_none(served):
    local = served
    lines: list[str] = []
    call = Call(say=lines.append)
    first = local.plan_deploy(str(site(local, "one")), call)
    assert local.restore(first, local.deploy(first, call), call.unstoppable()) is None
    assert lines[-1] == "no earlier complete release to restore: staging is down"
    assert local.serving() is None and statuses(local) == {"v1": "failed"}

    deploy(local, "two")
    plan = local.plan_deploy(str(site(local, "three")), call)
    made = local.deploy(plan, call)
    check_serving(local, made, call)
    assert page(local) == "site three\n"
    assert local.restore(plan, made, call.unstoppable()) == Made(None)  # v2 was made before
    check_serving(local, Made(None), call)
    assert page(local) == "site two\n"
    assert local.current_version() == "v2" and statuses(local)["v3"] == "failed"
    assert "switching" not in json.loads(local.state_path.read_text())


def test_undo_rollback_serves_the_release_left_again_and_makes_none(served):
    local = served
    deploy(local, "one")
    deploy(local, "two")
    plan = local.plan_rollback(None, QUIET)
    made = local.rollback(plan, QUIET)
    check_serving(local, made, QUIET)
    assert page(local) == "site one\n"
    assert local.undo_rollback(plan, made, QUIET.unstoppable()) == Made(None)
    check_serving(local, Made(None), QUIET)
    assert page(local) == "site two\n"
    assert statuses(local) == {"v1": "complete", "v2": "complete"}  # nothing marked bad
    assert "switching" not in json.loads(local.state_path.read_text())


def test_a_restore_after_a_failure_before_the_switch_touches_nothing(served):
    """Principle: a restore never does more harm than doing nothing."""
    local = served
    deploy(local, "one")
    before = local.serving()
    junk = local.config.root / "junk.tar.gz"
    junk.write_text("not a tarball\n")
    lines: list[str] = []
    call = Call(say=lines.append)
    plan = local.plan_deploy(str(junk), call)
    with pytest.raises(TargetFailed) as failed:
        local.deploy(plan, call)
    assert failed.value.made == Made(None)
    pid = before["pid"]
    assert failed.value.message.endswith(f"v1 still serves (pid {pid}), untouched")
    assert local.restore(plan, failed.value.made, call.unstoppable()) == Made(None)
    assert lines[-1] == (
        "nothing to put back: the deploy failed before the switch;"
        f" v1 still serves (pid {pid}), untouched"
    )
    assert local.serving() == before and page(local) == "site one\n"
    assert statuses(local) == {"v1": "complete"}

    # v1's server died before the deploy: nothing serves to harm, so v1 is started again
    server.stop(pid, grace=1)
    assert local.restore(plan, Made(None), call.unstoppable()) == Made(None)
    check_serving(local, Made(None), call)
    assert local.serving()["release"] == "v1" and page(local) == "site one\n"
    assert statuses(local) == {"v1": "complete"}  # nothing marked: v2 was never made
