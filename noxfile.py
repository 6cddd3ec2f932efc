"""Isolated gates: each session builds its own environment and runs one Shipyard step in it,
so every gate is heartbeat-instrumented and leaves evidence, exactly as `inv gates` does.

The gate list lives in one place, `gates:` in shipyard.yaml: a session is made for each gate,
named after it (`nox -s test:ci`) and tagged `gate`, and `gates` requires them all. In CI the
same list fans out over runners (`shipyard gates --list --json`, docs/github-actions.md), a
leg running `nox -s <gate>`."""

from __future__ import annotations

from pathlib import Path

import nox
import yaml  # nox runs from the project's environment, which has PyYAML (a Shipyard need)

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["gates"]
nox.options.error_on_missing_interpreters = True

CONFIG = Path(__file__).with_name("shipyard.yaml")
# What each gate's own tools need beyond the package: an extra of pyproject.toml.
EXTRAS = {"fmt": "fmt", "lint": "lint", "test:ci": "dev"}


def _gates() -> list[str]:
    return list(yaml.safe_load(CONFIG.read_text(encoding="utf-8")).get("gates") or [])


def _gate_session(gate: str) -> str:
    """A session that installs what `gate` needs and runs it as a Shipyard step."""
    extra = EXTRAS.get(gate, "")

    def run(session: nox.Session) -> None:
        session.install(f".[{extra}]" if extra else ".")
        session.run("shipyard", "step", gate, *session.posargs)

    run.__doc__ = f"The `{gate}` gate, as `shipyard step {gate}` in its own environment."
    nox.session(name=gate, tags=["gate"])(run)
    return gate


GATE_SESSIONS = [_gate_session(gate) for gate in _gates()]


@nox.session(name="pre-commit", default=False)
def pre_commit(session: nox.Session) -> None:
    """The .pre-commit-config.yaml hooks over every file (not a gate: it may reformat)."""
    session.install(".[lint]")
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure", *session.posargs)


@nox.session(requires=GATE_SESSIONS)
def gates(session: nox.Session) -> None:
    """Every gate of shipyard.yaml, each in its own environment, then the evidence verified."""
    session.install(".")
    session.run("shipyard", "evidence.verify")
