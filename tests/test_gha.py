"""GitHub Actions output: exact workflow-command lines, and the real CLI with the variables
pointed at temp files, as Actions would run it."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from helpers import BIN, cli_env, evidence_dir, random_secret, run_cli, run_here
from test_deploy import Staging

from shipyard.errors import ExitCode, Outcome, Verdict
from shipyard.gha import (
    command,
    escape_data,
    escape_property,
    mask_commands,
    output_lines,
    summary_markdown,
)
from shipyard.redact import Redactor
from shipyard.report import RunEnd
from shipyard.runner import Attempt, StepResult, StepStatus


def test_escaping_follows_the_toolkit():
    assert escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"


def test_command_lines():
    assert command("group", "Build application") == "::group::Build application"
    assert command("error", "exit 1\nlast line", title="lint: failed, really") == (
        "::error title=lint%3A failed%2C really::exit 1%0Alast line"
    )
    assert command("add-mask", "x") == "::add-mask::x"


def test_masks_cover_values_and_each_line_of_multi_line_ones():
    pem = "-----BEGIN KEY-----\nabcdefghijkl\n-----END KEY-----"
    token = random_secret()
    lines = mask_commands(Redactor([token, pem]))
    assert f"::add-mask::{token}" in lines
    assert "::add-mask::-----BEGIN KEY-----%0Aabcdefghijkl%0A-----END KEY-----" in lines
    assert "::add-mask::abcdefghijkl" in lines


def test_outputs_use_a_delimiter_only_for_multi_line_values():
    text = output_lines({"release": "v2", "notes": "a\nb"})
    assert text.startswith("release=v2\nnotes<<ghadelimiter_")
    delimiter = text.splitlines()[1].split("<<")[1]
    assert text.endswith(f"a\nb\n{delimiter}\n")


def test_summary_table(tmp_path):
    results = [
        StepResult(
            "Build application",
            StepStatus.OK,
            0,
            "t",
            1.25,
            (Attempt(1, StepStatus.OK, 0, "t", 1.25, 0),),
            tmp_path,
        ),
        StepResult(
            "Smoke",
            StepStatus.FAILED,
            1,
            "t",
            0.5,
            (Attempt(1, StepStatus.FAILED, 1, "t", 0.5, 0),),
            tmp_path,
        ),
    ]
    verdict = Verdict(Outcome.FAILED, ExitCode.STEP_FAILED, "failed: Smoke (exit 1)")
    end = RunEnd("inv deploy.staging", "r1", "artifacts/devops/2026-11-30", verdict, results)
    assert summary_markdown(end).splitlines() == [
        "### Shipyard: `inv deploy.staging`: ❌ failed (exit 1)",
        "",
        "> failed: Smoke (exit 1)",
        "",
        "| step | status | exit | duration |",
        "|---|---|---|---|",
        "| Build application | ✅ ok | 0 | 1.2s |",
        "| Smoke | ❌ failed | 1 | 0.5s |",
        "",
        "run `r1` · evidence `artifacts/devops/2026-11-30/`",
        "",
    ]


def actions_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return cli_env(
        GITHUB_ACTIONS="true",
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
        GITHUB_OUTPUT=str(tmp_path / "output.txt"),
        **extra,
    )


@pytest.mark.e2e
def test_deploy_in_actions_groups_masks_summarises_and_outputs(tmp_path):
    app = Staging(tmp_path / "proj")
    token = "FlyV1 " + secrets.token_urlsafe(24)
    try:
        done = run_cli(
            [str(BIN / "inv"), "deploy.staging"],
            app.root,
            env=actions_env(tmp_path, FLY_API_TOKEN=token),
        )
    finally:
        app.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("::add-mask::")
    assert [line for line in lines if token in line] == [f"::add-mask::{token}"]
    for step in ("Build application", "Smoke", "Deploy", "Smoke staging"):
        assert f"::group::{step}" in lines
    assert lines.count("::endgroup::") == 4
    fences = {line.split("::")[2] for line in lines if line.startswith("::stop-commands::")}
    assert len(fences) == 1 and f"::{fences.pop()}::" in lines
    summary = (tmp_path / "summary.md").read_text()
    assert "| Smoke staging | ✅ ok | 0 |" in summary and "release **v1**" in summary
    outputs = dict(
        line.split("=", 1) for line in (tmp_path / "output.txt").read_text().splitlines()
    )
    assert outputs["release"] == "v1" and outputs["exit-code"] == "0"
    assert outputs["url"] == f"http://127.0.0.1:{app.port}/"  # the job's environment.url
    assert (app.root / outputs["artifact"]).is_file()  # what the deploy job attests
    assert outputs["evidence"].startswith("artifacts/devops/") and outputs["run-id"]
    assert (
        token not in (tmp_path / "summary.md").read_text() + (tmp_path / "output.txt").read_text()
    )


@pytest.mark.e2e
def test_a_failing_gate_gives_its_error_and_output_cannot_issue_commands(project, tmp_path):
    root = project("""
        version: 1
        steps:
          fmt: {run: "echo '::error::injected'; echo '::add-mask::x'; echo fine"}
          lint: {run: "echo 'E501 line too long'; exit 1"}
        gates: [fmt, lint]
    """)
    done = run_cli([str(BIN / "inv"), "gates", "--jobs", "1"], root, env=actions_env(tmp_path))
    assert done.returncode == 1
    errors = [line for line in done.stdout.splitlines() if line.startswith("::error ")]
    assert errors == [  # the failed gate's own, then the run's verdict
        "::error title=lint failed::lint: failed, exit 1%0AE501 line too long",
        "::error title=Shipyard%3A failed (exit 1)::failed: lint (exit 1)",
    ]
    fence = re.search(r"^::stop-commands::(\w+)$", done.stdout, re.MULTILINE)[1]
    inside = done.stdout.split(f"::stop-commands::{fence}")[1].split(f"::{fence}::")[0]
    assert "::error::injected" in inside  # printed, but inert: commands are stopped there
    assert "| lint | ❌ failed | 1 |" in (tmp_path / "summary.md").read_text()


def test_ci_alone_is_not_github(project, tmp_path):
    root = project("""
        version: 1
        steps:
          ok: {run: "true"}
    """)
    done = run_cli([str(BIN / "inv"), "step", "ok"], root, env=cli_env(CI="true"))
    assert "::group::" not in done.stdout


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_output_without_a_last_newline_still_ends_its_fence_and_group(project, tmp_path, jobs):
    """`printf done`: the runner reads the fence's end only at the start of a line; glued to
    `done` it would leave every later command inert (the group, the ::error)."""
    root = project("""
        version: 1
        steps:
          fmt: {run: "printf 'half a line'"}
          lint: {run: "printf 'E501'; exit 1"}
        gates: [fmt, lint]
    """)
    done = run_here(["gates", "--jobs", jobs], root, env=actions_env(tmp_path))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    fence = re.search(r"^::stop-commands::(\w+)$", done.stdout, re.MULTILINE)[1]
    assert lines.count(f"::{fence}::") == 2 and lines.count("::endgroup::") == 2
    assert "half a line" in lines and "E501" in lines
    assert "::error title=lint failed::lint: failed, exit 1%0AE501" in lines
    (log,) = (evidence_dir(root) / "logs").rglob("fmt.log")
    assert log.read_bytes() == b"half a line"  # the log keeps the bytes as printed
