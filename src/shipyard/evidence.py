"""The evidence bundle: step logs, run records, reports, each run's seal, and the day's manifest.

artifacts/<agent>/<YYYY-MM-DD>/logs/heartbeat.log
artifacts/<agent>/<YYYY-MM-DD>/logs/<run-id>/<step>.log
artifacts/<agent>/<YYYY-MM-DD>/runs/<run-id>.json
artifacts/<agent>/<YYYY-MM-DD>/reports/<run-id>/...
artifacts/<agent>/<YYYY-MM-DD>/seals/<run-id>.sha256
artifacts/<agent>/<YYYY-MM-DD>/attestations/<run-id>.intoto.json   (shipyard.provenance)
artifacts/<agent>/<YYYY-MM-DD>/sha256_manifest.txt
feedback/<agent>/<YYYY-MM-DD>.md

A seal and the manifest are `sha256sum` check files. A run's seal vouches for its own files,
the day's earlier seals and the heartbeat log as long as it was then; it is never rewritten, so
no later run can vouch again for a file changed after it was sealed (docs/evidence.md).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from shipyard import files
from shipyard.errors import StepFailed, UsageError
from shipyard.redact import Redactor

if TYPE_CHECKING:
    from _hashlib import HASH

ARTIFACTS_DIR = "artifacts"
FEEDBACK_DIR = "feedback"
MANIFEST_NAME = "sha256_manifest.txt"
SEALS_DIR = "seals"
SEAL_SUFFIX = ".sha256"
_MANIFEST = MANIFEST_NAME.encode()
_SEALS = SEALS_DIR.encode()
_HEARTBEAT = b"logs/heartbeat.log"
_CHUNK = 1 << 20
_HASH_THREADS = os.cpu_count() or 1  # threads for large files, besides the caller
_ESCAPES = {b"\\": b"\\\\", b"\n": b"\\n", b"\r": b"\\r"}
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# A `sha256sum` line: text mode `<hex>  name`, binary mode `<hex> *name`, `\` first when escaped.
_CHECK_LINE = re.compile(rb"(\\?)([0-9a-fA-F]{64}) [ *](.+)", re.DOTALL)
# A seal's comment line for the heartbeat log: `# prefix <length> <sha256>  logs/heartbeat.log`.
_PREFIX_LINE = re.compile(rb"# prefix ([0-9]{1,19}) ([0-9a-f]{64})  logs/heartbeat\.log")


def new_run_id(moment: datetime) -> str:
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def is_run_id(text: str) -> bool:
    """Whether `text` can name a run's files (no `/`, no `..`, no leading dot)."""
    return _RUN_ID.fullmatch(text) is not None


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

    def seal_path(self, run_id: str) -> Path:
        return self.dir / SEALS_DIR / f"{run_id}{SEAL_SUFFIX}"

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


@contextmanager
def _steady(bundle: Bundle) -> Iterator[None]:
    """A shared lock on the day's evidence while it is read, so that no run seals meanwhile.

    It never creates the lock file: without one no run has written here yet, or this is a
    read-only copy of the evidence, and there is nothing to wait for."""
    try:
        handle = bundle._lock_path.open("rb")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        yield


def write_atomic(bundle: Bundle, path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, by a temp file outside the date folder."""
    files.write_atomic(path, data, scratch=bundle._scratch_dir)


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


# --- hashing ------------------------------------------------------------------------------

_Opener = Callable[[Any, int], int]


def file_sha256(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    return _finish_hashing(path, hashlib.sha256(), 0)


def _in_bundle(path: Any, flags: int) -> int:
    """Opens a file the walk found: one since swapped for a symlink is not followed, nor is a FIFO
    waited on."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)


def _finish_hashing(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    digest: HASH,
    offset: int,
    opener: _Opener | None = None,
) -> str:
    """`digest` of a file's first `offset` bytes, brought to the file's end."""
    with open(path, "rb", buffering=0, opener=opener) as handle:
        handle.seek(offset)
        return _hash_rest(handle, digest)


def _hash_rest(handle: BinaryIO, digest: HASH) -> str:
    while chunk := handle.read(_CHUNK):  # unbuffered: straight from the file, a MiB at a time
        digest.update(chunk)
    return digest.hexdigest()


def file_digests(directory: Path, relpaths: list[bytes]) -> list[str]:
    """The sha256 of each file of the bundle, in order.

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
    with open(path, "rb", buffering=0, opener=_in_bundle) as handle:
        first = handle.read(_CHUNK)
        digest = hashlib.sha256(first)
        if len(first) < _CHUNK:
            return _hash_rest(handle, digest)
    return pool.submit(_finish_hashing, path, digest, len(first), _in_bundle)


def prefix_digests(path: bytes, lengths: Iterable[int]) -> tuple[int, dict[int, str]]:
    """Read an append-only log once, as long as it is when opened: that length, and the sha256
    of its first `n` bytes for each `n` of `lengths` it reaches and for that whole length."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0, opener=_in_bundle) as handle:
        size = os.fstat(handle.fileno()).st_size
        done, found = 0, {}
        for mark in sorted({n for n in lengths if n <= size} | {size}):
            done += _feed(handle, digest, mark - done)
            found[done] = digest.hexdigest()  # hashlib goes on after a hexdigest
            if done < mark:  # cut short while read
                break
    return done, found


def _feed(handle: BinaryIO, digest: HASH, count: int) -> int:
    fed = 0
    while fed < count and (chunk := handle.read(min(_CHUNK, count - fed))):
        digest.update(chunk)
        fed += len(chunk)
    return fed


def _read_in_bundle(path: bytes) -> bytes:
    with open(path, "rb", opener=_in_bundle) as handle:
        return handle.read()


# --- walking the bundle -------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """What a walk of a date folder found, following no symlink: paths relative to it, as bytes."""

    files: frozenset[bytes]  # regular files, the manifest too
    odd: Mapping[bytes, str]  # all else but folders: path -> "symlink", "FIFO", "socket", ...
    unreadable: Mapping[bytes, str]  # folders that could not be listed: path -> why


_KINDS = (
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISCHR, "character device"),
)


def walk(directory: Path) -> Tree:
    files: set[bytes] = set()
    odd: dict[bytes, str] = {}
    unreadable: dict[bytes, str] = {}
    pending = [b""]
    top = os.fsencode(directory)
    while pending:
        prefix = pending.pop()
        try:
            with os.scandir(top + b"/" + prefix if prefix else top) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        files.add(prefix + entry.name)
                    elif entry.is_dir(follow_symlinks=False):
                        pending.append(prefix + entry.name + b"/")
                    elif kind := _kind(entry):
                        odd[prefix + entry.name] = kind
        except OSError as error:
            unreadable[prefix.rstrip(b"/") or b"."] = error.strerror or type(error).__name__
    return Tree(frozenset(files), odd, unreadable)


def _kind(entry: os.DirEntry[bytes]) -> str | None:
    """What a non-regular entry is; None when it is already gone."""
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
    except OSError:
        return None
    return next((name for is_kind, name in _KINDS if is_kind(mode)), "unknown type")


def bundle_files(directory: Path) -> list[bytes]:
    """Every regular file under `directory` but the manifest, as sorted relative byte paths.

    Symbolic links are neither followed nor listed: the manifest vouches for this folder only.
    A folder that cannot be listed is skipped, as `os.walk` skips it.
    """
    return sorted(rel for rel in walk(directory).files if rel != _MANIFEST)


def run_of(rel: bytes) -> bytes | None:
    """The run a path of the bundle belongs to: runs/<id>.json, logs/<id>/..., reports/<id>/..."""
    folder, _, rest = rel.partition(b"/")
    if folder == b"runs" and rest.endswith(b".json") and b"/" not in rest:
        return rest.removesuffix(b".json")
    if folder in (b"logs", b"reports") and rest and rel != _HEARTBEAT:
        return rest.partition(b"/")[0]
    return None


def _seal_of(rel: bytes) -> bytes | None:
    """The run whose seal `rel` is (seals/<id>.sha256), or None."""
    folder, _, name = rel.partition(b"/")
    suffix = SEAL_SUFFIX.encode()
    if folder != _SEALS or b"/" in name or not name.endswith(suffix) or name == suffix:
        return None
    return name.removesuffix(suffix)


def _seal_rel(run_id: bytes) -> bytes:
    return _SEALS + b"/" + run_id + SEAL_SUFFIX.encode()


# --- check files: `sha256sum` lines -------------------------------------------------------


def manifest_line(relpath: bytes, digest: str) -> bytes:
    """One line as `sha256sum` prints it, escaping `\\`, newline and CR the same way."""
    if not any(char in relpath for char in _ESCAPES):
        return digest.encode() + b"  " + relpath + b"\n"
    escaped = b"".join(_ESCAPES.get(bytes([byte]), bytes([byte])) for byte in relpath)
    return b"\\" + digest.encode() + b"  " + escaped + b"\n"


@dataclass(frozen=True)
class CheckFile:
    """The manifest or a seal, as read: what it lists and what in it names nothing it could."""

    source: str  # its path in the bundle: "sha256_manifest.txt", "seals/<run-id>.sha256"
    entries: Mapping[bytes, str]  # path inside the bundle -> sha256, lower-case hex
    heartbeat_prefix: tuple[int, str] | None  # a seal's `# prefix` line: (length, sha256)
    problems: tuple[Finding, ...]


def parse_check_file(data: bytes, source: str) -> CheckFile:
    """Read `sha256sum` lines, text (`  `) or binary (` *`), escaped or not, as `sha256sum -c`
    does: `#` lines are comments, a CR before the LF is dropped. A name that is not a path inside
    the bundle (`/etc/passwd`, `../x`) is a problem, never a file to open."""
    entries: dict[bytes, str] = {}
    problems: list[Finding] = []
    prefix = None
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = raw.removesuffix(b"\r")
        if line.startswith(b"#"):
            prefix = _heartbeat_prefix(line) or prefix
        elif line and (problem := _add_entry(entries, line, f"line {number} of {source}")):
            problems.append(problem)
    return CheckFile(source, entries, prefix, tuple(problems))


def _add_entry(entries: dict[bytes, str], line: bytes, where: str) -> Finding | None:
    """Add one `sha256sum` line to `entries`; None, or what is wrong with it."""
    match = _CHECK_LINE.fullmatch(line)
    if match is None:
        return Finding("malformed", where)
    name = _unescape(match[3]) if match[1] else match[3]
    digest = match[2].decode().lower()
    rel = _inside(name)
    if rel is None:
        return Finding("outside the bundle", _show(name), (where, "not opened"))
    if entries.setdefault(rel, digest) != digest:
        return Finding("listed twice", _show(rel), (where,))
    return None


def parse_manifest(data: bytes) -> dict[bytes, str]:
    return dict(parse_check_file(data, MANIFEST_NAME).entries)


def _heartbeat_prefix(line: bytes) -> tuple[int, str] | None:
    match = _PREFIX_LINE.fullmatch(line)
    return (int(match[1]), match[2].decode()) if match else None


def _inside(name: bytes) -> bytes | None:
    """`name` as a path inside the bundle (`./a//b` is `a/b`); None if it could lead outside."""
    parts = [part for part in name.split(b"/") if part not in (b"", b".")]
    if name.startswith(b"/") or not parts or b".." in parts or b"\0" in name:
        return None
    return b"/".join(parts)


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


# --- the manifest -------------------------------------------------------------------------


def write_manifest(bundle: Bundle) -> str:
    """Rewrite the day's manifest over the bundle as it is, under the lock; return its sha256.

    It checks no seal: a run ends with `seal_run`, which rewrites the manifest only when every
    earlier seal holds."""
    with locked(bundle):
        relpaths = bundle_files(bundle.dir)
        digests = file_digests(bundle.dir, relpaths)
        return _write_manifest_data(bundle, dict(zip(relpaths, digests, strict=True)))


def add_file(bundle: Bundle, relpath: str, data: bytes) -> str:
    """Write a file of no run into the bundle after its runs ended (an attestation) and list it
    in the day's manifest, as a run's end would; return the manifest's sha256.

    Under the day's lock, like `seal_run`, but it writes no seal and rewrites none. Refused when
    an earlier seal no longer holds (the manifest must then stay as it is, to keep flagging the
    change), and when another file is already at `relpath`: once listed, a file of no run is
    never replaced. The same bytes again are no change."""
    rel = relpath.encode()
    with locked(bundle):
        before = _snapshot(bundle)
        broken = _judge(before).broken
        if broken:
            shown = bundle.dir.relative_to(bundle.root).as_posix()
            raise StepFailed(
                f"cannot add {relpath}: the evidence in {shown}/ no longer matches its seals"
                f" ({broken[0]}; `inv evidence.verify` names every difference)"
            )
        digest = hashlib.sha256(data).hexdigest()
        if rel in before.tree.odd or before.digests.get(rel, digest) != digest:
            raise UsageError(f"{relpath} is already in the bundle, with other content")
        write_atomic(bundle, bundle.dir / relpath, data)
        return _write_manifest_data(bundle, {**before.digests, rel: digest})


def _write_manifest_data(bundle: Bundle, digests: Mapping[bytes, str]) -> str:
    data = b"".join(manifest_line(rel, digests[rel]) for rel in sorted(digests))
    write_atomic(bundle, bundle.manifest_path, data)
    return hashlib.sha256(data).hexdigest()


# --- seals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sealed:
    """What `seal_run` did, for the feedback entry and the run's last words."""

    seal_sha256: str  # sha256 of seals/<run_id>.sha256 (quoted in the feedback entry)
    manifest_sha256: str | None  # of the day's manifest as rewritten; None when it was not
    broken: tuple[str, ...]  # one line per problem found in earlier seals; empty when all hold


def seal_run(bundle: Bundle, run_id: str) -> Sealed:
    """Seal a run's files, check every earlier seal and, when all hold, rewrite the manifest.

    Under the day's lock each file of the bundle is read once: the digests that check the
    earlier seals are the ones the new seal and the manifest are written with. A broken seal
    leaves the manifest as it was, so the last one written before the change still flags it.
    """
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    own = run_id.encode()
    with locked(bundle):
        before = _snapshot(bundle)
        seal = _seal_data(before, own)
        after = before.with_seal(own, seal)
        broken = list(_judge(after, sealing=own).broken)
        if _SEALS in before.tree.odd or _SEALS in before.tree.files:  # never write through it
            broken.append(f"not sealed: run {run_id} ({SEALS_DIR} is not a folder)")
        else:
            write_atomic(bundle, bundle.seal_path(run_id), seal)
        manifest = None if broken else _write_manifest_data(bundle, after.digests)
        return Sealed(hashlib.sha256(seal).hexdigest(), manifest, tuple(broken))


def _seal_data(state: _Snapshot, run_id: bytes) -> bytes:
    """A run's seal: its files and the day's earlier seals in `sha256sum` lines, then a comment
    line with the length of the heartbeat log and the sha256 of that much of it."""
    listed = sorted(
        rel for rel in state.digests if run_of(rel) == run_id or _seal_of(rel) not in (None, run_id)
    )
    lines = [
        b"# seal of run " + run_id + b": its files, the day's earlier seals, the heartbeat log\n",
        *(manifest_line(rel, state.digests[rel]) for rel in listed),
    ]
    if state.heartbeat_length is not None:
        digest = state.heartbeat[state.heartbeat_length]
        lines.append(
            b"# prefix %d %s  %s\n" % (state.heartbeat_length, digest.encode(), _HEARTBEAT)
        )
    return b"".join(lines)


# --- reading a bundle once ----------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    """A bundle as read once: every regular file's sha256, and the check files among them."""

    tree: Tree
    digests: Mapping[bytes, str]  # every regular file but the manifest
    heartbeat_length: int | None  # as read; None when there is no heartbeat log
    heartbeat: Mapping[int, str]  # sha256 of its first n bytes: each sealed n, and its length
    manifest: CheckFile | None  # None when absent, or not a regular file
    seals: Mapping[bytes, CheckFile]  # run id -> its seal

    def with_seal(self, run_id: bytes, data: bytes) -> _Snapshot:
        rel = _seal_rel(run_id)
        digests = {**self.digests, rel: hashlib.sha256(data).hexdigest()}
        seals = {**self.seals, run_id: parse_check_file(data, _show(rel))}
        return replace(self, digests=digests, seals=seals)


def _snapshot(bundle: Bundle) -> _Snapshot:
    """Walk the bundle, read its check files, hash every other file once."""
    tree = walk(bundle.dir)
    top = os.fsencode(bundle.dir) + b"/"
    check_files = {
        rel: _read_in_bundle(top + rel)
        for rel in tree.files
        if rel == _MANIFEST or _seal_of(rel) is not None
    }
    seals = {
        run_id: parse_check_file(data, _show(rel))
        for rel, data in check_files.items()
        if (run_id := _seal_of(rel)) is not None
    }
    lengths = [seal.heartbeat_prefix[0] for seal in seals.values() if seal.heartbeat_prefix]
    length, heartbeat = (
        prefix_digests(top + _HEARTBEAT, lengths) if _HEARTBEAT in tree.files else (None, {})
    )
    rest = sorted(tree.files - check_files.keys() - {_HEARTBEAT})
    digests = dict(zip(rest, file_digests(bundle.dir, rest), strict=True))
    for run_id in seals:
        digests[_seal_rel(run_id)] = hashlib.sha256(check_files[_seal_rel(run_id)]).hexdigest()
    if length is not None:
        digests[_HEARTBEAT] = heartbeat[length]
    manifest = check_files.get(_MANIFEST)
    parsed = None if manifest is None else parse_check_file(manifest, MANIFEST_NAME)
    return _Snapshot(tree, digests, length, heartbeat, parsed, seals)


# --- verifying ----------------------------------------------------------------------------

_FILE_KINDS = ("changed", "missing", "added", "not a regular file")
_KIND_ORDER = (
    *_FILE_KINDS,
    "outside the bundle",
    "listed twice",
    "malformed",
    "unreadable",
    "attestation",  # an attestation that does not hold (shipyard.provenance.check)
)


@dataclass(frozen=True)
class Finding:
    """One line of `evidence.verify`: `changed: runs/X.json (sealed by run X; manifest)`."""

    kind: str  # one of _KIND_ORDER
    path: str  # printable
    notes: tuple[str, ...] = ()  # what it is, and each seal or manifest that flags it
    breaks_seal: bool = False  # an earlier seal no longer holds: the manifest stays as it is

    @property
    def line(self) -> str:
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"{self.kind}: {self.path}{notes}"


@dataclass(frozen=True)
class Verification:
    findings: tuple[Finding, ...]
    seals: int = 0  # how many seals were checked
    attestations: int = 0  # how many attestations were checked
    notes: tuple[str, ...] = ()  # what was not checked, and why: no finding

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def changed(self) -> tuple[str, ...]:
        return self._paths("changed")

    @property
    def missing(self) -> tuple[str, ...]:
        return self._paths("missing")

    @property
    def added(self) -> tuple[str, ...]:
        return self._paths("added")

    @property
    def broken(self) -> tuple[str, ...]:
        return tuple(finding.line for finding in self.findings if finding.breaks_seal)

    def lines(self) -> list[str]:
        return [finding.line for finding in self.findings]

    def _paths(self, kind: str) -> tuple[str, ...]:
        return tuple(finding.path for finding in self.findings if finding.kind == kind)


class Attested(Protocol):
    """One attestation of a bundle, as its checker found it (shipyard.provenance.check)."""

    @property
    def path(self) -> str: ...
    @property
    def problems(self) -> tuple[str, ...]: ...  # none when it holds
    @property
    def notes(self) -> tuple[str, ...]: ...  # what could not be checked here: not a problem


def verify(
    bundle: Bundle, *, attestations: Callable[[Bundle], Sequence[Attested]] = lambda _: ()
) -> Verification:
    """Re-hash the bundle; check it against every seal and the day's manifest, and check every
    attestation in it with `attestations` (`shipyard.provenance.verify` passes its checker).

    Only files found by walking the bundle are opened: a line naming `../x`, `/etc/passwd` or a
    path through a symlink is a finding, and so is every entry that is not a regular file.
    """
    with _steady(bundle):
        judged = _judge(_snapshot(bundle))
        attested = attestations(bundle)
    found = [Finding("attestation", each.path, each.problems) for each in attested if each.problems]
    return replace(
        judged,
        findings=_merged((*judged.findings, *found)),
        attestations=len(attested),
        notes=tuple(note for each in attested for note in each.notes),
    )


def _judge(state: _Snapshot, *, sealing: bytes | None = None) -> Verification:
    """Every finding of every seal and of the manifest, one per path. `sealing`: the run being
    sealed, whose own seal holds by construction and whose odd files break no earlier seal."""
    by_run: dict[bytes | None, list[bytes]] = {}
    for rel in sorted(state.digests):
        by_run.setdefault(run_of(rel), []).append(rel)
    found: list[Finding] = []
    for run_id, seal in sorted(state.seals.items()):
        found += _check_seal(state, run_id, seal, by_run.get(run_id, []), breaks=run_id != sealing)
    if state.manifest is not None:
        found += _check_manifest(state, state.manifest, sealing)
    elif _MANIFEST not in state.tree.odd:
        found.append(Finding("missing", MANIFEST_NAME))
    found += _odd_entries(state, sealing)
    return Verification(_merged(found), seals=len(state.seals))


def _check_seal(
    state: _Snapshot, run_id: bytes, seal: CheckFile, run_files: list[bytes], *, breaks: bool
) -> list[Finding]:
    """What a seal flags: a file it lists changed, missing or replaced, a file added to its run's
    folders, the heartbeat log's sealed first bytes changed."""
    sealed_by = f"sealed by run {_show(run_id)}"
    found = [replace(problem, breaks_seal=breaks) for problem in seal.problems]
    for rel, digest in seal.entries.items():
        if outcome := _check_entry(state, rel, digest):
            found.append(Finding(outcome[0], _show(rel), (*outcome[1], sealed_by), breaks))
    in_folders = f"in the folders {sealed_by}"
    found += [
        Finding("added", _show(rel), (in_folders,), breaks)
        for rel in run_files
        if rel not in seal.entries
    ]
    if seal.heartbeat_prefix is not None:
        found += _check_prefix(state, sealed_by, *seal.heartbeat_prefix, breaks=breaks)
    return found


def _check_prefix(
    state: _Snapshot, sealed_by: str, length: int, digest: str, *, breaks: bool
) -> list[Finding]:
    note, shown = f"first {length} bytes {sealed_by}", _show(_HEARTBEAT)
    if state.heartbeat_length is None:
        kind = state.tree.odd.get(_HEARTBEAT)
        if kind:
            return [Finding("not a regular file", shown, (kind, note), breaks)]
        return [Finding("missing", shown, (note,), breaks)]
    if state.heartbeat.get(length) == digest:
        return []
    if length > state.heartbeat_length:
        note += f"; it now has {state.heartbeat_length}"
    return [Finding("changed", shown, (note,), breaks)]


def _check_manifest(state: _Snapshot, manifest: CheckFile, sealing: bytes | None) -> list[Finding]:
    """What the manifest flags, but for the files of runs sealed after it was written (it may
    have caught them half written: their seal judges them) and heartbeat lines appended since."""
    newer = {run_id for run_id in state.seals if _seal_rel(run_id) not in manifest.entries}
    found = list(manifest.problems)
    for rel, digest in manifest.entries.items():
        if run_of(rel) in newer or (rel == _HEARTBEAT and digest in state.heartbeat.values()):
            continue
        if outcome := _check_entry(state, rel, digest):
            breaks = _seal_of(rel) not in (None, sealing) or _final_in(manifest, rel, sealing)
            found.append(Finding(outcome[0], _show(rel), (*outcome[1], "manifest"), breaks))
    found += [
        Finding("added", _show(rel), ("not in the manifest",))
        for rel in sorted(state.digests.keys() - manifest.entries.keys())
        if run_of(rel) not in newer and _seal_of(rel) is None
    ]
    return found


def _final_in(manifest: CheckFile, rel: bytes, sealing: bytes | None) -> bool:
    """Whether the manifest's line is the last word on `rel`, so that a change to it must not
    be written over: a file of a run that had ended (its run record listed) when the manifest
    was written, as a run from before seals existed has only the manifest; or a file of no run
    at all. Not the heartbeat log, which grows (the seals hold its sealed bytes)."""
    if rel == _HEARTBEAT:
        return False
    run_id = run_of(rel)
    if run_id is None:
        return True
    return run_id != sealing and b"runs/" + run_id + b".json" in manifest.entries


def _check_entry(state: _Snapshot, rel: bytes, digest: str) -> tuple[str, tuple[str, ...]] | None:
    """A listed file's kind of finding and what it is, from the walk alone; None when it holds."""
    if rel in state.digests or rel in state.tree.files:
        return None if state.digests.get(rel) == digest else ("changed", ())
    if rel in state.tree.odd:
        return "not a regular file", (state.tree.odd[rel],)
    parts = rel.split(b"/")
    for parent in (b"/".join(parts[:end]) for end in range(1, len(parts))):
        if parent in state.tree.odd:
            return "outside the bundle", (f"through the {state.tree.odd[parent]} {_show(parent)}",)
        if parent in state.tree.unreadable:
            return None  # named once, as unreadable
    return "missing", ()


def _odd_entries(state: _Snapshot, sealing: bytes | None) -> list[Finding]:
    """What no check file can list: entries that are not regular files, folders that cannot be
    listed (what they hold cannot be checked, so they break the seals too)."""
    found = [
        Finding("not a regular file", _show(rel), (kind,), _sealed_place(state, rel, sealing))
        for rel, kind in state.tree.odd.items()
    ]
    found += [
        Finding("unreadable", _show(rel), (why,), True)
        for rel, why in state.tree.unreadable.items()
    ]
    return found


def _sealed_place(state: _Snapshot, rel: bytes, sealing: bytes | None) -> bool:
    """Whether an earlier seal vouches for what stands at `rel`."""
    earlier = {run_id: seal for run_id, seal in state.seals.items() if run_id != sealing}
    if run_of(rel) in earlier or rel == _SEALS or rel.startswith(_SEALS + b"/"):
        return True
    return rel == _HEARTBEAT and any(seal.heartbeat_prefix for seal in earlier.values())


def _merged(found: Iterable[Finding]) -> tuple[Finding, ...]:
    """One finding per path: the kind first named, with the notes of all that flag it."""
    merged: dict[tuple[str, str], Finding] = {}
    for finding in found:
        key = ("" if finding.kind in _FILE_KINDS else finding.kind, finding.path)
        seen = merged.setdefault(key, finding)
        if seen is not finding:
            notes = tuple(dict.fromkeys((*seen.notes, *finding.notes)))
            merged[key] = replace(
                seen, notes=notes, breaks_seal=seen.breaks_seal or finding.breaks_seal
            )
    return tuple(sorted(merged.values(), key=lambda f: (_KIND_ORDER.index(f.kind), f.path)))


def _show(rel: bytes) -> str:
    """A printable one-line name: undecodable bytes and control characters are escaped."""
    return printable(rel.decode("utf-8", "backslashreplace"))


def printable(text: str) -> str:
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
