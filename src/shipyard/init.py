"""`shipyard init`: tell which kind of app a folder holds (Python or Node) and write what its
first `inv deploy.staging` needs: a commented shipyard.yaml (a build, a `local` staging with
its smoke, the gates the project has), the three-line tasks.py, and the ignore lines for what
Shipyard writes (docs/getting-started.md).

It plans first (`plan_init` returns an `InitPlan`: every file and line it would write), then
writes (`write_plan`); `--dry-run` prints the same plan. Nothing is overwritten: an existing
shipyard.yaml refuses the command, an existing tasks.py is kept, and .gitignore only gains
the lines it lacks. Each file is written whole (a temp file beside it, then link(2) or
rename(2)), and only inside the project folder.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shipyard.errors import CannotWrite, ExitCode, UsageError
from shipyard.files import write_atomic
from shipyard.process import tools_path

__all__ = ["IGNORE_LINES", "TASKS_PY", "App", "InitPlan", "plan_init", "run_init", "write_plan"]

CONFIG_NAME = "shipyard.yaml"
TASKS_NAME = "tasks.py"
GITIGNORE_NAME = ".gitignore"
TASKS_PY = "from shipyard.tasks import namespace\n\nns = namespace()\n"
IGNORE_LINES = ("/artifacts/", "/feedback/", "/.shipyard/", "/dist/")
IGNORE_HEADING = "# Shipyard: evidence, feedback, deploy state, builds"
KINDS = ("python", "node")
ENVIRONMENT = "staging"
PORT = 8787
_KIND_NAMES = {"python": "Python", "node": "Node"}
MAX_READ = 1024 * 1024  # of package.json or a source file: a real one is far smaller

# Never in a release: Shipyard's own folders, earlier builds (the archive itself), git.
NEVER_PACKED = ("./.git", "./artifacts", "./feedback", "./.shipyard", "./dist")
PYTHON_NOT_PACKED = (
    "./node_modules",
    "./.venv",
    "./venv",
    "./.nox",
    "./.tox",
    "./.pytest_cache",
    "./.ruff_cache",
    "./.mypy_cache",
    "__pycache__",
)
PYTHON_MARKERS = (
    "pyproject.toml",
    "requirements.txt",
    "setup.py",
    "app.py",
    "main.py",
    "server.py",
    "wsgi.py",
)
PYTHON_ENTRIES = ("app.py", "main.py", "server.py", "wsgi.py")
NODE_ENTRIES = ("server.js", "index.js")
NPM_PLACEHOLDER_TEST = "no test specified"  # what `npm init` writes as the test script

_FASTAPI = re.compile(r"^(\w+)\s*=\s*(?:fastapi\.)?FastAPI\(", re.MULTILINE)
_FLASK = re.compile(r"^(\w+)\s*=\s*(?:flask\.)?Flask\(", re.MULTILINE)
_RUNS_AS_MAIN = re.compile(r"""^if\s+__name__\s*==\s*["']__main__["']""", re.MULTILINE)
_WSGI_CALLABLE = re.compile(r"^(?:def\s+(application)\s*\(|(application|app)\s*=)", re.MULTILINE)
_NODE_FILE = re.compile(r"(?:\./)?[A-Za-z0-9_][A-Za-z0-9._/-]*\.[cm]?js")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Start:
    """How the app starts: the `start:` command, what it was found by, and the module it
    needs installed (flask, uvicorn, gunicorn), if any."""

    command: str
    found: str
    needs: str = ""


@dataclass(frozen=True)
class Gate:
    name: str
    run: str
    why: str  # the comment beside it: what in the project it comes from


@dataclass(frozen=True)
class App:
    kind: str  # "python" or "node"
    name: str  # the tarball is dist/<name>.tar.gz
    start: Start
    gates: tuple[Gate, ...]
    not_packed: tuple[str, ...]  # tar --exclude patterns
    ships_node_modules: bool = False
    left_out: tuple[str, ...] = ()  # gates the project has that cannot run here, and why
    notes: tuple[str, ...] = ()  # what `start` needs and is missing

    @property
    def tarball(self) -> str:
        return f"dist/{self.name}.tar.gz"


@dataclass(frozen=True)
class InitPlan:
    root: Path
    app: App
    config_text: str
    tasks_py: str | None  # None: tasks.py exists and is kept
    gitignore: Path  # where the ignore lines go (the target of a link, inside root)
    gitignore_text: str | None  # its whole new text; None: it has every line already
    added_lines: tuple[str, ...]
    next_command: str


# --- the command ---------------------------------------------------------------------------


def run_init(
    root: Path, *, kind: str = "", dry_run: bool = False, environ: Mapping[str, str] = os.environ
) -> ExitCode:
    """Plan, then write (or, with `dry_run`, print) the files; UsageError when there is
    nothing to do (a shipyard.yaml exists, no app found)."""
    plan = plan_init(root, kind=kind, environ=environ)
    if dry_run:
        print("\n".join(dry_run_lines(plan)))
        return ExitCode.OK
    write_plan(plan)
    print("\n".join(written_lines(plan)))
    return ExitCode.OK


def plan_init(root: Path, *, kind: str = "", environ: Mapping[str, str] = os.environ) -> InitPlan:
    if os.path.lexists(root / CONFIG_NAME):
        raise UsageError(
            f"{CONFIG_NAME} exists: init does not overwrite it (edit it, or move it away"
            " and run init again)"
        )
    app = detect(root, kind, environ)
    tasks = root / TASKS_NAME
    gitignore = _gitignore_path(root)
    existing = _read_text(gitignore) if gitignore.is_file() else ""
    added = missing_ignore_lines(existing)
    return InitPlan(
        root=root,
        app=app,
        config_text=render_config(app),
        tasks_py=None if os.path.lexists(tasks) else TASKS_PY,
        gitignore=gitignore,
        gitignore_text=_with_ignore_lines(existing, added) if added else None,
        added_lines=added,
        next_command=f"{_runner(tasks)} deploy.{ENVIRONMENT}",
    )


def _runner(tasks: Path) -> str:
    """`inv` when tasks.py holds (or will hold) Shipyard's tasks, else the `shipyard` script."""
    if not os.path.lexists(tasks):
        return "inv"
    return "inv" if "shipyard.tasks" in _read_text(tasks) else "shipyard"


# --- what the app is -----------------------------------------------------------------------


def detect(root: Path, kind: str = "", environ: Mapping[str, str] = os.environ) -> App:
    """The app in `root`, of `kind` or of the kind its files say."""
    if kind and kind not in KINDS:
        raise UsageError(f"--kind: expected python or node, got {kind!r}")
    package = None if kind == "python" else _package_json(root)
    chosen = kind or _detect_kind(root, package)
    if chosen == "node":
        return _node_app(root, package or {}, environ)
    return _python_app(root, environ)


def _detect_kind(root: Path, package: dict[str, Any] | None) -> str:
    """Node when package.json has a start script; else Python when a Python file says so;
    else Node when server.js or index.js is there."""
    if package is not None and _script(package, "start"):
        return "node"
    if any((root / name).is_file() for name in PYTHON_MARKERS) or _main_packages(root):
        return "python"
    if any((root / name).is_file() for name in NODE_ENTRIES):
        return "node"
    raise UsageError(
        f"no app found in {root}: looked for a Node app (package.json with a start script,"
        f" {', '.join(NODE_ENTRIES)}) and a Python app ({', '.join(PYTHON_MARKERS)}, a package"
        " with __main__.py); pass --kind python or --kind node to say which"
    )


def _python_app(root: Path, environ: Mapping[str, str]) -> App:
    start = _python_start(root)
    gates, left_out = _python_gates(root, environ)
    missing = start.needs and importlib.util.find_spec(start.needs) is None
    note = (
        f"start needs {start.needs}, which the Python running Shipyard cannot import (a server"
        f" runs with that Python first on PATH): pip install {start.needs}"
    )
    return App(
        kind="python",
        name=tarball_name(root.name),
        start=start,
        gates=gates,
        not_packed=(*NEVER_PACKED, *PYTHON_NOT_PACKED),
        left_out=left_out,
        notes=(note,) if missing else (),
    )


def _python_start(root: Path) -> Start:
    for name in PYTHON_ENTRIES:
        if (root / name).is_file():
            found = _python_file_start(root / name)
            if found:
                return found
    packages = _main_packages(root)
    if packages:
        return Start(f"python3 -m {packages[0]}", f"{packages[0]}/__main__.py")
    raise UsageError(
        f"no Python app to start in {root}: looked for {', '.join(PYTHON_ENTRIES)} (a Flask or"
        " FastAPI app, a script run as __main__, a WSGI `application` in wsgi.py) and a"
        " package with __main__.py"
    )


def _python_file_start(path: Path) -> Start | None:
    text, module = _read_text(path), path.stem
    if match := _FASTAPI.search(text):
        command = f'python3 -m uvicorn {module}:{match[1]} --host "$HOST" --port {{port}}'
        return Start(command, f"{path.name} (a FastAPI app)", "uvicorn")
    if match := _FLASK.search(text):
        command = f'python3 -m flask --app {module}:{match[1]} run --host "$HOST" --port {{port}}'
        return Start(command, f"{path.name} (a Flask app)", "flask")
    if _RUNS_AS_MAIN.search(text):
        what = "an http.server app" if "http.server" in text else "a script run as __main__"
        return Start(f"python3 {path.name}", f"{path.name} ({what})")
    if path.name == "wsgi.py" and (match := _WSGI_CALLABLE.search(text)):
        command = f'python3 -m gunicorn --bind "$HOST:$PORT" {module}:{match[1] or match[2]}'
        return Start(command, f"{path.name} (a WSGI app)", "gunicorn")
    return None


def _main_packages(root: Path) -> list[str]:
    found = (path.parent.name for path in root.glob("*/__main__.py"))
    return sorted(name for name in found if name.isidentifier())


def _python_gates(
    root: Path, environ: Mapping[str, str]
) -> tuple[tuple[Gate, ...], tuple[str, ...]]:
    wanted: list[Gate] = []
    pyproject = _read_text(root / "pyproject.toml") if (root / "pyproject.toml").is_file() else ""
    ruff_config = next((n for n in ("ruff.toml", ".ruff.toml") if (root / n).is_file()), "")
    if ruff_config or "[tool.ruff" in pyproject:
        wanted.append(Gate("lint", "ruff check .", f"ruff: {ruff_config or 'pyproject.toml'}"))
    tests = _python_tests(root, pyproject)
    if tests:
        wanted.append(Gate("test", "pytest -q", f"pytest: {tests}"))
    return _runnable(wanted, environ)


def _python_tests(root: Path, pyproject: str) -> str:
    """What says the project has pytest tests ("tests/", "pytest.ini"), or ""."""
    folders = [f"{name}/" for name in ("tests", "test") if (root / name).is_dir()]
    files = [n for n in ("pytest.ini", "conftest.py") if (root / n).is_file()]
    files += sorted(path.name for path in root.glob("test_*.py"))[:1]
    configured = ["[tool.pytest] in pyproject.toml"] if "[tool.pytest" in pyproject else []
    return next(iter(folders + files + configured), "")


def _node_app(root: Path, package: dict[str, Any], environ: Mapping[str, str]) -> App:
    start = _node_start(root, package)
    dependencies = package.get("dependencies")
    ships_node_modules = isinstance(dependencies, dict) and bool(dependencies)
    wanted = [
        Gate(name, run, f"scripts.{script} in package.json")
        for name, run, script in (("lint", "npm run lint", "lint"), ("test", "npm test", "test"))
        if _script(package, script) and NPM_PLACEHOLDER_TEST not in _script(package, script)
    ]
    gates, left_out = _runnable(wanted, environ)
    name = package.get("name")
    return App(
        kind="node",
        name=tarball_name(name if isinstance(name, str) and name else root.name),
        start=start,
        gates=gates,
        not_packed=NEVER_PACKED if ships_node_modules else (*NEVER_PACKED, "./node_modules"),
        ships_node_modules=ships_node_modules,
        left_out=left_out,
    )


def _node_start(root: Path, package: dict[str, Any]) -> Start:
    script = _script(package, "start")
    if script:
        return Start("npm start", f"package.json (start: {script})")
    main = package.get("main")
    declared = [main] if isinstance(main, str) and _NODE_FILE.fullmatch(main) else []
    for name in (*NODE_ENTRIES, *declared):
        if ".." not in name.split("/") and (root / name).is_file():
            return Start(f"node {name}", name)
    raise UsageError(
        f"no Node app to start in {root}: looked for a start script in package.json,"
        f" {', '.join(NODE_ENTRIES)} and package.json's main"
    )


def _script(package: dict[str, Any], name: str) -> str:
    scripts = package.get("scripts")
    command = scripts.get(name) if isinstance(scripts, dict) else None
    return command.strip() if isinstance(command, str) else ""


def _runnable(
    wanted: list[Gate], environ: Mapping[str, str]
) -> tuple[tuple[Gate, ...], tuple[str, ...]]:
    """The gates whose program is on PATH (as `shipyard doctor` looks for it), then
    Shipyard's own secret scan; a note for each one left out."""
    path = tools_path(environ)
    gates, notes = [], []
    for gate in wanted:
        program = gate.run.split()[0]
        if shutil.which(program, path=path):
            gates.append(gate)
        else:
            notes.append(f"gate {gate.name} (`{gate.run}`, {gate.why}): {program} is not on PATH")
    gates.append(Gate("scan", "shipyard scan", "Shipyard's secret scan of the tracked files"))
    return tuple(gates), tuple(notes)


def tarball_name(name: str) -> str:
    """`name` safe as a file name, a shell word and a glob: `@team/web app` → `team-web-app`."""
    return _NAME_CHARS.sub("-", name).strip(".-_") or "app"


# --- the files -----------------------------------------------------------------------------


def render_config(app: App) -> str:
    gate_names = ", ".join(gate.name for gate in app.gates)
    lines = [
        f"# Shipyard's pipeline for a {_KIND_NAMES[app.kind]} app: {app.start.found}.",
        "# Written by `shipyard init`; every key is in Shipyard's docs/configuration.md.",
        "# `shipyard doctor` checks it and this machine; `inv deploy.staging` deploys.",
        "version: 1",
        "",
        "steps:",
        *_build_lines(app),
        *(_commented(f"  {gate.name}: {gate.run}", gate.why) for gate in app.gates),
        "",
        "# `inv gates` runs these in parallel and reports every failure.",
        f"gates: [{gate_names}]",
        "",
        "environments:",
        *_environment_lines(app),
    ]
    return "\n".join(lines) + "\n"


def _build_lines(app: App) -> list[str]:
    part = f"dist/.{app.name}.tar.gz.part"
    excludes = [f"--exclude={pattern}" for pattern in app.not_packed]
    rows = [" ".join(excludes[i : i + 4]) for i in range(0, len(excludes), 4)]
    run = ["mkdir -p dist &&", f"tar -czf {part}", *rows, ". &&", f"mv {part} {app.tarball}"]
    node_modules = [
        "  # node_modules ships: package.json has dependencies, and a release installs nothing.",
        "  # Run `npm ci` before building (`npm ci --omit=dev` ships no dev dependencies).",
    ]
    if app.ships_node_modules:
        guard = (
            "test -d node_modules || { echo 'node_modules is missing: run npm ci' >&2; exit 1; }"
        )
        run.insert(0, f"{guard} &&")
    return [
        "  # The release: this folder as a tarball, without Shipyard's folders (artifacts/,",
        "  # feedback/, .shipyard/), earlier builds (dist/) and .git. It is written to a temp",
        "  # name first, so it never holds itself and a deploy never takes half of one.",
        *(node_modules if app.ships_node_modules else []),
        "  build:",
        "    run: >-",
        *(f"      {row}" for row in run),
        f"    artifact: {app.tarball}",
        "    timeout: 10m",
    ]


def _environment_lines(app: App) -> list[str]:
    needs = app.start.needs
    installed = (
        [f"    # It needs {needs} installed for the Python that runs Shipyard."] if needs else []
    )
    return [
        f"  {ENVIRONMENT}:",
        _commented("    target: local", "this machine: releases in .shipyard/staging/"),
        "    # The server, run in the unpacked release. Shipyard sets PORT (also the {port}",
        "    # placeholder) and HOST in its environment: the app listens there.",
        *installed,
        f"    start: {_scalar(app.start.command)}",
        _commented(f"    port: {PORT}", f"http://127.0.0.1:{PORT}/ once deployed"),
        "    # Checked after each deploy: a release that does not answer it is rolled back.",
        "    smoke: {path: /, expect_status: 200, timeout: 30s}",
    ]


def _commented(line: str, comment: str) -> str:
    return f"{line:<36} # {comment}"


def _scalar(text: str) -> str:
    """`text` as a YAML scalar: plain when YAML reads it back as the same text, else quoted."""
    try:
        plain = yaml.safe_load(f"key: {text}") == {"key": text}
    except yaml.YAMLError:
        plain = False
    return text if plain else json.dumps(text)


def missing_ignore_lines(text: str) -> tuple[str, ...]:
    """The lines of IGNORE_LINES that `text` lacks; `dist/`, `/dist` or `dist` count as
    `/dist/` (each ignores at least that folder)."""
    present = {line.strip().strip("/") for line in text.splitlines()}
    return tuple(line for line in IGNORE_LINES if line.strip("/") not in present)


def _with_ignore_lines(text: str, lines: tuple[str, ...]) -> str:
    separator = "\n" if text and not text.endswith("\n") else ""
    return text + separator + "\n".join((IGNORE_HEADING, *lines)) + "\n"


def _gitignore_path(root: Path) -> Path:
    """.gitignore, or the file it links to when that is inside `root`; it must be a file."""
    path = root / GITIGNORE_NAME
    if path.is_symlink():
        target = path.resolve()
        if root.resolve() not in target.parents:
            raise UsageError(
                f"{GITIGNORE_NAME} links outside the project (to {target}): not changed;"
                f" add {' '.join(IGNORE_LINES)} to it yourself"
            )
        path = target
    if path.exists() and not path.is_file():
        raise UsageError(f"{GITIGNORE_NAME} is not a file: move it away and run init again")
    return path


def write_plan(plan: InitPlan) -> None:
    """.gitignore's lines, tasks.py, then shipyard.yaml: after a failure part way, running
    init again finishes the job (nothing is added twice, nothing overwritten)."""
    if plan.gitignore_text is not None:
        _write_file(plan.gitignore, plan.gitignore_text, replace=True)
    if plan.tasks_py is not None:
        # one that appeared meanwhile is kept, as one that was there would have been
        _write_file(plan.root / TASKS_NAME, plan.tasks_py, keep=True)
    _write_file(plan.root / CONFIG_NAME, plan.config_text)


def _write_file(path: Path, text: str, *, replace: bool = False, keep: bool = False) -> None:
    """`text` as `path`, whole: over the file there with `replace`; else a new file (an
    existing one is kept with `keep`, refused without). Failing, one line naming it."""
    try:
        if replace and path.exists():
            write_atomic(path, text.encode(), scratch=path.parent)
        else:
            _write_new(path, text)
    except FileExistsError:
        if not keep:
            raise UsageError(f"{path.name} appeared while init ran: not overwritten") from None
    except OSError as error:
        raise CannotWrite.of(path, error) from None


def _write_new(path: Path, text: str) -> None:
    """`text` as the new file `path`, whole or not at all, never over one that exists (or a
    link, even a dangling one): a temp file beside it, fsync, then link(2), which refuses an
    existing name. Where links are not supported, a rename after a last check."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temp).chmod(0o644)
        try:
            os.link(temp, path)
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            if os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
            Path(temp).replace(path)
    finally:
        Path(temp).unlink(missing_ok=True)


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as file:
            return file.read(MAX_READ).decode("utf-8", errors="replace")
    except OSError as error:
        raise UsageError(f"cannot read {path.name}: {error.strerror or error}") from None


def _package_json(root: Path) -> dict[str, Any] | None:
    path = root / "package.json"
    if not path.is_file():
        return None
    try:
        document = json.loads(_read_text(path))
    except ValueError as error:
        raise UsageError(f"package.json: not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise UsageError("package.json: expected a JSON object")
    return document


# --- what it says --------------------------------------------------------------------------


def _summary(plan: InitPlan) -> list[str]:
    app = plan.app
    return [
        f"{_KIND_NAMES[app.kind]} app: {app.start.found}",
        f"  build: {app.tarball}",
        f"  {ENVIRONMENT} (target local, http://127.0.0.1:{PORT}/): start `{app.start.command}`",
        f"  gates: {', '.join(gate.name for gate in app.gates)}",
        *(f"  left out: {note}" for note in app.left_out),
        *(f"  note: {note}" for note in app.notes),
    ]


def written_lines(plan: InitPlan) -> list[str]:
    from shipyard import git

    lines = [*_summary(plan), f"wrote {CONFIG_NAME}"]
    lines.append(f"wrote {TASKS_NAME}" if plan.tasks_py else _kept_tasks(plan))
    lines.append(_ignore_line(plan, "added to"))
    tree = git.tree_state(plan.root)
    if tree.dirty:
        lines.append(
            f"commit first: a deploy refuses uncommitted changes to tracked files"
            f" ({tree.describe_changes()})"
        )
    lines.append(f"next: {plan.next_command}")
    return lines


def dry_run_lines(plan: InitPlan) -> list[str]:
    indent = "    "
    config = [indent + line if line else "" for line in plan.config_text.splitlines()]
    lines = [*_summary(plan), f"would write {CONFIG_NAME}:", *config]
    if plan.tasks_py:
        tasks = [indent + line if line else "" for line in plan.tasks_py.splitlines()]
        lines += [f"would write {TASKS_NAME}:", *tasks]
    else:
        lines.append(_kept_tasks(plan))
    lines.append(_ignore_line(plan, "would add to"))
    lines.append(f"dry run: nothing written; then: {plan.next_command}")
    return lines


def _kept_tasks(plan: InitPlan) -> str:
    if plan.next_command.startswith("inv "):
        return f"kept {TASKS_NAME} (it exists)"
    return (
        f"kept {TASKS_NAME} (it exists, without Shipyard's tasks: for `inv`, add"
        " `from shipyard.tasks import namespace` and `ns = namespace()` to it)"
    )


def _ignore_line(plan: InitPlan, verb: str) -> str:
    if not plan.added_lines:
        return f"{GITIGNORE_NAME} has every line already"
    return f"{verb} {GITIGNORE_NAME}: {' '.join(plan.added_lines)}"
