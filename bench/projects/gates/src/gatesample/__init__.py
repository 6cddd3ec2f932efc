"""A release version, parsed and bumped: just enough code for the gates to check."""

from __future__ import annotations


def parse(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in version.removeprefix("v").split("."))
    return major, minor, patch


def bump(version: str, part: str = "patch") -> str:
    major, minor, patch = parse(version)
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"
