"""A reader that leaves early (`inv build | head -3`) ends nothing: no traceback, the run goes
on to its end, its record and feedback are written and its exit code is its verdict's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import BIN, cli_env, evidence_dir

MANY_LINES = 'for i in $(seq 1 20000); do echo "line $i"; done'


def read_one_line(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run `argv`, read its first line and leave, as `| head -1` does: its exit code and
    stderr."""
    with subprocess.Popen(
        argv, cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.readline()
        process.stdout.close()
        stderr = process.stderr.read().decode()
        return process.wait(timeout=60), stderr


@pytest.mark.parametrize("program", ["inv", "shipyard"])
@pytest.mark.parametrize(("run", "code"), [("true", 0), ("exit 3", 1)])
def test_a_reader_leaving_early_ends_no_run(project, program: str, run: str, code: int) -> None:
    root = project(f"""
        version: 1
        steps:
          build: {{run: '{MANY_LINES}; {run}'}}
    """)
    done, stderr = read_one_line([str(BIN / program), "build"], root)
    assert done == code, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    (record,) = [json.loads(p.read_text()) for p in (evidence_dir(root) / "runs").glob("*.json")]
    assert record["exit_code"] == code
    assert (root / "feedback").is_dir()


def test_a_wrapped_command_outlives_its_reader_too(project) -> None:
    root = project("version: 1\nsteps:\n  build: {run: 'true'}\n")
    argv = [str(BIN / "shipyard"), "heartbeat", "devops", "--", "seq", "1", "200000"]
    assert read_one_line(argv, root) == (0, "")
