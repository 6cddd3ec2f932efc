"""The `shipyard` console script: an invoke Program over the same collection as `inv`."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from invoke.exceptions import Exit, ParseError
from invoke.parser.argument import Argument
from invoke.program import Program

from shipyard import __version__, commands
from shipyard.errors import ExitCode, ShipyardError, exit_code_for
from shipyard.streams import outlive_readers
from shipyard.tasks import cache_bytecode, namespace, private_umask

# invoke's core options that would do nothing for Shipyard's tasks (steps never run through
# `c.run`): left out of `shipyard --help` and its parser (`inv` refuses them in each task).
HIDDEN_CORE_OPTIONS = frozenset(
    {"pty", "warn-only", "echo", "hide", "command-timeout", "prompt-for-sudo-password", "no-dedupe"}
)


class ShipyardProgram(Program):
    """invoke's Program, but a usage mistake exits 2 (invoke's own `inv` exits 1), and only
    the core options that mean something for Shipyard."""

    def core_args(self) -> list[Argument]:
        return [arg for arg in super().core_args() if arg.name not in HIDDEN_CORE_OPTIONS]

    def task_args(self) -> list[Argument]:
        return [arg for arg in super().task_args() if arg.name not in HIDDEN_CORE_OPTIONS]

    def update_config(self, merge: bool = True) -> None:
        for name in HIDDEN_CORE_OPTIONS:  # invoke's own update_config reads every one of them
            if name not in self.args:
                self.args[name] = Argument(name=name, kind=str if name == "hide" else bool)
        super().update_config(merge)

    def parse_core(self, argv: list[str] | None) -> None:
        with _usage_errors():
            super().parse_core(argv)
        cache_bytecode()  # the namespace was built before invoke set the flag

    def parse_tasks(self) -> None:
        with _usage_errors():
            super().parse_tasks()


@contextmanager
def _usage_errors() -> Iterator[None]:
    try:
        yield
    except (ParseError, ValueError) as error:
        raise Exit(f"shipyard: {error}", int(ExitCode.USAGE)) from None


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    outlive_readers()  # `shipyard ... | head`: no traceback, see streams
    if len(argv) > 1 and argv[1] == "heartbeat":
        sys.exit(_heartbeat(argv[2:]))
    program = ShipyardProgram(
        namespace=namespace(), name="Shipyard", binary="shipyard", version=__version__
    )
    program.run(argv)


def _heartbeat(args: list[str]) -> int:
    """`shipyard heartbeat AGENT -- CMD...` with the command's argv kept exactly (no re-quoting)."""
    if len(args) < 2 or args[1] != "--":
        print("usage: shipyard heartbeat AGENT -- CMD...", file=sys.stderr)
        return int(ExitCode.USAGE)
    private_umask()
    try:
        return int(commands.heartbeat(args[0], args[2:]).exit_code)
    except ShipyardError as error:
        print(error.message, file=sys.stderr)
        return exit_code_for(error)
