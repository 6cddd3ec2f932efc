"""What every benchmark shares: the result type, timing helpers and throwaway projects.

A benchmark module exposes `run(quick: bool) -> list[Measurement]`. Each measurement compares
Shipyard with the baseline a user would otherwise use, measured in the same run, several
times: `ratios` has one Shipyard/baseline ratio per repetition (how the ratio is taken is the
benchmark's to say in `metric`), and `run.py` prints their median, min and max.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv running the benchmarks: inv, shipyard, nox


@dataclass(frozen=True)
class Measurement:
    name: str  # "per-step overhead"
    metric: str  # what each ratio divides: "wall time of 50 steps, shipyard / bash + tee"
    ratios: Sequence[float]  # one per repetition
    target: str  # "< 5 ms added per step", or "" when the figure is only reported
    holds: bool | None  # does the target hold (on the median)? None: nothing to hold
    figures: Mapping[str, str] = field(default_factory=dict)  # {"added per step": "2.1 ms"}
    note: str = ""  # why a target cannot hold, with the profile that shows it

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "metric": self.metric,
            "ratios": list(self.ratios),
            "median": self.median,
            "min": min(self.ratios),
            "max": max(self.ratios),
            "target": self.target,
            "holds": self.holds,
            "figures": dict(self.figures),
            "note": self.note,
        }


def timed(
    argv: Sequence[str] | str,
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> float:
    """Wall seconds of one command (a string runs under bash), its output discarded."""
    began = time.perf_counter()
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=dict(env) if env is not None else bench_env(),
        shell=isinstance(argv, str),
        executable="/bin/bash" if isinstance(argv, str) else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter() - began
    if check and done.returncode != 0:
        raise RuntimeError(f"{argv!r} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return elapsed


def alternate(
    runs: int, subject: Callable[[], float], baseline: Callable[[], float]
) -> list[tuple[float, float]]:
    """`runs` pairs of (subject, baseline) timings, interleaved so drift hits both alike; one
    unrecorded warm-up of each first (page cache, .pyc files)."""
    subject(), baseline()
    return [(subject(), baseline()) for _ in range(runs)]


def bench_env(**extra: str) -> dict[str, str]:
    """A user's environment: the venv's tools first, no CI or GitHub variables, no colour, and
    .pyc files written as usual (a sandbox's PYTHONDONTWRITEBYTECODE would make every run
    recompile Shipyard's sources, while pip compiled the baseline's at install)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SHIPYARD_", "GITHUB_", "PYTEST_"))
    }
    for variable in ("CI", "PYTHONDONTWRITEBYTECODE"):
        env.pop(variable, None)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", os.defpath)])
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


@contextmanager
def project(config: str, files: Mapping[str, str] | None = None) -> Iterator[Path]:
    """A throwaway project: shipyard.yaml, the three-line tasks.py, and `files`."""
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    try:
        (root / "shipyard.yaml").write_text(textwrap.dedent(config).lstrip())
        (root / "tasks.py").write_text("from shipyard.tasks import namespace\n\nns = namespace()\n")
        for name, text in (files or {}).items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
