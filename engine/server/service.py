"""The servicer (the ``hdrlift.v1`` RPCs) and :class:`HdrliftServer`, which owns the pipelines,
the batcher, the jobs, health, reflection, metrics and the start/shutdown life cycle."""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import inspect
import json
import pathlib
import queue
import sys
import threading
import time

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hdrlift.engine import __version__
from hdrlift.engine.colour import ColourManager
from hdrlift.engine.errors import ColourError, InputError, ModelError
from hdrlift.engine.io.exr import frame_attributes
from hdrlift.engine.models import available, get_info
from hdrlift.engine.pipeline import Pipeline, PipelineOptions
from hdrlift.engine.server.batcher import Batcher, WorkItem
from hdrlift.engine.server.config import ServerConfig
from hdrlift.engine.server.errors import SC, Cancelled, Expired, RpcFailure, failure_for
from hdrlift.engine.server.interceptors import AdmissionInterceptor, AuthInterceptor, LogInterceptor, _CallLog
from hdrlift.engine.server.jobs import JobManager
from hdrlift.engine.server.prometheus import Metrics, serve_metrics
from hdrlift.plugin import frames as fr
from hdrlift.plugin import openexr
from hdrlift.plugin.v1 import hdrlift_pb2 as pb
from hdrlift.plugin.v1 import hdrlift_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Hdrlift"].full_name


def reply_bytes(width: int, height: int, channels: int, dtype: int) -> int:
    """The most bytes a reply of ``width`` x ``height`` x ``channels`` in ``dtype`` takes."""
    if dtype == pb.DTYPE_EXR:
        return openexr.max_payload_bytes(width, height, float_samples=True)
    return fr.planar_size(width, height, channels, dtype if dtype in (pb.DTYPE_HALF, pb.DTYPE_FLOAT) else pb.DTYPE_FLOAT)


DEADLINE_MARGIN_S = 0.25  # a frame is dropped this long before its call's deadline (at most 10 % of it)
RESERVE_THREADS = 8  # handler threads beyond the admitted calls: health checks, refusals


@dataclasses.dataclass
class Settings:
    pipeline: Pipeline
    model: str
    input_space: str
    output_space: str
    working: str | None = None  # the network's working primaries for input_space (None: Rec.709)


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
        self.s.check_declared(h)  # above --max-pixels: OUT_OF_RANGE, whatever the call
        out_c = 4 if h.options.return_mask else 3
        oc = h.options.output_dtype or h.dtype or pb.DTYPE_FLOAT
        if reply_bytes(h.width, h.height, out_c, oc) > self.s.config.max_message_bytes - 4096:
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
                        asm.max_bytes = s.check_declared(h0)  # never hold more than the frame declared
                    done = asm.add(c)
                    if done is None:
                        continue
                    fid, hdr, payload = done
                    if s.draining:
                        put(DRAIN)
                        return
                    reader_busy.set()
                    try:
                        prep = s.prepare(fid, hdr if hdr is not None else header, payload, context,
                                         wait=lambda: context.is_active() and not stop.is_set())
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
        p = self.pipeline(model, outs)
        st = Settings(p, model, ins, outs, p.working_space(ins))
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

    def check_declared(self, h: pb.FrameHeader) -> int:
        """Refuse a frame on its header, before its payload is accumulated; return the most
        payload bytes the frame it declares may have (planar: exactly its size; EXR: its size
        uncompressed plus the header), which bounds what the server ever holds for it."""
        code = h.dtype or pb.DTYPE_FLOAT
        if code not in (pb.DTYPE_HALF, pb.DTYPE_FLOAT, pb.DTYPE_EXR):
            raise RpcFailure(SC.INVALID_ARGUMENT, f"unknown dtype {h.dtype}")
        if h.width <= 0 or h.height <= 0:
            raise RpcFailure(SC.INVALID_ARGUMENT, f"frame size must be positive, got {h.width}x{h.height} (EXR "
                             "payloads declare their size too)")
        if h.width * h.height > self.config.max_pixels:
            raise RpcFailure(SC.OUT_OF_RANGE, f"frame {h.width}x{h.height} is above this server's limit of "
                             f"{self.config.max_pixels} pixels")
        if code == pb.DTYPE_EXR:
            return openexr.max_payload_bytes(h.width, h.height)
        if h.channels not in (0, 3):
            raise RpcFailure(SC.INVALID_ARGUMENT, f"frames have 3 channels (planar R, G, B), got {h.channels}")
        return fr.planar_size(h.width, h.height, 3, code)

    def prepare(self, frame_id: int, h: pb.FrameHeader, payload: bytes, context, wait=None) -> Prepared:
        """Validate, decode and colour-convert one frame, then queue it for the device (``wait``:
        see :meth:`Batcher.submit`; a stream waits for room, a unary call is refused)."""
        t0 = time.perf_counter()
        limit = self.check_declared(h)
        if len(payload) > limit:
            raise RpcFailure(SC.INVALID_ARGUMENT, f"payload has {len(payload)} bytes; the {h.width}x{h.height} frame "
                             f"it declares has at most {limit}")
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
                rgb, _, _ = fr.decode_exr(payload, max_pixels=h.width * h.height)
                if rgb.shape[:2] != (h.height, h.width):
                    raise RpcFailure(SC.INVALID_ARGUMENT, f"EXR payload is {rgb.shape[1]}x{rgb.shape[0]}; the header "
                                     f"declares {h.width}x{h.height}")
            else:
                rgb = fr.decode_planar(payload, h.width, h.height, 3, code)
            p = st.pipeline
            net_in = p.colour_in(rgb, st.input_space)  # checks: InputError -> INVALID_ARGUMENT
            deadline = None
            rem = context.time_remaining() if context is not None else None
            if rem is not None:
                if rem <= 0:
                    raise Expired("deadline expired")
                # the server gives up a little before the client does, so that its own answer
                # (DEADLINE_EXCEEDED, the frame dropped before the device) reaches the client
                deadline = time.monotonic() + rem - min(DEADLINE_MARGIN_S, 0.1 * rem)
            prep = Prepared(frame_id, st, out_code, bool(h.options.return_mask), cb, rgb.shape[1], rgb.shape[0], t0)
            prep.item = self.batcher.submit(WorkItem(p, net_in, deadline), wait=wait)
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
        hdr = p.colour_out(lin, st.working)  # checks: non-finite output -> ModelError
        names = ["R", "G", "B"] + (["mask"] if prep.want_mask else [])
        header = pb.FrameHeader(width=prep.width, height=prep.height, dtype=prep.out_dtype,
                                channels=len(names), input_space=st.input_space, output_space=p.output_space,
                                model=st.model, model_version=str(p.model_version), model_weights=p.weights or "",
                                channel_names=names,
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
        # calls pass the log, then the token check, then admission (parse, concurrency caps): a
        # caller without a token never takes a work slot
        interceptors: list[grpc.ServerInterceptor] = [LogInterceptor(self.metrics, c.log_stream)]
        if c.tokens:
            interceptors.append(AuthInterceptor(c.tokens))
        self.admission = AdmissionInterceptor(c.workers, c.aux_streams, c.aux_per_peer, SERVICE_NAME)
        interceptors.append(self.admission)
        # threads: every admitted work call and aux stream, plus room for health checks and refusals
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=c.workers + c.aux_streams + RESERVE_THREADS,
                                                     thread_name_prefix="rpc")
        server = grpc.server(pool, interceptors=interceptors, options=opts)
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
        """Life-cycle lines (started, draining, stopped): always written, ``--quiet`` or not (the
        started line names the port ``--port 0`` chose)."""
        out = self.config.log_stream or sys.stderr
        try:
            out.write(json.dumps({"ts": round(time.time(), 3), "level": "info", "event": event, **fields}) + "\n")
            out.flush()
        except (OSError, ValueError):
            pass

    def shutdown(self, grace: float | None = None) -> None:
        """Stop taking work, finish and send every accepted frame, cancel jobs, stop: within
        ``grace`` seconds (then what is still running is cancelled), whatever a job is doing."""
        if self.draining:
            self._stopped.wait()
            return
        grace = self.config.grace if grace is None else grace
        end = time.monotonic() + grace
        self._log("draining", grace=grace)
        self.draining = True
        self.health.enter_graceful_shutdown()
        self.jobs.cancel_all(resume_on_start=True)
        if self._server is not None:
            self._server.stop(grace).wait(grace + 5)
        self.batcher.close(timeout=max(0.0, end - time.monotonic()))
        jobs_ended = self.jobs.shutdown(timeout=max(1.0, end - time.monotonic()))
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        self._log("stopped", frames=self.metrics.total_frames(), jobs_ended=jobs_ended)
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)


