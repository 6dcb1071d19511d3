"""The LDR camera simulation (training/camera.py): exposure, response curves, clipping,
quantisation, sensor noise and compression."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdrlift.training import camera as cam


def lognormal_hdr(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(-1.0, 1.5, (h, w, 3))).astype(np.float32)


def smooth_code(h: int = 64, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([0.5 + 0.3 * np.sin(xx / 5.0), 0.4 + 0.3 * np.cos(yy / 7.0), (xx + yy) / (h + w)], -1)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.1, 0.3])
def test_exposure_for_clip_fraction_clips_requested_fraction(fraction):
    hdr = lognormal_hdr()
    s = cam.exposure_for_clip_fraction(hdr, fraction)
    clipped = np.mean((hdr * s).max(axis=-1) >= 1.0)
    assert abs(clipped - fraction) <= 1.5 / hdr[..., 0].size + 1e-9
    # the whole camera: code value 1.0 (display white) in the brightest channel
    ldr, ref, s2 = cam.Camera(clip_fraction=fraction)(hdr)
    assert s2 == pytest.approx(s)
    white = np.mean(ldr.max(axis=-1) >= 1.0)
    # values within half a code value of white round up to it: at most a little more than asked
    assert fraction - 1.5 / hdr[..., 0].size <= white <= fraction + 0.02
    np.testing.assert_allclose(ref, hdr * np.float32(s), rtol=1e-6)


def test_exposure_for_clip_fraction_zero_maps_maximum_to_white_and_rejects_bad_fraction():
    hdr = lognormal_hdr()
    s = cam.exposure_for_clip_fraction(hdr, 0.0)
    assert float((hdr * s).max()) == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError):
        cam.exposure_for_clip_fraction(hdr, 1.0)
    black = np.zeros((8, 8, 3), np.float32)
    assert np.isfinite(cam.exposure_for_clip_fraction(black, 0.05))


@pytest.mark.parametrize("ev", [-2.0, 0.0, 1.5])
def test_exposure_for_ev_sets_median_luminance(ev):
    hdr = lognormal_hdr(seed=3)
    s = cam.exposure_for_ev(hdr, ev)
    assert float(np.median(cam.luminance(hdr * s))) == pytest.approx(0.18 * 2.0 ** ev, rel=1e-5)


def test_response_curves_are_monotone_and_fix_black_and_white():
    x = np.linspace(0.0, 1.0, 4097, dtype=np.float32)
    rng = np.random.default_rng(7)
    curves = [cam.SRGB, cam.gamma_curve(2.2), cam.gamma_curve(1.8)] + [cam.random_curve(rng) for _ in range(25)]
    for c in curves:
        y = c(x)
        assert np.all(np.diff(y) >= -1e-7), c
        assert y[0] == pytest.approx(0.0, abs=1e-6) and y[-1] == pytest.approx(1.0, abs=1e-6), c
        assert np.all(c(np.array([2.0, -1.0], np.float32)) == c(np.array([1.0, 0.0], np.float32)))  # clipped


def test_srgb_encode_decode_round_trip_and_match_the_engine():
    from hdrlift.engine.colour_maths import srgb_to_linear

    x = np.linspace(0.0, 1.0, 1001, dtype=np.float32)
    np.testing.assert_allclose(cam.srgb_decode(cam.srgb_encode(x)), x, atol=2e-6)
    np.testing.assert_allclose(cam.srgb_decode(x), srgb_to_linear(torch.from_numpy(x)).numpy(), atol=1e-6)
    # IEC 61966-2-1 fixed points
    assert float(cam.srgb_encode(np.float32(0.0031308))) == pytest.approx(0.04045, abs=1e-5)
    assert float(cam.srgb_encode(np.float32(0.18))) == pytest.approx(0.4614, abs=1e-3)


@pytest.mark.parametrize("bits", [8, 10])
def test_quantise_levels(bits):
    levels = 2 ** bits - 1
    x = np.random.default_rng(0).random(100_000).astype(np.float32)
    q = cam.quantise(x, bits)
    codes = q * levels
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-3)  # on the grid of 2^bits levels
    assert len(np.unique(q)) <= levels + 1
    assert len(np.unique(q)) > 0.9 * (levels + 1)  # and all of them used by uniform input
    assert np.max(np.abs(q - x)) <= 0.5 / levels + 1e-6
    assert cam.quantise(np.array([-0.2, 1.7], np.float32), bits).tolist() == [0.0, 1.0]


def test_poisson_gaussian_variance_scales_with_signal():
    gain, read = 1e-2, 2e-3
    rng = np.random.default_rng(1)
    variances = []
    for level in (0.05, 0.2, 0.8):
        lin = np.full((400, 500), level, np.float32)
        noisy = cam.poisson_gaussian(lin, rng, gain, read)
        var = float(np.var(noisy - lin))
        assert var == pytest.approx(gain * level + read ** 2, rel=0.03)
        assert abs(float(np.mean(noisy - lin))) < 3 * np.sqrt(var / lin.size) + 1e-6  # zero mean
        variances.append(var)
    assert variances[0] < variances[1] < variances[2]
    lin = np.full((4, 4), 0.5, np.float32)
    assert cam.poisson_gaussian(lin, rng, 0.0, 0.0) is lin  # no noise asked: untouched


def test_jpeg_round_trip_changes_the_image_but_stays_close():
    code = cam.quantise(smooth_code(), 8)
    errs = {}
    for q in (30, 95):
        out = cam.jpeg_roundtrip(code, q)
        assert out.shape == code.shape and out.dtype == np.float32
        errs[q] = float(np.mean(np.abs(out - code)))
        assert float(np.max(np.abs(out - code))) > 0.0
    assert errs[95] < 0.01
    assert errs[30] < 0.05
    assert errs[30] > errs[95]


def test_h264_round_trip_changes_the_image_but_stays_close_and_keeps_odd_sizes():
    code = cam.quantise(smooth_code(47, 65), 8)
    out = cam.h264_roundtrip(code, 18)
    assert out.shape == code.shape and out.dtype == np.float32
    diff = np.abs(out - code)
    assert float(diff.max()) > 0.0
    assert float(diff[:46, :64].mean()) < 0.03
    np.testing.assert_array_equal(out[46], code[46])  # the odd last row is passed through
    np.testing.assert_array_equal(out[:, 64], code[:, 64])


def test_camera_pipeline_with_noise_and_compression_is_deterministic_and_bounded():
    hdr = lognormal_hdr(48, 48, seed=5)
    c = cam.Camera(clip_fraction=0.05, bits=8, noise_gain=1e-3, read_sigma=1e-3, jpeg_quality=90)
    a = c(hdr, np.random.default_rng(3))
    b = c(hdr, np.random.default_rng(3))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].min() >= 0.0 and a[0].max() <= 1.0
    with pytest.raises(ValueError):
        c(hdr[..., 0])


def test_random_camera_draws_within_the_configured_ranges():
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = cam.random_camera(rng, clip_range=(0.02, 0.08), curves="random", noise=True, compression=True)
        assert 0.02 <= c.clip_fraction <= 0.08
        assert c.curve.name == "random" and 1.6 <= c.curve.gamma <= 2.8
        assert 0.0 <= c.noise_gain <= 1e-3 and 0.0 <= c.read_sigma <= 2e-3
        assert c.jpeg_quality is None or 70 <= c.jpeg_quality <= 95
    plain = cam.random_camera(rng)
    assert plain.curve is cam.SRGB and plain.noise_gain == 0.0 and plain.jpeg_quality is None
