"""Build the webapp artifact: `python3 examples/webapp/build.py [--out DIR] [--version V]`.

Writes DIR/webapp-<version>.tar.gz (DIR defaults to `dist/` under the current directory) and
prints its path as the last line of stdout. The archive is reproducible: the same tree gives
the same bytes, because every timestamp, owner and mode inside it is fixed.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
PACKAGE = "webapp"
FIXED_EPOCH = 315532800  # 1980-01-01T00:00:00Z, used when SOURCE_DATE_EPOCH is unset
GIT_TIMEOUT = 10.0
VERSION_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]*")


class BuildError(Exception):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dist"), help="output folder")
    parser.add_argument("--version", help="override the version read from VERSION")
    return parser.parse_args(argv)


def read_version(override: str | None) -> str:
    version = override if override is not None else (SOURCE_DIR / "VERSION").read_text().strip()
    if not VERSION_PATTERN.fullmatch(version):
        raise BuildError(f"not a usable version: {version!r}")
    return version


def git_sha() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=SOURCE_DIR,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    sha = result.stdout.strip()
    return sha if result.returncode == 0 and sha else "unknown"


def archive_mtime() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return FIXED_EPOCH
    if not value.isdigit():
        raise BuildError(f"SOURCE_DATE_EPOCH is not a non-negative integer: {value!r}")
    return int(value)


def archive_members(version: str, sha: str) -> dict[str, bytes | None]:
    """Archive name -> file content, or None for a directory."""
    members: dict[str, bytes | None] = {PACKAGE: None}
    for path in (SOURCE_DIR / PACKAGE).rglob("*.py"):
        relative = path.relative_to(SOURCE_DIR)
        if "__pycache__" in relative.parts:
            continue
        members.update({parent.as_posix(): None for parent in relative.parents[:-1]})
        members[relative.as_posix()] = path.read_bytes()
    info = {"name": PACKAGE, "version": version, "git_sha": sha}
    members["build-info.json"] = (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()
    return members


def normalised_entry(name: str, content: bytes | None, mtime: int) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.mtime = mtime
    entry.uid = entry.gid = 0
    entry.uname = entry.gname = ""
    if content is None:
        entry.type = tarfile.DIRTYPE
        entry.mode = 0o755
    else:
        entry.mode = 0o644
        entry.size = len(content)
    return entry


def write_archive(target: io.BufferedIOBase, members: dict[str, bytes | None], mtime: int) -> None:
    with (
        gzip.GzipFile(fileobj=target, mode="wb", mtime=0, filename="") as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.GNU_FORMAT) as archive,
    ):
        for name in sorted(members):
            content = members[name]
            entry = normalised_entry(name, content, mtime)
            archive.addfile(entry, None if content is None else io.BytesIO(content))


def build(out_dir: Path, version: str) -> Path:
    """Write the artifact atomically: a temp file in `out_dir`, renamed when complete."""
    members = archive_members(version, git_sha())
    mtime = archive_mtime()
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = out_dir / f"{PACKAGE}-{version}.tar.gz"
    handle, temp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{artifact.name}.", suffix=".tmp")
    temp_path = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as target:
            write_archive(target, members, mtime)
        temp_path.chmod(0o644)
        temp_path.replace(artifact)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return artifact.resolve()


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        artifact = build(options.out, read_version(options.version))
    except (BuildError, OSError) as error:
        print(f"build.py: {error}", file=sys.stderr)
        return 1
    print(artifact)
    return 0


if __name__ == "__main__":
    sys.exit(main())
