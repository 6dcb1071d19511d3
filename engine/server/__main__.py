"""``python -m hdrlift.engine.server``: the same as ``hdrlift-serve``."""

from hdrlift.engine.server.cli import entry

entry()
