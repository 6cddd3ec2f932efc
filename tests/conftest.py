"""Fixtures and hooks shared by the tests; the plain helpers they use are in helpers.py."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from pathlib import Path

import pytest
from helpers import write_project


@pytest.fixture
def project(tmp_path: Path):
    def make(config: str) -> Path:
        return write_project(tmp_path / "proj", config)

    return make


# --- process hygiene ----------------------------------------------------------------------
# Every process a test starts inherits this marker (tests build child environments from
# os.environ). A release's server does not (its environment is an allowlist): it is known by
# the `SHIPYARD_RELEASE` Shipyard gives it and a working folder under this worker's temporary
# folder. After each test, any live process of either kind is a leak: the test fails.

_MARKER = "PYTEST_PROCESS_HYGIENE_MARK"  # not SHIPYARD_*: cli_env() drops those
os.environ[_MARKER] = secrets.token_hex(8)
_PROC = Path("/proc")


def _ours(entry: Path, needle: bytes, temporary: Path) -> bool:
    environ = (entry / "environ").read_bytes()
    if needle in environ:  # started by this session's tests
        return True
    # or working in its temporary folder, whatever its environment (a release's server,
    # Caddy, which gets no variable of ours)
    return temporary in Path(os.readlink(entry / "cwd")).parents


def _marked_processes(temporary: Path) -> dict[int, str]:
    needle = f"{_MARKER}={os.environ[_MARKER]}".encode()
    found = {}
    for entry in _PROC.glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            if not _ours(entry, needle, temporary):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state not in ("Z", "X"):
            found[pid] = command.strip()
    return found


@pytest.fixture(autouse=True)
def no_process_left_behind(tmp_path_factory):
    yield
    if not _PROC.is_dir():
        return
    temporary = tmp_path_factory.getbasetemp().resolve()
    deadline = time.monotonic() + 5
    left = _marked_processes(temporary)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _marked_processes(temporary)
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else os.kill(
                pid, signal.SIGKILL
            )
    assert not left, f"processes left behind: {left}"
