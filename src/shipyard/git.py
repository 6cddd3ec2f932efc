"""What git says about the tree a run builds from: its commit, and whether it has uncommitted
changes to tracked files (a dirty tree deploys only with `--allow-dirty`).

git is run with `subprocess`, as every other program outside the step runner is (flyctl, the
scanners, servers): one way to start a program, bytes in and out, and no import cost."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT = 10.0
SHOWN_FILES = 5


@dataclass(frozen=True)
class TreeState:
    sha: str | None  # HEAD, or None outside a git work tree
    changed: tuple[str, ...] = ()  # tracked files with uncommitted changes, as git names them
    diff_sha256: str | None = None  # sha256 of `git diff HEAD`, when there are changes

    @property
    def dirty(self) -> bool:
        return bool(self.changed)

    def describe_changes(self) -> str:
        shown = ", ".join(self.changed[:SHOWN_FILES])
        more = len(self.changed) - SHOWN_FILES
        return shown + (f" and {more} more" if more > 0 else "")


def _run_git(root: Path, *args: str) -> bytes | None:
    """git's stdout, or None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _git(root: Path, *args: str) -> str | None:
    out = _run_git(root, *args)
    return None if out is None else out.decode("utf-8", "surrogateescape")


def _diff_sha256(root: Path) -> str | None:
    """sha256 of `git diff HEAD --binary` as bytes (what `... | sha256sum` prints)."""
    diff = _run_git(root, "diff", "HEAD", "--binary")
    return None if diff is None else hashlib.sha256(diff).hexdigest()


def head_sha(root: Path) -> str | None:
    """The commit checked out at `root`, or None outside a git work tree."""
    out = _git(root, "rev-parse", "HEAD")
    return out.strip() or None if out is not None else None


def tree_state(root: Path, *, ignore: tuple[Path, ...] = ()) -> TreeState:
    """HEAD and the tracked files under git's work tree that differ from it (staged or not);
    paths in `ignore` (the config file) do not count. Untracked files never count."""
    sha = head_sha(root)
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=no")
    top = _git(root, "rev-parse", "--show-toplevel")
    if sha is None or status is None or top is None:
        return TreeState(sha)
    ignored = {path.resolve() for path in ignore}
    base = Path(top.strip())
    changed = [name for name in _porcelain_paths(status) if (base / name).resolve() not in ignored]
    if not changed:
        return TreeState(sha)
    return TreeState(sha, tuple(changed), _diff_sha256(root))


def _porcelain_paths(output: str) -> list[str]:
    """Paths from `git status --porcelain=v1 -z`: `XY path\\0`, renames followed by the old path."""
    paths: list[str] = []
    entries = output.split("\0")
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if entry[:1] in ("R", "C"):
            index += 1  # the rename's source path
    return paths


class GitFailed(Exception):
    """git could not run, or failed: `message` is its last line of stderr, or why it could not."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def output(root: Path, *args: str, stdin: bytes = b"", timeout: float = 60.0) -> bytes:
    """git's stdout, run in `root`; GitFailed saying why when git is missing, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, input=stdin, capture_output=True, timeout=timeout, check=False
        )
    except OSError as error:
        raise GitFailed(f"cannot run git: {error.strerror or error}") from None
    except subprocess.TimeoutExpired:
        raise GitFailed(f"git {args[0]} took more than {timeout:g}s") from None
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitFailed(said[-1] if said else f"git {args[0]} exited {done.returncode}")
    return done.stdout


def top_level(root: Path) -> Path | None:
    """The top folder of the git work tree holding `root`, or None outside one."""
    try:
        top = output(root, "rev-parse", "--show-toplevel").decode("utf-8", "surrogateescape")
    except GitFailed:
        return None
    return Path(top.strip()) if top.strip() else None
