"""Evidence that cannot be written ends a command with one line naming the file and the error,
never a traceback or a hang (issue 12): a read-only `artifacts/` before the run starts (exit 2),
and a record that cannot be written at the end (the record goes to stderr instead)."""

from __future__ import annotations

import errno
import json
import subprocess
from pathlib import Path

import pytest
from helpers import BIN, run_cli, run_here

from shipyard import evidence

CONFIG = """
version: 1
steps:
  fmt: {run: echo formatted}
"""


def mountable(folder: Path) -> bool:
    """Whether this machine lets the tests mount a tmpfs (root in most containers)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def read_only_artifacts(project):
    root = project(CONFIG)
    artifacts = root / "artifacts"
    if not mountable(artifacts):
        pytest.skip("mounting a tmpfs is not permitted here (needs root or CAP_SYS_ADMIN)")
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(artifacts)], check=True)
        yield root
    finally:
        subprocess.run(["umount", "-l", str(artifacts)], check=False)


def test_a_read_only_artifacts_folder_is_refused_in_one_line_with_exit_2(read_only_artifacts):
    done = run_cli([str(BIN / "inv"), "step", "fmt"], read_only_artifacts)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    line = done.stderr.strip()
    assert line.count("\n") == 0, line
    assert line.startswith("cannot write artifacts/devops") and "Read-only file system" in line
    assert "formatted" not in done.stdout  # no step ran


def test_a_record_that_cannot_be_written_goes_to_stderr_and_an_ok_run_exits_1(project, monkeypatch):
    root = project(CONFIG)

    def full_disk(bundle, path, document, redactor):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(evidence, "write_json", full_disk)
    done = run_here(["step", "fmt"], root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    first, _, rest = done.stderr.partition("\n")
    assert first.startswith("cannot write ") and "[Errno 28] No space left on device" in first
    record = json.loads(rest[rest.index("{") :])
    assert record["outcome"] == "ok" and record["steps"][0]["name"] == "fmt"
    assert record["evidence_error"].startswith("cannot write ")
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("failed (exit 1): cannot write ") and "the run itself was ok" in last
    assert "no evidence written in artifacts/devops/" in last  # never "evidence in …"
    assert "the run record is on stderr" in last


def test_a_failed_run_whose_record_cannot_be_written_keeps_its_exit_code(project, monkeypatch):
    root = project(CONFIG.replace("echo formatted", "echo broken; exit 1"))

    def read_only(bundle, path, document, redactor):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(evidence, "write_json", read_only)
    done = run_here(["step", "fmt"], root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "[Errno 30] Read-only file system" in done.stdout.strip().splitlines()[-1]
