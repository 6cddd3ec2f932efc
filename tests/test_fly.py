"""The Fly target end to end: the real `inv` against the fake flyctl (tests/fakes), which
follows shared/reference/flyctl.md; the HTTP smoke goes to a real server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import BIN, evidence_dir, ok, run_here, sha256sum_check, write_project
from test_smoke import serving

from shipyard import audit
from shipyard.config import load_config
from shipyard.heartbeat import logfmt_value
from shipyard.targets.base import Call, DeployPlan, Made, TargetFailed
from shipyard.targets.fly import FlyResult, FlyTarget

sys.path.insert(0, str(Path(__file__).parent))
from fakes.fly_state import (
    STATE_ENV,
    FakeFly,
    drop_image,
    machines,
    new_release,
    new_state,
    put_image,
    release,
    write,
)

APP = "webapp-staging"
CONFIG = """
version: 1
heartbeat: {{interval: 1s}}
secrets: [FLY_API_TOKEN]
steps:
  build: {{run: "mkdir -p dist && echo app > dist/app-1.tar.gz", artifact: "dist/app-*.tar.gz"}}
environments:
  fly-staging:
    target: fly
    app: {app}
    fly_config: fly.toml
    strategy: {strategy}
    wait_timeout: 2m
    health_timeout: 3s
    read_timeout: {read_timeout}
    smoke: {{url: "{url}", expect_status: 200, timeout: 2s}}
"""


class Fly:
    def __init__(
        self,
        root: Path,
        url: str,
        *,
        strategy: str = "rolling",
        app: str = APP,
        read_timeout: str = "20s",
        releases: int = 1,
    ) -> None:
        """`releases` complete releases on Fly (one image each), the machines on the newest."""
        self.fake = FakeFly(root.parent, new_state(APP, releases=releases))
        config = CONFIG.format(url=url, strategy=strategy, app=app, read_timeout=read_timeout)
        self.root = write_project(root, config)
        (root / "fly.toml").write_text(f'app = "{APP}"\n')
        self.token = "FlyV1 fm2_" + secrets.token_urlsafe(24)
        self.fake.env["FLY_API_TOKEN"] = self.token

    def inv(self, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "inv"), *args],
            cwd=self.root,
            env=self._env(**env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def here(self, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        """The same task run in this process (`run_here`): for the quick tests."""
        return run_here(list(args), self.root, env=self._env(**env))

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(BIN / "inv"), *args],
            cwd=self.root,
            env=self._env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def _env(self, **env: str | None) -> dict[str, str]:
        merged = self.fake.environment(**env)
        merged["PATH"] = f"{BIN}:{merged['PATH']}"
        merged.pop("CI", None)
        return merged

    @property
    def releases(self) -> list[dict]:
        return self.fake.state["apps"][APP]["releases"]

    def image(self, version: int) -> str:
        return next(r["ImageRef"] for r in self.releases if r["Version"] == version)

    def machine_images(self) -> set[str]:
        return {m["config"]["image"] for m in machines(self.fake.state, APP)}

    def record(self) -> dict:
        runs = sorted(
            (evidence_dir(self.root) / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime_ns
        )
        return json.loads(runs[-1].read_text())

    @property
    def newest(self) -> int:
        return max(r["Version"] for r in self.releases)

    def deploys(self) -> int:
        """The flyctl deploys that may make a release (not the `--build-only` ones)."""
        return len(self.releasing_deploys())

    def releasing_deploys(self) -> list[dict]:
        return [c for c in self.fake.calls if is_releasing_deploy(c["argv"])]

    def target(self, monkeypatch: pytest.MonkeyPatch) -> FlyTarget:
        """The Fly target in this process, as `inv` builds it, calling the fake flyctl."""
        for name in [name for name in os.environ if name.startswith("FLY_")]:
            monkeypatch.delenv(name)
        for name, value in self._env().items():
            monkeypatch.setenv(name, value)
        config = load_config(self.root / "shipyard.yaml")
        return FlyTarget(config, config.environments["fly-staging"])

    def assert_evidence_is_true(self, done: subprocess.CompletedProcess[str], before: int) -> None:
        """The deploy's evidence claims only what the fake's state shows: the release it made
        (or none), where the machines are, the steps that ran and how they ended.
        `before` is the newest release version before the deploy."""
        record = self.record()
        deploy = record["deploy"]
        made = sorted(
            (r for r in self.releases if r["Version"] > before), key=lambda r: r["Version"]
        )
        assert record["exit_code"] == done.returncode
        assert deploy["release"] == (f"v{made[0]['Version']}" if made else None), deploy
        assert deploy["made"] == [f"v{r['Version']}" for r in made], deploy
        outcome, images = record["outcome"], self.machine_images()
        if outcome == "ok":
            assert made[0]["Status"] == "complete" and images == {made[0]["ImageRef"]}
            assert deploy["serving"] == deploy["release"]
        elif deploy["rolled_back_to"]:  # rolled back (exit 3), or interrupted and restored
            assert outcome in ("rolled back", "interrupted")
            restored = self.image(int(deploy["rolled_back_to"].lstrip("v")))
            assert images == {restored}
            if len(made) > 1:  # the restore deployed the earlier image as a new release
                assert (made[-1]["ImageRef"], made[-1]["Status"]) == (restored, "complete")
        elif deploy["release"] is None and deploy["serving"]:  # failed before the switch
            assert outcome == "failed" and not made
            assert images == {self.image(int(deploy["serving"].lstrip("v")))}
        elif outcome == "down":
            assert deploy["serving"] is None
        else:  # stopped before deploying: Fly has nothing new
            assert not made
        beats = (evidence_dir(self.root) / "logs" / "heartbeat.log").read_text()
        for step in record["steps"]:
            ended = f"step={logfmt_value(step['name'])} event=end status={step['status']}"
            assert ended in beats, ended
        heading = f"`inv {' '.join(done.args[1:])}` · {record['outcome']} (exit {done.returncode})"
        feedback = next((self.root / "feedback" / "devops").glob("*.md")).read_text()
        assert heading in feedback

    def everything_written(self) -> str:
        files = [p for p in self.root.rglob("*") if p.is_file() and p.suffix != ".tar.gz"]
        return "\n".join(p.read_text(errors="replace") for p in files)


def is_releasing_deploy(argv: list[str]) -> bool:
    return argv[0] == "deploy" and "--build-only" not in argv


@pytest.fixture
def healthy_url():
    with serving(200) as url:
        yield url


@pytest.fixture
def fly(tmp_path, healthy_url):
    return Fly(tmp_path / "proj", healthy_url)


@pytest.mark.e2e
def test_deploy_reports_the_new_release_and_keeps_the_token_out_of_everything(fly):
    done = fly.inv("deploy.fly-staging")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fly release v2" in done.stdout
    assert "Fly reports every machine started, passing and on v2" in done.stdout
    assert fly.record()["deploy"]["release"] == "v2"
    assert [s["name"] for s in fly.record()["steps"]] == [
        "Build application",
        "Build image",
        "Deploy",
        "Smoke fly-staging",
    ]
    listed = json.loads(fly.inv("releases", "--env", "fly-staging", "--json").stdout)
    assert [(r["version"], r["status"], r["current"]) for r in listed] == [
        ("v1", "complete", False),
        ("v2", "complete", True),
    ]
    deploys = fly.releasing_deploys()
    assert len(deploys) == 1 and all(c["token"] == "present" for c in fly.fake.calls)
    argv = json.dumps([c["argv"] for c in fly.fake.calls])
    assert "--strategy" in argv and fly.token not in argv
    assert fly.token not in done.stdout + done.stderr + fly.everything_written()
    assert sha256sum_check(evidence_dir(fly.root)).returncode == 0


def test_critical_checks_in_a_rolling_deploy_exit_3_with_every_machine_back(fly):
    ok(fly.here("deploy.fly-staging"))
    good = fly.image(2)
    fly.fake.script(build_health="critical")
    done = fly.here("deploy.fly-staging")
    assert done.returncode == 3, done.stdout + done.stderr
    fly.assert_evidence_is_true(done, before=2)
    assert fly.machine_images() == {good}
    newest = max(fly.releases, key=lambda r: r["Version"])
    assert (newest["ImageRef"], newest["Status"]) == (good, "complete")
    record = fly.record()
    assert record["deploy"]["rolled_back_to"] == "v2"
    assert [s["status"] for s in record["steps"]] == ["ok", "ok", "failed", "ok"]


@pytest.mark.e2e
def test_immediate_deploy_exiting_0_on_critical_checks_is_caught_by_the_verdict(
    tmp_path, healthy_url
):
    fly = Fly(tmp_path / "proj", healthy_url, strategy="immediate")
    fly.fake.script(build_health="critical")
    done = fly.inv("deploy.fly-staging")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "unhealthy: machine" in done.stdout and "is critical" in done.stdout
    assert fly.machine_images() == {fly.image(1)}
    fly.assert_evidence_is_true(done, before=1)


@pytest.mark.e2e
def test_failing_http_smoke_rolls_back(tmp_path):
    flies: list[Fly] = []

    def answer() -> int:  # the "app" answers 200 only while every machine runs v1's image
        fly = flies[0]
        return 200 if fly.machine_images() == {fly.image(1)} else 500

    with serving(answer) as url:
        flies.append(Fly(tmp_path / "proj", url))
        done = flies[0].inv("deploy.fly-staging")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "last answer: 500" in done.stdout
    assert flies[0].machine_images() == {flies[0].image(1)}
    flies[0].assert_evidence_is_true(done, before=1)


@pytest.mark.e2e
def test_rollback_dry_run_prints_the_exact_command_and_creates_nothing(fly):
    ok(fly.inv("deploy.fly-staging"))
    before = json.dumps(fly.releases)
    dry = fly.inv("rollback", "--env", "fly-staging", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    expected = (
        f"flyctl deploy --app {APP} --config fly.toml --image {fly.image(1)} "
        "--strategy rolling --wait-timeout 120s --skip-release-command"
    )
    assert expected in dry.stdout
    assert json.dumps(fly.releases) == before
    assert fly.deploys() == 1  # the first deploy only
    assert fly.token not in dry.stdout


@pytest.mark.e2e
def test_rollback_creates_a_new_release_with_the_earlier_image_and_skips_it_next_time(fly):
    ok(fly.inv("deploy.fly-staging"))
    done = fly.inv("rollback", "--env", "fly-staging")
    assert done.returncode == 0, done.stdout + done.stderr
    newest = max(fly.releases, key=lambda r: r["Version"])
    assert (newest["Version"], newest["ImageRef"]) == (3, fly.image(1))
    assert fly.machine_images() == {fly.image(1)}
    listed = json.loads(fly.inv("releases", "--env", "fly-staging", "--json").stdout)
    assert {r["version"]: r["status"] for r in listed}["v2"] == "bad"
    again = fly.inv("rollback", "--env", "fly-staging", "--dry-run")
    assert again.returncode == 6, again.stdout + again.stderr  # nothing left to go back to:
    assert "v3 -> nothing" in again.stdout  # v2 was rolled back from, v1's image runs
    assert f"v1: its image {fly.image(1)} is already running (as v3)" in again.stdout


@pytest.mark.e2e
def test_nothing_to_roll_back_to_exits_6(fly):
    done = fly.inv("rollback", "--env", "fly-staging", "--dry-run")
    assert done.returncode == 6, done.stdout + done.stderr
    assert "why: no complete, not-bad release older than v1" in done.stdout


@pytest.mark.e2e
@pytest.mark.parametrize(
    "task",
    [
        ("deploy.fly-staging",),
        ("releases", "--env", "fly-staging"),
        ("status", "--env", "fly-staging"),
        ("rollback", "--env", "fly-staging"),
        ("rollback", "--env", "fly-staging", "--dry-run"),
    ],
)
def test_without_a_token_every_fly_task_exits_2_naming_it(fly, task):
    done = fly.inv(*task, FLY_API_TOKEN=None)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "FLY_API_TOKEN" in done.stderr and done.stderr.count("\n") == 1
    assert not fly.fake.calls  # nothing reached flyctl
    if task[0] in ("releases", "status"):  # read-only: no run, no evidence
        assert not (fly.root / "artifacts").exists()
    else:  # a deploy or rollback refused by its preflight is recorded as refused
        record = fly.record()
        assert (record["outcome"], record["exit_code"], record["steps"]) == ("refused", 2, [])
        assert "FLY_API_TOKEN" in record["reason"]
        assert done.stdout.strip().splitlines()[-1].startswith("refused (exit 2): FLY_API_TOKEN")


@pytest.mark.e2e
def test_without_flyctl_the_message_says_how_to_install_it(fly):
    done = fly.inv("releases", "--env", "fly-staging", PATH=f"{BIN}:/usr/bin:/bin")
    assert done.returncode == 2
    assert "flyctl not found on PATH" in done.stderr


def test_transient_read_errors_are_retried_and_visible_in_the_heartbeat(fly):
    fly.fake.script(transient={"releases": 1, "status": 1, "machines": 2, "checks": 0})
    done = ok(fly.here("deploy.fly-staging"))
    fly.assert_evidence_is_true(done, before=1)
    beats = (evidence_dir(fly.root) / "logs" / "heartbeat.log").read_text()
    assert 'step="flyctl machines list" event=end attempt=1 status=transient' in beats
    assert 'step="flyctl machines list" event=end attempt=3 status=ok' in beats
    assert 'step="flyctl releases" event=end attempt=2 status=ok' in beats


def test_a_read_that_hangs_is_killed_after_read_timeout_and_retried(tmp_path, healthy_url):
    fly = Fly(tmp_path / "proj", healthy_url, read_timeout="1s")
    fly.fake.script(slow={"releases": 1})  # the first `flyctl releases` hangs for 60 s
    done = ok(fly.here("deploy.fly-staging"))
    beats = (evidence_dir(fly.root) / "logs" / "heartbeat.log").read_text()
    assert 'step="flyctl releases" event=end attempt=1 status=timeout exit=124' in beats
    assert 'step="flyctl releases" event=end attempt=2 status=ok' in beats
    fly.assert_evidence_is_true(done, before=1)


@pytest.mark.e2e
def test_reads_that_keep_hanging_fail_the_deploy_before_anything_is_deployed(tmp_path, healthy_url):
    fly = Fly(tmp_path / "proj", healthy_url, read_timeout="1s")
    fly.fake.script(slow={"releases": 10})
    done = fly.inv("deploy.fly-staging")
    assert done.returncode == 1, done.stdout + done.stderr
    reason = "flyctl releases kept failing (4 attempts): no answer within 1s"
    assert done.stdout.strip().splitlines()[-1].startswith(f"failed (exit 1): {reason}")
    assert fly.record()["reason"].startswith(reason)
    fly.assert_evidence_is_true(done, before=1)


@pytest.mark.e2e
def test_permanent_errors_fail_at_once_with_flyctls_message(tmp_path, healthy_url):
    fly = Fly(tmp_path / "proj", healthy_url, app="no-such-app")
    done = fly.inv("releases", "--env", "fly-staging")
    assert done.returncode == 1
    assert 'Could not find App "no-such-app"' in done.stderr
    assert len([c for c in fly.fake.calls if "releases" in c["argv"]]) == 1


def test_interrupted_flyctl_deploy_is_stopped_and_rolled_back(fly):
    """SIGTERM during `flyctl deploy`: flyctl marks its release interrupted and exits 127;
    Shipyard still restores the previous image (to its end), then exits 143 (128 + SIGTERM)."""
    fly.fake.script(deploy_seconds=10)
    process = fly.spawn("deploy.fly-staging")
    fly.fake.wait_for(
        lambda state: any(r["Status"] == "running" for r in state["apps"][APP]["releases"]), 30
    )
    fly.fake.script(deploy_seconds=0)  # the restore's deploy, not this one, sees it
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, out + err
    assert [r["Status"] for r in fly.releases] == ["complete", "interrupted", "complete"]
    assert fly.machine_images() == {fly.image(1)} and fly.image(3) == fly.image(1)
    assert not (fly.root / ".shipyard" / "fly-staging" / "lock").exists()
    done = subprocess.CompletedProcess(process.args, 143, out, err)
    fly.assert_evidence_is_true(done, before=1)
    record = fly.record()
    assert (record["outcome"], record["deploy"]["rolled_back_to"]) == ("interrupted", "v1")
    assert record["reason"] == "interrupted by SIGTERM; v1 restored"


@pytest.mark.e2e
def test_releases_lists_flys_25_newest(fly):
    with_many = fly.fake.state
    app = with_many["apps"][APP]
    for version in range(2, 31):
        image = f"registry.fly.io/{APP}:deployment-{version:026d}"
        app["releases"].append(new_release(version, image))
        app["registry"].append(image)
    write(fly.fake.path, with_many)
    listed = json.loads(fly.inv("releases", "--env", "fly-staging", "--json").stdout)
    assert [r["version"] for r in listed] == [f"v{n}" for n in range(6, 31)]
    table = fly.inv("releases", "--env", "fly-staging").stdout
    assert table.splitlines()[1].startswith("v30 ") and "<- current" in table.splitlines()[1]


@pytest.mark.e2e
def test_a_failing_release_command_rolls_back_with_exit_3(fly):
    fly.fake.script(release_command_fails=True)
    done = fly.inv("deploy.fly-staging")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "release command failed" in done.stdout
    assert "--skip-release-command" in done.stdout  # the restore does not run it again
    assert fly.machine_images() == {fly.image(1)}
    fly.assert_evidence_is_true(done, before=1)


def test_rollback_to_an_image_gone_from_the_registry_is_refused_by_its_plan(fly):
    """The plan asks Fly for the image first (`flyctl deploy --build-only --image`): a release
    whose image is gone is passed over, so nothing is deployed and nothing needs undoing."""
    ok(fly.here("deploy.fly-staging"))
    state = fly.fake.state
    state["apps"][APP]["registry"].remove(fly.image(1))
    write(fly.fake.path, state)
    count = len(fly.releases)
    done = fly.here("rollback", "--env", "fly-staging")
    assert done.returncode == 6, done.stdout + done.stderr
    assert f"skipped v1: its image {fly.image(1)} is gone from Fly" in done.stdout
    assert "could not find image" in done.stdout
    assert len(fly.releases) == count and fly.machine_images() == {fly.image(2)}
    assert fly.deploys() == 1  # the first deploy only: the rollback deployed nothing


def test_a_deploy_whose_image_build_fails_makes_no_release_and_claims_none(fly):
    ok(fly.here("deploy.fly-staging"))
    fly.fake.script(build_fails=True)
    done = fly.here("deploy.fly-staging")
    assert done.returncode == 1, done.stdout + done.stderr  # nothing on Fly changed
    assert fly.newest == 2 and fly.machine_images() == {fly.image(2)}
    fly.assert_evidence_is_true(done, before=2)
    record = fly.record()
    assert record["outcome"] == "failed" and record["deploy"]["rolled_back_to"] is None
    assert [s["status"] for s in record["steps"]] == ["ok", "failed"]  # Build image failed
    assert record["reason"].startswith("failed: Build image (exit 1: flyctl deploy --build-only")
    assert fly.deploys() == 1 and record["deploy"]["release"] is None


@pytest.mark.e2e
def test_doctor_names_the_missing_token(fly):
    done = fly.inv("doctor", "--env", "fly-staging", FLY_API_TOKEN=None)
    assert done.returncode == 2
    assert "FAIL environment fly-staging: FLY_API_TOKEN is not set" in done.stdout
    ok(fly.inv("doctor", "--env", "fly-staging"))


def test_the_token_is_in_no_child_process_argv_while_a_deploy_runs(fly):
    fly.fake.script(deploy_seconds=1.0)
    process = fly.spawn("deploy.fly-staging")
    seen: list[str] = []
    while process.poll() is None:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                seen.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
        time.sleep(0.02)
    assert process.wait() == 0
    assert any("deploy" in line and "--app" in line for line in seen)  # flyctl deploy was seen
    assert not [line for line in seen if fly.token in line]


# --- rollback choices by image (issue 10, point 4) -------------------------------------------


@pytest.mark.e2e
def test_after_a_rollback_the_next_one_goes_to_another_image_never_the_running_one(
    tmp_path, healthy_url
):
    fly = Fly(tmp_path / "proj", healthy_url, releases=4)
    ok(fly.inv("rollback", "--env", "fly-staging"))  # v5: v3's image
    assert (fly.newest, fly.machine_images()) == (5, {fly.image(3)})
    dry = fly.inv("rollback", "--env", "fly-staging", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "v5 -> v2" in dry.stdout and "-> v3" not in dry.stdout
    assert f"skipped v3: its image {fly.image(3)} is already running (as v5)" in dry.stdout
    assert f"--image {fly.image(2)} " in dry.stdout
    ok(fly.inv("rollback", "--env", "fly-staging"))  # v6: v2's image; v5 (v3's image) left
    assert (fly.newest, fly.machine_images()) == (6, {fly.image(2)})
    dry = fly.inv("rollback", "--env", "fly-staging", "--dry-run")
    assert "v6 -> v1" in dry.stdout, dry.stdout  # not back to the image just left
    assert "v3: its image was rolled back from as v5" in dry.stdout
    assert fly.deploys() == 2  # the dry runs deployed nothing


@pytest.mark.e2e
def test_rollback_to_a_release_whose_image_runs_is_refused_with_exit_2(tmp_path, healthy_url):
    fly = Fly(tmp_path / "proj", healthy_url, releases=3)
    ok(fly.inv("rollback", "--env", "fly-staging"))  # v4: v2's image
    for args in (("--to", "v2"), ("--to", "v2", "--dry-run")):
        refused = fly.inv("rollback", "--env", "fly-staging", *args)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        said = refused.stdout + refused.stderr
        assert f"--to v2: v2's image {fly.image(2)} is already running (as v4)" in said
    current = fly.inv("rollback", "--env", "fly-staging", "--to", "v4")
    assert current.returncode == 2, current.stdout + current.stderr
    assert "--to v4: v4's image" in current.stdout + current.stderr
    assert fly.deploys() == 1 and fly.newest == 4  # the first rollback only
    ok(fly.inv("rollback", "--env", "fly-staging", "--to", "v3", "--dry-run"))  # left, not running


@pytest.mark.e2e
def test_an_interrupted_release_is_shown_as_interrupted_and_never_chosen(tmp_path, healthy_url):
    fly = Fly(tmp_path / "proj", healthy_url, releases=3)
    state = fly.fake.state
    state["apps"][APP]["releases"][1].update(Status="interrupted", Stable=False)
    write(fly.fake.path, state)
    listed = json.loads(fly.inv("releases", "--env", "fly-staging", "--json").stdout)
    assert [(r["version"], r["status"]) for r in listed] == [
        ("v1", "complete"),
        ("v2", "interrupted"),
        ("v3", "complete"),
    ]
    assert "v3 -> v1" in fly.inv("rollback", "--env", "fly-staging", "--dry-run").stdout
    asked = fly.inv("rollback", "--env", "fly-staging", "--to", "v2", "--dry-run")
    assert asked.returncode == 2
    assert "--to v2: it is interrupted, never passed its smoke" in asked.stdout


@pytest.mark.e2e
def test_flyctl_killed_mid_deploy_reports_exit_127_and_its_last_line(fly):
    """Someone else's SIGTERM reaches flyctl: it exits 127 and prints no `Error:` line (as
    flyctl does for a canceled context); its last meaningful line is the message."""
    fly.fake.script(deploy_seconds=10)
    process = fly.spawn("deploy.fly-staging")
    fly.fake.wait_for(
        lambda state: any(r["Status"] == "running" for r in state["apps"][APP]["releases"]), 30
    )
    fly.fake.script(deploy_seconds=0)  # the restore's deploy, not this one, sees it
    os.kill(flyctl_deploy_pid(fly.fake.path), signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 3, out + err
    message = "flyctl deploy exited 127: Updating existing machines in 'webapp-staging'"
    assert message in out
    assert [r["Status"] for r in fly.releases] == ["complete", "interrupted", "complete"]
    listed = json.loads(fly.inv("releases", "--env", "fly-staging", "--json").stdout)
    assert {r["version"]: r["status"] for r in listed}["v2"] == "interrupted"


def flyctl_deploy_pid(state: Path) -> int:
    """The fake `flyctl deploy` working on `state` (not another test's, on a shared machine)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"deploy" in cmdline and f"{STATE_ENV}={state}".encode() in environ:
            return int(proc.name)
    raise AssertionError("no flyctl deploy is running")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            "Updating existing machines in 'app' with rolling strategy\n-------\n\n-------\n",
            "flyctl deploy exited 127: Updating existing machines in 'app' with rolling strategy",
        ),
        ("-------\n\n ... \n***\n", "flyctl deploy exited 127 with no error message"),
        ("", "flyctl deploy exited 127 with no error message"),
        (
            "Error: could not find image\nView more information at https://fly.io/x\n-------\n",
            "flyctl deploy exited 127: could not find image",
        ),
    ],
)
def test_a_flyctl_failure_says_its_error_line_else_its_last_meaningful_line(output, expected):
    assert FlyResult(127, "", output).failure("deploy") == expected


def test_rollback_undo_and_restore_name_the_release_they_made(tmp_path, healthy_url, monkeypatch):
    fly = Fly(tmp_path / "proj", healthy_url, releases=3)
    target, said = fly.target(monkeypatch), []
    call = Call(said.append)
    plan = target.plan_rollback(None, call)
    made = target.rollback(plan, call)
    assert (made.release, fly.newest, fly.image(4)) == ("v4", 4, fly.image(2))
    undone = target.undo_rollback(plan, made, call)
    assert undone is not None
    assert (undone.release, fly.image(5)) == ("v5", fly.image(3))  # what ran before
    restored = target.restore(DeployPlan("fly-staging", "fly", "v6", "v5"), undone, call)
    assert restored is not None and restored.release == "v6" == f"v{fly.newest}"


def test_a_restore_passes_over_a_release_whose_image_fly_lost(tmp_path, healthy_url, monkeypatch):
    """v3 ran, but its image is gone from the registry: a restore deploying it would fail and
    leave the failed release serving; the restore asks first and puts back v2's image."""
    fly = Fly(tmp_path / "proj", healthy_url, releases=3)
    drop_image(fly.fake.path, APP, fly.image(3))
    target, said = fly.target(monkeypatch), []
    plan, made = DeployPlan("fly-staging", "fly", "v4", "v3"), Made(None, known=False)
    restored = target.restore(plan, made, Call(said.append))
    assert restored is not None and restored.release == "v4" == f"v{fly.newest}"
    assert fly.image(4) == fly.image(2) and fly.machine_images() == {fly.image(2)}
    assert any(line.startswith("passing over v3 for the restore: its image") for line in said)
    assert fly.deploys() == 1


def test_a_rollback_that_makes_no_release_names_none(tmp_path, healthy_url, monkeypatch):
    fly = Fly(tmp_path / "proj", healthy_url, releases=3)
    target, call = fly.target(monkeypatch), Call(print)
    plan = target.plan_rollback(None, call)
    state = fly.fake.state  # the image goes between the plan (which found it) and the deploy
    state["apps"][APP]["registry"].remove(fly.image(2))
    write(fly.fake.path, state)
    with pytest.raises(TargetFailed, match="could not find image") as failed:
        target.rollback(plan, call)
    made = failed.value.made
    assert made == Made(None, known=True) and fly.newest == 3  # read: Fly lists nothing new
    assert target.undo_rollback(plan, made, call) == Made(None)
    assert fly.deploys() == 1


def test_an_undo_puts_back_the_image_that_ran_as_the_rollback_was_planned(
    tmp_path, healthy_url, monkeypatch
):
    """The machines run v2's image under v3 (a deploy that failed them back): an undo, by a
    target that shares nothing with the one that rolled back, puts v2's image back."""
    fly = Fly(tmp_path / "proj", healthy_url, releases=3)
    state = fly.fake.state
    for machine in machines(state, APP):
        put_image(machine, release(state, APP, 2), "healthy")
    write(fly.fake.path, state)
    call = Call(print)
    plan = fly.target(monkeypatch).plan_rollback(None, call)
    made = fly.target(monkeypatch).rollback(plan, call)
    assert (plan.current, plan.to, fly.image(4)) == ("v3", "v1", fly.image(1))
    undone = fly.target(monkeypatch).undo_rollback(plan, made, call)
    assert undone is not None and (undone.release, fly.image(5)) == ("v5", fly.image(2))
    assert fly.machine_images() == {fly.image(2)}


def test_rollbacks_read_back_from_the_audit_trail_in_either_wording(
    tmp_path, healthy_url, monkeypatch
):
    """Rollback events: outcome "ok" (now) or "rolled back" (before); deploy events: "rolled
    back" or "down". A rollback that restored what it left marks nothing."""
    fly = Fly(tmp_path / "proj", healthy_url, releases=5)
    target = fly.target(monkeypatch)
    trail = target.state_dir / "audit.jsonl"
    audit.append(trail, "rollback", outcome="ok", previous="v4", rolled_back_to="v3")
    audit.append(trail, "rollback", outcome="rolled back", previous="v3", rolled_back_to="v2")
    audit.append(trail, "rollback", outcome="restored", previous="v5", rolled_back_to=None)
    audit.append(trail, "deploy", outcome="down", release="v1")
    statuses = {r.version: r.status.value for r in target.releases(Call())}
    assert statuses == {"v1": "bad", "v2": "complete", "v3": "bad", "v4": "bad", "v5": "complete"}


@pytest.mark.e2e
def test_the_rollback_run_record_names_the_release_it_made(fly):
    ok(fly.inv("deploy.fly-staging"))
    ok(fly.inv("rollback", "--env", "fly-staging"))
    assert fly.record()["rollback"]["release"] == "v3" == f"v{fly.newest}"


@pytest.mark.e2e
def test_the_fly_dry_run_plans_are_the_actions_the_runs_then_take(fly):
    from test_verdicts import assert_carried_out_in_order, planned_actions

    ok(fly.inv("deploy.fly-staging"))
    plan = planned_actions(ok(fly.inv("deploy.fly-staging", "--dry-run")).stdout)
    assert [action.split()[0] for action in plan] == ["build:", "`flyctl", "`flyctl"]
    assert_carried_out_in_order(plan, ok(fly.inv("deploy.fly-staging")).stdout)

    dry = ok(fly.inv("rollback", "--env", "fly-staging", "--dry-run")).stdout
    plan = planned_actions(dry)
    assert [action.split()[0] for action in plan] == ["take", "`flyctl", "check", "record"]
    done = ok(fly.inv("rollback", "--env", "fly-staging")).stdout
    before, after = done.split(f"{len(plan)}. {plan[-1]}", 1)
    assert_carried_out_in_order(plan[:1], before)  # the lock is taken before the step starts
    assert_carried_out_in_order(plan[1:], after)
