"""The default app Shipyard deploys to staging: a small standard-library web server.

Its identity comes from `build-info.json` beside the package when it runs from a built
artifact, and from the source tree's `VERSION` file otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
UNKNOWN = "unknown"


def _read_build_info() -> dict[str, str]:
    try:
        info = json.loads((_ROOT / "build-info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _read_source_version() -> str:
    try:
        return (_ROOT / "VERSION").read_text(encoding="utf-8").strip() or UNKNOWN
    except OSError:
        return UNKNOWN


_BUILD_INFO = _read_build_info()
__version__: str = str(_BUILD_INFO.get("version") or _read_source_version())
GIT_SHA: str = str(_BUILD_INFO.get("git_sha") or UNKNOWN)
