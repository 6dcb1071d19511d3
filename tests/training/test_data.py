"""HDR datasets (training/data.py): EXR reading, splits, perspective crops, augmentation,
median normalisation, training patches and the validation set."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from hdrlift.training import camera as cam
from hdrlift.training import data as D

from training_helpers import HDRI, write_exr


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------

def test_read_hdr_reads_a_real_exr(tmp_path):
    img = np.zeros((6, 10, 3), np.float32)
    img[..., 0] = 0.5
    img[..., 1] = 2.0
    img[..., 2] = 16.0  # all exactly representable in half float
    img[1, 2] = [-1.0, np.nan, np.inf]
    path = write_exr(tmp_path / "x.exr", img)
    out = D.read_hdr(path)
    assert out.shape == (6, 10, 3) and out.dtype == np.float32
    assert np.all(np.isfinite(out)) and out.min() >= 0.0
    assert out[1, 2].tolist() == [0.0, 0.0, 0.0]  # negatives clamped, non-finite zeroed
    mask = np.ones((6, 10), bool)
    mask[1, 2] = False
    np.testing.assert_array_equal(out[mask], img[mask])


def test_read_hdr_grey_exr_becomes_rgb(tmp_path):
    import OpenImageIO as oiio

    g = np.linspace(0, 4, 12, dtype=np.float32).reshape(3, 4, 1)
    path = tmp_path / "g.exr"
    o = oiio.ImageOutput.create(str(path))
    o.open(str(path), oiio.ImageSpec(4, 3, 1, oiio.FLOAT))
    o.write_image(g)
    o.close()
    out = D.read_hdr(path)
    assert out.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g[..., 0])


def test_read_hdr_unreadable_file_raises_oserror(tmp_path):
    bad = tmp_path / "bad.exr"
    bad.write_bytes(b"not an exr")
    with pytest.raises(OSError):
        D.read_hdr(bad)


def test_hdr_folder_lists_files_and_splits_by_manifest(tmp_path, hdr_folder):
    folder = D.HdrFolder(hdr_folder)
    assert folder.names() == ["pano_a.exr", "pano_b.exr", "photo_a.exr", "photo_b.exr"]
    assert folder[0].shape == (64, 128, 3)
    assert folder[0] is folder[0]  # cached
    (tmp_path / "a.exr").write_bytes((hdr_folder / "pano_a.exr").read_bytes())
    (tmp_path / "b.exr").write_bytes((hdr_folder / "photo_a.exr").read_bytes())
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "MANIFEST.csv").write_text("file,split\na.exr,train\nb.exr,val\nmissing.exr,val\n")
    assert D.HdrFolder(tmp_path, "train").names() == ["a.exr"]
    assert D.HdrFolder(tmp_path, "val").names() == ["b.exr"]  # rows whose file is absent are dropped
    assert D.HdrFolder(tmp_path).names() == ["a.exr", "b.exr"]  # no split: every HDR file
    with pytest.raises(FileNotFoundError):
        D.HdrFolder(tmp_path, "test")
    with pytest.raises(FileNotFoundError):
        D.HdrFolder(tmp_path / "nowhere")


def test_default_root_train_val_split(monkeypatch):
    if not (HDRI / "MANIFEST.csv").exists():
        pytest.skip(f"{HDRI} is not present")
    monkeypatch.delenv("HDRLIFT_DATA", raising=False)
    assert D.default_data_root().resolve() == HDRI.resolve()
    train = D.HdrFolder(None, "train").names()
    val = D.HdrFolder(None, "val").names()
    rows = list(csv.DictReader((HDRI / "MANIFEST.csv").read_text().splitlines()))
    split = {s: sorted(r["file"] for r in rows if r["split"] == s and (HDRI / r["file"]).is_file())
             for s in ("train", "val")}
    assert sorted(train) == split["train"] and sorted(val) == split["val"]  # the manifest's split, whatever its size
    assert len(train) >= 40 and len(val) >= 6
    assert not set(train) & set(val)
    monkeypatch.setenv("HDRLIFT_DATA", "/elsewhere")
    assert str(D.default_data_root()) == "/elsewhere"


# ------------------------------------------------------------------------------------------
# perspective crops
# ------------------------------------------------------------------------------------------

def lonlat_panorama(h: int = 180, w: int = 360) -> np.ndarray:
    """Channel 0 = longitude, 1 = latitude (radians) of each pixel centre, 2 = 1.

    Both are linear in the pixel index, so bilinear sampling returns exactly the longitude and
    latitude a crop pixel looks at (away from the +-180 degree seam and the poles)."""
    x = ((np.arange(w) + 0.5) / w - 0.5) * 2 * math.pi
    y = (0.5 - (np.arange(h) + 0.5) / h) * math.pi
    lon, lat = np.meshgrid(x, y)
    return np.stack([lon, lat, np.ones_like(lon)], -1).astype(np.float32)


@pytest.mark.parametrize("yaw,pitch", [(0.0, 0.0), (30.0, 20.0), (-75.0, -10.0)])
def test_perspective_crop_looks_where_asked(yaw, pitch):
    pano = lonlat_panorama()
    size, fov = 33, 60.0
    crop = D.perspective_crop(pano, yaw, pitch, fov, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.float32
    c = size // 2
    assert math.degrees(crop[c, c, 0]) == pytest.approx(yaw, abs=1e-3)
    assert math.degrees(crop[c, c, 1]) == pytest.approx(pitch, abs=1e-3)
    # up is up, right is east
    assert crop[0, c, 1] > crop[c, c, 1] > crop[-1, c, 1]
    assert crop[c, 0, 0] < crop[c, c, 0] < crop[c, -1, 0]
    if pitch == 0.0:
        # the edge pixel centre of a pinhole camera: atan(((size - 1) / 2) / f), f = size / 2 / tan(fov / 2)
        f = 0.5 * size / math.tan(math.radians(fov) / 2)
        expect = yaw + math.degrees(math.atan(((size - 1) / 2) / f))
        assert math.degrees(crop[c, -1, 0]) == pytest.approx(expect, abs=1e-3)
        np.testing.assert_allclose(crop[c, :, 1], 0.0, atol=1e-5)  # the horizon stays level


def test_perspective_crop_a_known_pixel_lands_where_expected():
    h, w = 90, 180
    pano = np.zeros((h, w, 3), np.float32)
    # a bright pixel at longitude ~+40 deg, latitude ~+10 deg (pixel centres)
    x, y = 110, 40
    pano[y, x] = 100.0
    lon = math.degrees(((x + 0.5) / w - 0.5) * 2 * math.pi)
    lat = math.degrees((0.5 - (y + 0.5) / h) * math.pi)
    size = 65
    crop = D.perspective_crop(pano, lon, lat, 40.0, size)
    iy, ix = np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2])
    assert (iy, ix) == (size // 2, size // 2)
    # looking 15 degrees to the right (and 5 up) of it: the pinhole projection of its direction
    yaw, pitch, fov = lon + 15.0, lat + 5.0, 60.0
    crop = D.perspective_crop(pano, yaw, pitch, fov, size)
    iy, ix = np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2])
    lo, la = math.radians(lon), math.radians(lat)
    d = np.array([math.cos(la) * math.sin(lo), math.sin(la), math.cos(la) * math.cos(lo)])
    cy, sy, cp, sp = (math.cos(math.radians(yaw)), math.sin(math.radians(yaw)),
                      math.cos(math.radians(pitch)), math.sin(math.radians(pitch)))
    rx = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    c = (ry @ rx).T @ d  # camera coordinates (x right, y up, z forward)
    f = 0.5 * size / math.tan(math.radians(fov) / 2)
    expect_x = (size - 1) / 2 + f * c[0] / c[2]
    expect_y = (size - 1) / 2 - f * c[1] / c[2]
    assert ix < size // 2 and iy > size // 2  # left of and below the centre
    assert abs(ix - expect_x) <= 1.5 and abs(iy - expect_y) <= 1.5


def test_random_view_of_a_photo_is_a_sub_image():
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).random((40, 50, 3)).astype(np.float32)
    assert not D.is_panorama(img)
    for _ in range(5):
        v = D.random_view(img, rng, 16)
        hits = [(y, x) for y in range(25) for x in range(35) if np.array_equal(img[y:y + 16, x:x + 16], v)]
        assert len(hits) == 1
    big = D.random_view(img, rng, 64)  # smaller than the crop: tiled
    assert big.shape == (64, 64, 3)


def test_augment_keeps_shape_and_pixel_multiset():
    img = np.random.default_rng(2).random((24, 24, 3)).astype(np.float32)
    changed = 0
    for seed in range(30):
        out = D.augment(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == img.dtype and out.flags.c_contiguous
        np.testing.assert_array_equal(np.sort(out.ravel()), np.sort(img.ravel()))
        # pixels move as whole RGB triplets (up to a channel permutation)
        np.testing.assert_array_equal(np.sort(np.sort(out, axis=-1).reshape(-1, 3), axis=0),
                                      np.sort(np.sort(img, axis=-1).reshape(-1, 3), axis=0))
        changed += not np.array_equal(out, img)
    assert changed >= 10


@pytest.mark.parametrize("key", [0.18, 0.5])
def test_normalise_median_sets_median_luminance(key):
    hdr = np.exp(np.random.default_rng(4).normal(0.0, 2.0, (31, 17, 3))).astype(np.float32)
    out = D.normalise_median(hdr, key)
    assert float(np.median(cam.luminance(out))) == pytest.approx(key, rel=1e-5)
    ratio = out / hdr
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)  # one global scale
    black = np.zeros((4, 4, 3), np.float32)
    assert np.all(np.isfinite(D.normalise_median(black)))


# ------------------------------------------------------------------------------------------
# patches and validation set
# ------------------------------------------------------------------------------------------

def test_patch_dataset_patches(hdr_folder):
    ds = D.PatchDataset(D.HdrFolder(hdr_folder), size=32, seed=3, clip_range=(0.02, 0.1))
    ldr, hdr = ds.batch(6)
    assert ldr.shape == (6, 3, 32, 32) and hdr.shape == (6, 3, 32, 32)
    assert ldr.dtype == np.float32 and hdr.dtype == np.float32
    assert ldr.min() >= 0.0 and ldr.max() <= 1.0 and hdr.min() >= 0.0
    # the sRGB camera without noise: the LDR patch is the quantised, clipped sRGB of the reference
    np.testing.assert_allclose(ldr, cam.quantise(cam.srgb_encode(np.clip(hdr, 0, 1)), 8), atol=1e-6)
    for i in range(6):
        white = np.mean(ldr[i].max(axis=0) >= 1.0)
        assert 0.02 - 2 / 1024 <= white <= 0.1 + 0.03
    again = D.PatchDataset(D.HdrFolder(hdr_folder), size=32, seed=3, clip_range=(0.02, 0.1)).batch(6)
    np.testing.assert_array_equal(again[0], ldr)  # same seed, same patches
    with pytest.raises(ValueError):
        D.PatchDataset(D.HdrFolder(hdr_folder), sampling="best")
    with pytest.raises(ValueError):
        D.PatchDataset(D.HdrFolder(hdr_folder), pretrain="denoise")


def test_validation_set_is_deterministic(hdr_folder):
    folder = D.HdrFolder(hdr_folder)
    a = D.validation_set(folder, views=2, size=32)
    b = D.validation_set(folder, views=2, size=32)
    assert len(a) == len(folder) * 2 * 2
    assert sorted({it["clip_fraction"] for it in a}) == [0.03, 0.10]
    for x, y in zip(a, b):
        assert x["name"] == y["name"]
        np.testing.assert_array_equal(x["ldr"], y["ldr"])
        np.testing.assert_array_equal(x["hdr"], y["hdr"])
        assert x["ldr"].shape == (32, 32, 3)


def test_parallel_patches_are_the_same_stream_for_any_worker_count(hdr_folder):
    def batches(workers, start=0, n=3):
        it = D.ParallelPatches(D.PatchDataset(D.HdrFolder(hdr_folder), size=32, seed=5), batch=2,
                               workers=workers, seed=5, start=start)
        try:
            return [tuple(t.numpy() for t in next(it)) for _ in range(n)]
        finally:
            it.close()

    inline, forked, later = batches(0), batches(2), batches(2, start=1, n=2)
    for (l0, h0), (l1, h1) in zip(inline, forked):
        np.testing.assert_array_equal(l0, l1)
        np.testing.assert_array_equal(h0, h1)
    for (l0, _), (l1, _) in zip(inline[1:], later):  # a resumed run picks up the same batches
        np.testing.assert_array_equal(l0, l1)
    assert inline[0][0].shape == (2, 3, 32, 32) and not np.array_equal(inline[0][0], inline[1][0])


def test_highlight_sampling_prefers_bright_highlights(hdr_folder):
    """sampling="highlights": half of the samples are the brightest-highlight view of `tries`, so
    the clipped channels of the stream lie further above white than with random sampling."""
    rnd = D.PatchDataset(D.HdrFolder(hdr_folder), size=32, seed=3, clip_range=(0.02, 0.05))
    hi = D.PatchDataset(D.HdrFolder(hdr_folder), size=32, seed=3, clip_range=(0.02, 0.05), sampling="highlights",
                        tries=6)
    head = [np.mean([D.highlight_headroom(ldr.transpose(1, 2, 0), ref.transpose(1, 2, 0))
                     for ldr, ref in (ds.sample() for _ in range(80))]) for ds in (rnd, hi)]
    assert head[1] > head[0] + 0.1, head
    assert D.highlight_headroom(np.zeros((4, 4, 3), np.float32), np.ones((4, 4, 3), np.float32)) == 0.0
    assert D.highlight_headroom(np.ones((4, 4, 3), np.float32), np.full((4, 4, 3), 8.0, np.float32)) == 3.0


def test_recolour_gives_saturated_highlights_with_their_brightness(hdr_folder):
    """recolour (training augmentation, training/val_cases.py::recolour): the recoloured pixels keep
    their brightest channel and take the tint's chromaticity; with recolour=1 the training stream
    has far more clipped pixels whose other channels stay well below white than without."""
    from hdrlift.training.val_cases import random_tint, recolour

    rng = np.random.default_rng(0)
    tints = np.stack([random_tint(rng) for _ in range(200)])
    assert np.allclose(tints.max(1), 1.0) and (tints.min(1) <= 0.3 + 1e-6).all()  # saturation >= 0.7
    hdr = np.full((8, 8, 3), 0.2, np.float32)
    hdr[:4] = 3.0  # a bright half
    out = recolour(hdr, (1.0, 0.5, 0.0), quantile=0.9, ramp=0.5)
    assert np.allclose(out[:4], [3.0, 1.5, 0.0]) and np.allclose(out[4:], 0.2)
    with pytest.raises(ValueError, match="recolour"):
        D.PatchDataset(D.HdrFolder(hdr_folder), size=32, recolour=1.5)

    def saturated_share(ds):
        n = tot = 0
        for _ in range(40):
            ldr, _ = ds.sample()
            clipped = ldr.max(0) >= 0.99
            n += int((clipped & (ldr.min(0) < 0.5)).sum())
            tot += int(clipped.sum())
        return n / max(1, tot)

    plain = D.PatchDataset(D.HdrFolder(hdr_folder), size=32, seed=5, clip_range=(0.02, 0.05))
    tinted = D.PatchDataset(D.HdrFolder(hdr_folder), size=32, seed=5, clip_range=(0.02, 0.05), recolour=1.0)
    assert saturated_share(tinted) > saturated_share(plain) + 0.3
