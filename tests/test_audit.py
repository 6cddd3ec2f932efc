from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap

from helpers import ISO, random_secret

from shipyard import audit
from shipyard.redact import Redactor

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from shipyard import audit

    path, go, writer = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    print("READY", flush=True)
    while not go.exists():
        time.sleep(0.002)
    for seq in range(200):
        audit.append(path, "deploy", writer=writer, seq=seq, padding="x" * (1000 + writer * 997))
    """
)


def test_append_writes_one_json_line_with_who_when_and_where(tmp_path):
    path = tmp_path / ".shipyard" / "staging" / "audit.jsonl"
    entry = audit.append(path, "deploy", release="v3", previous="v2", ok=True)
    assert list(entry)[:5] == ["at", "event", "user", "host", "pid"]
    assert re.fullmatch(ISO, str(entry["at"]))
    assert entry["event"] == "deploy"
    assert entry["user"] == audit.current_user()
    assert entry["host"] == socket.gethostname()
    assert entry["pid"] == os.getpid()
    assert (entry["release"], entry["previous"], entry["ok"]) == ("v3", "v2", True)
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [entry]
    assert path.stat().st_mode & 0o777 & ~0o644 == 0


def test_entries_come_back_in_order(tmp_path):
    path = tmp_path / "audit.jsonl"
    for event in ("deploy", "rollback", "lock_break", "prune"):
        audit.append(path, event)
    assert [entry["event"] for entry in audit.read(path)] == [
        "deploy",
        "rollback",
        "lock_break",
        "prune",
    ]


def test_concurrent_writers_never_interleave(tmp_path):
    path, go = tmp_path / "audit.jsonl", tmp_path / "go"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(go), str(number)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for number in range(4)
    ]
    for writer in writers:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "READY"
    go.touch()
    assert [writer.wait(timeout=30) for writer in writers] == [0, 0, 0, 0]
    lines = path.read_bytes().split(b"\n")
    assert lines.pop() == b""
    entries = [json.loads(line) for line in lines]
    assert len(entries) == 800
    assert sorted((entry["writer"], entry["seq"]) for entry in entries) == [
        (writer, seq) for writer in range(4) for seq in range(200)
    ]


def test_read_skips_every_kind_of_garbage(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_bytes(
        b'{"event": "deploy", "n": 1}\n'
        b"\x00\xff\xfe binary junk\x80\n"
        b'{"event": "bad utf-8 \xff"}\n'
        b"[1,2]\n"
        b'"just a string"\n'
        b"\n" + b"[" * 100_000 + b"\n"
        b'{"event": "rollback", "n": 2}\n'
        b'{"trunc'
    )
    assert audit.read(path) == [{"event": "deploy", "n": 1}, {"event": "rollback", "n": 2}]


def test_a_missing_trail_is_empty(tmp_path):
    assert audit.read(tmp_path / "nowhere" / "audit.jsonl") == []


def test_an_entry_after_a_line_cut_short_by_a_crash_is_kept(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"event": "deploy", "release": "v1"}\n{"event": "dep')
    audit.append(path, "rollback", to="v1")
    assert [entry["event"] for entry in audit.read(path)] == ["deploy", "rollback"]


def test_secrets_are_masked_in_every_field(tmp_path):
    secret = random_secret()
    path = tmp_path / "audit.jsonl"
    entry = audit.append(
        path,
        "deploy",
        redactor=Redactor([secret]),
        command=f"deploy --token {secret}",
        hosts=["ok", f"x{secret}x"],
        details={"env": {"TOKEN": secret}},
        artifact=tmp_path / secret / "app.tar.gz",
    )
    written = path.read_text()
    assert secret not in written
    assert json.loads(written) == entry
    assert entry["command"] == "deploy --token ***"
    assert entry["hosts"] == ["ok", "x***x"]
    assert entry["details"] == {"env": {"TOKEN": "***"}}
    assert str(entry["artifact"]).endswith("/***/app.tar.gz")
