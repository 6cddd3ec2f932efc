"""`python bench/run.py --quick`: every benchmark runs end to end at small sizes. This checks
that the benchmarks work, never their timings (the machines are shared and noisy)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO, cli_env

sys.path.insert(0, str(REPO / "bench"))
import run as bench


@pytest.mark.e2e
def test_quick_run_of_every_benchmark_prints_the_table_and_writes_results(tmp_path):
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--json", str(results)],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(results.read_text())
    assert document["quick"] is True and document["machine"]["cores"]
    measurements = document["measurements"]
    names = {m["name"] for m in measurements}
    assert len(names) == len(measurements) >= len(bench.BENCHMARKS)
    for measurement in measurements:
        assert measurement["ratios"], measurement["name"]
        assert all(ratio > 0 for ratio in measurement["ratios"]), measurement
        assert measurement["min"] <= measurement["median"] <= measurement["max"]
        assert measurement["holds"] in (True, False, None)
        assert measurement["name"] in done.stdout


def test_table_lines_up_and_says_whether_each_target_holds():
    from common import Measurement

    rows = [
        Measurement("startup", "inv --list / invoke", [1.1, 1.2, 1.3], "<= 1.3x", True),
        Measurement("output", "MB/s tee / shipyard", [2.0, 2.5, 3.0], ">= 0.8x", False),
        Measurement("downtime", "failed requests", [1.0], "", None, {"failed": "3 of 250"}),
    ]
    lines = bench.table(rows).splitlines()
    assert lines[0].split()[:4] == ["benchmark", "median", "min", "max"]
    assert "1.20x" in lines[1] and "yes" in lines[1]
    assert "2.50x" in lines[2] and "NO" in lines[2]
    assert lines[3].endswith("failed 3 of 250")
    assert len({line.index("x ") for line in lines[1:]}) == 1  # the median column lines up
