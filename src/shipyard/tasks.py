"""invoke tasks: a few lines each over `shipyard.commands`.

Use from a project's `tasks.py`:

    from shipyard.tasks import namespace
    ns = namespace()
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task

from shipyard import commands
from shipyard.config import DEFAULT_AGENT, Config, find_config, load
from shipyard.errors import ExitCode, ShipyardError, UsageError, Verdict, exit_code_for
from shipyard.streams import outlive_readers

DEFAULT_ENVIRONMENT = "staging"
_TASK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
# Listing reads the config for its environment names: libyaml's parser when PyYAML has it
# (a tenth of the pure-Python parser's time), the same safe subset of YAML either way.
_FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Ended = Verdict | ExitCode | int
CONFIG_HELP = "shipyard.yaml to use (default: $SHIPYARD_CONFIG, or found upwards from here)"


def private_umask() -> None:
    """Nothing Shipyard writes (state, evidence, logs) may be writable by group or others,
    whatever umask the caller had."""
    os.umask(os.umask(0) | 0o022)


# invoke's core options that Shipyard's tasks have no use for: steps are never run through
# invoke's `c.run`, so these would be accepted and silently do nothing. Refused (exit 2).
_IGNORED_CORE_OPTIONS = {
    ("run", "pty"): "--pty",
    ("run", "warn"): "-w/--warn-only",
    ("run", "echo"): "-e/--echo",
    ("run", "hide"): "--hide",
    ("sudo", "password"): "--prompt-for-sudo-password",
    ("timeouts", "command"): "-T/--command-timeout (use a step's timeout: in shipyard.yaml)",
}
# One meaning per short flag across every task, and none that is also a core flag.
SHORT_FLAGS = {"dry-run": "n", "jobs": "j", "verbose": "v", "quiet": "q"}
# How a task that reports says it (docs/cli.md, "Output" and "JSON output").
OUTPUT_HELP = {
    "verbose": "say more: each step's command and log file",
    "quiet": "print only the last line (and errors, on stderr)",
    "no-color": "no colour, even on a terminal (as NO_COLOR=1)",
    "json": "print one JSON document on stdout; the progress goes to stderr",
}
JSON_HELP = "print one JSON document on stdout"  # a task with no progress to show


class ShipyardTask(Task[Any]):
    """A task whose options have only the short flags in `SHORT_FLAGS` (invoke would derive
    one from each option's first free letter, giving `-d` and `-j` two meanings)."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(opts["names"][0])
        if short and short not in taken_names:
            opts["names"].append(short)
        return opts


def shipyard_task(**options: Any) -> Callable[[Callable[..., None]], Task[Any]]:
    """invoke's `@task(**options)`, making a ShipyardTask without derived short flags."""

    def decorate(body: Callable[..., None]) -> Task[Any]:
        return ShipyardTask(body, auto_shortflags=False, **options)

    return decorate


def _refuse_ignored_core_options(c: Context, *, dry_ok: bool) -> None:
    for (section, key), flag in _IGNORED_CORE_OPTIONS.items():
        if c.config.get(section, {}).get(key) not in (None, False):  # an empty password too
            raise UsageError(f"{flag} does nothing in Shipyard's tasks; leave it out")
    if c.config.get("run", {}).get("dry") and not dry_ok:
        raise UsageError(
            "--dry/-R: this task has no dry run (deploy.<env>, rollback, contract and init"
            " have one: --dry-run); leave it out"
        )


def _exits(body: Callable[..., Ended], *, dry: str = "refuse") -> Callable[..., None]:
    """How a command ended (a Verdict, an ExitCode) or a ShipyardError raised before its run,
    as invoke's `Exit`: one line, no traceback, the documented code. `dry` says what invoke's
    own `--dry` means for this task: "refuse" it, "map" it to `dry_run=True`, or "ignore" it
    (a read-only task changes nothing anyway)."""

    @functools.wraps(body)
    def wrapper(c: Context, *args: Any, **kwargs: Any) -> None:
        private_umask()
        try:
            _refuse_ignored_core_options(c, dry_ok=dry != "refuse")
            if dry == "map" and c.config.get("run", {}).get("dry"):
                kwargs["dry_run"] = True
            ended = body(c, *args, **kwargs)
        except ShipyardError as error:
            if kwargs.get("json"):  # `--json` promises a document on stdout, refusals too
                commands.print_json_error(error)
            raise Exit(error.message, exit_code_for(error)) from None
        code = int(ended.exit_code if isinstance(ended, Verdict) else ended)
        if code:
            raise Exit(code=code)

    return wrapper


_read_only = functools.partial(_exits, dry="ignore")
_dry_run_mapped = functools.partial(_exits, dry="map")


@shipyard_task(
    help={
        "config": CONFIG_HELP,
        "jobs": "parallel steps: a number or 'auto' (CPUs)",
        "fail-fast": "start no further gate after the first failure",
        "list": "list the gates (a line each; one per shard) and run nothing; with --json, "
        "the legs of a CI matrix",
        **OUTPUT_HELP,
    }
)
@_exits
def gates(  # noqa: PLR0917 - invoke turns each parameter into a flag
    c: Context,
    config: str = "",
    jobs: str = "auto",
    fail_fast: bool = False,
    list: bool = False,
    verbose: bool = False,
    quiet: bool = False,
    no_color: bool = False,
    json: bool = False,
) -> Ended:
    """Run all gates in parallel and report every failure."""
    if list:
        return commands.list_gates(load(config or None), as_json=json)
    output = commands.output_options(verbose=verbose, quiet=quiet, no_color=no_color, as_json=json)
    return commands.gates(load(config or None), jobs=jobs, fail_fast=fail_fast, output=output)


@shipyard_task(
    positional=["name"],
    help={"name": "a step from shipyard.yaml", "config": CONFIG_HELP, **OUTPUT_HELP},
)
@_exits
def step(  # noqa: PLR0917 - invoke turns each parameter into a flag
    c: Context,
    name: str,
    config: str = "",
    verbose: bool = False,
    quiet: bool = False,
    no_color: bool = False,
    json: bool = False,
) -> Ended:
    """Run one configured step, with heartbeat and evidence."""
    output = commands.output_options(verbose=verbose, quiet=quiet, no_color=no_color, as_json=json)
    return commands.step(load(config or None), name, output=output)


@shipyard_task(help={"config": CONFIG_HELP, **OUTPUT_HELP})
@_exits
def build(  # noqa: PLR0917 - invoke turns each parameter into a flag
    c: Context,
    config: str = "",
    verbose: bool = False,
    quiet: bool = False,
    no_color: bool = False,
    json: bool = False,
) -> Ended:
    """Build the release artifact (the `build` step)."""
    output = commands.output_options(verbose=verbose, quiet=quiet, no_color=no_color, as_json=json)
    return commands.build(load(config or None), output=output)


@shipyard_task(
    help={
        "config": CONFIG_HELP,
        "baseline": "allowlist file (default .secrets.baseline)",
        "write-baseline": "accept every current finding into the baseline",
    }
)
@_exits
def scan(c: Context, config: str = "", baseline: str = "", write_baseline: bool = False) -> Ended:
    """Secret-scan the git-tracked files; SARIF into the evidence."""
    found = commands.optional_config(config or None)
    root, agent = _root_and_agent(found)
    return commands.scan(root, agent, baseline=baseline, write_baseline=write_baseline)


@shipyard_task(positional=["agent"], help={"agent": "evidence folder name, e.g. devops"})
@_exits
def heartbeat(c: Context, agent: str) -> Ended:
    """Run `-- CMD...` in the heartbeat, keeping its exit code."""
    return commands.heartbeat(agent, shlex.split(c.remainder))


@shipyard_task(
    help={
        "date": "UTC day as YYYY-MM-DD (default today)",
        "bundles": "verify every bundle under this folder instead (as downloaded from CI "
        "runners); in Actions, one step summary of all their steps",
        "config": CONFIG_HELP,
        "no-color": OUTPUT_HELP["no-color"],
        "json": JSON_HELP,
    }
)
@_read_only
def verify(  # noqa: PLR0917 - invoke turns each parameter into a flag
    c: Context,
    date: str = "",
    bundles: str = "",
    config: str = "",
    no_color: bool = False,
    json: bool = False,
) -> Ended:
    """Re-hash a day's evidence; name every file that differs."""
    found = commands.optional_config(config or None)
    output = commands.output_options(no_color=no_color, as_json=json)
    redactor = commands.redactor_for(found)
    if bundles:
        if date:
            raise UsageError("--bundles verifies every day found under it: give no --date")
        return commands.verify_bundles(Path(bundles), output=output, redactor=redactor)
    root, agent = _root_and_agent(found)
    return commands.verify_evidence(root, agent, date, output=output, redactor=redactor)


@shipyard_task(
    help={
        "run": "the run to attest (default: the day's newest that deployed a file)",
        "date": "UTC day as YYYY-MM-DD (default: the run's, or today)",
        "config": CONFIG_HELP,
        "json": JSON_HELP,
    }
)
@_exits
def attest(
    c: Context, run: str = "", date: str = "", config: str = "", json: bool = False
) -> Ended:
    """Write a deploy's in-toto/SLSA provenance into the evidence."""
    from shipyard import provenance  # protobuf: not at every start-up

    found = commands.optional_config(config or None)
    root, agent = _root_and_agent(found)
    output = commands.output_options(as_json=json)
    redactor = commands.redactor_for(found)
    return provenance.attest_command(root, agent, date, run, redactor=redactor, output=output)


@shipyard_task(
    name="check",
    help={
        "base": "compare with this ref (default: a pull request's base in Actions, else "
        "origin's default branch, origin/main or main)",
        "config": CONFIG_HELP,
    },
)
@_read_only
def proof_check(c: Context, base: str = "", config: str = "") -> Ended:
    """Fail on deploy changes without a committed heartbeat proof."""
    from shipyard import proof

    found = commands.optional_config(config or None)
    return proof.proof_command(found, base=base, redactor=commands.redactor_for(found))


@shipyard_task(
    positional=["action"],
    help={
        "action": "install, uninstall, or run (what the hook runs)",
        "force": "install over a pre-push hook Shipyard did not write, setting it aside",
        "config": CONFIG_HELP,
        **OUTPUT_HELP,
    },
)
@_exits
def hooks(  # noqa: PLR0917 - invoke turns each parameter into a flag
    c: Context,
    action: str,
    force: bool = False,
    config: str = "",
    verbose: bool = False,
    quiet: bool = False,
    no_color: bool = False,
    json: bool = False,
) -> Ended:
    """Install or remove the pre-push hook (the quick gates)."""
    from shipyard.hooks import hooks_command

    output = commands.output_options(verbose=verbose, quiet=quiet, no_color=no_color, as_json=json)
    return hooks_command(action, config, force=force, output=output)


@shipyard_task(
    help={
        "workflow": "the workflow whose newest failed run to triage: its file or name "
        "(default: deploy-staging.yml)",
        "run": "triage this run instead: its number, as in …/actions/runs/<number>",
        "config": CONFIG_HELP,
        **{flag: text for flag, text in OUTPUT_HELP.items() if flag != "json"},
    }
)
@_read_only
def triage(  # noqa: PLR0917 - invoke turns each parameter into a flag
    c: Context,
    workflow: str = "deploy-staging.yml",
    run: str = "",
    config: str = "",
    verbose: bool = False,
    quiet: bool = False,
    no_color: bool = False,
) -> Ended:
    """Name the newest failed run, its failing step and log tail."""
    from shipyard.triage import triage_command  # through gh: not at every start-up

    output = commands.output_options(verbose=verbose, quiet=quiet, no_color=no_color)
    return triage_command(load(config or None), workflow=workflow, run_id=run, output=output)


@shipyard_task(help={"config": CONFIG_HELP, **OUTPUT_HELP})
@_read_only
def github(  # noqa: PLR0917 - invoke turns each parameter into a flag
    c: Context,
    config: str = "",
    verbose: bool = False,
    quiet: bool = False,
    no_color: bool = False,
    json: bool = False,
) -> Ended:
    """Audit GitHub: protection, environments, secrets, scanning."""
    from shipyard.repo_audit import audit_command

    output = commands.output_options(verbose=verbose, quiet=quiet, no_color=no_color, as_json=json)
    return audit_command(load(config or None), output=output)


ENV_HELP = "environment from shipyard.yaml (default: staging, or the only one)"


@shipyard_task(
    help={
        "env": ENV_HELP,
        "artifact": "tarball to smoke (default: newest build)",
        "config": CONFIG_HELP,
        **OUTPUT_HELP,
    }
)
@_exits
def smoke(  # noqa: PLR0917 - invoke turns each parameter into a flag
    c: Context,
    env: str = "",
    artifact: str = "",
    config: str = "",
    verbose: bool = False,
    quiet: bool = False,
    no_color: bool = False,
    json: bool = False,
) -> Ended:
    """Start the built artifact on a free port and probe it."""
    output = commands.output_options(verbose=verbose, quiet=quiet, no_color=no_color, as_json=json)
    return commands.smoke(load(config or None), env=env, artifact=artifact, output=output)


@shipyard_task(
    help={
        "env": ENV_HELP,
        "to": "release to go back to, e.g. v3 (default: newest good one before current)",
        "dry-run": "print the plan and check it; change nothing",
        "lock-wait": "wait this long for the lock, e.g. 60s",
        "force": "roll back even to a release whose files changed since it was made (audited)",
        "config": CONFIG_HELP,
        **OUTPUT_HELP,
    }
)
@_dry_run_mapped
def rollback(  # noqa: PLR0917 - invoke turns each parameter into a flag
    c: Context,
    env: str = "",
    to: str = "",
    dry_run: bool = False,
    json: bool = False,
    lock_wait: str = "",
    force: bool = False,
    config: str = "",
    verbose: bool = False,
    quiet: bool = False,
    no_color: bool = False,
) -> Ended:
    """Go back to the previous good release (or --to vN)."""
    output = commands.output_options(verbose=verbose, quiet=quiet, no_color=no_color, as_json=json)
    return commands.rollback(
        load(config or None),
        env=env,
        to=to,
        dry_run=dry_run,
        lock_wait=lock_wait,
        force=force,
        output=output,
    )


READ_ONLY_HELP = {
    "env": ENV_HELP,
    "json": JSON_HELP,
    "no-color": OUTPUT_HELP["no-color"],
    "config": CONFIG_HELP,
}


@shipyard_task(help=READ_ONLY_HELP)
@_read_only
def releases(
    c: Context, env: str = "", json: bool = False, config: str = "", no_color: bool = False
) -> Ended:
    """List an environment's releases, newest first."""
    output = commands.output_options(no_color=no_color, as_json=json)
    return commands.releases(load(config or None), env=env, output=output)


@shipyard_task(help=READ_ONLY_HELP)
@_read_only
def status(
    c: Context, env: str = "", json: bool = False, config: str = "", no_color: bool = False
) -> Ended:
    """Show what serves an environment, and check its health."""
    output = commands.output_options(no_color=no_color, as_json=json)
    return commands.status(load(config or None), env=env, output=output)


@shipyard_task(help={"env": ENV_HELP, "config": CONFIG_HELP})
@_exits
def stop(c: Context, env: str = "", config: str = "") -> Ended:
    """Stop an environment's local server; `current` stays."""
    return commands.stop(load(config or None), env=env)


@shipyard_task(name="status", help={"env": ENV_HELP, "json": "print JSON", "config": CONFIG_HELP})
@_read_only
def lock_status(c: Context, env: str = "", json: bool = False, config: str = "") -> Ended:
    """Show who holds an environment's lock; held or stale."""
    return commands.lock_status(load(config or None), env=env, as_json=json)


@shipyard_task(
    name="release",
    help={
        "env": ENV_HELP,
        "force": "release it even while its holder runs (audited)",
        "config": CONFIG_HELP,
    },
)
@_exits
def lock_release(c: Context, env: str = "", force: bool = False, config: str = "") -> Ended:
    """Release a stale lock (a held one with --force)."""
    return commands.lock_release(load(config or None), env=env, force=force)


@shipyard_task(help={"env": "check only this environment", "config": CONFIG_HELP, **OUTPUT_HELP})
@_read_only
def doctor(  # noqa: PLR0917 - invoke turns each parameter into a flag
    c: Context,
    env: str = "",
    config: str = "",
    verbose: bool = False,
    quiet: bool = False,
    no_color: bool = False,
    json: bool = False,
) -> Ended:
    """Check tools, credentials and config before anything runs."""
    output = commands.output_options(verbose=verbose, quiet=quiet, no_color=no_color, as_json=json)
    return commands.doctor(config, env=env, output=output)


@shipyard_task(
    help={
        "kind": "python or node (default: what the files here say)",
        "dry-run": "print what it would write; write nothing",
    }
)
@_dry_run_mapped
def init(c: Context, kind: str = "", dry_run: bool = False) -> Ended:
    """Set up the app here: shipyard.yaml, tasks.py, .gitignore."""
    from shipyard.init import run_init

    return run_init(Path.cwd(), kind=kind, dry_run=dry_run)


@shipyard_task(
    help={
        "env": ENV_HELP,
        "dry-run": "print the deploy's plan and the checks; change nothing",
        "config": CONFIG_HELP,
    }
)
@_dry_run_mapped
def contract(c: Context, env: str = "", dry_run: bool = False, config: str = "") -> Ended:
    """Deploy for real, dry-run a rollback, prove the evidence."""
    from shipyard.contract import run_contract

    command = commands.command_line()
    return run_contract(load(config or None), env, command=command, dry_run=dry_run)


def deploy_task(env_name: str) -> Task[Any]:
    """`deploy.<env_name>`: one task per configured environment."""

    def body(  # noqa: PLR0917 - invoke turns each parameter into a flag
        c: Context,
        dry_run: bool = False,
        allow_dirty: bool = False,
        lock_wait: str = "",
        no_build: bool = False,
        config: str = "",
        verbose: bool = False,
        quiet: bool = False,
        no_color: bool = False,
        json: bool = False,
    ) -> Ended:
        output = commands.output_options(
            verbose=verbose, quiet=quiet, no_color=no_color, as_json=json
        )
        return commands.deploy(
            load(config or None),
            env_name,
            lock_wait=lock_wait,
            build=not no_build,
            dry_run=dry_run,
            allow_dirty=allow_dirty,
            output=output,
        )

    body.__doc__ = f"Build, smoke and deploy to {env_name}; roll back on failure."
    body.__name__ = env_name
    help_ = {
        "dry-run": "print the deploy plan and check the preflight; change nothing",
        "allow-dirty": "deploy uncommitted changes to tracked files (recorded as dirty)",
        "lock-wait": "wait this long for the lock, e.g. 60s",
        "no-build": "deploy the newest artifact already built (skip Build application)",
        "config": CONFIG_HELP,
        **OUTPUT_HELP,
    }
    return shipyard_task(name=env_name, help=help_)(_dry_run_mapped(body))


def _root_and_agent(config: Config | None) -> tuple[Path, str]:
    return (config.root, config.agent) if config else (Path.cwd(), DEFAULT_AGENT)


def cache_bytecode() -> None:
    """Undo invoke's `sys.dont_write_bytecode` (set unless `--write-pyc`, to keep the folder of
    tasks.py clean): without .pyc files, every module a task imports (Shipyard's own, loaded
    when the task runs, and detect-secrets) is compiled again on every run. Python's own
    `-B` / PYTHONDONTWRITEBYTECODE still win."""
    sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)


def namespace() -> Collection:
    """The task collection: the same for `inv` (via tasks.py) and the `shipyard` script."""
    cache_bytecode()  # `inv` loads tasks.py after it has set the flag
    outlive_readers()  # `inv build | head`, `inv --help TASK | head`: no traceback, see streams
    deploy = Collection("deploy", *(deploy_task(name) for name in environment_names()))
    return Collection(
        init,
        gates,
        step,
        doctor,
        contract,
        build,
        scan,
        smoke,
        rollback,
        releases,
        status,
        stop,
        heartbeat,
        hooks,
        deploy,
        Collection("evidence", verify, attest),
        Collection("lock", lock_status, lock_release),
        Collection("proof", proof_check),
        Collection("ci", triage),
        Collection("audit", github),
    )


def environment_names(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The environments named in the config, read leniently so that the deploy tasks a user
    expects exist even when the file has a mistake (running one then reports it, exit 2):
    from `environments:`, else from a key misspelling it (`enviroments:`), else, when the
    file does not parse or `environments:` is not a mapping, the default `staging`."""
    try:
        path = find_config(environ=environ)
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_FAST_SAFE_LOADER)  # noqa: S506
    except (ShipyardError, OSError):
        return []  # no config: no environments
    except (ValueError, yaml.YAMLError):
        return [DEFAULT_ENVIRONMENT]
    if not isinstance(document, dict):
        return [DEFAULT_ENVIRONMENT]
    keys = [key for key in document if isinstance(key, str)]
    spelled = difflib.get_close_matches("environments", keys, n=1, cutoff=0.8)
    if not spelled:
        return []
    environments = document[spelled[0]]
    if not isinstance(environments, dict):
        return [DEFAULT_ENVIRONMENT]
    return [name for name in environments if isinstance(name, str) and _TASK_NAME.fullmatch(name)]
