"""Config validation: does loading `shipyard.yaml` stay linear in the number of steps?

`shipyard.config.load_config` (read, parse, check every key) on a file of 10,000 steps against
the same on a file of 1,000 (quick: 2,000 against 200), in this process, interleaved. Each
step is a mapping of four keys, named so that log names are checked too (`build:1` and
`build_1` would share a log). The ratio is time per step at the large size over time per step
at the small one: 1.0 is linear, 10 would be quadratic (as it was: every step's log name was
compared with every earlier one, 49 s for 8,000 steps).

Figures also give both load times, and how long the merge-key bomb of the bad-config corpus
(tests/configs/bad/alias_merge_key_bomb.yaml, which PyYAML 6.0.3 alone expands for about a
minute) takes to be refused.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common import REPO, Measurement, alternate, ms

from shipyard.config import load_config
from shipyard.errors import ConfigError

TARGET_RATIO = 1.5  # linear, with room for noise and the garbage collector
BOMB = REPO / "tests" / "configs" / "bad" / "alias_merge_key_bomb.yaml"


def config(steps: int) -> str:
    lines = ["version: 1", "steps:"]
    for i in range(steps):
        lines.append(f"  'build:{i}': {{run: make part{i}, timeout: 10m, retries: 1, cwd: src}}")
    return "\n".join(lines) + "\n"


def run(quick: bool) -> list[Measurement]:
    small, large = (200, 2_000) if quick else (1_000, 10_000)
    runs = 3 if quick else 7
    with _folder() as folder:
        small_file, large_file = folder / "small.yaml", folder / "large.yaml"
        small_file.write_text(config(small))
        large_file.write_text(config(large))
        if len(load_config(large_file).steps) != large:
            raise RuntimeError(f"{large_file} did not load {large} steps")
        pairs = alternate(runs, _loading(large_file), _loading(small_file))
        bomb = statistics.median(_refusing(BOMB) for _ in range(runs))
    return [_measurement(pairs, small, large, bomb)]


def _loading(path: Path) -> Callable[[], float]:
    def load() -> float:
        began = time.perf_counter()
        load_config(path)
        return time.perf_counter() - began

    return load


def _refusing(path: Path) -> float:
    began = time.perf_counter()
    try:
        load_config(path)
    except ConfigError:
        return time.perf_counter() - began
    raise RuntimeError(f"{path} loaded: the bomb was not refused")


@contextmanager
def _folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="shipyard-bench-config-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _measurement(
    pairs: list[tuple[float, float]], small: int, large: int, bomb: float
) -> Measurement:
    per_step = [(big / large) / (little / small) for big, little in pairs]
    large_time = statistics.median(big for big, _ in pairs)
    small_time = statistics.median(little for _, little in pairs)
    return Measurement(
        name="config validation",
        metric=f"time per step loading {large:,} steps / loading {small:,} steps",
        ratios=per_step,
        target=f"<= {TARGET_RATIO}x (linear)",
        holds=statistics.median(per_step) <= TARGET_RATIO,
        figures={
            f"{large:,} steps": ms(large_time),
            f"{small:,} steps": ms(small_time),
            "per step": f"{large_time / large * 1e6:.0f} us",
            "merge-key bomb refused in": ms(bomb),
        },
    )
