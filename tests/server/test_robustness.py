"""Deadlines, cancellation, back-pressure, graceful shutdown, and 200 hostile requests."""

from __future__ import annotations

import os
import threading
import time

import grpc
import numpy as np
import pytest
from server_helpers import DeviceHold, frame, occupy, reference, wait_for

from hdrlift.plugin import Client, RemoteError
from hdrlift.plugin import frames as fr
from hdrlift.plugin.v1 import hdrlift_pb2 as pb
from hdrlift.plugin.v1 import hdrlift_pb2_grpc as pb_grpc

SC = grpc.StatusCode


def _busy(server) -> bool:
    return server.batcher.depth() > 0 or not server.batcher.idle()


# The device is held (DeviceHold) instead of being kept busy by frames that are hopefully slow
# enough: every wait below is on a condition, with a generous timeout, never on the clock.


def test_deadline_expiry_drops_the_frame(make_server):
    s = make_server(max_batch=1, preload=("landis", "akyuz"))
    addr = f"127.0.0.1:{s.port}"
    with DeviceHold(s) as hold:
        occupy(addr, 1, h=64, w=64)
        assert hold.entered.wait(60)  # the device is busy with that frame until released
        with Client(addr, retries=0) as c, pytest.raises(RemoteError) as ei:
            c.reconstruct(frame(32, 32), model="akyuz", timeout=3)
        assert ei.value.code == SC.DEADLINE_EXCEEDED
        # the server noticed and answered DEADLINE_EXCEEDED itself, while the frame was queued
        assert wait_for(lambda: s.metrics.count("Reconstruct", "DEADLINE_EXCEEDED") == 1)
    assert wait_for(lambda: s.metrics.frames.get("landis", 0) == 1 and not _busy(s))
    assert s.metrics.frames.get("akyuz", 0) == 0  # dropped before the device


def test_cancellation_stops_work(make_server):
    s = make_server(max_batch=1, preload=("landis", "akyuz", "inverse-crf"))
    addr = f"127.0.0.1:{s.port}"
    ch = grpc.insecure_channel(addr)
    stub = pb_grpc.HdrliftStub(ch)
    with DeviceHold(s) as hold:
        occupy(addr, 1, h=64, w=64)
        assert hold.entered.wait(60)
        x = frame(32, 32)
        fut = stub.Reconstruct.future(pb.ReconstructRequest(
            header=pb.FrameHeader(width=32, height=32, model="akyuz"), data=fr.encode_planar(x)))
        assert wait_for(lambda: s.batcher.depth() == 1)  # queued behind the held frame
        fut.cancel()
        assert wait_for(lambda: s.metrics.count("Reconstruct", "CANCELLED") == 1), dict(s.metrics.requests)
        # a stream whose three frames wait for the device; cancelling the call drops them all
        more = threading.Event()

        def requests():
            yield pb.StreamRequest(header=pb.FrameHeader(model="inverse-crf"))
            for fid in (1, 2, 3):
                data = fr.encode_planar(frame(64, 64, seed=fid))
                for c in fr.frame_chunks(fid, data, header=pb.FrameHeader(width=64, height=64)):
                    yield pb.StreamRequest(chunk=c)
            more.wait(60)  # keep the stream open

        call = stub.ReconstructStream(requests())
        assert wait_for(lambda: s.batcher.depth() == 4), s.batcher.depth()  # the dead unary + 3
        call.cancel()
        more.set()
        assert wait_for(lambda: s.metrics.count("ReconstructStream", "CANCELLED") == 1), dict(s.metrics.requests)
        # every queued frame is marked dead at once (the termination callback, no polling)
        assert wait_for(lambda: all(it.dead() for it in list(s.batcher._pending)))
    assert wait_for(lambda: s.metrics.frames.get("landis", 0) == 1 and not _busy(s))
    assert s.metrics.frames.get("akyuz", 0) == 0, dict(s.metrics.frames)
    assert s.metrics.frames.get("inverse-crf", 0) == 0, dict(s.metrics.frames)
    assert s.metrics.batches == 1  # only the held frame reached the device
    ch.close()


def test_full_queue_answers_resource_exhausted(make_server):
    s = make_server(max_batch=1, queue_size=2, preload=("landis",))
    addr = f"127.0.0.1:{s.port}"
    x = frame(32, 32)
    codes: list = []
    lock = threading.Lock()

    def hit():
        try:
            with Client(addr, retries=0) as c:
                r = c.reconstruct(x, timeout=120)
            assert np.array_equal(r.hdr, reference("landis").process(x).hdr)
            code = SC.OK
        except RemoteError as exc:
            code = exc.code
        with lock:
            codes.append(code)

    with DeviceHold(s) as hold:
        occupy(addr, 1, h=64, w=64)
        assert hold.entered.wait(60)
        threads = [threading.Thread(target=hit) for _ in range(8)]
        for t in threads:
            t.start()
        # two fit the queue behind the held frame; the other six are refused at once
        assert wait_for(lambda: len(codes) >= 6), codes
        assert codes == [SC.RESOURCE_EXHAUSTED] * 6 and s.batcher.depth() == 2
        with Client(addr) as c:
            assert c.health() == "SERVING"
    for t in threads:
        t.join(120)
    assert sorted(c.name for c in codes) == ["OK"] * 2 + ["RESOURCE_EXHAUSTED"] * 6
    assert s.metrics.count("Reconstruct", "RESOURCE_EXHAUSTED") == 6


def test_shutdown_while_busy_loses_no_finished_frame(make_server):
    s = make_server(preload=("landis",), max_batch=1)
    addr = f"127.0.0.1:{s.port}"
    inputs = [frame(72, 96, seed=i) for i in range(40)]
    got: list = []
    err: list = []
    hold = DeviceHold(s, allow=3)  # three device calls, then the device stops until released

    def stream():
        try:
            with Client(addr, retries=0) as c:
                for r in c.reconstruct_frames(inputs, window=4):
                    got.append(r)
        except RemoteError as exc:
            err.append(exc)

    t = threading.Thread(target=stream)
    t.start()
    assert hold.entered.wait(60)  # frames are accepted and waiting: now shut down
    stopper = threading.Thread(target=s.shutdown, kwargs={"grace": 60})
    stopper.start()
    assert wait_for(lambda: s.draining)
    hold.release()
    stopper.join(90)
    t.join(90)
    assert not stopper.is_alive() and not t.is_alive()
    assert err and err[0].code == SC.UNAVAILABLE, err
    assert 4 <= len(got) < len(inputs)
    # every frame the server finished reached the client, each equal to the in-process result
    assert s.metrics.total_frames() == len(got)
    ref = reference("landis")
    for x, r in zip(inputs, got):
        assert np.array_equal(r.hdr, ref.process(x).hdr)
    with Client(addr, retries=0) as c, pytest.raises(RemoteError) as ei:
        c.reconstruct(frame(8, 8), timeout=10)
    assert ei.value.code == SC.UNAVAILABLE


# --------------------------------------------------------------------------- hostile requests
def _hdr(**kw) -> pb.FrameHeader:
    opts = kw.pop("options", None)
    h = pb.FrameHeader(**kw)
    if opts is not None:
        h.options.CopyFrom(opts)
    return h


def _unary_cases(root: str):
    ok = fr.encode_planar(frame(8, 8))
    cases = []
    for n in (0, 1, 7, len(ok) - 1, len(ok) + 4, len(ok) * 2):
        cases.append(("payload size", _hdr(width=8, height=8), ok[:n] if n < len(ok) else ok + b"\0" * (n - len(ok)),
                      {SC.INVALID_ARGUMENT}))
    for w, h in [(0, 8), (8, 0), (-1, 8), (8, -5), (-2147483648, 1), (0, 0)]:
        cases.append(("size", _hdr(width=w, height=h), ok, {SC.INVALID_ARGUMENT}))
    for w, h in [(100000, 100000), (2147483647, 2147483647), (70000, 1000), (1, 2000000000)]:
        cases.append(("huge", _hdr(width=w, height=h), ok, {SC.OUT_OF_RANGE}))
    for dt in (4, 7, 99, -1, 2147483647):
        cases.append(("dtype", _hdr(width=8, height=8, dtype=dt), ok, {SC.INVALID_ARGUMENT}))
    for dt in (5, -3, 1000):
        cases.append(("output dtype", _hdr(width=8, height=8, options=pb.FrameOptions(output_dtype=dt)), ok,
                      {SC.INVALID_ARGUMENT}))
    for ch in (1, 2, 4, -3, 1000):
        cases.append(("channels", _hdr(width=8, height=8, channels=ch), ok, {SC.INVALID_ARGUMENT}))
    for m in ("no-such-model", "../../etc/passwd", "LANDIS ", "x" * 300, "landis\x00"):
        cases.append(("model", _hdr(width=8, height=8, model=m), ok, {SC.NOT_FOUND, SC.INVALID_ARGUMENT}))
    for m in ("kalantari", "wu", "ahdrnet"):
        cases.append(("fusion model", _hdr(width=8, height=8, model=m), ok, {SC.INVALID_ARGUMENT}))
    for m in ("hdrcnn", "kim", "santos"):
        cases.append(("no weights", _hdr(width=8, height=8, model=m), ok, {SC.FAILED_PRECONDITION}))
    for sp in ("no such space", "sRGB - Nonsense", "{}".format("q" * 600), "../ocio"):
        cases.append(("input space", _hdr(width=8, height=8, input_space=sp), ok, {SC.NOT_FOUND, SC.INVALID_ARGUMENT}))
        cases.append(("output space", _hdr(width=8, height=8, output_space=sp), ok,
                      {SC.NOT_FOUND, SC.INVALID_ARGUMENT}))
    nan = frame(8, 8)
    nan[3, 3, 1] = np.nan
    inf = frame(8, 8)
    inf[0, 0, 0] = np.inf
    for bad in (nan, inf):
        cases.append(("non-finite", _hdr(width=8, height=8), fr.encode_planar(bad), {SC.INVALID_ARGUMENT}))
    for junk in (b"", b"v/1\x01" + b"\0" * 40, b"not an exr at all", os.urandom(300)):
        cases.append(("exr", _hdr(dtype=pb.DTYPE_EXR), junk, {SC.INVALID_ARGUMENT}))
    big = fr.encode_planar(frame(600, 600))  # 600x600 float reply + mask > 4 MiB
    cases.append(("reply too big", _hdr(width=600, height=600, options=pb.FrameOptions(return_mask=True)), big,
                  {SC.OUT_OF_RANGE, SC.OK}))
    return cases


def _chunk(fid, idx, total, payload=b"", header=None):
    c = pb.Chunk(frame_id=fid, index=idx, total=total, payload=payload)
    if header is not None:
        c.header.CopyFrom(header)
    return pb.StreamRequest(chunk=c)


def _stream_cases():
    data = fr.encode_planar(frame(8, 8))
    a, b = data[:200], data[200:]
    h = _hdr(width=8, height=8)
    head = pb.StreamRequest(header=_hdr())
    cases = [
        ("chunk before header", [_chunk(1, 0, 1, data)], {SC.INVALID_ARGUMENT}),
        ("empty message", [head, pb.StreamRequest()], {SC.INVALID_ARGUMENT}),
        ("out of order", [head, _chunk(1, 1, 2, b, h), _chunk(1, 0, 2, a)], {SC.INVALID_ARGUMENT}),
        ("skipped chunk", [head, _chunk(1, 0, 3, a, h), _chunk(1, 2, 3, b)], {SC.INVALID_ARGUMENT}),
        ("total changes", [head, _chunk(1, 0, 2, a, h), _chunk(1, 1, 3, b)], {SC.INVALID_ARGUMENT}),
        ("total zero", [head, _chunk(1, 0, 0, data, h)], {SC.INVALID_ARGUMENT}),
        ("total huge", [head, _chunk(1, 0, 4_000_000_000, a, h)], {SC.INVALID_ARGUMENT}),
        ("interleaved frames", [head, _chunk(1, 0, 2, a, h), _chunk(2, 0, 1, data, h)], {SC.INVALID_ARGUMENT}),
        ("id goes back", [head, _chunk(5, 0, 1, data, h), _chunk(3, 0, 1, data, h)], {SC.INVALID_ARGUMENT}),
        ("ends mid-frame", [head, _chunk(1, 0, 2, a, h)], {SC.INVALID_ARGUMENT}),
        ("header on chunk 1", [head, _chunk(1, 0, 2, a, h), _chunk(1, 1, 2, b, h)], {SC.INVALID_ARGUMENT}),
        ("too many bytes", [head, _chunk(1, 0, 2, data, h), _chunk(1, 1, 2, data)], {SC.INVALID_ARGUMENT}),
        ("too few bytes", [head, _chunk(1, 0, 1, a, h)], {SC.INVALID_ARGUMENT}),
        ("huge declared", [head, _chunk(1, 0, 2, a, _hdr(width=1 << 20, height=1 << 20))], {SC.OUT_OF_RANGE}),
        ("negative declared", [head, _chunk(1, 0, 1, a, _hdr(width=-8, height=8))], {SC.INVALID_ARGUMENT}),
        ("bad dtype", [head, _chunk(1, 0, 1, data, _hdr(width=8, height=8, dtype=42))], {SC.INVALID_ARGUMENT}),
        ("unknown model header", [pb.StreamRequest(header=_hdr(model="nope"))], {SC.NOT_FOUND}),
        ("unknown space header", [pb.StreamRequest(header=_hdr(input_space="nope"))], {SC.NOT_FOUND}),
        ("frame without size", [head, _chunk(1, 0, 1, data)], {SC.INVALID_ARGUMENT}),
    ]
    return cases


def _job_cases(root):
    outside = "/etc/passwd"
    os.makedirs(os.path.join(root, "escape"), exist_ok=True)
    link = os.path.join(root, "escape", "link")
    if not os.path.islink(link):
        os.symlink("/etc", link)
    P, I = SC.PERMISSION_DENIED, SC.INVALID_ARGUMENT
    cases = [
        (pb.JobSpec(source="../../etc/passwd", output="out/"), {I}),
        (pb.JobSpec(source="a/../../b.png", output="out/"), {I}),
        (pb.JobSpec(source="ok.png", output="../out/"), {I}),
        (pb.JobSpec(source=outside, output="out/"), {P}),
        (pb.JobSpec(source="/", output="out/"), {P}),
        (pb.JobSpec(source="escape/link/passwd", output="out/"), {P}),
        (pb.JobSpec(source="x.png", output="escape/link/out/"), {P}),
        (pb.JobSpec(source="x.png", output="/tmp/hdrlift-escape/"), {P}),
        (pb.JobSpec(source="", output="out/"), {I}),
        (pb.JobSpec(source="x\x00.png", output="out/"), {I}),
        (pb.JobSpec(source="x.png", output=""), {I}),
        (pb.JobSpec(source="x.png", output="out/", compression="lzma"), {I}),
        (pb.JobSpec(source="x.png", output="out/", start=10, end=2), {SC.OUT_OF_RANGE}),
        (pb.JobSpec(source="x.png", output="out/", start=-4), {SC.OUT_OF_RANGE}),
        (pb.JobSpec(source="x.png", output="out/", model="nope"), {SC.NOT_FOUND}),
        (pb.JobSpec(source="x.png", output="out/", input_space="nope"), {SC.NOT_FOUND}),
        (pb.JobSpec(source="x.png", output="out/", output_space="nope"), {SC.NOT_FOUND}),
        (pb.JobSpec(source="x" * 5000, output="out/"), {I}),
    ]
    # symbolic links inside the root that point out of it: a still, one file of a sequence, an
    # output file (dangling: the server must not create it)
    parent = os.path.dirname(os.path.realpath(root))
    outside = os.path.join(parent, "outside.png")
    if not os.path.exists(outside):
        _png(outside)
    seq = os.path.join(root, "seqlink")
    os.makedirs(seq, exist_ok=True)
    if not os.path.exists(os.path.join(seq, "plate.0001.png")):
        _png(os.path.join(seq, "plate.0001.png"))
    for link, target in ((os.path.join(root, "escape", "file.png"), outside),
                         (os.path.join(seq, "plate.0002.png"), outside),
                         (os.path.join(root, "escape", "out.exr"), os.path.join(parent, "stolen.exr"))):
        if not os.path.islink(link):
            os.symlink(target, link)
    cases += [
        (pb.JobSpec(source="escape/file.png", output="out/still.exr", single=True), {P}),
        (pb.JobSpec(source="escape/file.png", output="out/"), {P}),
        (pb.JobSpec(source="seqlink/plate.####.png", output="out/"), {P}),
        (pb.JobSpec(source="seqlink/plate.%04d.png", output="out/"), {P}),
        (pb.JobSpec(source=os.path.join(seq, "plate.####.png"), output="out/"), {P}),
        (pb.JobSpec(source="seqlink/plate.0001.png", output="escape/out.exr", single=True), {P}),
    ]
    return cases


def _png(path: str) -> None:
    import OpenImageIO as oiio

    buf = oiio.ImageBuf(np.ascontiguousarray((frame(8, 8) * 255 + 0.5).astype(np.uint8)))
    assert buf.write(path), buf.geterror()


def test_200_hostile_requests_get_proper_codes_and_health_stays_serving(server, address, job_root):
    ch = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20),
                                                 ("grpc.max_receive_message_length", 64 << 20)])
    stub = pb_grpc.HdrliftStub(ch)
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    hstub = health_pb2_grpc.HealthStub(ch)
    unary, streams, jobs = _unary_cases(str(job_root)), _stream_cases(), _job_cases(str(job_root))
    seen: list[tuple[str, SC]] = []
    n = 0
    while n < 200:
        for name, h, data, want in unary:
            try:
                stub.Reconstruct(pb.ReconstructRequest(header=h, data=data), timeout=20)
                code = SC.OK
            except grpc.RpcError as exc:
                code = exc.code()
            assert code in want, (name, h, code)
            seen.append((name, code))
            n += 1
        for name, msgs, want in streams:
            try:
                for _ in stub.ReconstructStream(iter(msgs), timeout=20):
                    pass
                code = SC.OK
            except grpc.RpcError as exc:
                code = exc.code()
            assert code in want, (name, code)
            seen.append((name, code))
            n += 1
        for spec, want in jobs:
            try:
                stub.SubmitJob(spec, timeout=20)
                code = SC.OK
            except grpc.RpcError as exc:
                code = exc.code()
            assert code in want, (spec, code)
            seen.append(("job", code))
            n += 1
        for fn in (stub.GetJob, stub.CancelJob):
            for jid in ("", "nope", "../x", "0" * 32):
                with pytest.raises(grpc.RpcError) as ei:
                    fn(pb.JobRef(id=jid), timeout=20)
                assert ei.value.code() == SC.NOT_FOUND
                n += 1
        with pytest.raises(grpc.RpcError) as ei:
            list(stub.WatchJob(pb.JobRef(id="nope"), timeout=20))
        assert ei.value.code() == SC.NOT_FOUND
        n += 1
        assert hstub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    assert n >= 200
    codes = {c for _, c in seen}
    assert {SC.INVALID_ARGUMENT, SC.NOT_FOUND, SC.OUT_OF_RANGE, SC.PERMISSION_DENIED,
            SC.FAILED_PRECONDITION} <= codes
    assert SC.INTERNAL not in codes and SC.UNKNOWN not in codes
    # nothing was written through a link out of the root
    assert not os.path.lexists(os.path.join(os.path.dirname(os.path.realpath(str(job_root))), "stolen.exr"))
    # and it still does real work
    with Client(address) as c:
        x = frame(16, 24)
        assert np.array_equal(c.reconstruct(x).hdr, reference("landis").process(x).hdr)
    ch.close()


def test_hdrlift_serve_process_drains_and_exits_on_sigterm(tmp_path):
    import json
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "hdrlift.engine.server", "--host", "127.0.0.1", "--port", "0",
                             "--model", "inverse-crf", "--backend", "torch", "--metrics-port", "0"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        start = json.loads(proc.stderr.readline())
        assert start["event"] == "started" and start["metrics_port"]
        addr = f"127.0.0.1:{start['port']}"
        x = frame(24, 24)
        with Client(addr) as c:
            assert np.array_equal(c.reconstruct(x).hdr, reference("inverse-crf").process(x).hdr)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
        lines = [json.loads(ln) for ln in proc.stderr.read().splitlines() if ln.startswith("{")]
        assert [r.get("method") for r in lines if "method" in r] == ["Reconstruct"]
        assert lines[-1]["event"] == "stopped" and lines[-1]["frames"] == 1
    finally:
        if proc.poll() is None:
            proc.kill()


class FreezingProxy:
    """A loopback TCP relay to a server that can go silent: ``freeze()`` stops forwarding in
    both directions while every socket stays open, as a pulled cable or a hung host looks to
    the client (no RST, no FIN). Connections made while frozen are accepted and never served."""

    def __init__(self, upstream_port: int):
        import socket

        self.upstream = upstream_port
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.socks: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket

        while not self.closed.is_set():
            try:
                down, _ = self.lsock.accept()
            except OSError:
                return
            self.socks.append(down)
            if self.frozen.is_set():
                continue
            up = socket.create_connection(("127.0.0.1", self.upstream))
            self.socks.append(up)
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        src.settimeout(0.05)
        while not self.closed.is_set():
            if self.frozen.is_set():
                time.sleep(0.05)
                continue
            try:
                data = src.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    def freeze(self):
        self.frozen.set()

    def close(self):
        self.closed.set()
        for s in [self.lsock, *self.socks]:
            try:
                s.close()
            except OSError:
                pass


def test_keepalive_ends_a_stream_whose_server_went_silent(make_server):
    """Without keepalive a stream to a server that goes silent (no RST, no FIN) waits for ever;
    the client's HTTP/2 pings end it UNAVAILABLE within seconds, which hands the frames to the
    other servers (here there are none, so the call fails)."""

    s = make_server()
    proxy = FreezingProxy(s.port)
    outcome: list = []
    first = threading.Event()
    try:
        def run():
            try:
                with Client(f"127.0.0.1:{proxy.port}", keepalive=0.5, retries=0) as c:
                    for i, _res in enumerate(c.reconstruct_frames(frame(48, 64, seed=k) for k in range(10**6))):
                        first.set()
                outcome.append("ended")
            except RemoteError as exc:
                outcome.append(exc)

        th = threading.Thread(target=run, daemon=True)
        th.start()
        assert first.wait(60)
        proxy.freeze()
        t = time.perf_counter()
        th.join(30)
        assert not th.is_alive(), "the stream hung on a silent server"
        assert isinstance(outcome[0], RemoteError) and outcome[0].code == grpc.StatusCode.UNAVAILABLE, outcome
        print(f"silent server detected after {time.perf_counter() - t:.1f} s")
    finally:
        proxy.close()
