"""`shipyard.scan`: real files in a real git repository, random secrets made per test."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
from detect_secrets.plugins.aws import AWSKeyDetector

from shipyard.errors import StepFailed, UsageError, exit_code_for
from shipyard.scan import (
    Finding,
    ScanResult,
    format_findings,
    scan,
    to_sarif,
    tracked_files,
    write_baseline,
)

FAKE_GITLEAKS = Path(__file__).parent / "fakes" / "gitleaks"
ALPHANUMERIC = string.ascii_letters + string.digits
_random = random.SystemRandom()


# Distinct characters keep each value's entropy well above detect-secrets' limits, so the
# rules that fire do not depend on the draw.
def aws_key() -> str:
    return "AKIA" + "".join(_random.sample(string.ascii_uppercase + "234567", 16))


def github_token() -> str:
    return "ghp_" + "".join(_random.sample(ALPHANUMERIC, 36))


def base64_password() -> str:
    # It starts with a letter or digit (detect-secrets' keyword rule skips values that start
    # with "+" or "/"), and no 44 word characters in a row (that would be an IBM IAM key).
    characters = _random.sample(ALPHANUMERIC, 46)
    characters.insert(20, "+")
    characters.insert(30, "/")
    return "".join(characters)


def gcp_key() -> str:
    return "AIza" + "".join(_random.sample(ALPHANUMERIC, 35))


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def write(root: Path, path: str, *lines: str) -> Path:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


class Project:
    """A git repository with secrets in a tracked file; `secrets` holds their values."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.secrets = {"aws": aws_key(), "github": github_token(), "password": base64_password()}
        git(root, "init", "-q", ".")
        write(root, "README.md", "# demo")
        write(
            root,
            "app/settings.py",
            '"""Settings."""',
            f'AWS_ACCESS_KEY_ID = "{self.secrets["aws"]}"',
            f'GITHUB_TOKEN = "{self.secrets["github"]}"',
            f'password = "{self.secrets["password"]}"',
        )
        self.track()

    def add(self, path: str, *lines: str, track: bool = True) -> None:
        write(self.root, path, *lines)
        if track:
            self.track()

    def track(self) -> None:
        git(self.root, "add", "-A", "-f", ".")

    def leaked(self, text: str) -> list[str]:
        return [name for name, value in self.secrets.items() if value in text]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


@pytest.fixture
def no_gitleaks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PATH with git and nothing else, so no gitleaks either."""
    bin_dir = tmp_path.parent / f"{tmp_path.name}-git-only-bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git") or "git")
    monkeypatch.setenv("PATH", str(bin_dir))


@pytest.fixture(params=["fake", "real"])
def gitleaks_on_path(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    """`gitleaks` on PATH: the fake, or the real binary named by SHIPYARD_REAL_GITLEAKS."""
    binary = FAKE_GITLEAKS
    if request.param == "real":
        real = os.environ.get("SHIPYARD_REAL_GITLEAKS")
        if not real:
            pytest.skip("SHIPYARD_REAL_GITLEAKS is not set to a gitleaks binary")
        binary = Path(real)
    bin_dir = tmp_path.parent / f"{tmp_path.name}-bin"
    bin_dir.mkdir()
    (bin_dir / "gitleaks").symlink_to(binary)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return request.param


def located(result: ScanResult) -> set[tuple[str, int, str]]:
    return {(f.path, f.line, f.rule) for f in result.findings}


# --- what is found -----------------------------------------------------------------------


@pytest.mark.usefixtures("no_gitleaks")
def test_finds_each_secret_at_its_path_line_and_rule(project: Project) -> None:
    result = scan(project.root)

    assert located(result) == {
        ("app/settings.py", 2, "aws-access-key"),
        ("app/settings.py", 3, "github-token"),
        ("app/settings.py", 3, "base64-high-entropy-string"),
        ("app/settings.py", 4, "secret-keyword"),
        ("app/settings.py", 4, "base64-high-entropy-string"),
    }
    assert result.engines == ("detect-secrets",)
    assert result.files_scanned == 2
    assert result.allowlisted == 0
    aws = next(f for f in result.findings if f.rule == "aws-access-key")
    assert aws.engine == "detect-secrets"
    assert aws.fingerprint == hashlib.sha1(project.secrets["aws"].encode()).hexdigest()
    assert list(result.findings) == sorted(result.findings, key=lambda f: (f.path, f.line, f.rule))


def test_untracked_files_are_not_scanned_in_a_git_repo(project: Project) -> None:
    project.add("scratch.py", f'token = "{github_token()}"', track=False)

    assert "scratch.py" not in tracked_files(project.root)
    assert {f.path for f in scan(project.root, use_gitleaks=False).findings} == {"app/settings.py"}


def test_evidence_dirs_and_baseline_are_never_scanned(project: Project) -> None:
    for path in ("artifacts/a/reports/r/log.txt", "feedback/n.md", ".shipyard/state.json"):
        project.add(path, f'key = "{aws_key()}"')
    project.add(".secrets.baseline", "{}")
    project.add("custom.baseline", "{}")

    files = tracked_files(project.root, baseline=project.root / "custom.baseline")

    assert files == ["README.md", "app/settings.py"]


def test_outside_git_the_tree_is_walked_without_tool_dirs(tmp_path: Path) -> None:
    for path in ("src/x.py", ".venv/lib/y.py", "node_modules/z.js", "a/__pycache__/m.pyc"):
        write(tmp_path, path, "pass")
    write(tmp_path, ".git/config", "[core]")
    write(tmp_path, "artifacts/log.txt", "x")
    (tmp_path / "link.py").symlink_to(tmp_path / "src" / "x.py")

    assert tracked_files(tmp_path) == ["src/x.py"]


CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n# a cache: https://bford.info/cachedir/"
)


@pytest.mark.usefixtures("no_gitleaks")
def test_outside_git_a_folder_tagged_as_a_cache_is_skipped(tmp_path: Path) -> None:
    write(tmp_path, ".ruff_cache/CACHEDIR.TAG", CACHEDIR_TAG)
    write(tmp_path, ".ruff_cache/0.5/123", f'token = "{github_token()}"')
    write(tmp_path, "build/cache/CACHEDIR.TAG", CACHEDIR_TAG)
    write(tmp_path, "app.py", "pass")
    # not starting with the signature, a file of that name is scanned like any other: the
    # signature's hex reads as a high-entropy string (what the scan reported of every cache)
    write(tmp_path, "notes/CACHEDIR.TAG", "# not a tag", CACHEDIR_TAG)

    assert tracked_files(tmp_path) == ["app.py", "notes/CACHEDIR.TAG"]
    assert located(scan(tmp_path)) == {("notes/CACHEDIR.TAG", 2, "hex-high-entropy-string")}


def test_tracked_but_deleted_files_are_skipped(project: Project) -> None:
    project.add("gone.py", f'token = "{github_token()}"')
    (project.root / "gone.py").unlink()

    assert "gone.py" not in tracked_files(project.root)
    assert scan(project.root, use_gitleaks=False).files_scanned == 2


def test_pragma_allowlist_comment_is_honoured(project: Project) -> None:
    project.add(
        "app/fixtures.py",
        f'EXAMPLE_KEY = "{aws_key()}"  # pragma: allowlist secret',
        "# pragma: allowlist nextline secret",
        f'password = "{base64_password()}"',
    )

    assert {f.path for f in scan(project.root, use_gitleaks=False).findings} == {"app/settings.py"}


def test_a_yaml_file_detect_secrets_cannot_parse_is_still_scanned(project: Project) -> None:
    # PyYAML reads 2024-13-01 as a date and raises ValueError inside detect-secrets.
    project.add("deploy.yaml", "released: 2024-13-01", f"password: {base64_password()}")

    assert ("deploy.yaml", 2, "secret-keyword") in located(scan(project.root, use_gitleaks=False))


# --- output ------------------------------------------------------------------------------


def test_format_findings_is_path_line_rule_without_values(project: Project) -> None:
    lines = format_findings(scan(project.root, use_gitleaks=False))

    assert lines == [
        "app/settings.py:2: aws-access-key",
        "app/settings.py:3: base64-high-entropy-string",
        "app/settings.py:3: github-token",
        "app/settings.py:4: base64-high-entropy-string",
        "app/settings.py:4: secret-keyword",
    ]
    assert project.leaked("\n".join(lines)) == []


def test_sarif_has_the_required_fields_and_no_secret(project: Project) -> None:
    project.add("docs/my notes.py", f'password = "{base64_password()}"')
    result = scan(project.root, use_gitleaks=False)

    sarif = to_sarif(result)

    assert_valid_sarif(sarif)
    assert project.leaked(json.dumps(sarif)) == []
    run = sarif["runs"][0]
    assert run["automationDetails"] == {"id": "secret-scan/"}
    assert run["tool"]["driver"]["name"] == "shipyard-scan"
    assert [r["ruleId"] for r in run["results"]] == [f.rule for f in result.findings]
    first = run["results"][0]
    assert first["message"]["text"] == "aws-access-key detected a secret (value redacted)."
    assert first["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "app/settings.py"},
        "region": {"startLine": 2},
    }
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]
    }
    assert "docs/my%20notes.py" in uris


def test_sarif_of_a_clean_scan_is_valid_and_empty(tmp_path: Path) -> None:
    write(tmp_path, "ok.py", "print('hello')")

    sarif = to_sarif(scan(tmp_path, use_gitleaks=False))

    assert_valid_sarif(sarif)
    assert sarif["runs"][0]["results"] == []


def assert_valid_sarif(sarif: dict) -> None:
    """The fields GitHub code scanning requires (reference §3.6), checked one by one."""
    assert sarif["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert sarif["version"] == "2.1.0"
    (run,) = sarif["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert len({rule["id"] for rule in rules}) == len(rules)
    for rule in rules:
        for key in ("shortDescription", "fullDescription", "help"):
            assert isinstance(rule[key]["text"], str) and rule[key]["text"]
        assert rule["defaultConfiguration"] == {"level": "error"}
        assert "security" in rule["properties"]["tags"]
        assert 0.1 <= float(rule["properties"]["security-severity"]) <= 10.0
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] == "error"
        assert result["message"]["text"].endswith("(value redacted).")
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert not physical["artifactLocation"]["uri"].startswith("/")
        assert physical["region"]["startLine"] >= 1
        assert set(physical) == {"artifactLocation", "region"}  # no snippet, ever
        assert all(isinstance(v, str) for v in result["partialFingerprints"].values())


# --- baseline ----------------------------------------------------------------------------


def test_baseline_round_trip_accepts_every_current_finding(project: Project) -> None:
    first = scan(project.root, use_gitleaks=False)

    accepted = write_baseline(project.root, Path(".secrets.baseline"), first.findings)
    again = scan(project.root, baseline=Path(".secrets.baseline"), use_gitleaks=False)

    assert accepted == len(first.findings) == 5
    assert again.findings == ()
    assert again.allowlisted == accepted
    text = (project.root / ".secrets.baseline").read_text()
    assert project.leaked(text) == []
    document = json.loads(text)
    assert {"version", "plugins_used", "filters_used", "results", "generated_at"} <= set(document)
    entry = document["results"]["app/settings.py"][0]
    assert entry == {
        "type": "AWS Access Key",
        "filename": "app/settings.py",
        "hashed_secret": hashlib.sha1(project.secrets["aws"].encode()).hexdigest(),
        "is_verified": False,
        "line_number": 2,
    }


def test_detect_secrets_hook_accepts_the_written_baseline(project: Project) -> None:
    write_baseline(project.root, Path(".secrets.baseline"), scan(project.root, use_gitleaks=False))
    hook = Path(sys.executable).parent / "detect-secrets-hook"

    checked = subprocess.run(
        [str(hook), "--baseline", ".secrets.baseline", "app/settings.py"],
        cwd=project.root,
        capture_output=True,
        text=True,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout


def test_a_secret_added_after_the_baseline_is_still_found(project: Project) -> None:
    baseline = project.root / ".secrets.baseline"
    write_baseline(project.root, baseline, scan(project.root, use_gitleaks=False).findings)
    project.add("app/new.py", '"""New."""', f'AWS_ACCESS_KEY_ID = "{aws_key()}"')

    result = scan(project.root, baseline=baseline, use_gitleaks=False)

    assert located(result) == {("app/new.py", 2, "aws-access-key")}
    assert result.allowlisted == 5


def test_a_missing_baseline_accepts_nothing(project: Project) -> None:
    result = scan(project.root, baseline=project.root / "nope.baseline", use_gitleaks=False)

    assert len(result.findings) == 5
    assert result.allowlisted == 0


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "invalid JSON"),
        ("[]", "no 'results' object"),
        ('{"results": {"a.py": "x"}}', "results['a.py'] is not a list of secrets"),
        ('{"results": {}, "gitleaks_fingerprints": []}', "'gitleaks_fingerprints' is not"),
    ],
)
def test_a_corrupt_baseline_is_a_usage_error(project: Project, content: str, why: str) -> None:
    baseline = project.root / ".secrets.baseline"
    baseline.write_text(content)

    with pytest.raises(UsageError) as raised:
        scan(project.root, baseline=baseline, use_gitleaks=False)

    assert raised.value.message.startswith(f"{baseline}: not a detect-secrets baseline (")
    assert why in raised.value.message
    assert exit_code_for(raised.value) == 2


# --- gitleaks ----------------------------------------------------------------------------


def test_gitleaks_findings_merge_with_detect_secrets(
    project: Project, gitleaks_on_path: str
) -> None:
    project.add("docs/maps.md", "# Maps", "", f"The maps key is {gcp_key()} for now.")

    result = scan(project.root)

    assert result.engines == ("detect-secrets", "gitleaks")
    gitleaks_only = [f for f in result.findings if f.engine == "gitleaks"]
    assert gitleaks_only == [
        Finding(
            path="docs/maps.md",
            line=3,
            rule="gcp-api-key",
            engine="gitleaks",
            fingerprint=hashlib.sha256(b"docs/maps.md:gcp-api-key:3").hexdigest(),
        )
    ]
    # gitleaks also flags lines 2-4 of settings.py; detect-secrets' names win there.
    assert {f.engine for f in result.findings if f.path == "app/settings.py"} == {"detect-secrets"}
    assert project.leaked(json.dumps(to_sarif(result))) == []


def test_gitleaks_paths_relative_to_a_relative_root(
    project: Project, gitleaks_on_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add("docs/maps.md", f"key {gcp_key()}")
    monkeypatch.chdir(project.root.parent)

    result = scan(Path(project.root.name))

    assert ("docs/maps.md", 1, "gcp-api-key") in located(result)


def test_gitleaks_ignores_untracked_excluded_and_pragma_lines(
    project: Project, gitleaks_on_path: str
) -> None:
    project.add("artifacts/run/log.txt", f"key {gcp_key()}")
    project.add("docs/example.md", f"key {gcp_key()} <!-- pragma: allowlist secret -->")
    project.add("app/example.py", f'MAPS = "{gcp_key()}"  # pragma: allowlist secret')
    project.add("untracked.md", f"key {gcp_key()}", track=False)

    result = scan(project.root)

    assert {f.path for f in result.findings} == {"app/settings.py"}


def test_gitleaks_findings_round_trip_through_the_baseline(
    project: Project, gitleaks_on_path: str
) -> None:
    project.add("docs/maps.md", f"key {gcp_key()}")
    first = scan(project.root)

    write_baseline(project.root, Path(".secrets.baseline"), first.findings)
    again = scan(project.root, baseline=Path(".secrets.baseline"))

    assert again.findings == ()
    assert again.allowlisted == len(first.findings) == 6


def test_gitleaks_failure_is_a_failed_step(project: Project, gitleaks_on_path: str) -> None:
    project.add(".gitleaks.toml", "not [valid toml")

    with pytest.raises(StepFailed) as raised:
        scan(project.root)

    message = raised.value.message
    assert message.startswith("gitleaks failed: unable to load gitleaks config")
    assert "\x1b" not in message


@pytest.mark.usefixtures("no_gitleaks")
def test_gitleaks_is_used_only_when_on_path_or_asked(project: Project) -> None:
    assert scan(project.root).engines == ("detect-secrets",)

    with pytest.raises(StepFailed, match=r"^gitleaks failed: "):
        scan(project.root, use_gitleaks=True)


def test_use_gitleaks_false_skips_it_even_when_on_path(
    project: Project, gitleaks_on_path: str
) -> None:
    assert scan(project.root, use_gitleaks=False).engines == ("detect-secrets",)


@pytest.mark.usefixtures("no_gitleaks")
def test_detect_secrets_never_verifies_over_the_network(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    def verify(*_args: object, **_kwargs: object) -> None:  # the name detect-secrets looks up
        raise AssertionError("verify() would call AWS")

    monkeypatch.setattr(AWSKeyDetector, "verify", verify)

    assert ("app/settings.py", 2, "aws-access-key") in located(scan(project.root))


def test_a_yaml_bomb_is_read_as_plain_lines_and_its_secrets_are_still_found(
    tmp_path: Path,
) -> None:
    """detect-secrets' YAML transformer expands every alias: twelve levels of nine would
    never end. A YAML file with aliases is scanned line by line instead (in a process of its
    own here, so that a regression fails at the timeout rather than hanging the suite)."""
    levels = [f"l0: &l0 [{', '.join(['lol'] * 9)}]"]
    levels += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 12)]
    write(tmp_path, "bomb.yaml", *levels, f'token: "{github_token()}"')
    write(tmp_path, "plain.yaml", f'token: "{github_token()}"')
    program = (
        "import json, sys; from pathlib import Path; from shipyard.scan import scan;"
        " found = scan(Path(sys.argv[1]), use_gitleaks=False).findings;"
        " print(json.dumps(sorted([f.path, f.line, f.rule] for f in found)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(done.stdout)
    assert ["bomb.yaml", 13, "github-token"] in found and ["plain.yaml", 1, "github-token"] in found
    assert {(path, line) for path, line, _ in found} == {("bomb.yaml", 13), ("plain.yaml", 1)}
