"""Parallel gates: four gates of one second each through `shipyard gates --jobs 4` on two
cores, against the sum of their times (the same four commands run one after the other).

Each gate prints three lines, sleeps, and prints three more. Every Shipyard run's terminal
output is captured and checked: each gate's six lines are contiguous, in order, and end with
its `<== NAME` line, so parallel runs never interleave their blocks. Start-up (and the
evidence written at the end) is measured with one gate of `true` and shown beside the wall
time; the target is the wall time above start-up within 1.3x of the longest gate.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from common import BIN, Measurement, alternate, bench_env, project, timed

GATES = ["lint", "types", "unit", "scan"]
LINES = 6
TARGET_FACTOR = 1.3


def gate_command(name: str) -> str:
    first = "; ".join(f'echo "{name} line {k}"' for k in range(1, 4))
    last = "; ".join(f'echo "{name} line {k}"' for k in range(4, LINES + 1))
    return f"{first}; sleep $GATE_SECONDS; {last}"


def config(names: list[str], *, idle: bool = False) -> str:
    lines = ["version: 1", "agent: bench", "steps:"]
    for name in names:
        command = "true" if idle else gate_command(name)
        lines.append(f"  {name}: {{run: '{command}'}}")
    lines.append(f"gates: [{', '.join(names)}]")
    return "\n".join(lines) + "\n"


def run(quick: bool) -> list[Measurement]:
    seconds, runs = (0.2, 1) if quick else (1.0, 5)
    env = bench_env(GATE_SECONDS=str(seconds))
    files = {"idle.yaml": config(GATES[:1], idle=True)}
    with project(config(GATES), files) as root:
        shipyard = [str(BIN / "shipyard"), "gates", "--jobs", "4"]
        startup = statistics.median(
            timed([*shipyard, "--config", "idle.yaml"], cwd=root, env=env)
            for _ in range(1 if quick else 3)
        )
        longest: list[float] = []
        grouped: list[bool] = []

        def parallel() -> float:
            elapsed, output = _captured(shipyard, root, env)
            grouped.append(_grouped(output))
            return elapsed

        def one_after_another() -> float:
            times = [timed(["bash", "-c", gate_command(name)], cwd=root, env=env) for name in GATES]
            longest.append(max(times))
            return sum(times)

        pairs = alternate(runs, parallel, one_after_another)
    return [_measurement(pairs, startup, statistics.median(longest), grouped)]


def _captured(argv: list[str], root: Path, env: dict[str, str]) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run(
        argv,
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"shipyard gates exited {done.returncode}: {done.stderr[-500:]}")
    return elapsed, done.stdout


def _grouped(output: str) -> bool:
    """Each gate's lines form one block, in order, closed by its `<==` line."""
    lines = output.splitlines()
    for name in GATES:
        block = [f"{name} line {k}" for k in range(1, LINES + 1)]
        try:
            start = lines.index(block[0])
        except ValueError:
            return False
        if lines[start : start + LINES] != block:
            return False
        if not lines[start + LINES].startswith(f"<== {name}: ok"):
            return False
    return True


def _measurement(
    pairs: list[tuple[float, float]], startup: float, longest: float, grouped: list[bool]
) -> Measurement:
    wall = statistics.median(s for s, _ in pairs)
    above = wall - startup
    return Measurement(
        name="parallel gates",
        metric="wall time of 4 gates with --jobs 4 on 2 cores, shipyard / sum of the gates",
        ratios=[s / b for s, b in pairs],
        target=f"wall - start-up <= {TARGET_FACTOR}x longest gate, output grouped",
        holds=above <= TARGET_FACTOR * longest and all(grouped),
        figures={
            "wall": f"{wall:.2f} s",
            "start-up (one gate of true)": f"{startup:.2f} s",
            "wall - start-up": f"{above:.2f} s",
            "longest gate": f"{longest:.2f} s",
            "sum of gates": f"{statistics.median(b for _, b in pairs):.2f} s",
            "output grouped": f"{sum(grouped)}/{len(grouped)} runs",
        },
    )
