from __future__ import annotations

import io
import os
import pty
import re
import subprocess
from pathlib import Path

import pytest
from helpers import BIN, cli_env, evidence_dir, run_here

from shipyard.console import (
    BoardConsole,
    Paint,
    PlainConsole,
    Style,
    summary_table,
    wants_color,
)
from shipyard.reporters import for_run as make_console
from shipyard.runner import Attempt, StepResult, StepStatus

ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
GREEN_OK, RED_FAILED = "\x1b[32mok\x1b[0m", "\x1b[31mfailed\x1b[0m"
QUICK = """
version: 1
steps:
  a: {run: "echo alpha"}
  b: {run: "echo beta; exit 4"}
  skipped: {run: "echo never"}
gates: [a, b]
"""

BOARD_CONFIG = """
version: 1
steps:
  a: {run: "echo alpha; sleep 0.6"}
  b: {run: "echo beta; exit 4"}
gates: [a, b]
"""


class Tty(io.StringIO):
    """What a terminal looks like to Shipyard: a stream that says it is one."""

    def isatty(self) -> bool:
        return True


def result(tmp_path: Path, name: str, status: StepStatus, exit_code: int | None) -> StepResult:
    log = tmp_path / f"{name}.log"
    log.write_text(f"output of {name}\n")
    attempts = () if status is StepStatus.SKIPPED else (Attempt(1, status, exit_code, "t", 1.0, 9),)
    return StepResult(name, status, exit_code, "t", 1.0, attempts, log)


def test_buffered_console_prints_each_block_whole_when_the_step_ends(tmp_path):
    stream = io.StringIO()
    console = PlainConsole(stream, live_output=False)
    console.step_started("lint", 1)
    console.step_output("lint", b"hidden until the end\n")
    assert "hidden" not in stream.getvalue()
    console.step_finished(result(tmp_path, "lint", StepStatus.FAILED, 1))
    assert (
        stream.getvalue() == "==> lint: started\noutput of lint\n<== lint: failed (exit 1, 1.0s)\n"
    )


def test_live_console_streams_output_as_it_comes(tmp_path):
    stream = io.StringIO()
    console = PlainConsole(stream, live_output=True)
    console.step_output("build", b"now\n")
    assert stream.getvalue() == "now\n"


def test_output_reaches_a_plain_console_as_the_bytes_printed(tmp_path):
    """Into the stream's binary buffer, after the text written before it, undecoded."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", write_through=False)
    console = PlainConsole(stream, live_output=True)
    console.step_started("build", 1)
    console.step_output("build", b"caf\xe9 \xff\n")
    console.step_finished(result(tmp_path, "build", StepStatus.OK, 0))
    stream.flush()
    assert raw.getvalue() == (b"==> build: started\ncaf\xe9 \xff\n<== build: ok (exit 0, 1.0s)\n")


def test_the_board_draws_a_character_cut_between_two_reads_whole(tmp_path):
    stream = Tty()
    board = BoardConsole(stream, live_output=True)
    try:
        euro = "€".encode()
        board.step_output("build", b"price: 5 " + euro[:1])
        board.step_output("build", euro[1:] + b"\n")
    finally:
        board.close()
    screen = stream.getvalue()
    assert "price: 5 " in screen and "€\n" in screen and "\ufffd" not in screen


def test_summary_lists_every_step(tmp_path):
    table = summary_table(
        [
            result(tmp_path, "fmt", StepStatus.OK, 0),
            result(tmp_path, "scan", StepStatus.SKIPPED, None),
        ]
    )
    assert "fmt   ok (exit 0, 1.0s)" in table
    assert "scan  skipped" in table


def test_board_only_on_an_interactive_terminal_outside_ci():
    assert not isinstance(make_console(jobs=2, stream=io.StringIO(), environ={}), BoardConsole)
    assert not isinstance(make_console(jobs=2, stream=Tty(), environ={"CI": "true"}), BoardConsole)
    assert not isinstance(
        make_console(jobs=2, stream=Tty(), environ={"TERM": "dumb"}), BoardConsole
    )
    board = make_console(jobs=2, stream=Tty(), environ={"TERM": "xterm"})
    assert isinstance(board, BoardConsole)
    board.close()


def run_in_pty(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        args, cwd=cwd, env=env, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_live_board_on_a_terminal_honours_no_color(project):
    root = project(BOARD_CONFIG)
    env = cli_env(TERM="xterm-256color", NO_COLOR="1")
    code, screen = run_in_pty([str(BIN / "shipyard"), "gates", "--jobs", "2"], root, env)
    assert code == 1, screen
    assert "alpha" in screen and "beta" in screen
    assert "<== a: ok" in screen and "<== b: failed (exit 4" in screen
    assert "Traceback" not in screen
    assert not re.search(r"\x1b\[[0-9;]*3[0-7]m", screen)  # no colour codes
    assert "==> a: started" in screen and "==> b: started" in screen  # each block's header


def printed(raw: str) -> str:
    """What scrolled up above the board: the output less the board's rows and the escapes."""
    text = re.sub(r"⠿[^\r\n]*(\r?\n)?", "", raw)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", text)


def board_after(screen: str, text: str) -> str:
    """The board as drawn right after the last `text` was printed above it."""
    return screen.rsplit(text, 1)[1]


def test_the_board_follows_the_running_step(tmp_path):
    stream = Tty()
    board = BoardConsole(stream, live_output=True)
    try:
        board.step_started("Deploy", 1)
        board.step_output("Deploy", b"switched\n")
        board.step_finished(result(tmp_path, "Deploy", StepStatus.OK, 0))
        after_deploy = board_after(stream.getvalue(), "<== Deploy: ok")
        board.step_started("Smoke staging", 1)
        board.step_output("Smoke staging", b"probing\n")
        while_smoking = board_after(stream.getvalue(), "probing")
    finally:
        board.close()
    assert "Deploy" not in after_deploy
    assert "⠿" in while_smoking and "Smoke staging" in while_smoking
    assert "Deploy" not in while_smoking


def test_parallel_blocks_on_the_board_keep_their_header(tmp_path):
    stream = Tty()
    board = BoardConsole(stream, live_output=False)
    try:
        for name in ("lint", "test"):
            board.step_started(name, 1)
        board.step_finished(result(tmp_path, "test", StepStatus.FAILED, 1))
        board.step_finished(result(tmp_path, "lint", StepStatus.OK, 0))
    finally:
        board.close()
    assert printed(stream.getvalue()).strip() == (
        "==> test: started\noutput of test\n<== test: failed (exit 1, 1.0s)\n"
        "==> lint: started\noutput of lint\n<== lint: ok (exit 0, 1.0s)"
    )


def test_only_the_longest_running_step_beats_on_the_console(tmp_path):
    stream = io.StringIO()
    console = PlainConsole(stream, live_output=False)
    for name in ("test:ci", "lint", "scan", "fmt"):
        console.step_started(name, 1)
    for _ in range(3):  # three heartbeat intervals: every step beats in each
        for name in ("test:ci", "lint", "scan", "fmt"):
            console.step_beat(name, 30.0, 2.0)
    beats = [line for line in stream.getvalue().splitlines() if line.startswith("...")]
    assert len(beats) == 3
    assert beats[0].startswith(
        "... test:ci: running for 30s, last output 2s ago (also running: lint"
    )
    console.step_finished(result(tmp_path, "test:ci", StepStatus.OK, 0))
    console.step_beat("scan", 31.0, 1.0)
    console.step_beat("lint", 31.0, 1.0)
    beats = [line for line in stream.getvalue().splitlines() if line.startswith("...")]
    assert beats[3:] == [
        "... lint: running for 31s, last output 1s ago (also running: scan 0s, fmt 0s)"
    ]


def test_in_ci_parallel_gates_print_one_beat_line_per_interval(project):
    root = project(
        """
        version: 1
        heartbeat: {interval: 200ms}
        steps:
          a: {run: "sleep 0.9"}
          b: {run: "sleep 0.9"}
          c: {run: "sleep 0.9"}
        gates: [a, b, c]
        """
    )
    done = run_here(["gates", "--jobs", "3"], root, env=cli_env(CI="true"))
    assert done.returncode == 0, done.stdout + done.stderr
    shown = [line for line in done.stdout.splitlines() if line.startswith("... ")]
    heartbeat = (evidence_dir(root) / "logs" / "heartbeat.log").read_text()
    beats = heartbeat.count("event=beat")
    assert 2 <= len(shown) <= 5, done.stdout  # one per 200ms of the longest, not one per job
    assert beats >= 2 * len(shown)  # the evidence keeps every step's beat


@pytest.mark.parametrize(
    ("environ", "tty", "no_color", "expected"),
    [
        ({}, True, False, True),
        ({}, False, False, False),  # a file or a pipe
        ({"TERM": "dumb"}, True, False, False),
        ({"NO_COLOR": "1"}, True, False, False),
        ({"NO_COLOR": ""}, True, False, True),  # empty: as if unset
        ({}, True, True, False),  # --no-color
        ({"FORCE_COLOR": "1"}, False, False, True),
        ({"FORCE_COLOR": "0"}, False, False, False),
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False, False, False),
        ({"FORCE_COLOR": "1"}, False, True, False),
    ],
)
def test_when_there_is_colour(environ, tty, no_color, expected):
    stream = Tty() if tty else io.StringIO()
    assert wants_color(stream, environ, no_color=no_color) is expected


def test_colour_only_paints_the_status_words(tmp_path):
    plain, painted = io.StringIO(), io.StringIO()
    for stream, paint in ((plain, Paint()), (painted, Paint(on=True))):
        console = PlainConsole(stream, live_output=False, style=Style(paint))
        console.step_started("lint", 1)
        console.step_finished(result(tmp_path, "lint", StepStatus.FAILED, 1))
        console.write("warning: something\n")
    assert GREEN_OK not in painted.getvalue() and RED_FAILED in painted.getvalue()
    assert "\x1b[1m==> lint: started\x1b[0m" in painted.getvalue()
    assert "\x1b[33mwarning:\x1b[0m something" in painted.getvalue()
    assert ESCAPE.sub("", painted.getvalue()) == plain.getvalue()
    assert "\x1b" not in plain.getvalue()


def test_forced_colour_reaches_the_terminal_and_no_file(project):
    root = project(QUICK)
    done = run_here(["gates"], root, env=cli_env(FORCE_COLOR="1"))
    assert done.returncode == 1
    assert f"<== a:\x1b[0m {GREEN_OK} (exit 0" in done.stdout
    assert f"{RED_FAILED} (exit 1): failed: b (exit 4)" in done.stdout
    assert "<== b: failed (exit 4" in ESCAPE.sub("", done.stdout)
    written = [p for folder in ("artifacts", "feedback") for p in (root / folder).rglob("*")]
    assert any(p.suffix == ".log" for p in written)
    assert [p for p in written if p.is_file() and b"\x1b" in p.read_bytes()] == []


@pytest.mark.parametrize("opt_out", [["--no-color"], []])
def test_no_color_wins_over_force_color(project, opt_out):
    root = project(QUICK)
    env = cli_env(FORCE_COLOR="1", **({} if opt_out else {"NO_COLOR": "1"}))
    done = run_here(["gates", *opt_out], root, env=env)
    assert done.returncode == 1 and "<== b: failed (exit 4" in done.stdout
    assert "\x1b" not in done.stdout + done.stderr


def test_no_colour_in_github_actions_commands(project):
    root = project(QUICK)
    env = cli_env(FORCE_COLOR="1", GITHUB_ACTIONS="true", CI="true")
    done = run_here(["gates", "--jobs", "2"], root, env=env)
    commands = [line for line in done.stdout.splitlines() if line.startswith("::")]
    assert any(line.startswith("::error title=b failed") for line in commands)
    assert all("\x1b" not in line for line in commands), commands


def test_quiet_prints_only_the_last_line(project):
    root = project(QUICK)
    done = run_here(["gates", "-q"], root)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("failed (exit 1): failed: b (exit 4) · evidence")
    assert "alpha" not in done.stdout + done.stderr


def test_verbose_shows_each_steps_command_and_log(project):
    root = project(QUICK)
    done = run_here(["gates", "--verbose", "--jobs", "1"], root)
    assert done.returncode == 1
    assert "==> b: started\n    $ echo beta; exit 4\nbeta\n<== b: failed" in done.stdout
    logs = re.findall(r"^    log: (\S+)$", done.stdout, re.MULTILINE)
    assert len(logs) == 2 and (root / logs[1]).read_text() == "beta\n"


def test_verbose_and_quiet_together_are_refused(project):
    root = project(QUICK)
    done = run_here(["gates", "-v", "-q"], root)
    assert done.returncode == 2
    assert done.stderr.strip() == "-v/--verbose and -q/--quiet: pass one or the other"
    assert not (root / "artifacts").exists()
