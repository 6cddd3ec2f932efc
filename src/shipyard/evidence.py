"""The evidence bundle: step logs, run records, reports, and a `sha256sum`-compatible manifest.

artifacts/<agent>/<YYYY-MM-DD>/logs/heartbeat.log
artifacts/<agent>/<YYYY-MM-DD>/logs/<run-id>/<step>.log
artifacts/<agent>/<YYYY-MM-DD>/runs/<run-id>.json
artifacts/<agent>/<YYYY-MM-DD>/reports/<run-id>/...
artifacts/<agent>/<YYYY-MM-DD>/sha256_manifest.txt
feedback/<agent>/<YYYY-MM-DD>.md
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from shipyard.redact import Redactor

if TYPE_CHECKING:
    from _hashlib import HASH

ARTIFACTS_DIR = "artifacts"
FEEDBACK_DIR = "feedback"
MANIFEST_NAME = "sha256_manifest.txt"
_CHUNK = 1 << 20
_HASH_THREADS = os.cpu_count() or 1  # threads for large files, besides the caller
_ESCAPES = {b"\\": b"\\\\", b"\n": b"\\n", b"\r": b"\\r"}


def new_run_id(moment: datetime) -> str:
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class Bundle:
    """Where one agent's evidence for one UTC day lives under a project root."""

    root: Path
    agent: str
    date: str  # YYYY-MM-DD, UTC

    @classmethod
    def for_moment(cls, root: Path, agent: str, moment: datetime) -> Bundle:
        return cls(root, agent, f"{moment:%Y-%m-%d}")

    @property
    def agent_dir(self) -> Path:
        return self.root / ARTIFACTS_DIR / self.agent

    @property
    def dir(self) -> Path:
        return self.agent_dir / self.date

    @property
    def heartbeat_path(self) -> Path:
        return self.dir / "logs" / "heartbeat.log"

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST_NAME

    @property
    def feedback_path(self) -> Path:
        return self.root / FEEDBACK_DIR / self.agent / f"{self.date}.md"

    def log_dir(self, run_id: str) -> Path:
        return self.dir / "logs" / run_id

    def report_dir(self, run_id: str) -> Path:
        return self.dir / "reports" / run_id

    def run_record_path(self, run_id: str) -> Path:
        return self.dir / "runs" / f"{run_id}.json"

    @property
    def _lock_path(self) -> Path:
        # Outside the date folder, so the manifest never has to account for it.
        return self.agent_dir / f".{self.date}.lock"

    @property
    def _scratch_dir(self) -> Path:
        return self.agent_dir / ".tmp"


@contextmanager
def locked(bundle: Bundle) -> Iterator[None]:
    """An exclusive lock on the day's evidence, shared by every process writing it."""
    bundle.agent_dir.mkdir(parents=True, exist_ok=True)
    with bundle._lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(bundle: Bundle, path: Path, data: bytes) -> None:
    """Write `data` to `path` by temp file and rename: readers see the old or the new file."""
    bundle._scratch_dir.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=bundle._scratch_dir, prefix=path.name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temp).chmod(0o644)
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def tail_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of a log, read from its end so that big logs stay cheap."""
    if not path.exists():
        return []
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 64 * 1024))
        lines = handle.read().decode("utf-8", "replace").splitlines()
    return lines[-count:]


def write_json(bundle: Bundle, path: Path, document: dict[str, Any], redactor: Redactor) -> None:
    text = redactor.mask(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    write_atomic(bundle, path, text.encode("utf-8"))


# --- the manifest -------------------------------------------------------------------------


def file_sha256(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    return _finish_hashing(path, hashlib.sha256(), 0)


def _finish_hashing(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes], digest: HASH, offset: int
) -> str:
    """`digest` of a file's first `offset` bytes, brought to the file's end."""
    with open(path, "rb", buffering=0) as handle:  # noqa: PTH123 - bytes paths too
        handle.seek(offset)
        return _hash_rest(handle, digest)


def _hash_rest(handle: BinaryIO, digest: HASH) -> str:
    while chunk := handle.read(_CHUNK):  # unbuffered: straight from the file, a MiB at a time
        digest.update(chunk)
    return digest.hexdigest()


def bundle_files(directory: Path) -> list[bytes]:
    """Every regular file under `directory` but the manifest, as sorted relative byte paths.

    Symbolic links are neither followed nor listed: the manifest vouches for this folder only.
    A folder that cannot be listed is skipped, as `os.walk` skips it.
    """
    found: list[bytes] = []
    pending = [b""]
    top = os.fsencode(directory)
    while pending:
        prefix = pending.pop()
        try:
            with os.scandir(top + b"/" + prefix if prefix else top) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        found.append(prefix + entry.name)
                    elif entry.is_dir(follow_symlinks=False):
                        pending.append(prefix + entry.name + b"/")
        except OSError:
            continue
    return sorted(rel for rel in found if rel != MANIFEST_NAME.encode())


def file_digests(directory: Path, relpaths: list[bytes]) -> list[str]:
    """The sha256 of each file, in order.

    A bundle is mostly small files: each is hashed here as it is read. A file longer than one
    read is handed to a thread after that read, and hashlib lets go of the GIL while it hashes, so
    large files are hashed on every core while the small ones pay no hand-off between threads.
    """
    top = os.fsencode(directory) + b"/"
    with ThreadPoolExecutor(_HASH_THREADS, thread_name_prefix="manifest") as pool:
        started = [_start_hashing(top + rel, pool) for rel in relpaths]
        return [digest if isinstance(digest, str) else digest.result() for digest in started]


def _start_hashing(path: bytes, pool: ThreadPoolExecutor) -> str | Future[str]:
    """A small file's digest; a large one's, after its first read, is finished by a thread
    (which holds no open file and no data while it waits: only the running digest)."""
    with open(path, "rb", buffering=0) as handle:  # noqa: PTH123 - bytes paths too
        first = handle.read(_CHUNK)
        digest = hashlib.sha256(first)
        if len(first) < _CHUNK:
            return _hash_rest(handle, digest)
    return pool.submit(_finish_hashing, path, digest, len(first))


def manifest_line(relpath: bytes, digest: str) -> bytes:
    """One line as `sha256sum` prints it, escaping `\\`, newline and CR the same way."""
    if not any(char in relpath for char in _ESCAPES):
        return digest.encode() + b"  " + relpath + b"\n"
    escaped = b"".join(_ESCAPES.get(bytes([byte]), bytes([byte])) for byte in relpath)
    return b"\\" + digest.encode() + b"  " + escaped + b"\n"


def parse_manifest(data: bytes) -> dict[bytes, str]:
    entries: dict[bytes, str] = {}
    for line in data.splitlines():
        escaped = line.startswith(b"\\")
        digest, _, relpath = line.removeprefix(b"\\").partition(b"  ")
        entries[_unescape(relpath) if escaped else relpath] = digest.decode("ascii", "replace")
    return entries


def _unescape(relpath: bytes) -> bytes:
    reverse = {value: key for key, value in _ESCAPES.items()}
    out, index = bytearray(), 0
    while index < len(relpath):
        pair = relpath[index : index + 2]
        if pair in reverse:
            out += reverse[pair]
            index += 2
        else:
            out += relpath[index : index + 1]
            index += 1
    return bytes(out)


def write_manifest(bundle: Bundle) -> str:
    """Rewrite the day's manifest atomically under the lock; return the manifest's own sha256."""
    with locked(bundle):
        return _write_manifest_unlocked(bundle)


def _write_manifest_unlocked(bundle: Bundle) -> str:
    relpaths = bundle_files(bundle.dir)
    digests = file_digests(bundle.dir, relpaths)
    data = b"".join(map(manifest_line, relpaths, digests))
    write_atomic(bundle, bundle.manifest_path, data)
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Verification:
    added: tuple[str, ...]
    missing: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.added or self.missing or self.changed)

    def lines(self) -> list[str]:
        return [
            f"{kind}: {name}"
            for kind, names in (
                ("changed", self.changed),
                ("missing", self.missing),
                ("added", self.added),
            )
            for name in names
        ]


def verify(bundle: Bundle) -> Verification:
    """Re-hash the bundle and compare it with its manifest."""
    recorded = parse_manifest(bundle.manifest_path.read_bytes())
    present = set(bundle_files(bundle.dir))
    kept = sorted(present & recorded.keys())
    digests = file_digests(bundle.dir, kept)
    changed = [rel for rel, digest in zip(kept, digests, strict=True) if digest != recorded[rel]]
    return Verification(
        added=_display(sorted(present - recorded.keys())),
        missing=_display(sorted(recorded.keys() - present)),
        changed=_display(changed),
    )


def _display(relpaths: list[bytes]) -> tuple[str, ...]:
    """Printable one-line names: undecodable bytes and control characters are escaped."""
    return tuple(printable(rel.decode("utf-8", "backslashreplace")) for rel in relpaths)


def printable(text: str) -> str:
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
