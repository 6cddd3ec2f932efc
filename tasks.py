"""This repository's own tasks: Shipyard dogfoods `shipyard.tasks` (see `inv --list`)."""

from shipyard.tasks import namespace

ns = namespace()
