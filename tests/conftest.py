from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def random_secret() -> str:
    return "s3" + secrets.token_urlsafe(18)


def write_project(root: Path, config: str) -> Path:
    """A throwaway project: shipyard.yaml plus the three-line tasks.py a user would write."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "shipyard.yaml").write_text(textwrap.dedent(config).lstrip())
    (root / "tasks.py").write_text("from shipyard.tasks import namespace\n\nns = namespace()\n")
    return root


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "GITHUB_"))}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env.pop("CI", None)
    env.update(extra)
    return env


def run_cli(args: list[str], cwd: Path, *, env: dict[str, str] | None = None, timeout: float = 120):
    """Run `inv`/`shipyard`/a script as a user would: a real subprocess, output captured."""
    return subprocess.run(
        args,
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Assert a command succeeded; when it did not, show all it printed (pytest would cut it)."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def evidence_dir(root: Path, agent: str = "devops") -> Path:
    days = sorted((root / "artifacts" / agent).glob("20*"))
    assert days, f"no evidence under {root / 'artifacts' / agent}"
    return days[-1]


def sha256sum_check(day: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sha256sum", "-c", "--strict", "sha256_manifest.txt"],
        cwd=day,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path):
    def make(config: str) -> Path:
        return write_project(tmp_path / "proj", config)

    return make


# --- process hygiene ----------------------------------------------------------------------
# Every process a test starts inherits this marker (tests build child environments from
# os.environ). After each test, any live process still carrying it is a leak: the test fails.

_MARKER = "PYTEST_PROCESS_HYGIENE_MARK"  # not SHIPYARD_*: cli_env() drops those
os.environ[_MARKER] = secrets.token_hex(8)
_PROC = Path("/proc")


def _marked_processes() -> dict[int, str]:
    needle = f"{_MARKER}={os.environ[_MARKER]}".encode()
    found = {}
    for entry in _PROC.glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state not in ("Z", "X"):
            found[pid] = command.strip()
    return found


@pytest.fixture(autouse=True)
def no_process_left_behind():
    yield
    if not _PROC.is_dir():
        return
    deadline = time.monotonic() + 5
    left = _marked_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _marked_processes()
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else os.kill(
                pid, signal.SIGKILL
            )
    assert not left, f"processes left behind: {left}"
