"""The foreground-proof gate, `proof.check`: a change to deploy paths must commit the heartbeat
log of a run, in a bundle that verifies as committed; in a pull request, its body must name
that log (docs/proof.md).

The check reads git and, in a pull request in GitHub Actions, the event file the runner
writes (`GITHUB_EVENT_PATH`): no API call, and no evidence of its own (it changes nothing).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shipyard import evidence, git, provenance
from shipyard.config import DEFAULT_PROOF_PATHS, Config
from shipyard.errors import ExitCode, UsageError
from shipyard.redact import Redactor
from shipyard.wording import counted

PROOF_LOG = "artifacts/<agent>/<date>/logs/heartbeat.log"
SHOWN = 5  # paths or findings named in the one line before "and N more"
_COMMITTED_LOG = re.compile(
    r"artifacts/([A-Za-z0-9][A-Za-z0-9._-]*)/([0-9]{4}-[0-9]{2}-[0-9]{2})/logs/heartbeat\.log"
)
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # SHA-1, or SHA-256 repositories
_FETCH_HINT = "a shallow clone? check out with fetch-depth: 0"


@dataclass(frozen=True)
class PullRequest:
    """What `proof.check` reads of a `pull_request` event (GITHUB_EVENT_PATH)."""

    base_sha: str
    body: str


@dataclass(frozen=True)
class CommittedLog:
    """A heartbeat log added or changed since the base, and how its bundle fares as committed."""

    path: str  # from the repository's top
    problems: tuple[str, ...] = ()  # why it is no proof; none when its bundle verifies

    @property
    def verifies(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ProofCheck:
    """Everything the gate found: the verdict and its one line are made from this alone."""

    base: str  # as shown: the ref given or chosen, or the pull request's base sha, shortened
    changed: tuple[str, ...]  # every path changed since the merge base, from the top
    deploy_paths: tuple[str, ...]  # those matching `proof.paths`
    logs: tuple[CommittedLog, ...]  # newest day first
    expected: str  # where a proof goes, from the top: `artifacts/<agent>/<date>/logs/…`
    pull_request: PullRequest | None = None

    @property
    def proof(self) -> CommittedLog | None:
        """The log that proves the change: it verifies and, in a pull request, the body names it."""
        return next((log for log in self.logs if log.verifies and self._named(log)), None)

    def _named(self, log: CommittedLog) -> bool:
        return self.pull_request is None or log.path in self.pull_request.body

    def missing(self) -> list[str]:
        """Each thing that keeps the gate from holding, in a few words; none when it holds."""
        if not self.deploy_paths or self.proof is not None:
            return []
        verifying = [log for log in self.logs if log.verifies]
        missing = []
        if not self.logs:
            folder = self.expected.removesuffix("logs/heartbeat.log")
            missing.append(
                f"no {self.expected} is committed (after a run: git add -f {folder}, then commit)"
            )
        elif not verifying:
            missing += [f"{log.path} {problem}" for log in self.logs for problem in log.problems]
        if self.pull_request is not None and not any(map(self._named, verifying or self.logs)):
            wanted = (verifying or self.logs)[0].path if self.logs else "the heartbeat log"
            missing.append(f"the pull request's body does not name {wanted}")
        return missing

    def outcome(self) -> tuple[ExitCode, str]:
        """The exit code and the one line that says why."""
        if not self.deploy_paths:
            changed = f"{counted(len(self.changed), 'path')} changed, none in proof.paths"
            return ExitCode.OK, f"proof: no deploy path changed since {self.base} ({changed})"
        changed = f"deploy paths changed since {self.base}: {shortened(self.deploy_paths)}"
        if self.proof is not None:
            named = ", named in the pull request's body" if self.pull_request else ""
            return ExitCode.OK, f"proof: {self.proof.path} verifies{named} ({changed})"
        return ExitCode.STEP_FAILED, f"proof: failed: {'; '.join(self.missing())} ({changed})"


def proof_command(
    config: Config | None,
    *,
    base: str = "",
    environ: Mapping[str, str] = os.environ,
    redactor: Redactor | None = None,
) -> ExitCode:
    """`proof.check [--base REF]`: one line; exit 0 when the gate holds, 1 naming each thing
    missing, 2 (UsageError) for a base that is not a commit, outside git, a bad event file.
    Without a config: the project is the working folder, with the default `proof.paths`."""
    root = config.root if config else Path.cwd()
    paths = config.proof.paths if config else DEFAULT_PROOF_PATHS
    found = check(root, paths, base=base, environ=environ)
    code, line = found.outcome()
    redactor = redactor or Redactor.from_environ(environ)
    print(redactor.mask(line), flush=True)
    if code and environ.get("GITHUB_ACTIONS") == "true":
        from shipyard import gha

        print(gha.command("error", redactor.mask(line), title="Shipyard proof.check (exit 1)"))
    return code


def check(
    root: Path,
    paths: Sequence[str],
    *,
    base: str = "",
    environ: Mapping[str, str] = os.environ,
) -> ProofCheck:
    """What the gate finds for the project at `root` (a folder in a git work tree)."""
    top = git.top_level(root)
    if top is None:
        raise UsageError(f"proof.check: {root} is not in a git work tree")
    pull_request = pull_request_event(environ)
    commit, shown = choose_base(top, base, pull_request)
    changes = changed_since(top, commit, shown)
    deploy_paths = tuple(path for path in changes if matches_any(path, paths))
    prefix = project_prefix(root, top)
    logs = committed_logs(top, prefix, changes) if deploy_paths else ()
    return ProofCheck(
        base=shown,
        changed=tuple(changes),
        deploy_paths=deploy_paths,
        logs=logs,
        expected=prefix + PROOF_LOG,
        pull_request=pull_request,
    )


# --- The pull request ------------------------------------------------------------------


def pull_request_event(environ: Mapping[str, str]) -> PullRequest | None:
    """The base sha and body of the pull request a `pull_request` workflow runs for; None
    for any other event, or outside GitHub Actions."""
    if environ.get("GITHUB_EVENT_NAME") != "pull_request":
        return None
    where = environ.get("GITHUB_EVENT_PATH", "")
    if not where:
        raise UsageError("GITHUB_EVENT_NAME is pull_request but GITHUB_EVENT_PATH is not set")
    try:
        event = json.loads(Path(where).read_bytes())
    except OSError as error:
        raise UsageError(f"GITHUB_EVENT_PATH={where}: cannot read: {error.strerror}") from None
    except ValueError:
        raise UsageError(f"GITHUB_EVENT_PATH={where}: not JSON") from None
    pull_request = event.get("pull_request") if isinstance(event, dict) else None
    base = pull_request.get("base") if isinstance(pull_request, dict) else None
    sha = base.get("sha") if isinstance(base, dict) else None
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise UsageError(f"GITHUB_EVENT_PATH={where}: no pull_request.base.sha in it")
    body = pull_request.get("body") if isinstance(pull_request, dict) else None
    return PullRequest(base_sha=sha, body=body if isinstance(body, str) else "")


# --- git: the base and what changed since ----------------------------------------------


def choose_base(top: Path, given: str, pull_request: PullRequest | None) -> tuple[str, str]:
    """The base commit and how to show it: `--base`, else the pull request's base, else the
    first of origin's default branch (`origin/HEAD`), `origin/main` and `main` that exists."""
    if given:
        if given.startswith("-"):
            raise UsageError(f"--base {given}: not a ref (a ref does not start with '-')")
        return _commit(top, given, f"--base {given}"), given
    if pull_request is not None:
        shown = pull_request.base_sha[:12]
        what = f"the pull request's base {shown} (pull_request.base.sha in GITHUB_EVENT_PATH)"
        return _commit(top, pull_request.base_sha, what, hint=_FETCH_HINT), shown
    for ref in _default_bases(top):
        try:
            return _commit(top, ref, ref), ref
        except UsageError:
            continue
    raise UsageError(
        "proof.check: no base to compare with (none of origin/HEAD, origin/main, main exists"
        " here); give --base REF"
    )


def _default_bases(top: Path) -> list[str]:
    try:
        head = git.output(top, "symbolic-ref", "-q", "--short", "refs/remotes/origin/HEAD")
    except git.GitFailed:
        head = b""
    default = head.decode("utf-8", "surrogateescape").strip()
    return list(dict.fromkeys([ref for ref in (default, "origin/main", "main") if ref]))


def _commit(top: Path, ref: str, what: str, *, hint: str = "") -> str:
    try:
        sha = git.output(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except git.GitFailed:
        raise UsageError(f"{what}: not a commit here" + (f" ({hint})" if hint else "")) from None
    return sha.decode().strip()


def changed_since(top: Path, base: str, shown: str) -> dict[str, str]:
    """Each path a commit since the merge base of `base` and HEAD changed, from the top, with
    its status (`A`, `M`, `D`, `T`); a rename is its old path deleted and its new one added.
    Committed changes only: the work tree and the index do not count."""
    try:
        merge_base = git.output(top, "merge-base", base, "HEAD").decode().strip()
    except git.GitFailed:
        raise UsageError(f"{shown} and HEAD have no common commit here ({_FETCH_HINT})") from None
    options = ("--name-status", "-z", "--no-renames", "--no-relative", "--no-color")
    fields = git.output(top, "diff", *options, merge_base, "HEAD").split(b"\0")
    return {
        os.fsdecode(path): status.decode()
        for status, path in zip(fields[0::2], fields[1::2], strict=False)
        if path
    }


def project_prefix(root: Path, top: Path) -> str:
    """The project's folder from the repository's top, ending in `/`; "" at the top."""
    relative = root.resolve().relative_to(top.resolve()).as_posix()
    return "" if relative == "." else relative + "/"


# --- Matching globs --------------------------------------------------------------------


def matches_any(path: str, patterns: Iterable[str]) -> bool:
    return any(glob_pattern(pattern).fullmatch(path) for pattern in patterns)


def glob_pattern(glob: str) -> re.Pattern[str]:
    """A glob as GitHub's `paths:` filters read it: `*` any characters but `/`, `**` any
    characters (`**/` also none), `?` one character but `/`; the rest literal."""
    parts: list[str] = []
    index = 0
    while index < len(glob):
        if glob.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif glob.startswith("**", index):
            parts.append(".*")
            index += 2
        else:
            parts.append({"*": "[^/]*", "?": "[^/]"}.get(glob[index], re.escape(glob[index])))
            index += 1
    return re.compile("".join(parts), re.DOTALL)


# --- The committed bundles -------------------------------------------------------------


def committed_logs(top: Path, prefix: str, changes: Mapping[str, str]) -> tuple[CommittedLog, ...]:
    """Each heartbeat log of the project added or changed since the base (not deleted), newest
    day first, with what keeps its bundle, as committed, from being a proof."""
    found = []
    for path, status in changes.items():
        match = _COMMITTED_LOG.fullmatch(path[len(prefix) :]) if path.startswith(prefix) else None
        if match and status != "D":
            found.append((match[2], path, match[1]))
    found.sort(reverse=True)
    return tuple(
        CommittedLog(path, bundle_problems(top, prefix, agent, day)) for day, path, agent in found
    )


def bundle_problems(top: Path, prefix: str, agent: str, day: str) -> tuple[str, ...]:
    """Why the bundle `artifacts/<agent>/<day>/`, as HEAD has it, is no proof: it does not
    verify (`evidence.verify` of a copy of its committed files), or no run sealed it."""
    with tempfile.TemporaryDirectory(prefix="shipyard-proof-") as scratch:
        root = Path(scratch) / prefix
        bundle = evidence.Bundle(root, agent, day)
        folder = bundle.dir.relative_to(scratch).as_posix()
        write_committed(top, folder, Path(scratch))
        result = provenance.verify(bundle)
    if not result.ok:
        findings = [f"{finding.kind} {finding.path}" for finding in result.findings]
        return (f"does not verify as committed ({shortened(findings)})",)
    if not result.seals:
        return ("is in a bundle no run sealed (no seals/ committed)",)
    return ()


def write_committed(top: Path, folder: str, into: Path) -> None:
    """The files under `folder` (from the top) as HEAD has them, written under `into`."""
    listing = git.output(
        top, "--literal-pathspecs", "ls-tree", "-r", "-z", "--full-tree", "HEAD", "--", folder
    )
    entries = [_tree_entry(line) for line in listing.split(b"\0") if line]
    blobs = [(mode, oid, path) for mode, kind, oid, path in entries if kind == "blob"]
    contents = _blob_contents(top, [oid for _, oid, _ in blobs])
    for (mode, _, path), data in zip(blobs, contents, strict=True):
        parts = os.fsdecode(path).split("/")
        if {"", ".", ".."} & set(parts):
            continue  # never written outside `into`: no such path reaches a checkout either
        target = into.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == b"120000":
            target.symlink_to(os.fsdecode(data))  # a finding for verify, never followed
        else:
            target.write_bytes(data)


def _tree_entry(line: bytes) -> tuple[bytes, str, str, bytes]:
    """`<mode> <type> <object>\\t<path>` of `git ls-tree -z`."""
    info, path = line.split(b"\t", 1)
    mode, kind, oid = info.split(b" ")
    return mode, kind.decode(), oid.decode(), path


def _blob_contents(top: Path, oids: Sequence[str]) -> list[bytes]:
    """Each blob's bytes, read by one `git cat-file --batch`."""
    if not oids:
        return []
    data = git.output(
        top, "cat-file", "--batch", stdin="".join(f"{oid}\n" for oid in oids).encode()
    )
    contents, at = [], 0
    for _ in oids:
        header_end = data.index(b"\n", at)
        size = int(data[at:header_end].split(b" ")[2])
        contents.append(data[header_end + 1 : header_end + 1 + size])
        at = header_end + 1 + size + 1  # the content, then a newline
    return contents


def shortened(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")
