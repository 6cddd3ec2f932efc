"""Random secrets, printed in every form Shipyard masks and cut into random reads of the pipe,
reach no sink (issue 13): not the terminal, the step log, the heartbeat, the run record, the
feedback entry, GitHub Actions' annotations and step summary, nor the copy of a server's log
that a failed smoke prints. The forms and the logs come from test_redact's strategies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli_env, run_here, write_project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_redact import TOKENS, assert_nothing_leaks, cuts, logs_with_secrets

from shipyard.server import free_port

# Each secret: a random token (so that it cannot occur by chance in what Shipyard prints
# itself) with the characters encoders treat specially, non-ASCII included.
SPECIAL = st.text(st.sampled_from("'\"/+=%\\ &?#:;ü€中😀"), min_size=1, max_size=6)
SECRET_PAIRS = st.tuples(
    st.builds(str.__add__, TOKENS, SPECIAL), st.builds(str.__add__, SPECIAL, TOKENS)
)

# Writes out.txt in the pieces cuts.json says, each flushed and given time to be read alone.
EMITTER = """\
import json, sys, time
data = open("out.txt", "rb").read()
cuts = json.load(open("cuts.json"))
for start, end in zip([0, *cuts], [*cuts, len(data)]):
    sys.stdout.buffer.write(data[start:end])
    sys.stdout.buffer.flush()
    time.sleep(0.003)
sys.exit(int(sys.argv[1]))
"""
SINK_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def in_actions(root: Path, **secrets: str) -> dict[str, str]:
    summary = root / "summary.md"
    return cli_env(GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary), CI="true", **secrets)


def sinks(root: Path, stdout: str, stderr: str) -> dict[str, str]:
    """Every place the run wrote to, as text: the terminal (less the `::add-mask::` lines,
    which tell the runner what to mask; with each annotation's message as the runner shows
    it), and every file under the project that the run wrote."""
    lines = [line for line in stdout.splitlines() if not line.startswith("::add-mask::")]
    shown = [
        line.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")
        for line in lines
        if line.startswith("::error")
    ]
    found = {"stdout": "\n".join(lines), "annotations": "\n".join(shown), "stderr": stderr}
    for folder in ("artifacts", "feedback"):
        for path in (root / folder).rglob("*"):
            if path.is_file():
                found[str(path.relative_to(root))] = path.read_text(errors="replace")
    found["summary.md"] = (root / "summary.md").read_text()
    return found


def assert_no_sink_leaks(found: dict[str, str], secret_list: list[str], derived: list[str]):
    for where, text in found.items():
        try:
            assert_nothing_leaks(text, secret_list, derived)
        except AssertionError as leak:
            raise AssertionError(f"a secret's form in {where}:\n{text}") from leak


def emit(root: Path, text: str, positions: list[int]) -> None:
    data = text.encode()
    # cut positions in characters, taken to bytes (never inside a character: the runner
    # decodes whole reads, and splitting a character is the decoder's business, tested apart)
    byte_cuts = sorted({len(text[:position].encode()) for position in positions} - {0, len(data)})
    (root / "out.txt").write_bytes(data)
    (root / "cuts.json").write_text(json.dumps(byte_cuts))
    (root / "emit.py").write_text(EMITTER)


@SINK_SETTINGS
@given(pair=SECRET_PAIRS, data=st.data())
def test_no_form_of_a_secret_reaches_any_sink_of_a_failed_step_in_actions(
    tmp_path_factory: pytest.TempPathFactory, pair: tuple[str, str], data: st.DataObject
) -> None:
    listed, by_name = pair
    _, text, derived = data.draw(logs_with_secrets(st.just([listed, by_name])))
    root = write_project(
        tmp_path_factory.mktemp("sinks"),
        """
        version: 1
        secrets: [DEPLOY_KEY]
        steps:
          leak: {run: "python3 emit.py 1"}
        """,
    )
    emit(root, text, data.draw(cuts(text)))
    done = run_here(
        ["step", "leak"], root, env=in_actions(root, DEPLOY_KEY=listed, MY_API_TOKEN=by_name)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    found = sinks(root, done.stdout, done.stderr)
    assert "::error" in found["stdout"] and "leak" in found["summary.md"]
    assert_no_sink_leaks(found, [listed, by_name], derived)


# A release whose server prints the log, then dies: the artifact smoke fails and copies the
# server's log tail into the step's output.
DYING_APP = """\
import sys
sys.stdout.buffer.write(open("out.txt", "rb").read())
sys.stdout.flush()
sys.exit(3)
"""


@settings(SINK_SETTINGS, max_examples=5)
@given(pair=SECRET_PAIRS, data=st.data())
def test_no_form_of_a_secret_in_a_servers_log_reaches_any_sink_through_its_copy(
    tmp_path_factory: pytest.TempPathFactory, pair: tuple[str, str], data: st.DataObject
) -> None:
    listed, by_name = pair
    _, text, derived = data.draw(logs_with_secrets(st.just([listed, by_name])))
    root = write_project(
        tmp_path_factory.mktemp("server-log"),
        f"""
        version: 1
        secrets: [DEPLOY_KEY]
        steps:
          build:
            run: "mkdir -p dist && tar -czf dist/app.tar.gz app.py out.txt"
            artifact: dist/app.tar.gz
        environments:
          staging:
            target: local
            port: {free_port()}
            start: "python3 app.py"
            smoke: {{path: /, timeout: 5s}}
        """,
    )
    (root / "app.py").write_text(DYING_APP)
    (root / "out.txt").write_text(text)
    env = in_actions(root, DEPLOY_KEY=listed, MY_API_TOKEN=by_name)
    done = run_here(["deploy.staging"], root, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    found = sinks(root, done.stdout, done.stderr)
    assert "server log (last lines)" in found["stdout"]
    assert_no_sink_leaks(found, [listed, by_name], derived)
