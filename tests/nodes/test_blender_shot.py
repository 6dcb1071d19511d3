"""Shots in Blender: the Reconstruct Shot operator (nodes/blender/hdrlift_blender/shot.py, runner.py)
in the real ``bpy`` module against a real ``hdrlift-serve`` on loopback (``make test-blender``).

The footage is made here: a PNG image sequence with alpha (written by Blender) and a movie
(PNG-in-QuickTime, lossless, written by PyAV in the engine's Python), so Blender and ``hdr-video``
decode the same pixels. References are ``hdr-video`` runs on the same files, read back with the
plug-in's EXR reader. Processes and threads are waited on through events, never timed sleeps.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "nodes" / "blender"))
sys.path.insert(0, str(REPO / "tests"))

import hdrlift_blender  # noqa: E402
from hdrlift_blender import bridge, shot  # noqa: E402
from hdrlift.plugin import openexr  # noqa: E402
from real_server import ServerProcess, engine_python  # noqa: E402

W, H = 48, 32
MODEL = "landis"  # content-dependent expansion: a real check, cheap on the CPU
HALF = dict(rtol=2e-3, atol=2e-4)  # both sides are half floats


@pytest.fixture(scope="module")
def py():
    p = engine_python()
    if p is None:
        pytest.skip("no Python with the hdrlift engine (set HDRLIFT_SERVER_PYTHON)")
    return p


@pytest.fixture(scope="module")
def server(py):
    with ServerProcess("--model", MODEL, "--backend", "torch", "--preload", MODEL, "--quiet", python=py) as s:
        yield s.address


@pytest.fixture(scope="module", autouse=True)
def extension():
    hdrlift_blender.register()
    yield
    hdrlift_blender.unregister()


@pytest.fixture(autouse=True)
def fresh_file():
    bpy.ops.wm.read_homefile(use_empty=True)
    yield


def _frame(i: int) -> np.ndarray:
    """Top-first RGBA in [0, 1]: gradients (orientation shows), a bright block that Landis expands."""
    yy, xx = np.mgrid[0:H, 0:W]
    rng = np.random.default_rng(i)
    rgba = np.empty((H, W, 4), np.float32)
    rgba[..., 0] = xx / (W - 1)
    rgba[..., 1] = yy / (H - 1)
    rgba[..., 2] = rng.random((H, W))
    rgba[2:10, 3 + i:15 + i, :3] = 0.9 + 0.1 * rng.random((8, 12, 3))
    rgba[..., 3] = 0.4 + 0.6 * (xx / (W - 1))
    return rgba


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    """plate.0101.png .. plate.0105.png, 8-bit RGBA written by Blender."""
    folder = tmp_path_factory.mktemp("seq")
    for k in range(5):
        img = bpy.data.images.new("w", W, H, alpha=True)
        img.pixels.foreach_set(np.ascontiguousarray(_frame(k)[::-1]).reshape(-1))
        img.filepath_raw = str(folder / f"plate.{101 + k:04d}.png")
        img.file_format = "PNG"
        img.save()
        bpy.data.images.remove(img)
    return folder / "plate.0101.png"


@pytest.fixture(scope="module")
def movie(tmp_path_factory, py):
    """A 6-frame movie, lossless (PNG codec in QuickTime), written by PyAV in the engine's Python."""
    path = tmp_path_factory.mktemp("mov") / "clip.mov"
    code = ("import sys, av, numpy as np\n"
            "c = av.open(sys.argv[1], 'w'); s = c.add_stream('png', rate=24)\n"
            f"s.width, s.height, s.pix_fmt = {W}, {H}, 'rgb24'\n"
            "f = np.load(sys.argv[2])\n"
            "for k in range(f.shape[0]):\n"
            "    [c.mux(p) for p in s.encode(av.VideoFrame.from_ndarray(f[k], format='rgb24'))]\n"
            "[c.mux(p) for p in s.encode()]; c.close()\n")
    frames = np.stack([np.round(_frame(10 + k)[..., :3] * 255).astype(np.uint8) for k in range(6)])
    np.save(path.with_suffix(".npy"), frames)
    subprocess.run([py, "-c", code, str(path), str(path.with_suffix(".npy"))], check=True)
    return path


def _hdr_video(py, source, out, *extra, output="lin_rec709") -> pathlib.Path:
    """hdr-video (the engine's own file loop) on the same files: the reference."""
    exe = pathlib.Path(py).parent / "hdr-video"
    cmd = [str(exe), str(source), str(out), "--model", MODEL, "--backend", "torch", "--input-colorspace", "srgb",
           "--output-colorspace", output, "--compression", "zip", "--mask-layer", "-q", *extra]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return pathlib.Path(out)


def _exr(path) -> dict:
    planes, attrs = openexr.decode(pathlib.Path(path).read_bytes())
    return {**planes, "attrs": attrs}


def _scene(start, end):
    sc = bpy.context.scene
    sc.frame_start, sc.frame_end = start, end
    return sc


def _cache_files(cache: pathlib.Path) -> list[pathlib.Path]:
    return sorted(cache.glob("*/*.exr"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_image_sequence_matches_hdr_video_and_keeps_alpha(server, sequence, py, tmp_path):
    img = bpy.data.images.load(str(sequence))
    img.source = "SEQUENCE"
    _scene(1, 5)
    cache = tmp_path / "cache"
    assert bpy.ops.hdrlift.reconstruct_shot(image=img.name, server=server, cache_dir=str(cache)) == {"FINISHED"}
    files = _cache_files(cache)
    assert [f.name for f in files] == [f"plate.{f:04d}.exr" for f in range(1, 6)]  # scene frames 1-5
    ref = _hdr_video(py, sequence.parent / "plate.####.png", tmp_path / "ref")
    for k, f in enumerate(files):
        got, want = _exr(f), _exr(ref / f"plate.{101 + k:04d}.exr")
        alpha = np.round(_frame(k)[..., 3] * 255) / 255  # 8-bit alpha of the PNG
        np.testing.assert_allclose(got["A"], alpha, atol=1e-3)
        np.testing.assert_allclose(want["A"], alpha, atol=1e-3)  # hdr-video keeps the alpha too
        for c in "RGB":  # both premultiplied by alpha, as OpenEXR stores it
            np.testing.assert_allclose(got[c], want[c], **HALF)
        np.testing.assert_allclose(got["mask.Y"], want["mask.Y"], **HALF)
        assert got["attrs"]["hdrlift:model"] == MODEL and got["attrs"]["hdrlift:outputColorspace"] == "lin_rec709"
        assert float(want["R"].max()) > 1.0 or k > 0  # Landis expands the bright block above 1
    assert not [p for p in cache.rglob("*") if openexr.TEMP_MARK in p.name]


def test_movie_clip_matches_hdr_video_and_is_wired_into_the_compositor(server, movie, py, tmp_path):
    clip = bpy.data.movieclips.load(str(movie))
    clip.frame_start = 11  # the clip starts at scene frame 11
    sc = _scene(1, 30)  # the scene's range is longer than the clip: only frames 11-16 are made
    sc.use_nodes = True
    tree = sc.node_tree
    tree.nodes.clear()
    src = tree.nodes.new("CompositorNodeMovieClip")
    src.name = "Plate"
    src.clip = clip
    comp = tree.nodes.new("CompositorNodeComposite")
    tree.links.new(src.outputs["Image"], comp.inputs["Image"])
    for n in tree.nodes:
        n.select = False
    src.select = True
    tree.nodes.active = src
    cache = tmp_path / "cache"
    # no source named: the selected Movie Clip node
    assert bpy.ops.hdrlift.reconstruct_shot(server=server, cache_dir=str(cache)) == {"FINISHED"}
    files = _cache_files(cache)
    assert [f.name for f in files] == [f"clip.{f:04d}.exr" for f in range(11, 17)]
    ref = _hdr_video(py, movie, tmp_path / "ref")
    for k, f in enumerate(files):
        got, want = _exr(f), _exr(ref / f"clip.{k + 1:04d}.exr")
        for c in ("R", "G", "B", "mask.Y"):
            np.testing.assert_allclose(got[c], want[c], **HALF)
        np.testing.assert_array_equal(got["A"], 1.0)

    # the wiring: HdrLift group in the source's place, the source kept and muted
    group = tree.nodes["HdrLift"]
    assert [o.name for o in group.outputs][:2] == ["Image", "Mask"]
    assert src.mute and comp.inputs["Image"].links[0].from_node == group
    reader = group.node_tree.nodes["HdrLift EXR"]
    assert reader.image.source == "SEQUENCE" and reader.image.colorspace_settings.name == "Linear Rec.709"
    assert pathlib.Path(bpy.path.abspath(reader.image.filepath)) == files[0]

    # one frame through the compositor, to a file, read back
    sc.render.resolution_x, sc.render.resolution_y, sc.render.resolution_percentage = W, H, 100
    sc.render.image_settings.file_format = "OPEN_EXR"
    sc.render.image_settings.color_depth = "32"
    sc.render.image_settings.exr_codec = "ZIP"
    sc.frame_set(13)
    want = _exr(cache / files[2].parent.name / "clip.0013.exr")
    for output, planes in (("Image", "RGB"), ("Mask", "mask.Y")):
        tree.links.new(group.outputs[output], comp.inputs["Image"])
        sc.render.filepath = str(tmp_path / f"render_{output}.exr")
        assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
        got = _exr(sc.render.filepath)
        for c, p in zip("RGB", planes if output == "Image" else [planes] * 3):
            np.testing.assert_allclose(got[c], want[p], rtol=1e-6, atol=1e-6)

    # running again finds every frame in the cache and reuses the nodes
    before = {f: f.stat().st_ino for f in files}
    src.select, group.select = True, False
    assert bpy.ops.hdrlift.reconstruct_shot(node="Plate", server=server, cache_dir=str(cache)) == {"FINISHED"}
    assert {f: f.stat().st_ino for f in files} == before
    assert len([n for n in tree.nodes if n.bl_idname == "CompositorNodeGroup"]) == 1


def test_image_node_frame_mapping_and_rendered_frame(server, sequence, tmp_path):
    """An Image node's Start/Offset/Frames decide which file each scene frame reads."""
    img = bpy.data.images.load(str(sequence))
    img.source = "SEQUENCE"
    sc = _scene(20, 22)
    sc.use_nodes = True
    tree = sc.node_tree
    tree.nodes.clear()
    src = tree.nodes.new("CompositorNodeImage")
    src.name = "Seq"
    src.image = img
    src.frame_start, src.frame_offset, src.frame_duration = 20, 101, 3  # scene 20 -> plate.0102
    comp = tree.nodes.new("CompositorNodeComposite")
    tree.links.new(src.outputs["Image"], comp.inputs["Image"])
    cache = tmp_path / "cache"
    assert bpy.ops.hdrlift.reconstruct_shot(node="Seq", server=server, cache_dir=str(cache)) == {"FINISHED"}
    files = _cache_files(cache)
    assert [f.name for f in files] == ["plate.0020.exr", "plate.0021.exr", "plate.0022.exr"]
    # scene 21 holds plate.0103 = _frame(2): the bright block sits at columns 5..16
    got = _exr(files[1])
    assert got["mask.Y"][2:10, 5:17].mean() > got["mask.Y"][20:, :].mean()
    np.testing.assert_allclose(got["A"], np.round(_frame(2)[..., 3] * 255) / 255, atol=1e-3)
    sc.render.resolution_x, sc.render.resolution_y, sc.render.resolution_percentage = W, H, 100
    sc.render.image_settings.file_format = "OPEN_EXR"
    sc.render.image_settings.color_depth = "32"
    sc.render.image_settings.exr_codec = "ZIP"
    sc.render.filepath = str(tmp_path / "render.exr")
    sc.frame_set(21)
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    out = _exr(sc.render.filepath)
    for c in "RGBA":
        np.testing.assert_allclose(out[c], got[c], rtol=1e-6, atol=1e-6)


def test_cancel_midway_then_run_again_does_only_the_missing_frames(server, movie, tmp_path):
    clip = bpy.data.movieclips.load(str(movie))
    _scene(1, 6)
    cache = tmp_path / "cache"
    job = shot.Shot(bpy.context.scene, clip=clip.name, server=server, cache_dir=str(cache), window=2)
    try:
        job.run.on_frame = lambda f: job.run.cancel() if len(job.run.written) >= 2 else None
        job.run.run()
        assert job.run.cancelled.is_set() and job.run.error is None
        done = sorted(job.run.written)  # a write already under way when Esc came is finished whole
        assert done[:2] == [1, 2] and len(done) < 6, done
        assert job.finish() is None  # nothing wired for a partial shot
        assert "cancelled" in job.summary() and f"{6 - len(done)} left" in job.summary()
    finally:
        job.close()
    files = _cache_files(cache)
    assert [f.name for f in files] == [f"clip.{f:04d}.exr" for f in done]
    assert all(bridge.exr_is_whole(str(f)) for f in files)
    assert not [p for p in cache.rglob("*") if openexr.TEMP_MARK in p.name]
    kept = {f.name: f.stat().st_ino for f in files}

    again = shot.Shot(bpy.context.scene, clip=clip.name, server=server, cache_dir=str(cache))
    try:
        again.run.run()
        assert again.run.error is None
        assert again.run.cached == done and sorted(again.run.written) == [f for f in range(1, 7) if f not in done]
        assert again.finish() is not None
    finally:
        again.close()
    assert {f.name: f.stat().st_ino for f in _cache_files(cache) if f.name in kept} == kept
    assert len(_cache_files(cache)) == 6
    assert "HdrLift" in bpy.context.scene.node_tree.nodes


def test_a_changed_frame_is_done_again_and_no_other(server, sequence, tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for p in sequence.parent.glob("plate.*.png"):
        (folder / p.name).write_bytes(p.read_bytes())
    img = bpy.data.images.load(str(folder / "plate.0101.png"))
    img.source = "SEQUENCE"
    _scene(1, 5)
    cache = tmp_path / "cache"
    first = shot.Shot(bpy.context.scene, image=img.name, server=server, cache_dir=str(cache))
    try:
        assert sorted(first.run.run().written) == [1, 2, 3, 4, 5]
    finally:
        first.close()
    (folder / "plate.0103.png").write_bytes((folder / "plate.0105.png").read_bytes())  # frame 3 changes
    img.reload()
    second = shot.Shot(bpy.context.scene, image=img.name, server=server, cache_dir=str(cache))
    try:
        second.run.run()
        assert second.run.written == [3] and second.run.cached == [1, 2, 4, 5]
    finally:
        second.close()


def test_server_down_is_one_line_and_writes_nothing(movie, tmp_path):
    clip = bpy.data.movieclips.load(str(movie))
    _scene(1, 6)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError) as ei:
        bpy.ops.hdrlift.reconstruct_shot(clip=clip.name, server=f"127.0.0.1:{_closed_port()}", cache_dir=str(cache))
    msg = str(ei.value).strip()
    assert "hdrlift:" in msg and "UNAVAILABLE" in msg and "\n" not in msg, msg
    assert not cache.exists()
    assert not [t for t in bpy.data.textures] and [i.name for i in bpy.data.images] == []  # nothing left behind


def test_server_dying_midway_leaves_only_whole_frames(movie, py, tmp_path):
    import threading

    clip = bpy.data.movieclips.load(str(movie))
    _scene(1, 6)
    cache = tmp_path / "cache"
    with ServerProcess("--model", MODEL, "--backend", "torch", "--quiet", python=py) as srv:
        job = shot.Shot(bpy.context.scene, clip=clip.name, server=srv.address, cache_dir=str(cache), window=1)
        try:
            two_written = threading.Event()
            job.run.on_frame = lambda f: two_written.set() if len(job.run.written) >= 2 else None
            decode = job.run.decode

            def decode_then_kill(frame):  # frames 1-2 are written; the server dies before frame 3 goes out
                if frame == 3:
                    assert two_written.wait(120)
                    srv.proc.kill()
                    srv.proc.wait()
                return decode(frame)
            job.run.decode = decode_then_kill
            job.run.run()
            assert job.run.error is not None and "\n" not in job.run.error
            assert job.run.error.startswith("server 127.0.0.1:"), job.run.error
            assert job.finish() is None
            assert "\n" not in job.summary() and job.summary().startswith("hdrlift: server 127.0.0.1:")
        finally:
            job.close()
    files = _cache_files(cache)
    assert [f.name for f in files] == ["clip.0001.exr", "clip.0002.exr"]
    assert all(bridge.exr_is_whole(str(f)) for f in files)
    assert not [p for p in cache.rglob("*") if openexr.TEMP_MARK in p.name]


@pytest.mark.parametrize("space", ["Filmic sRGB", "AgX Base sRGB", "Non-Color"])
def test_view_encoded_and_data_sources_are_refused_before_any_work(server, sequence, tmp_path, space):
    img = bpy.data.images.load(str(sequence))
    img.source = "SEQUENCE"
    img.colorspace_settings.name = space
    _scene(1, 5)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError) as ei:
        bpy.ops.hdrlift.reconstruct_shot(image=img.name, server=server, cache_dir=str(cache))
    msg = str(ei.value).strip()
    want = "Filmic/AgX view encoding" if space != "Non-Color" else "is not an SDR or linear picture space"
    assert want in msg and repr(space) in msg and "\n" not in msg, msg
    assert not cache.exists()


def test_a_still_image_is_sent_to_the_image_operator(server, sequence):
    img = bpy.data.images.load(str(sequence))  # source FILE: a still
    with pytest.raises(RuntimeError, match="not an image sequence or a movie"):
        bpy.ops.hdrlift.reconstruct_shot(image=img.name, server=server)


def test_float_frames_are_taken_as_scene_linear(server, tmp_path):
    """16-bit PNGs load as float, already converted to scene linear by Blender: sent as linear."""
    folder = tmp_path / "seq16"
    folder.mkdir()
    values = np.linspace(0.0, 1.0, W, dtype=np.float32)
    for k in range(2):
        img = bpy.data.images.new("w", W, H, alpha=True, float_buffer=True)
        px = np.ones((H, W, 4), np.float32)
        px[..., :3] = values[None, :, None] ** (1 + k)
        img.pixels.foreach_set(px.reshape(-1))
        img.filepath_raw = str(folder / f"lin.{k + 1:04d}.png")
        img.file_format = "PNG"
        sc = bpy.context.scene
        sc.render.image_settings.file_format = "PNG"
        sc.render.image_settings.color_depth = "16"
        img.save_render(img.filepath_raw, scene=sc)
        bpy.data.images.remove(img)
    img = bpy.data.images.load(str(folder / "lin.0001.png"))
    img.source = "SEQUENCE"
    _scene(1, 2)
    job = shot.Shot(bpy.context.scene, image=img.name, server=server, cache_dir=str(tmp_path / "cache"),
                    model="inverse-crf")
    try:
        rgba, space = job.reader(1)
        assert img.is_float and space == "lin_rec709"
        job.run.run()
        assert job.run.error is None
        got = _exr(job.path(1))
        # inverse-crf round trip: what Blender decoded (linear) comes back, within half precision
        np.testing.assert_allclose(got["R"], rgba[..., 0], rtol=2e-3, atol=1e-4)
    finally:
        job.close()


def test_scene_linear_role_and_names():
    config = "ocio_profile_version: 2\nroles:\n  color_picking: sRGB\n  scene_linear: ACEScg\n\ndisplays:\n  x: y\n"
    assert bridge.scene_linear_role(config) == "ACEScg"
    assert bridge.linear_server_space("ACEScg") == "acescg"
    assert bridge.linear_server_space("ACES - ACEScg") == "acescg"
    assert bridge.linear_server_space("Linear Rec.709") == "lin_rec709"
    assert bridge.linear_server_space("Linear Rec.709 (sRGB)") == "lin_rec709"
    assert bridge.linear_server_space("Filmic Log") is None
    assert shot.scene_linear_space() == ("Linear Rec.709", "lin_rec709")  # Blender's own config


# --------------------------------------------------------------------------- server path jobs
@pytest.fixture(scope="module")
def shared(tmp_path_factory, py, movie, sequence):
    """A server whose --root holds the footage and the cache: storage both sides share."""
    root = tmp_path_factory.mktemp("shared")
    (root / "clip.mov").write_bytes(movie.read_bytes())
    (root / "seq").mkdir()
    for p in sequence.parent.glob("plate.*.png"):
        (root / "seq" / p.name).write_bytes(p.read_bytes())
    with ServerProcess("--model", MODEL, "--backend", "torch", "--preload", MODEL, "--quiet", "--root", str(root),
                       python=py) as s:
        yield s.address, root


def test_auto_uses_a_server_job_when_the_server_shares_the_files(shared, py, tmp_path):
    address, root = shared
    clip = bpy.data.movieclips.load(str(root / "clip.mov"))
    clip.frame_start = 11
    sc = _scene(1, 30)
    cache = root / "cache-auto"
    job = shot.Shot(sc, clip=clip.name, server=address, cache_dir=str(cache))
    try:
        assert job.route == "SERVER", job.note
        job.run.run()
        assert job.run.error is None and (job.run.n_written, job.run.n_cached) == (6, 0)
        assert job.finish() is not None
        assert "(server job)" in job.summary()
    finally:
        job.close()
    files = _cache_files(cache)
    assert [f.name for f in files] == [f"clip.{n:04d}.exr" for n in range(1, 7)]  # the movie's own numbers
    ref = _hdr_video(py, root / "clip.mov", tmp_path / "ref")
    for f in files:
        got, want = _exr(f), _exr(ref / f.name)
        for c in ("R", "G", "B", "mask.Y"):
            np.testing.assert_allclose(got[c], want[c], **HALF)
    # the compositor maps scene frame 13 onto clip.0003.exr
    tree = sc.node_tree
    group = tree.nodes["HdrLift"]
    for n in [n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers"]:
        tree.nodes.remove(n)  # a compositor-only scene: no camera, no 3D render
    comp = next(n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite")
    tree.links.new(group.outputs["Image"], comp.inputs["Image"])
    sc.render.resolution_x, sc.render.resolution_y, sc.render.resolution_percentage = W, H, 100
    sc.render.image_settings.file_format = "OPEN_EXR"
    sc.render.image_settings.color_depth = "32"
    sc.render.filepath = str(tmp_path / "render.exr")
    sc.frame_set(13)
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    out, want = _exr(sc.render.filepath), _exr(files[2])
    for c in "RGB":
        np.testing.assert_allclose(out[c], want[c], rtol=1e-6, atol=1e-6)
    # again: the server finds every frame done
    again = shot.Shot(sc, clip=clip.name, server=address, cache_dir=str(cache))
    try:
        again.run.run()
        assert again.route == "SERVER" and (again.run.n_written, again.run.n_cached) == (0, 6)
    finally:
        again.close()


def test_auto_streams_what_a_server_job_cannot_do(shared, tmp_path):
    address, root = shared
    img = bpy.data.images.load(str(root / "seq" / "plate.0101.png"))  # RGBA: the alpha must be kept
    img.source = "SEQUENCE"
    _scene(1, 5)
    job = shot.Shot(bpy.context.scene, image=img.name, server=address, cache_dir=str(root / "cache-alpha"))
    try:
        assert job.route == "STREAM" and "alpha" in job.note
    finally:
        job.close()
    clip = bpy.data.movieclips.load(str(root / "clip.mov"))
    _scene(1, 6)
    job = shot.Shot(bpy.context.scene, clip=clip.name, server=address, cache_dir=str(tmp_path / "cache"))
    try:  # the cache lies outside the server's --root
        assert job.route == "STREAM" and "PERMISSION_DENIED" in job.note
        job.run.run()
        assert job.run.error is None and job.run.n_written == 6 and "streamed" in job.summary()
    finally:
        job.close()
    with pytest.raises(RuntimeError, match="no server job: the source has alpha"):
        bpy.ops.hdrlift.reconstruct_shot(image=img.name, server=address, cache_dir=str(root / "c"), route="SERVER")


def test_a_cancelled_server_job_keeps_whole_frames(shared):
    address, root = shared
    clip = bpy.data.movieclips.load(str(root / "clip.mov"))
    _scene(1, 6)
    cache = root / "cache-cancel"
    job = shot.Shot(bpy.context.scene, clip=clip.name, server=address, cache_dir=str(cache), route="SERVER")
    try:
        job.run.on_progress = lambda done: job.run.cancel() if done >= 1 else None
        job.run.run()
        assert job.run.cancelled.is_set() and job.run.error is None and job.finish() is None
    finally:
        job.close()
    files = _cache_files(cache)
    assert all(bridge.exr_is_whole(str(f)) for f in files)
    assert not [p for p in cache.rglob("*") if p.name.startswith(".")]
    again = shot.Shot(bpy.context.scene, clip=clip.name, server=address, cache_dir=str(cache), route="SERVER")
    try:
        again.run.run()
        assert again.run.error is None and again.run.n_cached == len(files) and again.run.n_written == 6 - len(files)
    finally:
        again.close()


ACES_RUN = r'''
import json, os, shutil, sys
sys.path.insert(0, sys.argv[1])
import bpy
import hdrlift_blender
from hdrlift_blender import shot
hdrlift_blender.register()
img = bpy.data.images.load(sys.argv[2])
img.source = "SEQUENCE"
print("colourspace", img.colorspace_settings.name, file=sys.stderr)
bpy.context.scene.frame_start, bpy.context.scene.frame_end = 1, 2
job = shot.Shot(bpy.context.scene, image=img.name, server=sys.argv[3], cache_dir=sys.argv[4], route="STREAM")
job.run.run()
node = job.finish().node_tree.nodes["HdrLift EXR"]
print(json.dumps({"linear": shot.scene_linear_space(), "error": job.run.error, "files": [job.path(1), job.path(2)],
                  "node_space": node.image.colorspace_settings.name, "source_space": img.colorspace_settings.name}))
job.close()
sys.stdout.flush()
shutil.rmtree(bpy.app.tempdir, ignore_errors=True)  # what Blender's own exit would remove
os._exit(0)
'''


def test_an_aces_config_makes_acescg_shots(server, sequence, py, tmp_path):
    """Blender run with an ACES OCIO config (the OCIO studio config): scene linear is ACEScg, so
    the EXRs are ACEScg, the Image node reads them as ACEScg, sRGB sources go by that config's name."""
    r = subprocess.run([sys.executable, "-c", ACES_RUN, str(REPO / "nodes" / "blender"), str(sequence), server,
                        str(tmp_path / "cache")], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OCIO": "ocio://studio-config-latest"})
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    import json

    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["error"] is None and got["linear"] == ["ACEScg", "acescg"]
    assert got["node_space"] == "ACEScg" and got["source_space"] == "sRGB Encoded Rec.709 (sRGB)"
    ref = _hdr_video(py, sequence.parent / "plate.####.png", tmp_path / "ref", "--frames", "101-102",
                     output="acescg")
    for k, f in enumerate(got["files"]):
        mine, want = _exr(f), _exr(ref / f"plate.{101 + k:04d}.exr")
        assert mine["attrs"]["hdrlift:outputColorspace"] == "acescg"
        for c in "RGB":
            np.testing.assert_allclose(mine[c], want[c], **HALF)  # both premultiplied


def test_the_modal_loop_driven_by_hand(server, movie, tmp_path):
    """Headless Blender has no window, so ``invoke`` runs ``execute``. The modal handler itself is
    driven here with stand-in timer and Esc events (the window manager and workspace calls are
    recorded): what the UI would do, short of the real event loop and progress bar."""
    import threading
    from types import SimpleNamespace

    op_cls = hdrlift_blender.HDRLIFT_OT_reconstruct_shot
    clip = bpy.data.movieclips.load(str(movie))
    _scene(1, 6)
    calls = []
    wm = SimpleNamespace(progress_update=lambda v: calls.append(("progress", v)),
                         progress_end=lambda: calls.append(("end",)),
                         event_timer_remove=lambda t: calls.append(("timer off", t)))
    context = SimpleNamespace(window_manager=wm, scene=bpy.context.scene,
                              workspace=SimpleNamespace(status_text_set=lambda t: calls.append(("status", t))))
    reports = []

    def drive(cancel_after=None):
        job = shot.Shot(bpy.context.scene, clip=clip.name, server=server, cache_dir=str(tmp_path / "cache"),
                        route="STREAM")
        op = SimpleNamespace(_shot=job, _timer="timer", wire=True, report=lambda kind, msg: reports.append((kind, msg)))
        op._end = lambda ctx, j: op_cls._end(op, ctx, j)
        written = threading.Event()
        job.run.on_frame = lambda f: written.set() if len(job.run.written) >= (cancel_after or 99) else None
        job.run.start()
        timer, esc = SimpleNamespace(type="TIMER", value="NOTHING"), SimpleNamespace(type="ESC", value="PRESS")
        assert op_cls.modal(op, context, SimpleNamespace(type="MOUSEMOVE", value="NOTHING")) == {"PASS_THROUGH"}
        while True:
            if cancel_after and written.is_set():
                assert op_cls.modal(op, context, esc) == {"RUNNING_MODAL"}
                written.clear()
            if not (job.run.fed_all and not job.run.finished.is_set()):
                state = op_cls.modal(op, context, timer)
            else:
                job.run.finished.wait(60)  # everything is fed: the next tick finishes
                continue
            if state != {"RUNNING_MODAL"}:
                return state, job

    state, job = drive(cancel_after=2)
    assert state == {"CANCELLED"} and reports[-1][0] == {"WARNING"} and "cancelled" in reports[-1][1]
    assert ("timer off", "timer") in calls and ("status", None) in calls and ("end",) in calls
    assert any(c[0] == "status" and c[1] and "/6 frames (Esc cancels)" in c[1] for c in calls)
    state, job = drive()
    assert state == {"FINISHED"} and reports[-1][0] == {"INFO"} and "from the cache" in reports[-1][1]
    assert "HdrLift" in bpy.context.scene.node_tree.nodes and len(_cache_files(tmp_path / "cache")) == 6
