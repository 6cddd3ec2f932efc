"""Sealed evidence: each run seals its own files; a later run can never vouch for them again."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
from datetime import datetime, timezone

import pytest

from shipyard import commands, evidence
from shipyard.errors import ExitCode, UsageError
from shipyard.evidence import Bundle, seal_run, verify

DATE = "2026-11-30"


@pytest.fixture
def bundle(tmp_path):
    return Bundle(tmp_path / "proj", "devops", DATE)


def heartbeat(bundle: Bundle, run_id: str, step: str, event: str) -> None:
    bundle.heartbeat_path.parent.mkdir(parents=True, exist_ok=True)
    with bundle.heartbeat_path.open("a") as log:
        log.write(f"2026-11-30T06:38:08.123Z run={run_id} step={step} event={event}\n")


def run(bundle: Bundle, run_id: str, *, steps=("lint", "test"), seal: bool = True):
    """What a run leaves: heartbeat lines, one log per step, a report, its run record."""
    bundle.log_dir(run_id).mkdir(parents=True)
    for step in steps:
        heartbeat(bundle, run_id, step, "start")
        (bundle.log_dir(run_id) / f"{step}.log").write_text(f"{run_id}: {step} passed\n")
        heartbeat(bundle, run_id, step, "end")
    report = bundle.report_dir(run_id) / "secret-scan.sarif"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text('{"runs": []}\n')
    record = bundle.run_record_path(run_id)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"run_id": run_id, "outcome": "ok"}) + "\n")
    return seal_run(bundle, run_id) if seal else None


def sha256sum_check(bundle: Bundle, check_file: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sha256sum", "-c", "--strict", check_file],
        cwd=bundle.dir,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )


def tamper(bundle: Bundle, run_id: str) -> None:
    """Edit the run record, append to a step log."""
    bundle.run_record_path(run_id).write_text('{"outcome": "ok", "forged": true}\n')
    with (bundle.log_dir(run_id) / "test.log").open("a") as log:
        log.write("and a line nobody ran\n")


TAMPERED = ("changed: logs/A/test.log (sealed by run A", "changed: runs/A.json (sealed by run A")


def test_a_fresh_two_run_bundle_passes_sha256sum_on_the_manifest_and_each_seal(bundle):
    first = run(bundle, "A")
    odd = bundle.report_dir("B") / "back\\slash\nname.txt"
    odd.parent.mkdir(parents=True)
    odd.write_text("escaped the sha256sum way\n")
    second = run(bundle, "B")
    assert first.broken == second.broken == ()
    for check_file in (evidence.MANIFEST_NAME, "seals/A.sha256", "seals/B.sha256"):
        done = sha256sum_check(bundle, check_file)
        assert done.returncode == 0, check_file + "\n" + done.stdout + done.stderr
    manifest = bundle.manifest_path.read_bytes()
    assert second.manifest_sha256 == hashlib.sha256(manifest).hexdigest()
    assert second.seal_sha256 == evidence.file_sha256(bundle.seal_path("B"))
    assert b"  seals/A.sha256\n" in manifest and b"  seals/B.sha256\n" in manifest
    assert verify(bundle).ok and verify(bundle).seals == 2


def test_a_seal_lists_its_run_its_elders_and_the_heartbeat_prefix(bundle):
    run(bundle, "A")
    run(bundle, "B")
    lines = bundle.seal_path("B").read_text().splitlines()
    listed = [line.split("  ", 1)[1] for line in lines if not line.startswith("#")]
    assert listed == [
        "logs/B/lint.log",
        "logs/B/test.log",
        "reports/B/secret-scan.sarif",
        "runs/B.json",
        "seals/A.sha256",
    ]
    length, digest = lines[-1].removeprefix("# prefix ").split("  ")[0].split()
    # what docs/evidence.md tells a user to type
    head = subprocess.run(
        f"head -c {length} logs/heartbeat.log | sha256sum",
        shell=True,
        cwd=bundle.dir,
        capture_output=True,
        text=True,
        check=True,
    )
    assert head.stdout.split()[0] == digest
    assert int(length) == bundle.heartbeat_path.stat().st_size


def test_tampered_evidence_is_not_re_blessed_by_a_later_run(bundle):
    run(bundle, "A")
    tamper(bundle, "A")
    manifest_before = bundle.manifest_path.read_bytes()
    assert [line.split(" (")[0] for line in verify(bundle).lines()] == [
        "changed: logs/A/test.log",
        "changed: runs/A.json",
    ]
    sealed = run(bundle, "B")
    assert sealed.manifest_sha256 is None
    assert len(sealed.broken) == 2
    assert all(line.startswith(start) for line, start in zip(sealed.broken, TAMPERED, strict=True))
    assert bundle.manifest_path.read_bytes() == manifest_before
    assert bundle.seal_path("B").exists()
    lines = verify(bundle).lines()
    assert [line.split(" (")[0] for line in lines] == [
        "changed: logs/A/test.log",
        "changed: runs/A.json",
    ]
    assert "sealed by run A" in lines[0] and "manifest" in lines[0]
    # the day's last honest manifest still flags both, for sha256sum too
    done = sha256sum_check(bundle, evidence.MANIFEST_NAME)
    assert done.returncode == 1
    assert "runs/A.json: FAILED" in done.stdout and "logs/A/test.log: FAILED" in done.stdout
    # and so does every later run
    assert run(bundle, "C").broken == sealed.broken


def test_a_run_sealed_after_a_frozen_manifest_is_judged_by_its_own_seal(bundle):
    run(bundle, "A")
    run(bundle, "C", seal=False)  # C is going on: the next manifest catches its logs half written
    run(bundle, "B")
    with (bundle.log_dir("C") / "test.log").open("a") as log:
        log.write("C: test goes on\n")
    tamper(bundle, "A")
    assert seal_run(bundle, "C").manifest_sha256 is None  # the manifest stays as B left it
    lines = verify(bundle).lines()
    assert [line.split(" (")[0] for line in lines] == [
        "changed: logs/A/test.log",
        "changed: runs/A.json",
    ]
    (bundle.log_dir("C") / "lint.log").write_text("forged too\n")
    assert "changed: logs/C/lint.log (sealed by run C)" in verify(bundle).lines()


def test_a_deleted_seal_is_flagged_by_the_manifest_and_by_later_seals(bundle):
    run(bundle, "A")
    run(bundle, "B")
    bundle.seal_path("A").unlink()
    bundle.run_record_path("A").unlink()
    lines = verify(bundle).lines()
    assert "missing: seals/A.sha256 (sealed by run B; manifest)" in lines
    assert "missing: runs/A.json (manifest)" in lines
    sealed = run(bundle, "C")
    assert sealed.manifest_sha256 is None
    assert "missing: seals/A.sha256 (sealed by run B; manifest)" in sealed.broken


def test_a_file_added_to_a_sealed_run_breaks_its_seal(bundle):
    run(bundle, "A")
    (bundle.log_dir("A") / "deploy.log").write_text("a step that never ran\n")
    sealed = run(bundle, "B")
    assert sealed.broken == (
        "added: logs/A/deploy.log (in the folders sealed by run A; not in the manifest)",
    )


def test_files_outside_any_seal_do_not_stop_the_manifest(bundle):
    """A run still going (no seal yet) and a stray file are the manifest's only: the next
    run's manifest covers them, as before seals."""
    run(bundle, "A")
    run(bundle, "B", seal=False)  # still running
    (bundle.dir / "notes.txt").write_text("by hand\n")
    assert "added: notes.txt (not in the manifest)" in verify(bundle).lines()
    sealed = seal_run(bundle, "C")
    assert sealed.broken == () and sealed.manifest_sha256 is not None
    assert verify(bundle).ok


def test_heartbeat_lines_appended_later_hold_an_earlier_line_edited_does_not(bundle):
    run(bundle, "A")
    heartbeat(bundle, "B", "build", "start")  # a run going on
    assert verify(bundle).ok
    assert run(bundle, "B").broken == ()
    heartbeat(bundle, "C", "build", "start")
    assert verify(bundle).ok
    log = bundle.heartbeat_path.read_bytes()
    bundle.heartbeat_path.write_bytes(
        log.replace(b"run=A step=test event=end", b"run=A step=test event=END")
    )
    result = verify(bundle)
    assert result.changed == ("logs/heartbeat.log",)
    assert "sealed by run A" in result.lines()[0] and "sealed by run B" in result.lines()[0]
    sealed = run(bundle, "C")
    assert sealed.manifest_sha256 is None
    assert sealed.broken[0].startswith("changed: logs/heartbeat.log (first ")


def test_a_truncated_heartbeat_says_how_long_it_is_now(bundle):
    run(bundle, "A")
    sealed_length = bundle.heartbeat_path.stat().st_size
    bundle.heartbeat_path.write_bytes(b"")
    first = verify(bundle).lines()[0]
    assert first.startswith("changed: logs/heartbeat.log (")
    assert f"first {sealed_length} bytes sealed by run A; it now has 0" in first


def test_binary_mode_and_escaped_lines_are_understood(bundle):
    odd = bundle.dir / "reports" / "new\nline.txt"
    odd.parent.mkdir(parents=True)
    odd.write_text("x\n")
    run(bundle, "A")
    names = [os.fsdecode(rel) for rel in evidence.bundle_files(bundle.dir)]
    binary = subprocess.run(
        ["sha256sum", "-b", *names], cwd=bundle.dir, capture_output=True, check=True
    )
    assert b" *runs/A.json\n" in binary.stdout and b"\n\\" in binary.stdout  # `\<hex> *...`
    bundle.manifest_path.write_bytes(binary.stdout)
    assert verify(bundle).ok, verify(bundle).lines()
    odd.write_text("y\n")
    assert verify(bundle).changed == ("reports/new\\nline.txt",)


def test_a_symlinked_manifest_is_a_finding_and_never_read(bundle, tmp_path):
    run(bundle, "A")
    outside = tmp_path / "elsewhere.txt"
    outside.write_bytes(bundle.manifest_path.read_bytes())
    bundle.manifest_path.unlink()
    bundle.manifest_path.symlink_to(outside)
    tamper(bundle, "A")
    lines = verify(bundle).lines()
    assert "not a regular file: sha256_manifest.txt (symlink)" in lines
    assert not any(line.startswith("missing: sha256_manifest.txt") for line in lines)
    assert any(line.startswith("changed: runs/A.json (sealed by run A)") for line in lines)


def test_a_symlinked_seals_folder_is_a_finding_and_never_written_through(bundle, tmp_path):
    run(bundle, "A")
    outside = tmp_path / "other-seals"
    outside.mkdir()
    (outside / "A.sha256").write_bytes(bundle.seal_path("A").read_bytes())
    bundle.seal_path("A").unlink()
    bundle.seal_path("A").parent.rmdir()
    (bundle.dir / "seals").symlink_to(outside)
    manifest_before = bundle.manifest_path.read_bytes()
    lines = verify(bundle).lines()
    assert "not a regular file: seals (symlink)" in lines
    assert "outside the bundle: seals/A.sha256 (through the symlink seals; manifest)" in lines
    sealed = run(bundle, "B")
    assert "not sealed: run B (seals is not a folder)" in sealed.broken
    assert sorted(p.name for p in outside.iterdir()) == ["A.sha256"]
    assert bundle.manifest_path.read_bytes() == manifest_before


@pytest.mark.parametrize(
    "name", ["../outside.txt", "/etc/passwd", "linked/inner.log", "a/../../outside.txt"]
)
def test_a_line_naming_a_file_outside_the_bundle_is_a_finding_never_opened(bundle, tmp_path, name):
    run(bundle, "A")
    outside = tmp_path / "proj" / "artifacts" / "devops" / "outside.txt"
    outside.write_text("not evidence\n")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "inner.log").write_text("not evidence\n")
    (bundle.dir / "linked").symlink_to(tmp_path / "linked")
    listed = "/etc/passwd" if name == "/etc/passwd" else (bundle.dir / name).resolve()
    digest = evidence.file_sha256(listed)  # right digests: only never opening them keeps them out
    with bundle.manifest_path.open("a") as manifest:
        manifest.write(f"{digest}  {name}\n")
    lines = verify(bundle).lines()
    if name == "linked/inner.log":
        assert (
            "outside the bundle: linked/inner.log (through the symlink linked; manifest)" in lines
        )
    else:
        assert any(line.startswith(f"outside the bundle: {name} (line ") for line in lines), lines
    assert "not a regular file: linked (symlink)" in lines


def test_added_fifo_symlink_and_socket_are_named(bundle, tmp_path, monkeypatch):
    run(bundle, "A")
    os.mkfifo(bundle.dir / "pipe")
    os.mkfifo(bundle.log_dir("A") / "pipe")
    (bundle.dir / "link").symlink_to(tmp_path)
    (bundle.report_dir("A") / "link.sarif").symlink_to(bundle.report_dir("A") / "secret-scan.sarif")
    listener = socket.socket(socket.AF_UNIX)
    monkeypatch.chdir(bundle.dir)  # a socket's path must be short
    listener.bind("sock")
    try:
        lines = verify(bundle).lines()
    finally:
        listener.close()
    assert "not a regular file: pipe (FIFO)" in lines
    assert "not a regular file: logs/A/pipe (FIFO)" in lines
    assert "not a regular file: link (symlink)" in lines
    assert "not a regular file: reports/A/link.sarif (symlink)" in lines
    assert "not a regular file: sock (socket)" in lines
    assert len(lines) == 5
    sealed = seal_run(bundle, "B")  # those in a sealed run's folders break its seal; the others not
    assert sealed.broken == (
        "not a regular file: logs/A/pipe (FIFO)",
        "not a regular file: reports/A/link.sarif (symlink)",
    )


def test_malformed_and_twice_listed_lines_are_named(bundle):
    run(bundle, "A")
    record = bundle.manifest_path.read_text().splitlines()[-1].split("  ")[1]
    with bundle.manifest_path.open("a") as manifest:
        manifest.write("not a checksum line\n")
        manifest.write(f"{'0' * 64}  {record}\n")
    lines = verify(bundle).lines()
    count = len(bundle.manifest_path.read_text().splitlines())
    assert f"malformed: line {count - 1} of sha256_manifest.txt" in lines
    assert f"listed twice: {record} (line {count} of sha256_manifest.txt)" in lines


def test_sealing_reads_each_file_once(bundle, monkeypatch):
    run(bundle, "A")
    run(bundle, "B", seal=False)
    opened = collections.Counter()
    real = evidence._in_bundle

    def counting(path, flags):
        opened[os.fsdecode(path).removeprefix(f"{bundle.dir}/")] += 1
        return real(path, flags)

    monkeypatch.setattr(evidence, "_in_bundle", counting)
    seal_run(bundle, "B")
    everything = {
        path.relative_to(bundle.dir).as_posix()
        for path in bundle.dir.rglob("*")
        if path.is_file() and path.name != "B.sha256"
    }
    assert set(opened) == everything
    assert set(opened.values()) == {1}


def test_verify_waits_for_a_run_sealing_the_same_day(bundle):
    run(bundle, "A")
    done = []
    with evidence.locked(bundle):  # a run sealing
        reader = threading.Thread(target=lambda: done.append(verify(bundle)))
        reader.start()
        reader.join(0.3)
        assert not done
    reader.join(10)
    assert done[0].ok


def test_a_copy_of_the_evidence_verifies_without_a_lock_file(bundle, tmp_path):
    run(bundle, "A")
    copy = Bundle(tmp_path / "download", "devops", DATE)
    shutil.copytree(bundle.dir, copy.dir)
    assert verify(copy).ok
    assert sorted(p.name for p in copy.agent_dir.iterdir()) == [DATE]


def test_a_run_id_must_be_a_plain_name(bundle):
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(ValueError):
            seal_run(bundle, bad)


# --- the command ------------------------------------------------------------------------


def test_evidence_verify_exit_codes_and_lines(bundle, capsys):
    root = bundle.root
    with pytest.raises(UsageError):
        commands.verify_evidence(root, "devops", DATE)
    run(bundle, "A")
    run(bundle, "B")
    assert commands.verify_evidence(root, "devops", DATE) == ExitCode.OK
    assert "matches sha256_manifest.txt and 2 seals" in capsys.readouterr().out
    tamper(bundle, "A")
    run(bundle, "C")
    assert commands.verify_evidence(root, "devops", DATE) == ExitCode.STEP_FAILED
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [
        "changed: logs/A/test.log (sealed by run A; manifest)",
        "changed: runs/A.json (sealed by run A; manifest)",
    ]
    assert out[-1].startswith("evidence: 2 differences in ")


def test_a_standalone_scan_seals_its_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shown = commands._write_scan_report(tmp_path, "devops", {"runs": []}, {})
    report = tmp_path / shown
    run_id = report.parent.name
    day = Bundle(tmp_path, "devops", f"{datetime.now(timezone.utc):%Y-%m-%d}")
    assert f"reports/{run_id}/secret-scan.sarif" in day.seal_path(run_id).read_text()
    assert sha256sum_check(day, f"seals/{run_id}.sha256").returncode == 0
    assert sha256sum_check(day, evidence.MANIFEST_NAME).returncode == 0
    report.write_text("{}\n")
    commands._write_scan_report(tmp_path, "devops", {"runs": []}, {})
    warnings = capsys.readouterr().err.splitlines()
    report_name = f"reports/{run_id}/secret-scan.sarif"
    assert warnings[0] == (
        f"warning: evidence changed after it was sealed: changed: {report_name}"
        f" (sealed by run {run_id}; manifest)"
    )
    assert warnings[1].endswith("sha256_manifest.txt was not rewritten over it")


def test_a_run_from_before_seals_is_held_to_the_manifest_it_was_written_under(bundle):
    """A bundle begun by a Shipyard without seals: the manifest is its runs' only seal."""
    run(bundle, "A", seal=False)
    evidence.write_manifest(bundle)
    run(bundle, "B", seal=False)  # still running when the manifest below is written...
    tamper(bundle, "A")
    (bundle.log_dir("B") / "test.log").write_text("B: test passed, then more output\n")
    manifest = bundle.manifest_path.read_bytes()
    sealed = seal_run(bundle, "C")
    assert any(line.startswith("changed: runs/A.json") for line in sealed.broken), sealed.broken
    assert not any("logs/B/" in line for line in sealed.broken)  # ...B had not ended then
    assert sealed.manifest_sha256 is None and bundle.manifest_path.read_bytes() == manifest
