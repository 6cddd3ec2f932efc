"""`shipyard init` / `inv init`: what it finds in a folder, what it writes there and what it
refuses; the e2e tests deploy what it wrote for the sample apps of tests/apps/ and stop them."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from helpers import BIN, GIT, http_get, ok, run_cli, run_here

from shipyard.config import load_config
from shipyard.init import plan_init
from shipyard.server import free_port

APPS = Path(__file__).parent / "apps"
NOT_COPIED = shutil.ignore_patterns(
    "__pycache__", ".*_cache", "node_modules", "dist", "artifacts", "feedback", ".shipyard"
)
TASKS_PY = "from shipyard.tasks import namespace\n\nns = namespace()\n"
IGNORED = ["/artifacts/", "/feedback/", "/.shipyard/", "/dist/"]
NEVER_IN_A_RELEASE = (".git", "artifacts", "feedback", ".shipyard", "dist", "node_modules")


def sample(name: str, tmp_path: Path) -> Path:
    """A copy of tests/apps/<name>, as the folder a user runs `shipyard init` in."""
    return Path(shutil.copytree(APPS / name, tmp_path / name, ignore=NOT_COPIED))


def init(root: Path, *args: str, program: str = "shipyard"):
    return run_here(["init", *args], root, program=program)


def on_port(root: Path, port: int) -> None:
    config = root / "shipyard.yaml"
    text = config.read_text()
    assert text.count("port: 8787 ") == 1, text
    config.write_text(text.replace("port: 8787 ", f"port: {port} "))


def run_build(root: Path) -> subprocess.CompletedProcess[str]:
    """The build command init wrote, run as a step runs it (`bash -c`)."""
    step = load_config(root / "shipyard.yaml").steps["build"]
    command = ["bash", "-c", step.run]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)


def build(root: Path) -> list[str]:
    """Build; the names of the members of the tarball the `artifact:` glob matches."""
    done = run_build(root)
    assert done.returncode == 0, done.stdout + done.stderr
    [tarball] = root.glob(load_config(root / "shipyard.yaml").steps["build"].artifact or "")
    with tarfile.open(tarball) as archive:
        return [name.removeprefix("./") for name in archive.getnames()]


def file_names(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*")}


# --- what it writes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "program", "start", "gates"),
    [
        ("python-hello", "shipyard", "python3 app.py", ("lint", "test", "scan")),
        ("node-hello", "inv", "npm start", ("test", "scan")),
    ],
)
def test_init_writes_config_tasks_and_ignore_lines_for_the_sample(
    tmp_path, name, program, start, gates
):
    root = sample(name, tmp_path)
    done = ok(init(root, program=program))

    config = load_config(root / "shipyard.yaml")  # every key it wrote loads
    assert config.steps["build"].artifact == f"dist/{name}.tar.gz"
    assert config.gates == gates
    staging = config.environments["staging"]
    assert (staging.target, staging.start, dict(staging.options)) == (
        "local",
        start,
        {"port": 8787},
    )
    assert (staging.smoke.path, staging.smoke.expect_status) == ("/", 200)
    assert (root / "shipyard.yaml").read_text().startswith("# ")  # commented for its reader
    assert (root / "tasks.py").read_text() == TASKS_PY
    assert (root / ".gitignore").read_text().splitlines()[1:] == IGNORED
    assert "wrote shipyard.yaml" in done.stdout and "wrote tasks.py" in done.stdout
    assert done.stdout.splitlines()[-1] == "next: inv deploy.staging"


@pytest.mark.parametrize("name", ["python-hello", "node-hello"])
def test_the_written_config_passes_doctor(tmp_path, name):
    root = sample(name, tmp_path)
    ok(init(root))
    on_port(root, free_port())
    doctor = ok(run_here(["doctor"], root))
    assert doctor.stdout.splitlines()[-1] == "doctor: ready", doctor.stdout


def test_the_build_packs_neither_shipyard_folders_nor_earlier_builds(tmp_path):
    root = sample("python-hello", tmp_path)
    ok(init(root))
    for made in (
        "artifacts/devops/2024-05-01/run.json",
        "feedback/devops/2024-05-01.md",
        ".shipyard/staging/releases/v1/app.py",
        "dist/python-hello-0.9.tar.gz",
        ".git/HEAD",
        "node_modules/left-pad/index.js",
        ".venv/bin/python",
        "tests/__pycache__/test_app.cpython-311.pyc",
        "docs/dist/kept.txt",  # only the top folders are left out
    ):
        (root / made).parent.mkdir(parents=True, exist_ok=True)
        (root / made).write_text("x")

    build(root)
    members = build(root)  # a second build must not pack the first

    assert {"app.py", "tests/test_app.py", "docs/dist/kept.txt"} <= set(members)
    packed = {name.split("/")[0] for name in members}
    assert not packed & {*NEVER_IN_A_RELEASE, ".venv"}, members
    assert not any("__pycache__" in name for name in members), members
    assert file_names(root / "dist") == {"python-hello.tar.gz", "python-hello-0.9.tar.gz"}


def test_node_modules_ship_only_with_dependencies(tmp_path):
    plain = sample("node-hello", tmp_path / "plain")
    (plain / "node_modules" / "dev-tool").mkdir(parents=True)
    (plain / "node_modules" / "dev-tool" / "index.js").write_text("")
    ok(init(plain))
    assert not [name for name in build(plain) if name.startswith("node_modules")]

    with_dependencies = sample("node-hello", tmp_path / "with")
    package = json.loads((with_dependencies / "package.json").read_text())
    package["dependencies"] = {"left-pad": "1.3.0"}
    (with_dependencies / "package.json").write_text(json.dumps(package))
    ok(init(with_dependencies))
    missing = run_build(with_dependencies)
    assert missing.returncode == 1 and "run npm ci" in missing.stderr
    (with_dependencies / "node_modules" / "left-pad").mkdir(parents=True)
    (with_dependencies / "node_modules" / "left-pad" / "index.js").write_text("")
    assert "node_modules/left-pad/index.js" in build(with_dependencies)


@pytest.mark.parametrize(
    ("file", "source", "start"),
    [
        (
            "app.py",
            "from flask import Flask\n\nweb = Flask(__name__)\n",
            'python3 -m flask --app app:web run --host "$HOST" --port {port}',
        ),
        (
            "main.py",
            "import fastapi\n\napp = fastapi.FastAPI()\n",
            'python3 -m uvicorn main:app --host "$HOST" --port {port}',
        ),
        (
            "wsgi.py",
            "def application(environ, start_response):\n    return []\n",
            'python3 -m gunicorn --bind "$HOST:$PORT" wsgi:application',
        ),
        ("shop/__main__.py", "print('serving')\n", "python3 -m shop"),
    ],
)
def test_python_apps_get_the_start_command_their_framework_needs(tmp_path, file, source, start):
    (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / file).write_text(source)
    (tmp_path / "shipyard.yaml").write_text(plan_init(tmp_path).config_text)
    assert load_config(tmp_path / "shipyard.yaml").environments["staging"].start == start


# --- what it keeps and refuses ---------------------------------------------------------------


def test_an_existing_shipyard_yaml_is_refused_and_nothing_is_written(tmp_path):
    root = sample("python-hello", tmp_path)
    (root / "shipyard.yaml").write_text("# mine\n")
    before = file_names(root)
    done = init(root)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("shipyard.yaml exists")
    assert (root / "shipyard.yaml").read_text() == "# mine\n"
    assert file_names(root) == before


def test_an_existing_tasks_py_is_kept(tmp_path):
    root = sample("node-hello", tmp_path)
    (root / "tasks.py").write_text("from invoke import task\n")
    done = ok(init(root))
    assert (root / "tasks.py").read_text() == "from invoke import task\n"
    assert "kept tasks.py" in done.stdout
    assert done.stdout.splitlines()[-1] == "next: shipyard deploy.staging"  # inv lacks the tasks


def test_ignore_lines_are_added_once(tmp_path):
    root = sample("python-hello", tmp_path)
    (root / ".gitignore").write_text("node_modules/\ndist/")  # no final newline; dist/ counts
    ok(init(root))
    expected = "node_modules/\ndist/\n# Shipyard: evidence, feedback, deploy state, builds\n"
    expected += "/artifacts/\n/feedback/\n/.shipyard/\n"
    assert (root / ".gitignore").read_text() == expected

    (root / "shipyard.yaml").unlink()
    again = ok(init(root))
    assert (root / ".gitignore").read_text() == expected
    assert ".gitignore has every line already" in again.stdout


def test_no_app_found_says_what_it_looked_for(tmp_path):
    (tmp_path / "README.md").write_text("notes\n")
    done = init(tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert all(word in done.stderr for word in ("package.json", "app.py", "--kind")), done.stderr
    assert file_names(tmp_path) == {"README.md"}


def test_kind_overrides_detection_and_dry_run_writes_nothing(tmp_path):
    root = sample("node-hello", tmp_path)
    shutil.copy(APPS / "python-hello" / "app.py", root)
    before = file_names(root)

    as_found = ok(init(root, "--dry-run"))
    assert "start: npm start" in as_found.stdout and "would write tasks.py:" in as_found.stdout
    as_python = ok(init(root, "--kind", "python", "-n"))
    assert "start: python3 app.py" in as_python.stdout
    assert "would add to .gitignore: /artifacts/ /feedback/ /.shipyard/ /dist/" in as_python.stdout
    assert file_names(root) == before

    unknown = init(root, "--kind", "ruby")
    assert unknown.returncode == 2 and "--kind" in unknown.stderr
    assert file_names(root) == before


def test_a_gitignore_linking_outside_the_project_is_refused(tmp_path):
    root = sample("python-hello", tmp_path)
    outside = tmp_path / "elsewhere.gitignore"
    outside.write_text("*.log\n")
    (root / ".gitignore").symlink_to(outside)
    done = init(root)
    assert done.returncode == 2 and ".gitignore links outside" in done.stderr, done.stderr
    assert outside.read_text() == "*.log\n"
    assert not (root / "shipyard.yaml").exists() and not (root / "tasks.py").exists()


# --- end to end: init, deploy, stop --------------------------------------------------------


@pytest.fixture
def servers_stopped():
    """Roots whose staging server is stopped after the test, should the test not stop it."""
    roots: list[Path] = []
    yield roots
    for root in roots:  # `inv stop` stops a direct server, or Caddy and every server
        run_cli([str(BIN / "inv"), "stop", "--env", "staging"], root)


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["python-hello", "node-hello"])
def test_init_then_deploy_staging_serves_the_sample_and_stop_stops_it(
    tmp_path, name, servers_stopped
):
    if name == "node-hello" and shutil.which("npm") is None:
        pytest.skip("npm is not on PATH")
    root = sample(name, tmp_path)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", name]):
        subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True)
    ok(run_cli([str(BIN / "shipyard"), "init"], root))
    port = free_port()
    on_port(root, port)

    ok(run_cli([str(BIN / "inv"), "gates"], root))
    servers_stopped.append(root)
    ok(run_cli([str(BIN / "inv"), "deploy.staging"], root))
    assert http_get(f"http://127.0.0.1:{port}/") == (200, f"hello from {name}, release=v1\n")

    stopped = ok(run_cli([str(BIN / "inv"), "stop"], root))
    assert "stopped v1" in stopped.stdout
    assert http_get(f"http://127.0.0.1:{port}/") == (None, "")
