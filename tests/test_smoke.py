from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from tenacity import RetryCallState

from shipyard.smoke import SmokeCheck, probe, retry_wait


@contextmanager
def serving(
    status: int | Callable[[], int] = 200, body: bytes = b"hello", *, ready_after: float = 0.0
) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 that starts listening after `ready_after` seconds;
    `status` may be a function, asked at each request."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status() if callable(status) else status)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    holder: list[http.server.HTTPServer] = []

    def start() -> None:
        time.sleep(ready_after)
        server = http.server.HTTPServer(("127.0.0.1", port), Handler)
        holder.append(server)
        server.serve_forever(poll_interval=0.05)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        while thread.is_alive() and not holder:
            time.sleep(0.01)
        for server in holder:
            server.shutdown()
            server.server_close()


def test_passes_once_the_server_is_ready_and_reports_every_attempt():
    lines: list[str] = []
    with serving(ready_after=0.4) as url:
        result = probe(SmokeCheck(url, timeout=10), say=lines.append)
    assert result.ok
    assert len(result.attempts) >= 2
    assert "Connection refused" in lines[0]
    assert lines[-1].endswith("-> 200")
    assert result.attempts[-1].elapsed < 0.4 + 1.5  # backoff is capped, not open-ended


def test_wrong_status_fails_after_the_timeout_naming_the_last_answer():
    with serving(status=500) as url:
        result = probe(SmokeCheck(url, timeout=0.6), say=lambda _: None)
    assert not result.ok
    assert "did not answer 200 within 0.6s" in result.reason
    assert "last answer: 500" in result.reason


def test_body_substring_is_checked():
    with serving(body=b"version=1.0.0") as url:
        assert probe(SmokeCheck(url, contains="version=1.0.0", timeout=2), say=lambda _: None).ok
        missing = probe(SmokeCheck(url, contains="version=2", timeout=0.5), say=lambda _: None)
    assert not missing.ok and "body lacks 'version=2'" in missing.reason


def test_a_dead_server_ends_probing_at_once():
    began = time.monotonic()
    result = probe(
        SmokeCheck("http://127.0.0.1:9/", timeout=20), say=lambda _: None, alive=lambda: False
    )
    assert not result.ok
    assert len(result.attempts) == 1
    assert "the server exited" in result.reason
    assert time.monotonic() - began < 10


def test_stop_event_ends_probing():
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    began = time.monotonic()
    result = probe(SmokeCheck("http://127.0.0.1:9/", timeout=30), say=lambda _: None, stop=stop)
    assert not result.ok
    assert time.monotonic() - began < 10
    # stopped, not timed out: the reason does not claim the 30 s went by
    assert "had not answered 200 when the run was stopped" in result.reason
    assert "within 30s" not in result.reason


def waits(url: str, attempts: int = 40, draws: int = 50) -> list[list[float]]:
    """The pauses the probe of `url` would take after each failed attempt, `draws` times over
    (the jitter is random)."""
    wait = retry_wait(url)
    schedule = []
    for attempt in range(1, attempts + 1):
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        schedule.append([wait(state) for _ in range(draws)])
    return schedule


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_on_the_loopback_no_pause_exceeds_a_fifth_of_a_second(host):
    """So a smoke passes within 0.3 s of the server becoming ready, however late that is."""
    schedule = waits(f"http://{host}:8787/")
    assert all(0.05 <= pause <= 0.2 for pauses in schedule for pause in pauses)
    assert min(schedule[0]) < 0.1  # the first retry comes quickly


def test_a_remote_url_backs_off_to_about_a_second():
    schedule = waits("https://webapp-staging.fly.dev/")
    assert all(0.05 <= pause <= 1.05 for pauses in schedule for pause in pauses)
    assert min(schedule[-1]) >= 1.0  # a remote app is not asked more than about once a second
