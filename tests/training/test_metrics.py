"""HDR quality metrics (training/metrics.py): identities, analytic values, scale alignment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hdrlift.training import metrics as M


def scene(h=32, w=32, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(-1.0, 1.0, (h, w, 3))).astype(np.float32)


def test_psnr_of_identical_images_is_infinite():
    ref = scene()
    assert M.psnr_mu(ref, ref) == math.inf
    assert M.psnr_l(ref, ref) == math.inf
    assert M.pu21_psnr(ref, ref) == math.inf


def test_psnr_mu_constant_offset_analytic():
    # constant reference c: the 99th percentile is c, so T(x) = log(1 + mu tanh(x / c)) / log(1 + mu)
    c, d, mu = 2.0, 0.1, 5000.0
    ref = np.full((8, 8, 3), c, np.float32)
    pred = ref + np.float32(d)
    t = lambda x: math.log1p(mu * math.tanh(x / c)) / math.log1p(mu)  # noqa: E731
    expect = -20.0 * math.log10(abs(t(c + d) - t(c)))
    assert M.psnr_mu(pred, ref) == pytest.approx(expect, abs=1e-3)


def test_psnr_l_constant_offset_analytic():
    ref = np.full((8, 8, 3), 2.0, np.float32)
    assert M.psnr_l(ref + np.float32(0.02), ref) == pytest.approx(40.0, abs=1e-3)  # (0.02 / 2)^2 -> 40 dB


def test_pu21_encoding_is_monotone_and_psnr_orders_errors():
    y = np.logspace(-3, 4.5, 200)
    e = M.pu21_encode(y)
    assert np.all(np.diff(e) >= 0)
    ref = scene(seed=1)
    assert M.pu21_psnr(ref * 1.05, ref) > M.pu21_psnr(ref * 1.5, ref)


def test_ssim_identity_symmetry_and_degradation():
    a = np.clip(scene(seed=2) / 4, 0, 1)
    b = np.clip(a + np.random.default_rng(3).normal(0, 0.05, a.shape).astype(np.float32), 0, 1)
    assert M.ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert M.ssim(a, b) == pytest.approx(M.ssim(b, a), abs=1e-9)
    assert 0.0 < M.ssim(a, b) < 0.99
    small = a[:6, :6]  # below the 11 x 11 window: one global window
    assert M.ssim(small, small) == pytest.approx(1.0, abs=1e-6)
    assert M.ssim(a[..., 0], a[..., 0]) == pytest.approx(1.0, abs=1e-6)


def test_align_scale_recovers_a_known_scale():
    ref = scene(seed=4)
    ldr = np.full(ref.shape, 0.5, np.float32)  # all well exposed
    assert M.align_scale(ref / 3.0, ref, ldr) == pytest.approx(3.0, rel=1e-5)
    assert M.align_scale(ref * 0.25, ref, ldr) == pytest.approx(4.0, rel=1e-5)
    # saturated or black pixels do not vote
    ldr2 = ldr.copy()
    ldr2[:16] = 1.0
    pred = ref / 3.0
    pred[:16] *= 100.0
    assert M.align_scale(pred, ref, ldr2) == pytest.approx(3.0, rel=1e-5)
    assert M.align_scale(pred, ref, np.ones_like(ldr)) == 1.0  # nothing well exposed


def test_clipped_error_stops():
    ref = scene(seed=5)
    ldr = np.full(ref.shape, 0.5, np.float32)
    ldr[:8] = 1.0
    assert M.clipped_error_stops(ref * 2.0, ref, ldr) == pytest.approx(1.0, rel=1e-5)  # 1 stop
    assert M.clipped_error_stops(ref / 4.0, ref, ldr) == pytest.approx(2.0, rel=1e-5)
    pred = ref.copy()
    pred[8:] *= 10  # errors outside the clipped region do not count
    assert M.clipped_error_stops(pred, ref, ldr) == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(M.clipped_error_stops(ref, ref, np.full(ref.shape, 0.5, np.float32)))


def test_score_aligns_before_scoring():
    ref = scene(seed=6)
    ldr = np.full(ref.shape, 0.5, np.float32)
    ldr[:4] = 1.0
    s = M.score(ref * 0.5, ref, ldr)
    assert s["scale"] == pytest.approx(2.0, rel=1e-6)
    assert s["psnr_mu"] > 100 and s["pu21_psnr"] > 100
    assert s["clipped_stops"] == pytest.approx(0.0, abs=1e-5)
    raw = M.score(ref * 0.5, ref, ldr, align=False)
    assert raw["scale"] == 1.0 and raw["psnr_mu"] < 40
    assert raw["clipped_stops"] == pytest.approx(1.0, rel=1e-5)


def test_reinhard_operator():
    ref = scene(seed=7) * 10
    lbar, white = M.reinhard_params(ref)
    out = M.reinhard(ref, lbar, white)
    assert out.min() >= 0.0 and out.max() <= 1.0
    grey = np.repeat(np.sort(ref[..., :1].ravel())[:, None, None], 3, axis=-1)  # increasing grey levels
    disp = M.reinhard(grey, lbar, white)[:, 0, 0]
    assert np.all(np.diff(disp) >= 0)  # brighter in, brighter out
    # the brightest pixel maps to display white (L_white = max L_m)
    assert float(M.reinhard(np.full((1, 1, 3), ref.max(), np.float32), lbar, white).max()) <= 1.0
    r = M.reinhard_scores(ref, ref)
    assert r["reinhard_psnr"] == math.inf and r["reinhard_ssim"] == pytest.approx(1.0, abs=1e-6)


def test_range_wise_and_full_score():
    ref = scene(seed=8)
    rw = M.range_wise(ref, ref)
    for ev in M.STACK_EVS:
        assert f"stack_psnr@{ev:+g}" in rw and f"stack_ssim@{ev:+g}" in rw
    assert rw["stack_psnr"] == math.inf and rw["stack_ssim"] == pytest.approx(1.0, abs=1e-6)
    worse = M.range_wise(ref * 1.3, ref)
    assert worse["stack_psnr"] < 60 and worse["stack_ssim"] < 1.0
    # re-exposure: EV +1 doubles before the sRGB curve
    np.testing.assert_allclose(M.expose(ref, 1.0, None), M.expose(ref * 2, 0.0, None), atol=1e-7)
    ldr = np.full(ref.shape, 0.5, np.float32)
    fs = M.full_score(ref * 0.5, ref, ldr)
    assert fs["scale"] == pytest.approx(2.0) and fs["stack_psnr"] == math.inf


def _clipped_disc(h=160, w=160, r=60):
    """An LDR frame with a large clipped disc and the matching smooth HDR fill (a soft sun)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.hypot(yy - h / 2, xx - w / 2)
    ldr = np.repeat(np.clip(2.0 - d / r, 0, 1)[..., None], 3, -1).astype(np.float32)
    hdr = np.repeat((1.0 + 8.0 * np.exp(-(d / r) ** 2))[..., None], 3, -1).astype(np.float32)
    return ldr, hdr


def test_grid_artefact_finds_a_stride_8_grid_and_ignores_smooth_and_aperiodic_fills():
    ldr, hdr = _clipped_disc()
    assert M.clipped_mask(ldr).sum() > 5000
    smooth = M.grid_artefact_stops(hdr, ldr)
    assert 0.0 <= smooth < 1e-3
    # aperiodic texture of 0.1 stops: no preferred phase, so it stays near the floor
    rng = np.random.default_rng(3)
    textured = hdr * np.exp2(rng.normal(0, 0.1, hdr.shape[:2]))[..., None].astype(np.float32)
    assert M.grid_artefact_stops(textured, ldr) < 5e-3
    # the same texture plus a stride-8 pattern of +-0.03 stops (what a transposed conv draws)
    yy, xx = np.mgrid[0:ldr.shape[0], 0:ldr.shape[1]]
    pattern = np.where(((yy % 8) < 4) ^ ((xx % 8) < 4), 0.03, -0.03)
    gridded = textured * np.exp2(pattern)[..., None].astype(np.float32)
    g = M.grid_artefact_stops(gridded, ldr)
    assert 0.02 < g < 0.04, g  # RMS of a +-0.03 square wave is 0.03
    # the metric is in the eval rows
    assert M.score(gridded, hdr, ldr)["grid_stops"] == pytest.approx(g, rel=1e-6, abs=1e-9)


def test_grid_artefact_is_nan_without_a_large_clipped_region():
    ldr, hdr = _clipped_disc(r=6)
    assert math.isnan(M.grid_artefact_stops(hdr, ldr))
