"""`nox -s gates` on a fresh copy of this repository: every gate in its own environment."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from helpers import BIN, GIT, REPO, cli_env, evidence_dir, run_cli, sha256sum_check

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        "SHIPYARD_RUN_ID" in os.environ, reason="already inside a Shipyard gate run (no recursion)"
    ),
]


def fresh_copy(destination):
    """The tracked and new files of this work tree, committed in a repository of their own."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (os.fsdecode(name) for name in listed)):
        source, target = REPO / rel, destination / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)
    subprocess.run([*GIT, "init", "-q"], cwd=destination, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=destination, check=True)
    subprocess.run([*GIT, "commit", "-qm", "copy"], cwd=destination, check=True)
    return destination


@pytest.mark.timeout(1500)
def test_nox_gates_passes_from_a_fresh_copy(tmp_path):
    root = fresh_copy(tmp_path / "repo")
    done = run_cli([str(BIN / "nox"), "-s", "gates"], root, env=cli_env(), timeout=1500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for session in ("fmt", "lint", "test:ci", "scan", "gates"):
        assert f"Session {session} was successful" in done.stderr
    day = evidence_dir(root)
    assert sha256sum_check(day).returncode == 0
    beats = (day / "logs" / "heartbeat.log").read_text()
    for step in ("fmt", "lint", "test:ci", "scan"):
        assert f" step={step} event=end status=ok exit=0 " in beats
    assert list(day.glob("reports/*/secret-scan.sarif"))
