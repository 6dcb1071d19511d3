"""Frames through a real server on loopback: bit-exact round trips, chunking, batching, info."""

from __future__ import annotations

import threading
import urllib.request

import grpc
import numpy as np
import pytest

from hdrlift.engine.models import load_model
from hdrlift.engine.errors import ModelError
from hdrlift.plugin import Client
from hdrlift.plugin import frames as fr
from hdrlift.plugin.v1 import hdrlift_pb2 as pb
from hdrlift.plugin.v1 import hdrlift_pb2_grpc as pb_grpc

from server_helpers import frame, reference


def test_round_trip_is_bit_identical_to_pipeline_process(address):
    x = frame(72, 130, seed=1)
    ref = reference("landis").process(x)
    with Client(address) as c:
        unary = c.reconstruct(x, model="landis", mask=True)
        streamed = list(c.reconstruct_frames([x, x], model="landis", mask=True))
    for r in [unary] + streamed:
        assert r.hdr.dtype == np.float32 and r.hdr.shape == (72, 130, 3)
        assert np.array_equal(r.hdr, ref.hdr)
        assert np.array_equal(r.mask, ref.mask)
        assert r.header.output_space == "ACEScg" and r.header.model == "landis"
        assert list(r.header.channel_names) == ["R", "G", "B", "mask"]


def test_half_wire_and_input_space_and_exr_payloads(address):
    x = frame(40, 48, seed=2)
    p = reference("landis")
    x_half = x.astype(np.float16).astype(np.float32)
    with Client(address) as c:
        r = c.reconstruct(x, model="landis", dtype="half", input_space="srgb", output_space="lin_rec709")
        ref = p.colour.network_converter(p.colour.resolve("lin_rec709"), to_network=False)(p.process(x_half).linear709)
        assert r.header.dtype == pb.DTYPE_HALF
        assert np.array_equal(r.hdr, ref.astype(np.float16).astype(np.float32))
        e = c.reconstruct(x, model="landis", dtype="exr", output_dtype="exr", mask=True)
        assert np.array_equal(e.hdr, p.process(x).hdr)
        assert e.mask is not None and e.mask.shape == (40, 48)


@pytest.mark.slow
def test_4k_frame_is_chunked_under_a_small_message_limit(make_server):
    s = make_server(model="inverse-crf", max_message_bytes=1 << 20, preload=("inverse-crf",))
    x = frame(2160, 3840, seed=3)
    with Client(f"127.0.0.1:{s.port}", max_message_bytes=1 << 20, chunk_bytes=256 << 10) as c:
        # one message cannot carry it: the unary call is refused by gRPC's size limit
        with pytest.raises(grpc.RpcError) as ei:
            pb_grpc.HdrliftStub(c._channel).Reconstruct(pb.ReconstructRequest(
                header=pb.FrameHeader(width=3840, height=2160, dtype=pb.DTYPE_HALF),
                data=fr.encode_planar(x, pb.DTYPE_HALF)), timeout=120)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        (r,) = list(c.reconstruct_frames([x], model="inverse-crf", dtype="half", output_dtype="half"))
    ref = reference("inverse-crf").process(x.astype(np.float16).astype(np.float32)).hdr
    assert r.hdr.shape == (2160, 3840, 3)
    assert np.array_equal(r.hdr, ref.astype(np.float16).astype(np.float32))


def test_eight_concurrent_clients_get_their_own_frames(address, server):
    inputs = {i: [frame(96, 128, seed=100 + 10 * i + k) for k in range(4)] for i in range(8)}
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    b0, f0 = server.metrics.batches, server.metrics.batch_frames

    def work(i):
        try:
            with Client(address) as c:
                out = [c.reconstruct(inputs[i][0], model="inverse-crf")]
                out += list(c.reconstruct_frames(inputs[i][1:], model="inverse-crf"))
            results[i] = out
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    ref = reference("inverse-crf")
    for i in range(8):
        assert len(results[i]) == 4
        for x, r in zip(inputs[i], results[i]):
            # inverse-crf is pointwise: batched or alone, the result is the same bits
            assert np.array_equal(r.hdr, ref.process(x).hdr)
    assert server.metrics.batch_frames - f0 == 32
    assert server.metrics.batches - b0 <= 32


def test_network_default_model(make_server):
    try:
        load_model("hdrcnn-lite")
    except ModelError as exc:
        pytest.skip(f"hdrcnn-lite cannot load here: {exc}")
    s = make_server(model="hdrcnn-lite", preload=("hdrcnn-lite",))
    x = frame(64, 96, seed=4)
    with Client(f"127.0.0.1:{s.port}") as c:
        r = c.reconstruct(x)  # server default model
    assert r.header.model == "hdrcnn-lite"
    assert np.array_equal(r.hdr, reference("hdrcnn-lite").process(x).hdr)


def test_info_models_health_reflection(address):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with Client(address) as c:
        assert c.health() == "SERVING"
        assert c.health("hdrlift.v1.Hdrlift") == "SERVING"
        info = c.server_info()
        assert info.protocol == "hdrlift.v1" and "torch" in info.backends and "cpu" in info.devices
        assert info.jobs_enabled and info.max_message_bytes == 64 << 20
        models = {m.name: m for m in c.list_models().models}
        assert models["landis"].runnable and models["landis"].is_default and models["landis"].multiple_of == 1
        assert models["hdrcnn-lite"].multiple_of == 32 and models["hdrcnn-lite"].needs_weights
        assert not models["kalantari"].runnable  # bracket merger: not a single-frame model
        db = ProtoReflectionDescriptorDatabase(c._channel)
        services = set(db.get_services())
        assert {"hdrlift.v1.Hdrlift", "grpc.health.v1.Health"} <= services


def test_metrics_endpoint_and_json_logs(make_server):
    s = make_server(metrics_port=0)
    with Client(f"127.0.0.1:{s.port}") as c:
        c.reconstruct(frame(16, 16))
        with pytest.raises(Exception):
            c.reconstruct(frame(16, 16), model="no-such-model")
    text = urllib.request.urlopen(f"http://127.0.0.1:{s.metrics_port}/metrics", timeout=5).read().decode()
    assert 'hdrlift_requests_total{method="Reconstruct",code="OK"} 1' in text
    assert 'hdrlift_requests_total{method="Reconstruct",code="NOT_FOUND"} 1' in text
    assert 'hdrlift_frames_total{model="landis"} 1' in text
    assert "hdrlift_queue_depth 0" in text and "hdrlift_frames_per_second" in text
    assert 'hdrlift_request_latency_seconds_count{method="Reconstruct"} 2' in text
    recs = [r for r in s.config.log_stream.records() if r.get("method") == "Reconstruct"]
    assert [r["code"] for r in recs] == ["OK", "NOT_FOUND"]
    assert recs[0]["width"] == 16 and recs[0]["model"] == "landis" and "no-such-model" in recs[1]["details"]
