"""Per-step overhead: 50 steps of `true` through `shipyard gates --jobs 1`, against a bash
script that runs the same 50 with a timestamp line and `tee` to a log each.

Start-up is taken out on both sides: each side also runs with a single step, and the
per-step time is (time of N steps - time of 1 step) / (N - 1), floored at 0.1 ms so that
noise on a busy machine cannot make it zero or negative (it only can in --quick, with few
steps). The evidence of the previous run is removed before each Shipyard run (untimed), so the
manifest does not grow from one repetition to the next.
"""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

from common import BIN, Measurement, alternate, bench_env, project, timed

TARGET_ADDED_SECONDS = 0.005
FLOOR_SECONDS = 0.0001

BASELINE_SCRIPT = """\
#!/bin/bash
# $1 steps of `true`, each with a timestamp line and its output tee'd to its own log
set -e
mkdir -p logs
for i in $(seq "$1"); do
  echo "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) step=s$i event=start" >> logs/heartbeat.log
  true 2>&1 | tee "logs/s$i.log" >/dev/null
done
"""


def config(steps: int) -> str:
    names = [f"s{i}" for i in range(1, steps + 1)]
    lines = ["version: 1", "agent: bench", "steps:"]
    lines += [f'  {name}: "true"' for name in names]
    lines.append(f"gates: [{', '.join(names)}]")
    return "\n".join(lines) + "\n"


def run(quick: bool) -> list[Measurement]:
    steps, runs = (20, 2) if quick else (50, 11)
    files = {"many.yaml": config(steps), "one.yaml": config(1), "steps.sh": BASELINE_SCRIPT}
    with project(config(1), files) as root:
        env = bench_env()

        def shipyard(config_name: str) -> float:
            for folder in ("artifacts", "feedback"):
                shutil.rmtree(root / folder, ignore_errors=True)
            argv = [str(BIN / "shipyard"), "gates", "--jobs", "1", "--config", config_name]
            return timed(argv, cwd=root, env=env)

        def script(count: int) -> float:
            shutil.rmtree(root / "logs", ignore_errors=True)
            return timed(["bash", "steps.sh", str(count)], cwd=root, env=env)

        def shipyard_per_step() -> float:
            return _per_step(shipyard("many.yaml") - shipyard("one.yaml"), steps)

        def script_per_step() -> float:
            return _per_step(script(steps) - script(1), steps)

        _check_logs(root, steps)
        pairs = alternate(runs, shipyard_per_step, script_per_step)
    return [_measurement(pairs, steps)]


def _per_step(difference: float, steps: int) -> float:
    return max(difference / (steps - 1), FLOOR_SECONDS)


def _check_logs(root: Path, steps: int) -> None:
    """One Shipyard run first, to be sure it really runs every step and logs each."""
    argv = [str(BIN / "shipyard"), "gates", "--jobs", "1", "--config", "many.yaml"]
    timed(argv, cwd=root, env=bench_env())
    logs = list((root / "artifacts").glob("bench/*/logs/*/s*.log"))
    if len(logs) != steps:
        raise RuntimeError(f"expected {steps} step logs, found {len(logs)}")


def _measurement(pairs: list[tuple[float, float]], steps: int) -> Measurement:
    ours = statistics.median(s for s, _ in pairs)
    theirs = statistics.median(b for _, b in pairs)
    added = statistics.median(s - b for s, b in pairs)
    return Measurement(
        name="per-step overhead",
        metric=f"time per step after start-up ({steps} steps of `true`), shipyard / bash + tee",
        ratios=[s / b for s, b in pairs],
        target="< 5 ms added per step",
        holds=added < TARGET_ADDED_SECONDS,
        figures={
            "shipyard per step": f"{ours * 1000:.2f} ms",
            "bash + date + tee per step": f"{theirs * 1000:.2f} ms",
            "added per step": f"{added * 1000:.2f} ms",
        },
    )
