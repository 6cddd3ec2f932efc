from __future__ import annotations

import io
import os
import pty
import re
import subprocess
from pathlib import Path

from helpers import BIN, cli_env

from shipyard.console import BoardConsole, PlainConsole, summary_table
from shipyard.reporters import for_run as make_console
from shipyard.runner import Attempt, StepResult, StepStatus

BOARD_CONFIG = """
version: 1
steps:
  a: {run: "echo alpha; sleep 0.6"}
  b: {run: "echo beta; exit 4"}
gates: [a, b]
"""


def result(tmp_path: Path, name: str, status: StepStatus, exit_code: int | None) -> StepResult:
    log = tmp_path / f"{name}.log"
    log.write_text(f"output of {name}\n")
    attempts = () if status is StepStatus.SKIPPED else (Attempt(1, status, exit_code, "t", 1.0, 9),)
    return StepResult(name, status, exit_code, "t", 1.0, attempts, log)


def test_buffered_console_prints_each_block_whole_when_the_step_ends(tmp_path):
    stream = io.StringIO()
    console = PlainConsole(stream, live_output=False)
    console.step_started("lint", 1)
    console.step_output("lint", "hidden until the end\n")
    assert "hidden" not in stream.getvalue()
    console.step_finished(result(tmp_path, "lint", StepStatus.FAILED, 1))
    assert (
        stream.getvalue() == "==> lint: started\noutput of lint\n<== lint: failed (exit 1, 1.0s)\n"
    )


def test_live_console_streams_output_as_it_comes(tmp_path):
    stream = io.StringIO()
    console = PlainConsole(stream, live_output=True)
    console.step_output("build", "now\n")
    assert stream.getvalue() == "now\n"


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
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

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
