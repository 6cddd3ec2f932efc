"""The example webapp: its reproducible build and the server a built artifact runs."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

WEBAPP = Path(__file__).resolve().parents[1] / "examples" / "webapp"
VERSION = (WEBAPP / "VERSION").read_text().strip()
ARCHIVE = f"webapp-{VERSION}.tar.gz"
MEMBERS = [
    "build-info.json",
    "webapp",
    "webapp/__init__.py",
    "webapp/__main__.py",
    "webapp/server.py",
]
FIXED_EPOCH = 315532800
WEBAPP_VARIABLES = {"PORT", "APP_ENV", "SHIPYARD_RELEASE", "SOURCE_DATE_EPOCH", "PYTHONPATH"}


def webapp_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in WEBAPP_VARIABLES}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def build(cwd: Path, *args: str, source: Path = WEBAPP, **env: str) -> Path:
    """Run build.py as a user would and return the path it reports on its last stdout line."""
    result = subprocess.run(
        [sys.executable, str(source / "build.py"), *args],
        cwd=cwd,
        env=webapp_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.splitlines()[-1])


def repository_sha() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=WEBAPP, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def build_info_text(version: str, sha: str) -> str:
    return f'{{\n  "git_sha": "{sha}",\n  "name": "webapp",\n  "version": "{version}"\n}}\n'


def copy_of_sources(tmp_path: Path) -> Path:
    """The webapp sources outside any git work tree, free to modify."""
    ignore = shutil.ignore_patterns("__pycache__")
    return Path(shutil.copytree(WEBAPP, tmp_path / "src", ignore=ignore))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_webapp(cwd: Path, args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    command = [sys.executable, "-m", "webapp", *args]
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def request(port: int, method: str, path: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def wait_until_answering(process: subprocess.Popen, port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"webapp exited early ({process.returncode}): {process.stderr.read()}")
        try:
            request(port, "GET", "/healthz")
        except OSError:
            time.sleep(0.02)
        else:
            return
    pytest.fail(f"webapp did not answer on port {port} within {timeout}s")


def stop(process: subprocess.Popen, signum: signal.Signals) -> tuple[int, str, str]:
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=5)
    return process.returncode, stdout, stderr


def assert_port_closed(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_two_builds_are_byte_identical_and_report_their_path(tmp_path):
    default_out = build(tmp_path)
    chosen_out = build(tmp_path, "--out", "elsewhere")
    assert default_out == tmp_path / "dist" / ARCHIVE
    assert chosen_out == tmp_path / "elsewhere" / ARCHIVE
    assert default_out.read_bytes() == chosen_out.read_bytes()
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == [ARCHIVE]


def test_archive_holds_exactly_the_package_and_build_info_with_normalised_attributes(tmp_path):
    artifact = build(tmp_path)
    with tarfile.open(artifact) as archive:
        members = archive.getmembers()
        assert archive.pax_headers == {}
        info = archive.extractfile("build-info.json").read().decode()
    assert [m.name for m in members] == MEMBERS
    for member in members:
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        assert member.mtime == FIXED_EPOCH
        assert member.pax_headers == {}
        assert member.mode == (0o755 if member.isdir() else 0o644)
    assert info == build_info_text(VERSION, repository_sha())
    header = artifact.read_bytes()[:10]
    assert header[3] == 0, "gzip header carries a file name or other optional fields"
    assert header[4:8] == b"\0\0\0\0", "gzip header carries a timestamp"


def test_source_date_epoch_sets_member_mtimes(tmp_path):
    artifact = build(tmp_path, SOURCE_DATE_EPOCH="1700000000")
    with tarfile.open(artifact) as archive:
        assert {m.mtime for m in archive.getmembers()} == {1700000000}


def test_only_package_sources_count_and_a_changed_source_changes_the_bytes(tmp_path):
    source = copy_of_sources(tmp_path)
    original = build(tmp_path, "--out", "original", source=source).read_bytes()
    (source / "webapp" / "__pycache__").mkdir()
    (source / "webapp" / "__pycache__" / "server.cpython-311.pyc").write_bytes(b"\0stale")
    (source / "webapp" / "notes.txt").write_text("not shipped\n")
    assert build(tmp_path, "--out", "with-clutter", source=source).read_bytes() == original
    server_py = source / "webapp" / "server.py"
    server_py.write_text(server_py.read_text() + "\n# changed\n")
    assert build(tmp_path, "--out", "changed", source=source).read_bytes() != original


def test_version_override_names_the_artifact_and_build_info(tmp_path):
    source = copy_of_sources(tmp_path)
    artifact = build(tmp_path, "--version", "2.0.0-rc1", source=source)
    assert artifact.name == "webapp-2.0.0-rc1.tar.gz"
    with tarfile.open(artifact) as archive:
        info = archive.extractfile("build-info.json").read().decode()
    assert info == build_info_text("2.0.0-rc1", "unknown")


def test_unpacked_artifact_serves_its_identity_and_stops_cleanly_on_sigterm(tmp_path):
    artifact = build(tmp_path)
    app_dir = tmp_path / "app"
    with tarfile.open(artifact) as archive:
        archive.extractall(app_dir, filter="data")
    sha = json.loads((app_dir / "build-info.json").read_text())["git_sha"]
    port = free_port()
    env = webapp_env(SHIPYARD_RELEASE="v7", APP_ENV="staging")
    with running_webapp(app_dir, ["--port", str(port)], env) as process:
        wait_until_answering(process, port)
        status, content_type, body = request(port, "GET", "/")
        assert (status, content_type) == (200, "text/html; charset=utf-8")
        assert f"version={VERSION} git={sha} release=v7" in body.decode()
        assert "env=staging" in body.decode()
        assert request(port, "HEAD", "/") == (200, "text/html; charset=utf-8", b"")
        assert request(port, "GET", "/healthz") == (200, "text/plain; charset=utf-8", b"ok")
        assert request(port, "HEAD", "/healthz") == (200, "text/plain; charset=utf-8", b"")
        assert request(port, "GET", "/nope")[0] == 404
        returncode, stdout, stderr = stop(process, signal.SIGTERM)
    assert returncode == 0, stderr
    assert stdout == f"webapp {VERSION} listening on http://127.0.0.1:{port}/\n"
    assert "Traceback" not in stderr
    assert_port_closed(port)


def test_port_comes_from_the_environment_and_sigint_stops_cleanly(tmp_path):
    port = free_port()
    with running_webapp(WEBAPP, [], webapp_env(PORT=str(port))) as process:
        wait_until_answering(process, port)
        status, _, body = request(port, "GET", "/")
        assert status == 200
        assert f"version={VERSION} git=unknown release=unreleased" in body.decode()
        assert "env=" not in body.decode()
        returncode, stdout, stderr = stop(process, signal.SIGINT)
    assert returncode == 0, stderr
    assert stdout == f"webapp {VERSION} listening on http://127.0.0.1:{port}/\n"
    assert "Traceback" not in stderr
    assert_port_closed(port)
