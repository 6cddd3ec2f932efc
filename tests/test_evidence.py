from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone

import pytest
from conftest import random_secret, sha256sum_check

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
        "changed: logs/change.log",
        "missing: logs/remove.log",
        "added: logs/new\\nfile.log",
    ]


def test_symlinks_are_not_followed(bundle, tmp_path):
    fill(bundle, ["a.log"])
    outside = tmp_path / "outside.txt"
    outside.write_text("not evidence")
    (bundle.dir / "logs" / "link").symlink_to(outside)
    write_manifest(bundle)
    assert b"link" not in bundle.manifest_path.read_bytes()


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
