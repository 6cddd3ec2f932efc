"""A server gets only what it needs: the base set, `pass_env`, `env:` and Shipyard's own
variables, never the deployer's credentials; its log is its owner's alone (0600)."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import stat
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from shipyard import artifact_smoke, server
from shipyard.config import Environment, Smoke, load_config
from shipyard.errors import ConfigError, ExitCode
from shipyard.targets.local.serving import ServerState
from shipyard.targets.local.store import ReleaseStore

CREDENTIALS = ("FLY_API_TOKEN", "GITHUB_TOKEN", "MY_SECRET")
# Writes its environment to $ENV_DUMP (a path the deployer passes), then serves HTTP on $PORT.
DUMP_AND_SERVE = (
    "import http.server, json, os;"
    " json.dump(dict(os.environ), open(os.environ['ENV_DUMP'] + '.tmp', 'w'));"
    " os.replace(os.environ['ENV_DUMP'] + '.tmp', os.environ['ENV_DUMP']);"
    " http.server.test(http.server.SimpleHTTPRequestHandler, port=int(os.environ['PORT']),"
    " bind='127.0.0.1')"
)


@pytest.fixture
def deployer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The deployer's environment: credentials with random values, and a variable to pass."""
    values = {name: secrets.token_hex(16) for name in CREDENTIALS}
    values["DATABASE_URL"] = f"postgres://app:{secrets.token_hex(8)}@db/app"
    values["ENV_DUMP"] = str(tmp_path / "environ.json")
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    return values


def test_the_local_server_gets_no_credential_of_the_deployer(
    tmp_path: Path, deployer: dict[str, str]
) -> None:
    environment = Environment(
        name="staging",
        target="local",
        start=f"{sys.executable} -c {shlex.quote(DUMP_AND_SERVE)}",
        env={"APP_ENV": "staging"},
        pass_env=("ENV_DUMP", "DATABASE_URL", "NOT_SET_ANYWHERE"),
    )
    store = ReleaseStore(tmp_path / ".shipyard" / "staging")
    store.release_dir("v1").mkdir(parents=True)
    state = ServerState(environment, server.free_port(), store)
    pid = state.start("v1")["pid"]
    try:
        dumped(Path(deployer["ENV_DUMP"]), pid)  # it runs: /proc shows its own environment
        raw, seen = proc_environ(pid)
        assert not set(CREDENTIALS) & seen.keys()
        assert not [name for name in CREDENTIALS if deployer[name].encode() in raw]
        assert seen["DATABASE_URL"] == deployer["DATABASE_URL"]  # named in pass_env
        assert "NOT_SET_ANYWHERE" not in seen  # named, but not set: simply absent
        assert seen["APP_ENV"] == "staging"
        assert seen["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
        assert (seen["PORT"], seen["SHIPYARD_RELEASE"]) == (str(state.port), "v1")
        assert seen["HOST"] == "127.0.0.1"
        assert seen["SHIPYARD_ENV"] == "staging"
        assert mode(state.log("v1")) == 0o600
    finally:
        server.stop(pid, grace=1)


def test_the_artifact_smoke_server_gets_pass_env_but_no_credential_and_no_env(
    tmp_path: Path, deployer: dict[str, str]
) -> None:
    source = tmp_path / "app.py"
    source.write_text(DUMP_AND_SERVE.replace("; ", "\n"))
    archive = tmp_path / "app.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="app.py")
    environment = Environment(
        name="staging",
        target="local",
        start=f"{sys.executable} app.py",
        env={"APP_ENV": "staging"},
        pass_env=("ENV_DUMP", "DATABASE_URL"),
        smoke=Smoke(path="/", timeout=15),
    )
    artifact_smoke.smoke_artifact(environment, archive, lambda _line: None, threading.Event())
    seen = json.loads(Path(deployer["ENV_DUMP"]).read_text())
    assert not set(CREDENTIALS) & seen.keys()
    assert seen["DATABASE_URL"] == deployer["DATABASE_URL"]
    assert "APP_ENV" not in seen  # the smoke runs without the environment's env:
    assert (seen["SHIPYARD_RELEASE"], "SHIPYARD_ENV" in seen) == ("artifact", False)


def test_the_environment_is_the_base_set_then_pass_env_then_env_then_shipyards() -> None:
    base = {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "LC_TIME": "C",
        "SHELL": "/bin/zsh",
        "GITHUB_TOKEN": "t" * 20,
        "APP_ENV": "from-deployer",
        "PORT": "1",
    }
    built = server.environment(
        base,
        port=8787,
        release="v3",
        env={"APP_ENV": "staging", "SHIPYARD_RELEASE": "mine"},
        pass_env=("APP_ENV", "MISSING"),
    )
    assert built == {
        "HOST": "127.0.0.1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin",
        "HOME": "/home/me",
        "LC_TIME": "C",
        "APP_ENV": "staging",
        "PORT": "8787",
        "SHIPYARD_RELEASE": "v3",
    }


def test_host_is_loopback_unless_the_deployer_passes_it_or_env_sets_it() -> None:
    def host(
        base: dict[str, str], pass_env: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> str:
        return server.environment(base, port=1, release="v1", pass_env=pass_env, env=env)["HOST"]

    assert host({"HOST": "ci-box"}) == "127.0.0.1"  # the deployer's own HOST is not passed
    assert host({"HOST": "0.0.0.0"}, pass_env=("HOST",)) == "0.0.0.0"
    assert host({}, env={"HOST": "::1"}) == "::1"


def test_a_server_log_is_created_0600_and_an_older_one_made_so(tmp_path: Path) -> None:
    fresh, old = tmp_path / "server" / "v1.log", tmp_path / "v0.log"
    old.write_text("from before\n")
    old.chmod(0o644)
    for log in (fresh, old):
        pid = server.start("echo up", cwd=tmp_path, env=os.environ, log_path=log)
        deadline = time.monotonic() + 10
        while server.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert mode(log) == 0o600
        assert log.read_text().endswith("up\n")
    assert old.read_text() == "from before\nup\n"


def test_pass_env_loads_as_a_tuple_of_names(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[DATABASE_URL, _X1]")
    assert load_config(path).environments["staging"].pass_env == ("DATABASE_URL", "_X1")


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        (
            '["1BAD"]',
            "pass_env[0]: expected an environment variable name (letters, digits and '_',"
            " not starting with a digit), got '1BAD'",
        ),
        ("DATABASE_URL", "pass_env: expected a list of environment variable names, got"),
        ("[A, A]", "pass_env[1]: already listed as environments.staging.pass_env[0]"),
    ],
)
def test_a_bad_pass_env_is_one_line_naming_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: str, problem: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, names)
    with pytest.raises(ConfigError) as caught:
        load_config(Path("shipyard.yaml"))
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.message.startswith(f"shipyard.yaml:6: environments.staging.{problem}")
    assert "\n" not in caught.value.message


def write_config(folder: Path, pass_env: str) -> Path:
    path = folder / "shipyard.yaml"
    path.write_text(
        "version: 1\n"
        "environments:\n"
        "  staging:\n"
        "    target: local\n"
        "    start: ./serve --port {port}\n"
        f"    pass_env: {pass_env}\n"
    )
    return path


def dumped(path: Path, pid: int) -> dict[str, str]:
    """The environment the server wrote to `path`, once it has."""
    deadline = time.monotonic() + 15
    while not path.exists() and server.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    seen: dict[str, str] = json.loads(path.read_text())
    return seen


def proc_environ(pid: int) -> tuple[bytes, dict[str, str]]:
    """/proc/<pid>/environ, what the process was started with: as read, and as a mapping."""
    raw = (Path("/proc") / str(pid) / "environ").read_bytes()
    pairs = (entry.decode().split("=", 1) for entry in raw.split(b"\0") if entry)
    return raw, {name: value for name, value in pairs}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)
