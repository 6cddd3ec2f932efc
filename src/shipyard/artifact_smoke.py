"""The artifact smoke: what a deploy is about to ship, started on a free 127.0.0.1 port without
the environment's variables, and probed. A deploy runs it as its step `Smoke`; `inv smoke`
(deploy.smoke) runs it alone.

For a target that ships an image (Fly), the thing tested is the image itself when docker is
usable here (`docker info` answers within DOCKER_INFO_SECONDS): pulled, run with
`docker run --rm -d -p 127.0.0.1:<free port>:<internal_port>`, probed, stopped. Otherwise (no
docker, no daemon, the image cannot be pulled, no internal_port) the built archive is unpacked
into a temporary folder and started with the environment's `start` command, as for the local
target. Either way the step says, and the run record keeps (`smoke_tested`), which one it was:
`image <ref>` or `tarball <path> (docker not usable: <why>)`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from shipyard import server, unpacking
from shipyard.config import Environment
from shipyard.errors import StepFailed, UsageError
from shipyard.process import communicate_within
from shipyard.smoke import SmokeCheck, probe
from shipyard.targets import Say
from shipyard.targets.images import BuiltImage

ARTIFACT_SERVER_GRACE = 5.0
DOCKER_INFO_SECONDS = 5.0  # `docker info`: a daemon that does not answer by then is not usable
DOCKER_PULL_SECONDS = 600.0
DOCKER_CALL_SECONDS = 60.0  # run -d, logs, stop
DOCKER_STOP_GRACE = 5  # `docker stop -t`: SIGTERM, then SIGKILL inside the container


def smoke_artifact(
    environment: Environment,
    archive: Path,
    say: Say,
    stop: threading.Event,
    image: BuiltImage | None = None,
    *,
    no_docker: str | None = None,
    root: Path | None = None,
) -> str:
    """Smoke `image` when docker can run it (`no_docker`: why it cannot, from
    `docker_problem`), else the archive; returns (and says) which: `image <ref>`,
    `tarball <path>`, `tarball <path> (docker not usable: <why>)`, the path relative to
    `root` when given."""
    tested = f"tarball {archive.relative_to(root).as_posix() if root else archive}"
    if image is not None:
        why = no_docker
        docker = shutil.which("docker") if why is None else None
        why = why if docker is not None or why else "no docker on PATH"
        if docker is not None:
            why = _pull(docker, image.ref, say, stop)
        if docker is not None and why is None:
            _smoke_image(docker, image, environment, say, stop)
            return _tested(f"image {image.ref}", say)
        tested += f" (docker not usable: {why})"
        say(f"not smoke-testing image {image.ref}: docker not usable: {why}")
        if not environment.start:
            return _tested(f"nothing: no start command, and docker not usable: {why}", say)
    _smoke_archive(environment, archive, say, stop)
    return _tested(tested, say)


def _tested(what: str, say: Say) -> str:
    say(f"smoke-tested: {what}")
    return what


# --- the image, with docker ----------------------------------------------------------------


def docker_problem(image: BuiltImage) -> str | None:
    """None when docker can run the image here; else why not, in a few words."""
    if image.internal_port is None:
        return "the fly.toml names no internal_port to reach the app on"
    return docker_unusable()


def docker_unusable() -> str | None:
    """None when docker is on PATH and its daemon answers `docker info` quickly; else why."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker on PATH"
    done = _docker(docker, ["info", "--format", "{{.ServerVersion}}"], DOCKER_INFO_SECONDS)
    return None if done.returncode == 0 else f"`docker info`: {done.said}"


def _pull(docker: str, ref: str, say: Say, stop: threading.Event) -> str | None:
    """Pull `ref`; None when it worked, else why not (Fly's registry needs `fly auth docker`)."""
    say(f"$ docker pull {ref}")
    done = _docker(docker, ["pull", "--quiet", ref], DOCKER_PULL_SECONDS, stop)
    if done.returncode == 0:
        return None
    return (
        f"`docker pull` failed: {done.said} (log docker in to registry.fly.io: `fly auth docker`)"
    )


def _smoke_image(
    docker: str, image: BuiltImage, environment: Environment, say: Say, stop: threading.Event
) -> None:
    port = server.free_port()
    publish = f"127.0.0.1:{port}:{image.internal_port}"
    args = ["run", "--rm", "-d", "-p", publish, "--name", f"shipyard-smoke-{port}", image.ref]
    say(f"$ docker {' '.join(args)}")
    started = _docker(docker, args, DOCKER_CALL_SECONDS, stop)
    container = started.stdout.strip().splitlines()[-1] if started.stdout.strip() else ""
    if started.returncode != 0 or not container:
        raise StepFailed(f"artifact smoke failed: `docker run` {started.said}")
    try:
        smoke = environment.smoke
        url = f"http://127.0.0.1:{port}{smoke.path}"
        result = probe(
            SmokeCheck(url, smoke.expect_status, smoke.contains, smoke.timeout), say=say, stop=stop
        )
        if not result.ok:
            logs = _docker(docker, ["logs", "--tail", "20", container], DOCKER_CALL_SECONDS)
            say(f"container log (last lines):\n{logs.stdout}{logs.stderr}".rstrip())
    finally:
        stopped = _docker(docker, ["stop", "-t", str(DOCKER_STOP_GRACE), container], 60.0)
        if stopped.returncode != 0:
            say(f"warning: `docker stop {container[:12]}` {stopped.said}")
    say(result.reason)
    if not result.ok:
        raise StepFailed(f"artifact smoke of image {image.ref} failed: {result.reason}")


@dataclass(frozen=True)
class _Done:
    returncode: int
    stdout: str
    stderr: str

    @property
    def said(self) -> str:
        """docker's last line of error, else how it ended."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"exited {self.returncode}"


def _docker(
    docker: str, args: list[str], timeout: float, stop: threading.Event | None = None
) -> _Done:
    """`docker ARGS` in its own process group, killed after `timeout` seconds or on `stop`."""
    try:
        process = subprocess.Popen(
            [docker, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as error:
        return _Done(127, "", str(error))
    output = communicate_within(process, timeout, stop)
    if output is not None:
        return _Done(process.returncode, *output)
    ended = "was interrupted" if stop is not None and stop.is_set() else f"took over {timeout:g}s"
    return _Done(124, "", f"docker {args[0]} {ended}")


# --- the archive ---------------------------------------------------------------------------


def _smoke_archive(
    environment: Environment, archive: Path, say: Say, stop: threading.Event
) -> None:
    """Start the artifact on a free port, without the environment's variables, and probe it."""
    if not environment.start:
        raise UsageError(
            f"environments.{environment.name}: no 'start' command to smoke the artifact with"
        )
    with tempfile.TemporaryDirectory(prefix="shipyard-smoke-") as folder:
        release_dir = Path(folder) / "release"
        unpacking.unpack(archive, release_dir, unpacking.UnpackLimits.of(environment))
        port = server.free_port()
        command = server.render(
            environment.start, port=port, release="artifact", release_dir=release_dir
        )
        log_path = Path(folder) / "server.log"
        say(f"starting `{command}` from {archive.name}")
        pid = server.start(
            command,
            cwd=release_dir,
            env=_artifact_env(environment, port),
            log_path=log_path,
            die_with_parent=True,
        )
        try:
            smoke = environment.smoke
            url = f"http://127.0.0.1:{port}{smoke.path}"
            check = SmokeCheck(url, smoke.expect_status, smoke.contains, smoke.timeout)
            result = probe(check, say=say, stop=stop, alive=lambda: server.alive(pid))
        finally:
            server.stop(pid, grace=ARTIFACT_SERVER_GRACE)
        say(result.reason)
        if not result.ok:
            say(f"server log (last lines):\n{server.log_tail(log_path)}")
            raise StepFailed(f"artifact smoke failed: {result.reason}")


def _artifact_env(environment: Environment, port: int) -> dict[str, str]:
    """The base set and `pass_env` (the deployer's variables the app needs to start at all),
    but not `env:`: a release that fails only with the environment's values is caught."""
    return server.environment(
        os.environ, port=port, release="artifact", pass_env=environment.pass_env
    )
