"""The Blender extension (nodes/blender/hdrlift_blender) in the real ``bpy`` module, against a real
``hdrlift-serve`` on loopback. ``bpy`` pins numpy < 2, so these run in their own virtual
environment (``make test-blender``); where ``bpy`` is not importable they skip. The server runs
in the project's main environment (``$HDRLIFT_SERVER_PYTHON``, default ``.venv/bin/python``)."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "nodes" / "blender"))

import hdrlift_blender  # noqa: E402
from hdrlift_blender import bridge  # noqa: E402


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((np.maximum(v, 0.04045) + 0.055) / 1.055) ** 2.4)


@pytest.fixture(scope="module")
def server():
    py = os.environ.get("HDRLIFT_SERVER_PYTHON", str(REPO / ".venv" / "bin" / "python"))
    if not pathlib.Path(py).exists():
        pytest.skip(f"no Python with the hdrlift engine at {py} (set HDRLIFT_SERVER_PYTHON)")
    proc = subprocess.Popen([py, "-m", "hdrlift.engine.server", "--host", "127.0.0.1", "--port", "0",
                             "--model", "inverse-crf", "--backend", "torch"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        line = proc.stderr.readline()
        start = json.loads(line)
        assert start["event"] == "started", line
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # request logs: keep the pipe open
        yield f"127.0.0.1:{start['port']}"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module", autouse=True)
def extension():
    hdrlift_blender.register()
    yield
    hdrlift_blender.unregister()


def _byte_image(name: str, w: int = 40, h: int = 24) -> tuple:
    """An 8-bit sRGB image whose rows differ (orientation shows) with a clipped block; returns the
    image and its pixels as Blender stores them (flat RGBA, bottom row first)."""
    img = bpy.data.images.new(name, w, h, alpha=True, float_buffer=False)
    yy, xx = np.mgrid[0:h, 0:w]
    rgba = np.stack([xx / (w - 1), yy / (h - 1), 0.5 + 0 * xx, 0.25 + 0.5 * (xx % 2)], -1).astype(np.float32)
    rgba[:6, :8, :3] = 1.0  # clipped
    img.pixels.foreach_set(rgba.reshape(-1))
    stored = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(stored)  # 8-bit quantised, as the operator will read it
    return img, stored


def test_reconstruct_makes_a_linear_float_image_with_the_alpha(server):
    src, stored = _byte_image("plate")
    assert src.colorspace_settings.name == "sRGB" and not src.is_float
    assert bpy.ops.hdrlift.reconstruct(image="plate", server=server) == {"FINISHED"}
    dst = bpy.data.images["plate_hdr"]
    assert dst.is_float and dst.colorspace_settings.name == "Linear Rec.709" and tuple(dst.size) == (40, 24)
    out = np.empty(40 * 24 * 4, np.float32)
    dst.pixels.foreach_get(out)
    got, want = out.reshape(24, 40, 4), stored.reshape(24, 40, 4)
    # inverse-crf into linear Rec.709 is the inverse sRGB curve, pixel for pixel, row order kept
    np.testing.assert_allclose(got[..., :3], _srgb_to_linear(want[..., :3]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[..., 3], want[..., 3])


def test_acescg_output_equals_the_client_library(server):
    from hdrlift.plugin import Client

    src, stored = _byte_image("plate2", 33, 17)
    assert bpy.ops.hdrlift.reconstruct(image="plate2", server=server, output_space="ACEScg") == {"FINISHED"}
    dst = bpy.data.images["plate2_hdr"]
    assert dst.colorspace_settings.name == "ACEScg"
    out = np.empty(33 * 17 * 4, np.float32)
    dst.pixels.foreach_get(out)
    rgb, _ = bridge.rgba_to_frame(stored, 33, 17)
    with Client(server) as c:
        ref = c.reconstruct(rgb, input_space="srgb", output_space="acescg").hdr
    got, _ = bridge.rgba_to_frame(out, 33, 17)
    np.testing.assert_array_equal(got, ref)
    # running again replaces the result in place
    assert bpy.ops.hdrlift.reconstruct(image="plate2", server=server, output_space="ACEScg") == {"FINISHED"}
    assert len([i for i in bpy.data.images if i.name.startswith("plate2_hdr")]) == 1


def test_linear_float_input_is_taken_in_its_own_space(server):
    img = bpy.data.images.new("render", 16, 8, float_buffer=True)
    assert img.colorspace_settings.name == "Linear Rec.709"
    px = np.full((8, 16, 4), 1.0, np.float32)
    px[..., :3] = np.linspace(0.0, 3.0, 16, dtype=np.float32)[None, :, None]  # > 1: clipped on the way in
    img.pixels.foreach_set(px.reshape(-1))
    assert bpy.ops.hdrlift.reconstruct(image="render", server=server) == {"FINISHED"}
    out = np.empty(16 * 8 * 4, np.float32)
    bpy.data.images["render_hdr"].pixels.foreach_get(out)
    row = out.reshape(8, 16, 4)[0, :, 0]
    # inverse-crf: linear -> sRGB code values clipped to 1 -> back to linear: clipped at 1.0
    np.testing.assert_allclose(row, np.minimum(px[0, :, 0], 1.0), rtol=1e-4, atol=1e-5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["unreachable", "colour space", "no image", "nan"])
def test_errors_are_one_line_reports_and_make_no_image(server, case):
    before = set(bpy.data.images.keys())
    kwargs = {"server": server}
    if case == "unreachable":
        _byte_image("lonely", 8, 8)
        kwargs.update(image="lonely", server=f"127.0.0.1:{_closed_port()}")
        expect = "hdrlift: server 127.0.0.1:"
    elif case == "colour space":
        img, _ = _byte_image("normals", 8, 8)
        img.colorspace_settings.name = "Non-Color"
        kwargs.update(image="normals")
        expect = "colour space 'Non-Color' is not an SDR or linear picture space"
    elif case == "no image":
        kwargs.update(image="missing")
        expect = "no image named 'missing'"
    else:
        img = bpy.data.images.new("nan", 8, 8, float_buffer=True)
        px = np.zeros(8 * 8 * 4, np.float32)
        px[5] = np.nan
        img.pixels.foreach_set(px)
        kwargs.update(image="nan")
        expect = "NaN or infinite"
    made = set(bpy.data.images.keys()) - before
    with pytest.raises(RuntimeError) as ei:
        bpy.ops.hdrlift.reconstruct(**kwargs)
    msg = str(ei.value).strip()
    assert expect in msg and "\n" not in msg, msg
    assert set(bpy.data.images.keys()) - before == made  # no result image


INSTALLED = r'''
import json, os, sys
# the test venv has hdrlift installed (editable): hide it, so the extension's own wheels must serve
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.realpath(sys.argv[3])]
import numpy as np
import bpy
res = bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True)
import hdrlift.plugin
img = bpy.data.images.new("plate", 12, 8)
img.pixels.foreach_set(np.full(12 * 8 * 4, 0.5, np.float32))
src = np.empty(12 * 8 * 4, np.float32)
img.pixels.foreach_get(src)  # 8-bit: 128 / 255
prefs = bpy.context.preferences.addons["bl_ext.user_default.hdrlift"].preferences
prefs.server = sys.argv[2]
op = bpy.ops.hdrlift.reconstruct(image="plate")
out = np.empty(12 * 8 * 4, np.float32)
bpy.data.images["plate_hdr"].pixels.foreach_get(out)
# a shot: a 3-frame image sequence in the compositor, through the installed extension
os.makedirs("seq", exist_ok=True)
for k in range(3):
    img.pixels.foreach_set(np.full(12 * 8 * 4, 0.2 + 0.3 * k, np.float32))
    img.filepath_raw = os.path.abspath(f"seq/sh.{k + 1:04d}.png")
    img.file_format = "PNG"
    img.save()
seq = bpy.data.images.load(os.path.abspath("seq/sh.0001.png"))
seq.source = "SEQUENCE"
scene = bpy.context.scene
scene.frame_start, scene.frame_end = 1, 3
scene.use_nodes = True
node = scene.node_tree.nodes.new("CompositorNodeImage")
node.name, node.image = "Shot", seq
node.frame_start, node.frame_duration, node.frame_offset = 1, 3, 0
shot_op = bpy.ops.hdrlift.reconstruct_shot(node="Shot", cache_dir=os.path.abspath("cache"))
exrs = sorted(os.path.basename(p) for d in os.listdir("cache") for p in os.listdir(os.path.join("cache", d)))
print(json.dumps({"install": sorted(res), "op": sorted(op), "client": hdrlift.plugin.__file__,
                  "src": float(src[0]), "value": float(out[0]), "alpha": float(out[3]),
                  "shot": sorted(shot_op), "exrs": exrs, "muted": node.mute,
                  "group": "HdrLift" in scene.node_tree.nodes}))
'''


def test_the_built_extension_installs_and_runs_from_its_own_wheels(server, tmp_path):
    """build.py's zip, installed by Blender's own extension system into a fresh user folder,
    enabled, configured through its preferences and run: the client comes from the zip's wheels."""
    build = subprocess.run([sys.executable, str(REPO / "nodes" / "blender" / "build.py"), "--out", str(tmp_path)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    zip_path = build.stdout.strip().splitlines()[-1]
    user = tmp_path / "blender-user"
    r = subprocess.run([sys.executable, "-c", INSTALLED, zip_path, server, str(REPO)], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "BLENDER_USER_RESOURCES": str(user)}, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["install"] == ["FINISHED"] and got["op"] == ["FINISHED"]
    assert got["client"].startswith(str(user))  # hdrlift.plugin from the extension's wheel
    assert abs(got["value"] - float(_srgb_to_linear(np.array(got["src"])))) < 1e-5
    assert abs(got["alpha"] - got["src"]) < 1e-6  # alpha kept (the same 8-bit code)
    # the shot operator from the zip: EXR sequence in the cache, node group in the source's place
    assert got["shot"] == ["FINISHED"] and got["exrs"] == ["sh.0001.exr", "sh.0002.exr", "sh.0003.exr"]
    assert got["muted"] and got["group"]
