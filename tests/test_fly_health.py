"""Fly health polled to a verdict, the API's bad days (429, 5xx) and a deploy that hangs
(issue 15, points 3 and 4): the real task runner, in this process, against the fake flyctl
(tests/fakes), which follows shared/reference/flyctl.md. Shipyard's waits are made short with
`client.PACE` and `health_timeout`; nothing here asserts on the wall clock."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import evidence_dir, ok
from test_fly import APP, Fly
from test_smoke import serving

from shipyard.errors import StepFailed
from shipyard.targets.base import Call
from shipyard.targets.fly import client
from shipyard.targets.fly.client import Pace
from shipyard.targets.fly.health import (
    DEFAULT_HEALTH_TIMEOUT,
    default_health_timeout,
    settle_seconds,
)

sys.path.insert(0, str(Path(__file__).parent))
from fakes.fly_state import CHECK_NAME, STATE_ENV, machines

QUICK = Pace(read_attempts=4, read_seconds=10.0, backoff=0.01, backoff_max=0.05, stop_grace=0.3)


@pytest.fixture(autouse=True)
def quick_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "PACE", QUICK)


@pytest.fixture
def healthy_url():  # as test_fly's (a fixture imported from there would shadow the arguments)
    with serving(200) as url:
        yield url


@pytest.fixture
def fly(tmp_path, healthy_url):
    return Fly(tmp_path / "proj", healthy_url)


def fly_with(root: Path, url: str, *, strategy: str = "immediate", **keys: str) -> Fly:
    """test_fly's project, with keys of its Fly environment set (`health_timeout="2s"`)."""
    fly = Fly(root, url, strategy=strategy)
    config = fly.root / "shipyard.yaml"
    text = config.read_text()
    for key, value in keys.items():
        text = re.sub(rf"\n    {key}: .*", "", text)
        text = text.replace("\n    read_timeout:", f"\n    {key}: {value}\n    read_timeout:")
    config.write_text(text)
    return fly


def heartbeat(fly: Fly) -> str:
    return (evidence_dir(fly.root) / "logs" / "heartbeat.log").read_text()


def assert_token_nowhere(fly: Fly, done: subprocess.CompletedProcess[str]) -> None:
    assert fly.token not in json.dumps([call["argv"] for call in fly.fake.calls])
    assert fly.token not in done.stdout + done.stderr + fly.everything_written()


def flyctl_processes(state: Path) -> list[int]:
    """Processes running with this test's fake state (flyctl's, whatever their state)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            status = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if f"{STATE_ENV}={state}".encode() in environ and status not in ("Z", "X"):
            found.append(int(proc.name))
    return found


# --- health polled to a verdict (point 3) ----------------------------------------------------


def test_checks_slow_to_pass_are_polled_until_they_pass(tmp_path, healthy_url):
    """An immediate deploy returns while the checks are still in their grace period: one
    snapshot would call them critical; the poll waits for them to pass."""
    fly = fly_with(tmp_path / "proj", healthy_url, health_timeout="5s")
    fly.fake.script(check_grace_seconds=0.8)
    done = ok(fly.here("deploy.fly-staging"))
    polls = [line for line in done.stdout.splitlines() if line.startswith("health poll ")]
    assert polls and all(f"check {CHECK_NAME} is critical" in line for line in polls)
    for number in range(1, len(polls) + 1):  # one line per poll
        assert sum(line.startswith(f"health poll {number} ") for line in polls) == 1
    assert "Fly reports every machine started, passing and on v2" in done.stdout
    assert 'step="flyctl machines list" event=end attempt=1 status=ok' in heartbeat(fly)
    fly.assert_evidence_is_true(done, before=1)
    assert_token_nowhere(fly, done)


def test_a_check_that_stays_critical_fails_at_health_timeout_naming_it_and_rolls_back(
    tmp_path, healthy_url
):
    fly = fly_with(tmp_path / "proj", healthy_url, health_timeout="1s")
    fly.fake.script(build_health="critical")
    done = fly.here("deploy.fly-staging")
    assert done.returncode == 3, done.stdout + done.stderr
    ids = "|".join(machine["id"] for machine in machines(fly.fake.state, APP))
    verdict = (
        r"\nerror: Fly reports unhealthy after 1s \(health_timeout\): machine"
        rf" ({ids}) check {CHECK_NAME} is critical: context deadline exceeded"
        r" \(and 1 more problem\)\n"
    )
    assert re.search(verdict, done.stdout), done.stdout
    assert fly.record()["reason"] == "Smoke fly-staging failed for v2; rolled back to v1"
    assert fly.machine_images() == {fly.image(1)}  # the rollback put v1's image back
    assert fly.record()["deploy"]["rolled_back_to"] == "v1"
    fly.assert_evidence_is_true(done, before=1)
    assert_token_nowhere(fly, done)


def test_a_check_that_turns_critical_after_passing_fails_the_deploy_and_rolls_back(
    tmp_path, healthy_url
):
    """Passing once is not the verdict: the machines are watched for the longest check
    interval more, and a check that breaks meanwhile fails the deploy."""
    fly = fly_with(tmp_path / "proj", healthy_url, health_timeout="5s")
    (fly.root / "fly.toml").write_text(
        f'app = "{APP}"\n[[http_service.checks]]\n  interval = "2s"\n  path = "/health"\n'
    )
    fly.fake.script(checks_fail_after_seconds=0.3)
    done = fly.here("deploy.fly-staging")
    assert done.returncode == 3, done.stdout + done.stderr
    assert re.search(
        r"Fly reports a check turned critical \d+\.\ds after every check passed \(watched for"
        rf" 2s, the longest check interval\): machine \S+ check {CHECK_NAME} is critical:"
        r" context deadline exceeded",
        done.stdout,
    ), done.stdout
    assert fly.record()["reason"] == "Smoke fly-staging failed for v2; rolled back to v1"


def test_checks_that_keep_passing_are_watched_for_one_interval_then_pass(tmp_path, healthy_url):
    fly = fly_with(tmp_path / "proj", healthy_url, health_timeout="5s")
    (fly.root / "fly.toml").write_text(
        f'app = "{APP}"\n[[http_service.checks]]\n  interval = "1s"\n  path = "/health"\n'
    )
    done = ok(fly.here("deploy.fly-staging"))
    assert "Fly reports every machine started, passing and on v2" in done.stdout
    assert "still so 1s later" in done.stdout


def test_settling_lasts_the_longest_check_interval(tmp_path):
    toml = tmp_path / "fly.toml"
    toml.write_text(
        'app = "x"\n[[http_service.checks]]\n  interval = "10s"\n'
        '[checks.status]\n  type = "http"\n  grace_period = "30s"\n'
    )
    assert settle_seconds(toml) == 15.0  # the status check's default interval
    toml.write_text('app = "x"\n')
    assert settle_seconds(toml) == 0.0  # no checks: nothing to watch


def test_health_timeout_defaults_to_the_longest_grace_period_plus_interval(tmp_path):
    toml = tmp_path / "fly.toml"
    toml.write_text(
        'app = "x"\n[[http_service.checks]]\n  grace_period = "10s"\n  interval = "15s"\n'
        '[[services]]\n  [[services.http_checks]]\n    grace_period = "1m"\n'
        '[checks.status]\n  type = "http"\n  interval = "10s"\n  grace_period = "30s"\n'
    )
    assert default_health_timeout(toml) == 75.0  # services' 1m + the default 15s interval
    toml.write_text('app = "x"\n')
    assert default_health_timeout(toml) == DEFAULT_HEALTH_TIMEOUT
    assert default_health_timeout(tmp_path / "missing.toml") == DEFAULT_HEALTH_TIMEOUT


def test_a_bad_health_timeout_is_one_config_line(tmp_path, healthy_url):
    fly = fly_with(tmp_path / "proj", healthy_url, health_timeout="soon")
    done = fly.here("releases", "--env", "fly-staging")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1
    assert "shipyard.yaml:" in done.stderr
    assert "environments.fly-staging.health_timeout: expected a duration" in done.stderr
    assert not fly.fake.calls


# --- the API's bad days (point 4) ------------------------------------------------------------


def test_429s_are_retried_after_flyctls_hint_and_every_attempt_is_said(
    tmp_path, healthy_url, monkeypatch
):
    fly = Fly(tmp_path / "proj", healthy_url)
    fly.fake.script(rate_limited={"machines": 2}, retry_after_seconds=0.2)
    said: list[str] = []
    listed = fly.target(monkeypatch)._client().read_json(Call(said.append), "machines", "list")
    assert len(listed) == 2
    limited = (
        "flyctl machines list: attempt {} rate-limited (exit 1): could not list machines:"
        " failed to list VMs (status 429): 429 Too Many Requests: rate limit exceeded,"
        " retry after 0.2s"
    )
    assert said == [
        limited.format(1),
        "flyctl machines list: retrying in 0.2s",  # the hint, not the 0.01s backoff
        limited.format(2),
        "flyctl machines list: retrying in 0.2s",
    ]
    assert [call["exit"] for call in fly.fake.calls] == [1, 1, 0]


def test_a_429_during_a_deploy_is_retried_and_shown_in_the_step_and_heartbeat(fly):
    fly.fake.script(rate_limited={"releases": 1, "machines": 1}, retry_after_seconds=0)
    done = ok(fly.here("deploy.fly-staging"))
    deploy_step = done.stdout.split("==> Deploy: started", 1)[1].split("<== Deploy:", 1)[0]
    assert (  # the plan's read has no step: the heartbeat shows its attempts
        "flyctl machines list: attempt 1 rate-limited (exit 1): could not list machines:"
        " failed to list VMs (status 429): 429 Too Many Requests: rate limit exceeded\n"
        "flyctl machines list: retrying in 0.0s\n"
    ) in deploy_step
    beats = heartbeat(fly)
    assert 'step="flyctl releases" event=end attempt=1 status=rate-limited exit=1' in beats
    assert 'step="flyctl releases" event=end attempt=2 status=ok' in beats
    fly.assert_evidence_is_true(done, before=1)
    assert_token_nowhere(fly, done)


def test_5xx_beyond_the_bound_fails_as_transient_exhausted(tmp_path, healthy_url, monkeypatch):
    fly = Fly(tmp_path / "proj", healthy_url)
    fly.fake.script(server_errors={"machines": 10}, server_error_status=502)
    said: list[str] = []
    with pytest.raises(StepFailed) as failed:
        fly.target(monkeypatch)._client().read_json(Call(said.append), "machines", "list")
    message = failed.value.message
    assert message.startswith(
        "flyctl machines list kept failing (4 attempts): could not list machines:"
        " failed to list VMs (status 502): 502 Bad Gateway (transient: retries exhausted after"
    )
    assert message.endswith(", bound 10s)")
    assert len([line for line in said if "attempt" in line]) == 4 == len(fly.fake.calls)


def test_a_retry_hint_past_the_bound_ends_the_retries_at_once(tmp_path, healthy_url, monkeypatch):
    fly = Fly(tmp_path / "proj", healthy_url)
    fly.fake.script(rate_limited={"releases": 5}, retry_after_seconds=30)
    with pytest.raises(StepFailed, match=r"kept failing \(1 attempts\): .*retry after 30s"):
        fly.target(monkeypatch)._client().read_json(Call(), "releases")
    assert len(fly.fake.calls) == 1  # no 30 s wait past the 10 s bound


def test_a_5xx_before_the_deploy_fails_it_with_a_clear_last_line(fly):
    fly.fake.script(server_errors={"releases": 10}, server_error_status=500)
    done = fly.here("deploy.fly-staging")
    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("failed (exit 1): flyctl releases kept failing (4 attempts):")
    assert "500 Internal Server Error (transient: retries exhausted after" in last
    assert fly.newest == 1 and fly.machine_images() == {fly.image(1)}  # nothing deployed
    fly.assert_evidence_is_true(done, before=1)


# --- a deploy that hangs (point 4) -----------------------------------------------------------


def test_a_hanging_flyctl_deploy_is_killed_at_its_deadline(tmp_path, healthy_url, monkeypatch):
    """SIGTERM is ignored (a flyctl stuck in a call): SIGKILL of its group after the grace."""
    fly = Fly(tmp_path / "proj", healthy_url)
    fly.fake.script(hang_deploys=1)
    said: list[str] = []
    flyctl = fly.target(monkeypatch)._client()
    result, created = flyctl.stream(["deploy", "--app", APP], Call(said.append), deadline=0.5)
    assert result.failure("deploy") == (
        "flyctl deploy still running after its deadline of 0.5s: killed with SIGKILL"
    )
    assert created is None and any(line.startswith("Updating existing machines") for line in said)
    assert not flyctl_processes(fly.fake.path)
    assert [r["Status"] for r in fly.releases] == ["complete", "running"]  # as SIGKILL left it


@pytest.mark.e2e
def test_a_deploy_past_its_deadline_is_stopped_read_back_and_rolled_back(
    tmp_path, healthy_url, monkeypatch
):
    monkeypatch.setattr(client, "PACE", Pace(backoff=0.01, stop_grace=0.3, deploy_margin=1.0))
    fly = fly_with(tmp_path / "proj", healthy_url, strategy="rolling", wait_timeout="500ms")
    fly.fake.script(hang_deploys=1)
    done = fly.here("deploy.fly-staging")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "flyctl deploy deadline: 2s (wait_timeout 0.5s x 2 + 1s margin)" in done.stdout
    stopped = "flyctl deploy still running after its deadline of 2s: killed with SIGKILL"
    assert f"\nerror: {stopped}\n" in done.stdout
    assert fly.record()["reason"] == "Deploy failed for v2; rolled back to v1"
    assert "Fly lists v2 (building) as made by this deploy" in done.stdout
    assert not flyctl_processes(fly.fake.path)
    assert [r["Status"] for r in fly.releases] == ["complete", "running", "complete"]
    assert fly.machine_images() == {fly.image(1)} and fly.image(3) == fly.image(1)
    fly.assert_evidence_is_true(done, before=1)
    assert_token_nowhere(fly, done)
