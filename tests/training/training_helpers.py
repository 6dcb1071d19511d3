"""Helpers shared by the training tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import pathlib

import numpy as np

# the shared data next to the checkout (what training.data.default_data_root() falls back to)
HDRI = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hdri"


def write_exr(path: pathlib.Path, img: np.ndarray) -> pathlib.Path:
    """Write ``H x W x 3`` float32 as a half-float EXR with OpenImageIO."""
    import OpenImageIO as oiio

    img = np.ascontiguousarray(img, np.float32)
    spec = oiio.ImageSpec(img.shape[1], img.shape[0], img.shape[2], oiio.HALF)
    out = oiio.ImageOutput.create(str(path))
    assert out is not None, oiio.geterror()
    assert out.open(str(path), spec), out.geterror()
    assert out.write_image(img), out.geterror()
    out.close()
    return path


def synthetic_hdr(h: int, w: int, seed: int) -> np.ndarray:
    """A scene with a sky gradient, texture, a bright textured cloud and a small sun (up to ~40x
    the median), float32 linear RGB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.05 + 0.25 * (1.0 - yy / h)
    tex = 1.0 + 0.3 * np.sin(xx * rng.uniform(0.3, 0.9)) * np.sin(yy * rng.uniform(0.3, 0.9))
    img = np.stack([base * tex * c for c in rng.uniform(0.6, 1.2, 3)], axis=-1)
    cy, cx = rng.uniform(0.2, 0.5) * h, rng.uniform(0.2, 0.8) * w
    cloud = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.15 * min(h, w)) ** 2))
    img += (3.0 * cloud * (1.0 + 0.6 * np.sin(xx * 1.3) * np.sin(yy * 1.7)))[..., None]
    sy, sx = rng.uniform(0.1, 0.4) * h, rng.uniform(0.1, 0.9) * w
    img += (40.0 * np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / 8.0))[..., None]
    return img.astype(np.float32)
