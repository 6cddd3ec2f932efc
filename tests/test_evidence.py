from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from helpers import random_secret, sha256sum_check

from shipyard import evidence
from shipyard.evidence import Bundle, manifest_line, parse_manifest, verify, write_manifest
from shipyard.redact import Redactor

ODD_NAMES = [
    "plain.log",
    "with space.txt",
    "back\\slash",
    "new\nline",
    "carriage\rreturn",
    "ünïcode.md",
]


@pytest.fixture
def bundle(tmp_path):
    return Bundle(tmp_path, "devops", "2026-11-30")


def fill(bundle: Bundle, names=ODD_NAMES) -> None:
    for index, name in enumerate(names):
        path = bundle.dir / "logs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content {index}\n")


def test_manifest_is_sorted_lf_and_accepted_by_sha256sum_strict(bundle):
    fill(bundle)
    (bundle.dir / "logs" / os.fsdecode(b"latin1-\xe9.log")).write_bytes(b"raw bytes\n")
    write_manifest(bundle)
    data = bundle.manifest_path.read_bytes()
    assert b"\r\n" not in data.replace(b"carriage\\r", b"")
    assert len(data.splitlines()) == len(ODD_NAMES) + 1
    check = sha256sum_check(bundle.dir)
    assert check.returncode == 0, check.stdout + check.stderr


def test_manifest_lines_match_what_sha256sum_prints(bundle):
    fill(bundle)
    write_manifest(bundle)
    names = [os.path.join("logs", name) for name in ODD_NAMES]
    expected = subprocess.run(
        ["sha256sum", *names], cwd=bundle.dir, capture_output=True, check=True
    ).stdout
    assert sorted(bundle.manifest_path.read_bytes().splitlines()) == sorted(expected.splitlines())


def test_escaped_names_round_trip(bundle):
    for name in ODD_NAMES:
        rel = os.fsencode(name)
        assert parse_manifest(manifest_line(rel, "ab" * 32)) == {rel: "ab" * 32}


def test_verify_names_every_changed_missing_and_added_file(bundle):
    fill(bundle, ["keep.log", "change.log", "remove.log"])
    write_manifest(bundle)
    assert verify(bundle).ok
    (bundle.dir / "logs" / "change.log").write_text("tampered\n")
    (bundle.dir / "logs" / "remove.log").unlink()
    (bundle.dir / "logs" / "new\nfile.log").write_text("sneaked in\n")
    result = verify(bundle)
    assert result.changed == ("logs/change.log",)
    assert result.missing == ("logs/remove.log",)
    assert result.added == ("logs/new\\nfile.log",)
    assert result.lines() == [
        "changed: logs/change.log (manifest)",
        "missing: logs/remove.log (manifest)",
        "added: logs/new\\nfile.log (not in the manifest)",
    ]


def test_symlinks_are_not_followed(bundle, tmp_path):
    fill(bundle, ["a.log"])
    outside = tmp_path / "outside.txt"
    outside.write_text("not evidence")
    (bundle.dir / "logs" / "link").symlink_to(outside)
    write_manifest(bundle)
    assert b"link" not in bundle.manifest_path.read_bytes()


def test_symlinked_folders_and_special_files_are_not_listed(bundle, tmp_path):
    fill(bundle, ["a.log"])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "inner.log").write_text("not evidence")
    (bundle.dir / "linked").symlink_to(outside)
    os.mkfifo(bundle.dir / "logs" / "pipe")
    write_manifest(bundle)
    assert parse_manifest(bundle.manifest_path.read_bytes()).keys() == {b"logs/a.log"}


def sha256sum_of_tree(folder) -> bytes:
    """What a user gets from coreutils for every regular file, sorted by bytes."""
    return subprocess.run(
        "find . -type f ! -path ./sha256_manifest.txt -printf '%P\\0' | LC_ALL=C sort -z"
        " | xargs -0 sha256sum",
        shell=True,
        cwd=folder,
        capture_output=True,
        check=True,
    ).stdout


def test_a_large_nested_bundle_is_exactly_what_sha256sum_prints(bundle):
    """Hundreds of files hashed by several threads, large ones read in chunks, folders whose
    walk order differs from byte order: the manifest is still sha256sum's output, line for line."""
    fill(bundle)
    for folder in ("a", "a-b", "a.b", "A", "a/b", "z/deep/er"):
        for index in range(60):
            path = bundle.dir / folder / f"{index}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(index * 37))
    (bundle.dir / "a" / "large.tar").write_bytes(os.urandom(3 * (1 << 20) + 5))
    write_manifest(bundle)
    assert bundle.manifest_path.read_bytes() == sha256sum_of_tree(bundle.dir)


def test_verify_finds_a_change_inside_a_large_file(bundle):
    large = bundle.dir / "reports" / "artifact.tar"
    large.parent.mkdir(parents=True)
    large.write_bytes(os.urandom(3 * (1 << 20)))
    fill(bundle, [f"{index}.log" for index in range(50)])
    write_manifest(bundle)
    with large.open("r+b") as handle:
        handle.seek(2 * (1 << 20) + 1)
        handle.write(b"!")
    assert verify(bundle).changed == ("reports/artifact.tar",)


def test_many_large_files_need_no_more_open_files_than_a_few(bundle):
    """Large files wait for a hashing thread holding neither an open file nor their data."""
    for index in range(40):
        path = bundle.dir / "reports" / f"{index}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(index.to_bytes(4, "big") * (3 << 18))  # 3 MiB
    script = (
        "import resource, sys; from pathlib import Path; from shipyard.evidence import *; "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (24, 24)); "
        "write_manifest(Bundle(Path(sys.argv[1]), 'devops', '2026-11-30'))"
    )
    subprocess.run([sys.executable, "-c", script, str(bundle.root)], check=True)
    assert bundle.manifest_path.read_bytes() == sha256sum_of_tree(bundle.dir)


def test_manifest_is_replaced_atomically_leaving_no_temp_files(bundle):
    fill(bundle, ["a.log"])
    write_manifest(bundle)
    write_manifest(bundle)
    assert sorted(p.name for p in bundle.dir.iterdir()) == ["logs", "sha256_manifest.txt"]
    assert list((bundle.agent_dir / ".tmp").iterdir()) == []


def test_run_record_is_masked(bundle):
    secret = random_secret()
    path = bundle.run_record_path("r1")
    evidence.write_json(
        bundle, path, {"command": f"deploy {secret}", "quoted": f'"{secret}"'}, Redactor([secret])
    )
    assert secret not in path.read_text()


def test_run_ids_are_timestamped_and_unique():
    moment = datetime(2026, 11, 30, 6, 38, 8, tzinfo=timezone.utc)
    ids = {evidence.new_run_id(moment) for _ in range(50)}
    assert all(run_id.startswith("20261130T063808Z-") for run_id in ids)
    assert len(ids) > 40
