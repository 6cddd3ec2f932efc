"""How Shipyard says a number of things: `1 problem`, `2 problems`."""

from __future__ import annotations

__all__ = ["counted"]


def counted(count: int, noun: str, plural: str = "") -> str:
    """`count` and `noun`, in the plural (`plural`, or `noun` + "s") unless `count` is 1."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
