"""Load and validate `shipyard.yaml` into frozen, typed objects.

The package's public face; one module per job:
- `model`: what a loaded config is (`Config`, `Step`, `Environment`, `Smoke`, `Proof`, `Hooks`)
  and its defaults.
- `loading`: which file is the config, and loading it or failing with one `ConfigError` line
  `<file>:<line>: <key.path>: <problem>`.
- `document`: the file's YAML, each mapping and list remembering its lines.
- `schema`: which keys there are and what each must be; the document becomes a `Config`.
- `checks`: the reusable checks the schema is made of, and `where`: the place a problem is at.
- `cli`: `python -m shipyard.config [PATH]` checks a file (and each environment's target options).
"""

from __future__ import annotations

from shipyard.config.checks import DURATION_EXAMPLES, parse_duration
from shipyard.config.loading import CONFIG_ENV_VAR, CONFIG_FILENAME, find_config, load, load_config
from shipyard.config.model import (
    DEFAULT_AGENT,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_KILL_GRACE,
    DEFAULT_MAX_ARCHIVE_MEMBERS,
    DEFAULT_MAX_UNPACKED_MIB,
    DEFAULT_PROOF_PATHS,
    Config,
    Environment,
    Hooks,
    Proof,
    Smoke,
    Step,
    log_name,
)
from shipyard.config.schema import ENVIRONMENT_FIELDS, START_PLACEHOLDERS

__all__ = [
    "CONFIG_ENV_VAR",
    "CONFIG_FILENAME",
    "DEFAULT_AGENT",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_KILL_GRACE",
    "DEFAULT_MAX_ARCHIVE_MEMBERS",
    "DEFAULT_MAX_UNPACKED_MIB",
    "DEFAULT_PROOF_PATHS",
    "DURATION_EXAMPLES",
    "ENVIRONMENT_FIELDS",
    "START_PLACEHOLDERS",
    "Config",
    "Environment",
    "Hooks",
    "Proof",
    "Smoke",
    "Step",
    "find_config",
    "load",
    "load_config",
    "log_name",
    "parse_duration",
]
