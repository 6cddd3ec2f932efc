"""Output throughput and memory: one step printing hundreds of MB of log lines, against
`generator | tee file >/dev/null`, in four cases measured side by side in one run: 20 secrets
registered (one printed per MiB), on each masking engine installed; no secrets registered;
and a secret printed on every line.

Both sides run the same generator (`gen.py`: a megabyte of varied log lines built once,
written in big blocks, with the secrets where the case puts them), so the ratio measures what
each side does with the output, not how it is made. Shipyard's time is the step's own
duration from its run record (spawn to the last byte masked, logged and printed); start-up
and the evidence written at the end are shown beside it. Peak memory is the maximum resident
set of the `shipyard` process and its children, from wait4().
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import statistics
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common import BIN, Measurement, alternate, bench_env, project

from shipyard.redact import ENGINE_VARIABLE, ENGINES, default_engine

SECRET_NAMES = [f"BENCH_SECRET_{n:02d}" for n in range(1, 21)]
TARGET_RATIO = 0.8
TARGET_PEAK_MB = 60.0
MB = 1_000_000


@dataclass(frozen=True)
class Case:
    name: str
    secrets: bool  # 20 registered (and printed), or none at all
    every_line: bool  # a secret on every line, or one per MiB
    engine: str  # SHIPYARD_MASKING_ENGINE


def cases() -> list[Case]:
    """The headline case on the default engine first, then the other engines, then the
    cases that bound it: nothing to mask, and something to mask on every line."""
    engines = [default_engine(), *(name for name in ENGINES if name != default_engine())]
    return [
        *(Case(f"20 secrets, one per MiB, {name}", True, False, name) for name in engines),
        Case(f"no secrets registered, {engines[0]}", False, False, engines[0]),
        Case(f"a secret on every line, {engines[0]}", True, True, engines[0]),
    ]


GENERATOR = """\
import os, random, sys

total, every_line = int(sys.argv[1]), sys.argv[2] == "every-line"
tokens = [os.environ[name] for name in sorted(os.environ) if name.startswith("BENCH_SECRET_")]
rng = random.Random(7)
words = "compiling linking module bundle chunk asset test passed cached fetched wrote".split()
lines, length = [], 0
while length < 1 << 20:
    token = f" token={tokens[len(lines) % len(tokens)]}" if every_line and tokens else ""
    lines.append(
        f"2026-11-30T06:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z "
        f"{rng.choice(['INFO', 'DEBUG', 'WARN'])} {' '.join(rng.choices(words, k=6))} "
        f"src/app/m{rng.randrange(999)}.ts -> dist/{rng.getrandbits(64):016x}.js "
        f"({rng.randrange(1, 9999)} ms, {rng.random():.3f} \\u00b5s/op){token}\\n"
    )
    length += len(lines[-1])
block = "".join(lines).encode()
write = sys.stdout.buffer.write
written = blocks = 0
while written < total:
    part = block[: total - written]
    write(part)
    written += len(part)
    if written < total and tokens and not every_line:
        line = f"deploy: using token {tokens[blocks % len(tokens)]}\\n".encode()
        write(line[: total - written])
        written += len(line)
        blocks += 1
"""


@dataclass(frozen=True)
class Sample:
    seconds: float  # the output's own time (see the module docstring)
    whole: float  # wall time of the whole command
    peak_mb: float


def run(quick: bool) -> list[Measurement]:
    size, small, runs = (4 * MB, 1 * MB, 2) if quick else (500 * MB, 50 * MB, 5)
    tokens = {name: secrets.token_urlsafe(24) for name in SECRET_NAMES}
    measurements = []
    with project(_config(), {"gen.py": GENERATOR}) as root:
        for number, case in enumerate(cases()):
            env = bench_env(**{ENGINE_VARIABLE: case.engine, **(tokens if case.secrets else {})})
            if case.secrets:
                _check_masking(root, env, case, 4 * MB)
            pairs = alternate(
                runs,
                functools.partial(_shipyard, root, env, case, size),
                functools.partial(_tee, root, env, case, size),
            )
            measurements.append(_throughput(case, pairs, size, targeted=number == 0))
            if number == 0:  # the headline case: memory at two sizes, start-up beside it
                smaller = _shipyard(root, env, case, small)
                idle = _shipyard(root, env, case, 0)
                measurements.append(_memory(pairs, smaller, idle, size, small))
    return measurements


def _config() -> str:
    return (
        "version: 1\nagent: bench\n"
        "steps:\n  print: {run: python3 gen.py $BENCH_BYTES $BENCH_MODE}\n"
    )


def _shipyard(root: Path, env: Mapping[str, str], case: Case, size: int) -> Sample:
    for folder in ("artifacts", "feedback"):
        shutil.rmtree(root / folder, ignore_errors=True)
    whole, peak = _measured([str(BIN / "shipyard"), "step", "print"], root, env, case, size)
    (record,) = (root / "artifacts").glob("bench/*/runs/*.json")
    document = json.loads(record.read_text())
    (step,) = document["steps"]
    if step["status"] != "ok" or step["attempts"][0]["out_bytes"] != size:
        raise RuntimeError(f"the step did not print {size} bytes: {step}")
    if not document["masking_engine"].startswith(case.engine):
        raise RuntimeError(f"{case.engine} did not mask: {document['masking_engine']}")
    return Sample(step["duration"], whole, peak)


def _tee(root: Path, env: Mapping[str, str], case: Case, size: int) -> Sample:
    command = "python3 gen.py $BENCH_BYTES $BENCH_MODE | tee tee.log >/dev/null"
    whole, peak = _measured(["bash", "-c", command], root, env, case, size)
    if (root / "tee.log").stat().st_size != size:
        raise RuntimeError("tee did not write every byte")
    (root / "tee.log").unlink()
    return Sample(whole, whole, peak)


def _measured(
    argv: list[str], root: Path, env: Mapping[str, str], case: Case, size: int
) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command and its children."""
    mode = "every-line" if case.every_line else "per-block"
    began = time.perf_counter()
    process = subprocess.Popen(
        argv,
        cwd=root,
        env={**env, "BENCH_BYTES": str(size), "BENCH_MODE": mode},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"{argv} exited {process.returncode}: {error[-500:]}")
    return elapsed, usage.ru_maxrss / 1024


def _check_masking(root: Path, env: Mapping[str, str], case: Case, size: int) -> None:
    """Every secret the generator printed is masked in the step log."""
    _shipyard(root, env, case, size)
    (log,) = (root / "artifacts").glob("bench/*/logs/*/print.log")
    text = log.read_text()
    leaked = [name for name in SECRET_NAMES if env[name] in text]
    printed = text.count("\n") if case.every_line else size // ((1 << 20) + 60)
    if leaked or text.count("token ***") + text.count("token=***") < printed:
        raise RuntimeError(f"masking failed: leaked {leaked}")


def _throughput(
    case: Case, pairs: list[tuple[Sample, Sample]], size: int, *, targeted: bool
) -> Measurement:
    """The ratio of throughputs; the target is the headline case's, the others are reported."""
    tee = statistics.median(b.seconds for _, b in pairs)
    step = statistics.median(s.seconds for s, _ in pairs)
    ratios = [b.seconds / s.seconds for s, b in pairs]
    return Measurement(
        name=f"output throughput: {case.name}",
        metric=f"throughput of {size // MB} MB through a step, shipyard / tee",
        ratios=ratios,
        target=f">= {TARGET_RATIO}x tee" if targeted else "",
        holds=statistics.median(ratios) >= TARGET_RATIO if targeted else None,
        figures={
            "shipyard step": f"{size / MB / step:.0f} MB/s",
            "tee": f"{size / MB / tee:.0f} MB/s",
            "whole shipyard step command": f"{statistics.median(s.whole for s, _ in pairs):.2f} s",
            "peak RSS": f"{max(s.peak_mb for s, _ in pairs):.0f} MB",
        },
    )


def _memory(
    pairs: list[tuple[Sample, Sample]], smaller: Sample, idle: Sample, size: int, small: int
) -> Measurement:
    ours = [s for s, _ in pairs]
    peak = max(s.peak_mb for s in ours)
    return Measurement(
        name="output peak memory",
        metric=f"peak RSS of shipyard printing {size // MB} MB / printing {small // MB} MB",
        ratios=[s.peak_mb / smaller.peak_mb for s in ours],
        target=f"< {TARGET_PEAK_MB:.0f} MB at any size",
        holds=max(peak, smaller.peak_mb) < TARGET_PEAK_MB,
        figures={
            f"peak RSS at {small // MB} MB": f"{smaller.peak_mb:.0f} MB",
            f"at {size // MB} MB": f"{peak:.0f} MB",
            "printing nothing": f"{idle.peak_mb:.0f} MB",
            "generator | tee": f"{max(b.peak_mb for _, b in pairs):.0f} MB",
        },
    )
