"""How the server's failures reach clients: one gRPC status and a one-line message.

:func:`failure_for` is the one mapping from an exception to a status (docs/server.md, "Error
codes"); :class:`RpcFailure` is what handlers raise when they already know the status.
"""

from __future__ import annotations

import logging

import grpc

from hdrlift.engine.errors import ColourError, HdrliftError, InputError, ModelError, OutputError
from hdrlift.plugin import frames as fr

log = logging.getLogger("hdrlift.server")
SC = grpc.StatusCode


class QueueFull(Exception):
    """More frames wait for the device than the queue holds."""


class ShuttingDown(Exception):
    """The server is draining."""


class Expired(Exception):
    """The request's deadline passed before its frame was done."""


class Cancelled(Exception):
    """The client cancelled the request or went away."""


MAX_MESSAGE_CHARS = 1000  # a status message never echoes more of what a client sent


def one_line(text, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters: what statuses, logs and job records
    carry, whatever length of input a client sent."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 40] + f"... ({len(s)} characters)"


class MalformedRequest(ValueError):
    """A streamed request message that did not parse (INVALID_ARGUMENT)."""


class RpcFailure(Exception):
    """A request answered with ``code`` and a one-line ``message`` (at most 1000 characters)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        self.message = one_line(message)
        super().__init__(self.message)
        self.code = code


def failure_for(exc: BaseException) -> RpcFailure:
    """Map an exception to the status the client sees (docs/server.md, "Error codes")."""
    if isinstance(exc, RpcFailure):
        return exc
    msg = one_line(str(exc).splitlines()[0]) if str(exc).strip() else type(exc).__name__
    for cls, code in ((QueueFull, SC.RESOURCE_EXHAUSTED), (ShuttingDown, SC.UNAVAILABLE),
                      (Expired, SC.DEADLINE_EXCEEDED), (Cancelled, SC.CANCELLED)):
        if isinstance(exc, cls):
            return RpcFailure(code, msg)
    if isinstance(exc, fr.FrameTooLarge):
        return RpcFailure(SC.OUT_OF_RANGE, msg)
    if isinstance(exc, (fr.FrameFormatError, InputError, MalformedRequest)):
        return RpcFailure(SC.INVALID_ARGUMENT, msg)
    if isinstance(exc, ColourError):
        return RpcFailure(SC.NOT_FOUND if "unknown colour space" in msg or "empty colour" in msg
                          else SC.FAILED_PRECONDITION, msg)
    if isinstance(exc, ModelError):
        return RpcFailure(SC.NOT_FOUND if msg.startswith("unknown model") else SC.FAILED_PRECONDITION, msg)
    if isinstance(exc, OutputError):
        return RpcFailure(SC.ALREADY_EXISTS if " exists;" in msg else SC.FAILED_PRECONDITION, msg)
    if isinstance(exc, HdrliftError):
        return RpcFailure(SC.FAILED_PRECONDITION, msg)
    if isinstance(exc, MemoryError):
        return RpcFailure(SC.RESOURCE_EXHAUSTED, "server is out of memory")
    log.exception("internal error")
    return RpcFailure(SC.INTERNAL, f"internal error: {type(exc).__name__}: {msg}")


