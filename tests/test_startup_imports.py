"""Listing the tasks imports only what defining them needs: a contract on the modules loaded,
not a timing (bench/startup.py times it). Each listing runs in a fresh interpreter, which
reports the modules it holds when it exits."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import BIN, cli_env, ok, run_cli

CONFIG = """
version: 1
steps:
  build: {run: echo built}
gates: [build]
environments:
  staging: {target: local, start: "python3 -m http.server {port}", port: 8787}
"""

# What only running a command needs. (PyYAML is not here: invoke itself imports it.)
NOT_FOR_LISTING = (
    "tenacity",
    "rich",
    "detect_secrets",
    "shipyard.pipeline",
    "shipyard.runner",
    "shipyard.console",
    "shipyard.heartbeat",
    "shipyard.evidence",
    "shipyard.feedback",
    "shipyard.gha",
    "shipyard.deploy",
    "shipyard.rollback",
    "shipyard.operation",
    "shipyard.targets",
    "shipyard.smoke",
    "shipyard.scan",
    "shipyard.lock",
    "shipyard.provenance",
    "google.protobuf",
)
LISTING_MODULES = {
    "shipyard",
    "shipyard.cli",
    "shipyard.commands",
    "shipyard.config",
    "shipyard.errors",
    "shipyard.process",
    "shipyard.redact",
    "shipyard.streams",  # stdout and stderr that outlive their reader (`inv --list | head`)
    "shipyard.tasks",
    "shipyard.wording",  # ten lines, no imports: how commands say "1 problem"
}

# Runs `inv` or `shipyard` in-process with the given argv, then writes sys.modules as JSON.
PROGRAM = """
import atexit, json, sys
out, which, *args = sys.argv[1:]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
if which == "inv":
    from invoke.main import program
    program.run(["inv", *args])
else:
    from shipyard.cli import main
    main(["shipyard", *args])
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["inv", "--list"],
        ["shipyard", "--list"],
        ["shipyard", "--help", "deploy.staging"],
        ["shipyard", "--version"],
    ],
)
def test_listing_and_help_import_no_module_that_only_running_needs(project, tmp_path, argv):
    root = project(CONFIG)
    modules_file = tmp_path / "modules.json"
    done = ok(run_cli([sys.executable, "-c", PROGRAM, str(modules_file), *argv], root))
    if argv[1:] == ["--list"]:
        assert "deploy.staging" in done.stdout  # the namespace was built from the config
    modules = set(json.loads(modules_file.read_text()))
    assert not modules & set(NOT_FOR_LISTING)
    ours = {name for name in modules if name.startswith("shipyard")}
    assert {name for name in ours if not name.startswith("shipyard.config.")} <= LISTING_MODULES


def test_running_a_command_still_imports_what_it_needs(project, tmp_path):
    """The contract above is not met by breaking commands: `inv build` runs its step."""
    root = project(CONFIG)
    done = ok(run_cli([str(BIN / "inv"), "build"], root))
    assert "built" in done.stdout
    assert any(Path(root, "artifacts").rglob("sha256_manifest.txt"))


@pytest.mark.parametrize("program", ["inv", "shipyard"])
@pytest.mark.parametrize("python_says", [None, "1"])
def test_what_a_task_imports_is_cached_as_bytecode_unless_python_says_not(
    project, tmp_path, program, python_says
):
    """invoke turns .pyc writing off for everything after its parse; Shipyard gives the choice
    back to Python (-B, PYTHONDONTWRITEBYTECODE), so the modules a task imports lazily are not
    compiled again on every run."""
    root = project(CONFIG)
    prefix = tmp_path / "pyc"
    env = cli_env(PYTHONPYCACHEPREFIX=str(prefix))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if python_says:
        env["PYTHONDONTWRITEBYTECODE"] = python_says
    ok(run_cli([str(BIN / program), "build"], root, env=env))
    cached = {path.name.split(".")[0] for path in prefix.rglob("*.pyc")}
    if python_says:
        assert not cached
    else:
        assert {"pipeline", "runner", "evidence"} <= cached  # imported when the step ran
