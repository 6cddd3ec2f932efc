"""One deploy or rollback at a time per environment: the `lock/` directory of a state dir.

.shipyard/<env>/lock/owner.json   {"pid", "host", "user", "started", "command", "token",
                                   "start_ticks"}
.shipyard/<env>/lock.guard        flock'ed for the moment of a check, never for a deploy

`lock/` appears with its `owner.json` already inside (a temp directory renamed into place),
so whoever finds a lock can always name its holder. Checking, breaking and releasing run
under the guard, so two processes never both break the same stale lock, nor break one that
was just taken.

The owner is a process, not a pid: `start_ticks` is when it started (`/proc/<pid>/stat`,
`process.start_ticks`), and (pid, start_ticks) names one process for good. A lock is stale
when its owner ran on this host and its pid is gone or now belongs to a process that started
at another time (a reused pid), or when it has had no readable `owner.json` for
`OWNERLESS_GRACE` seconds. An `owner.json` without `start_ticks` (written before they were
recorded) is held while its pid is alive, and says so. A lock from another host is never
broken automatically, as its pid means nothing here; `clear(force=True)` removes any lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from shipyard import audit
from shipyard.errors import LockHeld
from shipyard.heartbeat import iso_timestamp
from shipyard.process import start_ticks

__all__ = ["OWNERLESS_GRACE", "DeployLock", "LockOwner", "LockState"]

LOCK_DIR = "lock"
OWNER_FILE = "owner.json"
GUARD_FILE = "lock.guard"
OWNERLESS_GRACE = 30.0
POLL_INTERVAL = 0.1
# What rename(2) says when the target directory is already there (Linux, macOS) or is a file.
_TAKEN = {errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR}


@dataclass(frozen=True)
class LockOwner:
    pid: int
    host: str
    user: str
    started: str
    command: str
    token: str
    start_ticks: int | None = None  # None: an owner.json from before start times were kept

    def describe(self) -> str:
        if self.pid <= 0:
            return f"an unknown owner since {self.started} ({OWNER_FILE} missing or unreadable)"
        return f"pid {self.pid} on {self.host} by {self.user} since {self.started}: {self.command}"


@dataclass(frozen=True)
class LockState:
    """A lock as found: its holder, how long `lock/` has been there, whether it is stale, and
    why it is stale or why it counts as held. `unsure`: held, but whether its owner still runs
    cannot be told from here (another host, an `owner.json` without a start time)."""

    holder: LockOwner
    age: float
    stale: bool
    reason: str
    unsure: bool = False

    def to_json(self) -> dict[str, object]:
        known = self.holder.pid > 0
        return {
            "holder": asdict(self.holder) if known else None,
            "since": self.holder.started,
            "age_seconds": round(self.age, 1),
            "state": "stale" if self.stale else "held",
            "reason": self.reason,
            "unsure": self.unsure,
        }


_OWNER_KEYS = frozenset(field.name for field in fields(LockOwner))


def _print_warning(message: str) -> None:
    print(message, file=sys.stderr)


class DeployLock:
    """The lock of the environment whose state lives in `state_dir`.

    `command` is recorded in `owner.json` as given (pass it already masked). A stale lock
    that is broken is reported through `warn` and, with `audit_path`, a `lock_break` entry.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        command: str,
        wait: float = 0.0,
        audit_path: Path | None = None,
        warn: Callable[[str], None] = _print_warning,
    ) -> None:
        self.state_dir = state_dir
        self.command = command
        self.wait = wait
        self._audit_path = audit_path
        self._warn = warn
        self._owner: LockOwner | None = None

    @property
    def _lock_dir(self) -> Path:
        return self.state_dir / LOCK_DIR

    def acquire(self, *, wait: float = 0.0) -> LockOwner:
        """Take the lock, polling for up to `wait` seconds while someone else holds it."""
        deadline = time.monotonic() + wait
        token = secrets.token_hex(16)
        while True:
            blocker = self._attempt(token)
            if blocker is None:
                assert self._owner is not None
                return self._owner
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockHeld(self._held_message(blocker, wait))
            time.sleep(min(POLL_INTERVAL, remaining))

    def release(self) -> None:
        """Remove the lock if it is still the one we took; otherwise leave it alone."""
        owner, self._owner = self._owner, None
        if owner is None:
            return
        with self._guard():
            current = self._inspect()
            if current is not None and current[0].token == owner.token:
                self._discard()

    def holder(self) -> LockOwner | None:
        """Who holds the lock now (None when it is free). Reads only, changes nothing."""
        current = self._inspect()
        return current[0] if current else None

    def state(self) -> LockState | None:
        """The lock, judged (None when it is free). Reads only, changes nothing."""
        current = self._inspect()
        return _judge(*current) if current else None

    def clear(self, *, force: bool = False) -> LockState | None:
        """Remove the lock, whoever took it: a stale one always, a held one only with `force`
        (LockHeld otherwise). Returns the lock removed (None: there was none), and records it
        as a `lock_release` audit entry naming `command` as the one who removed it."""
        with self._guard():
            found = self.state()
            if found is None:
                return None
            if not (found.stale or force):
                raise LockHeld(
                    f"{self.state_dir.name} is locked by {found.holder.describe()}; "
                    f"held: {found.reason}; pass --force to release it anyway"
                )
            self._discard()
        if self._audit_path is not None:
            audit.append(
                self._audit_path,
                "lock_release",
                owner=asdict(found.holder),
                state="stale" if found.stale else "held",
                reason=found.reason,
                forced=not found.stale,
                command=self.command,
            )
        return found

    def __enter__(self) -> LockOwner:
        return self.acquire(wait=self.wait)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _attempt(self, token: str) -> LockState | None:
        """Take the lock (None), breaking a stale one first, or say who holds it."""
        with self._guard():
            found = self.state()
            if found is not None:
                if not found.stale:
                    return found
                self._break(found.holder, found.reason)
            owner = self._new_owner(token)
            self._owner = owner  # before the rename: a release after an interrupt still works
            if self._place(owner):
                return None
            self._owner = None
            return self.state() or _judge(_unknown_owner(time.time()), 0.0)

    def _new_owner(self, token: str) -> LockOwner:
        return LockOwner(
            pid=os.getpid(),
            host=socket.gethostname(),
            user=audit.current_user(),
            started=iso_timestamp(),
            command=self.command,
            token=token,
            start_ticks=start_ticks(os.getpid()),
        )

    def _place(self, owner: LockOwner) -> bool:
        """Rename a temp dir holding `owner.json` onto `lock/`; False if a lock is there."""
        if os.path.lexists(self._lock_dir):  # rename(2) would replace an empty directory
            return False
        temp = self.state_dir / f".lock-{owner.token}"
        temp.mkdir(mode=0o755)
        try:
            _write_owner(temp / OWNER_FILE, owner)
            temp.rename(self._lock_dir)
        except OSError as error:
            if error.errno not in _TAKEN:
                raise
            return False
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        return True

    def _inspect(self) -> tuple[LockOwner, float] | None:
        """The holder of `lock/` and its age in seconds, or None when there is no lock."""
        try:
            modified = self._lock_dir.lstat().st_mtime
        except FileNotFoundError:
            return None
        owner = _read_owner(self._lock_dir / OWNER_FILE) or _unknown_owner(modified)
        return owner, time.time() - modified

    def _break(self, holder: LockOwner, reason: str) -> None:
        self._discard()
        self._warn(f"breaking stale lock of {holder.describe()}: {reason}")
        if self._audit_path is not None:
            audit.append(self._audit_path, "lock_break", owner=asdict(holder), reason=reason)

    def _discard(self) -> None:
        """Move `lock/` out of the way at once, then delete it at leisure."""
        doomed = self.state_dir / f".lock-broken-{secrets.token_hex(8)}"
        try:
            self._lock_dir.rename(doomed)
        except FileNotFoundError:  # removed by hand meanwhile
            return
        if doomed.is_dir() and not doomed.is_symlink():
            shutil.rmtree(doomed, ignore_errors=True)
        else:
            doomed.unlink()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        self.state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(self.state_dir / GUARD_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    def _held_message(self, found: LockState, wait: float) -> str:
        waited = f" (waited {wait:g}s)" if wait > 0 else ""
        env = self.state_dir.name
        message = f"{env} is locked by {found.holder.describe()}{waited}; "
        if not found.unsure:
            return message + "try again later or pass --lock-wait 60s"
        return message + (
            f"{found.reason}; if it is not running, `inv lock.release --env {env} --force`"
        )


def _judge(holder: LockOwner, age: float) -> LockState:
    """Is the lock of `holder`, `age` seconds old, stale, and why (or why is it held)?"""
    if holder.pid <= 0:
        if age > OWNERLESS_GRACE:
            return LockState(holder, age, True, f"no readable {OWNER_FILE} for {age:.0f}s")
        wait = f"stale after {OWNERLESS_GRACE:.0f}s"
        return LockState(holder, age, False, f"no readable {OWNER_FILE} yet ({wait})")
    if holder.host != socket.gethostname():
        why = f"taken on {holder.host}, whose processes cannot be checked from here"
        return LockState(holder, age, False, why, unsure=True)
    if not _pid_alive(holder.pid):
        return LockState(holder, age, True, "process is gone")
    return _judge_live_pid(holder, age)


def _judge_live_pid(holder: LockOwner, age: float) -> LockState:
    """`holder`'s pid runs on this host: the owner itself, or a process that reused its pid?"""
    pid, recorded = holder.pid, holder.start_ticks
    if recorded is None:
        why = f"pid {pid} is alive, but {OWNER_FILE} has no start time (a lock from before"
        why += " Shipyard recorded them), so a reused pid cannot be ruled out"
        return LockState(holder, age, False, why, unsure=True)
    now = start_ticks(pid)
    if now is None:  # gone since the check, or /proc hides it (hidepid)
        why = f"pid {pid} is alive, but its start time cannot be read here"
        return LockState(holder, age, False, why, unsure=True)
    if now != recorded:
        why = f"pid {pid} is now another process (started at tick {now}, the owner at {recorded})"
        return LockState(holder, age, True, why)
    return LockState(holder, age, False, f"pid {pid} is running (its start time matches)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _write_owner(path: Path, owner: LockOwner) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(asdict(owner), handle)


def _read_owner(path: Path) -> LockOwner | None:
    """The owner `path` names; keys it does not know (a newer Shipyard's) are left aside."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
        owner = LockOwner(**{key: data[key] for key in data if key in _OWNER_KEYS})
    except (OSError, ValueError, TypeError, RecursionError):
        return None
    texts = (owner.host, owner.user, owner.started, owner.command, owner.token)
    valid = type(owner.pid) is int and owner.pid > 0 and all(isinstance(t, str) for t in texts)
    ticks = owner.start_ticks
    valid = valid and (ticks is None or (type(ticks) is int and ticks >= 0))
    return owner if valid else None


def _unknown_owner(modified: float) -> LockOwner:
    """Stands for a lock directory whose owner cannot be read."""
    since = iso_timestamp(datetime.fromtimestamp(modified, timezone.utc))
    return LockOwner(pid=0, host="", user="", started=since, command="", token="")
