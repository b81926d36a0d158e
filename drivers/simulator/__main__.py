"""``python -m watchpost.drivers.simulator SITE.toml``: the same as ``watchpost simulate``."""

from watchpost.drivers.simulator.cli import main

raise SystemExit(main())
