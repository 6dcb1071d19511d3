"""The HDR pack (training/pack_data.py, data.HdrPack): round trip, splits, float16 range, and
training, evaluation and ONNX export from a pack without av, OpenImageIO or PyOpenColorIO."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from hdrlift.training import data as D
from hdrlift.training import pack_data as P

from training_helpers import synthetic_hdr, write_exr

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def split_folder(tmp_path_factory) -> pathlib.Path:
    """Three panoramas and a photo, with a MANIFEST.csv: a, b and the photo train, c val."""
    d = tmp_path_factory.mktemp("split")
    write_exr(d / "a.exr", synthetic_hdr(32, 64, 1))
    write_exr(d / "b.exr", synthetic_hdr(32, 64, 2))
    write_exr(d / "c.exr", synthetic_hdr(32, 64, 3))
    write_exr(d / "photo.exr", synthetic_hdr(30, 40, 4))
    (d / "MANIFEST.csv").write_text("file,split\na.exr,train\nb.exr,train\nc.exr,val\nphoto.exr,train\n")
    return d


def test_pack_round_trips_and_keeps_the_split(split_folder, tmp_path):
    out = tmp_path / "pack.npz"
    res = P.pack(split_folder, out, size=32, progress=False)
    assert res["images"] == 4 and res["splits"] == {"train": 3, "val": 1}
    for split in ("train", "val", None):
        folder, pack = D.HdrFolder(split_folder, split), D.open_hdr(out, split)
        assert isinstance(pack, D.HdrPack)
        assert sorted(pack.names()) == sorted(folder.names())
        for i, name in enumerate(pack.names()):
            src = folder[folder.names().index(name)]
            h, w = P.target_size(src.shape[0], src.shape[1], 32)
            ref = P.area_resize(src, w, h) if (h, w) != src.shape[:2] else src
            got = pack[i]
            assert got.dtype == np.float32 and got.shape == ref.shape
            np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-6)  # float16: 11-bit mantissa
    assert D.open_hdr(out, "val").names() == ["c.exr"]
    assert D.open_hdr(out, "train").names() == ["a.exr", "b.exr", "photo.exr"]
    # panoramas stay 2:1 (perspective crops), the photo keeps its aspect
    assert D.open_hdr(out, "val")[0].shape == (16, 32, 3)
    assert D.open_hdr(out, "train")[2].shape == (24, 32, 3)
    with pytest.raises(FileNotFoundError):
        D.open_hdr(out, "test")
    with pytest.raises(FileNotFoundError):
        D.open_hdr(tmp_path / "missing.npz")


def test_peaks_above_float16_are_scaled_by_a_power_of_two():
    img = np.full((2, 2, 3), 0.5, np.float32)
    img[0, 0] = 9.0e4  # the shared panoramas' suns reach ~9e4; float16 stops at 65504
    half, scale = P.to_half(img)
    assert half.dtype == np.float16 and np.isfinite(half).all() and scale == 4.0
    np.testing.assert_allclose(half.astype(np.float32) * scale, img, rtol=1e-3)
    assert P.to_half(np.ones((1, 1, 3), np.float32))[1] == 1.0


def test_area_resize_keeps_the_mean_and_pack_cli(split_folder, tmp_path, capsys):
    img = np.random.default_rng(0).random((10, 30, 3)).astype(np.float32)
    small = P.area_resize(img, 7, 3)  # non-integer factors
    assert small.shape == (3, 7, 3)
    np.testing.assert_allclose(small.mean(axis=(0, 1)), img.mean(axis=(0, 1)), rtol=1e-5)
    np.testing.assert_allclose(P.area_resize(img, 15, 5), img.reshape(5, 2, 15, 2, 3).mean(axis=(1, 3)), rtol=1e-5)
    assert P.main(["--out", str(tmp_path / "p.npz"), "--size", "32", "--data", str(split_folder), "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 4
    assert P.main(["--out", str(tmp_path / "p.bin")]) == 2


BLOCKED = """
import sys
for name in ("av", "OpenImageIO", "PyOpenColorIO"):
    sys.modules[name] = None  # any import of them raises ImportError
import json, pathlib
from hdrlift.training import train as T, evaluate as E, card  # noqa: F401
from hdrlift.engine.backends.exporters import export_onnx
pack, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
cfg = T.TrainConfig(model="hdrcnn-lite", data=str(pack), patch=32, batch=2, iterations=2, warmup=1,
                    val_views=1, val_size=32, val_every=2, log_every=1, workers=1)
res = T.train(cfg, out / "run", progress=False, device="cpu")
assert res["step"] == 2 and (out / "run" / "best.safetensors").is_file(), res
rc = E.main([str(pack), "--models", "hdrcnn-lite,inverse-crf", "--weights",
             "hdrcnn-lite=" + str(out / "run" / "best.safetensors"), "--views", "1", "--size", "32",
             "--no-stack", "--json", str(out / "eval.json"), "-q"])
assert rc == 0 and json.loads((out / "eval.json").read_text())["protocol"]["images"] == 1
export_onnx("hdrcnn-lite", out / "m.onnx", weights=str(out / "run" / "best.safetensors"))
assert not any(sys.modules.get(n) for n in ("av", "OpenImageIO", "PyOpenColorIO"))
print("ok")
"""


def test_train_eval_export_from_a_pack_without_media_libraries(split_folder, tmp_path):
    pack = tmp_path / "pack.npz"
    P.pack(split_folder, pack, size=64, progress=False)
    env = {**os.environ, "HDRLIFT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", BLOCKED, str(pack), str(tmp_path)], capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
