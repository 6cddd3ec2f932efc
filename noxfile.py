"""Isolated gates: each session builds its own environment and runs one Shipyard step in it,
so every gate is heartbeat-instrumented and leaves evidence, exactly as `inv gates` does."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["gates"]
nox.options.error_on_missing_interpreters = True


def _step(session: nox.Session, name: str, extra: str = "") -> None:
    """Install the package (with `extra`: what the step's own tools need) and run the step."""
    session.install(f".[{extra}]" if extra else ".")
    session.run("shipyard", "step", name, *session.posargs)


@nox.session
def fmt(session: nox.Session) -> None:
    """ruff format --check, as the `fmt` step."""
    _step(session, "fmt", "fmt")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, mypy --strict, check-jsonschema and zizmor, as the `lint` step."""
    _step(session, "lint", "lint")


@nox.session(name="pre-commit", default=False)
def pre_commit(session: nox.Session) -> None:
    """The .pre-commit-config.yaml hooks over every file (not a gate: it may reformat)."""
    session.install(".[lint]")
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole pytest suite (quick and e2e), as the `test:ci` step."""
    _step(session, "test:ci", "dev")


@nox.session
def scan(session: nox.Session) -> None:
    """Secret scan of the tracked files, as the `scan` step."""
    _step(session, "scan")


@nox.session(requires=["fmt", "lint", "tests", "scan"])
def gates(session: nox.Session) -> None:
    """All four gates, each in its own environment; then the day's evidence is verified."""
    session.install(".")
    session.run("shipyard", "evidence.verify")
