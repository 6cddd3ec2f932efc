"""Fly's health verdict after a deploy, polled: every machine that serves the app `started`,
on the new release, with every check `passing`, or a deadline (`health_timeout`).

The default deadline comes from the fly.toml: the longest `grace_period + interval` of its
checks (`[[http_service.checks]]`, `[[services.http_checks]]`, `[[services.tcp_checks]]`,
`[checks.<name>]`; a check without `grace_period` counts 0s, without `interval` 15s), so a
check has passed its grace period and run once more before it is judged; with no checks, or
no fly.toml that Python can read, `DEFAULT_HEALTH_TIMEOUT`. Polls come every tenth of the
deadline, between `MIN_POLL` and `MAX_POLL` seconds.

Passing once is not the verdict: once every check passes, the machines are watched for one
more run of the slowest check (`settle_seconds`: the longest `interval` of the fly.toml's
checks), and a check that turns critical meanwhile fails the deploy, as an app that answers its
first check and then breaks would. No checks declared: nothing to watch, no wait.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from shipyard.config.checks import parse_duration
from shipyard.errors import StepFailed
from shipyard.targets.base import Call
from shipyard.targets.fly.state import Problem, machine_health
from shipyard.wording import counted

DEFAULT_HEALTH_TIMEOUT = 60.0  # no checks in the fly.toml, or no TOML reader (Python 3.10)
CHECK_INTERVAL = 15.0  # a check without `interval` (the fly.toml reference's example)
MIN_POLL, MAX_POLL = 0.2, 5.0  # seconds between polls: Fly's API is rate limited
Machines = Callable[[], list[dict[str, Any]]]


def default_health_timeout(fly_toml: Path) -> float:
    """The longest `grace_period + interval` of the fly.toml's checks (see the module)."""
    document = _read_toml(fly_toml)
    windows = [_window(check) for check in _checks(document or {})]
    return max(windows, default=DEFAULT_HEALTH_TIMEOUT)


def settle_seconds(fly_toml: Path) -> float:
    """The longest `interval` of the fly.toml's checks; 0 with none (see the module)."""
    document = _read_toml(fly_toml)
    intervals = [
        _seconds(check.get("interval"), CHECK_INTERVAL) for check in _checks(document or {})
    ]
    return max(intervals, default=0.0)


def poll_interval(timeout: float) -> float:
    return min(max(timeout / 10, MIN_POLL), MAX_POLL)


def _read_toml(path: Path) -> dict[str, Any] | None:
    """The fly.toml, with tomllib (3.11+) or tomli (if installed); None when unreadable."""
    for name in ("tomllib", "tomli"):
        try:
            reader = importlib.import_module(name)
        except ImportError:
            continue
        try:
            document: dict[str, Any] = reader.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return document
    return None


def _checks(document: dict[str, Any]) -> Iterable[dict[str, Any]]:
    http_service = document.get("http_service")
    if isinstance(http_service, dict):
        yield from _tables(http_service.get("checks"))
    for service in _tables(document.get("services")):
        yield from _tables(service.get("http_checks"))
        yield from _tables(service.get("tcp_checks"))
    checks = document.get("checks")
    if isinstance(checks, dict):
        yield from _tables(list(checks.values()))


def _tables(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _window(check: dict[str, Any]) -> float:
    return _seconds(check.get("grace_period"), 0.0) + _seconds(
        check.get("interval"), CHECK_INTERVAL
    )


def _seconds(value: object, default: float) -> float:
    """A fly.toml duration (`10s`, `1m`, `500ms`; a bare number is seconds)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_duration(str(value))
    except ValueError:
        return default


def problems_of(machines: list[dict[str, Any]], version: int) -> list[Problem]:
    """Why the machines do not count as healthy on release v`version` (0: on any release)."""
    if not machines:
        return [Problem("", "no machines serve the app")]
    return [problem for machine in machines for problem in machine_health(machine, version)]


def wait_until_healthy(
    machines: Machines, version: int, timeout: float, call: Call, *, settle: float = 0.0
) -> None:
    """Poll `machines()` until none has a problem, then watch them for `settle` seconds more
    (return), or until `timeout` seconds have gone (StepFailed naming the first problem: the
    machine, the check and its last output). A problem while settling fails at once. One line
    per poll through `call.say`."""
    started, interval, poll = time.monotonic(), poll_interval(timeout), 0
    passing_since: float | None = None
    while True:
        poll += 1
        problems = problems_of(machines(), version)
        now = time.monotonic()
        spent = now - started
        if problems and passing_since is not None:
            held = now - passing_since
            for problem in problems:
                call.say(f"unhealthy: {problem}")
            raise StepFailed(
                f"Fly reports a check turned critical {held:.1f}s after every check passed"
                f" (watched for {settle:g}s, the longest check interval): {_summary(problems)}"
            )
        if not problems:
            passing_since = now if passing_since is None else passing_since
            if now - passing_since >= settle:
                _say_healthy(call, version, poll, spent, settle)
                return
            wait = min(poll_interval(settle), settle - (now - passing_since))
        else:
            call.say(f"health poll {poll} at {spent:.1f}s of {timeout:g}s: {_summary(problems)}")
            if spent >= timeout:
                for problem in problems:
                    call.say(f"unhealthy: {problem}")
                raise StepFailed(_verdict(problems, timeout))
            wait = min(interval, timeout - spent)
        if call.stop.wait(wait):
            where = problems[0] if problems else "every check passing, still watching"
            raise StepFailed(f"stopped while waiting for Fly's health checks: {where}")


def _say_healthy(call: Call, version: int, poll: int, spent: float, settle: float) -> None:
    on = f" and on v{version}" if version else ""
    held = f", still so {settle:g}s later" if settle else ""
    call.say(f"Fly reports every machine started, passing{on} (poll {poll}, {spent:.1f}s{held})")


def _summary(problems: list[Problem]) -> str:
    more = f" (and {counted(len(problems) - 1, 'more problem')})" if len(problems) > 1 else ""
    return f"{problems[0]}{more}"


def _verdict(problems: list[Problem], timeout: float) -> str:
    return f"Fly reports unhealthy after {timeout:g}s (health_timeout): {_summary(problems)}"
