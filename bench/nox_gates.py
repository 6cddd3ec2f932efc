"""Isolated gates: `nox -s gates` with the uv backend against the virtualenv backend.

Running this repository's own `nox -s gates` would run the whole test suite inside `test:ci`
(minutes), so the benchmark runs a sample project shaped like it (bench/projects/gates/): a
tiny package whose noxfile has one session per gate (fmt, lint, tests, scan), each installing
the package, its tool and Shipyard from this checkout (`$SHIPYARD_SOURCE`) and running
`shipyard step <gate>`, and a `gates` session requiring them all.

Each measurement runs in a fresh copy of the sample, committed in a git repository of its own
(as a user's project is; `shipyard scan` then reads the tracked files). "Fresh" is a copy with
no .nox folder; "reuse" is `nox -R` on a .nox folder an earlier run built. Both backends are
forced with `--force-venv-backend`; the download caches of uv and pip are warmed once first
(unrecorded), so the figures compare environment building, not the network.

The target: the backend noxfile.py picks by default (the first available of its
`default_venv_backend` chain) is the faster one measured; a median within 5% is a tie. See
BYTECODE_NOTE for what made uv's reuse the slower at first.
"""

from __future__ import annotations

import ast
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import BIN, REPO, Measurement, alternate, bench_env, timed

SAMPLE = REPO / "bench" / "projects" / "gates"
NOXFILE = REPO / "noxfile.py"
NOX_DEFAULT_BACKEND = "virtualenv"  # nox's own, when a noxfile sets none
IGNORED = shutil.ignore_patterns(
    ".nox", "__pycache__", ".ruff_cache", ".pytest_cache", "artifacts", "feedback"
)
TIE = 0.05
FRESH_RUNS = 3  # a fresh virtualenv run takes 35-65 s here: three keep this near 3 minutes
REUSE_RUNS = 6  # a reuse takes about 2 s, and its ratio is the noisier
TARGET = "default = the faster available"
BYTECODE_NOTE = (
    "uv, unlike pip, does not compile bytecode as it installs, and invoke's Program sets "
    "sys.dont_write_bytecode unless --write-pyc, so nothing a task imported after the parse was "
    "ever cached: each reused uv session recompiled Shipyard's lazily imported modules and "
    "detect-secrets, and uv's reuse took 1.25x virtualenv's (2.4 s vs 1.9 s). Shipyard now "
    "gives bytecode writing back to Python's own setting once invoke has parsed "
    "(shipyard.tasks.cache_bytecode)."
)


def run(quick: bool) -> list[Measurement]:
    has_uv = uv_available()
    default = default_backend(has_uv=has_uv)
    env = bench_env(SHIPYARD_SOURCE=str(REPO))
    with _workspace() as workspace:
        if quick:
            return [_smoke(workspace, env, has_uv=has_uv)]
        return _gates(workspace, env, default, has_uv=has_uv)


def uv_available() -> bool:
    """uv as nox finds it: next to the nox in use, or on PATH."""
    return (BIN / "uv").exists() or shutil.which("uv") is not None


def default_backend(*, has_uv: bool) -> str:
    """The backend noxfile.py's `default_venv_backend` chain resolves to on this machine."""
    chain = NOX_DEFAULT_BACKEND
    for node in ast.walk(ast.parse(NOXFILE.read_text())):
        if isinstance(node, ast.Assign) and any(
            ast.unparse(target) == "nox.options.default_venv_backend" for target in node.targets
        ):
            chain = ast.literal_eval(node.value)
    backends = chain.split("|")
    return next((name for name in backends if name != "uv" or has_uv), backends[-1])


def _gates(
    workspace: Path, env: dict[str, str], default: str, *, has_uv: bool
) -> list[Measurement]:
    backends = ("uv", "virtualenv") if has_uv else ("virtualenv",)
    for backend in backends:  # warm the caches: these two sessions install every package
        warm = _sample(workspace, f"warm-{backend}")
        _nox(warm, backend, env, "-s", "fmt", "tests")
        shutil.rmtree(warm)
    built = {backend: _sample(workspace, f"reuse-{backend}") for backend in backends}
    fresh: dict[str, list[float]] = {backend: [] for backend in backends}
    for repetition in range(FRESH_RUNS):
        for backend in backends:
            folder = built[backend] if repetition == 0 else _sample(workspace, backend)
            fresh[backend].append(_nox(folder, backend, env, "-s", "gates"))
            if folder != built[backend]:
                shutil.rmtree(folder)
    reuse: dict[str, list[float]] = {backend: [] for backend in backends}
    for _ in range(REUSE_RUNS):
        for backend in backends:
            reuse[backend].append(_nox(built[backend], backend, env, "-s", "gates", "-R"))
    return [
        _compare("nox gates fresh", "from no .nox folder", fresh, default),
        _compare("nox gates reuse (-R)", "with -R on a built .nox", reuse, default),
    ]


def _compare(name: str, how: str, times: dict[str, list[float]], default: str) -> Measurement:
    figures = {backend: _seconds(statistics.median(t)) for backend, t in times.items()}
    figures |= {"default": default, "caches": "warm"}
    if "uv" not in times:
        return Measurement(
            name=name,
            metric=f"wall time of `nox -s gates` {how}; uv absent: virtualenv alone (ratio 1)",
            ratios=[1.0] * len(times["virtualenv"]),
            target="",
            holds=None,
            figures=figures,
            note="uv is not installed (pip install 'nox[uv]'): nothing to compare.",
        )
    ratios = [uv / venv for uv, venv in zip(times["uv"], times["virtualenv"], strict=True)]
    median = statistics.median(ratios)
    faster = "tie" if abs(median - 1) <= TIE else ("uv" if median < 1 else "virtualenv")
    figures["faster"] = faster
    return Measurement(
        name=name,
        metric=f"wall time of `nox -s gates` {how} (5 sessions, caches warm), uv / virtualenv",
        ratios=ratios,
        target=TARGET,
        holds=faster in ("tie", default),
        figures=figures,
        note=BYTECODE_NOTE,
    )


def _smoke(workspace: Path, env: dict[str, str], *, has_uv: bool) -> Measurement:
    """Quick mode: `nox --list` on the sample with each backend forced. A smoke check that the
    sample and its noxfile load, not a comparison of the backends (nothing is built)."""
    folder = _sample(workspace, "smoke")
    uv_backend = "uv" if has_uv else "virtualenv"
    pairs = alternate(
        2,
        lambda: _nox(folder, uv_backend, env, "--list"),
        lambda: _nox(folder, "virtualenv", env, "--list"),
    )
    return Measurement(
        name="nox gates smoke (quick: nox --list)",
        metric=f"wall time of `nox --list` on the sample, {uv_backend} / virtualenv (smoke check)",
        ratios=[subject / baseline for subject, baseline in pairs],
        target="",
        holds=None,
        figures={"uv": "found" if has_uv else "absent"},
    )


def _nox(folder: Path, backend: str, env: dict[str, str], *argv: str) -> float:
    return timed([str(BIN / "nox"), "--force-venv-backend", backend, *argv], cwd=folder, env=env)


def _sample(workspace: Path, label: str) -> Path:
    """A copy of the sample project, committed in a git repository of its own."""
    folder = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=workspace))
    shutil.copytree(SAMPLE, folder, dirs_exist_ok=True, ignore=IGNORED)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "sample", "--no-gpg-sign"]):
        subprocess.run([*git, *argv], cwd=folder, env=bench_env(), check=True)
    return folder


@contextmanager
def _workspace() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-nox-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _seconds(value: float) -> str:
    return f"{value:.1f} s"
