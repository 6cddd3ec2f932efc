"""What tests share that is not a fixture: paths, a user's environment, running the CLI as a
user does, and reading the evidence a run leaves. Fixtures and hooks stay in conftest.py."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
ISO = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]  # commits need a name


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
