"""shipyard.config: the schema, its one-line errors, and how the file is found."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import cli_env

from shipyard import targets
from shipyard.config import (
    Config,
    Environment,
    Smoke,
    Step,
    document,
    find_config,
    load,
    load_config,
    log_name,
    parse_duration,
    schema,
)
from shipyard.config import cli as config_cli
from shipyard.config.checks import MAX_DURATION_SECONDS
from shipyard.config.document import MAX_VALUES
from shipyard.config.loading import MAX_CONFIG_BYTES
from shipyard.errors import ConfigError, ExitCode

CONFIGS = Path(__file__).parent / "configs"
BAD = CONFIGS / "bad"
GOOD = CONFIGS / "good"

# Each file in tests/configs/bad/ is copied to <tmp>/shipyard.yaml and loaded from <tmp>.
TOO_MANY_VALUES = (
    "the file holds more than 250,000 values, counting each alias as all it repeats (the limit)"
)
BUILD_ARTIFACT = "shipyard.yaml:5: steps.build.artifact"
NOT_A_GLOB_INSIDE = (
    "expected a file glob relative to the project root, without '..' (like dist/app-*.tar.gz), got"
)
BAD_CONFIGS: dict[str, str] = {
    "agent_bad_name": "shipyard.yaml:2: agent: expected a folder name (letters, digits, '.',"
    " '_' and '-', starting with a letter or digit), got 'dev ops'",
    "alias_billion_laughs": f"shipyard.yaml:8: {TOO_MANY_VALUES}",
    "alias_merge_key_bomb": f"shipyard.yaml:10: {TOO_MANY_VALUES}",
    "artifact_absolute": f"{BUILD_ARTIFACT}: {NOT_A_GLOB_INSIDE} '/etc/passwd'",
    "artifact_leaves_root": f"{BUILD_ARTIFACT}: {NOT_A_GLOB_INSIDE} 'a/../../x'",
    "artifact_parent_dir": f"{BUILD_ARTIFACT}: {NOT_A_GLOB_INSIDE} '../x'",
    "cwd_escapes_root": "shipyard.yaml:5: steps.build.cwd: expected a relative directory inside"
    " the project root, got 'web/../../elsewhere'",
    "duplicate_key_nested": "shipyard.yaml:6: steps.lint.run: duplicate key (first defined on"
    " line 4)",
    "duplicate_key_top_level": "shipyard.yaml:5: steps: duplicate key (first defined on line 2)",
    "duration_arabic_indic_digit": "shipyard.yaml:2: heartbeat.interval: expected a duration like"
    " 30s, 500ms, 5m or 1h, got '\u0663s'",
    "duration_bare_number": "shipyard.yaml:3: steps.test.timeout: expected a duration like 30s,"
    " 500ms, 5m or 1h, got 30",
    "duration_negative": "shipyard.yaml:5: steps.test.grace: expected a duration greater than"
    " zero, got '-1s'",
    "duration_over_a_day": "shipyard.yaml:2: heartbeat.interval: expected a duration of at most"
    " 24h, got '3000000h'",
    "duration_with_space": "shipyard.yaml:3: steps.test.timeout: expected a duration like 30s,"
    " 500ms, 5m or 1h, got '10 s'",
    "duration_word": "shipyard.yaml:2: heartbeat.interval: expected a duration like 30s, 500ms,"
    " 5m or 1h, got 'fast'",
    "empty_file": "shipyard.yaml:1: no settings in the file (it needs at least 'version: 1')",
    "env_value_null": "shipyard.yaml:7: environments.staging.env.APP_ENV: expected a text value,"
    ' got an empty value; quote it: ""',
    "fly_without_app": "shipyard.yaml:3: environments.fly-staging: missing required key 'app'"
    " (target 'fly' needs the Fly app name)",
    "gate_undefined": "shipyard.yaml:5: gates[1]: undefined step 'lnit' (did you mean 'lint'?)",
    "invalid_yaml_tab": "shipyard.yaml:3: invalid YAML: found character '\\t' that cannot start"
    " any token (indent with spaces, not tabs)",
    "invalid_yaml_unclosed_bracket": "shipyard.yaml:3: invalid YAML: while parsing a flow"
    " sequence on line 2: expected ',' or ']', but got ':'",
    "local_without_start": "shipyard.yaml:3: environments.staging: missing required key 'start'"
    " (target 'local' needs the command that starts the server)",
    "log_names_collide": "shipyard.yaml:4: steps.test_ci: same log file as step 'test:ci'"
    " (test_ci.log); rename one of them",
    "max_unpacked_mib_zero": "shipyard.yaml:6: environments.staging.max_unpacked_mib: expected an"
    " integer of at least 1, got 0",
    "port_out_of_range": "shipyard.yaml:6: environments.staging.port: expected an integer from 1"
    " to 65535, got 70000",
    "retries_boolean": "shipyard.yaml:3: steps.lint.retries: expected an integer from 0 to 10,"
    " got yes (a boolean)",
    "retries_word": "shipyard.yaml:3: steps.lint.retries: expected an integer from 0 to 10, got"
    " 'three'",
    "run_blank_shorthand": "shipyard.yaml:3: steps.lint: expected a shell command, got '   '",
    "run_empty": "shipyard.yaml:4: steps.lint.run: expected a shell command, got ''",
    "secrets_bad_name": "shipyard.yaml:4: secrets[1]: expected an environment variable name"
    " (letters, digits and '_', not starting with a digit), got text (not shown: it may be a"
    " secret)",
    "top_level_list": "shipyard.yaml:1: expected a mapping of settings (version, steps, ...),"
    " got a list",
    "unknown_key_in_step": "shipyard.yaml:5: steps.lint.retry: unknown key (did you mean"
    " 'retries'?)",
    "unknown_key_top_level": "shipyard.yaml:2: stpes: unknown key (did you mean 'steps'?)",
    "unknown_key_typo": "shipyard.yaml:10: environments.staging.smoke.timout: unknown key (did"
    " you mean 'timeout'?)",
    "version_2": "shipyard.yaml:1: version: unsupported version 2 (this shipyard reads version 1)",
}

# More broken configs, checked in process only (the CLI path is the same; see the corpus).
STAGING = "version: 1\nenvironments:\n  staging: {target: local, start: serve, %s}\n"
MORE_BAD_CONFIGS: dict[str, tuple[str, str]] = {
    "comments-only": (
        "# nothing yet\n",
        "1: no settings in the file (it needs at least 'version: 1')",
    ),
    "version-missing": ("agent: devops\n", "1: missing required key 'version' (add 'version: 1')"),
    "version-text": ('version: "1"\n', "1: version: expected the number 1, got '1'"),
    "steps-list": (
        "version: 1\nsteps: [lint]\n",
        "2: steps: expected a mapping of step names to commands, got a list",
    ),
    "step-name": (
        "version: 1\nsteps:\n  run tests: pytest\n",
        "3: steps.run tests: invalid step name (use letters, digits, ':', '.', '_' and '-',"
        " starting with a letter or digit)",
    ),
    "key-not-text": (
        "version: 1\nsteps:\n  1: make\n",
        "3: steps.1: expected a text key (quote it), got 1",
    ),
    "run-missing": (
        "version: 1\nsteps:\n  lint: {timeout: 5m}\n",
        "3: steps.lint: missing required key 'run' (the shell command to run)",
    ),
    "step-number": (
        "version: 1\nsteps:\n  lint: 3\n",
        "3: steps.lint: expected a shell command or a mapping with 'run', got 3",
    ),
    "retries-11": (
        "version: 1\nsteps:\n  lint: {run: x, retries: 11}\n",
        "3: steps.lint.retries: expected an integer from 0 to 10, got 11",
    ),
    "cwd-absolute": (
        "version: 1\nsteps:\n  b: {run: make, cwd: /srv}\n",
        "3: steps.b.cwd: expected a relative directory inside the project root, got '/srv'",
    ),
    "env-name": (
        "version: 1\nsteps:\n  t: {run: x, env: {APP-ENV: a}}\n",
        "3: steps.t.env.APP-ENV: invalid name: expected an environment variable name"
        " (letters, digits and '_', not starting with a digit)",
    ),
    "env-boolean": (
        "version: 1\nsteps:\n  t: {run: x, env: {CI: on}}\n",
        '3: steps.t.env.CI: expected a text value, got on (a boolean); quote it: "on"',
    ),
    "env-list": (
        "version: 1\nsteps:\n  t: {run: x, env: {CI: [1]}}\n",
        "3: steps.t.env.CI: expected a text value, got a list",
    ),
    "gate-twice": (
        "version: 1\nsteps: {a: x}\ngates:\n  - a\n  - a\n",
        "5: gates[1]: already listed as gates[0]",
    ),
    "gate-no-steps": (
        "version: 1\ngates: [lint]\n",
        "2: gates[0]: undefined step 'lint' (none are defined)",
    ),
    "secret-twice": (
        "version: 1\nsecrets: [A, B, A]\n",
        "2: secrets[2]: already listed as secrets[0]",
    ),
    "heartbeat-text": (
        "version: 1\nheartbeat: 15s\n",
        "2: heartbeat: expected a mapping like {interval: 15s}, got '15s'",
    ),
    "heartbeat-key": (
        "version: 1\nheartbeat: {colour: red}\n",
        "2: heartbeat.colour: unknown key (expected one of: interval)",
    ),
    "environment-name": (
        "version: 1\nenvironments:\n  Staging: {target: local, start: x}\n",
        "3: environments.Staging: invalid environment name (use lowercase letters, digits,"
        " '_' and '-', starting with a letter or digit)",
    ),
    "target-missing": (
        "version: 1\nenvironments:\n  staging: {start: x}\n",
        "3: environments.staging: missing required key 'target' (which deploy target it uses)",
    ),
    "duplicate-in-flow": (
        STAGING % "target: fly",
        "3: environments.staging.target: duplicate key (first defined on line 3)",
    ),
    "target-typo": (
        "version: 1\nenvironments:\n  staging: {target: lcoal}\n",
        "3: environments.staging.target: unknown target 'lcoal' (did you mean 'local'?)",
    ),
    "target-unknown": (
        "version: 1\nenvironments:\n  staging: {target: k8s}\n",
        "3: environments.staging.target: unknown target 'k8s' (expected one of: local, fly)",
    ),
    "keep-releases-0": (
        STAGING % "keep_releases: 0",
        "3: environments.staging.keep_releases: expected an integer of at least 1, got 0",
    ),
    "status-text": (
        STAGING % "smoke: {expect_status: OK}",
        "3: environments.staging.smoke.expect_status: expected an integer from 100 to 599,"
        " got 'OK'",
    ),
    "smoke-path": (
        STAGING % "smoke: {path: health}",
        "3: environments.staging.smoke.path: expected a path starting with '/', got 'health'",
    ),
    "smoke-url": (
        STAGING % "smoke: {url: example.com}",
        "3: environments.staging.smoke.url: expected a URL starting with http:// or"
        " https://, got 'example.com'",
    ),
    "smoke-empty-contains": (
        STAGING % "smoke: {contains: ''}",
        "3: environments.staging.smoke.contains: expected the text the response must"
        " contain, got ''",
    ),
    "port-text": (
        STAGING % "port: http",
        "3: environments.staging.port: expected an integer from 1 to 65535, got 'http'",
    ),
    "archive-members-text": (
        STAGING % "max_archive_members: lots",
        "3: environments.staging.max_archive_members: expected an integer of at least 1,"
        " got 'lots'",
    ),
    "timeout-over-a-day": (
        "version: 1\nsteps:\n  t: {run: x, timeout: 1441m}\n",
        "3: steps.t.timeout: expected a duration of at most 24h, got '1441m'",
    ),
    "smoke-timeout-fullwidth-digit": (
        STAGING % "smoke: {timeout: \uff13s}",
        "3: environments.staging.smoke.timeout: expected a duration like 30s, 500ms, 5m or 1h,"
        " got '\uff13s'",
    ),
    "artifact-up-through-a-glob": (
        "version: 1\nsteps:\n  b: {run: make, artifact: dist/*/../x.tgz}\n",
        f"3: steps.b.artifact: {NOT_A_GLOB_INSIDE} 'dist/*/../x.tgz'",
    ),
    "alias-inside-its-anchor": (
        "version: 1\nx: &x [*x]\n",
        "2: invalid YAML: found unconstructable recursive node",
    ),
}


def place(name: str, directory: Path) -> Path:
    """Copy tests/configs/bad/<name>.yaml to <directory>/shipyard.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(BAD / f"{name}.yaml", directory / "shipyard.yaml"))


def write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "shipyard.yaml"
    path.write_text(text)
    return path


def checked(path: Path) -> Config:
    """The config and each environment's target options checked, as a command checks them."""
    config = load_config(path)
    targets.check(config)
    return config


def refusal(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        checked(path)
    assert caught.value.exit_code == ExitCode.USAGE
    return caught.value.message


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str]]:
    """`python -m shipyard.config shipyard.yaml` on every bad config: its `main`, run in this
    process (the test below runs the module as a program)."""
    return {name: check_here(place(name, tmp_path_factory.mktemp(name))) for name in BAD_CONFIGS}


def check_here(path: Path) -> tuple[int, str, str]:
    stdout, stderr, cwd = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(path.parent)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = config_cli.main([path.name])
    finally:
        os.chdir(cwd)
    return code, stdout.getvalue(), stderr.getvalue()


# --- The corpus of broken configs ------------------------------------------------------


def test_the_corpus_and_its_messages_match() -> None:
    assert sorted(path.stem for path in BAD.glob("*.yaml")) == sorted(BAD_CONFIGS)
    assert len(BAD_CONFIGS) >= 32


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_is_refused_with_its_message(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    place(name, tmp_path)
    assert refusal(Path("shipyard.yaml")) == BAD_CONFIGS[name]


@pytest.mark.parametrize("name", sorted(MORE_BAD_CONFIGS))
def test_more_bad_configs_are_refused_with_their_message(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, message = MORE_BAD_CONFIGS[name]
    monkeypatch.chdir(tmp_path)
    assert refusal(write(tmp_path, text)) == f"shipyard.yaml:{message}"


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_cli_refuses_bad_config_with_one_line_and_exit_2(
    name: str, cli_runs: dict[str, tuple[int, str, str]]
) -> None:
    exit_code, stdout, stderr = cli_runs[name]
    assert "Traceback" not in stdout + stderr
    assert (exit_code, stdout) == (2, "")
    assert stderr.splitlines() == [BAD_CONFIGS[name]]
    assert stderr.endswith("\n")


def test_cli_summarises_a_good_config_found_from_a_subdirectory(tmp_path: Path) -> None:
    shutil.copyfile(GOOD / "design_sketch.yaml", tmp_path / "shipyard.yaml")
    nested = tmp_path / "src" / "app"
    nested.mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "shipyard.config"],
        cwd=nested,
        env=cli_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "ok: 5 steps, 4 gates, 2 environments\n",
        "",
    )


def test_cli_names_a_missing_file_as_given_and_counts_in_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert config_cli.main(["nope.yaml"]) == 2
    assert capsys.readouterr().err == "nope.yaml: no such file\n"
    (tmp_path / "one.yaml").write_text(
        "version: 1\nsteps:\n  build: {run: make}\n"
        "environments:\n  staging: {target: local, start: serve}\n"
    )
    assert config_cli.main(["one.yaml"]) == 0
    assert capsys.readouterr().out == "ok: 1 step, 0 gates, 1 environment\n"


def test_message_names_the_file_absolutely_when_outside_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = place("version_2", tmp_path / "project")
    monkeypatch.chdir(tmp_path / "project")
    assert refusal(path).startswith("shipyard.yaml:1: ")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert (
        refusal(path) == f"{path}:1: version: unsupported version 2 (this shipyard reads version 1)"
    )


def test_message_names_the_file_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = place("version_2", tmp_path / "deploy" / "app")
    monkeypatch.chdir(tmp_path)
    assert refusal(path).startswith("deploy/app/shipyard.yaml:1: version: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "version: 1\nagent: " + "[" * 1000 + "\n",
            "shipyard.yaml:1: invalid YAML: nested too deeply",
        ),
        (
            "version: 1\nagent: !!int abc\n",
            "shipyard.yaml:2: invalid YAML: cannot read"
            " tag:yaml.org,2002:int value: invalid literal for int() with base 10: 'abc'",
        ),
        (
            "version: 1\nagent: !!bool \n",
            "shipyard.yaml:2: invalid YAML: cannot read tag:yaml.org,2002:bool value: ''",
        ),
        (
            "version: 1\nagent: \x01\n",
            "shipyard.yaml:2: invalid YAML: unacceptable character"
            " #x0001: special characters are not allowed",
        ),
        (
            "version: 1\nagent: !!python/object/apply:os.system [echo]\n",
            "shipyard.yaml:2:"
            " invalid YAML: could not determine a constructor for the tag"
            " 'tag:yaml.org,2002:python/object/apply:os.system'",
        ),
        (
            "version: 1\n---\nversion: 1\n",
            "shipyard.yaml:2: invalid YAML: expected a single"
            " document in the stream on line 1: but found another document",
        ),
        (
            'version: 1\nsteps:\n  "a\\nb": make\n',
            "shipyard.yaml:3: steps.'a\\nb': invalid step"
            " name (use letters, digits, ':', '.', '_' and '-', starting with a letter or digit)",
        ),
        (
            "version: 1\nagent: |\n  two\n  lines\n",
            "shipyard.yaml:2: agent: expected a folder"
            " name (letters, digits, '.', '_' and '-', starting with a letter or digit), got"
            " 'two\\nlines\\n'",
        ),
        (
            "version: 1\nagent: " + "x " * 60 + "\n",
            "shipyard.yaml:2: agent: expected a folder"
            " name (letters, digits, '.', '_' and '-', starting with a letter or digit), got"
            " 'x x x x x x x x x x x x x x x x x x x x …'",
        ),
    ],
    ids=[
        "deep-nesting",
        "bad-explicit-tag",
        "empty-explicit-tag",
        "control-char",
        "python-tag",
        "two-documents",
        "newline-in-key",
        "multiline-value",
        "long-value",
    ],
)
def test_odd_input_still_gives_one_line(
    text: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert refusal(write(tmp_path, text)) == message


def test_value_under_a_secret_looking_key_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(
        tmp_path, "version: 1\nsteps:\n  x:\n    run: make\n    env: {API_TOKEN: [hunter2]}\n"
    )
    assert refusal(path) == (
        "shipyard.yaml:5: steps.x.env.API_TOKEN: expected a text value, got a list"
    )
    write(tmp_path, "version: 1\nsecrets: [hunter2-value]\n")
    assert "hunter2" not in refusal(path)


def test_missing_and_unreadable_files_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert refusal(tmp_path / "gone.yaml") == "gone.yaml: no such file"
    (tmp_path / "utf16.yaml").write_bytes("version: 1\n".encode("utf-16"))
    assert refusal(tmp_path / "utf16.yaml") == "utf16.yaml: not UTF-8 text (byte 0)"


# --- Valid configs -----------------------------------------------------------------------


def test_design_sketch_loads_into_the_model() -> None:
    path = GOOD / "design_sketch.yaml"
    assert load_config(path) == Config(
        path=path.absolute(),
        root=GOOD.absolute(),
        version=1,
        agent="devops",
        heartbeat_interval=15.0,
        secrets=("FLY_API_TOKEN",),
        steps={
            "fmt": Step(name="fmt", run="ruff format --check ."),
            "lint": Step(name="lint", run="ruff check ."),
            "test:ci": Step(name="test:ci", run="pytest -q", timeout=1200.0),
            "scan": Step(name="scan", run="shipyard scan"),
            "build": Step(
                name="build", run="python -m build --outdir dist", artifact="dist/webapp-*.tar.gz"
            ),
        },
        gates=("fmt", "lint", "test:ci", "scan"),
        environments={
            "staging": Environment(
                name="staging",
                target="local",
                start="python -m webapp --port {port}",
                env={"APP_ENV": "staging"},
                smoke=Smoke(path="/", expect_status=200, timeout=30.0),
                options={"port": 8787, "keep_releases": 5},
            ),
            "fly-staging": Environment(
                name="fly-staging",
                target="fly",
                smoke=Smoke(url="https://webapp-staging.fly.dev/", expect_status=200, timeout=60.0),
                options={"app": "webapp-staging", "fly_config": "fly.toml"},
            ),
        },
    )


def test_every_key_is_read_with_its_value() -> None:
    config = load_config(GOOD / "every_key.yaml")
    assert (config.agent, config.heartbeat_interval) == ("ci-bot.2", 0.5)
    assert config.secrets == ("FLY_API_TOKEN", "_PRIVATE_KEY")
    test = Step(
        name="test",
        run="pytest -q\n",
        timeout=5400.0,
        retries=2,
        grace=10.0,
        cwd="services/api",
        env={
            "CI": "true",
            "WORKERS": "4",
            "RATIO": "1.10",
            "HEX": "0x1F",
            "RELEASED": "2024-13-01",
            "EMPTY": "",
        },
    )
    assert config.steps["test"] == test
    assert config.steps["test-slow"] == dataclasses.replace(test, name="test-slow", timeout=7200.0)
    assert config.steps["package"] == Step(name="package", run="make dist", artifact="dist/*.whl")
    assert config.environments["review_1"] == Environment(
        name="review_1",
        target="local",
        start="./serve --port {port}",
        env={"LOG_LEVEL": "debug"},
        smoke=Smoke(path="/healthz", expect_status=204, timeout=5.0, contains="ok"),
        max_unpacked_mib=512,
        max_archive_members=2000,
        options={"port": 9000, "keep_releases": 1},
    )
    local = targets.TARGETS["local"].checked_options(config, config.environments["review_1"])
    assert local == {"port": 9000, "keep_releases": 1}
    fly = targets.TARGETS["fly"].checked_options(config, config.environments["fly_review"])
    assert fly == {
        "app": "webapp-review",
        "fly_config": "deploy/fly.review.toml",
        "strategy": "bluegreen",
        "wait_timeout": 120.0,
        "read_timeout": 10.0,
        "flyctl": "tools/flyctl",
        "rollback_release_command": True,
    }


def test_unpack_limits_default_to_2_gib_and_100_000_members() -> None:
    staging = load_config(GOOD / "design_sketch.yaml").environments["staging"]
    assert (staging.max_unpacked_mib, staging.max_archive_members) == (2048, 100_000)


def test_file_order_is_kept() -> None:
    config = load_config(GOOD / "design_sketch.yaml")
    assert list(config.steps) == ["fmt", "lint", "test:ci", "scan", "build"]
    assert list(config.environments) == ["staging", "fly-staging"]
    config = load_config(GOOD / "every_key.yaml")
    assert list(config.steps["test"].env) == ["CI", "WORKERS", "RATIO", "HEX", "RELEASED", "EMPTY"]


def test_minimal_config_gets_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path, "version: 1\n").relative_to(tmp_path))
    assert config == Config(path=tmp_path / "shipyard.yaml", root=tmp_path)
    assert config.path.is_absolute()
    assert (config.agent, config.heartbeat_interval, config.steps, config.gates) == (
        "devops",
        15.0,
        {},
        (),
    )


def test_loaded_objects_are_frozen() -> None:
    config = load_config(GOOD / "design_sketch.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.agent = "someone"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps["lint"].run = "true"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.environments["staging"].smoke.timeout = 1.0  # type: ignore[misc]


def test_merged_keys_may_be_overridden_but_written_keys_not_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = (
        "version: 1\nsteps:\n  a: &a {run: make, timeout: 1m}\n  b:\n    <<: *a\n    timeout: 2m\n"
    )
    assert load_config(write(tmp_path, base)).steps["b"] == Step(
        name="b", run="make", timeout=120.0
    )
    repeated = write(tmp_path, base + "    timeout: 3m\n")
    assert (
        refusal(repeated)
        == "shipyard.yaml:7: steps.b.timeout: duplicate key (first defined on line 6)"
    )


def test_log_names_that_differ_only_in_case_collide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "version: 1\nsteps:\n  Lint: ruff check .\n  lint: ruff check src\n")
    assert refusal(path) == (
        "shipyard.yaml:4: steps.lint: same log file as step 'Lint' (Lint.log); rename one of them"
    )


# --- Bounds: the file's size, its values, its number of steps ----------------------------


def test_a_file_over_1_mib_is_refused_before_it_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    padding = "#" * 99 + "\n"
    text = "version: 1\n" + padding * (MAX_CONFIG_BYTES // len(padding))
    text += "#" * (MAX_CONFIG_BYTES - len(text) - 1) + "\n"
    assert len(text) == MAX_CONFIG_BYTES == 1024 * 1024
    assert load_config(write(tmp_path, text)).version == 1
    write(tmp_path, text + "\n")
    assert check_here(tmp_path / "shipyard.yaml") == (
        2,
        "",
        "shipyard.yaml:1: the file is larger than 1 MiB (1,048,577 bytes), the limit for a"
        " config\n",
    )


def test_the_values_are_counted_with_each_alias_as_all_it_repeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1 mapping + 2 (version) + 1 + 1,000 (a: 999 items) + 1 + 248,001 (b: 248 aliases of a)
    + 1 + 1 + padding (c): the limit exactly, then one more."""
    monkeypatch.chdir(tmp_path)
    padding = MAX_VALUES - 249_008

    def document_of(items: int) -> str:
        return (
            f"version: 1\na: &a [{', '.join(['x'] * 999)}]\n"
            f"b: [{', '.join(['*a'] * 248)}]\nc: [{', '.join(['x'] * items)}]\n"
        )

    at_limit = write(tmp_path, document_of(padding))
    assert refusal(at_limit).startswith("shipyard.yaml:2: a: unknown key")  # composed whole
    past_limit = write(tmp_path, document_of(padding + 1))
    assert refusal(past_limit) == f"shipyard.yaml:4: {TOO_MANY_VALUES}"


def test_a_merge_key_bomb_is_refused_before_any_merge_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_merging(*_: object) -> None:
        raise AssertionError("a merge was expanded")

    monkeypatch.setattr(document._LineLoader, "flatten_mapping", no_merging)
    monkeypatch.chdir(tmp_path)
    assert refusal(place("alias_merge_key_bomb", tmp_path)) == (
        f"shipyard.yaml:10: {TOO_MANY_VALUES}"
    )


def test_steps_sharing_defaults_through_a_merge_key_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = "  s0: &defaults {run: make s0, timeout: 5m, retries: 2}\n"
    others = "".join(f"  s{i}: {{<<: *defaults, run: make s{i}}}\n" for i in range(1, 2000))
    config = load_config(write(tmp_path, f"version: 1\nsteps:\n{first}{others}"))
    assert config.steps["s1999"] == Step(name="s1999", run="make s1999", timeout=300.0, retries=2)


@pytest.mark.timeout(60)
def test_ten_thousand_steps_load_with_one_log_name_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log-name clash check costs one look-up per step (it compared every pair: 50 million
    comparisons and 49 s for 10,000 steps)."""
    computed: list[str] = []

    def counted_log_name(step_name: str) -> str:
        computed.append(step_name)
        return log_name(step_name)

    monkeypatch.setattr(schema, "log_name", counted_log_name)
    names = [f"s{i}" for i in range(10_000)]
    text = "version: 1\nsteps:\n" + "".join(f"  {name}: make {name}\n" for name in names)
    text += f"gates: [{', '.join(names)}]\n"
    config = load_config(write(tmp_path, text))
    assert (len(config.steps), len(config.gates)) == (10_000, 10_000)
    assert computed == names


def test_libyaml_and_pure_python_read_every_config_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libyaml reads the events where PyYAML has it; without it, the same configs load to
    the same objects, and the same bad ones are refused with the same line."""
    if document.CParser is None:
        pytest.skip("this PyYAML has no libyaml")
    good = {path.name: load_config(path) for path in GOOD.glob("*.yaml")}
    monkeypatch.chdir(tmp_path)
    bad = {name: refusal(place(name, tmp_path / name)) for name in sorted(BAD_CONFIGS)}
    monkeypatch.setattr(document, "CParser", None)
    assert {path.name: load_config(path) for path in GOOD.glob("*.yaml")} == good
    assert {name: refusal(place(name, tmp_path / name)) for name in sorted(BAD_CONFIGS)} == bad


# --- Durations and log names -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5), ("0.25h", 900.0)],
)
def test_parse_duration_reads_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "10 s", "fast", "", "1d", "1.5", " 30s", "5M", "1e3s"])
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match=r"^expected a duration like 30s, 500ms, 5m or 1h, got '"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0s", "-1s", "0.0ms"])
def test_parse_duration_refuses_zero_and_negative(text: str) -> None:
    with pytest.raises(ValueError, match=r"^expected a duration greater than zero, got '"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["\u0663s", "1\u0660s", "\uff13s", "\u0969m", "1.\u0665h"])
def test_parse_duration_reads_only_ascii_digits(text: str) -> None:
    with pytest.raises(ValueError, match=r"^expected a duration like 30s, 500ms, 5m or 1h, got '"):
        parse_duration(text)


@pytest.mark.parametrize(
    "text", ["24.001h", "1441m", "86401s", "86400001ms", "3000000h", "9" * 400 + "h"]
)
def test_parse_duration_refuses_more_than_a_day(text: str) -> None:
    with pytest.raises(ValueError, match=r"^expected a duration of at most 24h, got '"):
        parse_duration(text)


def test_the_longest_duration_is_one_a_thread_can_wait_for() -> None:
    """A heartbeat of `3000000h` made the beating thread die of OverflowError."""
    assert parse_duration("24h") == parse_duration("1440m") == MAX_DURATION_SECONDS
    assert threading.Lock().acquire(timeout=MAX_DURATION_SECONDS)  # checks the bound, then takes
    with pytest.raises(OverflowError):
        threading.Lock().acquire(timeout=3_000_000 * 3600.0)


@pytest.mark.parametrize(
    ("step", "file_name"),
    [
        ("test:ci", "test_ci"),
        ("lint", "lint"),
        ("a.b-c_D9", "a.b-c_D9"),
        ("deploy:fly:eu", "deploy_fly_eu"),
        ("Rollback (dry-run)", "Rollback_dry-run"),
        ("Smoke staging", "Smoke_staging"),
        ("a::b", "a_b"),
    ],
)
def test_log_name(step: str, file_name: str) -> None:
    assert log_name(step) == file_name


# --- Finding the file --------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """<tmp>/shipyard.yaml, <tmp>/other.yaml and an empty <tmp>/a/b/c."""
    write(tmp_path, "version: 1\n")
    (tmp_path / "other.yaml").write_text("version: 1\nagent: other\n")
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    return tmp_path


def test_explicit_path_wins(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree / "a")
    environ = {"SHIPYARD_CONFIG": str(tree / "shipyard.yaml")}
    found = find_config("../other.yaml", start=tree, environ=environ)
    assert found == tree / "other.yaml"


def test_environment_variable_wins_over_walking_up(tree: Path) -> None:
    environ = {"SHIPYARD_CONFIG": str(tree / "other.yaml")}
    assert find_config(start=tree / "a", environ=environ) == tree / "other.yaml"


def test_walks_up_from_a_nested_directory(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_config(start=tree / "a" / "b" / "c", environ={}) == tree / "shipyard.yaml"
    monkeypatch.chdir(tree / "a" / "b")
    assert find_config(environ={"SHIPYARD_CONFIG": ""}) == tree / "shipyard.yaml"


def test_missing_explicit_or_environment_file_is_named(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    with pytest.raises(ConfigError, match=r"^--config nope\.yaml: no such file$"):
        find_config("nope.yaml", environ={})
    with pytest.raises(ConfigError, match=r"^--config a: not a file$"):
        find_config(Path("a"), environ={})
    with pytest.raises(ConfigError, match=r"^SHIPYARD_CONFIG=/nowhere/x\.yaml: no such file$"):
        find_config(environ={"SHIPYARD_CONFIG": "/nowhere/x.yaml"})


def test_not_found_says_where_it_looked(tmp_path: Path) -> None:
    start = tmp_path / "a" / "b"
    start.mkdir(parents=True)
    if any((directory / "shipyard.yaml").exists() for directory in start.parents):
        pytest.skip("a parent of the temporary directory holds a shipyard.yaml")
    with pytest.raises(ConfigError) as caught:
        find_config(start=start, environ={})
    assert caught.value.message == (
        f"no shipyard.yaml in {start} or any parent directory"
        " (give --config PATH or set SHIPYARD_CONFIG)"
    )


def test_load_finds_then_loads(tree: Path) -> None:
    assert load(start=tree / "a" / "b", environ={}).path == tree / "shipyard.yaml"
    assert load(tree / "other.yaml", environ={}).agent == "other"
