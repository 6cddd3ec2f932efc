"""`python -m shipyard.config [PATH]`: check a config file and summarise it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from shipyard.config.loading import CONFIG_FILENAME, load
from shipyard.errors import ConfigError, ExitCode


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m shipyard.config [PATH]`: check a config file and summarise it."""
    parser = argparse.ArgumentParser(
        prog="python -m shipyard.config", description=f"Check a {CONFIG_FILENAME} file."
    )
    parser.add_argument("path", nargs="?", help="the file (default: found as shipyard finds it)")
    arguments = parser.parse_args(argv)
    from shipyard import targets  # the targets check their own options

    try:
        config = load(arguments.path)
        targets.check(config)
    except ConfigError as error:
        print(error.message, file=sys.stderr)
        return int(error.exit_code)
    print(
        f"ok: {len(config.steps)} steps, {len(config.gates)} gates,"
        f" {len(config.environments)} environments"
    )
    return int(ExitCode.OK)
