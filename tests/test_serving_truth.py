"""After `inv deploy.staging` is SIGKILLed mid-switch, the local target says what really serves,
and the next rollback or deploy repairs the state without marking a good release bad.

Real `inv` processes, the real example app (slow to start in staging), real HTTP."""

from __future__ import annotations

import json
import signal
import time

import pytest
from helpers import ok
from test_deploy import Staging

from shipyard.config import load_config
from shipyard.targets import Call
from shipyard.targets.local import LocalTarget

SLOW_START = 2.0  # seconds the app sleeps before listening, in staging only


@pytest.fixture
def app(tmp_path):
    staging = Staging(tmp_path / "proj")
    yield staging
    staging.stop()


def local_target(app: Staging) -> LocalTarget:
    config = load_config(app.root / "shipyard.yaml")
    return LocalTarget(config, config.environments["staging"])


def state(app: Staging) -> dict:
    try:
        return json.loads((app.state / "server" / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def statuses(app: Staging) -> dict[str, str]:
    return {
        folder.name: app.release(folder.name)["status"]
        for folder in (app.state / "releases").iterdir()
        if folder.name.startswith("v")
    }


def slow_start(app: Staging) -> str:
    """Make the app sleep before listening when it runs in staging; returns the original."""
    main = app.root / "app" / "webapp" / "__main__.py"
    original = main.read_text()
    main.write_text(
        original.replace(
            "    options = parse_args(argv)",
            "    options = parse_args(argv)\n"
            '    if os.environ.get("APP_ENV") == "staging":\n'
            '        print("starting slowly", flush=True)\n'
            f"        __import__('time').sleep({SLOW_START})",
        )
    )
    return original


def crash_mid_switch(app: Staging) -> None:
    """v1 serves; v2 (slow to start) is being switched to; `inv` is SIGKILLed during the
    staging smoke; v2 then answers, while `current` still names v1."""
    ok(app.inv("deploy.staging"))
    original = slow_start(app)
    deploying = app.spawn("deploy.staging")
    log = app.state / "server" / "v2.log"
    deadline = time.monotonic() + 60
    while not (state(app).get("release") == "v2" and log.exists() and "slowly" in log.read_text()):
        assert time.monotonic() < deadline, "v2 was not started within 60 s"
        assert deploying.poll() is None, deploying.communicate()
        time.sleep(0.01)
    deploying.send_signal(signal.SIGKILL)
    deploying.communicate(timeout=30)
    (app.root / "app" / "webapp" / "__main__.py").write_text(original)
    deadline = time.monotonic() + 30
    while "release=v2" not in app.get()[1]:
        assert time.monotonic() < deadline, "the half-switched v2 never answered"
        time.sleep(0.05)
    assert app.current() == "v1"
    assert statuses(app) == {"v1": "complete", "v2": "building"}


def assert_serves_v1_again(app: Staging) -> None:
    status, page = app.get()
    assert status == 200 and "release=v1" in page
    assert app.current() == "v1"
    assert statuses(app) == {"v1": "complete", "v2": "failed"}  # nothing marked bad
    assert "switching" not in state(app) and state(app)["release"] == "v1"
    shown = local_target(app).status(Call())
    assert (shown.current, shown.serving, shown.healthy) == ("v1", "v1", True)


@pytest.mark.e2e
def test_after_the_crash_status_is_truthful_and_rollback_to_current_repairs(app):
    crash_mid_switch(app)
    switch = state(app)["switching"]
    assert (switch["from"], switch["to"]) == ("v1", "v2")
    shown = local_target(app).status(Call())
    assert (shown.current, shown.serving) == ("v1", "v2")
    assert "v2 serves but current is v1" in shown.detail
    assert "a switch from v1 to v2 was interrupted" in shown.detail

    done = app.inv("rollback", "--to", "v1")  # v1 is current, but v2 serves: allowed
    assert done.returncode == 0, done.stdout + done.stderr
    assert_serves_v1_again(app)
    refused = app.inv("rollback", "--to", "v1")  # now v1 is current and serves
    assert refused.returncode == 2, refused.stdout + refused.stderr


@pytest.mark.e2e
def test_after_the_crash_a_plain_rollback_goes_back_to_current(app):
    crash_mid_switch(app)
    done = app.inv("rollback")  # not to an older release: v1 is good, only v2 never finished
    assert done.returncode == 0, done.stdout + done.stderr
    assert_serves_v1_again(app)


@pytest.mark.e2e
def test_after_the_crash_a_fresh_deploy_succeeds_and_marks_the_half_switched_release_failed(app):
    crash_mid_switch(app)
    app.set_version("3.0.0")
    done = app.inv("deploy.staging")
    assert done.returncode == 0, done.stdout + done.stderr
    status, page = app.get()
    assert status == 200 and "version=3.0.0" in page and "release=v3" in page
    assert app.current() == "v3"
    assert statuses(app) == {"v1": "complete", "v3": "complete"}  # v2, failed, was pruned
    logs = sorted((app.root / "artifacts").rglob("Deploy.log"), key=lambda p: p.stat().st_mtime)
    assert "marked v2 failed" in logs[-1].read_text()
    pruned = [
        json.loads(line)
        for line in (app.state / "audit.jsonl").read_text().splitlines()
        if '"prune"' in line
    ]
    assert pruned[-1]["removed"] == ["v2"]
    assert "switching" not in state(app)


@pytest.mark.e2e
def test_after_the_crash_inv_status_exits_1_naming_both(app):
    crash_mid_switch(app)
    shown = app.inv("status", "--json")
    assert shown.returncode == 1, shown.stdout + shown.stderr
    fields = json.loads(shown.stdout)
    assert (fields["current"], fields["serving"], fields["mismatch"]) == ("v1", "v2", True)
    plain = app.inv("status")
    assert plain.returncode == 1
    assert "MISMATCH: v2 serves but current is v1" in plain.stdout, plain.stdout
