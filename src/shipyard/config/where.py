"""Where a value is in the file, and how a message shows it.

Every problem is raised as `Invalid` at a `Where` (a key path, a line, the scalar as written);
`load_config` turns it into the one `ConfigError` line `<file>:<line>: <key.path>: <problem>`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from shipyard.redact import SECRET_NAME_PARTS

_QUOTE_LIMIT = 40


@dataclass(frozen=True)
class Where:
    """A place in the file: its key path, line, and the scalar as written there."""

    path: str  # "" for the document itself
    line: int
    source: str | None = None

    def child(self, key: str, line: int, source: str | None = None) -> Where:
        shown = printable(key)
        return Where(f"{self.path}.{shown}" if self.path else shown, line, source)

    def item(self, index: int, line: int, source: str | None = None) -> Where:
        return Where(f"{self.path}[{index}]", line, source)

    def fail(self, problem: str) -> NoReturn:
        raise Invalid(self, problem)

    def expected(self, what: str, value: object) -> NoReturn:
        self.fail(f"expected {what}, got {self.describe(value)}")

    def describe(self, value: object) -> str:
        """`value` as written; text and numbers under a secret-looking key only by kind."""
        if value is None:
            return "null" if self.source else "an empty value"
        if isinstance(value, bool):  # true/yes/off... cannot carry a secret
            return f"{self.source or value} (a boolean)"
        if not isinstance(value, (str, int, float)):
            return kind(value)
        if self.under_secret_looking_key:
            return f"{kind(value)} (not shown: it may be a secret)"
        return quote(value) if isinstance(value, str) else self.source or str(value)

    @property
    def under_secret_looking_key(self) -> bool:
        """The last key of the path names a secret, as the redactor judges names."""
        last_key = re.sub(r"(\[\d+\])+$", "", self.path).rsplit(".", 1)[-1].upper()
        return any(part in last_key for part in SECRET_NAME_PARTS)


class Invalid(Exception):
    """A problem at one place in the file; `load_config` turns it into a ConfigError."""

    def __init__(self, where: Where, problem: str) -> None:
        super().__init__(problem)
        self.where = where
        self.problem = problem


def quote(text: str) -> str:
    """`text` quoted, escaped and shortened to fit in a one-line message."""
    return repr(text if len(text) <= _QUOTE_LIMIT else text[:_QUOTE_LIMIT] + "…")


def printable(text: str) -> str:
    return text if text.isprintable() else repr(text)


_KINDS: tuple[tuple[type, str], ...] = (
    (type(None), "null"),
    (bool, "a boolean"),  # before int: a bool is an int to Python
    (int, "a number"),
    (float, "a number"),
    (str, "text"),
    (dict, "a mapping"),
    (list, "a list"),
)


def kind(value: object) -> str:
    return next((name for cls, name in _KINDS if isinstance(value, cls)), type(value).__name__)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"expected one of: {', '.join(choices)}" if choices else "none are defined"
