"""`shipyard.provenance`: the in-toto statement of a deploy's artifact, written into the bundle a
real deploy left, and its offline check by `inv evidence.verify`.

One real deploy of the example app (about a second) is made per module, in a git repository;
each test gets its own copy of that project to attest and tamper with."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import json_format
from helpers import GIT, cli_env, evidence_dir, ok, random_secret, run_here, sha256sum_check
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from test_cli import secret_forms
from test_deploy import Staging

from shipyard import evidence, provenance
from shipyard.console import Output
from shipyard.errors import ExitCode, ShipyardError, exit_code_for

SECRET = random_secret()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Path:
    """A project deployed once, from a commit, with a secret-named variable in its environment;
    its server already stopped."""
    app = Staging(tmp_path_factory.mktemp("deployed") / "proj")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "app"]):
        subprocess.run([*GIT, *args], cwd=app.root, check=True, capture_output=True)
    try:
        ok(app.here("deploy.staging", env=cli_env(DEPLOY_TOKEN=SECRET)))
    finally:
        app.stop()
    return app.root


@pytest.fixture
def project(deployed, tmp_path) -> Path:
    copy = tmp_path / "proj"
    shutil.copytree(deployed, copy, symlinks=True)
    return copy


def bundle_of(root: Path) -> evidence.Bundle:
    day = evidence_dir(root)
    return evidence.Bundle(root, "devops", day.name)


def deploy_run(root: Path) -> dict:
    records = [json.loads(p.read_text()) for p in (evidence_dir(root) / "runs").glob("*.json")]
    (record,) = [r for r in records if "deploy" in r]
    return record


def attest(root: Path, **environ: str) -> provenance.Attested:
    bundle = bundle_of(root)
    return provenance.attest(root, "devops", bundle.date, environ=environ)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    """`inv evidence.verify` for the deploy's day, as a user runs it."""
    return run_here(["evidence.verify", "--date", bundle_of(root).date], root)


def test_the_statement_names_the_artifact_and_the_runs_seal_by_their_sha256(project, capsys):
    record = deploy_run(project)
    run_id = record["run_id"]
    assert provenance.attest_command(project, "devops", environ={}) == ExitCode.OK

    day = evidence_dir(project)
    written = day / "attestations" / f"{run_id}.intoto.json"
    artifact = project / "dist" / "webapp-1.0.0.tar.gz"
    seal = day / "seals" / f"{run_id}.sha256"
    document = json.loads(written.read_text())
    assert document["_type"] == "https://in-toto.io/Statement/v1"
    assert document["predicateType"] == "https://slsa.dev/provenance/v1"
    assert document["subject"] == [
        {"name": "webapp-1.0.0.tar.gz", "digest": {"sha256": sha256_of(artifact)}},
        {"name": f"seals/{run_id}.sha256", "digest": {"sha256": sha256_of(seal)}},
    ]
    line = capsys.readouterr().out
    assert line == (
        f"attested run {run_id}: {written.relative_to(project)} (subjects: webapp-1.0.0.tar.gz"
        f" sha256:{sha256_of(artifact)[:12]}…, seals/{run_id}.sha256"
        f" sha256:{sha256_of(seal)[:12]}…)\n"
    )


def test_the_predicate_is_the_runs_provenance_from_its_record(project):
    record = deploy_run(project)
    written = attest(project)
    predicate = json.loads(written.path.read_text())["predicate"]

    definition, details = predicate["buildDefinition"], predicate["runDetails"]
    assert definition["buildType"] == provenance.BUILD_TYPE
    assert definition["externalParameters"] == {
        "command": "inv deploy.staging",
        "environment": "staging",
        "target": "local",
        "artifact": "dist/webapp-1.0.0.tar.gz",
    }
    head = subprocess.run(
        [*GIT, "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert definition["resolvedDependencies"] == [
        {"name": "git commit", "digest": {"gitCommit": head}},
        {"name": "shipyard.yaml", "digest": {"sha256": sha256_of(project / "shipyard.yaml")}},
    ]
    assert details["builder"]["id"] == f"urn:shipyard:builder:local:{record['host']}"
    assert details["metadata"] == {
        "invocationId": record["run_id"],
        "startedOn": record["started"],
        "finishedOn": record["finished"],
    }
    steps = [(s["name"], s["status"], s["exit_code"]) for s in record["steps"]]
    byproducts = details["byproducts"]
    shown = [
        (b["name"], b["annotations"]["status"], b["annotations"]["exitCode"])
        for b in byproducts[:-1]
    ]
    assert shown == steps
    build = byproducts[0]
    assert build["annotations"]["command"] == "python3 app/build.py --out dist"
    assert build["digest"]["sha256"] == sha256_of(
        written.path.parents[1] / build["annotations"]["log"]
    )
    record_path = written.path.parents[1] / "runs" / f"{record['run_id']}.json"
    assert byproducts[-1] == {
        "name": f"runs/{record['run_id']}.json",
        "digest": {"sha256": sha256_of(record_path)},
        "annotations": {"outcome": "ok", "exitCode": 0},
    }


def test_in_github_actions_the_builder_is_the_workflow_run_and_the_commit_names_the_repo(project):
    actions = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_RUN_ID": "4242",
    }
    predicate = json.loads(attest(project, **actions).path.read_text())["predicate"]
    assert (
        predicate["runDetails"]["builder"]["id"] == "https://github.com/acme/shop/actions/runs/4242"
    )
    commit = predicate["buildDefinition"]["resolvedDependencies"][0]
    assert commit["uri"] == f"git+https://github.com/acme/shop@{commit['digest']['gitCommit']}"


def test_the_statement_is_valid_for_the_in_toto_package(project):
    document = json.loads(attest(project).path.read_text())
    parsed = json_format.ParseDict(document, statement_pb2.Statement())
    Statement.copy_from_pb(parsed).validate()
    json_format.ParseDict(document["predicate"], provenance_pb2.Provenance())
    assert provenance.schema_problems(document) == []


def test_the_bundle_still_verifies_after_attesting_and_after_a_later_run(project):
    written = attest(project)
    day = written.path.parents[1]
    assert sha256sum_check(day).returncode == 0, sha256sum_check(day).stdout
    assert "attestations/" in (day / "sha256_manifest.txt").read_text()
    done = ok(verify(project))
    assert done.stdout.startswith(f"evidence: {day.relative_to(project)}/ matches")

    later = run_here(["heartbeat", "devops", "--", "true"], project)  # a run with no artifact
    assert later.returncode == 0, later.stderr
    assert sha256sum_check(day).returncode == 0
    assert provenance.verify(bundle_of(project)).ok
    again = attest(project)  # the newest run with an artifact is still the deploy's
    assert again == written
    assert sha256sum_check(day).returncode == 0


def edit_statement(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, indent=2) + "\n")


def other_digest(document: dict) -> None:
    document["subject"][0]["digest"]["sha256"] = hashlib.sha256(b"another artifact").hexdigest()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (other_digest, "subject webapp-1.0.0.tar.gz: sha256 "),
        (lambda d: d.pop("predicateType"), "predicateType is missing"),
        (lambda d: d.update(_type="https://in-toto.io/Statement/v0.1"), "_type is "),
        (lambda d: d["predicate"]["buildDefinition"].pop("buildType"), "buildType is missing"),
        (
            lambda d: d["predicate"]["runDetails"]["metadata"].update(startedOn="yesterday"),
            "not an in-toto Statement v1 with SLSA provenance v1: Failed to parse",
        ),
        (
            lambda d: d["subject"].append({"name": "x", "digest": {"sha256": "0" * 64}}),
            "3 subjects",
        ),
    ],
)
def test_a_tampered_statement_fails_verification_even_with_the_manifest_rewritten(
    project, change, reason
):
    written = attest(project)
    edit_statement(written.path, change)
    evidence.write_manifest(bundle_of(project))  # as one who rewrites the manifest to match

    done = verify(project)
    assert done.returncode == 1
    rel = f"attestations/{written.run_id}.intoto.json"
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("attestation:")]
    assert line.startswith(f"attestation: {rel} (") and reason in line, line


def test_a_changed_seal_fails_the_attestation_too(project):
    written = attest(project)
    seal = written.path.parents[1] / "seals" / f"{written.run_id}.sha256"
    seal.write_bytes(seal.read_bytes() + b"# a comment sha256sum skips\n")

    result = provenance.verify(bundle_of(project))
    found = {f.kind: f for f in result.findings if f.path.endswith(".intoto.json")}
    assert f"seals/{written.run_id}.sha256: sha256 " in found["attestation"].line
    assert "is not the seal's" in found["attestation"].line
    assert verify(project).returncode == 1


def test_an_artifact_rebuilt_with_other_bytes_is_a_finding_one_gone_is_a_note(project):
    written = attest(project)
    artifact = project / "dist" / "webapp-1.0.0.tar.gz"

    artifact.unlink()
    result = provenance.verify(bundle_of(project))
    assert result.ok and result.attestations == 1
    assert result.notes == (
        f"attestations/{written.run_id}.intoto.json: artifact dist/webapp-1.0.0.tar.gz is not on"
        " disk here: its sha256 was checked against the run record only",
    )

    artifact.write_bytes(b"rebuilt")
    lines = provenance.verify(bundle_of(project)).lines()
    assert lines == [
        f"attestation: attestations/{written.run_id}.intoto.json (artifact"
        f" dist/webapp-1.0.0.tar.gz on disk has sha256 {sha256_of(artifact)[:12]}…, not the"
        f" attested {deploy_run(project)['deploy']['artifact_sha256'][:12]}…)"
    ]
    with pytest.raises(ShipyardError, match=r"is not the one run .* recorded") as refused:
        provenance.attest(project, "devops", bundle_of(project).date, written.run_id)
    assert exit_code_for(refused.value) == ExitCode.STEP_FAILED


def test_a_secret_in_the_environment_never_reaches_the_statement(project):
    actions = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": f"acme/{SECRET}",
        "GITHUB_RUN_ID": SECRET,
    }
    written = attest(project, DEPLOY_TOKEN=SECRET, **actions)
    text = written.path.read_text()
    assert "***" in text
    assert not [form for form in secret_forms(SECRET) if form in text]
    assert provenance.verify(bundle_of(project)).ok


def test_no_bundle_no_run_no_artifact_are_usage_errors(project):
    date = bundle_of(project).date

    def refusal(**call) -> str:
        with pytest.raises(ShipyardError) as refused:
            provenance.attest(project, "devops", **call)
        assert exit_code_for(refused.value) == ExitCode.USAGE
        return refused.value.message

    assert refusal(date="1999-01-01") == (
        "no evidence for 1999-01-01: artifacts/devops/1999-01-01/ does not exist"
    )
    assert refusal(date="tomorrow").startswith("--date: expected YYYY-MM-DD")
    assert refusal(date=date, run_id="../../etc") == "not a run id: '../../etc'"
    assert refusal(date=date, run_id="20991231T000000Z-0000").startswith(
        "no run 20991231T000000Z-0000 in artifacts/devops/"
    )
    run_here(["heartbeat", "devops", "--", "true"], project)
    records = [json.loads(p.read_text()) for p in (evidence_dir(project) / "runs").glob("*.json")]
    (plain,) = [r["run_id"] for r in records if "deploy" not in r]
    assert refusal(run_id=plain) == f"run {plain} recorded no artifact file with a sha256"


def test_a_day_without_a_deploy_has_nothing_to_attest(tmp_path):
    root = tmp_path / "proj"
    (root / "shipyard.yaml").parent.mkdir(parents=True)
    (root / "shipyard.yaml").write_text("version: 1\nsteps:\n  lint: {run: 'true'}\n")
    (root / "tasks.py").write_text("from shipyard.tasks import namespace\n\nns = namespace()\n")
    ok(run_here(["step", "lint"], root))
    with pytest.raises(ShipyardError, match=r"no run in artifacts/devops/.* recorded an artifact"):
        provenance.attest(root, "devops", evidence_dir(root).name)


def test_a_statement_is_written_once(project):
    written = attest(project)
    with pytest.raises(ShipyardError, match="already in the bundle, with other content") as refused:
        attest(
            project,
            GITHUB_ACTIONS="true",
            GITHUB_SERVER_URL="https://x",
            GITHUB_REPOSITORY="a/b",
            GITHUB_RUN_ID="1",
        )
    assert exit_code_for(refused.value) == ExitCode.USAGE
    assert provenance.verify(bundle_of(project)).ok
    assert written.path.read_text().count("urn:shipyard:builder:local") == 1


def test_attesting_over_broken_evidence_is_refused(project):
    record = bundle_of(project).run_record_path(deploy_run(project)["run_id"])
    record.write_text(record.read_text().replace('"ok"', '"fine"', 1))
    with pytest.raises(ShipyardError, match="no longer matches its seals") as refused:
        attest(project)
    assert exit_code_for(refused.value) == ExitCode.STEP_FAILED
    assert not (evidence_dir(project) / "attestations").exists()


def test_json_output_is_one_document_naming_the_statement_and_its_subjects(project, capsys):
    date = bundle_of(project).date
    code = provenance.attest_command(project, "devops", date, output=Output(as_json=True))
    assert code == ExitCode.OK
    document = json.loads(capsys.readouterr().out)
    run_id = deploy_run(project)["run_id"]
    assert document["run_id"] == run_id
    assert document["attestation"] == f"artifacts/devops/{date}/attestations/{run_id}.intoto.json"
    statement = json.loads((project / document["attestation"]).read_text())
    assert document["subjects"] == [
        {"name": s["name"], "sha256": s["digest"]["sha256"]} for s in statement["subject"]
    ]


def test_inv_evidence_attest_then_verify_as_a_user_runs_them(project):
    done = ok(run_here(["evidence.attest"], project))
    run_id = deploy_run(project)["run_id"]
    assert done.stdout.startswith(f"attested run {run_id}: artifacts/devops/")
    assert f"attestations/{run_id}.intoto.json (subjects: webapp-" in done.stdout
    checked = ok(verify(project))
    assert "matches sha256_manifest.txt and 1 seal, 1 attestation" in checked.stdout
    again = run_here(["evidence.attest", "--run", "20010101T000000Z-0000"], project)
    assert again.returncode == int(ExitCode.USAGE) and "Traceback" not in again.stderr
