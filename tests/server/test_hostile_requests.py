"""hdrlift-serve against hostile requests: a real server process on loopback with --root folders
and bearer tokens, and the cases of an outside tester's report on 19a7a7d (writes and reads
outside the root, FIFOs that froze the server, payloads that made it allocate gigabytes,
watchers that starved work, unbounded strings echoed back, wrong statuses).

Every wait is on an event (a reply, a job state, a process exit), with a generous bound.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest
from crafted import exr_with_channels
from real_server import ServerProcess
from server_helpers import frame

from hdrlift.plugin import Client
from hdrlift.plugin import frames as fr
from hdrlift.plugin.v1 import hdrlift_pb2 as pb
from hdrlift.plugin.v1 import hdrlift_pb2_grpc as pb_grpc

SC = grpc.StatusCode
TOKEN = "hostile-test-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


class Farm:
    def __init__(self, server: ServerProcess, base: pathlib.Path):
        self.server, self.base = server, base
        self.root, self.outside = base / "root", base / "outside"
        self.channel = grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 64 << 20),
                                                                     ("grpc.max_receive_message_length", 64 << 20)])
        self.stub = pb_grpc.HdrliftStub(self.channel)

    def call(self, fn, request, **kw):
        """The status code (and details) of one call."""
        try:
            r = fn(request, metadata=AUTH, timeout=60, **kw)
            if hasattr(r, "__iter__") and not isinstance(r, (pb.Job, pb.ReconstructReply)):
                for _ in r:
                    pass
            return SC.OK, ""
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""

    def job(self, spec: pb.JobSpec) -> pb.Job:
        """Submit and follow a job to its end."""
        job = self.stub.SubmitJob(spec, metadata=AUTH, timeout=60)
        last = job
        for last in self.stub.WatchJob(pb.JobRef(id=job.id), metadata=AUTH, timeout=300):
            pass
        return last

    def blocking(self, output: str) -> pb.Job:
        """A long job on the one job worker: jobs submitted after it wait until it is cancelled."""
        job = self.stub.SubmitJob(pb.JobSpec(source="long.mp4", output=output, model="hdrcnn-lite"), metadata=AUTH,
                                  timeout=60)
        for snap in self.stub.WatchJob(pb.JobRef(id=job.id), metadata=AUTH, timeout=300):
            if snap.state == pb.JOB_STATE_RUNNING:
                return snap
        raise AssertionError(f"the blocking job ended before it could block: {snap}")

    def unblock(self, job: pb.Job) -> None:
        snap = self.stub.CancelJob(pb.JobRef(id=job.id), metadata=AUTH, timeout=60)
        assert snap.state == pb.JOB_STATE_RUNNING, snap  # it still held the worker: the test saw what it meant to

    def serving(self) -> bool:
        with Client(self.server.address, retries=0) as c:
            return c.health(timeout=10) == "SERVING"

    def outside_files(self) -> list[str]:
        """Everything under the test's folder but outside the root and the test's own inputs."""
        found = []
        for dirpath, _, files in os.walk(self.base):
            if pathlib.Path(dirpath).is_relative_to(self.root):
                continue
            found += [os.path.join(dirpath, f) for f in files if not f.startswith("input")]
        return sorted(found)


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    from hdrlift.engine.sample import write_sample

    base = tmp_path_factory.mktemp("hostile")
    root, outside = base / "root", base / "outside"
    for d in (root / "outdir", outside):
        d.mkdir(parents=True)
    write_sample(root / "clip.mp4", width=64, height=48, frames=6)
    write_sample(root / "long.mp4", width=320, height=192, frames=48)  # a job that runs for a while
    write_sample(outside / "input-secret.mp4", width=64, height=48, frames=2)
    (base / "input-tokens").write_text(TOKEN + "\n")
    os.mkfifo(root / "fifo.png")
    os.mkfifo(root / "fifo.mp4")
    (root / "play.m3u8").write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\n{outside / 'input-secret.mp4'}\n"
                                    "#EXT-X-ENDLIST\n")
    # listening on every address so that IPv6 loopback is another peer than 127.0.0.1 (the tests
    # only ever connect to loopback addresses)
    with ServerProcess("--host", "[::]", "--model", "landis", "--backend", "torch", "--preload", "landis",
                       "--preload", "inverse-crf",
                       "--root", str(root), "--token-file", str(base / "input-tokens"), "--metrics-port", "0",
                       "--job-workers", "1", "--grace", "5") as server:
        f = Farm(server, base)
        yield f
        f.channel.close()


# ------------------------------------------------------------------ escapes
def test_no_write_escapes_the_root(farm):
    (farm.root / "outdir" / "esc1").symlink_to(farm.outside, target_is_directory=True)
    code, details = farm.call(farm.stub.SubmitJob, pb.JobSpec(source="clip.mp4", output="outdir/esc#/f.####.exr"))
    assert code == SC.INVALID_ARGUMENT and "file name" in details
    # a folder inside the root when the job is submitted, a link to outside when it runs
    inside = farm.root / "outdir" / "inside"
    inside.mkdir()
    blocker = farm.blocking("outdir/block/")  # one job worker: the next job waits
    target = farm.stub.SubmitJob(pb.JobSpec(source="clip.mp4", output="outdir/inside/f.####.exr", model="inverse-crf"),
                                 metadata=AUTH, timeout=60)
    inside.rmdir()
    inside.symlink_to(farm.outside, target_is_directory=True)
    farm.unblock(blocker)
    last = None
    for last in farm.stub.WatchJob(pb.JobRef(id=target.id), metadata=AUTH, timeout=300):
        pass
    assert last.state == pb.JOB_STATE_FAILED and last.error_code == SC.PERMISSION_DENIED.value[0], last
    assert farm.outside_files() == []


def test_playlists_cannot_read_outside_the_root(farm):
    last = farm.job(pb.JobSpec(source="play.m3u8", output="outdir/hls/"))
    assert last.state == pb.JOB_STATE_FAILED and last.error_code == SC.INVALID_ARGUMENT.value[0]
    assert "playlists" in last.error and not (farm.root / "outdir" / "hls").exists()


def test_fifos_are_refused_and_nothing_freezes(farm):
    for name in ("fifo.png", "fifo.mp4"):
        code, details = farm.call(farm.stub.SubmitJob, pb.JobSpec(source=name, output="outdir/ff/"))
        assert code == SC.FAILED_PRECONDITION and "regular file" in details
        assert farm.serving()
    # a still replaced by a FIFO after its job was accepted fails that job, at once
    import OpenImageIO as oiio

    late = farm.root / "late.png"
    oiio.ImageBuf(np.zeros((8, 8, 3), np.uint8)).write(str(late))
    blocker = farm.blocking("outdir/block2/")
    job = farm.stub.SubmitJob(pb.JobSpec(source="late.png", output="outdir/late.exr", single=True), metadata=AUTH,
                              timeout=60)
    late.unlink()
    os.mkfifo(late)
    farm.unblock(blocker)
    last = None
    for last in farm.stub.WatchJob(pb.JobRef(id=job.id), metadata=AUTH, timeout=120):
        pass
    assert last.state == pb.JOB_STATE_FAILED and "regular file" in last.error
    assert farm.serving()


# ------------------------------------------------------------------ memory
def test_memory_stays_bounded_by_what_requests_declare(farm):
    _, peak0 = farm.server.memory_kib()
    # 256 channels declared in a 100 KB payload (the old reader allocated 2 GB)
    evil = exr_with_channels(256, 2048, 1024)
    h = pb.FrameHeader(width=2048, height=1024, dtype=pb.DTYPE_EXR)
    code, details = farm.call(farm.stub.Reconstruct, pb.ReconstructRequest(header=h, data=evil))
    assert code == SC.INVALID_ARGUMENT and "channel" in details
    # an 8192 x 8192 EXR to the unary call: its reply cannot fit one message; refused before decoding
    big = exr_with_channels(3, 8192, 8192)
    h = pb.FrameHeader(width=8192, height=8192, dtype=pb.DTYPE_EXR)
    code, details = farm.call(farm.stub.Reconstruct, pb.ReconstructRequest(header=h, data=big))
    assert code == SC.OUT_OF_RANGE and "ReconstructStream" in details
    # a stream that declares 1 x 1 and then sends 1 MiB chunks: refused at the first
    one = pb.FrameHeader(width=1, height=1)

    def flood():
        yield pb.StreamRequest(header=pb.FrameHeader())
        for i in range(300):
            yield pb.StreamRequest(chunk=pb.Chunk(frame_id=1, index=i, total=300, payload=b"\0" * (1 << 20),
                                                  header=one if i == 0 else None))
    code, details = farm.call(farm.stub.ReconstructStream, flood())
    assert code == SC.INVALID_ARGUMENT and "12 payload bytes" in details, details
    _, peak1 = farm.server.memory_kib()
    assert peak1 - peak0 < 200 * 1024, (peak0, peak1)  # KiB: nothing near the hundreds of MB above
    assert farm.serving()


# ------------------------------------------------------------------ starvation
def test_watchers_without_a_token_cannot_starve_work(farm):
    """70 health watchers from one address (IPv6 loopback) take that peer's 64 streams; a client
    with a token from another address (127.0.0.1) still gets its own health check and its work."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        socket.create_connection(("::1", farm.server.port), timeout=10).close()
    except OSError:
        pytest.skip("no IPv6 loopback here: the watchers need an address of their own")
    channels = [grpc.insecure_channel(f"[::1]:{farm.server.port}") for _ in range(70)]
    streams, refused = [], 0
    try:
        for ch in channels:
            call = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(), timeout=60)
            try:
                next(call)
                streams.append(call)
            except grpc.RpcError as exc:
                assert exc.code() == SC.RESOURCE_EXHAUSTED
                refused += 1
        assert len(streams) == 64 and refused == 6  # 64 per peer address
        with Client(farm.server.address, token=TOKEN, retries=0) as c:  # work is served all the while
            assert c.reconstruct(frame(16, 16), model="landis", timeout=60).hdr.shape == (16, 16, 3)
    finally:
        for call in streams:
            call.cancel()
        for ch in channels:
            ch.close()


def test_the_default_server_accepts_what_its_workers_run(make_server):
    s = make_server()  # default workers, queue and stream window
    errors, done = [], []

    def client(i):
        try:
            with Client(f"127.0.0.1:{s.port}", retries=0) as c:
                done.extend(r.hdr.shape for r in c.reconstruct_frames([frame(32, 32, seed=i * 4 + k)
                                                                       for k in range(4)], window=4, timeout=300))
        except Exception as exc:  # noqa: BLE001 - collected
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == [] and len(done) == 128


# ------------------------------------------------------------------ bounded strings, statuses
def test_unbounded_strings_are_never_echoed(farm):
    for spec in (pb.JobSpec(source="clip.mp4", output="outdir/w/f.%0200000000d.exr"),
                 pb.JobSpec(source="clip.mp4", output="outdir/" + "w" * 4000 + "/")):
        code, details = farm.call(farm.stub.SubmitJob, spec)
        assert code in (SC.INVALID_ARGUMENT, SC.FAILED_PRECONDITION) and len(details) < 1100, (code, len(details))
    code, details = farm.call(farm.stub.GetJob, pb.JobRef(id="x" * 100_000))
    assert code == SC.NOT_FOUND and len(details) < 300
    assert max(len(ln) for ln in farm.server.lines) < 5000  # the request log stays small too


def test_each_mistake_gets_its_documented_status(farm):
    code, _ = farm.call(farm.stub.SubmitJob, pb.JobSpec(source="clip.mp4", output="outdir/e/", end=-5))
    assert code == SC.OUT_OF_RANGE
    code, _ = farm.call(farm.stub.SubmitJob, pb.JobSpec(source="clip.mp4", output="outdir/z/", compression="zip:abc"))
    assert code == SC.INVALID_ARGUMENT
    raw = farm.channel.unary_unary("/hdrlift.v1.Hdrlift/Reconstruct")  # bytes that are no protobuf
    with pytest.raises(grpc.RpcError) as ei:
        raw(b"\xff\xff\xff\xff\x0f\x12", metadata=AUTH, timeout=60)
    assert ei.value.code() == SC.INVALID_ARGUMENT
    h = pb.FrameHeader(width=9000, height=9000, dtype=pb.DTYPE_HALF)
    code, details = farm.call(farm.stub.Reconstruct, pb.ReconstructRequest(header=h, data=b""))
    assert code == SC.OUT_OF_RANGE and "limit" in details and "ReconstructStream" not in details
    h = pb.FrameHeader(width=8, height=8, dtype=pb.DTYPE_EXR)
    code, details = farm.call(farm.stub.Reconstruct, pb.ReconstructRequest(header=h, data=b"v/1\x01" + b"\0" * 40))
    assert code == SC.INVALID_ARGUMENT and "[" not in details and "/tmp" not in details
    last = farm.job(pb.JobSpec(source="clip.mp4", output="outdir/single.exr", single=True))
    assert last.state == pb.JOB_STATE_FAILED and "6 frames" in last.error
    assert not (farm.root / "outdir" / "single.exr").exists()


def test_metrics_listen_on_loopback_and_reflection_needs_the_token(farm):
    port = farm.server.started["metrics_port"]
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        pass
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.strip():  # the local address it listens on
        assert out.stdout.split()[3] == f"127.0.0.1:{port}", out.stdout
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(farm.channel)
    with pytest.raises(grpc.RpcError) as ei:
        list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=30))
    assert ei.value.code() == SC.UNAUTHENTICATED
    replies = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                             metadata=AUTH, timeout=30))
    assert any(s.name == "hdrlift.v1.Hdrlift" for s in replies[0].list_services_response.service)


# ------------------------------------------------------------------ life cycle
def test_quiet_keeps_the_started_line_and_sigterm_ends_a_busy_server(tmp_path):
    from hdrlift.engine.sample import write_sample

    root = tmp_path / "root"
    root.mkdir()
    write_sample(root / "long.mp4", width=320, height=192, frames=48)
    with ServerProcess("--quiet", "--model", "hdrcnn-lite", "--root", str(root), "--grace", "2") as s:
        assert s.started["event"] == "started" and s.port > 0  # --quiet hides requests, not this
        with Client(s.address, retries=0) as c:
            job = c.submit_job("long.mp4", "out/", model="hdrcnn-lite")
            for snap in c.watch_job(job.id, timeout=300):
                if snap.state == pb.JOB_STATE_RUNNING and snap.done >= 1:
                    break
        t = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=60) == 0
        took = time.monotonic() - t
    assert took < 2 + 30, took  # --grace plus a few seconds (generous for a loaded machine)
    assert any('"stopped"' in ln for ln in s.lines)


# ------------------------------------------------------------------ 400 hostile requests
def test_400_hostile_requests_leave_the_server_serving_and_bounded(farm):
    _, peak0 = farm.server.memory_kib()
    ok = fr.encode_planar(frame(8, 8))
    h8 = pb.FrameHeader(width=8, height=8)
    unary = [
        (pb.FrameHeader(width=8, height=8, channels=4), ok, {SC.INVALID_ARGUMENT}),
        (pb.FrameHeader(width=8, height=8), ok[:-4], {SC.INVALID_ARGUMENT}),
        (pb.FrameHeader(width=1, height=1), ok, {SC.INVALID_ARGUMENT}),
        (pb.FrameHeader(width=1 << 20, height=1 << 20), b"", {SC.OUT_OF_RANGE}),
        (pb.FrameHeader(width=0, height=8), b"", {SC.INVALID_ARGUMENT}),
        (pb.FrameHeader(width=8, height=8, dtype=77), ok, {SC.INVALID_ARGUMENT}),
        (pb.FrameHeader(width=8, height=8, model="x" * 10000), ok, {SC.INVALID_ARGUMENT, SC.NOT_FOUND}),
        (pb.FrameHeader(width=8, height=8, input_space="\x00" * 3000), ok, {SC.INVALID_ARGUMENT, SC.NOT_FOUND}),
        (pb.FrameHeader(width=8, height=8, model="kalantari"), ok, {SC.INVALID_ARGUMENT}),
        (pb.FrameHeader(width=2048, height=1024, dtype=pb.DTYPE_EXR), exr_with_channels(64, 2048, 1024),
         {SC.INVALID_ARGUMENT}),
        (pb.FrameHeader(width=8, height=8, dtype=pb.DTYPE_EXR), os.urandom(500), {SC.INVALID_ARGUMENT}),
        (h8, ok, {SC.OK}),
    ]

    def chunks(*cs):
        def gen():
            yield pb.StreamRequest(header=pb.FrameHeader())
            yield from cs
        return gen

    c = pb.Chunk
    streams = [
        chunks(pb.StreamRequest(chunk=c(frame_id=1, index=0, total=2, payload=ok, header=h8)),
               pb.StreamRequest(chunk=c(frame_id=1, index=1, total=2, payload=ok))),
        chunks(pb.StreamRequest(chunk=c(frame_id=1, index=0, total=1 << 30, payload=b"", header=h8))),
        chunks(pb.StreamRequest(chunk=c(frame_id=1, index=3, total=4, payload=ok, header=h8))),
        chunks(pb.StreamRequest()),
        chunks(pb.StreamRequest(chunk=c(frame_id=1, index=0, total=1, payload=ok, header=h8))),
    ]
    stream_want = [{SC.INVALID_ARGUMENT}] * 4 + [{SC.OK}]
    jobs = [
        (pb.JobSpec(source="../../etc/passwd", output="outdir/a/"), {SC.INVALID_ARGUMENT}),
        (pb.JobSpec(source=str(farm.outside / "input-secret.mp4"), output="outdir/a/"), {SC.PERMISSION_DENIED}),
        (pb.JobSpec(source="clip.mp4", output=str(farm.outside) + "/"), {SC.PERMISSION_DENIED}),
        (pb.JobSpec(source="fifo.mp4", output="outdir/a/"), {SC.FAILED_PRECONDITION}),
        (pb.JobSpec(source="clip.mp4", output="outdir/x#/f.####.exr"), {SC.INVALID_ARGUMENT}),
        (pb.JobSpec(source="clip.mp4", output="outdir/f.%099d.exr"), {SC.INVALID_ARGUMENT}),
        (pb.JobSpec(source="clip.mp4", output="outdir/a/", compression="dwaa:x"), {SC.INVALID_ARGUMENT}),
        (pb.JobSpec(source="clip.mp4", output="outdir/a/", start=-1), {SC.OUT_OF_RANGE}),
        (pb.JobSpec(source="clip.mp4", output="outdir/a/", resume=True, overwrite=True), {SC.INVALID_ARGUMENT}),
    ]
    refs = [pb.JobRef(id=""), pb.JobRef(id="0" * 32), pb.JobRef(id="../" * 50), pb.JobRef(id="z" * 5000)]
    n = 0
    while n < 400:
        for h, data, want in unary:
            code, _ = farm.call(farm.stub.Reconstruct, pb.ReconstructRequest(header=h, data=data))
            assert code in want, (h, code)
            n += 1
        for make, want in zip(streams, stream_want):
            code, _ = farm.call(farm.stub.ReconstructStream, make())
            assert code in want, code
            n += 1
        for spec, want in jobs:
            code, details = farm.call(farm.stub.SubmitJob, spec)
            assert code in want and len(details) < 1100, (spec, code)
            n += 1
        for ref in refs:
            for fn in (farm.stub.GetJob, farm.stub.CancelJob, farm.stub.WatchJob):
                code, details = farm.call(fn, ref)
                assert code == SC.NOT_FOUND and len(details) < 300, (fn, code)
                n += 1
        for fn, req in ((farm.stub.ListModels, pb.ListModelsRequest()), (farm.stub.GetServerInfo,
                                                                        pb.GetServerInfoRequest())):
            assert farm.call(fn, req)[0] == SC.OK
            try:  # without the token
                fn(req, timeout=30)
                code = SC.OK
            except grpc.RpcError as exc:
                code = exc.code()
            assert code == SC.UNAUTHENTICATED
            n += 2
        assert farm.serving()
        n += 1
    assert n >= 400
    _, peak1 = farm.server.memory_kib()
    assert peak1 - peak0 < 200 * 1024, (peak0, peak1)
    assert farm.outside_files() == []
    assert farm.server.proc.poll() is None
