"""What tests share that is not a fixture: paths, a user's environment, running the CLI as a
user does, and reading the evidence a run leaves. Fixtures and hooks stay in conftest.py."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import subprocess
import sys
import tempfile
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
ISO = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]  # commits need a name


def random_secret() -> str:
    return "s3" + secrets.token_urlsafe(18)


def write_project(root: Path, config: str) -> Path:
    """A throwaway project: shipyard.yaml plus the three-line tasks.py a user would write."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "shipyard.yaml").write_text(textwrap.dedent(config).lstrip())
    (root / "tasks.py").write_text("from shipyard.tasks import namespace\n\nns = namespace()\n")
    return root


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "GITHUB_"))}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env.pop("CI", None)
    env.update(extra)
    return env


def run_cli(args: list[str], cwd: Path, *, env: dict[str, str] | None = None, timeout: float = 120):
    """Run `inv`/`shipyard`/a script as a user would: a real subprocess, output captured."""
    return subprocess.run(
        args,
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_here(
    args: list[str], cwd: Path, *, env: dict[str, str] | None = None, program: str = "inv"
) -> subprocess.CompletedProcess[str]:
    """`inv ARGS` in this process: the Program the `shipyard` script runs, over the task
    collection `inv` loads from a project's tasks.py, with the argv (`program`: what the run
    record names), `cwd`, `env` and umask a new process would have, its file descriptors 1 and
    2 captured (its children's output too). For the quick suite: the same code paths without a
    Python start-up per call. What needs a process of its own (a signal, SIGKILL, start-up
    imports, `inv`'s own parser, which exits 1 where `shipyard` exits 2) uses run_cli."""
    from shipyard import cli

    argv = [str(BIN / program), *args]
    environ = env or cli_env()
    saved_environ, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    saved_umask = os.umask(0o022)
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    sys.argv = argv
    code = 0
    try:
        with _captured() as output:
            try:
                cli.main(argv)
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else int(done.code is not None)
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
        os.umask(saved_umask)
    return subprocess.CompletedProcess(argv, code, *output)


@contextlib.contextmanager
def _captured() -> Iterator[list[str]]:
    """Descriptors 1 and 2 (and sys.stdout, sys.stderr over them) into files; on leaving, the
    list yielded holds what was written to each, as text."""
    sys.stdout.flush()
    sys.stderr.flush()
    texts: list[str] = []
    streams = sys.stdout, sys.stderr
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "wb", closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "wb", closefd=False), write_through=True)
        try:
            yield texts
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(ValueError, OSError):
                    stream.flush()
            sys.stdout, sys.stderr = streams
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            for file in (out, err):
                file.seek(0)
                texts.append(file.read().decode(errors="replace"))


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Assert a command succeeded; when it did not, show all it printed (pytest would cut it)."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def evidence_dir(root: Path, agent: str = "devops") -> Path:
    days = sorted((root / "artifacts" / agent).glob("20*"))
    assert days, f"no evidence under {root / 'artifacts' / agent}"
    return days[-1]


def sha256sum_check(day: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sha256sum", "-c", "--strict", "sha256_manifest.txt"],
        cwd=day,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )


def http_get(url: str) -> tuple[int | None, str]:
    """The status and body `url` answers with: (None, "") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError:
        return None, ""
