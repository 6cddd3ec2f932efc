"""The sample project's isolated gates, shaped like Shipyard's own noxfile.py: one session per
gate, each installing the package, the tool it needs and Shipyard (from $SHIPYARD_SOURCE, the
benchmark's checkout, or else the repository holding this sample), then running
`shipyard step <gate>`."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["gates"]
nox.options.error_on_missing_interpreters = True

SHIPYARD = os.environ.get("SHIPYARD_SOURCE") or str(Path(__file__).resolve().parents[3])


def _step(session: nox.Session, name: str, *tools: str) -> None:
    session.install(".", SHIPYARD, *tools)
    session.run("shipyard", "step", name, *session.posargs)


@nox.session
def fmt(session: nox.Session) -> None:
    _step(session, "fmt", "ruff")


@nox.session
def lint(session: nox.Session) -> None:
    _step(session, "lint", "ruff")


@nox.session
def tests(session: nox.Session) -> None:
    _step(session, "test:ci", "pytest")


@nox.session
def scan(session: nox.Session) -> None:
    _step(session, "scan")


@nox.session(requires=["fmt", "lint", "tests", "scan"])
def gates(session: nox.Session) -> None:
    session.install(SHIPYARD)
    session.run("shipyard", "evidence.verify")
