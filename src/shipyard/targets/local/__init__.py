"""The embedded default target: releases in a folder on this machine, served by a detached process.

    .shipyard/<env>/releases/v<N>/     unpacked artifact + release.json + release.files.json,
                                       and a link to each shared path
    .shipyard/<env>/shared/<path>/     the shared paths (`shared:`): what the app keeps
                                       across releases (logs, caches, data)
    .shipyard/<env>/current            symlink to releases/v<N>, switched by os.replace()
    .shipyard/<env>/server/            state.json (pid, release, port; the switch under way)
                                       and one log per release
    .shipyard/<env>/audit.jsonl        deploys, rollbacks, lock breaks, prunes

Invariant: `current` only ever points at a `complete` release. A new release is served and
smoke-tested first, marked complete, and only then made current; so a crash at any instant
leaves `current` on a release that passed its smoke.

Nothing that serves is touched until a new release is ready (unpacked, its tree's sha256 in
release.json, the switch recorded); a deploy that fails before that removes its folder and
leaves what serves as it was, and its restore does nothing. A damaged state file is named
(exit 2) before anything runs; `inv stop` stops the environment's server even then.

Serving a release that is not `current` is a switch: state.json records it ("switching":
from, to, at, and the process switching) before the old server is stopped, and it is cleared
once `current` follows or the old release serves again. A switch left recorded by a process
that is gone was interrupted: what serves may not be `current`. The next deploy or rollback
repairs it: the release it half-switched to is marked `failed` (never `bad`), and `current`
is never marked bad for it.

One job per module; each imports only the modules listed before it:

    written    a release's file list, and what was written into its folder since
    shared     the shared paths: their check, their folders, their links into a release
    store      the release folders, their release.json and the `current` link
    serving    server/state.json, the switch it records, the server process
    plans      the deploy and rollback plans: what they mark, their action lines
    target     `LocalTarget`, the policy (the rollback's choice, the Target calls, status)
    caddy      Caddy: its binary, its config, its admin API on a unix socket
    proxied    proxy mode: `ProxiedTarget`, the same policy with Caddy in front
    kind       the keys of a local environment, and which mode serves it
"""

from __future__ import annotations

from shipyard.targets.local.kind import LOCAL
from shipyard.targets.local.plans import LocalDeployPlan, LocalRollbackPlan
from shipyard.targets.local.proxied import ProxiedTarget
from shipyard.targets.local.target import LocalOptions, LocalTarget

__all__ = [
    "LOCAL",
    "LocalDeployPlan",
    "LocalOptions",
    "LocalRollbackPlan",
    "LocalTarget",
    "ProxiedTarget",
]
