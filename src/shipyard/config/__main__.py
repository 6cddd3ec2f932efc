"""`python -m shipyard.config [PATH]`: check a config file (see `shipyard.config.cli`)."""

from __future__ import annotations

import sys

from shipyard.config.cli import main

if __name__ == "__main__":
    sys.exit(main())
