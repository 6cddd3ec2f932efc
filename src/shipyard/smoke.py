"""The HTTP smoke probe: GET a URL until it answers as expected or time runs out (tenacity)."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tenacity import (
    Retrying,
    retry_if_result,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

_MAX_BODY = 1 << 20
_MAX_REQUEST_SECONDS = 5.0
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_FIRST_WAIT = 0.05
# A refused connection on this machine costs microseconds, so retrying often is free; and the
# cap bounds how long a smoke lags behind a server that just became ready (target: < 0.3 s).
_MAX_WAIT_LOOPBACK = 0.15
_MAX_WAIT_REMOTE = 1.0  # a remote app is asked at most about once a second
_JITTER = 0.05


@dataclass(frozen=True)
class SmokeCheck:
    url: str
    expect_status: int = 200
    contains: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class Answer:
    """One attempt: the status that came back, or the error instead."""

    number: int
    elapsed: float  # seconds since probing began
    status: int | None = None
    error: str | None = None
    body_matches: bool = True

    def passes(self, check: SmokeCheck) -> bool:
        return self.status == check.expect_status and self.body_matches

    def describe(self, check: SmokeCheck) -> str:
        if self.status is None:
            return f"error: {self.error}"
        missing = "" if self.body_matches else f", body lacks {check.contains!r}"
        return f"{self.status}{missing}"


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    attempts: tuple[Answer, ...]
    reason: str


class _stop_unless(stop_base):  # tenacity names its stop conditions in lower case
    """Stop retrying as soon as `alive()` says the server is gone: no answer will come."""

    def __init__(self, alive: Callable[[], bool]) -> None:
        self.alive = alive

    def __call__(self, retry_state: object) -> bool:
        return not self.alive()


def probe(
    check: SmokeCheck,
    *,
    say: Callable[[str], None],
    stop: threading.Event | None = None,
    alive: Callable[[], bool] = lambda: True,
) -> SmokeResult:
    """GET `check.url` with exponential backoff and jitter until it passes or time is up.

    Every attempt is reported through `say`; `alive` lets a dead server end it early.
    """
    began = time.monotonic()
    attempts: list[Answer] = []

    def attempt() -> Answer:
        remaining = check.timeout - (time.monotonic() - began)
        answer = _request(
            check, len(attempts) + 1, began, max(0.5, min(_MAX_REQUEST_SECONDS, remaining))
        )
        attempts.append(answer)
        outcome = answer.describe(check)
        say(f"smoke: attempt {answer.number} ({answer.elapsed:.2f}s): GET {check.url} -> {outcome}")
        return answer

    stop = stop or threading.Event()

    def pause(seconds: float) -> None:  # tenacity's sleep, ended early by `stop`
        stop.wait(seconds)

    retrying = Retrying(
        stop=stop_after_delay(check.timeout) | stop_when_event_set(stop) | _stop_unless(alive),
        wait=retry_wait(check.url),
        retry=retry_if_result(lambda answer: not answer.passes(check)),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        sleep=pause,
    )
    last = retrying(attempt)
    reason = _reason(check, attempts, alive(), stopped=stop.is_set())
    return SmokeResult(last.passes(check), tuple(attempts), reason)


def retry_wait(url: str) -> wait_base:
    """The pause before each retry: doubling from 50 ms up to a cap, plus up to 50 ms jitter.

    The cap is low on the loopback (a server ready at any instant is seen within 0.2 s) and
    1 s elsewhere.
    """
    cap = _MAX_WAIT_LOOPBACK if _is_loopback(url) else _MAX_WAIT_REMOTE
    return wait_exponential(multiplier=_FIRST_WAIT, max=cap) + wait_random(0, _JITTER)


def _reason(check: SmokeCheck, attempts: list[Answer], alive: bool, *, stopped: bool) -> str:
    last = attempts[-1]
    if last.passes(check):
        tries = "1 attempt" if len(attempts) == 1 else f"{len(attempts)} attempts"
        return f"{check.url} answered {last.status} in {last.elapsed:.2f}s ({tries})"
    if not alive:
        return f"the server exited; last answer: {last.describe(check)}"
    if stopped:  # a signal ended the wait before the timeout: not a timeout
        return (
            f"{check.url} had not answered {check.expect_status} when the run was stopped"
            f" ({last.elapsed:.1f}s, {len(attempts)} attempts); last answer: {last.describe(check)}"
        )
    return (
        f"{check.url} did not answer {check.expect_status} within {check.timeout:g}s "
        f"({len(attempts)} attempts); last answer: {last.describe(check)}"
    )


def _request(check: SmokeCheck, number: int, began: float, timeout: float) -> Answer:
    try:
        with _opener(check.url).open(check.url, timeout=timeout) as response:
            status, body = response.status, response.read(_MAX_BODY)
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read(_MAX_BODY)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return Answer(number, time.monotonic() - began, error=str(reason) or type(error).__name__)
    matches = check.contains is None or check.contains.encode() in body
    return Answer(number, time.monotonic() - began, status=status, body_matches=matches)


def _opener(url: str) -> urllib.request.OpenerDirector:
    """No proxy for the loopback: a proxy from the environment must not answer for this host."""
    if _is_loopback(url):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def _is_loopback(url: str) -> bool:
    return urlsplit(url).hostname in _LOOPBACK
