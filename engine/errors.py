"""Errors every entry point turns into one clear line and a non-zero exit (or a gRPC status).

The classes are defined in :mod:`hdrlift.plugin.errors` (the leaf that host plug-ins vendor, so
a host sees the very classes the engine raises) and re-exported here for the engine's modules.
Exit codes: 1 other, 2 input, 3 output, 4 model, 5 colour, 6 server.
"""

from hdrlift.plugin.errors import (  # noqa: F401
    ColourError,
    HdrliftError,
    InputError,
    ModelError,
    OutputError,
    ServerError,
)

__all__ = ["HdrliftError", "InputError", "OutputError", "ModelError", "ColourError", "ServerError"]
