"""``hdrlift.plugin`` alone, as a host (Nuke, Blender, a farm script) vendors it: grpcio, protobuf
and numpy, nothing else. ``make test-leaf`` runs this file in ``.venv-leaf``, a fresh virtual
environment holding only those three packages (and pytest) with hdrlift installed ``--no-deps``;
the main suite runs it too. The server is a real ``hdrlift-serve`` in the engine's environment,
and the references come from the engine's own pipeline there."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from real_server import ServerProcess, engine_python

from hdrlift.plugin import Client, RemoteError, read_token_file
from hdrlift.plugin.errors import HdrliftError, InputError

IN_LEAF_VENV = os.environ.get("HDRLIFT_LEAF") == "1"
HEAVY = ("torch", "OpenImageIO", "PyOpenColorIO", "av", "onnxruntime", "safetensors")
# grpcio's own __init__ imports grpc_health/grpc_reflection when they are installed: absent in the leaf
NOT_IN_LEAF = HEAVY + ("grpc_health", "grpc_reflection", "grpc_tools")


def test_the_client_imports_nothing_of_the_engine():
    code = ("import sys, hdrlift.plugin.client, hdrlift.plugin.frames, hdrlift.plugin.openexr; "
            "print([m for m in sys.modules if m.startswith('hdrlift.engine') or m.startswith('hdrlift.training') "
            f"or m.split('.')[0] in {HEAVY!r}])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(not IN_LEAF_VENV, reason="checks the leaf environment's contents (make test-leaf)")
def test_the_leaf_environment_holds_only_grpcio_protobuf_numpy():
    for name in NOT_IN_LEAF:
        assert importlib.util.find_spec(name) is None, f"{name} is installed in the leaf environment"
    from importlib import metadata

    names = {d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions()}
    runtime = names - {"pip", "setuptools", "wheel", "hdrlift", "pytest", "pytest-timeout", "iniconfig",
                       "packaging", "pluggy", "pygments", "typing-extensions"}
    assert runtime == {"grpcio", "protobuf", "numpy"}, runtime


@pytest.fixture(scope="module")
def server():
    if engine_python() is None:
        pytest.skip("no Python with the hdrlift engine to run the server (set HDRLIFT_SERVER_PYTHON)")
    with ServerProcess("--model", "landis", "--backend", "torch", "--preload", "landis",
                       "--preload", "inverse-crf") as s:
        yield s


def _references(tmp_path: pathlib.Path, frames: list[np.ndarray], **kw) -> list[np.ndarray]:
    """What the engine's own Pipeline.process gives for ``frames`` (run in the engine's Python)."""
    np.savez(tmp_path / "in.npz", *frames)
    code = (
        "import sys, json, numpy as np\n"
        "from hdrlift.engine.pipeline import Pipeline\n"
        "kw = json.loads(sys.argv[3])\n"
        "p = Pipeline(model=kw.pop('model'), backend='torch', output_space=kw.pop('output_space'))\n"
        "x = np.load(sys.argv[1])\n"
        "np.savez(sys.argv[2], *[p.process(x[k], input_space=kw.get('input_space')).hdr for k in x.files])\n")
    subprocess.run([engine_python(), "-c", code, str(tmp_path / "in.npz"), str(tmp_path / "ref.npz"), json.dumps(kw)],
                   check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    refs = np.load(tmp_path / "ref.npz")
    return [refs[k] for k in refs.files]


def _frame(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.minimum(rng.random((h, w, 3), dtype=np.float32) * np.float32(1.2), np.float32(1.0))


def test_frames_through_a_real_server_equal_the_engine(server, tmp_path):
    frames = [_frame(24, 40, 1), _frame(31, 17, 2), _frame(24, 40, 3)]
    with Client(server.address, retries=2) as c:
        c.wait_ready(60)
        assert c.health() == "SERVING"
        reply = c.list_models(timeout=30)
        assert reply.default_model == "landis" and any(m.name == "inverse-crf" and m.runnable for m in reply.models)
        assert c.runnable_model(None, timeout=30) == ("landis", "ACEScg")
        one = c.reconstruct(frames[0], model="landis")
        streamed = list(c.reconstruct_frames(frames, model="landis", window=2))
        exr = c.reconstruct(frames[1], model="landis", dtype="exr", output_dtype="exr", mask=True)
        with pytest.raises(RemoteError) as ei:
            c.runnable_model("no-such-model", timeout=30)
        assert ei.value.code.name == "NOT_FOUND" and ei.value.exit_code == 6
    refs = _references(tmp_path, frames, model="landis", output_space="ACEScg")
    assert one.hdr.dtype == np.float32 and np.array_equal(one.hdr, refs[0])
    assert [r.hdr.shape for r in streamed] == [(24, 40, 3), (31, 17, 3), (24, 40, 3)]
    for r, ref in zip(streamed, refs):
        assert np.array_equal(r.hdr, ref)
    # EXR both ways through the plugin's own codec (no OpenImageIO here)
    assert np.array_equal(exr.hdr, refs[1]) and exr.mask is not None and exr.mask.shape == (31, 17)


def test_the_errors_are_the_engines_classes(tmp_path):
    assert issubclass(RemoteError, HdrliftError) and RemoteError.exit_code == 6
    (tmp_path / "t").write_text("# comment\n\n  secret-token \n")
    assert read_token_file(str(tmp_path / "t")) == "secret-token"
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(InputError, match="is empty"):
        read_token_file(str(tmp_path / "empty"))


def test_exr_files_are_written_whole(tmp_path):
    """``openexr.write_file``, as the Blender and Nuke shims write their results: the file decodes
    to what was written, a failed write leaves no temporary, and only temporaries are swept."""
    from hdrlift.plugin import openexr

    rgb = _frame(6, 5, 7)
    planes = {"R": rgb[..., 0], "G": rgb[..., 1], "B": rgb[..., 2], "mask.Y": rgb[..., 0] > 0.5}
    planes["mask.Y"] = planes["mask.Y"].astype(np.float32)
    out = tmp_path / "f.exr"
    openexr.write_file(out, planes, half=False, attributes={"hdrlift:model": "x"})
    got, attrs = openexr.decode(out.read_bytes())
    assert all(np.array_equal(got[c], planes[c]) for c in planes) and attrs["hdrlift:model"] == "x"
    with pytest.raises(openexr.ExrFormatError):  # refused before anything is written
        openexr.write_file(tmp_path / "g.exr", {"R": rgb[..., 0], "bad": rgb[..., 0]})
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "g.exr").mkdir()  # os.replace cannot put a file over a folder
    with pytest.raises(OSError):
        openexr.write_file(tmp_path / "sub" / "g.exr", planes)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["g.exr"]  # no temporary left
    stale = tmp_path / f".h.exr{openexr.TEMP_MARK}1-2"
    stale.write_bytes(b"half")
    assert openexr.remove_stale_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.exr", "sub"]
