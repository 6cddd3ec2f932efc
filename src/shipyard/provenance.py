"""The provenance of a run's artifact: an in-toto Statement v1 with an SLSA provenance v1
predicate, written into the run's evidence bundle, and its offline check (docs/provenance.md).

artifacts/<agent>/<YYYY-MM-DD>/attestations/<run-id>.intoto.json

Its two subjects are the artifact the run recorded (`deploy.artifact`, `artifact_sha256`) and
the run's seal, `seals/<run-id>.sha256`. The seal and not the day's manifest: a seal is written
once, when its run ends, and never again, while the manifest is rewritten by every later run of
the day, and by adding this very statement to it, so no digest of it could stay true.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from google.protobuf import json_format  # type: ignore[import-untyped]
from in_toto_attestation.predicates.provenance.v1 import (  # type: ignore[import-untyped]
    provenance_pb2,
)
from in_toto_attestation.v1 import statement_pb2  # type: ignore[import-untyped]
from in_toto_attestation.v1.resource_descriptor import (  # type: ignore[import-untyped]
    ResourceDescriptor,
)
from in_toto_attestation.v1.statement import (  # type: ignore[import-untyped]
    STATEMENT_TYPE_URI,
    Statement,
)

from shipyard import evidence
from shipyard.errors import CannotWrite, ExitCode, StepFailed, UsageError
from shipyard.evidence import Bundle, CheckFile
from shipyard.records import DeployRecord
from shipyard.redact import Redactor

if TYPE_CHECKING:
    from shipyard.console import Output

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# What a Shipyard run's externalParameters and internalParameters mean: docs/provenance.md.
BUILD_TYPE = "urn:shipyard:buildtype:run:v1"
LOCAL_BUILDER = "urn:shipyard:builder:local"
ATTESTATIONS_DIR = "attestations"
SUFFIX = ".intoto.json"
_SECTIONS = ("deploy", "rollback")  # the run record's keys that may name an artifact
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_OF_RUN = re.compile(r"(\d{4})(\d{2})(\d{2})T")
_ATTESTATION = re.compile(rb"attestations/([A-Za-z0-9][A-Za-z0-9._-]*)\.intoto\.json")
# A heartbeat line's `key=value` pairs; a value with spaces, quotes or `=` is double-quoted.
_LOGFMT = re.compile(r'([A-Za-z_]+)=("(?:[^"\\]|\\.)*"|\S*)')


def attestation_rel(run_id: str) -> str:
    return f"{ATTESTATIONS_DIR}/{run_id}{SUFFIX}"


def _seal_rel(run_id: str) -> str:
    return f"{evidence.SEALS_DIR}/{run_id}{evidence.SEAL_SUFFIX}"


def _record_rel(run_id: str) -> str:
    return f"runs/{run_id}.json"


# --- what a statement is made from --------------------------------------------------------


@dataclass(frozen=True)
class RunEvidence:
    """A sealed run that recorded an artifact, as its bundle holds it."""

    bundle: Bundle
    run_id: str
    record: Mapping[str, Any]  # runs/<run-id>.json
    deploy: DeployRecord  # its `deploy` (or `rollback`) section, which names the artifact
    seal: CheckFile  # seals/<run-id>.sha256, as read
    seal_sha256: str

    @property
    def artifact_sha256(self) -> str:
        return self.deploy.artifact_sha256 or ""

    @property
    def artifact_name(self) -> str:
        return PurePosixPath(self.deploy.artifact or "").name


def _artifact_section(record: Mapping[str, Any]) -> DeployRecord | None:
    """The section of a run record that names an artifact file with its sha256 (a deploy's: a
    Fly deploy's image has no file sha256), or None."""
    for key in _SECTIONS:
        section = record.get(key)
        if isinstance(section, dict):
            deploy = DeployRecord.from_json(section)
            if deploy.artifact and _SHA256.fullmatch(deploy.artifact_sha256 or ""):
                return deploy
    return None


def _regular_bytes(path: Path, limit: int = -1) -> bytes | None:
    """A regular file's bytes (its first `limit`), never through a symlink or from a FIFO;
    None when there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return handle.read(limit)


def _record(bundle: Bundle, run_id: str) -> dict[str, Any] | None:
    data = _regular_bytes(bundle.run_record_path(run_id))
    try:
        record = json.loads(data) if data is not None else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _run_ids(bundle: Bundle) -> list[str]:
    runs = bundle.dir / "runs"
    names = [path.name for path in runs.glob("*.json")] if runs.is_dir() else []
    return [name.removesuffix(".json") for name in names if evidence.is_run_id(name[:-5])]


def _run_to_attest(bundle: Bundle, run_id: str) -> RunEvidence:
    """The run given, or the day's newest that recorded an artifact with a sha256; sealed."""
    shown = _shown(bundle)
    if run_id:
        if not evidence.is_run_id(run_id):
            raise UsageError(f"not a run id: '{run_id}'")
        record = _record(bundle, run_id)
        if record is None:
            raise UsageError(f"no run {run_id} in {shown}/ (no {_record_rel(run_id)})")
    else:
        found = [(rid, rec) for rid in _run_ids(bundle) if (rec := _record(bundle, rid))]
        with_artifact = [(rid, rec) for rid, rec in found if _artifact_section(rec)]
        if not with_artifact:
            raise UsageError(f"no run in {shown}/ recorded an artifact file with a sha256")
        run_id, record = max(with_artifact, key=lambda pair: (str(pair[1].get("started")), pair[0]))
    deploy = _artifact_section(record)
    if deploy is None:
        raise UsageError(f"run {run_id} recorded no artifact file with a sha256")
    data = _regular_bytes(bundle.seal_path(run_id))
    if data is None:
        raise UsageError(
            f"run {run_id} has no seal ({_seal_rel(run_id)}): it has not ended, or it ended"
            " before Shipyard sealed runs"
        )
    seal = evidence.parse_check_file(data, _seal_rel(run_id))
    return RunEvidence(bundle, run_id, record, deploy, seal, hashlib.sha256(data).hexdigest())


# --- the statement ------------------------------------------------------------------------


def statement(run: RunEvidence, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The in-toto Statement v1 for a run's artifact, as the spec's JSON (`schema_problems`
    checks it against the package's protobuf messages). `environ` only names the builder and
    the repository when in GitHub Actions; all else comes from the bundle."""
    return {
        "_type": STATEMENT_TYPE_URI,
        "subject": [
            {"name": run.artifact_name, "digest": {"sha256": run.artifact_sha256}},
            {"name": _seal_rel(run.run_id), "digest": {"sha256": run.seal_sha256}},
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": _build_definition(run, environ),
            "runDetails": _run_details(run, environ),
        },
    }


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _build_definition(run: RunEvidence, environ: Mapping[str, str]) -> dict[str, Any]:
    deploy = run.deploy
    return {
        "buildType": BUILD_TYPE,
        "externalParameters": {
            "command": _text(run.record.get("command")),
            "environment": deploy.environment,
            "target": deploy.target,
            "artifact": deploy.artifact,
        },
        "internalParameters": {
            "agent": _text(run.record.get("agent")),
            "host": _text(run.record.get("host")),
            "smokeTested": deploy.smoke_tested,
        },
        "resolvedDependencies": _dependencies(run.record, deploy, environ),
    }


def _dependencies(
    record: Mapping[str, Any], deploy: DeployRecord, environ: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The commit built from (and, for a dirty tree, the diff deployed with it) and the config."""
    found: list[dict[str, Any]] = []
    sha = deploy.git_sha or _text(record.get("git_sha"))
    if sha:
        repository = _actions_repository(environ)
        where = {"uri": f"git+{repository}@{sha}"} if repository else {"name": "git commit"}
        dirty = {"annotations": {"dirty": True}} if deploy.dirty else {}
        found.append({**where, "digest": {"gitCommit": sha}, **dirty})
    if deploy.diff_sha256:
        found.append({"name": "git diff HEAD --binary", "digest": {"sha256": deploy.diff_sha256}})
    if deploy.config_sha256:
        found.append({"name": "shipyard.yaml", "digest": {"sha256": deploy.config_sha256}})
    return found


def _actions_repository(environ: Mapping[str, str]) -> str | None:
    """`https://github.com/owner/repo` in GitHub Actions; None elsewhere."""
    server, repository = environ.get("GITHUB_SERVER_URL"), environ.get("GITHUB_REPOSITORY")
    if environ.get("GITHUB_ACTIONS") != "true" or not server or not repository:
        return None
    return f"{server.rstrip('/')}/{repository}"


def _builder_id(record: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    """The Actions run that attests (`…/actions/runs/<id>`), or this host's local builder."""
    repository, run = _actions_repository(environ), environ.get("GITHUB_RUN_ID")
    if repository and run:
        return f"{repository}/actions/runs/{run}"
    host = _text(record.get("host"))
    return f"{LOCAL_BUILDER}:{quote(host, safe='')}" if host else LOCAL_BUILDER


def _run_details(run: RunEvidence, environ: Mapping[str, str]) -> dict[str, Any]:
    times = {
        key: run.record[field]
        for key, field in (("startedOn", "started"), ("finishedOn", "finished"))
        if isinstance(run.record.get(field), str)
    }
    version = _text(run.record.get("shipyard_version")) or "unknown"
    return {
        "builder": {"id": _builder_id(run.record, environ), "version": {"shipyard": version}},
        "metadata": {"invocationId": run.run_id, **times},
        "byproducts": _byproducts(run),
    }


def _byproducts(run: RunEvidence) -> list[dict[str, Any]]:
    """Each step with its status, exit code, command and sealed log, then the run record."""
    commands = _commands(run)
    found = []
    for step in run.record.get("steps") or []:
        if not isinstance(step, dict):
            continue
        name, log = _text(step.get("name")), _text(step.get("log"))
        notes = {"status": step.get("status"), "exitCode": step.get("exit_code")}
        if name in commands:
            notes["command"] = commands[name]
        sealed = run.seal.entries.get(log.encode())
        digest = {"digest": {"sha256": sealed}} if sealed else {}
        found.append({"name": name, **digest, "annotations": {**notes, "log": log or None}})
    record_rel = _record_rel(run.run_id)
    verdict = {"outcome": run.record.get("outcome"), "exitCode": run.record.get("exit_code")}
    sealed = run.seal.entries.get(record_rel.encode())
    digest = {"digest": {"sha256": sealed}} if sealed else {}
    found.append({"name": record_rel, **digest, "annotations": verdict})
    return found


def _commands(run: RunEvidence) -> dict[str, str]:
    """Each step's command as its `start` line in the heartbeat log says it (masked when it was
    written), read from the part of the log the run's seal vouches for."""
    if run.seal.heartbeat_prefix is None:
        return {}
    sealed = _regular_bytes(run.bundle.heartbeat_path, run.seal.heartbeat_prefix[0]) or b""
    found: dict[str, str] = {}
    for line in sealed.decode("utf-8", "replace").splitlines():
        fields = {key: _unquoted(value) for key, value in _LOGFMT.findall(line)}
        if fields.get("run") == run.run_id and fields.get("event") == "start" and "cmd" in fields:
            found.setdefault(fields.get("step", ""), fields["cmd"])
    return found


def _unquoted(value: str) -> str:
    if not value.startswith('"'):
        return value
    escapes = {"n": "\n", "r": "\r"}
    return re.sub(r"\\(.)", lambda match: escapes.get(match[1], match[1]), value[1:-1])


# --- writing it ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    name: str
    sha256: str

    def shown(self) -> str:
        return f"{self.name} sha256:{self.sha256[:12]}…"


@dataclass(frozen=True)
class Attested:
    run_id: str
    path: Path  # attestations/<run-id>.intoto.json in the bundle
    subjects: tuple[Subject, ...]  # the artifact, then the run's seal


def attest(
    root: Path,
    agent: str,
    date: str = "",
    run_id: str = "",
    *,
    environ: Mapping[str, str] = os.environ,
    redactor: Redactor | None = None,
) -> Attested:
    """Write the provenance of a run's artifact into its bundle, listed in the day's manifest.

    The run given, or the newest of the day (`date`: the run id's day when a run is given, else
    today, UTC) whose record names an artifact file with its sha256. Refused (UsageError) when
    there is none, or the run has no seal; failed (StepFailed) when the artifact on disk is no
    longer the one recorded, or the day's evidence no longer matches its seals."""
    bundle = _bundle(root, agent, date or _date_of(run_id))
    run = _run_to_attest(bundle, run_id)
    _check_artifact_on_disk(run)
    document = statement(run, environ)
    if problems := schema_problems(document):  # a bug: the record is Shipyard's own
        raise StepFailed(f"the statement for run {run.run_id} is not valid: {problems[0]}")
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    masked = (redactor or Redactor.from_environ(environ)).mask(text)
    rel = attestation_rel(run.run_id)
    try:
        evidence.add_file(bundle, rel, masked.encode("utf-8"))
    except OSError as error:
        raise CannotWrite.of(error.filename or bundle.dir / rel, error, root) from None
    subjects = tuple(Subject(s["name"], s["digest"]["sha256"]) for s in document["subject"])
    return Attested(run.run_id, bundle.dir / rel, subjects)


def _date_of(run_id: str) -> str:
    match = _DATE_OF_RUN.match(run_id)
    if match:
        return "-".join(match.groups())
    return f"{datetime.now(timezone.utc):%Y-%m-%d}"


def _bundle(root: Path, agent: str, date: str) -> Bundle:
    if not _DATE.fullmatch(date):
        raise UsageError(f"--date: expected YYYY-MM-DD, got '{date}'")
    bundle = Bundle(root, agent, date)
    if not bundle.dir.is_dir():
        raise UsageError(f"no evidence for {date}: {_shown(bundle)}/ does not exist")
    return bundle


def _shown(bundle: Bundle) -> str:
    return bundle.dir.relative_to(bundle.root).as_posix()


def _check_artifact_on_disk(run: RunEvidence) -> None:
    """An artifact file rebuilt since the run with other bytes would make the statement false
    the moment it is written; one that is gone leaves the record's sha256 to go by."""
    on_disk, _ = _artifact_file_sha256(run.bundle.root, run.deploy.artifact or "")
    if on_disk is not None and on_disk != run.artifact_sha256:
        raise StepFailed(
            f"artifact {run.deploy.artifact} is not the one run {run.run_id} recorded: sha256"
            f" {on_disk[:12]}… on disk, {run.artifact_sha256[:12]}… in {_record_rel(run.run_id)}"
        )


def _artifact_file_sha256(root: Path, artifact: str) -> tuple[str | None, str]:
    """The sha256 of the artifact file where the record says (relative to the project), or
    None and why not."""
    relative = PurePosixPath(artifact)
    if relative.is_absolute() or ".." in relative.parts:
        return None, f"artifact {artifact} is not a path inside the project"
    path = root / relative
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None, f"artifact {artifact} is not a regular file here"
        return evidence.file_sha256(path), ""
    except OSError:
        return None, f"artifact {artifact} is not on disk here"


def attest_command(
    root: Path,
    agent: str,
    date: str = "",
    run_id: str = "",
    *,
    environ: Mapping[str, str] = os.environ,
    redactor: Redactor | None = None,
    output: Output | None = None,
) -> ExitCode:
    """`inv evidence.attest`: one line (or, with --json, one document) naming the statement
    written and its subjects."""
    redactor = redactor or Redactor.from_environ(environ)
    done = attest(root, agent, date, run_id, environ=environ, redactor=redactor)
    shown = done.path.relative_to(root).as_posix()
    if output is not None and output.as_json:
        from shipyard.report import json_text

        subjects = [{"name": s.name, "sha256": s.sha256} for s in done.subjects]
        document = {"run_id": done.run_id, "attestation": shown, "subjects": subjects}
        print(json_text(document, redactor), flush=True)
        return ExitCode.OK
    subjects_shown = ", ".join(subject.shown() for subject in done.subjects)
    print(redactor.mask(f"attested run {done.run_id}: {shown} (subjects: {subjects_shown})"))
    return ExitCode.OK


# --- checking it offline ------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """One attestation of a bundle, checked: each problem is a note of its finding."""

    path: str  # attestations/<run-id>.intoto.json
    problems: tuple[str, ...] = ()  # none when it holds
    notes: tuple[str, ...] = ()  # what could not be checked here, and why: not a problem


def verify(bundle: Bundle) -> evidence.Verification:
    """`evidence.verify` of the bundle, its attestations checked too: what `inv evidence.verify`
    and `inv contract` report."""
    return evidence.verify(bundle, attestations=check)


def check(bundle: Bundle) -> list[Checked]:
    """Check every attestation of a bundle with the bundle alone: its schema, its subjects'
    digests (the run's seal in the bundle, the artifact's in the run record, and the artifact
    file itself where the record says, when it is still there), its dependencies' digests."""
    files = evidence.walk(bundle.dir).files
    named = sorted(match[1].decode() for rel in files if (match := _ATTESTATION.fullmatch(rel)))
    return [_check_one(bundle, run_id) for run_id in named]


def _check_one(bundle: Bundle, run_id: str) -> Checked:
    rel = attestation_rel(run_id)
    data = _regular_bytes(bundle.dir / rel)
    if data is None:
        return Checked(rel, ("cannot be read",))
    try:
        document = json.loads(data)
    except ValueError as error:
        return Checked(rel, (f"not JSON: {error}",))
    parsed, problems = _parsed(document)
    if parsed is None or problems:
        return Checked(rel, tuple(problems))
    return _check_digests(bundle, run_id, rel, parsed)


def _check_digests(bundle: Bundle, run_id: str, rel: str, parsed: _Parsed) -> Checked:
    invocation = parsed.provenance.run_details.metadata.invocation_id
    problems = [] if invocation == run_id else [_wrong("invocationId", invocation, run_id)]
    subjects = {s.name: s.digest.get("sha256", "") for s in parsed.statement.subject}
    if len(parsed.statement.subject) != 2:
        count = len(parsed.statement.subject)
        problems.append(f"{count} subjects: expected the artifact and the run's seal")
    problems += _seal_problems(bundle, run_id, subjects.pop(_seal_rel(run_id), None))
    record = _record(bundle, run_id)
    deploy = _artifact_section(record) if record else None
    if record is None or deploy is None:
        missing = "is not in the bundle" if record is None else "records no artifact file"
        return Checked(rel, (*problems, f"{_record_rel(run_id)} {missing}"))
    more, notes = _artifact_problems(bundle, deploy, subjects)
    listed = parsed.provenance.build_definition.resolved_dependencies
    problems += more + _dependency_problems(listed, record, deploy)
    return Checked(rel, tuple(problems), tuple(f"{rel}: {note}" for note in notes))


def _seal_problems(bundle: Bundle, run_id: str, attested: str | None) -> list[str]:
    rel = _seal_rel(run_id)
    if attested is None:
        return [f"no subject is the run's seal {rel}"]
    data = _regular_bytes(bundle.seal_path(run_id))
    if data is None:
        return [f"subject {rel} is not in the bundle"]
    actual = hashlib.sha256(data).hexdigest()
    if actual != attested:
        return [f"subject {rel}: sha256 {attested[:12]}… is not the seal's ({actual[:12]}…)"]
    return []


def _artifact_problems(
    bundle: Bundle, deploy: DeployRecord, subjects: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """The artifact subject against the run record, and the file itself when it is still
    there: (problems, notes)."""
    artifact, recorded = deploy.artifact or "", deploy.artifact_sha256 or ""
    name = PurePosixPath(artifact).name
    if name not in subjects:
        return [f"no subject is the run's artifact {name}"], []
    if subjects[name] != recorded:
        return [
            f"subject {name}: sha256 {subjects[name][:12]}… is not the run record's"
            f" ({recorded[:12]}…)"
        ], []
    on_disk, why_not = _artifact_file_sha256(bundle.root, artifact)
    if on_disk is None:
        return [], [f"{why_not}: its sha256 was checked against the run record only"]
    if on_disk != recorded:
        return [
            f"artifact {artifact} on disk has sha256 {on_disk[:12]}…, not the attested"
            f" {recorded[:12]}…"
        ], []
    return [], []


def _dependency_problems(
    listed: Iterable[Any], record: Mapping[str, Any], deploy: DeployRecord
) -> list[str]:
    """The commit, diff and config digests: the same as the run record's, no more, no fewer."""
    attested = {(kind, value) for item in listed for kind, value in item.digest.items()}
    expected = {
        (kind, value)
        for item in _dependencies(record, deploy, {})
        for kind, value in item["digest"].items()
    }
    lacking = [f"{kind} {value[:12]}…" for kind, value in sorted(expected - attested)]
    extra = [f"{kind} {value[:12]}…" for kind, value in sorted(attested - expected)]
    problems = (
        [f"resolvedDependencies lack the run record's {', '.join(lacking)}"] if lacking else []
    )
    if extra:
        problems.append(
            f"resolvedDependencies name what the run record does not: {', '.join(extra)}"
        )
    return problems


@dataclass(frozen=True)
class _Parsed:
    statement: Any  # in_toto_attestation.v1.statement_pb2.Statement
    provenance: Any  # in_toto_attestation.predicates.provenance.v1.provenance_pb2.Provenance


def schema_problems(document: object) -> list[str]:
    """What keeps `document` from being an in-toto Statement v1 with a Shipyard run's SLSA
    provenance v1 predicate; empty when there is none."""
    return _parsed(document)[1]


def _parsed(document: object) -> tuple[_Parsed | None, list[str]]:
    """`document` as the package's protobuf messages, which check field names and types (and
    timestamps), with what keeps it from being valid: its `Statement.validate` checks the
    statement's rules, this module the SLSA fields a predicate requires and the subjects'
    sha256 digests."""
    if not isinstance(document, dict):
        return None, ["not a JSON object"]
    problems = [
        _wrong(field, document.get(field), expected)
        for field, expected in (("_type", STATEMENT_TYPE_URI), ("predicateType", PREDICATE_TYPE))
        if document.get(field) != expected
    ]
    if problems:
        return None, problems
    try:
        statement = json_format.ParseDict(document, statement_pb2.Statement())
        Statement.copy_from_pb(statement).validate()
        provenance = json_format.ParseDict(document["predicate"], provenance_pb2.Provenance())
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as error:
        reason = str(error).splitlines()[0].rstrip(".") if str(error) else type(error).__name__
        return None, [f"not an in-toto Statement v1 with SLSA provenance v1: {reason}"]
    problems = _provenance_problems(provenance) + _subject_problems(statement)
    return _Parsed(statement, provenance), problems


def _wrong(field: str, value: object, expected: str) -> str:
    if value is None or value == "":
        return f"{field} is missing"
    shown = evidence.printable(json.dumps(value, ensure_ascii=False))
    shown = shown if len(shown) <= 80 else shown[:79] + "…"
    return f"{field} is {shown}, not {expected}"


def _provenance_problems(provenance: Any) -> list[str]:
    """The SLSA v1 fields the predicate requires, and each resource descriptor's rule."""
    definition, details = provenance.build_definition, provenance.run_details
    problems = []
    if definition.build_type != BUILD_TYPE:
        problems.append(_wrong("buildType", definition.build_type, BUILD_TYPE))
    if not definition.HasField("external_parameters"):
        problems.append("buildDefinition.externalParameters is missing")
    if not details.builder.id:
        problems.append("runDetails.builder.id is missing")
    if not details.metadata.invocation_id:
        problems.append("runDetails.metadata.invocationId is missing")
    for where, items in (
        ("resolvedDependencies", definition.resolved_dependencies),
        ("byproducts", details.byproducts),
    ):
        for index, item in enumerate(items):
            try:
                ResourceDescriptor.copy_from_pb(item).validate()
            except ValueError as error:
                problems.append(f"{where}[{index}]: {error}")
    return problems


def _subject_problems(parsed: Any) -> list[str]:
    return [
        f"subject {subject.name or index}: no sha256 digest (64 lower-case hex digits)"
        for index, subject in enumerate(parsed.subject)
        if not _SHA256.fullmatch(subject.digest.get("sha256", ""))
    ]
