"""The artifact smoke: the built archive, unpacked into a temporary folder, started on a free
127.0.0.1 port without the environment's variables, and probed. A deploy runs it as its step
`Smoke`; `inv smoke` (deploy.smoke) runs it alone."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from shipyard import server, unpacking
from shipyard.config import Environment
from shipyard.errors import StepFailed, UsageError
from shipyard.smoke import SmokeCheck, probe
from shipyard.targets import Say

ARTIFACT_SERVER_GRACE = 5.0


def smoke_artifact(
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
