"""What host plug-ins share with the server: contract, client, frame marshalling, errors.

A leaf: it imports grpcio, protobuf, numpy and its own modules, never the engine or torch, so a
host (Nuke, Blender, a farm script) can vendor it alone (docs/ARCHITECTURE.md). ``Client``
(``hdrlift.plugin.client``) is imported on first use, so a host that only needs
:mod:`hdrlift.plugin.frames` does not import grpc.
"""

import pathlib

__all__ = ["Client", "RemoteError", "Result", "PROTO", "read_token_file"]
_LAZY = ("Client", "RemoteError", "Result")

#: The ``hdrlift.v1`` contract, installed with the package: for grpcurl (``-proto``) and for
#: generating clients in other languages.
PROTO = pathlib.Path(__file__).resolve().parent / "proto" / "hdrlift" / "v1" / "hdrlift.proto"


def read_token_file(path: str) -> str:
    """The bearer token in ``path``: its first line that is neither empty nor a ``#`` comment
    (what ``hdr-video --token-file`` and the host shims read). InputError (one line) otherwise."""
    from hdrlift.plugin.errors import InputError

    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read token file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    for ln in lines:
        ln = ln.strip()
        if ln and not ln.startswith("#"):
            return ln
    raise InputError(f"token file {path} is empty")


def __getattr__(name):
    if name in _LAZY:
        from hdrlift.plugin import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
