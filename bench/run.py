"""Shipyard against the commands a user would otherwise run, measured side by side.

    python bench/run.py                 all benchmarks; writes bench/results/latest.json and
                                        docs/benchmarks.png (the chart needs the `bench` extra)
    python bench/run.py --quick         small sizes, to check that every benchmark works
    python bench/run.py --only startup  one benchmark (repeatable)

Each line of the table is a ratio Shipyard / baseline over several repetitions: median, min
and max, and whether the target holds on the median. Exit 0 even when a target does not hold:
these are figures, not a test.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, Measurement

BENCHMARKS = {  # key: module in bench/, in the order of issue 7
    "step-overhead": "step_overhead",
    "startup": "startup",
    "output": "output",
    "hashing": "hashing",
    "parallel-gates": "parallel_gates",
    "nox-gates": "nox_gates",
    "rollback": "rollback",
    "smoke-latency": "smoke_latency",
    "config": "config",  # issue 12: loading shipyard.yaml stays linear in its steps
}
RESULTS = REPO / "bench" / "results" / "latest.json"
CHART = REPO / "docs" / "benchmarks.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check it all works")
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS), default=[])
    parser.add_argument("--json", type=Path, help=f"results file (default: {RESULTS.name})")
    parser.add_argument("--chart", type=Path, help=f"chart PNG (default: {CHART.name})")
    options = parser.parse_args(argv)
    chosen = options.only or list(BENCHMARKS)
    began = time.perf_counter()
    measurements: list[Measurement] = []
    for key in chosen:
        module = importlib.import_module(BENCHMARKS[key])
        print(f"== {key}", file=sys.stderr, flush=True)
        step_began = time.perf_counter()
        found = module.run(quick=options.quick)
        measurements.extend(found)
        print(f"   {time.perf_counter() - step_began:.1f}s", file=sys.stderr, flush=True)
    print(table(measurements))
    total = time.perf_counter() - began
    print(f"\n{len(measurements)} measurements in {total:.0f}s on {machine()['summary']}")
    results = options.json or (None if options.quick else RESULTS)
    if results:
        write_results(results, measurements, total, quick=options.quick)
    chart_path = options.chart or (None if options.quick else CHART)
    if chart_path:
        chart(measurements, chart_path)
    return 0


def table(measurements: list[Measurement]) -> str:
    rows = [("benchmark", "median", "min", "max", "target", "holds", "figures")]
    for m in measurements:
        holds = {True: "yes", False: "NO", None: "-"}[m.holds]
        figures = ", ".join(f"{key} {value}" for key, value in m.figures.items())
        rows.append(
            (
                m.name,
                f"{m.median:.2f}x",
                f"{min(m.ratios):.2f}x",
                f"{max(m.ratios):.2f}x",
                m.target or "-",
                holds,
                figures,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def machine() -> dict[str, str]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = str(os.cpu_count() or 1)
    python = platform.python_version()
    system = f"{platform.system()} {platform.release()}"
    summary = f"{cores} cores ({model}), {system}, Python {python}"
    return {"cpu": model, "cores": cores, "system": system, "python": python, "summary": summary}


def write_results(path: Path, measurements: list[Measurement], total: float, *, quick: bool):
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "quick": quick,
        "seconds": round(total, 1),
        "measurements": [m.to_json() for m in measurements],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results: {path}")


def chart(measurements: list[Measurement], path: Path) -> None:
    """A horizontal bar per measurement: the median ratio, with its min-max range."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no chart: matplotlib is missing (pip install -e '.[bench]')", file=sys.stderr)
        return
    names = [m.name for m in measurements][::-1]
    medians = [m.median for m in measurements][::-1]
    low = [m.median - min(m.ratios) for m in measurements][::-1]
    high = [max(m.ratios) - m.median for m in measurements][::-1]
    colours = [{True: "#2e7d32", False: "#c62828", None: "#607d8b"}[m.holds] for m in measurements][
        ::-1
    ]
    figure, axes = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    axes.barh(names, medians, xerr=[low, high], color=colours, capsize=3)
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xlabel("Shipyard / baseline (median, min-max); green: target holds, red: not")
    axes.set_title(f"Shipyard benchmarks, {machine()['summary']}", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"chart: {path}")


if __name__ == "__main__":
    sys.exit(main())
