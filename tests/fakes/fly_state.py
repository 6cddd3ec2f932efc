"""The state file behind the fake `flyctl` (tests/fakes/flyctl), and helpers to build and read it.

The fake reads the JSON file named by `FAKE_FLY_STATE` on every invocation, acts, and writes it
back atomically (a temp file + os.replace, under an fcntl lock on `<state>.lock`), so
concurrent calls never corrupt it. Shapes follow shared/reference/flyctl.md (§3, §6, §10):

    {
      "apps": {
        "webapp-staging": {
          "organization": "personal",                 # the org slug
          "releases": [{<fly-go Release: ID, Version, Stable, InProgress, Reason, Description,
                         Status, DeploymentStrategy, Metadata, User{ID, Name, Email,
                         EnablePaidHobby}, EvaluationID, CreatedAt, ImageRef>}],
          "machines": [{<fly-go Machine, snake_case: id, name, state, region, image_ref{registry,
                         repository, tag, digest}, instance_id, private_ip, created_at,
                         updated_at, config{init, guest, metadata, services, image}, events,
                         checks[{name, status, output, updated_at}], host_status, cordoned}>],
          "registry": ["registry.fly.io/webapp-staging:deployment-01K...", ...],
          "network": "..."                            # optional: `fly status`'s Network
        }
      },
      "script": {
        "build_health": "healthy",        # of the NEXT built image: healthy|critical|crash
        "image_health": {"<ref>": "critical"},   # per existing image; default healthy
        "release_command_fails": false,
        "build_fails": false,             # the image build fails: exit 1, no release made
        "transient": {"releases": 0, "status": 0, "machines": 0, "checks": 0},
        "slow": {"releases": 0, "status": 0, "machines": 0, "checks": 0},
        "slow_seconds": 60.0,             # how long each of those slow calls hangs
        "rate_limited": {"releases": 0, "status": 0, "machines": 0, "checks": 0},
        "retry_after_seconds": 1.0,       # the hint a 429 carries (0: none)
        "server_errors": {"releases": 0, "status": 0, "machines": 0, "checks": 0},
        "server_error_status": 503,       # 500 | 502 | 503 | 504
        "check_grace_seconds": 0.0,       # a deployed healthy image passes only after this
        "checks_fail_after_seconds": 0.0, # ...and turns critical this long after passing (0: never)
        "hang_deploys": 0,                # the next N deploys hang, deaf to SIGTERM
        "deploy_seconds": 0.0             # sleep while machines update (to test interruption)
      },
      "calls": [{"argv": [...], "token": "present|absent", "token_source": "FLY_API_TOKEN",
                 "exit": 0}]
    }

Image health: `healthy` machines are started with passing checks; `critical` ones are started
with critical checks (rolling, canary and bluegreen deploys fail; immediate and --detach ones
succeed); `crash` ones are stopped (the smoke checks fail the deploy).

`script.transient[<command>] = N` fails the next N calls of that read command (exit 1) with its
message in TRANSIENT_ERRORS below, decrementing N. Each of those contains one of
TRANSIENT_MARKERS, the substrings a client may treat as transient (as it may exit code 126,
flyctl's deadline-exceeded); the fake's other read-command errors (token, app name, config,
unknown app) contain none. `script.slow[<command>] = N` makes the next N calls of that read
command (the ones not failing) hang for `slow_seconds` before answering normally: an API call
that a client has to give up on.

`script.rate_limited[<command>] = N` answers the next N calls of that read command with a 429
(exit 1; `rate limit exceeded`, with `retry after <retry_after_seconds>s` unless that is 0);
`script.server_errors[<command>] = N` with a `server_error_status` (5xx) answer. Both are
RATE_LIMITED_ERRORS / SERVER_ERRORS below, the fake's wording in the shapes of
TRANSIENT_ERRORS. They are counted before `transient`, then success.

`script.check_grace_seconds` = G: the checks of machines a deploy puts a healthy image on read
`critical` (no output, as a Consul check before its first run) until G seconds after the deploy
updated them, then `passing`. A rolling, canary or bluegreen deploy (without --detach) waits
for that, as flyctl waits for health checks; an immediate or --detach one returns at once.
`script.checks_fail_after_seconds` = F (> 0): the next deploy's checks pass for F seconds,
then read `critical` with MACHINE_HEALTH's critical output (an app that answers its first
checks and then breaks); the deploy sets it back to 0, so a rollback after it is sound.

`script.hang_deploys = N`: the next N deploys create their release (`running`), print the
`Updating existing machines` line, then hang, ignoring SIGINT and SIGTERM (a flyctl stuck in a
call): only SIGKILL ends them, and the release stays `running`.

`calls` records every invocation: argv as given, whether a token was given and where from
(`token_source`: FLY_ACCESS_TOKEN, FLY_API_TOKEN, --access-token or null), the exit code.
The token's value is never written.
"""

from __future__ import annotations

import copy
import hashlib
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:  # as `fakes.<name>` from the tests, or beside the fake's script
    from fakes.state_file import read, transaction, write
except ImportError:
    from state_file import read, transaction, write  # type: ignore[no-redef]

if TYPE_CHECKING:
    import subprocess

STATE_ENV = "FAKE_FLY_STATE"
FAKES = Path(__file__).resolve().parent
FLYCTL_VERSION = "0.4.87"
REGISTRY = "registry.fly.io"
CHECK_NAME = "servicecheck-00-http-8080"
RELEASE_KEYS = (
    "ID",
    "Version",
    "Stable",
    "InProgress",
    "Reason",
    "Description",
    "Status",
    "DeploymentStrategy",
    "Metadata",
    "User",
    "EvaluationID",
    "CreatedAt",
    "ImageRef",
)
CI_USER = {"ID": "U_CI_BOT", "Name": "CI Bot", "Email": "ci@example.com", "EnablePaidHobby": False}
HEALTHS = ("healthy", "critical", "crash")
# What a machine running an image of each health looks like: (state, check status, check output).
MACHINE_HEALTH = {
    "healthy": ("started", "passing", "Success"),
    "critical": ("started", "critical", "context deadline exceeded"),
    "crash": ("stopped", "critical", "connect: connection refused"),
}
DEFAULT_SCRIPT: dict[str, Any] = {
    "build_health": "healthy",
    "image_health": {},
    "release_command_fails": False,
    "build_fails": False,  # the image build fails: exit 1 before any release is made
    "transient": {"releases": 0, "status": 0, "machines": 0, "checks": 0},
    "slow": {"releases": 0, "status": 0, "machines": 0, "checks": 0},  # calls that hang...
    "slow_seconds": 60.0,  # ...this long, then answer
    "rate_limited": {"releases": 0, "status": 0, "machines": 0, "checks": 0},  # 429s
    "retry_after_seconds": 1.0,  # the hint a 429 carries (0: none)
    "server_errors": {"releases": 0, "status": 0, "machines": 0, "checks": 0},  # 5xx
    "server_error_status": 503,
    "check_grace_seconds": 0.0,  # checks of a deployed healthy image pass this long after
    "checks_fail_after_seconds": 0.0,  # ...and turn critical this long after passing (0: never)
    "hang_deploys": 0,  # the next N deploys hang, deaf to SIGTERM
    "deploy_seconds": 0.0,
}
_REQUEST_CANCELED = (
    'Post "https://api.fly.io/graphql": net/http: request canceled'
    " (Client.Timeout exceeded while awaiting headers)"
)
_FLAPS_503 = "could not list machines: failed to list VMs (status 503): 503 Service Unavailable"
# The fake's choice of wording (the reference quotes none); `{app}` is the app name.
TRANSIENT_ERRORS = {
    "releases": f"failed retrieving app releases {{app}}: {_REQUEST_CANCELED}",
    "status": f"failed retrieving app {{app}}: {_REQUEST_CANCELED}",
    "machines": _FLAPS_503,
    "checks": _FLAPS_503,
}
# 429 and 5xx answers: the fake's wording, in the shapes above; `{answer}` is the HTTP status
# and its text (`429 Too Many Requests: rate limit exceeded, retry after 1s`).
_GRAPHQL_ANSWER = {
    "releases": "failed retrieving app releases {app}: {answer}",
    "status": "failed retrieving app {app}: {answer}",
}
_FLAPS_ANSWER = "could not list machines: failed to list VMs (status {status}): {answer}"
HTTP_STATUS_TEXT = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def api_error(command: str, app: str, status: int, retry_after: float = 0.0) -> str:
    """The error a read command prints for an HTTP `status` from Fly's API (429 or 5xx)."""
    answer = f"{status} {HTTP_STATUS_TEXT[status]}"
    if status == 429:
        answer += ": rate limit exceeded"
        answer += f", retry after {retry_after:g}s" if retry_after else ""
    shape = _GRAPHQL_ANSWER.get(command, _FLAPS_ANSWER)
    return shape.format(app=app, status=status, answer=answer)


TRANSIENT_MARKERS = (
    "request canceled",
    "Client.Timeout",
    "timeout",
    "503",
    "502",
    "504",
    "connection reset",
    "EOF",
    "temporarily unavailable",
)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # pragma: allowlist secret (an alphabet)


# --- values ----------------------------------------------------------------------------


def now() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ulid(moment: datetime | None = None) -> str:
    """26 characters like a ULID: 10 of milliseconds, 16 random, Crockford base32."""
    millis = int((moment or now()).timestamp() * 1000)
    stamp = "".join(_CROCKFORD[(millis >> shift) & 31] for shift in range(45, -1, -5))
    return stamp + "".join(_CROCKFORD[byte % 32] for byte in os.urandom(16))


def new_machine_id() -> str:
    return os.urandom(7).hex()


def _identity() -> dict[str, str]:
    """A new machine's id and name (Fly names them like `quiet-sun-1234`; these are plainer)."""
    machine_id = new_machine_id()
    return {"id": machine_id, "name": f"machine-{machine_id[:6]}"}


def deployment_image(app: str, label: str | None = None) -> str:
    return f"{REGISTRY}/{app}:{label or 'deployment-' + ulid()}"


def image_ref(image: str) -> dict[str, str]:
    """A machine's `image_ref` for an image reference; the digest is a fake sha256 of it."""
    rest, _, digest = image.partition("@")
    registry, _, path = rest.partition("/")
    if not path or not ("." in registry or ":" in registry or registry == "localhost"):
        registry, path = "docker.io", rest
    repository, _, tag = path.rpartition(":") if ":" in path else (path, "", "")
    fake_digest = "sha256:" + hashlib.sha256(image.encode()).hexdigest()
    return {
        "registry": registry,
        "repository": repository,
        "tag": tag,
        "digest": digest or fake_digest,
    }


# --- records ---------------------------------------------------------------------------


def new_release(
    version: int, image: str, *, status: str = "running", created_at: datetime | None = None
) -> dict[str, Any]:
    """A fly-go Release as `fly releases --json` prints it (keys in RELEASE_KEYS order)."""
    return {
        "ID": ulid(created_at),
        "Version": version,
        "Stable": status == "complete",
        "InProgress": False,
        "Reason": "",
        "Description": "",
        "Status": status,
        "DeploymentStrategy": "",
        "Metadata": None,
        "User": dict(CI_USER),
        "EvaluationID": "",
        "CreatedAt": rfc3339(created_at or now()),
        "ImageRef": image,
    }


def new_machine(release: dict[str, Any], *, region: str = "iad") -> dict[str, Any]:
    """A started Fly Launch machine with one HTTP service check, running `release`'s image."""
    moment = now()
    created, millis = rfc3339(moment), int(moment.timestamp() * 1000)
    machine = {
        **_identity(),
        "state": "started",
        "region": region,
        "image_ref": {},
        "instance_id": ulid(),
        "private_ip": f"fdaa:0:1:a7b:{os.urandom(2).hex()}:{os.urandom(2).hex()}:1:2",
        "created_at": created,
        "updated_at": created,
        "config": {
            "init": {},
            "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
            "metadata": {
                "fly_flyctl_version": FLYCTL_VERSION,
                "fly_platform_version": "v2",
                "fly_process_group": "app",
            },
            "services": [_http_service()],
            "image": "",
        },
        "events": [{"type": "launch", "status": "created", "source": "user", "timestamp": millis}],
        "checks": [{"name": CHECK_NAME, "status": "", "output": "", "updated_at": created}],
        "host_status": "ok",
        "cordoned": False,
    }
    put_image(machine, release, "healthy")
    return machine


def _http_service() -> dict[str, Any]:
    check = {"type": "http", "interval": "15s", "timeout": "2s", "method": "GET", "path": "/health"}
    return {"protocol": "tcp", "internal_port": 8080, "checks": [check]}


def put_image(
    machine: dict[str, Any],
    release: dict[str, Any],
    health: str,
    *,
    passing_from: float = 0.0,
    failing_from: float = 0.0,
) -> None:
    """What a deploy does to one machine: new image and release metadata, checks per health;
    passing checks read critical until `passing_from` and again from `failing_from` (each a
    time.time(); 0: never)."""
    state, check_status, output = MACHINE_HEALTH[health]
    updated = rfc3339(now())
    image = release["ImageRef"]
    machine["config"]["image"] = image
    machine["config"]["metadata"].update(
        fly_release_id=release["ID"], fly_release_version=str(release["Version"])
    )
    machine.update(image_ref=image_ref(image), state=state, instance_id=ulid(), updated_at=updated)
    for check in machine.get("checks") or []:
        check.update(status=check_status, output=output, updated_at=updated)
        check.pop("passing_from", None)
        check.pop("failing_from", None)
        if passing_from and check_status == "passing":
            check["passing_from"] = passing_from
        if failing_from and check_status == "passing":
            check["failing_from"] = failing_from


def clone_machine(machine: dict[str, Any]) -> dict[str, Any]:
    """A new machine (new id and name) with `machine`'s config: bluegreen's green one."""
    return {**copy.deepcopy(machine), **_identity(), "created_at": rfc3339(now())}


def new_app(
    app: str, *, machines: int = 2, releases: int = 1, organization: str = "personal"
) -> dict[str, Any]:
    """An app with `releases` complete releases (one image each) and machines on the newest."""
    if machines and not releases:
        raise ValueError("machines need a release to run")
    start = now() - timedelta(hours=releases)
    history = [
        new_release(
            n, deployment_image(app), status="complete", created_at=start + timedelta(hours=n)
        )
        for n in range(1, releases + 1)
    ]
    return {
        "organization": organization,
        "releases": history,
        "machines": [new_machine(history[-1]) for _ in range(machines)],
        "registry": [release["ImageRef"] for release in history],
    }


def new_state(app: str = "webapp-staging", machines: int = 2, releases: int = 1) -> dict[str, Any]:
    return {
        "apps": {app: new_app(app, machines=machines, releases=releases)},
        "script": copy.deepcopy(DEFAULT_SCRIPT),
        "calls": [],
    }


def script(state: dict[str, Any]) -> dict[str, Any]:
    """The state's script with defaults filled in (a hand-written state may omit keys)."""
    return {**copy.deepcopy(DEFAULT_SCRIPT), **state.get("script", {})}


def release(state: dict[str, Any], app: str, version: int) -> dict[str, Any]:
    for candidate in state["apps"][app]["releases"]:
        if candidate["Version"] == version:
            return candidate
    raise KeyError(f"{app} has no release v{version}")


def machines(state: dict[str, Any], app: str) -> list[dict[str, Any]]:
    return state["apps"][app]["machines"]


def drop_image(path: Path | str, app: str, image: str) -> None:
    """The image disappears from Fly's registry (garbage-collected, deleted): releases keep
    naming it, but `flyctl deploy --image` of it fails (reference §4)."""
    with transaction(path) as state:
        state["apps"][app]["registry"].remove(image)


# --- the file --------------------------------------------------------------------------


# --- for tests -------------------------------------------------------------------------


class FakeFly:
    """A state file in `directory` and an environment whose `flyctl` and `fly` are the fake."""

    token = "FlyV1 fm2_fake-deploy-token"

    def __init__(self, directory: Path, state: dict[str, Any] | None = None) -> None:
        self.path = directory / "fly-state.json"
        write(self.path, state if state is not None else new_state())
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("FLY_")}
        python_bin = str(Path(sys.executable).parent)
        self.env = {
            **inherited,
            # the fake's `python3` is this interpreter (quicker to start than a pyenv shim)
            "PATH": os.pathsep.join([str(FAKES), python_bin, os.environ.get("PATH", "")]),
            STATE_ENV: str(self.path),
            "FLY_API_TOKEN": self.token,
        }

    @property
    def state(self) -> dict[str, Any]:
        return read(self.path)

    @property
    def calls(self) -> list[dict[str, Any]]:
        return self.state["calls"]

    def script(self, **changes: Any) -> None:
        with transaction(self.path) as state:
            state.setdefault("script", {}).update(changes)

    def run(
        self, *args: str, cwd: Path | None = None, timeout: float = 30, **env: str | None
    ) -> subprocess.CompletedProcess[str]:
        """`flyctl ARGS` as a client runs it; keyword arguments set (None: unset) env vars."""
        import subprocess  # here, not above: the fake imports this module on every call

        return subprocess.run(
            ["flyctl", *args],
            cwd=cwd,
            env=self.environment(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def environment(self, **env: str | None) -> dict[str, str]:
        merged = {**self.env, **env}
        return {name: value for name, value in merged.items() if value is not None}

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        """Poll the state until `predicate(state)` holds; the state that satisfied it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state
            if predicate(state):
                return state
            time.sleep(0.02)
        raise TimeoutError("the fake flyctl's state never reached the expected condition")
