"""The fake flyctl (tests/fakes/flyctl) behaves as shared/reference/flyctl.md says flyctl does:
run as a subprocess, as Shipyard's Fly target runs it, against a state file in tmp_path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from fakes.fly_state import (
    FAKES,
    RELEASE_KEYS,
    TRANSIENT_ERRORS,
    TRANSIENT_MARKERS,
    FakeFly,
    drop_image,
    machines,
    new_app,
    new_state,
    release,
)

APP = "webapp-staging"
NO_APP_NAME = (
    "Error: the config for your app is missing an app name, add an app field to the fly.toml"
    " file or specify with the -a flag\n"
)


@pytest.fixture
def fly(tmp_path: Path) -> FakeFly:
    return FakeFly(tmp_path)


def deploy(fly: FakeFly, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    return fly.run("deploy", "-a", APP, *args, **env)


def read_json(fly: FakeFly, *args: str) -> Any:
    result = fly.run(*args, "-a", APP, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def images(fly: FakeFly) -> list[str]:
    return [machine["config"]["image"] for machine in machines(fly.state, APP)]


def check_statuses(fly: FakeFly) -> list[str]:
    return [machine["checks"][0]["status"] for machine in machines(fly.state, APP)]


def versions(fly: FakeFly) -> list[int]:
    return [item["Version"] for item in fly.state["apps"][APP]["releases"]]


def status_of(fly: FakeFly, version: int) -> str:
    return release(fly.state, APP, version)["Status"]


def built_image(result: subprocess.CompletedProcess[str]) -> str:
    return next(line[7:] for line in result.stderr.splitlines() if line.startswith("image: "))


# --- global behaviour -------------------------------------------------------------------


def test_version_needs_no_token(fly: FakeFly) -> None:
    result = fly.run("version", FLY_API_TOKEN=None)
    assert result.returncode == 0
    assert result.stdout == (
        "flyctl v0.4.87 linux/amd64 Commit: ad0172fac BuildDate: 2026-08-21T00:00:00Z\n"
    )


def test_without_a_command_it_prints_usage(fly: FakeFly) -> None:
    result = fly.run()
    assert result.returncode == 0
    assert result.stdout.startswith("Usage:\n  flyctl [command]")


def test_without_a_state_file_the_fake_refuses(fly: FakeFly) -> None:
    result = fly.run("releases", "-a", APP, FAKE_FLY_STATE=None)
    assert result.returncode == 2
    assert result.stderr.startswith("fake flyctl: FAKE_FLY_STATE must name a state file")


def test_fly_is_a_relative_symlink_to_the_same_fake(fly: FakeFly) -> None:
    link = FAKES / "fly"
    assert link.is_symlink()
    assert os.readlink(link) == "flyctl"
    result = subprocess.run(
        ["fly", "releases", "-a", APP, "--json"],
        env=fly.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert [item["Version"] for item in json.loads(result.stdout)] == [1]


def test_without_a_token_every_api_command_fails(fly: FakeFly) -> None:
    result = fly.run("releases", "-a", APP, "--json", FLY_API_TOKEN=None)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: no access token available. Please login with 'flyctl auth login'\n"
    )
    assert fly.calls[-1] == {
        "argv": ["releases", "-a", APP, "--json"],
        "token": "absent",
        "token_source": None,
        "exit": 1,
    }


@pytest.mark.parametrize(
    ("env", "flag", "source"),
    [
        ({"FLY_ACCESS_TOKEN": "a", "FLY_API_TOKEN": "b"}, [], "FLY_ACCESS_TOKEN"),
        ({"FLY_ACCESS_TOKEN": "", "FLY_API_TOKEN": "b"}, [], "FLY_API_TOKEN"),
        ({"FLY_ACCESS_TOKEN": None, "FLY_API_TOKEN": "b"}, ["-t", "c"], "--access-token"),
        ({"FLY_ACCESS_TOKEN": None, "FLY_API_TOKEN": None}, ["--access-token=c"], "--access-token"),
    ],
)
def test_token_precedence(
    fly: FakeFly, env: dict[str, str | None], flag: list[str], source: str
) -> None:
    result = fly.run("status", "-a", APP, "--json", *flag, **env)
    assert result.returncode == 0, result.stderr
    assert fly.calls[-1]["token"] == "present"
    assert fly.calls[-1]["token_source"] == source


def test_calls_record_argv_and_never_the_token_value(fly: FakeFly) -> None:
    deploy(fly, "--strategy", "immediate")
    fly.run("releases", "-a", APP, "-j")
    assert [call["argv"] for call in fly.calls] == [
        ["deploy", "-a", APP, "--strategy", "immediate"],
        ["releases", "-a", APP, "-j"],
    ]
    assert [call["exit"] for call in fly.calls] == [0, 0]
    assert fly.token not in fly.path.read_text()


def two_apps(tmp_path: Path) -> FakeFly:
    state = new_state()
    state["apps"]["other-app"] = new_app("other-app", releases=3)
    state["apps"]["toml-app"] = new_app("toml-app", releases=5)
    (tmp_path / "fly.toml").write_text('app = "toml-app"\nprimary_region = "iad"\n')
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "fly.toml").write_text("# staging\napp = 'other-app'\n[deploy]\n")
    return FakeFly(tmp_path, state)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["-a", APP], {"FLY_APP": "other-app"}, APP),
        (["--app=" + APP], {}, APP),
        (["-a" + APP], {}, APP),
        ([], {"FLY_APP": "other-app"}, "other-app"),
        ([], {}, "toml-app"),
        (["-c", "conf/fly.toml"], {}, "other-app"),
        (["--config", "conf"], {}, "other-app"),
    ],
)
def test_app_name_comes_from_flag_then_env_then_config(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    fly = two_apps(tmp_path)
    result = fly.run("status", "--json", *args, cwd=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Name"] == expected


def test_missing_app_name_config_and_app(fly: FakeFly, tmp_path: Path) -> None:
    missing = fly.run("releases", "--json", cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (1, NO_APP_NAME)
    no_config = fly.run("releases", "-a", APP, "-c", "nowhere/fly.toml", cwd=tmp_path)
    assert no_config.returncode == 1
    assert no_config.stderr == "Error: config file not found at specified path: nowhere/fly.toml\n"
    unknown = fly.run("releases", "-a", "no-such-app", "--json")
    assert (unknown.returncode, unknown.stderr) == (1, 'Error: Could not find App "no-such-app"\n')
    no_token = fly.run("releases", "-a", APP, FLY_API_TOKEN=None)
    for failed in (missing, no_config, unknown, no_token):  # a client must not retry these
        assert not any(marker in failed.stderr for marker in TRANSIENT_MARKERS)


def test_deploy_reads_fly_toml_in_its_working_directory_argument(tmp_path: Path) -> None:
    fly = two_apps(tmp_path)
    result = fly.run("deploy", "conf", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(fly.state["apps"]["other-app"]["releases"]) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy", "-a", APP, "--json"], "unknown flag: --json"),
        (["releases", "-a", APP, "--bogus=1"], "unknown flag: --bogus"),
        (["status", "-x", "-a", APP], "unknown shorthand flag: 'x' in -x"),
        (["releases", "--json", "-a"], "flag needs an argument: 'a' in -a"),
        (["deploy", "-a", APP, "--detach=maybe"], 'invalid argument "maybe" for "--detach" flag:'),
        (["deploy", "-a", APP, "dir1", "dir2"], "accepts at most 1 arg(s), received 2"),
        (["nonsense"], 'unknown command "nonsense" for "flyctl"'),
    ],
)
def test_usage_errors_exit_1_and_change_nothing(
    fly: FakeFly, args: list[str], message: str
) -> None:
    result = fly.run(*args)
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: {message}")
    assert versions(fly) == [1]


def test_flag_forms_and_fly_json(fly: FakeFly) -> None:
    long = fly.run("releases", "--app", APP, "--json")
    assert fly.run("releases", f"--app={APP}", "-j").stdout == long.stdout
    assert fly.run("releases", "-a", APP, FLY_JSON="1").stdout == long.stdout
    assert fly.run("releases", "-a", APP, "--json=false").stdout.startswith("VERSION")


# --- releases ---------------------------------------------------------------------------


def test_releases_json_keys_in_fly_go_order(fly: FakeFly) -> None:
    listed = read_json(fly, "releases")
    assert list(listed[0]) == list(RELEASE_KEYS)
    assert list(listed[0]["User"]) == ["ID", "Name", "Email", "EnablePaidHobby"]
    first = listed[0]
    assert (first["InProgress"], first["DeploymentStrategy"], first["Metadata"]) == (
        False,
        "",
        None,
    )
    assert first["EvaluationID"] == ""
    assert first["CreatedAt"].endswith("Z")
    assert first["ImageRef"] in fly.state["apps"][APP]["registry"]
    printed = fly.run("releases", "-a", APP, "--json").stdout
    assert printed == json.dumps(listed, indent=4) + "\n"


def test_releases_lists_the_25_newest_version_descending(tmp_path: Path) -> None:
    state = new_state(releases=30)
    state["apps"][APP]["releases"].reverse()
    fly = FakeFly(tmp_path, state)
    listed = read_json(fly, "releases")
    assert [item["Version"] for item in listed] == list(range(30, 5, -1))
    assert read_json(fly, "apps", "releases") == listed


def test_releases_table(fly: FakeFly) -> None:
    table = fly.run("releases", "-a", APP, "--image").stdout.splitlines()
    assert table[0].split() == [
        "VERSION",
        "STATUS",
        "DESCRIPTION",
        "USER",
        "DATE",
        "DOCKER",
        "IMAGE",
    ]
    assert table[1].startswith("v1 ")
    assert table[1].endswith(release(fly.state, APP, 1)["ImageRef"])


@pytest.mark.parametrize("program", ["fly", "flyctl"])
def test_there_is_no_releases_rollback(fly: FakeFly, program: str) -> None:
    result = subprocess.run(
        [program, "releases", "rollback", "-a", APP],
        env=fly.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == f'Error: unknown command "rollback" for "{program} releases"\n'


# --- status, machines, checks -----------------------------------------------------------


def test_status_json(tmp_path: Path) -> None:
    state = new_state(machines=4, releases=2)
    app_machines = state["apps"][APP]["machines"]
    app_machines[0]["state"] = "destroyed"
    app_machines[1]["config"]["metadata"]["fly_process_group"] = "fly_app_release_command"
    fly = FakeFly(tmp_path, state)
    status = read_json(fly, "status")
    assert list(status) == sorted(status)
    assert list(status["Organization"]) == [
        "ID",
        "InternalNumericID",
        "Name",
        "Slug",
        "RawSlug",
        "PaidPlan",
    ]
    assert (status["Name"], status["Version"], status["Deployed"]) == (APP, 2, True)
    assert status["Organization"]["Slug"] == "personal"
    shown = [machine["id"] for machine in status["Machines"]]
    assert shown == sorted((m["id"] for m in app_machines[2:]), reverse=True)


def test_status_of_an_app_without_releases_and_watch_json(tmp_path: Path) -> None:
    fly = FakeFly(tmp_path, new_state(machines=0, releases=0))
    status = read_json(fly, "status")
    assert (status["Version"], status["Machines"], status["Deployed"]) == (0, [], False)
    watch = fly.run("status", "-a", APP, "--json", "--watch")
    assert watch.returncode == 1
    assert watch.stderr == "Error: --watch and --json are not supported together\n"


def test_machines_list_json_and_aliases(fly: FakeFly) -> None:
    listed = read_json(fly, "machines", "list")
    assert read_json(fly, "machine", "list") == listed
    assert read_json(fly, "m", "ls") == listed
    assert [machine["id"] for machine in listed] == [m["id"] for m in machines(fly.state, APP)]
    first = listed[0]
    assert list(first) == [
        "id",
        "name",
        "state",
        "region",
        "image_ref",
        "instance_id",
        "private_ip",
        "created_at",
        "updated_at",
        "config",
        "events",
        "checks",
        "host_status",
        "cordoned",
    ]
    assert list(first["image_ref"]) == ["registry", "repository", "tag", "digest"]
    assert first["image_ref"]["digest"].startswith("sha256:")
    assert first["config"]["metadata"]["fly_release_version"] == "1"
    assert first["checks"][0]["name"] == "servicecheck-00-http-8080"
    assert first["checks"][0]["status"] == "passing"
    assert first["cordoned"] is False


def test_machines_list_of_an_empty_app(tmp_path: Path) -> None:
    assert read_json(FakeFly(tmp_path, new_state(machines=0)), "machines", "list") == []


def test_checks_list_json(fly: FakeFly) -> None:
    checks = read_json(fly, "checks", "list")
    ids = sorted(machine["id"] for machine in machines(fly.state, APP))
    assert list(checks) == ids
    assert list(checks[ids[0]][0]) == ["name", "status", "output", "updated_at"]
    assert {entry[0]["status"] for entry in checks.values()} == {"passing"}


# --- transient read errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("releases", ["releases"]),
        ("status", ["status"]),
        ("machines", ["machines", "list"]),
        ("checks", ["checks", "list"]),
    ],
)
def test_transient_errors_then_success(fly: FakeFly, command: str, args: list[str]) -> None:
    fly.script(transient={command: 2})
    first, second, third = (fly.run(*args, "-a", APP, "--json") for _ in range(3))
    expected = f"Error: {TRANSIENT_ERRORS[command].format(app=APP)}\n"
    assert (first.returncode, first.stderr) == (1, expected)
    assert (second.returncode, second.stderr) == (1, expected)
    assert third.returncode == 0
    assert json.loads(third.stdout) is not None
    assert any(marker in expected for marker in TRANSIENT_MARKERS)
    assert fly.state["script"]["transient"][command] == 0
    assert [call["exit"] for call in fly.calls] == [1, 1, 0]


def test_releases_transient_message_is_the_graphql_timeout(fly: FakeFly) -> None:
    fly.script(transient={"releases": 1})
    result = fly.run("releases", "-a", APP, "--json")
    assert result.stderr == (
        f'Error: failed retrieving app releases {APP}: Post "https://api.fly.io/graphql":'
        " net/http: request canceled (Client.Timeout exceeded while awaiting headers)\n"
    )


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        (
            "releases",
            ["releases"],
            f"failed retrieving app releases {APP}: 429 Too Many Requests: rate limit exceeded,"
            " retry after 5s",
        ),
        (
            "machines",
            ["machines", "list"],
            "could not list machines: failed to list VMs (status 429): 429 Too Many Requests:"
            " rate limit exceeded, retry after 5s",
        ),
    ],
)
def test_rate_limited_answers_carry_a_retry_hint_then_succeed(
    fly: FakeFly, command: str, args: list[str], expected: str
) -> None:
    fly.script(rate_limited={command: 1}, retry_after_seconds=5)
    first, second = (fly.run(*args, "-a", APP, "--json") for _ in range(2))
    assert (first.returncode, first.stderr, first.stdout) == (1, f"Error: {expected}\n", "")
    assert second.returncode == 0 and json.loads(second.stdout) is not None
    assert fly.state["script"]["rate_limited"][command] == 0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_for_a_count_then_success(fly: FakeFly, status: int) -> None:
    fly.script(server_errors={"status": 2}, server_error_status=status)
    results = [fly.run("status", "-a", APP, "--json") for _ in range(3)]
    text = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
    answer = f"{status} {text.get(status, 'Gateway Timeout')}"
    expected = f"Error: failed retrieving app {APP}: {answer}\n"
    assert [(r.returncode, r.stderr) for r in results[:2]] == [(1, expected)] * 2
    assert results[2].returncode == 0 and json.loads(results[2].stdout)["Name"] == APP
    assert [call["exit"] for call in fly.calls] == [1, 1, 0]


# --- deploy -----------------------------------------------------------------------------


def test_deploy_builds_an_image_and_creates_release_n_plus_1(fly: FakeFly) -> None:
    result = deploy(fly, "--yes", "--now", "--wait-timeout", "5m")
    assert result.returncode == 0, result.stderr
    image = built_image(result)
    assert image.startswith(f"registry.fly.io/{APP}:deployment-")
    assert len(image.rpartition("deployment-")[2]) == 26
    assert image in fly.state["apps"][APP]["registry"]
    created = release(fly.state, APP, 2)
    assert (created["Status"], created["ImageRef"], created["User"]["Name"]) == (
        "complete",
        image,
        "CI Bot",
    )
    assert images(fly) == [image, image]
    assert check_statuses(fly) == ["passing", "passing"]
    for machine in machines(fly.state, APP):
        assert machine["state"] == "started"
        assert machine["image_ref"]["tag"] == image.rpartition(":")[2]
        assert machine["config"]["metadata"]["fly_release_version"] == "2"
        assert machine["config"]["metadata"]["fly_release_id"] == created["ID"]
    lines = [line for line in result.stdout.splitlines() if line]
    assert lines == [
        f"Watch your deployment at https://fly.io/apps/{APP}/monitoring",
        f"Updating existing machines in '{APP}' with rolling strategy",
        f"Visit your newly deployed app at https://{APP}.fly.dev/",
    ]


def test_emitted_release_json_comes_before_the_visit_line(fly: FakeFly) -> None:
    result = deploy(fly, "--image-label", "v-next", FLY_EMIT_RELEASE_JSON="1")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line]
    image = f"registry.fly.io/{APP}:v-next"
    emitted = {"id": release(fly.state, APP, 2)["ID"], "version": 2, "image_ref": image}
    assert lines[-2] == json.dumps(emitted, separators=(",", ":"))
    assert lines[-1].startswith("Visit your newly deployed app")


def test_deploy_of_an_image_not_in_the_registry_creates_no_release(fly: FakeFly) -> None:
    missing = f"registry.fly.io/{APP}:deployment-NOPE"
    result = deploy(fly, "--image", missing)
    assert result.returncode == 1
    assert result.stderr.endswith(
        f'Error: failed to fetch an image or build from source: could not find image "{missing}"\n'
    )
    assert "Watch your deployment" not in result.stdout
    assert versions(fly) == [1]


def test_rollback_is_a_deploy_of_an_earlier_image(tmp_path: Path) -> None:
    fly = FakeFly(tmp_path, new_state(releases=3))
    old = release(fly.state, APP, 1)["ImageRef"]
    result = deploy(fly, "-i", old, "--skip-release-command", "--strategy", "immediate")
    assert result.returncode == 0, result.stderr
    assert (status_of(fly, 4), release(fly.state, APP, 4)["ImageRef"]) == ("complete", old)
    assert images(fly) == [old, old]


def test_a_bad_strategy_is_rejected_after_the_image_step(fly: FakeFly) -> None:
    result = deploy(fly, "--strategy", "yolo")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-2:] == [
        "unsupported deployment strategy 'yolo'; Apps v2 supports the following strategies:"
        " canary, rolling, immediate, bluegreen",
        "Error: App configuration is not valid",
    ]
    assert built_image(result) in fly.state["apps"][APP]["registry"]
    assert versions(fly) == [1]


@pytest.mark.parametrize("flag", ["--wait-timeout", "--release-command-timeout"])
def test_a_bad_duration_is_rejected_and_creates_no_release(fly: FakeFly, flag: str) -> None:
    result = deploy(fly, flag, "5 minutes")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: invalid duration value 5 minutes used for {flag} flag: valid options are a"
        " number of seconds, number with time unit (i.e.: 5m, 180s) or 'none'"
    )
    assert versions(fly) == [1]


@pytest.mark.parametrize("value", ["5m", "180s", "120", "none", "1m30s", "2.5s"])
def test_durations_flyctl_accepts(fly: FakeFly, value: str) -> None:
    assert deploy(fly, f"--wait-timeout={value}").returncode == 0


def test_build_only_creates_no_release_and_pushes_only_with_push(fly: FakeFly) -> None:
    local = deploy(fly, "--build-only")
    pushed = deploy(fly, "--build-only", "--push")
    assert (local.returncode, pushed.returncode) == (0, 0)
    assert local.stdout == pushed.stdout == ""
    registry = fly.state["apps"][APP]["registry"]
    assert built_image(local) not in registry
    assert built_image(pushed) in registry
    assert versions(fly) == [1]


def test_build_only_with_an_image_label_prints_the_labelled_ref(fly: FakeFly) -> None:
    pushed = deploy(fly, "--build-only", "--push", "--image-label", "sha-0123456789ab")
    assert pushed.returncode == 0, pushed.stderr
    assert built_image(pushed) == f"registry.fly.io/{APP}:sha-0123456789ab"
    assert "image size: " in pushed.stderr and versions(fly) == [1]


def test_build_only_with_image_resolves_it_and_fails_once_it_is_gone(fly: FakeFly) -> None:
    """§2 step 2: `--image` is resolved, then `--build-only` returns: no release either way."""
    image = fly.state["apps"][APP]["releases"][0]["ImageRef"]
    found = deploy(fly, "--build-only", "--image", image)
    assert found.returncode == 0 and f"Searching for image '{image}' remotely..." in found.stderr
    drop_image(fly.path, APP, image)
    gone = deploy(fly, "--build-only", "--image", image)
    assert gone.returncode == 1
    said = f'could not find image "{image}"'
    assert f"Error: failed to fetch an image or build from source: {said}" in gone.stderr
    assert versions(fly) == [1] and images(fly) == [image, image]


def test_a_failing_release_command_fails_the_release_and_leaves_machines(fly: FakeFly) -> None:
    fly.script(release_command_fails=True)
    before = images(fly)
    result = deploy(fly)
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith("Error: release command failed - aborting deployment. machine ")
    assert last.endswith(" exited with non-zero status of 1")
    assert status_of(fly, 2) == "failed"
    assert images(fly) == before
    skipped = deploy(fly, "--skip-release-command")
    assert skipped.returncode == 0
    assert status_of(fly, 3) == "complete"


@pytest.mark.parametrize("strategy", ["rolling", "canary"])
def test_an_unhealthy_rolling_deploy_fails_and_leaves_mixed_images(
    fly: FakeFly, strategy: str
) -> None:
    fly.script(build_health="critical")
    before = images(fly)
    result = deploy(fly, "--strategy", strategy)
    assert result.returncode == 1
    first = machines(fly.state, APP)[0]["id"]
    assert result.stderr.splitlines()[-1] == (
        f"Error: failed to update machine {first}: Unrecoverable error: timeout reached waiting"
        f" for health checks to pass for machine {first}: context deadline exceeded"
    )
    assert status_of(fly, 2) == "failed"
    assert images(fly) == [built_image(result), before[1]]
    assert check_statuses(fly) == ["critical", "passing"]


@pytest.mark.parametrize("args", [["--strategy", "immediate"], ["--detach"]])
def test_immediate_or_detached_deploys_of_an_unhealthy_image_succeed(
    fly: FakeFly, args: list[str]
) -> None:
    fly.script(build_health="critical")
    result = deploy(fly, *args)
    assert result.returncode == 0, result.stderr
    assert status_of(fly, 2) == "complete"
    assert images(fly) == [built_image(result)] * 2
    assert check_statuses(fly) == ["critical", "critical"]


def test_an_existing_image_keeps_its_scripted_health(tmp_path: Path) -> None:
    fly = FakeFly(tmp_path, new_state(releases=2))
    bad = release(fly.state, APP, 1)["ImageRef"]
    fly.script(image_health={bad: "critical"})
    assert deploy(fly, "--image", bad).returncode == 1
    assert status_of(fly, 3) == "failed"


def test_a_crashing_image_fails_the_smoke_checks(fly: FakeFly) -> None:
    fly.script(build_health="crash")
    result = deploy(fly)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "Error: the app appears to be crashing"
    assert status_of(fly, 2) == "failed"
    assert machines(fly.state, APP)[0]["state"] == "stopped"


def test_a_failed_bluegreen_deploy_leaves_the_blue_machines(fly: FakeFly) -> None:
    fly.script(build_health="critical")
    before = machines(fly.state, APP)
    result = deploy(fly, "--strategy", "bluegreen")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-2:] == [
        "Rolling back failed deployment",
        "Error: could not get all green machines to be healthy",
    ]
    assert status_of(fly, 2) == "failed"
    assert machines(fly.state, APP) == before


def test_a_bluegreen_deploy_replaces_the_machines(fly: FakeFly) -> None:
    blue = {machine["id"] for machine in machines(fly.state, APP)}
    result = deploy(fly, "--strategy", "bluegreen")
    assert result.returncode == 0, result.stderr
    green = {machine["id"] for machine in machines(fly.state, APP)}
    assert len(green) == 2
    assert not green & blue
    assert images(fly) == [built_image(result)] * 2


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_deploy_exits_127_and_marks_the_release(
    fly: FakeFly, signum: signal.Signals
) -> None:
    fly.script(deploy_seconds=30)
    before = images(fly)
    process = subprocess.Popen(
        ["flyctl", "deploy", "-a", APP],
        env=fly.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fly.wait_for(lambda state: len(state["apps"][APP]["releases"]) == 2)
        assert status_of(fly, 2) == "running"
        process.send_signal(signum)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 127
    assert "Error:" not in out + err  # flyctl prints no error for a canceled context (§8)
    assert status_of(fly, 2) == "interrupted"
    assert images(fly) == before
    assert fly.calls[-1]["exit"] == 127


def test_checks_in_their_grace_period_read_critical_then_pass(fly: FakeFly) -> None:
    """An immediate deploy does not wait for checks: they read critical (no output yet, as a
    check before its first run) until the grace period has gone (then passing: the test
    below)."""
    fly.script(check_grace_seconds=30)
    assert deploy(fly, "--strategy", "immediate").returncode == 0
    during = read_json(fly, "checks", "list")
    assert [check["status"] for checks in during.values() for check in checks] == ["critical"] * 2
    assert all("output" not in check for checks in during.values() for check in checks)
    listed = read_json(fly, "machines", "list")
    assert [machine["checks"][0] for machine in listed] == [
        {"name": "servicecheck-00-http-8080", "status": "critical", "updated_at": ANY}
    ] * 2


def test_a_rolling_deploy_returns_once_the_grace_period_is_over(fly: FakeFly) -> None:
    fly.script(check_grace_seconds=0.5)
    assert deploy(fly).returncode == 0
    listed = read_json(fly, "machines", "list")
    assert [machine["checks"][0]["status"] for machine in listed] == ["passing"] * 2


def test_a_hanging_deploy_ignores_sigterm_until_sigkill(fly: FakeFly) -> None:
    fly.script(hang_deploys=1)
    process = subprocess.Popen(
        ["flyctl", "deploy", "-a", APP], env=fly.env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        next(line for line in process.stdout if line.startswith("Updating existing machines"))
        process.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0.3)
    finally:
        process.kill()
    assert process.wait() == -signal.SIGKILL
    assert status_of(fly, 2) == "running"  # nothing marked it: SIGKILL leaves it so
    assert deploy(fly).returncode == 0  # the count is spent: the next deploy goes through
    assert status_of(fly, 3) == "complete"


# --- concurrency ------------------------------------------------------------------------


def test_concurrent_calls_do_not_corrupt_the_state(fly: FakeFly) -> None:
    commands = [["deploy", "-a", APP], ["releases", "-a", APP, "--json"]] * 8
    processes = [
        subprocess.Popen(
            ["flyctl", *command], env=fly.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for command in commands
    ]
    outputs = [process.communicate(timeout=30) for process in processes]
    assert [process.returncode for process in processes] == [0] * len(commands)
    for (stdout, _), command in zip(outputs, commands, strict=True):
        if command[0] == "releases":
            assert json.loads(stdout)[-1]["Version"] == 1
    assert sorted(versions(fly)) == list(range(1, 10))
    assert len(fly.calls) == len(commands)
