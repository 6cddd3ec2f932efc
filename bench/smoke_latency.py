"""Smoke latency: a server becomes ready after a delay; how long after that does Shipyard's
smoke (`shipyard.smoke.probe`, the loop every deploy, rollback and `inv smoke` runs) pass?

Two kinds of late server, each a real process on 127.0.0.1: one that starts listening only
after the delay (the probe sees connection refused until then), and one that listens at once
but answers 503 until the delay has passed. The server notes the instant it became ready on
the system-wide monotonic clock; the probe's passing answer is timed on the same clock. The
delays are spread over 1-3 s so that readiness falls at every phase of the retry schedule.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from common import Measurement, ms

from shipyard.server import free_port
from shipyard.smoke import SmokeCheck, probe

TARGET_SECONDS = 0.3
LATE_SERVER = """
import http.server, sys, time

kind, delay, port = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
ready_at = time.monotonic() + delay


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if time.monotonic() >= ready_at else 503)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


if kind == "listen":
    time.sleep(delay)
server = http.server.HTTPServer(("127.0.0.1", port), Handler)
ready_at = time.monotonic() if kind == "listen" else ready_at
print(ready_at, flush=True)
server.serve_forever()
"""
KINDS = {"listen": "listens only after the delay", "503": "answers 503 until the delay"}


def smoke_latency(kind: str, delay: float) -> float:
    """Seconds from the server being ready to the probe passing."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", LATE_SERVER, kind, str(delay), str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        check = SmokeCheck(f"http://127.0.0.1:{port}/", timeout=delay + 10)
        began = time.monotonic()
        result = probe(check, say=lambda _: None, alive=lambda: server.poll() is None)
        passed = began + result.attempts[-1].elapsed
        if not result.ok:
            raise RuntimeError(f"smoke of the {kind} server failed: {result.reason}")
        ready = float(server.stdout.readline()) if server.stdout else passed
    finally:
        server.kill()
        server.communicate()
    return passed - ready


def run(quick: bool) -> list[Measurement]:
    runs = 1 if quick else 7
    low, high = (0.2, 0.5) if quick else (1.0, 3.0)
    delays = [low + (high - low) * (i + 0.5) / runs for i in range(runs)]  # spread evenly
    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for delay in delays:  # the kinds interleaved, so drift hits both
        for kind, found in latencies.items():
            found.append(smoke_latency(kind, delay))
    return [_measurement(kind, found, delays) for kind, found in latencies.items()]


def _measurement(kind: str, latencies: list[float], delays: list[float]) -> Measurement:
    median = statistics.median(latencies)
    return Measurement(
        name=f"smoke latency ({kind})",
        metric=f"ready to smoke passing / the 300 ms target; server {KINDS[kind]}",
        ratios=[latency / TARGET_SECONDS for latency in latencies],
        target=f"< {ms(TARGET_SECONDS)} from ready to pass",
        holds=median < TARGET_SECONDS,
        figures={
            "median": ms(median),
            "max": ms(max(latencies)),
            "delays": f"{min(delays):.1f}-{max(delays):.1f} s",
        },
    )
