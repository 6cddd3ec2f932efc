"""examples/node-app as its team uses it: a git checkout, `inv gates`, `inv deploy.local`, real
npm scripts and a real node server on 127.0.0.1. Nothing is installed or downloaded."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import BIN, GIT, REPO, cli_env, evidence_dir, http_get, run_cli, sha256sum_check

from shipyard.server import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH"),
]

EXAMPLE = REPO / "examples" / "node-app"
LOCAL_PORT = "port: 8788"
NOT_COPIED = shutil.ignore_patterns(
    "node_modules", "dist", "artifacts", "feedback", ".shipyard", ".git"
)


def checkout(root: Path, *, port: int | None = None) -> Path:
    """A committed copy of the example, as a teammate's clone; `port` replaces 8788."""
    shutil.copytree(EXAMPLE, root, ignore=NOT_COPIED)
    if port is not None:
        config = root / "shipyard.yaml"
        text = config.read_text()
        assert text.count(LOCAL_PORT) == 1
        config.write_text(text.replace(LOCAL_PORT, f"port: {port}"))
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "node-app"]):
        subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True)
    return root


def npm(root: Path, script: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["npm", "run", "--silent", script], root, timeout=60)


@pytest.fixture
def deployed_servers():
    """Roots whose servers (and Caddy, in proxy mode) `inv stop` stops after the test."""
    roots: list[Path] = []
    yield roots
    for root in roots:
        run_cli([str(BIN / "inv"), "stop", "--env", "local"], root)


def test_gates_pass_and_deploy_local_serves_the_release(tmp_path, deployed_servers):
    port = free_port()
    root = checkout(tmp_path / "node-app", port=port)
    assert cli_env()["PATH"].split(os.pathsep)[0] == str(BIN) and "CI" not in cli_env()

    gates = run_cli([str(BIN / "inv"), "gates"], root)
    assert gates.returncode == 0, gates.stdout + gates.stderr
    checked = sha256sum_check(evidence_dir(root))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    deployed_servers.append(root)
    deploy = run_cli([str(BIN / "inv"), "deploy.local"], root)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    status, page = http_get(f"http://127.0.0.1:{port}/")
    assert status == 200, deploy.stdout
    assert "version=1.0.0" in page and "release=v1" in page
    assert http_get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
    release = root / ".shipyard" / "local" / "releases" / "v1" / "package" / "src" / "server.js"
    assert release.is_file()  # served from the unpacked npm pack tarball


def test_fmt_and_lint_pass_on_the_example_and_fail_on_a_tab_and_a_var(tmp_path):
    clean = tmp_path / "clean"
    shutil.copytree(EXAMPLE, clean, ignore=NOT_COPIED)
    assert npm(clean, "fmt").returncode == 0
    assert npm(clean, "lint").returncode == 0

    broken = tmp_path / "broken"
    shutil.copytree(EXAMPLE, broken, ignore=NOT_COPIED)
    source = broken / "src" / "app.js"
    lines = source.read_text().splitlines(keepends=True)
    lines[1:1] = ["\tvar added = 1;\n"]  # line 2: a tab and a var
    source.write_text("".join(lines))

    fmt = npm(broken, "fmt")
    assert fmt.returncode == 1, fmt.stdout + fmt.stderr
    assert "src/app.js:2: tab character" in fmt.stdout

    lint = npm(broken, "lint")
    assert lint.returncode == 1, lint.stdout + lint.stderr
    assert "src/app.js:2: `var` declaration" in lint.stdout
