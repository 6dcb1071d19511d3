"""Python client of the hdrlift gRPC server (contract ``hdrlift.v1``; server: ``hdrlift-serve``).

    from hdrlift.plugin import Client
    with Client("farm1:50051,farm2:50051", token="...") as c:
        hdr = c.reconstruct(rgb).hdr                      # H x W x 3 float32 in, out
        for res in c.reconstruct_frames(frames): ...      # ordered stream, any resolution
        job = c.run_job("shots/sh010/plate.####.png", "shots/sh010/hdr/", progress=print)

* Numpy in and out: frames are ``H x W x 3`` float32 code values in the input colour space
  (default sRGB); results are scene-linear ``H x W x 3`` float32 in the output space.
* Several addresses (``host:port,host:port``) share one channel balanced with gRPC's own
  ``round_robin`` policy; calls are retried on ``UNAVAILABLE`` by gRPC's retry policy (service
  config), and streams resend the frames a server did not answer (e.g. while it shuts down) on a
  new stream, which round-robin places on another server.
* Bearer token (``token=`` or ``$HDRLIFT_TOKEN``), TLS and mutual TLS (``ca_file``,
  ``cert_file``/``key_file``).
* The client only ever reads numbers and protobuf messages from a server: nothing a server sends
  is executed, unpickled or evaluated, and payload sizes are checked against their headers.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import json
import os
import socket
import threading
import time
from typing import Callable, Iterable, Iterator

import grpc
import numpy as np

from hdrlift.plugin.errors import HdrliftError, ServerError
from hdrlift.plugin import frames as fr
from hdrlift.plugin.v1 import hdrlift_pb2 as pb
from hdrlift.plugin.v1 import hdrlift_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Hdrlift"].full_name
DEFAULT_MAX_MESSAGE = 64 << 20
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
DEFAULT_KEEPALIVE_S = 30.0  # seconds between HTTP/2 pings on an open call (0: none)
JOB_DONE = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)


class RemoteError(ServerError):
    """A server answered with an error status (``.code``: a ``grpc.StatusCode``), or its reply
    broke the contract (``.code`` None). The message is cleaned (:func:`clean_text`): a server
    cannot put control characters or escape sequences on the user's terminal. Exit code 6."""

    def __init__(self, code: grpc.StatusCode | None, message: str, server: str | None = None):
        self.code = code
        name = code.name if code is not None else "ERROR"
        where = f"server {clean_text(server, 200)}" if server else "server"
        super().__init__(f"{where}: {name}: {clean_text(message)}")


def clean_text(text, limit: int = 1000) -> str:
    """``text`` on one line of printable characters, at most ``limit`` long: for anything a server
    sent that may be shown to a user (error details, colour space names)."""
    s = "".join(ch if ch.isprintable() else " " for ch in str(text or ""))
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _remote(exc: grpc.RpcError, server: str | None = None) -> RemoteError:
    try:
        code, details = exc.code(), exc.details()
    except Exception:  # noqa: BLE001 - not a call error
        code, details = None, str(exc)
    if not isinstance(code, grpc.StatusCode):
        code = None
    return RemoteError(code, clean_text(details) or "no details", server)


_HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _health_status(data: bytes) -> int:
    """Field 1 (varint) of a ``HealthCheckResponse``; 0 when absent. Other fields are skipped."""
    i, status = 0, 0
    while i < len(data):
        key, i = _read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
            if field == 1:
                status = value
        elif wire == 2:
            size, i = _read_varint(data, i)
            i += size
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise RemoteError(None, "malformed health reply")
    return status


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= len(data) or shift > 63:
            raise RemoteError(None, "malformed health reply")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


@dataclasses.dataclass
class Result:
    hdr: np.ndarray  # H x W x 3 float32, scene-linear in header.output_space
    mask: np.ndarray | None  # H x W float32 in [0, 1] when requested
    header: pb.FrameHeader  # output description: spaces, model, version, batch size, server time


# --------------------------------------------------------------------------- addresses
def _split_hostport(addr: str) -> tuple[str, str]:
    a = addr.strip()
    if a.startswith("["):
        host, _, rest = a[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = a.rpartition(":")
    if not host or not port.isdigit():
        raise HdrliftError(f"server address {addr!r} must be host:port")
    return host, port


URI_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:")


def channel_target(servers: str | Iterable[str]) -> tuple[str, str | None]:
    """``(target, tls_name)`` for one address or several (``host:port,host:port``).

    A gRPC target URI is used as given, resolved and balanced by gRPC itself:
    ``dns:///gpu-pool.studio:50051`` (every A/AAAA record of the name is a server, re-resolved
    when connections fail: the form for a pool whose members change), ``ipv4:10.0.0.1:50051,
    10.0.0.2:50051``, ``ipv6:...``, ``unix:...``. One ``host:port`` goes to gRPC's DNS resolver
    too. Several ``host:port`` become a static ``ipv4:``/``ipv6:`` target; host names among them
    are resolved once, here, and ``tls_name`` is then the first host name, for certificate checks.
    """
    if isinstance(servers, str) and servers.strip().startswith(URI_SCHEMES):
        uri = servers.strip()
        host = uri.split(":///", 1)[1].rsplit(":", 1)[0] if uri.startswith("dns:///") else None
        return uri, host
    addrs = [a.strip() for a in (servers.split(",") if isinstance(servers, str) else servers) if a.strip()]
    if not addrs:
        raise HdrliftError("no server address given")
    if len(addrs) == 1:
        _split_hostport(addrs[0])
        return addrs[0], None
    v4, v6, name = [], [], None
    for a in addrs:
        host, port = _split_hostport(a)
        try:
            ip = ipaddress.ip_address(host)
            (v4 if ip.version == 4 else v6).append(f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}")
            continue
        except ValueError:
            name = name or host
        try:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise HdrliftError(f"cannot resolve server {host!r}: {exc.strerror}") from None
        fam4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
        fam6 = [i[4][0] for i in infos if i[0] == socket.AF_INET6]
        if fam4:
            v4.append(f"{fam4[0]}:{port}")
        elif fam6:
            v6.append(f"[{fam6[0]}]:{port}")
    if v4 and v6:
        return "ipv4:" + ",".join(v4), name  # one family per static target; IPv4 wins
    return ("ipv4:" + ",".join(v4)) if v4 else ("ipv6:" + ",".join(v6)), name


def service_config(retries: int = 4) -> str:
    """Round-robin over every address the target resolves to, counting only the servers whose
    standard health service says SERVING for ``hdrlift.v1.Hdrlift`` (a draining server gets no
    new call); retry on UNAVAILABLE with exponential back-off."""
    return json.dumps({
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": SERVICE_NAME},
        "methodConfig": [{
            "name": [{"service": SERVICE_NAME}],
            "retryPolicy": {
                "maxAttempts": max(2, min(5, retries + 1)),
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }],
    })


# --------------------------------------------------------------------------- the client
class Client:
    """A connection to one or more hdrlift servers (see the module docstring)."""

    def __init__(self, servers: str | Iterable[str] = "localhost:50051", *, token: str | None = None,
                 tls: bool = False, ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None, server_name: str | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE, chunk_bytes: int = fr.DEFAULT_CHUNK_BYTES,
                 retries: int = 4, timeout: float | None = None, options: list | None = None,
                 keepalive: float = DEFAULT_KEEPALIVE_S):
        names = [a.strip() for a in (servers.split(",") if isinstance(servers, str) else servers) if a.strip()]
        target, tls_name = channel_target(servers if isinstance(servers, str) else names)
        self.target = target
        self.servers = ",".join(names)  # as given: for messages
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.chunk_bytes = max(fr.MIN_CHUNK_BYTES, min(int(chunk_bytes), int(max_message_bytes) - (16 << 10)))
        token = token if token is not None else os.environ.get("HDRLIFT_TOKEN") or None
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        opts = [("grpc.max_receive_message_length", int(max_message_bytes)),
                ("grpc.max_send_message_length", int(max_message_bytes)),
                ("grpc.service_config", service_config(self.retries)),
                ("grpc.enable_retries", 1)]
        if keepalive and keepalive > 0:
            # HTTP/2 pings while a call is open, answered or not: a server that vanishes without
            # closing the connection (power loss, silent partition) ends the call UNAVAILABLE
            # after ``keepalive`` + at most 20 s, and its frames go to the other servers
            ms = max(100, int(keepalive * 1000))
            wait = min(20000, ms)  # for the ping's answer; gRPC's ping timeout would leave it at 60 s
            opts += [("grpc.keepalive_time_ms", ms), ("grpc.keepalive_timeout_ms", wait),
                     ("grpc.http2.ping_timeout_ms", wait), ("grpc.http2.max_pings_without_data", 0)]
        if cert_file or key_file or ca_file:
            tls = True
        if tls:
            def read(p):
                if p is None:
                    return None
                try:
                    with open(p, "rb") as f:
                        return f.read()
                except OSError as exc:
                    raise HdrliftError(f"cannot read {p}: {exc.strerror or exc}") from None
            creds = grpc.ssl_channel_credentials(root_certificates=read(ca_file), private_key=read(key_file),
                                                 certificate_chain=read(cert_file))
            name = server_name or tls_name
            if name:
                opts.append(("grpc.ssl_target_name_override", name))
            self._channel = grpc.secure_channel(target, creds, options=opts + list(options or []))
        else:
            self._channel = grpc.insecure_channel(target, options=opts + list(options or []))
        self.stub = pb_grpc.HdrliftStub(self._channel)

    # -- plumbing
    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, fn, request, timeout=None):
        """A unary call; RESOURCE_EXHAUSTED (a busy server) is retried with back-off here,
        UNAVAILABLE by gRPC's retry policy."""
        delay = 0.05
        for attempt in range(self.retries + 1):
            try:
                return fn(request, timeout=timeout if timeout is not None else self.timeout,
                          metadata=self._metadata)
            except grpc.RpcError as exc:
                if exc.code() in RETRYABLE and attempt < self.retries:
                    time.sleep(delay)
                    delay = min(2.0, delay * 2)
                    continue
                raise _remote(exc, self.servers) from None
        raise AssertionError("unreachable")

    def wait_ready(self, timeout: float = 10.0) -> None:
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise RemoteError(grpc.StatusCode.UNAVAILABLE, f"not reachable within {timeout:g} s",
                              self.servers) from None

    # -- information
    def health(self, service: str = "", timeout: float = 5.0) -> str:
        """The server's health status name (``SERVING``, ``NOT_SERVING``...), from the standard
        ``grpc.health.v1.Health/Check``. Its two one-field messages are coded here (a length-
        delimited field 1 out, a varint field 1 back), so the client needs no
        grpcio-health-checking package."""
        name = service.encode("utf-8")
        request = (b"\x0a" + _varint(len(name)) + name) if name else b""
        check = self._channel.unary_unary("/grpc.health.v1.Health/Check")
        try:
            reply = check(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise _remote(exc, self.servers) from None
        return _HEALTH_STATUS.get(_health_status(bytes(reply)), "UNKNOWN")

    def server_info(self) -> pb.ServerInfo:
        return self._call(self.stub.GetServerInfo, pb.GetServerInfoRequest())

    def list_models(self, timeout: float | None = None) -> pb.ListModelsReply:
        """The server's models (``timeout`` seconds; None: the client's default)."""
        return self._call(self.stub.ListModels, pb.ListModelsRequest(), timeout)

    def runnable_model(self, model: str | None = None, timeout: float | None = None) -> tuple[str, str]:
        """Ask the server whether it can run ``model`` (None: its default): returns ``(model,
        the server's default output space)``. Raises RemoteError when the server cannot be
        reached, refuses the token, does not know the model or cannot run it."""
        reply = self.list_models(timeout)
        name = model or clean_text(reply.default_model, 200)
        info = next((m for m in reply.models if m.name == name), None)
        if info is None:
            runnable = ", ".join(sorted(m.name for m in reply.models if m.runnable))
            raise RemoteError(grpc.StatusCode.NOT_FOUND, f"unknown model {name!r}; it runs {runnable or 'none'}",
                              self.servers)
        if not info.runnable:
            why = ("it merges exposure brackets (hdr-merge)" if info.kind == "fusion" else
                   "no trained weights there" if info.needs_weights and not info.has_weights else
                   "not runnable there")
            raise RemoteError(grpc.StatusCode.FAILED_PRECONDITION, f"model {name!r} cannot run: {why}", self.servers)
        return name, reply.default_output_space

    # -- frames
    @staticmethod
    def header(*, model: str | None = None, input_space: str | None = None, output_space: str | None = None,
               dtype: str | int = "float", output_dtype: str | int | None = None, mask: bool = False,
               reply_chunk_bytes: int = 0) -> pb.FrameHeader:
        """The settings part of a frame header (no size)."""
        code = fr.dtype_code(dtype)
        return pb.FrameHeader(dtype=code, channels=3, model=model or "", input_space=input_space or "",
                              output_space=output_space or "",
                              options=pb.FrameOptions(return_mask=mask, reply_chunk_bytes=int(reply_chunk_bytes),
                                                      output_dtype=fr.dtype_code(output_dtype) if output_dtype else 0))

    @staticmethod
    def _frame_header(base: pb.FrameHeader, rgb: np.ndarray) -> pb.FrameHeader:
        h = pb.FrameHeader()
        h.CopyFrom(base)
        h.height, h.width = int(rgb.shape[0]), int(rgb.shape[1])
        return h

    @staticmethod
    def _check_rgb(rgb) -> np.ndarray:
        a = np.asarray(rgb)
        if a.ndim != 3 or a.shape[2] != 3:
            raise HdrliftError(f"frame must be H x W x 3, got shape {tuple(a.shape)}")
        return np.ascontiguousarray(a, dtype=np.float32)

    @staticmethod
    def _payload(base: pb.FrameHeader, rgb: np.ndarray) -> bytes:
        if base.dtype == pb.DTYPE_EXR:
            return fr.encode_exr(rgb, half=False)
        return fr.encode_planar(rgb, base.dtype)

    @staticmethod
    def decode_result(header: pb.FrameHeader, data: bytes, expect: tuple[int, int] | None = None) -> Result:
        """Turn a reply's header and payload into numpy arrays. Sizes are checked: the payload
        against the header and, with ``expect`` (the ``(height, width)`` that was sent), the
        header against the request, so a server cannot make the client allocate or write
        anything but the frame it asked for."""
        if expect is not None and (header.height, header.width) != tuple(expect):
            raise RemoteError(None, f"reply is {header.width}x{header.height}, the frame sent was "
                              f"{expect[1]}x{expect[0]}")
        if header.dtype == pb.DTYPE_EXR:
            try:
                rgb, mask, _ = fr.decode_exr(data, max_pixels=max(1, header.width * header.height))
            except fr.FrameFormatError as exc:
                raise RemoteError(None, f"malformed reply: {exc}") from None
            if rgb.shape[:2] != (header.height, header.width):
                raise RemoteError(None, f"reply EXR is {rgb.shape[1]}x{rgb.shape[0]}, header says "
                                  f"{header.width}x{header.height}")
            return Result(rgb, mask, header)
        if header.channels not in (3, 4):
            raise RemoteError(None, f"reply has {header.channels} channels")
        try:
            img = fr.decode_planar(data, header.width, header.height, header.channels, header.dtype)
        except fr.FrameFormatError as exc:
            raise RemoteError(None, f"malformed reply: {exc}") from None
        mask = np.ascontiguousarray(img[:, :, 3]) if header.channels == 4 else None
        return Result(np.ascontiguousarray(img[:, :, :3]), mask, header)

    def reconstruct(self, rgb: np.ndarray, *, model: str | None = None, input_space: str | None = None,
                    output_space: str | None = None, dtype: str = "float", output_dtype: str | None = None,
                    mask: bool = False, timeout: float | None = None) -> Result:
        """One frame. Small frames go in one message (Reconstruct); larger ones through a stream."""
        a = self._check_rgb(rgb)
        base = self.header(model=model, input_space=input_space, output_space=output_space, dtype=dtype,
                           output_dtype=output_dtype, mask=mask, reply_chunk_bytes=self.chunk_bytes)
        payload = self._payload(base, a)
        out_bytes = a.shape[0] * a.shape[1] * 4 * 4
        if len(payload) <= self.chunk_bytes and out_bytes <= self.chunk_bytes:
            rep = self._call(self.stub.Reconstruct,
                             pb.ReconstructRequest(header=self._frame_header(base, a), data=payload), timeout)
            return self.decode_result(rep.header, rep.data, a.shape[:2])
        for _, res in self._stream(iter([(0, a)]), base, timeout=timeout):
            return res
        raise RemoteError(None, "stream ended without a reply")

    def reconstruct_frames(self, frames: Iterable[np.ndarray], *, model: str | None = None,
                           input_space: str | None = None, output_space: str | None = None, dtype: str = "float",
                           output_dtype: str | None = None, mask: bool = False, window: int = 4,
                           timeout: float | None = None) -> Iterator[Result]:
        """Stream frames (any resolution: chunked) and yield their results in the same order."""
        base = self.header(model=model, input_space=input_space, output_space=output_space, dtype=dtype,
                           output_dtype=output_dtype, mask=mask, reply_chunk_bytes=self.chunk_bytes)
        for _, res in self._stream(enumerate(frames), base, window=window, timeout=timeout):
            yield res

    def _stream(self, items: Iterator, base: pb.FrameHeader, *, window: int = 4,
                timeout: float | None = None) -> Iterator[tuple[object, Result]]:
        """Core of the streaming calls: ``items`` yields ``(tag, rgb)``; yields ``(tag, Result)`` in
        order. Frames a server did not answer before failing with UNAVAILABLE/RESOURCE_EXHAUSTED are
        resent, first, on a new stream (up to ``retries`` times without progress)."""
        lock = threading.Lock()
        items = iter(items)
        resend: collections.deque = collections.deque()
        source_error: list[BaseException] = []
        exhausted = [False]
        failures = 0
        delay = 0.1
        while True:
            stop = threading.Event()
            slots = threading.Semaphore(max(1, window))
            pending: collections.OrderedDict = collections.OrderedDict()  # frame_id -> (tag, rgb)

            def requests(stop=stop, slots=slots, pending=pending):
                yield pb.StreamRequest(header=base)
                fid = 0
                while True:
                    while not slots.acquire(timeout=0.1):
                        if stop.is_set():
                            return
                    with lock:
                        if stop.is_set():
                            return
                        if resend:
                            tag, rgb = resend.popleft()
                        elif exhausted[0]:
                            return
                        else:
                            try:
                                tag, rgb = next(items)
                                rgb = self._check_rgb(rgb)
                            except StopIteration:
                                exhausted[0] = True
                                return
                            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
                                source_error.append(exc)
                                exhausted[0] = True
                                return
                        fid += 1
                        pending[fid] = (tag, rgb)
                    payload = self._payload(base, rgb)
                    for ch in fr.frame_chunks(fid, payload, self.chunk_bytes, self._frame_header(base, rgb)):
                        yield pb.StreamRequest(chunk=ch)

            call = self.stub.ReconstructStream(requests(), timeout=timeout if timeout is not None else self.timeout,
                                               metadata=self._metadata)
            asm = fr.FrameAssembler(max_bytes=1 << 20)
            try:
                try:
                    for reply in call:
                        c = reply.chunk
                        if c.index == 0 and not asm.busy:
                            # replies come in the order sent: only the oldest frame may start, and
                            # its payload may not exceed 4 float planes of the frame sent (x2 for
                            # EXR overhead), so a server cannot make the client buffer more
                            with lock:
                                first = next(iter(pending.items()), None)
                            if first is None or first[0] != c.frame_id:
                                raise RemoteError(None, f"server answered frame {c.frame_id}, which is not the "
                                                  "next frame waiting", self.servers)
                            h_, w_ = first[1][1].shape[:2]
                            asm.max_bytes = 2 * h_ * w_ * 4 * 4 + (1 << 20)
                        done = asm.add(c)
                        if done is None:
                            continue
                        fid, header, data = done
                        with lock:
                            entry = pending.pop(fid, None)
                        if entry is None or header is None:
                            raise RemoteError(None, f"server answered frame {fid} without a header", self.servers)
                        res = self.decode_result(header, data, entry[1].shape[:2])
                        slots.release()
                        failures, delay = 0, 0.1
                        yield entry[0], res
                except fr.FrameFormatError as exc:
                    raise RemoteError(None, f"malformed reply stream: {exc}", self.servers) from None
            except grpc.RpcError as exc:
                stop.set()
                with lock:
                    left = list(pending.values())
                    pending.clear()
                    for e in reversed(left):
                        resend.appendleft(e)
                if exc.code() in RETRYABLE and failures < self.retries:
                    failures += 1
                    time.sleep(delay)
                    delay = min(2.0, delay * 2)
                    continue
                raise _remote(exc, self.servers) from None
            finally:
                stop.set()
                call.cancel()
            if source_error:
                raise source_error[0]
            with lock:
                if pending:
                    raise RemoteError(None, f"stream ended with {len(pending)} frames unanswered")
                if exhausted[0] and not resend:
                    return

    # -- jobs
    def submit_job(self, source: str, output: str, *, start: int | None = None, end: int | None = None,
                   every: int = 1, model: str = "", input_space: str = "", output_space: str = "",
                   resume: bool = False, overwrite: bool = False, mask_layer: bool = False, half: bool = True,
                   compression: str = "", single: bool = False) -> pb.Job:
        """Queue a path job on the server (paths on storage the server shares, inside its --root)."""
        spec = pb.JobSpec(source=str(source), output=str(output), every=int(every), model=model or "",
                          input_space=input_space or "", output_space=output_space or "", resume=resume,
                          overwrite=overwrite, mask_layer=mask_layer, float_output=not half,
                          compression=compression or "", single=single)
        if start is not None:
            spec.start = int(start)
        if end is not None:
            spec.end = int(end)
        return self._call(self.stub.SubmitJob, spec)

    def get_job(self, job_id: str) -> pb.Job:
        return self._call(self.stub.GetJob, pb.JobRef(id=job_id))

    def cancel_job(self, job_id: str) -> pb.Job:
        return self._call(self.stub.CancelJob, pb.JobRef(id=job_id))

    def watch_job(self, job_id: str, timeout: float | None = None) -> Iterator[pb.Job]:
        """Job snapshots as the job advances, ending with its final state."""
        try:
            yield from self.stub.WatchJob(pb.JobRef(id=job_id), timeout=timeout if timeout is not None else self.timeout,
                                          metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _remote(exc, self.servers) from None

    def run_job(self, source: str, output: str, *, progress: Callable[[pb.Job], None] | None = None,
                timeout: float | None = None, **spec) -> pb.Job:
        """Submit a job, follow it (``progress(job)`` on every update), return the final state.
        Raises RemoteError when it fails."""
        job = self.submit_job(source, output, **spec)
        last = job
        for last in self.watch_job(job.id, timeout=timeout):
            if progress:
                progress(last)
        if last.state == pb.JOB_STATE_FAILED:
            code = next((c for c in grpc.StatusCode if c.value[0] == last.error_code), None)
            raise RemoteError(code, last.error, self.servers)
        return last
