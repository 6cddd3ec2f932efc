"""Start-up: listing this repository's tasks against invoke listing a one-task `tasks.py`.

The baseline is invoke's own floor: `inv --list` in a folder whose `tasks.py` defines one
trivial task (an empty `tasks.py` is not a listing at all: invoke exits 1, "No tasks found").
The subject is `inv --list` and `shipyard --list` in this repository, whose `tasks.py` builds
Shipyard's namespace from `shipyard.yaml`. What start-up costs beyond the baseline is what
Shipyard imports and reads before it can name its tasks.

Both sides run with bytecode caching on, in a throwaway `PYTHONPYCACHEPREFIX`, as a user's
installed package would (a developer shell with `PYTHONDONTWRITEBYTECODE=1` would otherwise
recompile Shipyard's sources on every run while invoke's stay compiled by pip).

The ratio is of wall times (what a user waits for); the `CPU added` figure is the median
difference in the processes' own CPU time, which a busy shared machine disturbs far less.
`shipyard --version` against `inv --version` is reported for information: a real command's
start-up, with no target.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from common import BIN, REPO, Measurement, alternate, bench_env, ms, timed

TARGET_RATIO = 1.3
ONE_TASK = '''\
from invoke import task


@task
def hello(c):
    """Say hello."""
'''


def run(quick: bool) -> list[Measurement]:
    runs = 1 if quick else 15
    with _one_task_folder() as baseline_dir, _bytecode_cache() as env:
        baseline = ([str(BIN / "inv"), "--list"], baseline_dir)
        listings = [
            _compare("start-up: inv --list", [str(BIN / "inv"), "--list"], baseline, env, runs),
            _compare(
                "start-up: shipyard --list", [str(BIN / "shipyard"), "--list"], baseline, env, runs
            ),
        ]
        version = _compare(
            "start-up: shipyard --version",
            [str(BIN / "shipyard"), "--version"],
            ([str(BIN / "inv"), "--version"], baseline_dir),
            env,
            runs,
            target=False,
        )
    return [*listings, version]


def _compare(
    name: str,
    argv: Sequence[str],
    baseline: tuple[Sequence[str], Path],
    env: dict[str, str],
    runs: int,
    *,
    target: bool = True,
) -> Measurement:
    baseline_argv, baseline_dir = baseline
    cpu: dict[str, list[float]] = {"shipyard": [], "baseline": []}
    pairs = alternate(
        runs,
        lambda: _timed_with_cpu(argv, REPO, env, cpu["shipyard"]),
        lambda: _timed_with_cpu(baseline_argv, baseline_dir, env, cpu["baseline"]),
    )
    ratios = [subject / floor for subject, floor in pairs]
    subject = statistics.median(s for s, _ in pairs)
    floor = statistics.median(b for _, b in pairs)
    cpu_added = statistics.median(cpu["shipyard"][1:]) - statistics.median(cpu["baseline"][1:])
    baseline_text = f"{Path(baseline_argv[0]).name} {baseline_argv[1]}"
    return Measurement(
        name=name,
        metric=f"wall time, `{Path(argv[0]).name} {argv[1]}` here / `{baseline_text}` "
        "over a one-task tasks.py",
        ratios=ratios,
        target=f"<= {TARGET_RATIO}x" if target else "",
        holds=statistics.median(ratios) <= TARGET_RATIO if target else None,
        figures={
            "shipyard": ms(subject),
            "baseline": ms(floor),
            "added": ms(subject - floor),
            "CPU added": ms(cpu_added),
        },
    )


def _timed_with_cpu(argv: Sequence[str], cwd: Path, env: dict[str, str], cpu: list[float]) -> float:
    """Wall seconds, as `timed`; the child's CPU seconds (user + system) go to `cpu`: the work
    itself, steadier than wall time on a shared machine (the first is the warm-up's)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = timed(argv, cwd=cwd, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall


@contextmanager
def _one_task_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="shipyard-bench-startup-"))
    try:
        (folder / "tasks.py").write_text(ONE_TASK)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _bytecode_cache() -> Iterator[dict[str, str]]:
    """A user's environment with compiled bytecode kept (in a throwaway folder, not the repo)."""
    cache = Path(tempfile.mkdtemp(prefix="shipyard-bench-pyc-"))
    try:
        env = bench_env(PYTHONPYCACHEPREFIX=str(cache))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        yield env
    finally:
        shutil.rmtree(cache, ignore_errors=True)
