"""``hdrlift-serve``: the gRPC server render farms and host plug-ins call (contract: hdrlift.v1).

Every frame goes through the same :class:`hdrlift.engine.pipeline.Pipeline` as the CLI (one
pipeline per (model, output colour space), built on first use and cached): colour in with OCIO,
the model's back end, colour out. The server adds what a shared service needs:

* **Dynamic batching.** Handler threads decode and colour-convert frames, then hand them to one
  batcher thread that owns the device. It takes the oldest waiting frame and, while other frames
  are being prepared, waits up to ``--batch-window-ms`` for more frames of the same model and the
  same size (only equal shapes are stacked) up to ``--max-batch``; one back-end call runs them
  all. A frame alone (or one above the tiling budget) runs exactly as ``Pipeline.process`` does,
  so its result is bit-identical to an in-process call. ``--max-batch`` defaults to 1 on the CPU,
  where a stacked batch measured slower than its frames one by one (docs/server.md), and to 8 on
  a GPU.
* **Bounded memory.** At most ``--queue-size`` frames wait for the device; beyond that a request
  is answered ``RESOURCE_EXHAUSTED`` at once (clients back off and retry, or go elsewhere).
  Each stream has at most ``--stream-window`` frames in flight (gRPC flow control holds the
  sender), and a frame's declared size is checked before its payload is kept.
* **Deadlines and cancellation.** A frame whose RPC expired or was cancelled is dropped before it
  reaches the device; the handler answers ``DEADLINE_EXCEEDED``/``CANCELLED``. Jobs stop at the
  next frame when cancelled (finished frames stay: EXR writes are atomic).
* **Graceful shutdown** (SIGTERM/SIGINT): health goes NOT_SERVING, new RPCs are refused, every
  frame already accepted is finished and sent, open streams then end with ``UNAVAILABLE``
  (the client resends the rest elsewhere), running jobs are cancelled, and the process exits.
* Standard gRPC health (``grpc.health.v1``) and reflection; TLS, mutual TLS and bearer tokens
  (``--token-file`` or ``$HDRLIFT_TOKENS``, compared in constant time); path jobs confined to
  ``--root`` folders; one JSON log line per request on stderr; Prometheus metrics on
  ``--metrics-port`` (:mod:`hdrlift.engine.metrics`).

See docs/server.md for flags, the error codes and a farm example.
"""

from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
import dataclasses
import functools
import inspect
import hmac
import json
import logging
import os
import pathlib
import queue
import re
import signal
import sys
import threading
import time
import uuid
from typing import Any, Callable, Iterator

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hdrlift.engine import __version__
from hdrlift.engine.atomic import atomic_write_text
from hdrlift.engine.colour import DEFAULT_OUTPUT_SPACE, ColourManager
from hdrlift.engine.errors import ColourError, HdrliftError, InputError, ModelError, OutputError
from hdrlift.engine.metrics import Metrics, serve_metrics
from hdrlift.engine.models import DEFAULT_MODEL, available, get_info
from hdrlift.engine.convert import sequence_pattern
from hdrlift.engine.io.exr import COMPRESSIONS as EXR_COMPRESSIONS
from hdrlift.engine.io.exr import frame_attributes
from hdrlift.engine.pipeline import Pipeline, PipelineOptions
from hdrlift.engine.tiling import needs_tiling
from hdrlift.plugin import frames as fr
from hdrlift.plugin.v1 import hdrlift_pb2 as pb
from hdrlift.plugin.v1 import hdrlift_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Hdrlift"].full_name
DEFAULT_PORT = 50051
DEFAULT_MAX_MESSAGE = 64 << 20
DEFAULT_MAX_PIXELS = 8192 * 8192
HEALTH_METHODS = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")
log = logging.getLogger("hdrlift.server")

SC = grpc.StatusCode


# --------------------------------------------------------------------------- errors
class RpcFailure(Exception):
    """A request answered with ``code`` and a one-line ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = " ".join(str(message).split())


def failure_for(exc: BaseException) -> RpcFailure:
    """Map an exception to the status the client sees (docs/server.md, "Error codes")."""
    if isinstance(exc, RpcFailure):
        return exc
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for cls, code in ((QueueFull, SC.RESOURCE_EXHAUSTED), (ShuttingDown, SC.UNAVAILABLE),
                      (Expired, SC.DEADLINE_EXCEEDED), (Cancelled, SC.CANCELLED)):
        if isinstance(exc, cls):
            return RpcFailure(code, msg)
    if isinstance(exc, fr.FrameTooLarge):
        return RpcFailure(SC.OUT_OF_RANGE, msg)
    if isinstance(exc, (fr.FrameFormatError, InputError)):
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


# --------------------------------------------------------------------------- configuration
@dataclasses.dataclass
class ServerConfig:
    host: str = "[::]"
    port: int = DEFAULT_PORT  # 0: any free port
    model: str = DEFAULT_MODEL
    output_space: str = DEFAULT_OUTPUT_SPACE
    device: str = "cpu"
    backend: str = "auto"
    precision: str = "fp32"
    ocio_config: str | None = None
    cache_dir: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_batch: int | None = None  # None: 1 on the CPU (batching does not pay there), 8 on a GPU
    batch_window_ms: float = 3.0
    queue_size: int = 32
    stream_window: int = 4
    workers: int = 32  # gRPC handler threads = most concurrent RPCs
    job_workers: int = 1
    roots: tuple[str, ...] = ()
    state_dir: str | None = None  # job records survive restarts here; unfinished jobs resume
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None  # with cert/key: clients must present a certificate signed by it
    tokens: tuple[str, ...] = ()
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    grace: float = 30.0
    preload: tuple[str, ...] = ()
    log_stream: Any = None  # None: sys.stderr; False: no request logs

    def validate(self) -> None:
        if self.max_message_bytes < 64 << 10:
            raise InputError(f"--max-message-bytes must be at least 65536, got {self.max_message_bytes}")
        if (self.max_batch is not None and self.max_batch < 1) or self.queue_size < 1 or self.stream_window < 1 or self.workers < 2:
            raise InputError("--max-batch, --queue-size and --stream-window must be >= 1, --workers >= 2")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InputError("--tls-cert and --tls-key go together")
        if self.tls_ca and not self.tls_cert:
            raise InputError("--tls-ca (mutual TLS) needs --tls-cert and --tls-key")
        for r in self.roots:
            if not os.path.isdir(r):
                raise InputError(f"--root {r}: not a folder")
        if self.state_dir is not None:
            try:
                os.makedirs(os.path.join(self.state_dir, "jobs"), exist_ok=True)
            except OSError as exc:
                raise InputError(f"--state-dir {self.state_dir}: {exc.strerror or exc}") from None
            if not os.access(os.path.join(self.state_dir, "jobs"), os.W_OK):
                raise InputError(f"--state-dir {self.state_dir}: not writable")


def load_tokens(token_file: str | None = None, env: str | None = None) -> tuple[str, ...]:
    """Bearer tokens from a file (one per line, ``#`` comments) and/or ``$HDRLIFT_TOKENS``
    (comma-separated)."""
    tokens: list[str] = []
    if token_file:
        try:
            text = pathlib.Path(token_file).read_text()
        except OSError as exc:
            raise InputError(f"cannot read --token-file {token_file}: {exc.strerror or exc}") from None
        tokens += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    env = os.environ.get("HDRLIFT_TOKENS", "") if env is None else env
    tokens += [t.strip() for t in env.split(",") if t.strip()]
    return tuple(dict.fromkeys(tokens))


# --------------------------------------------------------------------------- batching
class QueueFull(Exception):
    pass


class ShuttingDown(Exception):
    pass


class Expired(Exception):
    pass


class Cancelled(Exception):
    pass


class WorkItem:
    """One prepared frame (network input domain) waiting for the device."""

    __slots__ = ("pipeline", "net_in", "deadline", "cancelled", "future", "key", "batch_size")

    def __init__(self, pipeline: Pipeline, net_in: np.ndarray, deadline: float | None):
        self.pipeline = pipeline
        self.net_in = net_in
        self.deadline = deadline  # time.monotonic() value, or None
        self.cancelled = threading.Event()
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        h, w = net_in.shape[:2]
        batchable = not needs_tiling(pipeline.backend, h, w, pipeline.max_pixels)
        self.key = (id(pipeline), h, w) if batchable else None
        self.batch_size = 1

    def dead(self) -> BaseException | None:
        if self.cancelled.is_set():
            return Cancelled("request cancelled")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return Expired("deadline expired before the frame reached the device")
        return None


class Batcher:
    """One device thread; gathers same-shape, same-model frames into one back-end call."""

    def __init__(self, capacity: int, max_batch: int, window_s: float, metrics: Metrics):
        self.capacity = capacity
        self.max_batch = max_batch
        self.window_s = window_s
        self.metrics = metrics
        self._pending: collections.deque[WorkItem] = collections.deque()
        self._cond = threading.Condition()
        self._preparing = 0
        self._closed = False
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._thread.start()

    def depth(self) -> int:
        with self._cond:
            return len(self._pending)

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._busy

    def preparing(self, delta: int) -> None:
        """Handlers announce frames they are decoding, so the batcher knows more may come."""
        with self._cond:
            self._preparing += delta
            self._cond.notify_all()

    def submit(self, item: WorkItem) -> WorkItem:
        with self._cond:
            if self._closed:
                raise ShuttingDown("server is shutting down")
            if len(self._pending) >= self.capacity:
                raise QueueFull(f"{len(self._pending)} frames are waiting for the device (limit "
                                f"{self.capacity}); retry later or use another server")
            self._pending.append(item)
            self._cond.notify_all()
        return item

    def close(self, timeout: float | None = None) -> None:
        """Finish what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _take_matching(self, batch: list[WorkItem]) -> None:
        key = batch[0].key
        keep = collections.deque()
        while self._pending and len(batch) < self.max_batch:
            it = self._pending.popleft()
            if it.key == key:
                batch.append(it)
            else:
                keep.append(it)
        keep.extend(self._pending)
        self._pending = keep

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                first = self._pending.popleft()
                self._busy = True
                batch = [first]
                if first.key is not None and self.max_batch > 1 and first.dead() is None:
                    end = time.monotonic() + self.window_s
                    while True:
                        self._take_matching(batch)
                        left = end - time.monotonic()
                        if len(batch) >= self.max_batch or left <= 0 or self._preparing <= 0 or self._closed:
                            break
                        self._cond.wait(left)
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _run(self, batch: list[WorkItem]) -> None:
        live = []
        for it in batch:
            err = it.dead()
            if err is not None:
                it.future.set_exception(err)
            else:
                live.append(it)
        if not live:
            return
        try:
            # a frame alone is bit-identical to Pipeline.process
            outs = live[0].pipeline.infer_frames([it.net_in for it in live])
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
            for it in live:
                it.future.set_exception(exc)
            return
        self.metrics.batch_done(len(live))
        for it, out in zip(live, outs):
            it.batch_size = len(live)
            it.future.set_result(out)


# --------------------------------------------------------------------------- request plumbing
@dataclasses.dataclass
class Settings:
    pipeline: Pipeline
    model: str
    input_space: str
    output_space: str


@dataclasses.dataclass
class Prepared:
    frame_id: int
    settings: Settings
    out_dtype: int
    want_mask: bool
    chunk_bytes: int
    width: int
    height: int
    t0: float
    item: WorkItem | None = None


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


def _wrap_behaviour(handler: grpc.RpcMethodHandler, make: Callable[[Callable, bool, bool], Callable]):
    """A copy of ``handler`` whose behaviour is ``make(behaviour, request_streaming, response_streaming)``."""
    rs, ps = handler.request_streaming, handler.response_streaming
    if not rs and not ps:
        return grpc.unary_unary_rpc_method_handler(make(handler.unary_unary, rs, ps),
                                                   handler.request_deserializer, handler.response_serializer)
    if not rs and ps:
        return grpc.unary_stream_rpc_method_handler(make(handler.unary_stream, rs, ps),
                                                    handler.request_deserializer, handler.response_serializer)
    if rs and not ps:
        return grpc.stream_unary_rpc_method_handler(make(handler.stream_unary, rs, ps),
                                                    handler.request_deserializer, handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(make(handler.stream_stream, rs, ps),
                                                 handler.request_deserializer, handler.response_serializer)


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

    def _emit(self, method: str, context, t0: float, exc: BaseException | None, fields: dict) -> None:
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
        if self.stream is False:
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
                            self._emit(method, context, t0, e, fields)

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
                    self._emit(method, context, t0, exc, fields)
            return run

        return _wrap_behaviour(handler, make)


# --------------------------------------------------------------------------- jobs
_TERMINAL = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)


class _JobCancelled(Exception):
    pass


class JobRecord:
    def __init__(self, spec: pb.JobSpec, source: str, output: str, job_id: str | None = None):
        self.id = job_id or uuid.uuid4().hex
        self.spec = spec
        self.source = source
        self.output = output
        self.state = pb.JOB_STATE_QUEUED
        self.done = 0
        self.total = -1
        self.fps = 0.0
        self.t0: float | None = None
        self.t1: float | None = None
        self.error = ""
        self.error_code = 0
        self.written = 0
        self.skipped = 0
        self.cancel = threading.Event()
        self.version = 0
        self.pattern = ""
        self.resume_on_start = False  # interrupted by a shutdown: run again when the server restarts
        self.persisted: tuple | None = None  # (state, resume_on_start) last written to --state-dir

    def proto(self) -> pb.Job:
        el = 0.0
        if self.t0 is not None:
            el = (self.t1 or time.monotonic()) - self.t0
        return pb.Job(id=self.id, state=self.state, spec=self.spec, done=self.done, total=self.total,
                      fps=self.fps, elapsed_seconds=el, error=self.error, error_code=self.error_code,
                      written=self.written, skipped=self.skipped, output_pattern=self.pattern)


class JobManager:
    """Runs path jobs one (``job_workers``) at a time; confines every path to the roots."""

    MAX_KEPT = 1000

    def __init__(self, server: "HdrliftServer", roots: tuple[str, ...], workers: int,
                 state_dir: str | None = None):
        self.server = server
        self.roots = tuple(os.path.realpath(r) for r in roots)
        self._jobs: collections.OrderedDict[str, JobRecord] = collections.OrderedDict()
        self._cond = threading.Condition()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="job")
        self.state_dir = pathlib.Path(state_dir) / "jobs" if state_dir else None

    # -- records on disk (--state-dir): one JSON file per job, written at each change of state
    def _persist(self, rec: JobRecord) -> None:
        key = (rec.state, rec.resume_on_start)
        if self.state_dir is None or rec.persisted == key:
            return
        data = {"format": 1, "id": rec.id, "spec": base64.b64encode(rec.spec.SerializeToString()).decode(),
                "source": rec.source, "output": rec.output, "state": pb.JobState.Name(rec.state),
                "resume_on_start": rec.resume_on_start, "done": rec.done, "total": rec.total,
                "written": rec.written, "skipped": rec.skipped, "error": rec.error, "error_code": rec.error_code,
                "pattern": rec.pattern}
        try:
            atomic_write_text(self.state_dir / f"{rec.id}.json", json.dumps(data) + "\n")
            rec.persisted = key
        except OSError as exc:
            log.warning("cannot record job %s in %s: %s", rec.id, self.state_dir, exc.strerror or exc)

    def _forget(self, rec: JobRecord) -> None:
        if self.state_dir is not None:
            try:
                (self.state_dir / f"{rec.id}.json").unlink()
            except OSError:
                pass

    def restore(self) -> tuple[int, int]:
        """Load the records of ``--state-dir``: finished jobs come back as they ended; jobs that
        were queued or running when the server stopped (shut down or killed) run again, with
        ``resume`` (frames already complete are kept) and without ``overwrite``. Their paths are
        confined to the current ``--root`` folders again. Unreadable files are skipped with a
        warning. Returns (records loaded, jobs resumed)."""
        if self.state_dir is None:
            return 0, 0
        found = []
        for f in sorted(self.state_dir.glob("*.json")):
            try:
                d = json.loads(f.read_text())
                if d.get("format") != 1 or not re.fullmatch(r"[0-9a-f]{32}", str(d.get("id"))) \
                        or f.stem != d["id"]:
                    raise ValueError("not a job record of this version")
                spec = pb.JobSpec.FromString(base64.b64decode(d["spec"], validate=True))
                state = pb.JobState.Value(d["state"])
                found.append((f.stat().st_mtime, d, spec, state))
            except Exception as exc:  # noqa: BLE001 - unreadable, not JSON, a damaged protobuf...
                log.warning("skipping job record %s: %s", f.name, exc)
        resumed = 0
        for _, d, spec, state in sorted(found, key=lambda t: t[0]):
            rec = JobRecord(spec, str(d["source"]), str(d["output"]), job_id=d["id"])
            rec.pattern = str(d.get("pattern", ""))
            for k in ("done", "total", "written", "skipped", "error_code"):
                setattr(rec, k, int(d.get(k, getattr(rec, k))))
            rec.error = str(d.get("error", ""))
            rec.state = state
            rec.persisted = (state, bool(d.get("resume_on_start")))
            unfinished = state not in _TERMINAL or bool(d.get("resume_on_start"))
            if unfinished:
                again = pb.JobSpec()
                again.CopyFrom(spec)
                again.resume, again.overwrite = True, False
                rec.spec = again
                rec.state, rec.error, rec.error_code, rec.resume_on_start = pb.JOB_STATE_QUEUED, "", 0, False
                try:
                    rec.source = self.confine(spec.source, "source")
                    rec.output = self.confine(spec.output, "output")
                except RpcFailure as exc:
                    rec.state, rec.error, rec.error_code = pb.JOB_STATE_FAILED, f"not resumed: {exc.message}", \
                        exc.code.value[0]
                    unfinished = False
            with self._cond:
                self._jobs[rec.id] = rec
                self._persist(rec)
            if unfinished:
                resumed += 1
                self._pool.submit(self._run, rec)
        return len(found), resumed

    # -- paths
    def confine(self, path: str, what: str) -> str:
        if not self.roots:
            raise RpcFailure(SC.FAILED_PRECONDITION, "this server takes no path jobs (started without --root)")
        if not path:
            raise RpcFailure(SC.INVALID_ARGUMENT, f"{what} path is empty")
        if "\x00" in path or len(path) > 4096:
            raise RpcFailure(SC.INVALID_ARGUMENT, f"{what} path is not a valid path")
        if ".." in pathlib.PurePosixPath(path.replace("\\", "/")).parts:
            raise RpcFailure(SC.INVALID_ARGUMENT, f"{what} path {path!r} contains '..'")
        full = path if os.path.isabs(path) else os.path.join(self.roots[0], path)
        real = os.path.realpath(full)
        if not self._inside(real):
            raise RpcFailure(SC.PERMISSION_DENIED, f"{what} path {path!r} is outside the server's --root folders")
        return real

    def _inside(self, real: str) -> bool:
        return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in self.roots)

    def _check_sequence_members(self, source: str) -> None:
        """A sequence's files may be symlinks: each must resolve inside a root too."""
        from hdrlift.engine.io.images import parse_sequence_pattern

        if os.path.exists(source):
            return
        parsed = parse_sequence_pattern(source)
        if parsed is None:
            return
        folder, regex, _ = parsed
        try:
            names = os.listdir(folder)
        except OSError:
            return
        for n in names:
            if regex.match(n) and not self._inside(os.path.realpath(os.path.join(folder, n))):
                raise RpcFailure(SC.PERMISSION_DENIED, f"sequence file {n!r} links outside the server's --root folders")

    # -- API
    def submit(self, spec: pb.JobSpec) -> JobRecord:
        source = self.confine(spec.source, "source")
        self._check_sequence_members(source)
        output = self.confine(spec.output, "output")
        if spec.compression and spec.compression.split(":")[0] not in EXR_COMPRESSIONS:
            raise RpcFailure(SC.INVALID_ARGUMENT, f"unknown EXR compression {spec.compression!r}")
        if spec.HasField("start") and spec.HasField("end") and spec.end < spec.start:
            raise RpcFailure(SC.OUT_OF_RANGE, f"frame range {spec.start}-{spec.end} is empty")
        if spec.HasField("start") and spec.start < 0:
            raise RpcFailure(SC.OUT_OF_RANGE, f"start frame {spec.start} is negative")
        if spec.every > 1_000_000:
            raise RpcFailure(SC.OUT_OF_RANGE, f"every {spec.every} is out of range")
        model = spec.model or self.server.config.model
        self.server.check_model(model)
        for name in (spec.input_space, spec.output_space):
            if name:
                self.server.resolve_space(name)
        if not spec.single:
            pattern = sequence_pattern(source, output)
            if not self._inside(os.path.realpath(os.path.dirname(pattern))):
                raise RpcFailure(SC.PERMISSION_DENIED, "output folder is outside the server's --root folders")
        rec = JobRecord(spec, source, output)
        with self._cond:
            if self.server.draining:
                raise RpcFailure(SC.UNAVAILABLE, "server is shutting down")
            self._jobs[rec.id] = rec
            while len(self._jobs) > self.MAX_KEPT:
                oldest = next(iter(self._jobs.values()))
                if oldest.state not in _TERMINAL:
                    break
                self._jobs.popitem(last=False)
                self._forget(oldest)
            self._persist(rec)
        self._pool.submit(self._run, rec)
        return rec

    def get(self, job_id: str) -> JobRecord:
        with self._cond:
            rec = self._jobs.get(job_id)
        if rec is None:
            raise RpcFailure(SC.NOT_FOUND, f"no job {job_id!r}")
        return rec

    def cancel(self, job_id: str) -> JobRecord:
        rec = self.get(job_id)
        self._update(rec, lambda r: r.cancel.set())
        return rec

    def cancel_all(self, resume_on_start: bool = False) -> None:
        """Cancel every unfinished job; ``resume_on_start`` (a shutdown with ``--state-dir``)
        records them to run again when the server restarts."""
        with self._cond:
            recs = list(self._jobs.values())

        def stop(r):
            r.resume_on_start = resume_on_start and self.state_dir is not None
            r.cancel.set()
        for r in recs:
            if r.state not in _TERMINAL and not r.cancel.is_set():  # a user's cancel stays a cancel
                self._update(r, stop)

    def shutdown(self, wait: bool = True) -> None:
        self.cancel_all(resume_on_start=True)
        self._pool.shutdown(wait=wait, cancel_futures=False)

    def watch(self, job_id: str, context) -> Iterator[pb.Job]:
        rec = self.get(job_id)
        seen = -1
        while True:
            with self._cond:
                while rec.version == seen and context.is_active():
                    self._cond.wait(0.25)
                seen = rec.version
                snap = rec.proto()
            if not context.is_active():
                return
            yield snap
            if snap.state in _TERMINAL:
                return

    def _update(self, rec: JobRecord, fn) -> None:
        with self._cond:
            fn(rec)
            rec.version += 1
            self._persist(rec)  # only when the state changed
            self._cond.notify_all()

    def _run(self, rec: JobRecord) -> None:
        if rec.cancel.is_set():
            self._update(rec, lambda r: setattr(r, "state", pb.JOB_STATE_CANCELLED))
            return
        spec = rec.spec

        def started(r):
            r.state = pb.JOB_STATE_RUNNING
            r.t0 = time.monotonic()
        self._update(rec, started)
        last = [0.0]

        def progress(done: int, total: int | None, elapsed: float) -> None:
            if rec.cancel.is_set():
                raise _JobCancelled()
            now = time.monotonic()
            def upd(r):
                r.done, r.total = done, (total if total is not None else -1)
                r.fps = done / elapsed if elapsed > 0 else 0.0
            if now - last[0] >= 0.1 or (total is not None and done >= total):
                last[0] = now
                self._update(rec, upd)
            else:
                upd(rec)

        try:
            pipe = self.server.job_pipeline(
                spec.model or self.server.config.model, spec.output_space or self.server.config.output_space,
                spec.input_space or None, half=not spec.float_output, compression=spec.compression or "zip",
                mask_layer=spec.mask_layer)
            if not spec.single:
                rec.pattern = sequence_pattern(rec.source, rec.output)
            else:
                rec.pattern = rec.output
            report = pipe.convert(rec.source, rec.output, start=spec.start if spec.HasField("start") else None,
                                  end=spec.end if spec.HasField("end") else None, every=spec.every or 1,
                                  resume=spec.resume, overwrite=spec.overwrite, progress=progress,
                                  single=spec.single)

            def finished(r):
                r.state = pb.JOB_STATE_SUCCEEDED
                r.t1 = time.monotonic()
                r.done = report.frames
                r.total = max(r.total, report.frames)
                r.written, r.skipped = len(report.written), len(report.skipped)
                r.fps = report.fps
            self._update(rec, finished)
            self.server.metrics.frames_done(spec.model or self.server.config.model, len(report.written))
        except _JobCancelled:
            def cancelled(r):
                r.state = pb.JOB_STATE_CANCELLED
                r.t1 = time.monotonic()
                if r.resume_on_start:
                    r.error = "interrupted by the server's shutdown; it resumes when the server restarts"
            self._update(rec, cancelled)
        except BaseException as exc:  # noqa: BLE001 - recorded on the job
            f = failure_for(exc)

            def failed(r):
                r.state = pb.JOB_STATE_FAILED
                r.t1 = time.monotonic()
                r.error, r.error_code = f.message, f.code.value[0]
            self._update(rec, failed)


# --------------------------------------------------------------------------- the servicer
def _rpc(fn):
    """Map whatever a handler raises to a gRPC status (``HdrliftServer.abort``). For streaming
    handlers (generators) ``GeneratorExit``, which gRPC sends when the client goes away, passes
    through untouched."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streaming(self, request, context):
            try:
                yield from fn(self, request, context)
            except GeneratorExit:
                raise
            except BaseException as exc:  # noqa: BLE001 - every error becomes a status
                self.s.abort(context, exc)
        return streaming

    @functools.wraps(fn)
    def unary(self, request, context):
        try:
            return fn(self, request, context)
        except BaseException as exc:  # noqa: BLE001 - every error becomes a status
            self.s.abort(context, exc)
    return unary


class HdrliftServicer(pb_grpc.HdrliftServicer):
    def __init__(self, server: "HdrliftServer"):
        self.s = server

    # -- info
    @_rpc
    def ListModels(self, request, context):
        cfg = self.s.config
        out = pb.ListModelsReply(default_model=cfg.model, default_input_space=self.s.default_input_space,
                                 default_output_space=self.s.default_output_space)
        for info in available():
            out.models.add(name=info.name, summary=info.summary, paper=info.paper, kind=info.kind,
                           multiple_of=int(info.multiple_of), needs_weights=info.needs_weights,
                           has_weights=info.has_weights, runnable=info.runnable and info.kind != "fusion",
                           is_default=info.name == cfg.model, version=str(info.version))
        return out

    @_rpc
    def GetServerInfo(self, request, context):
        from hdrlift.engine.backends.base import cuda_available, tensorrt_importable

        cfg = self.s.config
        backends = ["torch"]
        try:
            import onnxruntime  # noqa: F401
            backends.append("onnxruntime")
        except ImportError:
            pass
        devices = ["cpu"]
        if cuda_available():
            import torch
            devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
            if tensorrt_importable():
                backends.append("tensorrt")
        return pb.ServerInfo(version=__version__, protocol="hdrlift.v1", backends=backends, devices=devices,
                             device=cfg.device, backend=cfg.backend, max_message_bytes=cfg.max_message_bytes,
                             max_pixels=cfg.max_pixels, max_batch=cfg.max_batch, queue_capacity=cfg.queue_size,
                             ocio_config=self.s.colour.config_name, jobs_enabled=bool(cfg.roots),
                             colorspaces=self.s.colour.colorspaces(), default_model=cfg.model)

    # -- frames
    @_rpc
    def Reconstruct(self, request, context):
        self.s.check_serving()
        h = request.header
        code = h.dtype or pb.DTYPE_FLOAT
        if code in (pb.DTYPE_HALF, pb.DTYPE_FLOAT) and 0 < h.width and 0 < h.height:
            out_c = 4 if h.options.return_mask else 3
            oc = h.options.output_dtype or code
            if oc in (pb.DTYPE_HALF, pb.DTYPE_FLOAT) and \
                    fr.planar_size(h.width, h.height, out_c, oc) > self.s.config.max_message_bytes - 4096:
                raise RpcFailure(SC.OUT_OF_RANGE, f"a {h.width}x{h.height} reply does not fit one message "
                                 f"({self.s.config.max_message_bytes} bytes); use ReconstructStream")
        prep = self.s.prepare(0, h, request.data, context)
        context.add_callback(prep.item.cancelled.set)
        _CallLog.current().update(model=prep.settings.model, width=prep.width, height=prep.height, frames=1)
        lin, mask = self.s.wait_frame(prep, context)
        header, data = self.s.finish(prep, lin, mask)
        return pb.ReconstructReply(header=header, data=data)

    def ReconstructStream(self, request_iterator, context):
        s = self.s
        try:
            s.check_serving()
        except RpcFailure as exc:
            s.abort(context, exc)
        fields = _CallLog.current()
        out_q: queue.Queue = queue.Queue(maxsize=s.config.stream_window)
        stop = threading.Event()
        reader_busy = threading.Event()
        END, DRAIN = object(), object()
        waiting: list[Prepared] = []  # the frame the reply loop is waiting for

        def cleanup():
            """Runs when the RPC ends for any reason (gRPC may never resume this generator after a
            cancellation): stop the reader and drop this stream's frames that have not reached
            the device, the one being waited for included (no polling delay)."""
            stop.set()
            for it in list(waiting):
                if it.item is not None and not it.item.future.done():
                    it.item.cancelled.set()
            while True:
                try:
                    it = out_q.get_nowait()
                except queue.Empty:
                    break
                if isinstance(it, Prepared) and it.item is not None:
                    it.item.cancelled.set()

        context.add_callback(cleanup)

        def put(x) -> bool:
            while not stop.is_set():
                try:
                    out_q.put(x, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def reader():
            asm = fr.FrameAssembler(max_bytes=s.max_frame_bytes())
            header = None
            try:
                for msg in request_iterator:
                    if stop.is_set():
                        return
                    kind = msg.WhichOneof("kind")
                    if kind == "header":
                        header = msg.header
                        s.settings_for(header)  # validate model / colour spaces now
                        continue
                    if kind != "chunk":
                        raise RpcFailure(SC.INVALID_ARGUMENT, "empty stream message (neither header nor chunk)")
                    c = msg.chunk
                    if c.index == 0:
                        h0 = c.header if c.HasField("header") else header
                        if h0 is None:
                            raise RpcFailure(SC.INVALID_ARGUMENT, "frame chunk before any header")
                        s.check_declared(h0)
                    done = asm.add(c)
                    if done is None:
                        continue
                    fid, hdr, payload = done
                    if s.draining:
                        put(DRAIN)
                        return
                    reader_busy.set()
                    try:
                        prep = s.prepare(fid, hdr if hdr is not None else header, payload, context)
                        if not put(prep):
                            if prep.item is not None:
                                prep.item.cancelled.set()
                            return
                    finally:
                        reader_busy.clear()
                if asm.busy:
                    raise RpcFailure(SC.INVALID_ARGUMENT, "stream ended in the middle of a frame")
                put(END)
            except BaseException as exc:  # noqa: BLE001 - handed to the replying side
                if isinstance(exc, grpc.RpcError) or not context.is_active():
                    put(Cancelled("request cancelled"))
                else:
                    put(failure_for(exc))

        th = threading.Thread(target=reader, name="stream-reader", daemon=True)
        th.start()
        nframes = 0
        try:
            while True:
                try:
                    item = out_q.get(timeout=0.1)
                except queue.Empty:
                    if not context.is_active():
                        return
                    if s.draining and not reader_busy.is_set() and out_q.empty():
                        item = DRAIN
                    else:
                        continue
                if item is END:
                    return
                if item is DRAIN:
                    raise RpcFailure(SC.UNAVAILABLE, f"server is shutting down after {nframes} frames of this "
                                     "stream; resend the rest to another server")
                if isinstance(item, BaseException):
                    raise item
                waiting[:] = [item]
                lin, mask = s.wait_frame(item, context)
                waiting.clear()
                header, data = s.finish(item, lin, mask)
                for ch in fr.frame_chunks(item.frame_id, data, item.chunk_bytes, header):
                    yield pb.StreamReply(chunk=ch)
                nframes += 1
                fields.update(frames=nframes, model=item.settings.model, width=item.width, height=item.height)
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, GeneratorExit):
                raise
            s.abort(context, exc)
        finally:
            cleanup()

    # -- jobs
    @_rpc
    def SubmitJob(self, request, context):
        self.s.check_serving()
        rec = self.s.jobs.submit(request)
        _CallLog.current().update(job=rec.id, source=rec.source)
        return rec.proto()

    @_rpc
    def GetJob(self, request, context):
        return self.s.jobs.get(request.id).proto()

    @_rpc
    def WatchJob(self, request, context):
        yield from self.s.jobs.watch(request.id, context)

    @_rpc
    def CancelJob(self, request, context):
        return self.s.jobs.cancel(request.id).proto()


class HdrliftServer:
    """The server object: ``start()``, ``port``, ``shutdown()``; usable in-process (tests)."""

    def __init__(self, config: ServerConfig | None = None, **overrides):
        cfg = dataclasses.replace(config or ServerConfig(), **overrides)
        cfg.validate()
        if cfg.max_batch is None:
            cfg.max_batch = 1 if str(cfg.device).startswith("cpu") else 8
        self.config = cfg
        self.metrics = Metrics()
        self.colour = ColourManager(cfg.ocio_config)
        self.default_input_space = self.colour.resolve("srgb")
        self.default_output_space = self.colour.resolve(cfg.output_space)
        self.check_model(cfg.model)
        self.draining = False
        self._pipelines: dict[tuple, Pipeline] = {}
        self._settings: collections.OrderedDict[tuple, Settings] = collections.OrderedDict()
        self._plock = threading.Lock()
        self.batcher = Batcher(cfg.queue_size, cfg.max_batch, cfg.batch_window_ms / 1000.0, self.metrics)
        self.metrics.gauges["hdrlift_queue_depth"] = self.batcher.depth
        self.jobs = JobManager(self, cfg.roots, cfg.job_workers, cfg.state_dir)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self._server: grpc.Server | None = None
        self._metrics_http = None
        self.port: int | None = None
        self._stopped = threading.Event()
        for name in cfg.preload or (cfg.model,):
            self.pipeline(name, self.default_output_space)

    # -- models and colour
    def check_model(self, name: str) -> None:
        if not name or len(name) > 200:
            raise RpcFailure(SC.INVALID_ARGUMENT, "model name is empty or too long")
        try:
            info = get_info(name)
        except ModelError as exc:
            raise RpcFailure(SC.NOT_FOUND, str(exc)) from None
        if info.kind == "fusion":
            raise RpcFailure(SC.INVALID_ARGUMENT, f"model {name!r} merges exposure brackets (hdr-merge), not single frames")
        if not info.runnable:
            raise RpcFailure(SC.FAILED_PRECONDITION, f"model {name!r} has no trained weights on this server")

    def resolve_space(self, name: str) -> str:
        if len(name) > 500:
            raise RpcFailure(SC.INVALID_ARGUMENT, "colour space name too long")
        try:
            return self.colour.resolve(name)
        except ColourError as exc:
            raise RpcFailure(SC.NOT_FOUND, str(exc)) from None

    def _options(self, model: str, output_space: str, **kw) -> PipelineOptions:
        c = self.config
        return PipelineOptions(model=model, device=c.device, ocio_config=c.ocio_config, output_space=output_space,
                               backend=c.backend, precision=c.precision, cache_dir=c.cache_dir, **kw)

    def pipeline(self, model: str, output_space: str) -> Pipeline:
        key = (model, output_space)
        with self._plock:
            p = self._pipelines.get(key)
            if p is None:
                self.check_model(model)
                p = Pipeline(self._options(model, output_space))
                self._pipelines[key] = p
        return p

    def job_pipeline(self, model: str, output_space: str, input_space: str | None, **kw) -> Pipeline:
        key = ("job", model, output_space, input_space, tuple(sorted(kw.items())))
        with self._plock:
            p = self._pipelines.get(key)
            if p is None:
                self.check_model(model)
                p = Pipeline(self._options(model, output_space, input_space=input_space, **kw))
                self._pipelines[key] = p
        return p

    def settings_for(self, h: pb.FrameHeader) -> Settings:
        key = (h.model, h.input_space, h.output_space)
        with self._plock:
            st = self._settings.get(key)
            if st is not None:
                self._settings.move_to_end(key)
                return st
        model = h.model or self.config.model
        self.check_model(model)
        ins = self.resolve_space(h.input_space) if h.input_space else self.default_input_space
        outs = self.resolve_space(h.output_space) if h.output_space else self.default_output_space
        st = Settings(self.pipeline(model, outs), model, ins, outs)
        with self._plock:
            self._settings[key] = st
            while len(self._settings) > 256:
                self._settings.popitem(last=False)
        return st

    # -- frames
    def max_frame_bytes(self) -> int:
        """Largest payload a frame may have: ``max_pixels`` float RGB (EXR bytes: the same bound)."""
        return self.config.max_pixels * 3 * 4 + (1 << 20)

    def check_serving(self) -> None:
        if self.draining:
            raise RpcFailure(SC.UNAVAILABLE, "server is shutting down")

    def check_declared(self, h: pb.FrameHeader) -> None:
        """Refuse a frame on its header, before its payload is accumulated."""
        code = h.dtype or pb.DTYPE_FLOAT
        if code not in (pb.DTYPE_HALF, pb.DTYPE_FLOAT, pb.DTYPE_EXR):
            raise RpcFailure(SC.INVALID_ARGUMENT, f"unknown dtype {h.dtype}")
        if code == pb.DTYPE_EXR:
            return
        if h.width <= 0 or h.height <= 0:
            raise RpcFailure(SC.INVALID_ARGUMENT, f"frame size must be positive, got {h.width}x{h.height}")
        if h.width * h.height > self.config.max_pixels:
            raise RpcFailure(SC.OUT_OF_RANGE, f"frame {h.width}x{h.height} is above this server's limit of "
                             f"{self.config.max_pixels} pixels")
        if h.channels not in (0, 3):
            raise RpcFailure(SC.INVALID_ARGUMENT, f"frames have 3 channels (planar R, G, B), got {h.channels}")

    def prepare(self, frame_id: int, h: pb.FrameHeader, payload: bytes, context) -> Prepared:
        """Validate, decode and colour-convert one frame, then queue it for the device."""
        t0 = time.perf_counter()
        self.check_declared(h)
        st = self.settings_for(h)
        code = h.dtype or pb.DTYPE_FLOAT
        out_code = h.options.output_dtype or code
        if out_code not in (pb.DTYPE_HALF, pb.DTYPE_FLOAT, pb.DTYPE_EXR):
            raise RpcFailure(SC.INVALID_ARGUMENT, f"unknown output dtype {h.options.output_dtype}")
        cb = h.options.reply_chunk_bytes or fr.DEFAULT_CHUNK_BYTES
        cb = max(fr.MIN_CHUNK_BYTES, min(int(cb), self.config.max_message_bytes - (16 << 10)))
        self.batcher.preparing(+1)
        try:
            if code == pb.DTYPE_EXR:
                rgb, _, _ = fr.decode_exr(payload, max_pixels=self.config.max_pixels)
            else:
                rgb = fr.decode_planar(payload, h.width, h.height, 3, code)
            p = st.pipeline
            net_in = p.colour_in(rgb, st.input_space)  # checks: InputError -> INVALID_ARGUMENT
            deadline = None
            rem = context.time_remaining() if context is not None else None
            if rem is not None:
                if rem <= 0:
                    raise Expired("deadline expired")
                deadline = time.monotonic() + rem
            prep = Prepared(frame_id, st, out_code, bool(h.options.return_mask), cb, rgb.shape[1], rgb.shape[0], t0)
            prep.item = self.batcher.submit(WorkItem(p, net_in, deadline))
        finally:
            self.batcher.preparing(-1)
        return prep

    def wait_frame(self, prep: Prepared, context) -> tuple[np.ndarray, np.ndarray]:
        item = prep.item
        while True:
            try:
                return item.future.result(timeout=0.05)
            except concurrent.futures.TimeoutError:
                if item.deadline is not None and time.monotonic() >= item.deadline:
                    item.cancelled.set()
                    raise Expired("deadline expired before the frame was finished") from None
                if context is not None and not context.is_active():
                    item.cancelled.set()
                    raise Cancelled("request cancelled") from None

    def finish(self, prep: Prepared, lin: np.ndarray, mask: np.ndarray) -> tuple[pb.FrameHeader, bytes]:
        st = prep.settings
        p = st.pipeline
        hdr = p.colour_out(lin)  # checks: non-finite output -> ModelError
        names = ["R", "G", "B"] + (["mask"] if prep.want_mask else [])
        header = pb.FrameHeader(width=prep.width, height=prep.height, dtype=prep.out_dtype,
                                channels=len(names), input_space=st.input_space, output_space=p.output_space,
                                model=st.model, model_version=str(p.model_version), channel_names=names,
                                batch_size=prep.item.batch_size)
        if prep.out_dtype == pb.DTYPE_EXR:
            attrs = frame_attributes(input_space=st.input_space, ocio_config=p.colour.config_name, **p.attributes())
            data = fr.encode_exr(hdr, mask if prep.want_mask else None, half=False, attributes=attrs)
        else:
            img = np.concatenate([hdr, mask[:, :, None]], axis=2) if prep.want_mask else hdr
            data = fr.encode_planar(img, prep.out_dtype)
        header.server_seconds = time.perf_counter() - prep.t0
        self.metrics.frames_done(st.model)
        return header, data

    def abort(self, context, exc: BaseException):
        if isinstance(exc, grpc.RpcError) or type(exc).__name__ == "_AbortError" or isinstance(exc, GeneratorExit):
            raise exc  # already aborted / client went away
        else:
            f = failure_for(exc)
        context.abort(f.code, f.message)

    # -- life cycle
    def start(self) -> int:
        c = self.config
        opts = [("grpc.max_receive_message_length", c.max_message_bytes),
                ("grpc.max_send_message_length", c.max_message_bytes),
                ("grpc.so_reuseport", 0),
                # accept the clients' keepalive pings however long a frame takes (gRPC's default
                # would answer pings more often than every 5 min without data with GOAWAY), and
                # ping them in turn, so a client that vanished frees its stream's frames
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
                ("grpc.http2.max_ping_strikes", 0),
                ("grpc.keepalive_time_ms", 60_000), ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.http2.ping_timeout_ms", 20_000),
                ("grpc.http2.max_pings_without_data", 0)]
        interceptors: list[grpc.ServerInterceptor] = [LogInterceptor(self.metrics, c.log_stream)]
        if c.tokens:
            interceptors.append(AuthInterceptor(c.tokens))
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=c.workers, thread_name_prefix="rpc")
        server = grpc.server(pool, interceptors=interceptors, options=opts, maximum_concurrent_rpcs=c.workers)
        pb_grpc.add_HdrliftServicer_to_server(HdrliftServicer(self), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)
        addr = f"{c.host}:{c.port}"
        if c.tls_cert:
            try:
                key = pathlib.Path(c.tls_key).read_bytes()
                cert = pathlib.Path(c.tls_cert).read_bytes()
                ca = pathlib.Path(c.tls_ca).read_bytes() if c.tls_ca else None
            except OSError as exc:
                raise InputError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from None
            creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=bool(ca))
            port = server.add_secure_port(addr, creds)
        else:
            port = server.add_insecure_port(addr)
        if not port:
            raise InputError(f"cannot listen on {addr}")
        server.start()
        self._server = server
        self.port = port
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        if c.metrics_port is not None:
            self._metrics_http = serve_metrics(self.metrics, c.metrics_port, c.metrics_host)
        loaded, resumed = self.jobs.restore()
        self._log("started", port=port, tls=bool(c.tls_cert), mtls=bool(c.tls_ca), auth=bool(c.tokens),
                  model=c.model, roots=list(c.roots), jobs_loaded=loaded, jobs_resumed=resumed,
                  metrics_port=self._metrics_http.server_port if self._metrics_http else None)
        return port

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_http.server_port if self._metrics_http else None

    def _log(self, event: str, **fields) -> None:
        if self.config.log_stream is False:
            return
        out = self.config.log_stream or sys.stderr
        try:
            out.write(json.dumps({"ts": round(time.time(), 3), "level": "info", "event": event, **fields}) + "\n")
            out.flush()
        except (OSError, ValueError):
            pass

    def shutdown(self, grace: float | None = None) -> None:
        """Stop taking work, finish and send every accepted frame, cancel jobs, stop."""
        if self.draining:
            self._stopped.wait()
            return
        grace = self.config.grace if grace is None else grace
        self._log("draining", grace=grace)
        self.draining = True
        self.health.enter_graceful_shutdown()
        self.jobs.cancel_all(resume_on_start=True)
        if self._server is not None:
            self._server.stop(grace).wait()
        self.batcher.close(timeout=grace)
        self.jobs.shutdown(wait=True)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        self._log("stopped", frames=self.metrics.total_frames())
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hdrlift-serve", description="hdrlift gRPC server (hdrlift.v1): frames "
                                 "and path jobs for render farms and host plug-ins. See docs/server.md.")
    ap.add_argument("--host", default="[::]", help="address to listen on (default [::], all interfaces)")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks one)")
    ap.add_argument("--model", default=DEFAULT_MODEL, help=f"default model (default {DEFAULT_MODEL})")
    ap.add_argument("--preload", action="append", default=[], metavar="MODEL",
                    help="load this model at start (repeatable; default: the default model)")
    ap.add_argument("--output-space", default=DEFAULT_OUTPUT_SPACE, help="default output colour space")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--backend", default="auto", help="auto, torch, onnxruntime, tensorrt")
    ap.add_argument("--precision", default="fp32", help="fp32, fp16, bf16")
    ap.add_argument("--ocio-config", default=None, help="OCIO config (default $OCIO, else the built-in studio config)")
    ap.add_argument("--cache-dir", default=None, help="back end cache (exports, TensorRT plans)")
    ap.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE,
                    help="largest gRPC message either way (default 64 MiB); streams chunk frames below it")
    ap.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="largest frame accepted (w x h)")
    ap.add_argument("--max-batch", type=int, default=None, help="most frames per device call (default: 1 on the "
                    "CPU, where a batch is no faster than its frames one by one; 8 on a GPU)")
    ap.add_argument("--batch-window-ms", type=float, default=3.0, help="how long to wait for frames to batch")
    ap.add_argument("--queue-size", type=int, default=32, help="frames waiting for the device before "
                    "RESOURCE_EXHAUSTED (default 32)")
    ap.add_argument("--stream-window", type=int, default=4, help="frames in flight per stream (default 4)")
    ap.add_argument("--workers", type=int, default=32, help="concurrent RPCs (default 32)")
    ap.add_argument("--job-workers", type=int, default=1, help="path jobs run at once (default 1)")
    ap.add_argument("--root", action="append", default=[], help="folder path jobs may read and write (repeatable); "
                    "without one, jobs are refused")
    ap.add_argument("--state-dir", help="keep job records here (JSON, one file per job): they survive restarts, and "
                    "jobs queued or running when the server stopped resume (finished frames kept)")
    ap.add_argument("--tls-cert", help="server certificate chain (PEM)")
    ap.add_argument("--tls-key", help="server private key (PEM)")
    ap.add_argument("--tls-ca", help="CA (PEM) client certificates must chain to: mutual TLS")
    ap.add_argument("--token-file", help="bearer tokens, one per line (also $HDRLIFT_TOKENS, comma-separated)")
    ap.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics at :PORT/metrics")
    ap.add_argument("--metrics-host", default="0.0.0.0")
    ap.add_argument("--grace", type=float, default=30.0, help="seconds to drain on SIGTERM (default 30)")
    ap.add_argument("--quiet", action="store_true", help="no per-request log lines")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        cfg = ServerConfig(
            host=args.host, port=args.port, model=args.model, output_space=args.output_space, device=args.device,
            backend=args.backend, precision=args.precision, ocio_config=args.ocio_config, cache_dir=args.cache_dir,
            max_message_bytes=args.max_message_bytes, max_pixels=args.max_pixels, max_batch=args.max_batch,
            batch_window_ms=args.batch_window_ms, queue_size=args.queue_size, stream_window=args.stream_window,
            workers=args.workers, job_workers=args.job_workers, roots=tuple(args.root), state_dir=args.state_dir,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key, tls_ca=args.tls_ca, tokens=load_tokens(args.token_file),
            metrics_port=args.metrics_port, metrics_host=args.metrics_host, grace=args.grace,
            preload=tuple(args.preload), log_stream=False if args.quiet else None)
        server = HdrliftServer(cfg)
        server.start()
    except RpcFailure as exc:
        print(f"hdrlift-serve: error: {exc.message}", file=sys.stderr)
        return 2
    except HdrliftError as exc:
        print(f"hdrlift-serve: error: {exc}", file=sys.stderr)
        return exc.exit_code
    stopping = threading.Event()

    def on_signal(signum, _frame):
        if stopping.is_set():
            return
        stopping.set()
        threading.Thread(target=server.shutdown, name="shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not server.wait(0.5):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
