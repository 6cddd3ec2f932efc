"""`python -m shipyard` is the `shipyard` console script."""

from shipyard.cli import main

main()
