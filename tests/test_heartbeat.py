from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from helpers import ISO, random_secret

from shipyard.heartbeat import Heartbeat, format_line, iso_timestamp, logfmt_value
from shipyard.redact import Redactor


def test_timestamp_is_utc_iso_with_milliseconds():
    moment = datetime(2026, 11, 30, 6, 38, 8, 123456, tzinfo=timezone.utc)
    assert iso_timestamp(moment) == "2026-11-30T06:38:08.123Z"


def test_line_matches_the_design_format():
    moment = datetime(2026, 11, 30, 6, 38, 8, 123000, tzinfo=timezone.utc)
    fields = {
        "agent": "devops",
        "run": "20261130T063808Z-4f2a",
        "step": "build",
        "event": "start",
        "pid": 4121,
        "cmd": "npm run build",
    }
    assert format_line(fields, moment) == (
        "2026-11-30T06:38:08.123Z agent=devops run=20261130T063808Z-4f2a step=build "
        'event=start pid=4121 cmd="npm run build"\n'
    )


def test_logfmt_quotes_and_escapes_what_would_break_a_line():
    assert logfmt_value("plain") == "plain"
    assert logfmt_value("") == '""'
    assert logfmt_value('say "hi"\nnow') == '"say \\"hi\\"\\nnow"'
    assert logfmt_value("a=b") == '"a=b"'
    assert logfmt_value(2.54) == "2.5"


def test_emit_appends_one_flushed_line_per_event_with_secrets_masked(tmp_path):
    secret = random_secret()
    path = tmp_path / "logs" / "heartbeat.log"
    beat = Heartbeat(path, agent="devops", run_id="r1", redactor=Redactor([secret]))
    beat.emit("build", "start", pid=1, cmd=f"deploy --token {secret}")
    beat.emit("build", "end", status="ok", exit=0, elapsed=0.5)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert all(re.match(ISO + " agent=devops run=r1 step=build event=", line) for line in lines)
    assert secret not in path.read_text()
    assert lines[1].endswith("status=ok exit=0 elapsed=0.5")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_a_failed_write_stops_the_heartbeat_and_is_said_once_never_raised(tmp_path, capfd):
    path = tmp_path / "heartbeat.log"
    path.symlink_to("/dev/full")  # every write fails with ENOSPC
    beat = Heartbeat(path, agent="devops", run_id="r1", redactor=Redactor([]))
    beat.emit("build", "start", pid=1)
    beat.emit("build", "beat", elapsed=1.0)
    beat.emit("build", "end", status="ok")
    assert beat.failure is not None and beat.failure.errno == 28
    err = capfd.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("shipyard: heartbeat stopped: cannot write ")
    assert err.rstrip().endswith("heartbeat.log: [Errno 28] No space left on device")
