"""`python -m shipyard.config [PATH]`: check a config file and summarise it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from shipyard.config.loading import CONFIG_FILENAME, load, load_config
from shipyard.errors import ConfigError, ExitCode
from shipyard.wording import counted


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m shipyard.config [PATH]`: check a config file and summarise it."""
    parser = argparse.ArgumentParser(
        prog="python -m shipyard.config", description=f"Check a {CONFIG_FILENAME} file."
    )
    parser.add_argument("path", nargs="?", help="the file (default: found as shipyard finds it)")
    arguments = parser.parse_args(argv)
    from shipyard import targets  # the targets check their own options

    try:
        config = load_config(arguments.path) if arguments.path else load()  # as it was given
        targets.check(config)
    except ConfigError as error:
        print(error.message, file=sys.stderr)
        return int(error.exit_code)
    print(
        f"ok: {counted(len(config.steps), 'step')}, {counted(len(config.gates), 'gate')},"
        f" {counted(len(config.environments), 'environment')}"
    )
    return int(ExitCode.OK)
