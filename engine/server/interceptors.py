"""gRPC server interceptors: admission (well-formed messages, bounded concurrency, per-peer caps),
bearer-token authentication and one JSON log line per RPC."""

from __future__ import annotations

import hmac
import json
import sys
import threading
import time
from typing import Callable

import grpc

from hdrlift.engine.server.errors import MalformedRequest
from hdrlift.engine.server.prometheus import Metrics

SC = grpc.StatusCode
HEALTH_METHODS = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")


class _CallLog:
    """Per-RPC fields the handler adds to its log line (model, frames...)."""

    _local = threading.local()

    @classmethod
    def current(cls) -> dict:
        d = getattr(cls._local, "fields", None)
        return d if d is not None else {}

    @classmethod
    def set(cls, d: dict | None) -> None:
        cls._local.fields = d


def _wrap_behaviour(handler: grpc.RpcMethodHandler, make: Callable[[Callable, bool, bool], Callable],
                    deserializer: Callable | None = None):
    """A copy of ``handler`` whose behaviour is ``make(behaviour, request_streaming, response_streaming)``
    (and whose request deserializer is ``deserializer``, when given)."""
    rs, ps = handler.request_streaming, handler.response_streaming
    des = deserializer or handler.request_deserializer
    if not rs and not ps:
        return grpc.unary_unary_rpc_method_handler(make(handler.unary_unary, rs, ps), des,
                                                   handler.response_serializer)
    if not rs and ps:
        return grpc.unary_stream_rpc_method_handler(make(handler.unary_stream, rs, ps), des,
                                                    handler.response_serializer)
    if rs and not ps:
        return grpc.stream_unary_rpc_method_handler(make(handler.stream_unary, rs, ps), des,
                                                    handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(make(handler.stream_stream, rs, ps), des,
                                                 handler.response_serializer)


class Malformed:
    """What a request that does not parse becomes (instead of gRPC's INTERNAL status)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


MALFORMED_MESSAGE = "request is not a well-formed protobuf message of this method"


def _safe(deserializer: Callable | None) -> Callable | None:
    if deserializer is None:
        return None

    def parse(data: bytes):
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError and kin: the client's bytes are bad
            return Malformed(type(exc).__name__)
    return parse


def _checked(requests):
    for r in requests:
        if isinstance(r, Malformed):
            raise MalformedRequest(MALFORMED_MESSAGE)
        yield r


def peer_host(peer: str) -> str:
    """``ipv4:10.0.0.7:51234`` -> ``ipv4:10.0.0.7``; ``ipv6:[::1]:5`` -> ``ipv6:[::1]``."""
    head, _, port = peer.rpartition(":")
    return head if port.isdigit() and head else peer


class AdmissionInterceptor(grpc.ServerInterceptor):
    """What a call must pass before a handler thread works on it.

    * Its messages parse: a malformed protobuf is answered INVALID_ARGUMENT (gRPC itself would
      answer INTERNAL), for unary and streamed requests alike.
    * Work (the ``hdrlift.v1`` service) runs at most ``work`` calls at once; more are answered
      RESOURCE_EXHAUSTED (clients back off and retry, or go elsewhere).
    * Open-ended streams of the standard services (health ``Watch``, reflection) count apart,
      ``aux`` at once and ``per_peer`` from one peer address, so neither a crowd of watchers
      nor one peer can take the threads that serve work (the thread pool has room for both).
    * Health ``Check`` is always admitted (probes).
    """

    def __init__(self, work: int, aux: int, per_peer: int, work_service: str):
        self.limits = {"work": work, "aux": aux}
        self.per_peer = per_peer
        self.work_service = work_service
        self._lock = threading.Lock()
        self._open = {"work": 0, "aux": 0}
        self._peers: dict[str, int] = {}

    def _bucket(self, method: str, handler) -> str | None:
        if method.startswith(f"/{self.work_service}/"):
            return "work"
        if handler.response_streaming or handler.request_streaming:
            return "aux"
        return None

    def _enter(self, bucket: str | None, peer: str) -> str | None:
        """Count the call in; a message when it is refused."""
        if bucket is None:
            return None
        with self._lock:
            if self._open[bucket] >= self.limits[bucket]:
                what = "calls" if bucket == "work" else "health/reflection streams"
                return f"{self._open[bucket]} {what} are open (limit {self.limits[bucket]}); retry later"
            if bucket == "aux":
                if self._peers.get(peer, 0) >= self.per_peer:
                    return f"{self.per_peer} health/reflection streams are open from {peer} (limit per peer)"
                self._peers[peer] = self._peers.get(peer, 0) + 1
            self._open[bucket] += 1
        return None

    def _leave(self, bucket: str | None, peer: str) -> None:
        if bucket is None:
            return
        with self._lock:
            self._open[bucket] -= 1
            if bucket == "aux":
                n = self._peers.get(peer, 1) - 1
                if n:
                    self._peers[peer] = n
                else:
                    self._peers.pop(peer, None)

    def open_calls(self) -> dict[str, int]:
        with self._lock:
            return dict(self._open)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        bucket = self._bucket(handler_call_details.method, handler)

        def make(behaviour, rs, ps):
            def admit(req, context):
                peer = peer_host(context.peer())
                refused = self._enter(bucket, peer)
                if refused:
                    context.abort(SC.RESOURCE_EXHAUSTED, refused)
                left = threading.Lock()

                def leave():
                    if left.acquire(blocking=False):
                        self._leave(bucket, peer)
                context.add_callback(leave)  # however the call ends, even abandoned by gRPC
                if not rs and isinstance(req, Malformed):
                    leave()
                    context.abort(SC.INVALID_ARGUMENT, MALFORMED_MESSAGE)
                return req if not rs else _checked(req), leave

            if ps:
                def run_stream(req, context):
                    req, leave = admit(req, context)
                    try:
                        yield from behaviour(req, context)
                    finally:
                        leave()
                return run_stream

            def run(req, context):
                req, leave = admit(req, context)
                try:
                    return behaviour(req, context)
                finally:
                    leave()
            return run

        return _wrap_behaviour(handler, make, deserializer=_safe(handler.request_deserializer))


class AuthInterceptor(grpc.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer <token>`` matching one of ``tokens``
    (constant-time comparison against every token). Health checks stay open for probes."""

    def __init__(self, tokens: tuple[str, ...]):
        self._tokens = [t.encode() for t in tokens]

    def _ok(self, metadata) -> bool:
        given = None
        for k, v in metadata or ():
            if k == "authorization":
                given = v
        if not isinstance(given, str) or not given.startswith("Bearer "):
            return False
        g = given[len("Bearer "):].strip().encode()
        ok = False
        for t in self._tokens:
            ok |= hmac.compare_digest(g, t)
        return ok

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method in HEALTH_METHODS:
            return handler
        if self._ok(handler_call_details.invocation_metadata):
            return handler

        def make(_behaviour, _rs, ps):
            if ps:
                def deny_stream(_req, context):
                    context.abort(SC.UNAUTHENTICATED, "missing or invalid bearer token")
                    yield  # pragma: no cover
                return deny_stream

            def deny(_req, context):
                context.abort(SC.UNAUTHENTICATED, "missing or invalid bearer token")
            return deny

        return _wrap_behaviour(handler, make)


class LogInterceptor(grpc.ServerInterceptor):
    """One JSON line per RPC (stderr) and the request metrics."""

    def __init__(self, metrics: Metrics, stream):
        self.metrics = metrics
        self.stream = stream
        self._lock = threading.Lock()

    def _emit(self, method: str, context, t0: float, exc: BaseException | None, fields: dict,
              health: bool = False) -> None:
        code = None
        try:
            code = context.code()
        except Exception:  # noqa: BLE001 - older grpcio
            code = None
        if isinstance(exc, GeneratorExit) or (code is None and not context.is_active()):
            code = SC.CANCELLED
        if code is None:
            code = SC.OK if exc is None else SC.UNKNOWN
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        dt = time.perf_counter() - t0
        self.metrics.request_finished(method, name, dt)
        if self.stream is False or (health and name in ("OK", "CANCELLED")):
            return
        rec = {"ts": round(time.time(), 3), "level": "info" if name == "OK" else "warning",
               "method": method, "code": name, "seconds": round(dt, 4), "peer": context.peer()}
        try:
            details = context.details()
        except Exception:  # noqa: BLE001
            details = None
        if details and name != "OK":
            rec["details"] = details if isinstance(details, str) else details.decode("utf-8", "replace")
        rec.update(fields)
        line = json.dumps(rec, default=str)
        out = self.stream or sys.stderr
        with self._lock:
            try:
                out.write(line + "\n")
                out.flush()
            except (OSError, ValueError):
                pass

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        metrics = self.metrics
        # health checks are counted, not logged: probes and every client's load balancer make
        # them all the time (a failed one is logged)
        health = handler_call_details.method in HEALTH_METHODS

        def make(behaviour, _rs, ps):
            if ps:
                def run_stream(req, context):
                    t0 = time.perf_counter()
                    metrics.request_started()
                    fields: dict = {}
                    exc = None
                    once = threading.Lock()

                    def emit(e=None):
                        # gRPC may abandon a cancelled stream's generator without closing it,
                        # so the termination callback logs it too; whichever runs first wins
                        if once.acquire(blocking=False):
                            self._emit(method, context, t0, e, fields, health)

                    context.add_callback(emit)
                    try:
                        _CallLog.set(fields)
                        it = behaviour(req, context)
                        _CallLog.set(None)
                        while True:
                            _CallLog.set(fields)
                            try:
                                msg = next(it)
                            except StopIteration:
                                return
                            finally:
                                _CallLog.set(None)
                            yield msg
                    except BaseException as e:
                        exc = e
                        raise
                    finally:
                        emit(exc)
                return run_stream

            def run(req, context):
                t0 = time.perf_counter()
                metrics.request_started()
                fields: dict = {}
                exc = None
                _CallLog.set(fields)
                try:
                    return behaviour(req, context)
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    _CallLog.set(None)
                    self._emit(method, context, t0, exc, fields, health)
            return run

        return _wrap_behaviour(handler, make)


