"""What host plug-ins share with the server: contract, client, frame marshalling.

``Client`` and ``convert_remote`` (``hdrlift.plugin.client``) are imported on first use, so a host
that only needs :mod:`hdrlift.plugin.frames` does not import grpc.
"""

import pathlib

__all__ = ["Client", "RemoteError", "Result", "convert_remote", "PROTO"]

#: The ``hdrlift.v1`` contract, installed with the package: for grpcurl (``-proto``) and for
#: generating clients in other languages.
PROTO = pathlib.Path(__file__).resolve().parent / "proto" / "hdrlift" / "v1" / "hdrlift.proto"


def __getattr__(name):
    if name in __all__:
        from hdrlift.plugin import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
