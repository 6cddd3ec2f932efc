"""Adding a target is one module and one registry entry: a third, minimal target defined here
gets its options checked with the config's own errors and deploys through the real pipeline,
while nothing else (the config included) names it."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shipyard import targets
from shipyard.config import Config, Environment, load_config
from shipyard.config.checks import integer, text
from shipyard.console import PlainConsole
from shipyard.deploy import deploy
from shipyard.errors import ConfigError, Outcome
from shipyard.redact import Redactor
from shipyard.smoke import SmokeCheck
from shipyard.targets import (
    Call,
    DeployPlan,
    Made,
    Release,
    ReleaseStatus,
    RollbackPlan,
    Status,
    TargetKind,
)

CONFIG = """\
version: 1
steps:
  build: {{run: "mkdir -p dist && echo app > dist/app-1.tar.gz", artifact: "dist/app-*.tar.gz"}}
environments:
  review:
    target: echo
{options}
"""


@dataclass(frozen=True)
class EchoOptions:
    greeting: str
    url: str
    repeat: int = 1


class EchoTarget:
    """Deploys by writing the greeting into a file; serves nothing of its own (the test's
    HTTP server stands in for where it would serve)."""

    name = "echo"

    def __init__(self, config: Config, environment: Environment, options: EchoOptions) -> None:
        self.folder = config.root / ".shipyard" / environment.name
        self.options = options

    def preflight(self) -> None:
        pass

    def preflight_deploy(self) -> None:
        pass

    def plan_deploy(self, artifact: str | None, call: Call) -> DeployPlan:
        number = len(self.releases(call)) + 1
        action = f"write {self.options.greeting!r} x{self.options.repeat} as v{number}"
        return DeployPlan("review", self.name, f"v{number}", None, artifact, actions=(action,))

    def deploy(self, plan: DeployPlan, call: Call) -> Made:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{plan.release}.txt").write_text(
            self.options.greeting * self.options.repeat
        )
        call.say(f"wrote {plan.release}")
        return Made(plan.release)

    def health(self, made: Made, call: Call) -> None:
        call.say(f"{made.release} is written")

    def alive(self) -> bool:
        return True

    def smoke_check(self) -> SmokeCheck:
        return SmokeCheck(self.options.url, 200, None, 5.0)

    def commit(self, plan: DeployPlan, made: Made, call: Call) -> None:
        call.say(f"{made.release} is current")

    def restore(self, plan: DeployPlan, made: Made, call: Call) -> Made | None:
        return None

    def releases(self, call: Call) -> list[Release]:
        found = sorted(self.folder.glob("v*.txt")) if self.folder.is_dir() else []
        return [Release(path.stem, ReleaseStatus.COMPLETE) for path in found]

    def plan_rollback(self, to: str | None, call: Call) -> RollbackPlan:
        return RollbackPlan("review", self.name, None, None, "nothing to roll back to")

    def rollback(self, plan: RollbackPlan, call: Call) -> Made:
        return Made()

    def commit_rollback(self, plan: RollbackPlan, made: Made, call: Call) -> None:
        pass

    def undo_rollback(self, plan: RollbackPlan, made: Made, call: Call) -> Made | None:
        return None

    def status(self, call: Call) -> Status:
        return Status("review", self.name, None)


def make_echo(config: Config, environment: Environment, options: Mapping[str, Any]) -> EchoTarget:
    return EchoTarget(config, environment, EchoOptions(**options))


ECHO = TargetKind(
    options={"greeting": text("a greeting"), "url": text("a URL"), "repeat": integer(1, 3)},
    make=make_echo,
    required={"greeting": "something to say", "url": "where it is served"},
)


@pytest.fixture
def echo_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(targets.TARGETS, "echo", ECHO)


@pytest.fixture
def served() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering 200, standing for what the target serves."""

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def plain(redactor: Redactor) -> PlainConsole:
    return PlainConsole(io.StringIO(), live_output=True)


@pytest.fixture(autouse=True)
def in_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # errors name the file relative to the working directory


def project(tmp_path: Path, options: str) -> Config:
    (tmp_path / "shipyard.yaml").write_text(CONFIG.format(options=options))
    return load_config(tmp_path / "shipyard.yaml")


def refusal(config: Config) -> str:
    with pytest.raises(ConfigError) as caught:
        targets.check(config)
    return caught.value.message


def test_the_config_keeps_a_targets_options_as_written_without_knowing_the_target(tmp_path):
    config = project(tmp_path, "    greeting: hi\n    repeat: 2")
    assert config.environments["review"].options == {"greeting": "hi", "repeat": 2}
    assert refusal(config) == (  # not registered: the registry says so, with the place
        "shipyard.yaml:6: environments.review.target: unknown target 'echo'"
        " (expected one of: local, fly)"
    )


@pytest.mark.usefixtures("echo_registered")
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            "    greeting: hi\n    url: x\n    repeat: 9",
            "shipyard.yaml:9: environments.review.repeat: expected an integer from 1 to 3, got 9",
        ),
        (
            "    greeting: hi\n    url: x\n    repaet: 2",
            "shipyard.yaml:9: environments.review.repaet: unknown key for target 'echo'"
            " (did you mean 'repeat'?)",
        ),
        (
            "    url: x",
            "shipyard.yaml:5: environments.review: missing required key 'greeting'"
            " (target 'echo' needs something to say)",
        ),
        (
            "    greeting: hi\n    url: x\n    port: 8080",
            "shipyard.yaml:9: environments.review.port: unknown key for target 'echo'"
            " (expected one of: target, start, env, pass_env, smoke, max_unpacked_mib,"
            " max_archive_members, greeting, url, repeat)",
        ),
    ],
)
def test_its_options_are_checked_with_the_configs_own_errors(tmp_path, options, message):
    assert refusal(project(tmp_path, options)) == message


@pytest.mark.usefixtures("echo_registered")
def test_it_deploys_through_the_real_pipeline(tmp_path, served):
    config = project(tmp_path, f"    greeting: hi\n    url: {served}\n    repeat: 2")
    targets.check(config)
    finished = deploy(config, "review", command="inv deploy.review", reporter=plain)
    assert finished.verdict.outcome is Outcome.OK, finished.verdict
    assert (tmp_path / ".shipyard" / "review" / "v1.txt").read_text() == "hihi"
    record = json.loads(finished.run.bundle.run_record_path(finished.run.run_id).read_text())
    steps = [(step["name"], step["status"]) for step in record["steps"]]
    assert steps == [("Build application", "ok"), ("Deploy", "ok"), ("Smoke review", "ok")]
    assert (record["deploy"]["target"], record["deploy"]["release"]) == ("echo", "v1")
