"""Manifest hashing: Shipyard writing a day's `sha256_manifest.txt` against `sha256sum`.

The evidence folder is built once per run under the system temp folder and deleted after:
10,000 small files (step logs of 200 B to 16 KiB in 100 run folders) and four large ones, 1 GiB
in all (quick: 200 small files and two of 1 MiB). Both sides are one process each, so both pay
their start-up, and read from the page cache (the unrecorded warm-up of `alternate` reads every
file first):

- Shipyard: `python -c` calling `shipyard.evidence.write_manifest` on the day's bundle (the
  function every run ends with: list, hash, write the manifest atomically under the lock).
- baseline: `find -print0 | sort -z | xargs -0 sha256sum > file` over the same files, what a
  user would type to get the same manifest.

A last check asserts that both wrote the same lines. A report-only line compares the same
Shipyard runs with `openssl dgst -sha256` over the same files, timed in the same rounds: the
library Python's `hashlib` hashes with, so the ratio is Shipyard's own overhead. (coreutils'
`sha256sum` may have its own SHA-256 code, without the CPU's SHA instructions.)
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import REPO, Measurement, alternate, bench_env, ms, timed

AGENT, DATE = "bench", "2026-01-01"
MANIFEST = "sha256_manifest.txt"
MIB = 1 << 20
WRITE_MANIFEST = (
    "import sys; from pathlib import Path; from shipyard.evidence import Bundle, write_manifest; "
    "write_manifest(Bundle(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))"
)
# Every file but the manifest, relative, sorted by bytes: the manifest's own rules.
FILE_LIST = f"find . -type f ! -path ./{MANIFEST} -printf '%P\\0' | LC_ALL=C sort -z"


def run(quick: bool) -> list[Measurement]:
    small, large, large_size = (200, 2, MIB) if quick else (10_000, 4, 236 * MIB)
    runs = 3 if quick else 5
    with _evidence_folder(small, large, large_size) as (root, day, output):
        total = sum(path.stat().st_size for path in day.rglob("*") if path.is_file())
        env = bench_env()
        shipyard = [sys.executable, "-c", WRITE_MANIFEST, str(root), AGENT, DATE]
        sha256sum = f"{FILE_LIST} | xargs -0 sha256sum > {output}"
        openssl = f"{FILE_LIST} | xargs -0 openssl dgst -sha256 -r > /dev/null"
        openssl_times: list[float] = []

        def baselines() -> float:
            """sha256sum, the baseline; openssl too, timed in the same round."""
            if shutil.which("openssl"):
                openssl_times.append(timed(openssl, cwd=day, env=env))
            return timed(sha256sum, cwd=day, env=env)

        pairs = alternate(runs, lambda: timed(shipyard, cwd=REPO, env=env), baselines)
        _same_manifest(day / MANIFEST, output)
    found = [_measurement(pairs, total, small + large)]
    if openssl_times:  # the first was alternate's warm-up
        found.append(_openssl_measurement([s for s, _ in pairs], openssl_times[1:], total))
    return found


def _measurement(pairs: list[tuple[float, float]], total: int, files: int) -> Measurement:
    ratios = [subject / floor for subject, floor in pairs]
    subject = statistics.median(s for s, _ in pairs)
    floor = statistics.median(b for _, b in pairs)
    return Measurement(
        name="manifest hashing",
        metric=f"wall time to hash {_size(total)} in {files} files and write the manifest, "
        "shipyard / find | sort | xargs sha256sum (page cache warm, one process each)",
        ratios=ratios,
        target="<= 1.0x",
        holds=statistics.median(ratios) <= 1.0,
        figures={
            "shipyard": f"{ms(subject)} ({total / subject / MIB:.0f} MiB/s)",
            "sha256sum": f"{ms(floor)} ({total / floor / MIB:.0f} MiB/s)",
        },
        note=f"{_sha256sum_version()} here; whether it uses the CPU's SHA instructions decides "
        "most of this ratio: hashlib (OpenSSL) does. The openssl line below compares like "
        "with like.",
    )


def _sha256sum_version() -> str:
    try:
        done = subprocess.run(
            ["sha256sum", "--version"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "sha256sum (unknown version)"
    return done.stdout.splitlines()[0]


def _openssl_measurement(subject: list[float], openssl: list[float], total: int) -> Measurement:
    ratios = [ours / theirs for ours, theirs in zip(subject, openssl, strict=True)]
    floor = statistics.median(openssl)
    return Measurement(
        name="manifest hashing vs openssl",
        metric="the same, against find | sort | xargs openssl dgst -sha256 -r (the library "
        "hashlib uses: the same hashing, so this shows Shipyard's own overhead)",
        ratios=ratios,
        target="",
        holds=None,
        figures={"openssl": f"{ms(floor)} ({total / floor / MIB:.0f} MiB/s)"},
    )


def _same_manifest(manifest: Path, baseline_output: Path) -> None:
    ours = manifest.read_bytes()
    if ours != baseline_output.read_bytes():
        raise RuntimeError(f"{manifest} differs from what sha256sum printed for the same files")


@contextmanager
def _evidence_folder(small: int, large: int, large_size: int) -> Iterator[tuple[Path, Path, Path]]:
    """(project root, the day's folder inside it, a file for the baseline's output)."""
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-hashing-"))
    try:
        day = root / "artifacts" / AGENT / DATE
        _write_small_files(day, small)
        _write_large_files(day, large, large_size)
        yield root, day, root / "baseline-output.txt"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _write_small_files(day: Path, count: int) -> None:
    sizes = random.Random(7)  # noqa: S311 - file sizes, not secrets
    for index in range(count):
        folder = day / "logs" / f"20260101T0000{index // 100:02d}Z-{index // 100:04x}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"step-{index % 100:02d}.log").write_bytes(os.urandom(sizes.randint(200, 16384)))


def _write_large_files(day: Path, count: int, size: int) -> None:
    folder = day / "reports" / "20260101T000000Z-0000"
    folder.mkdir(parents=True, exist_ok=True)
    block = os.urandom(min(size, 8 * MIB))
    for index in range(count):
        with (folder / f"artifact-{index}.tar").open("wb") as handle:
            for offset in range(0, size, len(block)):
                handle.write(index.to_bytes(8, "big") + block[: min(len(block), size - offset) - 8])


def _size(total: int) -> str:
    return f"{total / (1 << 30):.2f} GiB" if total >= 1 << 30 else f"{total / MIB:.1f} MiB"
