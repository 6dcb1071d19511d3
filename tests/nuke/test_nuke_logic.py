"""The parts of the Nuke node that do not import nuke: colour maths, EXR files, the run loop
(against a real hdrlift-serve, compared with the engine's own Pipeline), the vendored-folder
choice, and the import boundary (nothing of the engine, torch or OpenImageIO)."""

from __future__ import annotations

import json
import os
import pathlib
import struct
import subprocess
import sys

import numpy as np
import pytest
import standin
from conftest import PLUGIN
from real_server import engine_python

from hdrlift.plugin import openexr
from hdrlift_nuke import colour, exrfiles, job, vendor


# --------------------------------------------------------------------------- colour
def test_transfer_curves_at_known_points():
    x = np.array([0.0, 0.0031308, 0.018, 0.18, 1.0, 1.5, -0.2])
    srgb = colour.encode(x, "srgb")
    np.testing.assert_allclose(srgb[:5], [0.0, 0.04045, 0.14283, 0.46136, 1.0], atol=1e-4)
    assert srgb[5] == pytest.approx(1.0) and srgb[6] == 0.0  # clipped: an SDR plate holds [0, 1]
    np.testing.assert_allclose(colour.encode(np.array([0.0, 0.01, 0.5, 1.0]), "bt709"),
                               [0.0, 0.045, 1.099 * 0.5 ** 0.45 - 0.099, 1.0], atol=1e-12)
    np.testing.assert_allclose(colour.encode(np.array([0.5]), "gamma2.2"), [0.5 ** (1 / 2.2)])
    np.testing.assert_allclose(colour.encode(np.array([0.5]), "gamma2.4"), [0.5 ** (1 / 2.4)])
    for curve in ("srgb", "bt709", "gamma2.4", "gamma2.2"):
        v = colour.encode(np.linspace(0, 1, 1001), curve)
        assert np.all(np.diff(v) > 0), curve  # monotonic: no code value is reached twice
    with pytest.raises(colour.ColourSettingError):
        colour.encode(x, "log")


def test_acescg_matrix_keeps_white_and_inverts():
    m = colour.rgb_matrix("ap1", "rec709")
    np.testing.assert_allclose(m @ np.ones(3), np.ones(3), atol=1e-9)  # Bradford: white stays white
    np.testing.assert_allclose(m @ colour.rgb_matrix("rec709", "ap1"), np.eye(3), atol=1e-9)


def test_to_plate_names_the_server_space_and_cleans_the_pixels():
    rgb = np.array([[[0.18, 2.0, np.nan], [-1.0, np.inf, 0.5]]], np.float32)
    code, space = colour.to_plate(rgb, "linear Rec.709", "sRGB")
    assert space == "srgb" and code.dtype == np.float32 and code.flags.c_contiguous
    np.testing.assert_allclose(code[0, 0], [0.4614, 1.0, 0.0], atol=2e-4)
    np.testing.assert_allclose(code[0, 1], [0.0, 1.0, colour.encode(np.array(0.5), "srgb")], atol=1e-6)
    assert colour.to_plate(rgb, "ACEScg", "Rec.709")[1] == "rec709"
    assert colour.to_plate(rgb, "linear Rec.709", "gamma 2.2")[1] == "gamma22"
    with pytest.raises(colour.ColourSettingError, match="working space 'sRGB'"):
        colour.to_plate(rgb, "sRGB", "sRGB")


# --------------------------------------------------------------------------- EXR files
def test_results_round_trip_with_their_attributes(tmp_path):
    hdr = np.random.default_rng(0).random((5, 7, 3), dtype=np.float32) * np.float32(8)
    mask = np.linspace(0, 1, 35, dtype=np.float32).reshape(5, 7)
    path = str(tmp_path / "hdr.0001.exr")
    exrfiles.write_result(path, hdr, mask, half=False, attributes={"hdrlift:input_hash": "ab", "hdrlift:source_frame": 1})
    assert os.listdir(tmp_path) == ["hdr.0001.exr"]  # no temporary left
    np.testing.assert_array_equal(exrfiles.read_rgb(path), hdr)
    planes, _ = openexr.decode(pathlib.Path(path).read_bytes())
    np.testing.assert_array_equal(planes["mask.Y"], mask)
    attrs = exrfiles.read_attributes(path)
    assert attrs["hdrlift:input_hash"] == "ab" and attrs["hdrlift:source_frame"] == 1
    assert attrs["dataWindow"] == (0, 0, 6, 4)


@pytest.mark.parametrize("data_window", [(2, 1, 5, 3), (-2, -1, 8, 6)], ids=["bbox inside", "overscan"])
def test_a_data_window_other_than_the_format_gives_the_format(tmp_path, data_window):
    x0, y0, x1, y1 = data_window
    data = np.random.default_rng(1).random((y1 - y0 + 1, x1 - x0 + 1, 3), dtype=np.float32)
    path = tmp_path / "in.exr"
    path.write_bytes(standin.exr_with_windows(data, (data_window, (0, 0, 6, 4)), half=False))
    out = exrfiles.read_rgb(str(path))
    assert out.shape == (5, 7, 3)
    full = np.zeros((y1 + 10, x1 + 10, 3), np.float32)  # paste in a canvas shifted by 2, 1
    full[y0 + 2:y1 + 3, x0 + 2:x1 + 3] = data
    np.testing.assert_array_equal(out, full[2:7, 2:9])


def test_an_exr_the_codec_cannot_read_is_one_line_naming_the_file(tmp_path):
    data = bytearray(openexr.encode({c: np.zeros((2, 2), np.float32) for c in "RGB"}, compression=openexr.ZIP))
    i = data.index(b"compression\0compression\0") + len(b"compression\0compression\0") + 4
    data[i] = 4  # PIZ, which the node's Write must not use
    (tmp_path / "piz.exr").write_bytes(bytes(data))
    with pytest.raises(exrfiles.ExrError) as ei:
        exrfiles.read_rgb(str(tmp_path / "piz.exr"))
    assert "piz.exr" in str(ei.value) and "Zip" in str(ei.value) and "\n" not in str(ei.value)
    (tmp_path / "text.exr").write_text("not an image")
    with pytest.raises(exrfiles.ExrError, match="not an OpenEXR file"):
        exrfiles.read_attributes(str(tmp_path / "text.exr"))


# --------------------------------------------------------------------------- the run loop
def _linear(frame: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(frame)
    img = (rng.random((h, w, 3), dtype=np.float32) * np.float32(1.1)) ** 2
    img[: h // 4, : w // 3] = 1.0
    return img.astype(np.float32)


def _renderer(frames: dict, log: list):
    def render(path: str, frame: int) -> None:  # what the internal Write does: a float EXR of the input
        log.append(frame)
        planes = {c: frames[frame][..., i] for i, c in enumerate("RGB")}
        pathlib.Path(path).write_bytes(openexr.encode(planes, half=False, compression=openexr.ZIPS))
    return render


def _engine_refs(tmp_path, codes: list[np.ndarray], model: str, input_space: str, output_space: str):
    np.savez(tmp_path / "codes.npz", *codes)
    code = ("import sys, numpy as np\n"
            "from hdrlift.engine.pipeline import Pipeline\n"
            "p = Pipeline(model=sys.argv[3], backend='torch', output_space=sys.argv[5])\n"
            "x = np.load(sys.argv[1])\n"
            "r = [p.process(x[k], input_space=sys.argv[4]) for k in x.files]\n"
            "np.savez(sys.argv[2], *[a for q in r for a in (q.hdr, q.mask)])\n")
    subprocess.run([engine_python(), "-c", code, str(tmp_path / "codes.npz"), str(tmp_path / "refs.npz"), model,
                    input_space, output_space], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    refs = np.load(tmp_path / "refs.npz")
    arrays = [refs[k] for k in refs.files]
    return list(zip(arrays[0::2], arrays[1::2]))


def test_a_run_equals_the_engine_and_skips_what_did_not_change(server, tmp_path):
    frames = {7: _linear(7, 21, 33), 8: _linear(8, 21, 33), 9: _linear(9, 21, 33)}
    settings = job.Settings(servers=server.address, model="hdrcnn-lite", output_space="ACEScg", half=False,
                            cache_folder=str(tmp_path / "cache"))
    log, progress = [], []
    report = job.run(settings, [7, 8, 9], scope="/shows/a.nk", node_name="HdrLift1", render=_renderer(frames, log),
                     progress=lambda p, m: progress.append(p))
    assert (report.written, report.skipped, report.first, report.last) == (3, 0, 7, 9)
    assert log == [7, 8, 9] and progress == sorted(progress) and progress[-1] == 100
    codes = [colour.to_plate(frames[f], "linear Rec.709", "sRGB")[0] for f in (7, 8, 9)]
    refs = _engine_refs(tmp_path, codes, "hdrcnn-lite", "srgb", "ACEScg")
    for f, (ref_hdr, ref_mask) in zip((7, 8, 9), refs):
        path = os.path.join(report.folder, f"hdr.{f:04d}.exr")
        planes, _ = openexr.decode(pathlib.Path(path).read_bytes())
        np.testing.assert_array_equal(np.stack([planes[c] for c in "RGB"], -1), ref_hdr)  # the engine's bits
        np.testing.assert_array_equal(planes["mask.Y"], ref_mask)
    again = job.run(settings, [7, 8, 9], scope="/shows/a.nk", node_name="HdrLift1", render=_renderer(frames, log))
    assert (again.written, again.skipped, again.folder) == (0, 3, report.folder)
    other = job.run(settings, [7], scope="/shows/b.nk", node_name="HdrLift1", render=_renderer(frames, log))
    assert other.folder != report.folder  # another script keeps its own results


def test_a_run_reports_one_line_errors(tmp_path, server):
    frames = {1: _linear(1, 8, 8)}
    bad = job.Settings(servers=server.address, model="nope", cache_folder=str(tmp_path))
    with pytest.raises(job.NodeError, match=r"^server 127\.0\.0\.1:\d+: NOT_FOUND: unknown model 'nope'"):
        job.run(bad, [1], scope="", node_name="n", render=_renderer(frames, []))

    def broken(path, frame):
        raise RuntimeError("Write failed")

    with pytest.raises(job.NodeError, match="internal error: RuntimeError: Write failed"):
        job.run(job.Settings(servers=server.address, cache_folder=str(tmp_path)), [1], scope="", node_name="n",
                render=broken)
    with pytest.raises(job.NodeError, match="servers is empty"):
        job.run(job.Settings(servers=" "), [1], scope="", node_name="n", render=broken)
    with pytest.raises(job.NodeError, match="token file .* is empty"):
        (tmp_path / "t").write_text("# nothing\n")
        job.run(job.Settings(servers=server.address, token_file=str(tmp_path / "t")), [1], scope="", node_name="n",
                render=broken)


def test_tls_and_token_settings_reach_the_client(monkeypatch, tmp_path):
    seen = {}

    class FakeClient:
        def __init__(self, servers, **kw):
            seen.update(kw, servers=servers)

    import hdrlift.plugin

    monkeypatch.setattr(hdrlift.plugin, "Client", FakeClient, raising=False)
    (tmp_path / "tok").write_text("abc\n")
    job._client(job.Settings(servers="a:1,b:2", token_file=str(tmp_path / "tok"), ca_file="/ca.pem"))
    assert seen == {"servers": "a:1,b:2", "token": "abc", "ca_file": "/ca.pem", "timeout": None}


def test_default_cache_root():
    assert job.default_cache_root({"NUKE_TEMP_DIR": "/var/tmp/nuke"}) == os.path.join("/var/tmp/nuke", "hdrlift")


# --------------------------------------------------------------------------- vendoring and imports
def test_platform_tags():
    assert vendor.platform_tag("linux", "x86_64") == "linux-x86_64"
    assert vendor.platform_tag("darwin", "arm64") == "macos-arm64"
    assert vendor.platform_tag("win32", "AMD64") == "windows-amd64"
    assert vendor.site_tag((3, 9), "linux", "aarch64") == "py39-linux-aarch64"


def test_activate_appends_only_an_existing_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert vendor.activate(str(tmp_path)) is None
    folder = pathlib.Path(vendor.site_folder(str(tmp_path)))
    folder.mkdir(parents=True)
    assert vendor.activate(str(tmp_path)) == str(folder) and sys.path[-1] == str(folder)
    assert vendor.missing() == []


HEAVY = ("torch", "OpenImageIO", "PyOpenColorIO", "av", "onnxruntime", "safetensors", "onnx", "PySide2", "PySide6")


def test_the_node_code_imports_nothing_of_the_engine():
    """Imported in a fresh interpreter: no engine, no torch, no OpenImageIO/OCIO; with a built folder
    (make test-nuke) nothing beyond the standard library and the vendored packages."""
    code = ("import sys, json; sys.path.insert(0, sys.argv[1])\n"
            "import hdrlift_nuke.vendor\n"
            "hdrlift_nuke.vendor.activate(sys.argv[2]) if sys.argv[2] else None\n"
            "import hdrlift_nuke.job, hdrlift_nuke.colour, hdrlift_nuke.exrfiles, hdrlift.plugin.client\n"
            "print(json.dumps(sorted(sys.modules)))")
    dist = os.environ.get("HDRLIFT_NUKE_DIST", "")
    cmd = [sys.executable] + (["-I", "-S"] if dist else []) + ["-c", code, str(PLUGIN / "python"), dist]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": "" if dist else os.pathsep.join(p for p in sys.path if p)})
    mods = json.loads(out.stdout)
    assert not [m for m in mods if m.startswith(("hdrlift.engine", "hdrlift.training")) or m.split(".")[0] in HEAVY]
    if dist:
        top = {m.split(".")[0] for m in mods} - set(sys.stdlib_module_names)
        top -= {m for m in top if m.startswith("_cython") or m == "cython_runtime"}
        assert top == {"__main__", "hdrlift", "hdrlift_nuke", "numpy", "grpc", "google", "typing_extensions"}, top


def test_the_sources_read_as_python_3_9():
    import ast

    files = list((PLUGIN / "python").rglob("*.py")) + [PLUGIN / "init.py", PLUGIN / "menu.py"]
    for f in files:
        ast.parse(f.read_text(), filename=str(f), feature_version=(3, 9))
