"""The gates fanned out over CI runners (issue 18): `gates --list`, shards, the outputs a
deploy job reads, and `evidence.verify --bundles` over every runner's evidence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import cli_env, evidence_dir, random_secret, run_here

from shipyard.errors import ExitCode, Outcome, Verdict
from shipyard.gha import step_outputs
from shipyard.report import RunEnd

SHARDED = """
    version: 1
    steps:
      fmt: {run: "echo formatted"}
      "test:ci": {run: 'echo "part $SHIPYARD_SHARD of $SHIPYARD_SHARDS"', shards: 3}
      lint: {run: "echo lint broke; exit 1"}
    gates: [fmt, "test:ci", lint]
"""


def test_gates_list_names_one_leg_per_gate_and_per_shard(project):
    root = project(SHARDED)
    done = run_here(["gates", "--list"], root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "fmt",
        "test:ci (1/3)",
        "test:ci (2/3)",
        "test:ci (3/3)",
        "lint",
    ]
    assert not (root / "artifacts").exists()  # it ran nothing


def test_gates_list_json_is_the_matrix_of_a_ci_workflow(project):
    root = project(SHARDED)
    done = run_here(["gates", "--list", "--json"], root)
    assert done.returncode == 0, done.stderr
    legs = json.loads(done.stdout)["gates"]
    assert legs[0] == {"gate": "fmt", "shard": 1, "shards": 1, "name": "fmt", "slug": "fmt"}
    assert legs[2] == {
        "gate": "test:ci",
        "shard": 2,
        "shards": 3,
        "name": "test:ci (2/3)",
        "slug": "test-ci-2-of-3",  # what an Actions artifact name may hold
    }
    assert [leg["gate"] for leg in legs] == ["fmt", *["test:ci"] * 3, "lint"]


def test_gates_list_without_gates_is_a_usage_error(project):
    root = project("version: 1\nsteps:\n  a: {run: 'true'}\n")
    done = run_here(["gates", "--list", "--json"], root)
    assert done.returncode == int(ExitCode.USAGE)
    assert "no gates configured" in done.stderr


@pytest.mark.parametrize("shards", ["0", "65", "two"])
def test_shards_out_of_range_are_refused_where_they_are_written(project, shards):
    root = project(f"version: 1\nsteps:\n  t: {{run: 'true', shards: {shards}}}\n")
    done = run_here(["gates", "--list"], root)
    assert done.returncode == int(ExitCode.USAGE)
    assert "shipyard.yaml:3: steps.t.shards: expected an integer from 1 to 64" in done.stderr


@pytest.mark.parametrize(
    ("environ", "printed"),
    [({}, "part 1 of 1"), ({"SHIPYARD_SHARD": "2", "SHIPYARD_SHARDS": "3"}, "part 2 of 3")],
)
def test_a_step_knows_which_shard_it_runs(project, environ, printed):
    """1 of 1 on a laptop: the whole suite; a CI leg's shard when the leg says so."""
    root = project(SHARDED)
    done = run_here(["step", "test:ci"], root, env=cli_env(**environ))
    assert done.returncode == 0, done.stderr
    (record,) = [json.loads(p.read_text()) for p in (evidence_dir(root) / "runs").glob("*.json")]
    log = evidence_dir(root) / record["steps"][0]["log"]
    assert log.read_text() == f"{printed}\n"


def deploy_end(section: dict[str, object]) -> RunEnd:
    verdict = Verdict(Outcome.OK, ExitCode.OK, None)
    return RunEnd(
        "inv deploy.staging",
        "r1",
        "artifacts/devops/2026-12-02",
        verdict,
        (),
        "v3",
        section=("deploy", section),
    )


def test_a_deploy_outputs_its_url_and_the_artifact_file_it_deployed():
    outputs = step_outputs(
        deploy_end(
            {
                "url": "http://127.0.0.1:8787/",
                "artifact": "dist/webapp-1.0.0.tar.gz",
                "artifact_sha256": "ab" * 32,
            }
        )
    )
    assert outputs["url"] == "http://127.0.0.1:8787/"
    assert outputs["artifact"] == "dist/webapp-1.0.0.tar.gz"
    assert outputs["release"] == "v3"


def test_an_image_on_fly_is_no_artifact_file_to_attest():
    outputs = step_outputs(
        deploy_end(
            {
                "url": "https://webapp.fly.dev/",
                "artifact": "registry.fly.io/webapp:sha-1",
                "artifact_sha256": None,
            }
        )
    )
    assert outputs["url"] == "https://webapp.fly.dev/"
    assert "artifact" not in outputs


# --- every runner's evidence, verified and summarised in one job ------------------------------


def downloaded(root: Path, into: Path, name: str) -> Path:
    """The project's evidence as actions/download-artifact puts one runner's: into/<name>/."""
    leg = into / name
    leg.mkdir(parents=True)
    shutil.copytree(root / "artifacts", leg / "artifacts")
    shutil.copytree(root / "feedback", leg / "feedback")
    return leg


def two_legs(project, tmp_path: Path) -> Path:
    root = project(SHARDED)
    assert run_here(["step", "fmt"], root).returncode == 0
    downloaded(root, tmp_path / "bundles", "evidence-gate-fmt-py3.12-1")
    shutil.rmtree(root / "artifacts")
    shutil.rmtree(root / "feedback")
    assert run_here(["step", "lint"], root).returncode == 1
    downloaded(root, tmp_path / "bundles", "evidence-gate-lint-py3.12-1")
    return tmp_path / "bundles"


def test_verify_bundles_checks_every_runner_and_summarises_every_gate(project, tmp_path):
    bundles = two_legs(project, tmp_path)
    summary = tmp_path / "summary.md"
    env = cli_env(GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary))
    done = run_here(["evidence.verify", "--bundles", str(bundles)], tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split("/")[0] for line in lines[:2]] == [
        "evidence: evidence-gate-fmt-py3.12-1",
        "evidence: evidence-gate-lint-py3.12-1",
    ]
    assert all(" matches sha256_manifest.txt and 1 seal" in line for line in lines[:2])
    assert lines[-1] == "2 bundles: all match"
    text = summary.read_text()
    assert f"evidence of 2 bundles in `{bundles}`: ✅ all match" in text
    assert "| fmt | ✅ ok | 0 |" in text and "`evidence-gate-fmt-py3.12-1` | ✅ matches |" in text
    assert "| lint | ❌ failed | 1 |" in text  # a failed gate is summarised too


def test_verify_bundles_names_the_bundle_that_differs(project, tmp_path):
    bundles = two_legs(project, tmp_path)
    (log,) = (bundles / "evidence-gate-lint-py3.12-1").rglob("lint.log")
    log.write_text("all good, honestly\n")
    summary = tmp_path / "summary.md"
    env = cli_env(GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary))
    done = run_here(["evidence.verify", "--bundles", str(bundles), "--json"], tmp_path, env=env)
    assert done.returncode == int(ExitCode.STEP_FAILED)
    document = json.loads(done.stdout)
    assert document["ok"] is False
    fmt, lint = document["bundles"]
    assert fmt["ok"] is True and lint["ok"] is False
    assert lint["evidence"].startswith("evidence-gate-lint-py3.12-1/artifacts/devops/")
    assert [finding["kind"] for finding in lint["findings"]] == ["changed"]
    assert "❌ not all match" in summary.read_text()


def test_verify_bundles_refuses_a_folder_without_evidence_and_a_date(tmp_path):
    (tmp_path / "empty").mkdir()
    done = run_here(["evidence.verify", "--bundles", str(tmp_path / "empty")], tmp_path)
    assert done.returncode == int(ExitCode.USAGE)
    assert "no evidence bundle under" in done.stderr
    done = run_here(["evidence.verify", "--bundles", "x", "--date", "2026-12-02"], tmp_path)
    assert done.returncode == int(ExitCode.USAGE)
    assert "give no --date" in done.stderr


def test_a_secret_in_a_bundle_summary_is_masked(project, tmp_path):
    secret = random_secret()
    root = project(f"version: 1\nsteps:\n  '{secret}': {{run: 'true'}}\n")
    env = cli_env(DEPLOY_TOKEN=secret)
    assert run_here(["step", secret], root, env=env).returncode == 0
    bundles = tmp_path / "bundles"
    downloaded(root, bundles, "leg")
    summary = tmp_path / "summary.md"
    env = cli_env(DEPLOY_TOKEN=secret, GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary))
    done = run_here(["evidence.verify", "--bundles", str(bundles)], tmp_path, env=env)
    assert secret not in done.stdout + done.stderr + summary.read_text()


def test_verify_bundles_writes_no_summary_outside_actions(project, tmp_path):
    bundles = two_legs(project, tmp_path)
    summary = tmp_path / "summary.md"
    env = cli_env(CI="true", GITHUB_STEP_SUMMARY=str(summary))
    assert (
        run_here(["evidence.verify", "--bundles", str(bundles)], tmp_path, env=env).returncode == 0
    )
    assert not summary.exists()
