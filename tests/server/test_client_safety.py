"""The client against a hostile server: it only ever reads numbers and protobuf messages, checks
every size against what it sent, bounds what it buffers, and shows no control characters."""

from __future__ import annotations

import ast
import concurrent.futures
import pathlib
import pickle

import grpc
import numpy as np
import pytest
from crafted import exr_with_channels
from server_helpers import frame

import hdrlift.plugin
from hdrlift.plugin import Client, RemoteError
from hdrlift.plugin import frames as fr
from hdrlift.plugin.v1 import hdrlift_pb2 as pb
from hdrlift.plugin.v1 import hdrlift_pb2_grpc as pb_grpc

ESCAPES = "\x1b]0;owned\x07\x1b[2J\r\nsecond line\x00\x9b31m"
OVERFLOW = np.float32(1e5)  # code values above 0.655 become more than half's largest finite value


class _Touch:
    """Unpickling this creates a file: proof that nothing a server sends is unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path(self.path).touch, ())


class Hostile(pb_grpc.HdrliftServicer):
    def __init__(self, marker: str):
        self.mode = ""
        self.sent_chunks = 0
        self.marker = marker

    def ListModels(self, request, context):
        if self.mode == "escape":
            context.abort(grpc.StatusCode.INTERNAL, "boom" + ESCAPES + "x" * 5000)
        name = "m" if self.mode == "overflow" else "m" + ESCAPES
        return pb.ListModelsReply(default_model=name, default_output_space="ACEScg",
                                  models=[pb.ModelDescription(name=name, runnable=True)])

    def Reconstruct(self, request, context):
        h = request.header
        out = pb.FrameHeader(width=h.width, height=h.height, dtype=pb.DTYPE_FLOAT, channels=3)
        data = fr.encode_planar(np.zeros((h.height, h.width, 3), np.float32))
        if self.mode == "bigger":
            out.width, out.height = h.width * 1000, h.height * 1000
        elif self.mode == "pickle":
            data = pickle.dumps(_Touch(self.marker))
        elif self.mode == "exr-larger":  # an EXR payload larger than the header says
            out.dtype = pb.DTYPE_EXR
            data = fr.encode_exr(np.zeros((h.height * 4, h.width * 4, 3), np.float32))
        elif self.mode == "channels":
            out.channels = 1000
        elif self.mode == "exr-channels":  # 256 channels declared: the old reader allocated them all
            out.dtype = pb.DTYPE_EXR
            data = exr_with_channels(256, 2048, 1024)
        return pb.ReconstructReply(header=out, data=data)

    def ReconstructStream(self, request_iterator, context):
        if self.mode == "overflow":  # a well-behaved reply whose values overflow half floats
            asm = fr.FrameAssembler(1 << 30)
            for msg in request_iterator:
                if msg.WhichOneof("kind") != "chunk" or (done := asm.add(msg.chunk)) is None:
                    continue
                fid, h, payload = done
                rgb = fr.decode_planar(payload, h.width, h.height, 3, h.dtype)
                out = pb.FrameHeader(width=h.width, height=h.height, dtype=pb.DTYPE_HALF, channels=3,
                                     output_space="ACEScg", input_space=h.input_space, model="m")
                for c in fr.frame_chunks(fid, fr.encode_planar(rgb * OVERFLOW, pb.DTYPE_HALF), header=out):
                    yield pb.StreamReply(chunk=c)
            return
        header = None
        for msg in request_iterator:
            if msg.WhichOneof("kind") == "chunk" and msg.chunk.HasField("header"):
                header = msg.chunk.header
                break
        h = pb.FrameHeader(width=header.width, height=header.height, dtype=pb.DTYPE_FLOAT, channels=3)
        if self.mode == "unknown-id":
            yield pb.StreamReply(chunk=pb.Chunk(frame_id=99, index=0, total=1, payload=b"", header=h))
        elif self.mode == "flood":  # a frame that never ends: the client must stop reading it
            for i in range(1000):
                self.sent_chunks += 1
                yield pb.StreamReply(chunk=pb.Chunk(frame_id=1, index=i, total=1000, payload=b"\0" * (1 << 20),
                                                    header=h if i == 0 else None))


@pytest.fixture
def hostile(tmp_path):
    marker = tmp_path / "pwned"
    servicer = Hostile(str(marker))
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_HdrliftServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}", marker
    server.stop(0)


def _clean(msg: str) -> None:
    assert msg.isprintable() and "\n" not in msg and len(msg) < 1300, repr(msg)


@pytest.mark.parametrize("mode", ["bigger", "pickle", "exr-larger", "channels", "exr-channels"])
def test_malformed_unary_replies_are_refused(hostile, mode):
    import tracemalloc

    servicer, addr, marker = hostile
    servicer.mode = mode
    with Client(addr, retries=0) as c, pytest.raises(RemoteError) as ei:
        tracemalloc.start()
        try:
            c.reconstruct(frame(8, 8), timeout=30)
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    assert ei.value.code is None  # a broken contract, not a status the server chose
    assert peak < 32 << 20, peak  # the reply was judged on its header, not decoded into memory
    _clean(str(ei.value))
    assert not marker.exists()


@pytest.mark.parametrize("mode", ["unknown-id", "flood"])
def test_malformed_streams_are_refused_and_bounded(hostile, mode):
    servicer, addr, _ = hostile
    servicer.mode = mode
    with Client(addr, retries=0, chunk_bytes=1 << 20) as c, pytest.raises(RemoteError) as ei:
        list(c.reconstruct_frames([frame(8, 8)], timeout=60))
    _clean(str(ei.value))
    if mode == "flood":
        # an 8x8 frame's reply is bounded by 2 x 4 float planes + 1 MiB: the client gave up after
        # about two 1 MiB chunks (plus what gRPC had in flight), not after 1000
        assert "more than" in str(ei.value)
        assert servicer.sent_chunks < 100


def test_server_text_cannot_reach_the_terminal(hostile, sample_clip, tmp_path, capsys):
    from hdrlift.engine.cli import video_main
    from hdrlift.engine.remote import convert_remote

    servicer, addr, _ = hostile
    servicer.mode = "escape"
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--server", addr, "--retries", "0", "-q"]) == 6
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "\x07" not in err and "INTERNAL" in err
    _clean(err.strip())
    servicer.mode = ""
    assert video_main(["--server", addr, "--list-models"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    with pytest.raises(RemoteError) as ei:  # the escape-laden default model's name is cleaned
        convert_remote(sample_clip, tmp_path / "p", addr, retries=0)
    _clean(str(ei.value))
    assert ei.value.code == grpc.StatusCode.NOT_FOUND and not (tmp_path / "p").exists()


def test_client_code_has_no_way_to_execute_what_it_receives():
    """Static guard: the client side never evaluates, unpickles or runs anything."""
    banned_calls = {"eval", "exec", "compile", "__import__", "input"}
    banned_modules = {"pickle", "cPickle", "marshal", "shelve", "subprocess", "ctypes", "importlib", "dill",
                      "runpy", "code", "codeop"}
    banned_os = {"system", "popen", "spawnl", "spawnv", "spawnvp", "execv", "execl", "execvp", "fork", "startfile"}
    folder = pathlib.Path(hdrlift.plugin.__file__).parent
    for name in ("client.py", "frames.py", "__init__.py"):
        tree = ast.parse((folder / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & banned_modules, (name, ast.dump(node))
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] not in banned_modules, (name, node.module)
            elif isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Name):
                    assert f.id not in banned_calls, (name, f.id, node.lineno)
                elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "os":
                    assert f.attr not in banned_os, (name, f.attr, node.lineno)


def test_contract_ships_with_the_package_and_stubs_are_current():
    import subprocess
    import sys

    from hdrlift.plugin import PROTO

    text = PROTO.read_text()
    assert "package hdrlift.v1;" in text and "service Hdrlift" in text
    gen = PROTO.parents[2] / "generate.py"
    if gen.is_file():  # a source checkout: the committed stubs match the .proto
        pytest.importorskip("grpc_tools")
        res = subprocess.run([sys.executable, str(gen), "--check"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr


def test_half_overflow_is_written_as_a_local_run_writes_it(hostile, sample_clip, tmp_path):
    """Half EXRs: values above 65504 are inf in the server's half reply, and inf in the file, as a
    local run's float -> half conversion makes them (not an error)."""
    from hdrlift.engine.io.exr import read_exr, write_exr
    from hdrlift.engine.io.images import open_source
    from hdrlift.engine.remote import convert_remote

    servicer, addr, _ = hostile
    servicer.mode = "overflow"
    rep = convert_remote(sample_clip, tmp_path / "remote", addr, start=2, end=3, retries=0)
    assert rep.model == "m" and len(rep.written) == 2
    with open_source(sample_clip) as reader:
        frames = {f.number: f.rgb for f in reader.frames(start=2, end=3)}
    for n, rgb in frames.items():
        got = read_exr(tmp_path / "remote" / f"street.{n:04d}.exr").pixels
        write_exr(tmp_path / "ref.exr", rgb * OVERFLOW, half=True)
        want = read_exr(tmp_path / "ref.exr").pixels
        assert np.isinf(want).any() and np.array_equal(got, want)
