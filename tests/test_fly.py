"""The Fly target end to end: the real `inv` against the fake flyctl (tests/fakes), which
follows shared/reference/flyctl.md; the HTTP smoke goes to a real server on 127.0.0.1."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BIN, evidence_dir, ok, sha256sum_check, write_project
from test_smoke import serving

sys.path.insert(0, str(Path(__file__).parent))
from fakes.fly_state import FakeFly, machines, new_release, write

pytestmark = pytest.mark.e2e
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
    smoke: {{url: "{url}", expect_status: 200, timeout: 2s}}
"""


class Fly:
    def __init__(self, root: Path, url: str, *, strategy: str = "rolling", app: str = APP) -> None:
        self.fake = FakeFly(root.parent)
        self.root = write_project(root, CONFIG.format(url=url, strategy=strategy, app=app))
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

    def everything_written(self) -> str:
        files = [p for p in self.root.rglob("*") if p.is_file() and p.suffix != ".tar.gz"]
        return "\n".join(p.read_text(errors="replace") for p in files)


@pytest.fixture
def healthy_url():
    with serving(200) as url:
        yield url


@pytest.fixture
def fly(tmp_path, healthy_url):
    return Fly(tmp_path / "proj", healthy_url)


def test_deploy_reports_the_new_release_and_keeps_the_token_out_of_everything(fly):
    done = fly.inv("deploy.fly-staging")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fly release v2" in done.stdout
    assert "Fly reports every machine started, passing and on v2" in done.stdout
    assert fly.record()["deploy"]["release"] == "v2"
    assert [s["name"] for s in fly.record()["steps"]] == [
        "Build application",
        "Deploy",
        "Smoke fly-staging",
    ]
    listed = json.loads(fly.inv("releases", "--env", "fly-staging", "--json").stdout)
    assert [(r["version"], r["status"], r["current"]) for r in listed] == [
        ("v1", "complete", False),
        ("v2", "complete", True),
    ]
    deploys = [c for c in fly.fake.calls if c["argv"][0] == "deploy"]
    assert len(deploys) == 1 and all(c["token"] == "present" for c in fly.fake.calls)
    argv = json.dumps([c["argv"] for c in fly.fake.calls])
    assert "--strategy" in argv and fly.token not in argv
    assert fly.token not in done.stdout + done.stderr + fly.everything_written()
    assert sha256sum_check(evidence_dir(fly.root)).returncode == 0


def test_critical_checks_in_a_rolling_deploy_exit_3_with_every_machine_back(fly):
    ok(fly.inv("deploy.fly-staging"))
    good = fly.image(2)
    fly.fake.script(build_health="critical")
    done = fly.inv("deploy.fly-staging")
    assert done.returncode == 3, done.stdout + done.stderr
    assert fly.machine_images() == {good}
    newest = max(fly.releases, key=lambda r: r["Version"])
    assert (newest["ImageRef"], newest["Status"]) == (good, "complete")
    record = fly.record()
    assert record["deploy"]["rolled_back_to"] == "v2"
    assert [s["status"] for s in record["steps"]] == ["ok", "failed", "ok"]


def test_immediate_deploy_exiting_0_on_critical_checks_is_caught_by_the_verdict(
    tmp_path, healthy_url
):
    fly = Fly(tmp_path / "proj", healthy_url, strategy="immediate")
    fly.fake.script(build_health="critical")
    done = fly.inv("deploy.fly-staging")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "unhealthy: machine" in done.stdout and "is critical" in done.stdout
    assert fly.machine_images() == {fly.image(1)}


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
    assert [c["argv"][0] for c in fly.fake.calls].count("deploy") == 1  # the first deploy only
    assert fly.token not in dry.stdout


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
    assert "v3 -> v1" in again.stdout  # v2 was rolled back from: skipped


def test_nothing_to_roll_back_to_exits_6(fly):
    assert fly.inv("rollback", "--env", "fly-staging", "--dry-run").returncode == 6


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
    assert not (fly.root / "artifacts").exists()


def test_without_flyctl_the_message_says_how_to_install_it(fly):
    done = fly.inv("releases", "--env", "fly-staging", PATH=f"{BIN}:/usr/bin:/bin")
    assert done.returncode == 2
    assert "flyctl not found on PATH" in done.stderr


def test_transient_read_errors_are_retried_and_visible_in_the_heartbeat(fly):
    fly.fake.script(transient={"releases": 1, "status": 1, "machines": 2, "checks": 0})
    done = fly.inv("deploy.fly-staging")
    assert done.returncode == 0, done.stdout + done.stderr
    beats = (evidence_dir(fly.root) / "logs" / "heartbeat.log").read_text()
    assert 'step="flyctl machines list" event=end attempt=1 status=transient' in beats
    assert 'step="flyctl machines list" event=end attempt=3 status=ok' in beats
    assert 'step="flyctl releases" event=end attempt=2 status=ok' in beats


def test_permanent_errors_fail_at_once_with_flyctls_message(tmp_path, healthy_url):
    fly = Fly(tmp_path / "proj", healthy_url, app="no-such-app")
    done = fly.inv("releases", "--env", "fly-staging")
    assert done.returncode == 1
    assert 'Could not find App "no-such-app"' in done.stderr
    assert len([c for c in fly.fake.calls if "releases" in c["argv"]]) == 1


def test_interrupted_flyctl_deploy_is_stopped_and_rolled_back(fly):
    fly.fake.script(deploy_seconds=10)
    process = fly.spawn("deploy.fly-staging")
    fly.fake.wait_for(
        lambda state: any(r["Status"] == "running" for r in state["apps"][APP]["releases"]), 30
    )
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    assert any(r["Status"] == "interrupted" for r in fly.releases)
    assert fly.machine_images() == {fly.image(1)}
    assert not (fly.root / ".shipyard" / "fly-staging" / "lock").exists()


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


def test_a_failing_release_command_rolls_back_with_exit_3(fly):
    fly.fake.script(release_command_fails=True)
    done = fly.inv("deploy.fly-staging")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "release command failed" in done.stdout
    assert "--skip-release-command" in done.stdout  # the restore does not run it again
    assert fly.machine_images() == {fly.image(1)}


def test_rollback_to_an_image_gone_from_the_registry_fails_without_a_release(fly):
    ok(fly.inv("deploy.fly-staging"))
    state = fly.fake.state
    state["apps"][APP]["registry"].remove(fly.image(1))
    write(fly.fake.path, state)
    count = len(fly.releases)
    done = fly.inv("rollback", "--env", "fly-staging")
    assert done.returncode in (3, 4), done.stdout + done.stderr
    assert "could not find image" in done.stdout
    assert len(fly.releases) == count + 1  # only the restore of v2's image made one


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
