"""What a deploy or a rollback records about the releases it touched: one typed record, written
into the run record (`deploy` or `rollback` section), the environment's audit trail and the
Actions outputs, and read back from them (`inv contract`, the Fly target's audit reading)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class DeployRecord:
    """Filled in as the run goes; each field says what is known, never what was only hoped."""

    environment: str
    target: str
    dry_run: bool = False
    planned: str | None = None  # the release the plan expected to create
    release: str | None = None  # the release this run made (a deploy's; a Fly rollback's)
    previous: str | None = None  # the release current before the run
    rolled_back_to: str | None = None  # the release put back (automatic or asked for)
    serving: str | None = None  # what serves after the run, as far as the run knows
    made: list[str] = field(default_factory=list)  # every release the run made, in order
    artifact: str | None = None
    artifact_sha256: str | None = None
    smoke_tested: str | None = None  # what the artifact smoke ran: `image <ref>`, `tarball …`
    git_sha: str | None = None
    dirty: bool = False  # deployed with --allow-dirty from a tree with uncommitted changes
    diff_sha256: str | None = None  # sha256 of `git diff HEAD` when dirty
    config_sha256: str | None = None  # sha256 of the shipyard.yaml the run used
    url: str | None = None  # where the environment answers: its smoke URL's scheme and host
    plan: dict[str, Any] | None = None

    def made_release(self, version: str | None) -> None:
        """Note a release a target call made (None: it made none)."""
        if version and version not in self.made:
            self.made.append(version)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeployRecord:
        """Read back from a run record section or an audit entry (other keys are ignored;
        a value of the wrong type reads as unknown)."""
        known = {item.name: item for item in fields(cls)}
        values: dict[str, Any] = {}
        for name in known:
            value = data.get(name)
            if name == "made":
                values[name] = [str(v) for v in value] if isinstance(value, list) else []
            elif name in {"dry_run", "dirty"}:
                values[name] = value is True
            elif name == "plan":
                values[name] = value if isinstance(value, dict) else None
            elif name in ("environment", "target"):
                values[name] = str(value or "")
            else:
                values[name] = str(value) if isinstance(value, (str, int)) else None
        return cls(**values)
