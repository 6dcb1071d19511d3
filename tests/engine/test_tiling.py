"""Tiled inference: layout, exactness for pointwise models, no seams for networks, bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from hdrlift.engine.backends import create_backend, wrap_module
from hdrlift.engine.backends.base import Backend
from hdrlift.engine.models import get_info, load_model
from hdrlift.engine.tiling import default_margin, plan_tiles, run_tiled, tile_policy


def smooth_frame(h, w, noise=0.0, seed=0) -> np.ndarray:
    """Broad highlights (max code value > 0.95 on most of the frame) so HDR-CNN's expansion acts."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    f = np.stack([0.8 + 0.3 * np.sin(xx / 37 + yy / 53), 0.8 + 0.3 * np.cos(xx / 41), 0.85 + 0.2 * np.sin(yy / 29)], -1)
    if noise:
        f = f + noise * np.random.default_rng(seed).standard_normal(f.shape)
    return np.clip(f, 0, 1).astype(np.float32)


def stress_network(name: str, seed: int = 0):
    """Every conv re-drawn N(0, 1/fan_in), biases zero: a network whose output depends on all of
    its receptive field (an untrained HDR-CNN is a near pass-through and would hide seams)."""
    net = get_info(name).factory()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) / mod.weight[0].numel() ** 0.5)
                if mod.bias is not None:
                    mod.bias.zero_()
    return wrap_module(name, net)


def test_plan_layout():
    p = plan_tiles(1080, 1920, 32, tile=512, margin=64, blend=32)
    assert (p.hp, p.wp) == (1088, 1920)
    assert p.tile_h == p.tile_w == 512
    for starts, size in ((p.ys, p.hp), (p.xs, p.wp)):
        assert starts[0] == 0 and starts[-1] + 512 == size
        assert all(s % 32 == 0 for s in starts)
        for a, b in zip(starts, starts[1:]):
            assert a + 512 - b >= 2 * 64 + 32  # overlap holds both margins and the blend
    small = plan_tiles(100, 90, 4, tile=512, margin=8, blend=8)
    assert (small.ys, small.xs, small.tile_h, small.tile_w) == ((0,), (0,), 100, 92)
    with pytest.raises(ValueError):
        plan_tiles(1000, 1000, 32, tile=128, margin=64)


def test_policies():
    assert tile_policy(get_info("inverse-crf")) == "pointwise" and default_margin(get_info("inverse-crf")) == 0
    assert tile_policy(get_info("landis")) == "global"
    assert tile_policy(get_info("hdrcnn-lite")) == "network" and default_margin(get_info("hdrcnn-lite")) >= 32


def test_pointwise_model_is_exact():
    be = create_backend("inverse-crf", kind="torch")
    frame = smooth_frame(320, 416, noise=0.05)  # H*W a multiple of 64: no scalar tail in torch's loops
    whole = run_tiled(be, frame)
    tiled = run_tiled(be, frame, force=True, tile=64, margin=0, blend=8)
    assert np.array_equal(tiled[0], whole[0]) and np.array_equal(tiled[1], whole[1])
    odd = smooth_frame(301, 417, noise=0.05)  # odd sizes: equal up to the math library's last ulp
    w2, t2 = run_tiled(be, odd), run_tiled(be, odd, force=True, tile=96, margin=0, blend=16)
    np.testing.assert_allclose(t2[0], w2[0], rtol=1e-6, atol=0)


def test_global_operator_is_never_tiled():
    be = create_backend("landis", kind="torch")
    frame = smooth_frame(200, 260, noise=0.05)
    whole = be.run(frame.transpose(2, 0, 1)[None].copy())[0][0].transpose(1, 2, 0)
    tiled = run_tiled(be, frame, force=True, tile=64, max_pixels=1000)
    assert np.array_equal(tiled[0], whole)


def _seam_columns(plan):
    cols = set()
    for a, b in zip(plan.xs, plan.xs[1:]):
        cols.update(range(b - 1, a + plan.tile_w + 1))  # the whole shared band and its edges
    return sorted(c for c in cols if c < plan.w - 1)


def test_network_tiles_blend_without_seams():
    model = stress_network("hdrcnn-lite")
    be = create_backend(model, kind="torch")
    frame = smooth_frame(320, 416)
    whole, _ = run_tiled(be, frame)
    scale = float(np.abs(whole).max())
    tiled, mask = run_tiled(be, frame, force=True, tile=256, margin=16, blend=32)
    plan = plan_tiles(320, 416, 32, tile=256, margin=16, blend=32)
    assert plan.count >= 4
    seams = _seam_columns(plan)
    gx_t = np.abs(np.diff(tiled, axis=1))
    gx_w = np.abs(np.diff(whole, axis=1))
    # at tile borders the tiled picture is no steeper than the whole-frame picture
    excess = (gx_t[:, seams] - gx_w[:, seams]).max()
    assert excess <= 1e-3 * scale, excess
    rel = float(np.abs(tiled - whole).max()) / scale
    assert rel < 1e-3, rel  # documented in docs/backends.md
    # negative control: pasting 160-pixel tiles side by side without overlap does show seams
    hard = np.empty_like(whole)
    for y0 in range(0, 320, 160):
        for x0 in range(0, 416, 160):
            t = np.ascontiguousarray(frame[y0:y0 + 160, x0:x0 + 160].transpose(2, 0, 1)[None])
            hard[y0:y0 + 160, x0:x0 + 160] = be.run(t)[0][0].transpose(1, 2, 0)
    gx_h = np.abs(np.diff(hard, axis=1))
    assert (gx_h[:, [159, 319]] - gx_w[:, [159, 319]]).max() > 100 * 1e-3 * scale


def test_margin_at_receptive_field_is_nearly_exact():
    """With the margin at HDRUNet's measured 99.9 % gradient-mass radius (64 px), tiled equals whole."""
    torch.manual_seed(0)
    model = wrap_module("hdrunet", get_info("hdrunet").factory())
    be = create_backend(model, kind="torch")
    frame = smooth_frame(96, 420, noise=0.02)
    whole, wm = run_tiled(be, frame)
    tiled, tm = run_tiled(be, frame, force=True, tile=320, margin=64, blend=32)
    scale = float(np.abs(whole).max())
    assert float(np.abs(tiled - whole).max()) <= 1e-4 * scale
    assert float(np.abs(tm - wm).max()) <= 1e-3


class NumpyInverseCRF(Backend):
    """A real back end in plain numpy (the inverse sRGB curve), so tracemalloc sees every byte."""

    name = "numpy"

    def __init__(self):
        super().__init__(load_model("inverse-crf"), "cpu", "fp32")

    def _run(self, x):
        lin = np.where(x <= 0.04045, x / np.float32(12.92), ((x + np.float32(0.055)) / np.float32(1.055)) ** np.float32(2.4))
        return lin.astype(np.float32), np.zeros_like(x[:, :1])


def test_memory_is_bounded():
    be = NumpyInverseCRF()
    h, w, tile = 1200, 1600, 128
    frame = smooth_frame(h, w)
    budget = tile * tile * 2  # two tiles per batch
    tracemalloc.start()
    try:
        hdr, mask = run_tiled(be, frame, max_pixels=budget, tile=tile, blend=8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    output = hdr.nbytes + mask.nbytes
    strip = 4 * tile * w * 4
    batch = 2 * 4 * tile * tile * 4
    assert peak <= output + 2 * strip + 8 * batch, (peak, output, strip, batch)
    assert peak < 2 * frame.nbytes  # far below what a padded copy of the frame plus outputs would need
    np.testing.assert_allclose(hdr, be.run(frame.transpose(2, 0, 1)[None].copy())[0][0].transpose(1, 2, 0), rtol=1e-6)


def test_default_budget_is_1080p_on_the_cpu_and_follows_gpu_memory_on_cuda():
    """No GPU here: the CUDA branch is a pure function of the free memory, checked with given
    figures (torch.cuda.mem_get_info supplies them on a GPU)."""
    from hdrlift.engine.models import get_info
    from hdrlift.engine.tiling import (CUDA_FALLBACK_BYTES_PER_PIXEL, CUDA_MAX_PIXELS, CUDA_MIN_PIXELS,
                                       DEFAULT_MAX_PIXELS, default_max_pixels)

    lite, unet, kim, santos = (get_info(n) for n in ("hdrcnn-lite", "hdrunet", "kim", "santos"))
    gib = 1 << 30
    assert default_max_pixels(lite, "cpu", "fp32") == DEFAULT_MAX_PIXELS
    assert default_max_pixels(get_info("landis"), "cuda", "fp16", free_bytes=80 * gib) == DEFAULT_MAX_PIXELS
    # an 80 GB H100: capped at 8K UHD; a 4K frame of the default runs whole
    assert default_max_pixels(lite, "cuda", "fp16", free_bytes=78 * gib) == CUDA_MAX_PIXELS
    # 8 GiB free: 4 GiB / 319 bytes = 13.5 Mpx for the default in fp16 (4K whole); HDRUNet in fp32
    # (2077 bytes) gets 2.07 Mpx, just under 1080p, and with 16 GiB free runs 1080p whole, 4K tiled
    assert default_max_pixels(lite, "cuda", "fp16", free_bytes=8 * gib) == int(0.5 * 8 * gib / 319)
    assert default_max_pixels(unet, "cuda", "fp32", free_bytes=8 * gib) < 1920 * 1080
    assert 1920 * 1080 < default_max_pixels(unet, "cuda", "fp32", free_bytes=16 * gib) < 3840 * 2160
    # Kim runs in fp32 whatever is asked: its fp32 figure applies
    assert default_max_pixels(kim, "cuda", "fp16", free_bytes=8 * gib) == int(0.5 * 8 * gib / kim.cuda_bytes_per_pixel[0])
    # unmeasured network: the cautious figure; a nearly full GPU: the floor
    assert default_max_pixels(santos, "cuda:1", "fp16", free_bytes=8 * gib) == int(0.5 * 8 * gib / CUDA_FALLBACK_BYTES_PER_PIXEL[1])
    assert default_max_pixels(lite, "cuda", "fp32", free_bytes=10 << 20) == CUDA_MIN_PIXELS
