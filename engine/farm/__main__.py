"""``python -m hdrlift.engine.farm``: the same as ``hdrlift-farm``."""

from hdrlift.engine.farm.cli import main

raise SystemExit(main())
