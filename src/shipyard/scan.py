"""Secret scanning of a project's tracked files: detect-secrets, plus gitleaks when present.

No secret value leaves this module: a `Finding` holds a path, a line, a rule and a
fingerprint (a hash), and every output (text lines, SARIF, the baseline) is built from
those alone. See docs/scan.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from detect_secrets.core import baseline as detect_secrets_baseline
from detect_secrets.core import scan as detect_secrets_scan
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.core.potential_secret import PotentialSecret
from detect_secrets.core.secrets_collection import SecretsCollection
from detect_secrets.filters.allowlist import is_line_allowlisted
from detect_secrets.settings import default_settings
from detect_secrets.util.code_snippet import get_code_snippet

from shipyard import __version__
from shipyard.errors import StepFailed, UsageError

_FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # events only

DETECT_SECRETS = "detect-secrets"  # pragma: allowlist secret
GITLEAKS = "gitleaks"
DEFAULT_BASELINE = ".secrets.baseline"
# detect-secrets' own tools ignore unknown top-level keys, so gitleaks fingerprints live here.
GITLEAKS_BASELINE_KEY = "gitleaks_fingerprints"
EXCLUDED_TOP_DIRS = frozenset({"artifacts", "feedback", ".shipyard"})
SKIPPED_DIRS = frozenset({".git", ".venv", ".nox", "node_modules", "__pycache__"})
# A folder holding a file of this name that starts with this signature is a tool's cache
# (the Cache Directory Tagging spec, https://bford.info/cachedir/): ruff, pytest, mypy.
CACHEDIR_TAG = "CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
GITLEAKS_ARGS = ("dir", "--no-banner", "--redact", "--exit-code", "0", "-f", "json")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_HELP = (
    "Remove the value from the repository and rotate it. If it is not a secret, add "
    "`# pragma: allowlist secret` to the line or accept it with `shipyard scan --write-baseline`."
)
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_GITLEAKS_LOG_PREFIX = re.compile(r"^\d{1,2}:\d{2}[AP]M [A-Z]{3} ")  # "7:39AM FTL "


@dataclass(frozen=True)
class Finding:
    path: str  # POSIX path relative to the scanned root
    line: int
    rule: str  # a slug: "aws-access-key", "secret-keyword", "gcp-api-key", ...
    engine: str  # DETECT_SECRETS or GITLEAKS
    fingerprint: str  # detect-secrets' hashed_secret, or sha256 of gitleaks' fingerprint


@dataclass(frozen=True)
class ScanResult:
    findings: tuple[Finding, ...]  # sorted by path, line, rule; one engine per path+line
    files_scanned: int
    engines: tuple[str, ...]
    allowlisted: int  # findings the baseline suppressed


def tracked_files(root: Path, *, baseline: Path | None = None) -> list[str]:
    """The files a scan reads, as sorted POSIX paths relative to `root`.

    In a git work tree these are `git ls-files`; elsewhere a walk of the tree. Evidence
    directories, the baseline (relative to `root` unless absolute), symlinks and
    tracked-but-deleted files are left out.
    """
    candidates = _git_files(root)
    if candidates is None:
        candidates = _walk_files(root)
    excluded = _excluded_files(root, baseline)
    return sorted(
        path
        for path in candidates
        if not _is_excluded(path, excluded) and _is_regular_file(root / path)
    )


def scan(
    root: Path, *, baseline: Path | None = None, use_gitleaks: bool | None = None
) -> ScanResult:
    """Scan `root`'s tracked files; `use_gitleaks=None` means "if gitleaks is on PATH".

    A relative `baseline` is taken relative to `root`; a missing one accepts nothing.
    """
    baseline_path = None if baseline is None else root / baseline
    accepted = _load_baseline(baseline_path)
    files = tracked_files(root, baseline=baseline_path)
    findings = _detect_secrets_findings(root, files)
    engines: tuple[str, ...] = (DETECT_SECRETS,)
    if _wants_gitleaks(use_gitleaks):
        findings = _merge(findings, _gitleaks_findings(root, files))
        engines = (DETECT_SECRETS, GITLEAKS)
    kept = [f for f in findings if (f.path, f.fingerprint) not in accepted]
    return ScanResult(
        findings=tuple(sorted(kept, key=_finding_order)),
        files_scanned=len(files),
        engines=engines,
        allowlisted=len(findings) - len(kept),
    )


def format_findings(result: ScanResult) -> list[str]:
    """One `path:line: rule` line per finding; never the value."""
    return [f"{f.path}:{f.line}: {f.rule}" for f in result.findings]


def to_sarif(result: ScanResult) -> dict[str, Any]:
    """A SARIF 2.1.0 document for GitHub code scanning, without values or snippets."""
    rules = sorted({f.rule for f in result.findings})
    rule_index = {rule: index for index, rule in enumerate(rules)}
    driver = {
        "name": "shipyard-scan",
        "semanticVersion": __version__,
        "rules": [_sarif_rule(rule) for rule in rules],
    }
    run = {
        "tool": {"driver": driver},
        "automationDetails": {"id": "secret-scan/"},
        "results": [_sarif_result(f, rule_index[f.rule]) for f in result.findings],
        "properties": {
            "engines": list(result.engines),
            "filesScanned": result.files_scanned,
            "allowlisted": result.allowlisted,
        },
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def write_baseline(root: Path, baseline: Path, accept: ScanResult | Iterable[Finding]) -> int:
    """Write a detect-secrets baseline accepting `accept`'s findings; return how many.

    Pass a scan made without a baseline, or what the old baseline accepted is dropped.
    A relative `baseline` is taken relative to `root`.
    """
    findings = accept.findings if isinstance(accept, ScanResult) else tuple(accept)
    collection = SecretsCollection()
    for finding in findings:
        if finding.engine == DETECT_SECRETS:
            collection[finding.path].add(_as_potential_secret(finding))
    with default_settings():
        document = detect_secrets_baseline.format_for_output(collection)
    document[GITLEAKS_BASELINE_KEY] = _gitleaks_fingerprints(findings)
    (root / baseline).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return len(findings)


# --- which files -------------------------------------------------------------------------


def _git_files(root: Path) -> list[str] | None:
    """Tracked paths relative to `root`, or None when `root` is not in a git work tree."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=False
        )
    except OSError:  # no git installed: treat like a plain directory
        return None
    if listing.returncode != 0:
        return None
    return [os.fsdecode(path) for path in listing.stdout.split(b"\0") if path]


def _walk_files(root: Path) -> list[str]:
    found: list[str] = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = [
            d
            for d in subdirectories
            if d not in SKIPPED_DIRS and not _is_tagged_cache(Path(directory, d))
        ]
        relative = Path(directory).relative_to(root)
        found.extend((relative / name).as_posix() for name in names)
    return found


def _is_tagged_cache(folder: Path) -> bool:
    """`folder` holds a CACHEDIR.TAG, a regular file that starts with the spec's signature."""
    tag = folder / CACHEDIR_TAG
    if tag.is_symlink() or not tag.is_file():
        return False
    try:
        with tag.open("rb") as opened:
            return opened.read(len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    except OSError:
        return False


def _excluded_files(root: Path, baseline: Path | None) -> set[str]:
    excluded = {DEFAULT_BASELINE}
    relative = None if baseline is None else _relative_to_root(root / baseline, root)
    if relative is not None:
        excluded.add(relative)
    return excluded


def _relative_to_root(path: Path, root: Path) -> str | None:
    """`path` (a relative one is taken from the working directory) as a POSIX path
    relative to `root`, or None when it lies outside `root`."""
    resolved, top = path.resolve(), root.resolve()
    return resolved.relative_to(top).as_posix() if resolved.is_relative_to(top) else None


def _is_excluded(path: str, excluded: set[str]) -> bool:
    return path in excluded or path.split("/", 1)[0] in EXCLUDED_TOP_DIRS


def _is_regular_file(path: Path) -> bool:
    # Symlinks are skipped: they may point outside the tree (gitleaks skips them too).
    return path.is_file() and not path.is_symlink()


# --- detect-secrets ----------------------------------------------------------------------


def _detect_secrets_findings(root: Path, files: list[str]) -> list[Finding]:
    # One scan_file per file, in this process: scan_files' multiprocessing pool forks
    # (unsafe beside the heartbeat thread) and is slower for a project-sized tree.
    collection = SecretsCollection(root=str(root))
    with default_settings():  # no verification filter, so no network calls
        for path in files:
            _scan_file(collection, root, path)
    return [
        Finding(
            path=path,
            line=secret.line_number,
            rule=_slug(secret.type),
            engine=DETECT_SECRETS,
            fingerprint=secret.secret_hash,
        )
        for path, secret in collection
    ]


def _scan_file(collection: SecretsCollection, root: Path, path: str) -> None:
    if _has_aliases(root / path):  # see _has_aliases
        _scan_plain_lines(collection, root, path)
        return
    try:
        collection.scan_file(path)
    except Exception:  # a transformer that gave up: see _scan_plain_lines
        _scan_plain_lines(collection, root, path)


def _has_aliases(path: Path) -> bool:
    """Whether `path` is YAML with an alias (`*name`) in it. detect-secrets' YAML transformer
    expands every alias as it walks the document, so a billion-laughs file (nine lists of nine
    aliases) took it 89 s, and one level more would never end; such a file is scanned as plain
    lines instead, which still sees every value where it is written, at its anchor. Reading the
    events expands nothing."""
    if path.suffix.lower() not in {".yaml", ".yml"}:
        return False
    try:
        with path.open("rb") as stream:
            events = yaml.parse(stream, Loader=_FAST_SAFE_LOADER)
            return any(isinstance(event, yaml.AliasEvent) for event in events)
    except (OSError, ValueError, yaml.YAMLError):
        return False  # unreadable or not YAML: detect-secrets' own handling applies


def _scan_plain_lines(collection: SecretsCollection, root: Path, path: str) -> None:
    """Scan the file's lines as they are, as detect-secrets does when a transformer gives up.

    It does so only for its own ParsingError; its YAML transformer lets PyYAML's ValueError
    for a date like `2024-13-01` escape, which would otherwise end the whole scan. A copy named
    `.txt`, which no transformer reads, goes through detect-secrets' public `scan_file`.
    """
    with tempfile.TemporaryDirectory(prefix="shipyard-scan-") as folder:
        copy = Path(folder) / f"{Path(path).name}.txt"
        shutil.copyfile(root / path, copy)
        found = list(detect_secrets_scan.scan_file(str(copy)))
    for secret in found:
        secret.filename = path
    collection[path].update(found)


def _slug(secret_type: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", secret_type.lower()).strip("-")


@cache
def _secret_types() -> dict[str, str]:
    """detect-secrets' secret types ("AWS Access Key") by their slug ("aws-access-key")."""
    return {
        _slug(secret_type): secret_type for secret_type in get_mapping_from_secret_type_to_class()
    }


def _as_potential_secret(finding: Finding) -> PotentialSecret:
    return PotentialSecret.load_secret_from_dict(
        {
            "type": _secret_types().get(finding.rule, finding.rule),
            "filename": finding.path,
            "hashed_secret": finding.fingerprint,
            "is_verified": False,
            "line_number": finding.line,
        }
    )


# --- gitleaks ----------------------------------------------------------------------------


def _wants_gitleaks(use_gitleaks: bool | None) -> bool:
    if use_gitleaks is None:
        return shutil.which(GITLEAKS) is not None
    return use_gitleaks


def _gitleaks_findings(root: Path, files: list[str]) -> list[Finding]:
    tracked = set(files)
    findings = (_from_gitleaks_entry(entry, root) for entry in _run_gitleaks(root))
    return _without_pragma_allowlisted(
        root, [f for f in findings if f is not None and f.path in tracked]
    )


def _run_gitleaks(root: Path) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="shipyard-gitleaks-") as scratch:
        report = Path(scratch) / "report.json"
        command = [GITLEAKS, *GITLEAKS_ARGS, "-r", str(report), str(root)]
        try:
            ran = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                check=False,
            )
        except OSError as error:
            raise StepFailed(f"gitleaks failed: {error}") from error
        if ran.returncode != 0:
            raise StepFailed(f"gitleaks failed: {_first_line(ran.stderr, ran.returncode)}")
        return _read_gitleaks_report(report)


def _first_line(stderr: str, returncode: int) -> str:
    """The first line gitleaks wrote to stderr, without colours or the log prefix."""
    lines = [line.strip() for line in _ANSI_ESCAPE.sub("", stderr).splitlines()]
    first = next((line for line in lines if line), f"exit status {returncode}")
    return _GITLEAKS_LOG_PREFIX.sub("", first)


def _read_gitleaks_report(report: Path) -> list[dict[str, Any]]:
    try:
        entries = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise StepFailed(f"gitleaks failed: unreadable report ({error})") from error
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise StepFailed("gitleaks failed: unreadable report (not a list of findings)")
    return entries


def _from_gitleaks_entry(entry: dict[str, Any], root: Path) -> Finding | None:
    """The finding, or None when gitleaks reports a file outside `root`."""
    try:
        file, rule, line = str(entry["File"]), str(entry["RuleID"]), int(entry["StartLine"])
        raw_fingerprint = str(entry["Fingerprint"])
    except (KeyError, TypeError, ValueError) as error:
        raise StepFailed(f"gitleaks failed: unreadable report (bad finding: {error})") from error
    # gitleaks joins each file onto the target as given: absolute, or relative to the cwd.
    path = _relative_to_root(Path(file), root)
    if path is None:
        return None
    # gitleaks' fingerprint is "<File>:<RuleID>:<StartLine>"; with File made relative the
    # fingerprint (and so the baseline) does not depend on where the checkout lives.
    fingerprint = raw_fingerprint.replace(file, path, 1)
    return Finding(
        path=path,
        line=line,
        rule=rule,
        engine=GITLEAKS,
        fingerprint=hashlib.sha256(fingerprint.encode()).hexdigest(),
    )


def _without_pragma_allowlisted(root: Path, findings: list[Finding]) -> list[Finding]:
    """Honour detect-secrets' `pragma: allowlist secret` for gitleaks' findings too."""
    lines_by_path: dict[str, list[str]] = {}
    kept: list[Finding] = []
    for finding in findings:
        if finding.path not in lines_by_path:
            text = (root / finding.path).read_text(encoding="utf-8", errors="replace")
            lines_by_path[finding.path] = text.splitlines()
        if not _is_pragma_allowlisted(finding, lines_by_path[finding.path]):
            kept.append(finding)
    return kept


def _is_pragma_allowlisted(finding: Finding, lines: list[str]) -> bool:
    if not 1 <= finding.line <= len(lines):
        return False
    context = get_code_snippet(lines, finding.line, lines_of_context=1)
    return is_line_allowlisted(finding.path, lines[finding.line - 1], context)


def _merge(primary: list[Finding], secondary: list[Finding]) -> list[Finding]:
    """`primary` plus those of `secondary` on a line `primary` has not flagged."""
    flagged = {(f.path, f.line) for f in primary}
    return primary + [f for f in secondary if (f.path, f.line) not in flagged]


def _finding_order(finding: Finding) -> tuple[str, int, str, str]:
    return (finding.path, finding.line, finding.rule, finding.engine)


# --- baseline ----------------------------------------------------------------------------


def _load_baseline(path: Path | None) -> frozenset[tuple[str, str]]:
    """The (filename, fingerprint) pairs the baseline at `path` accepts."""
    if path is None or not path.exists():
        return frozenset()
    document = _read_baseline(path)
    accepted = {
        (filename, str(secret["hashed_secret"]))
        for filename, secrets in document["results"].items()
        for secret in secrets
    }
    accepted.update(
        (filename, fingerprint)
        for filename, fingerprints in document.get(GITLEAKS_BASELINE_KEY, {}).items()
        for fingerprint in fingerprints
    )
    return frozenset(accepted)


def _read_baseline(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise _bad_baseline(path, error.strerror or str(error)) from error
    except ValueError as error:
        raise _bad_baseline(path, f"invalid JSON: {error}") from error
    problem = _baseline_problem(document)
    if problem is not None or not isinstance(document, dict):
        raise _bad_baseline(path, problem or "expected a JSON object")
    return document


def _baseline_problem(document: Any) -> str | None:
    if not isinstance(document, dict) or not isinstance(document.get("results"), dict):
        return "no 'results' object"
    for filename, secrets in document["results"].items():
        if not isinstance(secrets, list) or not all(
            isinstance(s, dict) and isinstance(s.get("hashed_secret"), str) for s in secrets
        ):
            return f"results[{filename!r}] is not a list of secrets with a 'hashed_secret'"
    fingerprints = document.get(GITLEAKS_BASELINE_KEY, {})
    if not isinstance(fingerprints, dict) or not all(
        isinstance(v, list) and all(isinstance(f, str) for f in v) for v in fingerprints.values()
    ):
        return f"'{GITLEAKS_BASELINE_KEY}' is not an object of fingerprint lists"
    return None


def _bad_baseline(path: Path, why: str) -> UsageError:
    return UsageError(f"{path}: not a detect-secrets baseline ({why})")


def _gitleaks_fingerprints(findings: Iterable[Finding]) -> dict[str, list[str]]:
    by_path: dict[str, list[str]] = {}
    for finding in sorted(findings, key=_finding_order):
        if finding.engine == GITLEAKS:
            by_path.setdefault(finding.path, []).append(finding.fingerprint)
    return by_path


# --- SARIF -------------------------------------------------------------------------------


def _sarif_rule(rule: str) -> dict[str, Any]:
    title = _secret_types().get(rule, rule)
    return {
        "id": rule,
        "shortDescription": {"text": title},
        "fullDescription": {"text": f"{title}: a value that looks like a secret is committed."},
        "help": {"text": SARIF_HELP},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["security", "secret"], "security-severity": "8.0"},
    }


def _sarif_result(finding: Finding, rule_index: int) -> dict[str, Any]:
    location = {
        "artifactLocation": {"uri": quote(finding.path)},
        "region": {"startLine": finding.line},
    }
    return {
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": "error",
        "message": {"text": f"{finding.rule} detected a secret (value redacted)."},
        "locations": [{"physicalLocation": location}],
        "partialFingerprints": {"secretFingerprint/v1": finding.fingerprint},
        "properties": {"engine": finding.engine},
    }
