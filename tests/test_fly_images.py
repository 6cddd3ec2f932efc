"""Build once, promote; the smoke of what ships; releases beyond the 25 Fly lists.

The real `inv` tasks (in this process, `run_here`) against the fake flyctl and, for the image
smoke, the fake docker (tests/fakes/docker: a docker daemon cannot be reached here; it follows
docker's CLI for the few commands used). The artifact smoke and the staging smoke go to real
servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import evidence_dir, ok, run_here, write_project
from test_smoke import serving

sys.path.insert(0, str(Path(__file__).parent))
from fakes.fly_state import FakeFly, drop_image, new_release, new_state, put_image, transaction
from test_fly import is_releasing_deploy

APP = "webapp-staging"
ENV = "fly-staging"
CONFIG = """
version: 1
secrets: [FLY_API_TOKEN]
steps:
  build:
    run: "mkdir -p dist && tar czf dist/app-1.tar.gz -C site ."
    artifact: "dist/app-*.tar.gz"
environments:
  fly-staging:
    target: fly
    app: webapp-staging
    fly_config: fly.toml
    wait_timeout: 2m
    start: "{python} -m http.server {{port}} --bind 127.0.0.1"
    smoke: {{url: "{url}", path: /, expect_status: 200, timeout: 5s}}
"""


class Project:
    """A git repository with a shipyard.yaml deploying to the fake Fly app."""

    def __init__(self, root: Path, url: str) -> None:
        self.fake = FakeFly(root.parent, new_state(APP))
        self.root = write_project(root, CONFIG.format(url=url, python=sys.executable))
        (root / "fly.toml").write_text(f'app = "{APP}"\n\n[http_service]\n  internal_port = 8080\n')
        (root / "site").mkdir()
        (root / "site" / "index.html").write_text("hello\n")
        (root / ".gitignore").write_text("dist/\nartifacts/\nfeedback/\n.shipyard/\n")
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "first"]):
            subprocess.run(["git", *args], cwd=root, check=True, env=self.git_env())
        self.sha = self.git("rev-parse", "HEAD")

    def git_env(self) -> dict[str, str]:
        names = ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL")
        return {**self.fake.env, **dict.fromkeys(names, "ci")}

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=self.root, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def here(self, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        return run_here(list(args), self.root, env=self.fake.environment(**env))

    @property
    def calls(self) -> list[list[str]]:
        return [call["argv"] for call in self.fake.calls]

    def builds(self) -> list[list[str]]:
        return [argv for argv in self.calls if argv[0] == "deploy" and "--push" in argv]

    def releases(self) -> list[dict]:
        return self.fake.state["apps"][APP]["releases"]

    def newest(self) -> dict:
        return max(self.releases(), key=lambda r: r["Version"])

    def record(self) -> dict:
        runs = (evidence_dir(self.root) / "runs").glob("*.json")
        return json.loads(max(runs, key=lambda p: p.stat().st_mtime_ns).read_text())


@pytest.fixture
def project(tmp_path):
    with serving(200) as url:
        yield Project(tmp_path / "proj", url)


def test_the_image_built_once_is_the_one_smoke_listed_and_deployed(project):
    done = ok(project.here(f"deploy.{ENV}"))
    label = f"sha-{project.sha[:12]}"
    [build] = project.builds()
    assert build[build.index("--image-label") + 1] == label
    ref = f"registry.fly.io/{APP}:{label}"
    assert f"image: {ref}" in done.stdout  # flyctl's line, read back
    [promote] = [argv for argv in project.calls if is_releasing_deploy(argv)]
    assert promote[promote.index("--image") + 1] == ref
    record = project.record()
    assert record["deploy"]["artifact"] == ref and project.newest()["ImageRef"] == ref
    assert [s["name"] for s in record["steps"]][:3] == ["Build application", "Build image", "Smoke"]
    assert project.fake.token not in json.dumps(project.calls)


def test_a_second_deploy_of_the_same_clean_commit_reuses_the_image(project):
    ok(project.here(f"deploy.{ENV}"))
    first = project.newest()["ImageRef"]
    again = ok(project.here(f"deploy.{ENV}"))
    assert len(project.builds()) == 1  # built once
    assert f"reusing {first}" in again.stdout
    assert project.newest()["ImageRef"] == first == project.record()["deploy"]["artifact"]
    assert project.newest()["Version"] == 3


@pytest.mark.e2e
def test_uncommitted_changes_are_built_again_under_a_dirty_label(project):
    ok(project.here(f"deploy.{ENV}"))
    (project.root / "site" / "index.html").write_text("changed\n")
    ok(project.here(f"deploy.{ENV}", "--allow-dirty"))
    labels = [argv[argv.index("--image-label") + 1] for argv in project.builds()]
    assert labels[0] == f"sha-{project.sha[:12]}"
    assert labels[1].startswith(f"sha-{project.sha[:12]}-dirty-") and len(labels) == 2


def test_no_build_without_a_recorded_image_is_refused_with_exit_2(project):
    done = project.here(f"deploy.{ENV}", "--no-build")
    assert done.returncode == 2, done.stdout + done.stderr
    assert project.builds() == [] and project.newest()["Version"] == 1


def test_without_docker_the_tarball_is_smoke_tested_and_says_why(project):
    done = ok(project.here(f"deploy.{ENV}"))
    said = "smoke-tested: tarball dist/app-1.tar.gz (docker not usable: `docker info`: Cannot"
    assert said in done.stdout
    assert project.record()["deploy"]["smoke_tested"].startswith("tarball dist/app-1.tar.gz (")


def test_with_docker_the_image_itself_is_smoke_tested(project):
    docker = project.root.parent / "docker-state.json"
    docker.write_text(json.dumps({"daemon": "up"}))
    done = ok(project.here(f"deploy.{ENV}", FAKE_DOCKER_STATE=str(docker)))
    ref = project.newest()["ImageRef"]
    assert f"smoke-tested: image {ref}" in done.stdout
    assert project.record()["deploy"]["smoke_tested"] == f"image {ref}"
    state = json.loads(docker.read_text())
    run = next(argv for argv in state["calls"] if argv[0] == "run")
    assert run[run.index("-p") + 1].endswith(":8080") and run[-1] == ref  # fly.toml's port
    assert state["containers"] == {}  # stopped and removed


@pytest.mark.e2e
def test_an_image_that_fails_its_smoke_is_not_deployed(project):
    docker = project.root.parent / "docker-state.json"
    ref = f"registry.fly.io/{APP}:sha-{project.sha[:12]}"
    docker.write_text(json.dumps({"daemon": "up", "images": {ref: {"status": 500}}}))
    done = project.here(f"deploy.{ENV}", FAKE_DOCKER_STATE=str(docker))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"artifact smoke of image {ref} failed" in done.stdout
    assert project.newest()["Version"] == 1  # Fly untouched
    assert json.loads(docker.read_text())["containers"] == {}


def test_rollback_to_a_release_older_than_flys_25_goes_through_the_history(project):
    ok(project.here(f"deploy.{ENV}"))  # v2, recorded with its image
    old = project.newest()["ImageRef"]
    with transaction(project.fake.path) as state:  # 26 more releases: Fly lists v4..v28
        app = state["apps"][APP]
        for version in range(3, 29):
            image = f"registry.fly.io/{APP}:deployment-{version:026d}"
            app["releases"].append(new_release(version, image, status="complete"))
            app["registry"].append(image)
        for machine in app["machines"]:
            put_image(machine, app["releases"][-1], "healthy")
    listed = json.loads(ok(project.here("releases", "--env", ENV, "--json")).stdout)
    assert "v2" in [r["version"] for r in listed] and "v3" not in [r["version"] for r in listed]
    done = ok(project.here("rollback", "--env", ENV, "--to", "v2"))
    assert (project.newest()["Version"], project.newest()["ImageRef"]) == (29, old)
    assert f"image {old}: found on Fly" in done.stdout


def test_a_dry_run_names_an_image_gone_from_fly_as_not_possible(project):
    ok(project.here(f"deploy.{ENV}"))
    gone = project.releases()[0]["ImageRef"]  # v1's
    dry = ok(project.here("rollback", "--env", ENV, "--dry-run", "--json"))
    assert json.loads(dry.stdout)["possible"] is True
    drop_image(project.fake.path, APP, gone)
    refused = project.here("rollback", "--env", ENV, "--to", "v1", "--dry-run", "--json")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    plan = json.loads(refused.stdout)
    assert plan["possible"] is False and f"its image {gone} is gone from Fly" in plan["reason"]
    assert any(check.startswith(f"image {gone}: gone from Fly") for check in plan["checks"])
