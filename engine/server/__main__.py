"""``python -m hdrlift.engine.server``: the same as ``hdrlift-serve``."""

import sys

from hdrlift.engine.server.cli import main

sys.exit(main())
