"""Rollback latency and downtime on the embedded target (`target: local`, the example app), in
its two modes side by side in one run, each in its own throwaway project: direct mode
(`proxy: direct`: the release's server listens on the environment's port itself) and proxy
mode (`proxy: caddy`: Caddy on the port, each release on a private port behind it).

Latency. Each rollback is `inv rollback` (to the previous release) right after a deploy, so in
proxy mode the release rolled back to is running warm and the rollback is one switch of
Caddy's upstream. A client polling every 2 ms sees, for each rollback:
- launch to answer: from launching `inv rollback` to the release rolled back to answering 200
  with its own page (`release=vN`), the `inv` process's Python start-up included;
- in-process: from `plan_rollback` to that answer, in a process that has already imported
  Shipyard and made the target, then does what the command does under its lock:
  `plan_rollback`, `rollback`, the smoke, `commit_rollback` (the last two untimed);
- switch: from the last answer of the release before to the first answer of the new one (to
  within one poll, 2 ms plus a request).
Their floor is what no runner can beat: the app's own start time (launching `python3 -m
webapp --port P` in the same release folder until its first 200, seen by the same client)
plus one probe (one GET against the running app). Each rollback is paired with a floor right
after it, and the modes take turns, so drift hits all alike.

Downtime: a client at 50 requests per second through 5 deploys and 5 rollbacks per mode,
running SETTLE_SECONDS before and after each command, counts the requests that failed
(refused, reset, non-200).

Per-request latency: GET / straight to the serving release's private port against GET /
through Caddy on the environment's port, alternated in one process, a new connection each.
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
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common import BIN, REPO, Measurement, bench_env, ms, project

from shipyard.server import free_port

MODES = ("direct", "caddy")  # the environment's `proxy:` in each project
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
    proxy: {proxy}
    smoke: {{path: /, expect_status: 200, timeout: 30s}}
"""
FAST_POLL_SECONDS = 0.002
STEADY_INTERVAL = 1 / 50  # the downtime client: 50 requests per second
REQUEST_TIMEOUT = 2.0
# The downtime client runs this long before and after each command: at least 50 requests a
# command, so at least 500 through 5 deploys and 5 rollbacks.
SETTLE_SECONDS = 0.5
DOWNTIME_CYCLES = 5
PER_REQUEST_ROUND = 50  # interleaved GETs per ratio of the per-request latency
TARGET_RATIO = 1.0  # issue 16: a rollback to the warm release within the floor
IN_PROCESS = "--in-process-rollback"  # this file run as the in-process rollback's helper

WHERE_THE_TIME_GOES = (
    "Where one `inv rollback` spends its time: Python with the invoke and Shipyard imports,"
    " 140-190 ms before anything happens (invoke about 90 ms of it; see start-up); then the"
    " plan (the sha256 check of the release's files, what runs). Direct mode then stops the"
    " old server (20-30 ms: the app exits about 25 ms after SIGTERM) and starts the new app,"
    " whose own start is the floor. Proxy mode, the previous release running warm, starts"
    " nothing: it smokes that release on its private port, then replaces the upstream"
    " file Caddy reads for each request (one rename)."
)
LAUNCH_NOTE = (
    "Launch to answer cannot come within 1.0x the floor in either mode: the `inv` process's"
    " start-up alone, paid by every command, is longer than the app's whole start."
)
PROXY_IN_PROCESS_NOTE = (
    "Against the target (<= 1.0x the floor): the switch the client sees, from the last answer"
    " of the old release to the first of the warm one, meets it by far (one rename); the"
    " in-process rollback (`plan_rollback` + `rollback`: no Python start-up, no config load,"
    " no lock) is the figure held to it: the plan (the sha256 check of the release's files,"
    " what runs) and the smoke of the warm release on its own port, then the switch; launch to"
    " answer cannot meet it (see the launch line)."
)
DIRECT_IN_PROCESS_NOTE = (
    "Direct mode stops the old server and starts the app within the rollback: in-process it"
    " is the floor and then some, connections refused meanwhile."
)
ZERO_DOWNTIME = (
    "Direct mode stops the old server (SIGTERM to its group), then starts the new release on"
    " the same port: between the old socket closing and the new one listening, connections"
    " are refused. Proxy mode starts the new release beside the old one on a private port and"
    " smokes it there before switching Caddy's upstream; requests in flight finish on the old"
    " upstream, a server out of rotation is stopped only once its connections end, and Caddy"
    " retries an upstream that refuses for up to 5 s: no request fails."
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


@dataclass(frozen=True)
class Switch:
    """What a client polling every 2 ms saw, in seconds from `began`."""

    last_old: float  # the last answer from another release (`began` when there was none)
    up: float  # the first 200 from the release awaited

    @property
    def gap(self) -> float:
        """The switch as the client saw it, to within one poll."""
        return self.up - self.last_old


def watch(
    port: int, release: str, began: float, timeout: float = 30.0, *, failed: Callable[[], bool]
) -> Switch:
    """Poll every 2 ms until `release` answers 200; stop early when `failed()` says it won't."""
    last_old = 0.0
    while True:
        status, body = get(port)
        now = time.perf_counter() - began
        if status == 200 and f"release={release}<" in body:
            return Switch(last_old, now)
        if status == 200:
            last_old = now
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
    """A throwaway project with the example app, deployed to its own port in one mode."""

    def __init__(self, root: Path, port: int, mode: str) -> None:
        self.root = root
        self.port = port
        self.mode = mode
        shutil.copytree(
            REPO / "examples" / "webapp", root / "app", ignore=shutil.ignore_patterns("__pycache__")
        )
        self.state = root / ".shipyard" / "staging"
        self.env = bench_env()
        self.deploys = 0
        self.left_behind: list[str] = []  # processes `inv stop` left running (then killed)

    def inv(self, *args: str) -> None:
        argv = [str(BIN / "inv"), *args]
        done = subprocess.run(
            argv, cwd=self.root, env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"inv {' '.join(args)} exited {done.returncode}: {done.stdout}")

    def spawn(self, *argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            argv,
            cwd=self.root,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def next_version(self) -> None:
        """The app's VERSION, new for the next deploy."""
        self.deploys += 1
        (self.root / "app" / "VERSION").write_text(f"{self.deploys}.0.0\n")

    def deploy(self) -> None:
        self.next_version()
        self.inv("deploy.staging")

    def current(self) -> str:
        return (self.state / "current").readlink().name

    def release_dir(self, release: str) -> Path:
        return self.state / "releases" / release

    def private_port(self) -> int:
        """The port of the serving release's own server (proxy mode)."""
        state = json.loads((self.state / "server" / "state.json").read_text())
        return int(state["servers"][self.current()]["port"])

    def stop(self) -> None:
        """`inv stop`, as a user would (both modes); then any process still working in the
        project is named in `left_behind` and killed."""
        with contextlib.suppress(RuntimeError):
            self.inv("stop", "--env", "staging")
        for pid, command in processes_under(self.root):
            self.left_behind.append(f"pid {pid} `{command}`")
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def processes_under(root: Path) -> list[tuple[int, str]]:
    """(pid, command line) of each process, this one aside, working in a folder under `root`
    (Linux: /proc; elsewhere none are found)."""
    folder = str(root.resolve())
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            cwd = str((entry / "cwd").readlink())
            if int(entry.name) != os.getpid() and (cwd + "/").startswith(folder + "/"):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                found.append((int(entry.name), command))
    return found


@contextlib.contextmanager
def staged(mode: str) -> Iterator[Staging]:
    """A project in `mode` with v1 and v2 deployed (v2 serves; in proxy mode v1 runs warm),
    stopped with `inv stop` on the way out whatever happened."""
    port = free_port()
    with project(CONFIG.format(port=port, proxy=mode)) as root:
        staging = Staging(root, port, mode)
        try:
            staging.deploy()
            staging.deploy()
            yield staging
        finally:
            staging.stop()


@dataclass(frozen=True)
class Timed:
    """One rollback: its latency (from launching `inv`, or from `plan_rollback`) to the
    answer, and what the client saw switch."""

    latency: float
    switch: Switch
    plan: float | None = None  # in-process: `plan_rollback` alone


def launched_rollback(staging: Staging, to: str) -> Timed:
    """`inv rollback`, from its launch to `to` answering 200."""
    began = time.perf_counter()
    process = staging.spawn(str(BIN / "inv"), "rollback")
    try:
        seen = watch(staging.port, to, began, failed=lambda: process.poll() not in (None, 0))
    finally:
        _finish(process, f"inv rollback ({staging.mode} mode)")
    return Timed(seen.up, seen)


def in_process_rollback(staging: Staging, to: str) -> Timed:
    """The rollback made by a helper that has imported Shipyard and made the target: from its
    `plan_rollback` to `to` answering 200 (the helper prints when it began)."""
    helper = staging.spawn(sys.executable, __file__, IN_PROCESS, str(staging.root))
    output = ""
    try:
        _await_ready(helper)
        began = time.perf_counter()
        _send(helper, "go")
        seen = watch(staging.port, to, began, failed=lambda: helper.poll() not in (None, 0))
    finally:
        output = _finish(helper, f"the in-process rollback ({staging.mode} mode)")
    times = json.loads(output.splitlines()[-1])
    return Timed(began + seen.up - times["began"], seen, times["planned"] - times["began"])


def _finish(process: subprocess.Popen[str], what: str) -> str:
    """The output of `process` once it has ended (killed after 60 s); RuntimeError with it
    when it failed."""
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{what} exited {process.returncode}: {output}")
    return output


def _await_ready(helper: subprocess.Popen[str]) -> None:
    """Read the helper's output up to its `ready`; RuntimeError with it when it ends first."""
    said = []
    for line in iter(helper.stdout.readline, "") if helper.stdout else ():
        if line == "ready\n":
            return
        said.append(line)
    raise RuntimeError(f"the in-process helper ended before it was ready: {''.join(said)}")


def _send(helper: subprocess.Popen[str], line: str) -> None:
    if helper.stdin is None:
        raise RuntimeError("the in-process helper has no stdin")
    helper.stdin.write(line + "\n")
    helper.stdin.flush()


def _rollback_in_process(root: Path) -> None:
    """The helper: the target made, then on `go` from stdin what `inv rollback` does under
    its lock; prints the perf_counter (system-wide on Linux) at which the plan began and
    ended."""
    from shipyard.config import load_config
    from shipyard.operation import check_serving
    from shipyard.targets import Call, create

    config = load_config(root / "shipyard.yaml")
    target = create(config, config.environment("staging"))
    print("ready", flush=True)
    sys.stdin.readline()
    began = time.perf_counter()
    plan = target.plan_rollback(None, Call())
    planned = time.perf_counter()
    made = target.rollback(plan, Call())
    check_serving(target, made, Call())
    target.commit_rollback(plan, made, Call())
    print(json.dumps({"began": began, "planned": planned}), flush=True)


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
        start = watch(port, release, began, failed=lambda: process.poll() is not None).up
        probe_began = time.perf_counter()
        if get(port)[0] != 200:
            raise RuntimeError(f"the app of {release} stopped answering")
        return Floor(start, time.perf_counter() - probe_began)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class Figures:
    """What one mode measured."""

    launched: list[tuple[Timed, Floor]] = field(default_factory=list)
    in_process: list[tuple[Timed, Floor]] = field(default_factory=list)
    deploys: list[SteadyClient] = field(default_factory=list)
    rollbacks: list[SteadyClient] = field(default_factory=list)


Rollback = Callable[[Staging, str], Timed]


def deploy_then_rollback(staging: Staging, rollback: Rollback) -> tuple[Timed, Floor]:
    """A deploy, then a timed rollback to the release before it (running warm in proxy mode),
    then the floor of that release."""
    previous = staging.current()
    staging.deploy()
    timed = rollback(staging, previous)
    if staging.current() != previous:
        raise RuntimeError(f"the rollback went to {staging.current()}, not {previous}")
    return timed, app_floor(staging, previous)


def latency(stagings: list[Staging], runs: int) -> dict[str, Figures]:
    """`runs` rounds (after one unrecorded warm-up) of a launched and an in-process rollback
    in each mode in turn, each paired with its floor."""
    figures = {staging.mode: Figures() for staging in stagings}
    for round_ in range(runs + 1):
        for staging in stagings:
            launched = deploy_then_rollback(staging, launched_rollback)
            in_process = deploy_then_rollback(staging, in_process_rollback)
            if round_:
                figures[staging.mode].launched.append(launched)
                figures[staging.mode].in_process.append(in_process)
    return figures


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


def count_downtime(staging: Staging, cycles: int, figures: Figures) -> None:
    """`cycles` times: a deploy of a new version, then `inv rollback` to the one before."""
    for _ in range(cycles):
        staging.next_version()
        figures.deploys.append(downtime(staging, "deploy.staging"))
        figures.rollbacks.append(downtime(staging, "rollback"))


def per_request(staging: Staging, requests: int) -> list[tuple[float, float]]:
    """`requests` pairs of (GET / on the serving release's private port, GET / through Caddy),
    which goes first alternating."""
    private = staging.private_port()
    pairs = []
    for number in range(requests):
        if number % 2:
            proxied, direct = _timed_get(staging.port), _timed_get(private)
        else:
            direct, proxied = _timed_get(private), _timed_get(staging.port)
        pairs.append((direct, proxied))
    return pairs


def _timed_get(port: int) -> float:
    began = time.perf_counter()
    status, body = get(port)
    if status != 200:
        raise RuntimeError(f"GET / on port {port}: {status or body}")
    return time.perf_counter() - began


def run(quick: bool) -> list[Measurement]:
    runs, cycles, requests = (1, 1, 20) if quick else (9, DOWNTIME_CYCLES, 500)
    with contextlib.ExitStack() as stack:
        stagings = [stack.enter_context(staged(mode)) for mode in MODES]
        figures = latency(stagings, runs)
        for staging in stagings:
            count_downtime(staging, cycles, figures[staging.mode])
        pairs = per_request(next(s for s in stagings if s.mode == "caddy"), requests)
    measurements = []
    for staging in stagings:
        measurements += _rollback_measurements(staging, figures[staging.mode])
    return [*measurements, _per_request_measurement(pairs)]


def _rollback_measurements(staging: Staging, figures: Figures) -> list[Measurement]:
    mode = "proxy mode" if staging.mode == "caddy" else "direct mode"
    launched, in_process = figures.launched, figures.in_process
    left = "; ".join(staging.left_behind) or "nothing"
    launch = Measurement(
        name=f"rollback latency, {mode}",
        metric="`inv rollback` launch to the previous release answering 200 / floor",
        ratios=_ratios(launched),
        target="",
        holds=None,
        figures={
            **_latency_figures(launched),
            "failed requests at 50/s: deploy": _counts(figures.deploys),
            "rollback": _counts(figures.rollbacks),
            "left running after `inv stop`": left,
        },
        note=f"{WHERE_THE_TIME_GOES} {LAUNCH_NOTE} {ZERO_DOWNTIME}",
    )
    proxy = staging.mode == "caddy"
    inside = Measurement(
        name=f"rollback in-process, {mode}",
        metric="`plan_rollback` + `rollback` in a running process to the answer / floor",
        ratios=_ratios(in_process),
        target=f"<= {TARGET_RATIO:.1f}x floor (warm release)" if proxy else "",
        holds=statistics.median(_ratios(in_process)) <= TARGET_RATIO if proxy else None,
        figures=_latency_figures(in_process),
        note=PROXY_IN_PROCESS_NOTE if proxy else DIRECT_IN_PROCESS_NOTE,
    )
    return [launch, inside]


def _ratios(timings: list[tuple[Timed, Floor]]) -> list[float]:
    return [timed.latency / floor.total for timed, floor in timings]


def _latency_figures(timings: list[tuple[Timed, Floor]]) -> dict[str, str]:
    def median(values: Iterable[float]) -> str:
        return ms(statistics.median(values))

    switch_ratio = statistics.median(t.switch.gap / f.total for t, f in timings)
    plans = [timed.plan for timed, _ in timings if timed.plan is not None]
    return {
        "latency": median(timed.latency for timed, _ in timings),
        **({"of which the plan": median(plans)} if plans else {}),
        "switch seen by the client": median(timed.switch.gap for timed, _ in timings),
        "switch / floor": f"{switch_ratio:.2f}x",
        "floor": median(floor.total for _, floor in timings),
        "app start": median(floor.start for _, floor in timings),
        "probe": median(floor.probe for _, floor in timings),
    }


def _counts(clients: list[SteadyClient]) -> str:
    failed = sum(client.failed for client in clients)
    total = sum(client.total for client in clients)
    outage = statistics.median(client.outage for client in clients)
    runs = "1 run" if len(clients) == 1 else f"{len(clients)} runs"
    return f"{failed} of {total} ({runs}; failures span {ms(outage)} median)"


def _per_request_measurement(pairs: list[tuple[float, float]]) -> Measurement:
    rounds = [pairs[i : i + PER_REQUEST_ROUND] for i in range(0, len(pairs), PER_REQUEST_ROUND)]
    direct, proxied = [d for d, _ in pairs], [p for _, p in pairs]
    return Measurement(
        name="proxy latency per request",
        metric=f"GET / through Caddy / straight to the release's port (median of each"
        f" {PER_REQUEST_ROUND}, interleaved)",
        ratios=[_median_ratio(chunk) for chunk in rounds],
        target="",
        holds=None,
        figures={
            "direct median": ms(statistics.median(direct)),
            "through Caddy median": ms(statistics.median(proxied)),
            "added median": ms(statistics.median(proxied) - statistics.median(direct)),
            "direct p95": ms(_p95(direct)),
            "through Caddy p95": ms(_p95(proxied)),
            "added p95": ms(_p95(proxied) - _p95(direct)),
            "requests": f"{len(pairs)} each",
        },
        note="A new connection per request on both sides, as the downtime client makes them.",
    )


def _median_ratio(pairs: list[tuple[float, float]]) -> float:
    return statistics.median(p for _, p in pairs) / statistics.median(d for d, _ in pairs)


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


if __name__ == "__main__" and sys.argv[1:2] == [IN_PROCESS]:
    _rollback_in_process(Path(sys.argv[2]))
