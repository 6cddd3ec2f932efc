"""The sample apps under tests/apps/ are projects of their own (tests/test_init.py copies them
and runs `shipyard init` there): their tests run in those copies, not in this suite."""

collect_ignore_glob = ["*"]
