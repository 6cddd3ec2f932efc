"""A reader that leaves early (`inv build | head -3`) ends nothing: no traceback, the run goes
on to its end, its record and feedback are written and its exit code is its verdict's."""

from __future__ import annotations

import json
import subprocess

import pytest
from helpers import BIN, cli_env, evidence_dir


@pytest.mark.parametrize("program", ["inv", "shipyard"])
@pytest.mark.parametrize(("run", "code"), [("true", 0), ("exit 3", 1)])
def test_a_reader_leaving_early_ends_no_run(project, program: str, run: str, code: int) -> None:
    root = project(f"""
        version: 1
        steps:
          build: {{run: 'for i in $(seq 1 20000); do echo "line $i"; done; {run}'}}
    """)
    with subprocess.Popen(
        [str(BIN / program), "build"],
        cwd=root,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as shipyard:
        assert shipyard.stdout is not None and shipyard.stderr is not None
        shipyard.stdout.readline()  # then the reader leaves, as `head -1` does
        shipyard.stdout.close()
        stderr = shipyard.stderr.read().decode()
        assert shipyard.wait(timeout=60) == code, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    (record,) = [json.loads(p.read_text()) for p in (evidence_dir(root) / "runs").glob("*.json")]
    assert record["exit_code"] == code
    assert (root / "feedback").is_dir()
