"""Git hooks through Shipyard (docs/proof.md#hooks).

`shipyard hooks install` writes a pre-push hook: a small sh script that runs the pre-push
steps (`hooks.pre_push` in shipyard.yaml, else the gates) as one Shipyard run, with its
evidence, and stops the push when one fails. `uninstall` removes it; `run` is what the hook
runs. A hook Shipyard did not write is never overwritten or removed: `install --force` sets it
aside as `pre-push.before-shipyard`, and `uninstall` puts it back.

The hook calls `python -m shipyard hooks run` with the Python that installed it (as
pre-commit's hook calls its own), so a push needs no activated virtualenv.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from shipyard import config as config_module
from shipyard import git
from shipyard.config import Config
from shipyard.errors import ConfigError, ExitCode, UsageError, Verdict

if TYPE_CHECKING:
    from shipyard.console import Output

ACTIONS = ("install", "uninstall", "run")
HOOK = "pre-push"
MARKER = "# shipyard-hook: pre-push"  # how a hook Shipyard wrote is told from any other
SET_ASIDE_SUFFIX = ".before-shipyard"
HookState = Literal["absent", "shipyard", "foreign"]  # "shipyard": the marker says it is ours


@dataclass(frozen=True)
class HookFile:
    path: Path  # where git looks for the hook (core.hooksPath respected)
    shown: str  # as a message names it: relative to the working folder when inside it
    state: HookState

    @property
    def set_aside(self) -> Path:
        return self.path.with_name(HOOK + SET_ASIDE_SUFFIX)


def hooks_command(
    action: str,
    explicit_config: str = "",
    *,
    force: bool = False,
    output: Output | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Verdict | ExitCode:
    """`shipyard hooks install|uninstall|run`. `explicit_config`: `--config PATH`."""
    if action == "install":
        return install(_load(explicit_config, environ), force=force)
    if action == "uninstall":
        return uninstall(_project_root(explicit_config, environ))
    if action == "run":
        given = ["--config", explicit_config] if explicit_config else []
        command = shlex.join(["shipyard", "hooks", "run", *given])
        return run_pre_push(_load(explicit_config, environ), output=output, command=command)
    raise UsageError(f"hooks: unknown action '{action}' (expected one of: {', '.join(ACTIONS)})")


def install(config: Config, *, force: bool = False, python: str = sys.executable) -> ExitCode:
    """Write the pre-push hook; a hook Shipyard did not write is refused, or with `force` set
    aside (never deleted)."""
    steps = config.pre_push_steps
    if not steps:
        why = "hooks.pre_push is empty" if config.hooks.pre_push is not None else "no gates"
        raise UsageError(f"{config.path.name}: nothing for a pre-push hook to run ({why})")
    hook = find_hook(config.root)
    if hook.state == "foreign":
        _set_aside(hook, force=force)
    write_hook(hook.path, hook_script(_config_argument(config), python))
    source = "hooks.pre_push" if config.hooks.pre_push is not None else "the gates"
    print(
        f"installed {hook.shown}: git push first runs {', '.join(steps)} ({source}) through"
        " Shipyard; git push --no-verify skips it"
    )
    return ExitCode.OK


def uninstall(root: Path) -> ExitCode:
    """Remove the pre-push hook Shipyard wrote, and put back the one it set aside."""
    hook = find_hook(root)
    if hook.state == "absent":
        print(f"no Shipyard hook installed ({hook.shown})")
        return ExitCode.OK
    if hook.state == "foreign":
        raise UsageError(
            f"{hook.shown}: a hook Shipyard did not write; left as it is (remove it yourself"
            " if it should go)"
        )
    hook.path.unlink()
    restored = ""
    if hook.set_aside.is_file() and not hook.set_aside.is_symlink():
        hook.set_aside.replace(hook.path)
        restored = f"; put back the hook that was there before (from {hook.set_aside.name})"
    print(f"removed {hook.shown}{restored}")
    return ExitCode.OK


def run_pre_push(
    config: Config, *, output: Output | None = None, command: str = "shipyard hooks run"
) -> Verdict | ExitCode:
    """What the hook runs: the pre-push steps as one run (in parallel, as the gates run),
    every failure reported, with the run's evidence."""
    from shipyard import pipeline, reporters

    steps = [config.steps[name] for name in config.pre_push_steps]
    if not steps:
        print(
            f"pre-push: nothing to run (no steps in {config.path.name}'s hooks.pre_push or gates)"
        )
        return ExitCode.OK
    jobs = os.cpu_count() or 1
    run = pipeline.Run.for_config(config, command=command)
    shown = {step.name: step.run for step in steps}
    reporter = reporters.for_run(jobs=jobs, redactor=run.redactor, output=output, commands=shown)
    return pipeline.execute(run, steps, reporter=reporter, jobs=jobs)


# --- The hook file ---------------------------------------------------------------------


def find_hook(root: Path) -> HookFile:
    """The pre-push hook of the git repository holding `root`, where git runs it from."""
    try:
        hooks = git.output(root, "rev-parse", "--git-path", "hooks")
    except git.GitFailed:
        raise UsageError(f"hooks: {root} is not in a git repository") from None
    path = Path(os.path.normpath(root / os.fsdecode(hooks.strip()) / HOOK))
    return HookFile(path, _shown(path), _state(path))


def _state(path: Path) -> HookState:
    if path.is_symlink() or (path.exists() and not path.is_file()):
        return "foreign"  # a link or a folder: never ours, never followed
    if not path.exists():
        return "absent"
    head = path.read_bytes()[:4096].splitlines()[:3]
    return "shipyard" if any(line.startswith(MARKER.encode()) for line in head) else "foreign"


def _set_aside(hook: HookFile, *, force: bool) -> None:
    if not force:
        raise UsageError(
            f"{hook.shown}: a hook Shipyard did not write is there; left as it is"
            f" (--force sets it aside as {hook.set_aside.name} and installs Shipyard's)"
        )
    if hook.set_aside.exists() or hook.set_aside.is_symlink():
        raise UsageError(
            f"{hook.shown}: a hook Shipyard did not write is there, and"
            f" {_shown(hook.set_aside)} too; left as they are (move one of them away)"
        )
    hook.path.replace(hook.set_aside)
    print(f"set aside {hook.shown} as {hook.set_aside.name} (hooks uninstall puts it back)")


def write_hook(path: Path, script: str) -> None:
    """The hook, executable, written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{HOOK}.", delete=False
    ) as handle:
        handle.write(script)
    written = Path(handle.name)
    written.chmod(0o755)  # git runs a hook only when it is executable
    written.replace(path)


def hook_script(config_argument: str, python: str) -> str:
    config, interpreter = shlex.quote(config_argument), shlex.quote(python)
    return f"""#!/bin/sh
{MARKER}. Written by `shipyard hooks install`; `shipyard hooks uninstall` removes it.
# It runs the pre-push steps of the config below (hooks.pre_push, else its gates) as one
# Shipyard run, with its evidence, and stops the push when one fails.
config={config}
python={interpreter}
if [ -x "$python" ]; then
    "$python" -m shipyard hooks run --config "$config"
elif command -v shipyard >/dev/null 2>&1; then
    shipyard hooks run --config "$config"
else
    echo "shipyard pre-push hook: neither $python nor shipyard on PATH" \\
        "(run shipyard hooks install again)" >&2
    exit 1
fi
status=$?
if [ "$status" -ne 0 ]; then
    echo "shipyard pre-push hook: exit $status, the push is stopped" \\
        "(git push --no-verify skips the hook)" >&2
fi
exit "$status"
"""


def _config_argument(config: Config) -> str:
    """The config as the hook names it: from the repository's top (where git runs hooks),
    so that the folder can move; absolute when it is outside the repository."""
    top = git.top_level(config.root)
    try:
        return config.path.resolve().relative_to((top or config.root).resolve()).as_posix()
    except ValueError:
        return str(config.path)


def _shown(path: Path) -> str:
    return os.path.relpath(path) if Path.cwd() in path.absolute().parents else str(path)


def _load(explicit: str, environ: Mapping[str, str]) -> Config:
    return config_module.load(explicit or None, environ=environ)


def _project_root(explicit: str, environ: Mapping[str, str]) -> Path:
    """The config's folder, found without loading it (a config with a mistake must not keep a
    hook from being removed); the working folder when there is no config."""
    try:
        return config_module.find_config(explicit or None, environ=environ).parent
    except ConfigError:
        if explicit or environ.get(config_module.CONFIG_ENV_VAR):
            raise
        return Path.cwd()
