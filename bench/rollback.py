"""Rollback latency and downtime on the embedded target (`target: local`, the example app).

Latency: the time from launching `inv rollback` to the release rolled back to answering 200
with its own page (`release=vN`), seen by a client polling every 2 ms. Its floor is what no
runner can beat: the app's own start time (launching `python3 -m webapp --port P` in the same
release folder until its first 200, seen by the same client) plus one probe (one GET against
the running app). The repetitions roll back and forth (`--to v2`, `--to v1`, ...), each
paired with a floor measurement right after it, so drift hits both.

Downtime: a client polling at 50 requests per second throughout a deploy (v2 -> v3) and
throughout a rollback (v3 -> v2) counts the requests that failed (refused, reset, non-200).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from common import BIN, REPO, Measurement, alternate, bench_env, ms, project

from shipyard.server import free_port

CONFIG = """
version: 1
agent: bench
steps:
  build: {{run: "python3 app/build.py --out dist", artifact: "dist/webapp-*.tar.gz"}}
environments:
  staging:
    target: local
    start: python3 -m webapp --port {{port}}
    port: {port}
    smoke: {{path: /, expect_status: 200, timeout: 30s}}
"""
FAST_POLL_SECONDS = 0.002
STEADY_INTERVAL = 1 / 50  # the downtime client: 50 requests per second
REQUEST_TIMEOUT = 2.0
SETTLE_SECONDS = 0.3  # the downtime client runs this long before and after the command
WHERE_THE_TIME_GOES = (
    "Phase timing of one `inv rollback` (wrappers around its functions): Python with the"
    " invoke and Shipyard imports takes 140-190 ms before anything happens (invoke about"
    " 90 ms of it; see start-up); the plan, the lock and the sha256 check of the release's"
    " files about 10 ms; stopping the old server 20-30 ms (the app exits about 25 ms after"
    " SIGTERM); then the new app's own start, the floor. The ratio is mostly the start-up of"
    " the `inv` process, which a user pays for any command."
)
ZERO_DOWNTIME = (
    "Shipyard stops the old server (SIGTERM to its group), then starts the new release on"
    " the same port and smokes it: between the old socket closing and the new one listening,"
    " connections are refused. Zero failed requests would take the new release listening"
    " before the old one stops: start it on a second port, smoke it there, then switch a"
    " local proxy (or the load balancer) to it and let the old server drain; or hand the"
    " listening socket over (systemd-style socket activation, or SO_REUSEPORT with the old"
    " server closing its listener only once the new one accepts, then draining its requests)."
)


def get(port: int) -> tuple[int | None, str]:
    """One GET /: (status, body), or (None, the error) when no answer came."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    except OSError as error:
        return None, type(error).__name__
    finally:
        connection.close()


def first_answer(port: int, release: str, began: float, process: subprocess.Popen[str]) -> float:
    """Seconds from `began` until `release` answers 200 on `port` (`process` serves it)."""
    return watch(port, release, began, failed=lambda: process.poll() is not None).up


@dataclass(frozen=True)
class Switch:
    """What a client polling every 2 ms saw, in seconds from launching the command."""

    gone: float  # the first request the old release did not answer with 200
    up: float  # the first 200 from the new release

    @property
    def gap(self) -> float:
        return self.up - self.gone


def watch(
    port: int, release: str, began: float, timeout: float = 30.0, *, failed: Callable[[], bool]
) -> Switch:
    """Poll every 2 ms until `release` answers 200; stop early when `failed()` says it won't."""
    gone: float | None = None
    while True:
        status, body = get(port)
        now = time.perf_counter() - began
        if status == 200 and f"release={release}<" in body:
            return Switch(now if gone is None else gone, now)
        if status != 200 and gone is None:
            gone = now
        if now > timeout or failed():
            raise RuntimeError(f"{release} did not answer on port {port} ({now:.1f}s)")
        time.sleep(FAST_POLL_SECONDS)


@dataclass
class SteadyClient:
    """Polls at 50 requests per second in a thread, counting the failed requests."""

    port: int
    total: int = 0
    failed: int = 0
    failure_times: list[float] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def poll(self) -> None:
        began = time.perf_counter()
        while not self.done.is_set():
            status, _ = get(self.port)
            self.total += 1
            if status != 200:
                self.failed += 1
                self.failure_times.append(time.perf_counter())
            next_tick = began + self.total * STEADY_INTERVAL
            self.done.wait(max(0.0, next_tick - time.perf_counter()))

    @property
    def outage(self) -> float:
        """Seconds from the first failed request to the last (0 when at most one failed)."""
        return self.failure_times[-1] - self.failure_times[0] if self.failure_times else 0.0


class Staging:
    """A throwaway project with the example app, deployed to its own port."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        shutil.copytree(
            REPO / "examples" / "webapp", root / "app", ignore=shutil.ignore_patterns("__pycache__")
        )
        self.state = root / ".shipyard" / "staging"
        self.env = bench_env()

    def inv(self, *args: str) -> None:
        argv = [str(BIN / "inv"), *args]
        done = subprocess.run(
            argv, cwd=self.root, env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"inv {' '.join(args)} exited {done.returncode}: {done.stdout}")

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(BIN / "inv"), *args],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def deploy(self, version: str) -> None:
        (self.root / "app" / "VERSION").write_text(version + "\n")
        self.inv("deploy.staging")

    def current(self) -> str:
        return (self.state / "current").readlink().name

    def release_dir(self, release: str) -> Path:
        return self.state / "releases" / release

    def stop(self) -> None:
        """Kill the process group of the server Shipyard started, if one runs."""
        with contextlib.suppress(OSError, ValueError, KeyError):
            pid = json.loads((self.state / "server" / "state.json").read_text())["pid"]
            os.killpg(pid, signal.SIGKILL)


def timed_rollback(staging: Staging, to: str) -> Switch:
    """What a client saw from launching `inv rollback --to` to `to` answering 200."""
    began = time.perf_counter()
    process = staging.spawn("rollback", "--to", to)
    try:
        return watch(staging.port, to, began, failed=lambda: process.poll() not in (None, 0))
    finally:
        output, _ = process.communicate(timeout=60)
        if process.returncode != 0:
            raise RuntimeError(f"inv rollback --to {to} exited {process.returncode}: {output}")


@dataclass(frozen=True)
class Floor:
    start: float  # launch to first 200
    probe: float  # one GET against the running app

    @property
    def total(self) -> float:
        return self.start + self.probe


def app_floor(staging: Staging, release: str) -> Floor:
    """Start the release's app by hand on a free port, as Shipyard would, and time it."""
    port = free_port()
    env = {**staging.env, "SHIPYARD_RELEASE": release, "PORT": str(port)}
    began = time.perf_counter()
    process = subprocess.Popen(
        ["python3", "-m", "webapp", "--port", str(port)],
        text=True,
        cwd=staging.release_dir(release),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        start = first_answer(port, release, began, process)
        probe_began = time.perf_counter()
        if get(port)[0] != 200:
            raise RuntimeError(f"the app of {release} stopped answering")
        return Floor(start, time.perf_counter() - probe_began)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def downtime(staging: Staging, *args: str) -> SteadyClient:
    """Run `inv ARGS` while a client polls at 50 requests per second; its counts."""
    client = SteadyClient(staging.port)
    thread = threading.Thread(target=client.poll, daemon=True)
    thread.start()
    time.sleep(SETTLE_SECONDS)
    try:
        staging.inv(*args)
        time.sleep(SETTLE_SECONDS)
    finally:
        client.done.set()
        thread.join()
    return client


def run(quick: bool) -> list[Measurement]:
    runs, cycles = (1, 1) if quick else (9, 3)
    port = free_port()
    with project(CONFIG.format(port=port)) as root:
        staging = Staging(root, port)
        try:
            staging.deploy("1.0.0")
            staging.deploy("2.0.0")
            switches, floors = _latency(staging, runs)
            deploys, rollbacks = _downtime(staging, cycles)
        finally:
            staging.stop()
    return [_measurement(switches, floors, deploys, rollbacks)]


def _latency(staging: Staging, runs: int) -> tuple[list[Switch], list[Floor]]:
    """Rollbacks back and forth between v1 and v2 (the first, unrecorded, is v2 -> v1), each
    followed by the floor of the release it went to."""
    switches: list[Switch] = []
    floors: list[Floor] = []

    def subject() -> float:
        switches.append(timed_rollback(staging, "v2" if staging.current() == "v1" else "v1"))
        return switches[-1].up

    def baseline() -> float:
        floors.append(app_floor(staging, staging.current()))
        return floors[-1].total

    alternate(runs, subject, baseline)
    return switches[1:], floors[1:]  # the first of each was the warm-up


def _downtime(staging: Staging, cycles: int) -> tuple[list[SteadyClient], list[SteadyClient]]:
    """`cycles` times: a deploy of a new version, then a rollback to the one before."""
    if staging.current() != "v2":
        staging.inv("rollback", "--to", "v2")
    deploys, rollbacks = [], []
    for cycle in range(cycles):
        (staging.root / "app" / "VERSION").write_text(f"3.0.{cycle}\n")
        deploys.append(downtime(staging, "deploy.staging"))
        rollbacks.append(downtime(staging, "rollback"))
    return deploys, rollbacks


def _counts(clients: list[SteadyClient]) -> str:
    failed = sum(client.failed for client in clients)
    total = sum(client.total for client in clients)
    outage = statistics.median(client.outage for client in clients)
    runs = "1 run" if len(clients) == 1 else f"{len(clients)} runs"
    return f"{failed} of {total} ({runs}; failures span {ms(outage)} median)"


def _measurement(
    switches: list[Switch],
    floors: list[Floor],
    deploys: list[SteadyClient],
    rollbacks: list[SteadyClient],
) -> Measurement:
    def median(values: Iterable[float]) -> str:
        return ms(statistics.median(values))

    return Measurement(
        name="rollback latency",
        metric="`inv rollback --to vN` launch to vN answering 200 / (vN's own start + one probe)",
        ratios=[switch.up / floor.total for switch, floor in zip(switches, floors, strict=True)],
        target="",
        holds=None,
        figures={
            "latency": median(switch.up for switch in switches),
            "floor": median(floor.total for floor in floors),
            "app start": median(floor.start for floor in floors),
            "probe": median(floor.probe for floor in floors),
            "old release stops answering at": median(switch.gone for switch in switches),
            "refused for": median(switch.gap for switch in switches),
            "failed requests at 50/s: deploy": _counts(deploys),
            "rollback": _counts(rollbacks),
        },
        note=f"{WHERE_THE_TIME_GOES} {ZERO_DOWNTIME}",
    )
