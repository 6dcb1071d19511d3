"""HDR quality metrics used by ``hdrlift-eval`` and the trainer's validation.

All functions take linear float arrays ``H x W x 3`` (prediction, reference) in the same units
(the engine's output units: 1.0 = display white of the LDR input).

* :func:`psnr_mu` — PSNR after the mu-law tone curve, as the NTIRE 2021 HDR challenge defines
  it: both images divided by the reference's 99th percentile, bounded with ``tanh``, then
  ``log(1 + mu x) / log(1 + mu)`` with ``mu = 5000``; peak 1.
* :func:`psnr_l` — PSNR on linear values divided by the reference maximum; peak 1.
* :func:`pu21_psnr` — PSNR in the PU21 perceptually uniform encoding (Mantiuk & Azimi 2021,
  ``banding_glare`` parameters). Absolute units: 1.0 (display white) is mapped to
  :data:`DISPLAY_WHITE_NITS` = 100 cd/m^2 and luminance is clamped to [0.005, 10000] cd/m^2;
  the peak is the encoding of 10000 cd/m^2.
* :func:`clipped_error_stops` — mean absolute log2 error of luminance inside the clipped
  region (pixels whose brightest LDR code value is >= 0.99): how many stops the recovered
  highlights are off.
* :func:`align_scale` — the least-squares scale, in the log domain, that best maps the
  prediction onto the reference over well-exposed pixels (evaluation aligns scale before
  scoring, since single-image reconstruction cannot know absolute exposure).
* :func:`ssim` — SSIM (Wang et al. 2004), 11 x 11 Gaussian window, sigma 1.5, per channel.
* :func:`reinhard_scores` — Moriwaki Table 1: PSNR/SSIM after Reinhard et al. 2002's global
  operator (parameters from the reference, applied to both images), sRGB-encoded.
* :func:`range_wise` — Moriwaki Tables 2-3: PSNR/SSIM of the 8-bit sRGB pictures of both images
  re-exposed at EV -4 ... +1 relative to the input.
* :func:`full_score` — all of the above for one image (what ``hdrlift-eval`` reports).
"""

from __future__ import annotations

import math

import numpy as np

from hdrlift.engine.colour_maths import MU, linear_to_srgb, luminance, tanh_mu_law

DISPLAY_WHITE_NITS = 100.0
PU21_BANDING_GLARE = (0.353487901, 0.3734658629, 8.277049286e-05, 0.9062562627, 0.09150303166,
                      0.9099517204, 596.3148142)
PU21_L_MIN, PU21_L_MAX = 0.005, 10000.0
CLIPPED_CODE = 0.99


def _psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse <= 0:
        return float("inf")
    return 10.0 * np.log10(peak * peak / mse)


def mu_tonemap(x: np.ndarray, norm: float, mu: float = MU) -> np.ndarray:
    return tanh_mu_law(x, norm, mu)


def psnr_mu(pred: np.ndarray, ref: np.ndarray, mu: float = MU) -> float:
    norm = float(np.percentile(ref, 99)) or 1.0
    return _psnr(mu_tonemap(pred, norm, mu), mu_tonemap(ref, norm, mu), 1.0)


def psnr_l(pred: np.ndarray, ref: np.ndarray) -> float:
    m = float(ref.max()) or 1.0
    return _psnr(np.clip(pred / m, 0, None), ref / m, 1.0)


def pu21_encode(nits: np.ndarray) -> np.ndarray:
    p1, p2, p3, p4, p5, p6, p7 = PU21_BANDING_GLARE
    y = np.clip(nits, PU21_L_MIN, PU21_L_MAX).astype(np.float64)
    yp = np.power(y, p4)
    return p7 * (np.power((p1 + p2 * yp) / (1.0 + p3 * yp), p5) - p6)


def pu21_psnr(pred: np.ndarray, ref: np.ndarray, white_nits: float = DISPLAY_WHITE_NITS) -> float:
    a = pu21_encode(luminance(np.maximum(pred, 0.0)) * white_nits)
    b = pu21_encode(luminance(np.maximum(ref, 0.0)) * white_nits)
    peak = float(pu21_encode(np.array(PU21_L_MAX)))
    return _psnr(a, b, peak)


def clipped_mask(ldr: np.ndarray, threshold: float = CLIPPED_CODE) -> np.ndarray:
    return ldr.max(axis=-1) >= threshold


def clipped_error_stops(pred: np.ndarray, ref: np.ndarray, ldr: np.ndarray) -> float:
    """Mean |log2(Y_pred / Y_ref)| over clipped pixels (NaN if nothing is clipped)."""
    m = clipped_mask(ldr)
    if not m.any():
        return float("nan")
    yp = np.maximum(luminance(pred[m]), 1e-6)
    yr = np.maximum(luminance(ref[m]), 1e-6)
    return float(np.mean(np.abs(np.log2(yp / yr))))


GRID_PERIOD = 8  # the stride of four 2x up-samplings: transposed-conv grids repeat at 2, 4 or 8 px


def _box_sum(x: np.ndarray, size: int) -> np.ndarray:
    """Sum over the ``size`` x ``size`` window starting at each pixel (edge-padded, same shape)."""
    h, w = x.shape
    p = np.pad(x.astype(np.float64), ((0, size), (0, size)), mode="edge")
    c = np.zeros((h + size + 1, w + size + 1))
    c[1:, 1:] = p.cumsum(0).cumsum(1)
    return c[size:size + h, size:size + w] - c[:h, size:size + w] - c[size:size + h, :w] + c[:h, :w]


def _phase_rms(hp: np.ndarray, inside: np.ndarray, period: int) -> float:
    """RMS over the ``period`` x ``period`` pixel phases of ``hp`` averaged per phase on ``inside``."""
    h, w = hp.shape
    phase = (np.arange(h)[:, None] % period) * period + (np.arange(w)[None, :] % period)
    n = period * period
    cnt = np.bincount(phase[inside], minlength=n)
    if cnt.min() < 4:
        return float("nan")
    avg = np.bincount(phase[inside], weights=hp[inside], minlength=n) / cnt
    return float(np.sqrt(np.mean((avg - avg.mean()) ** 2)))


def grid_artefact_stops(pred: np.ndarray, ldr: np.ndarray, period: int = GRID_PERIOD) -> float:
    """Strength of a fixed-pattern grid inside the clipped region, in stops (0 = none; lower is better).

    Up-sampling by transposed convolution can draw a checkerboard with the network's stride in
    flat, clipped areas (a sun, a blown window) where nothing else is drawn; PSNR and the clipped
    error barely see it, a compositor does. Measure, on log2 luminance inside the clipped region:

    1. high-pass: subtract the mean over a window exactly one period wide (which holds no
       component of period 2, 4 or 8, so the residual keeps the whole grid);
    2. average the residual separately for each of the ``period`` x ``period`` pixel phases and
       take the RMS over phases. A grid locked to the pixel lattice survives this average; image
       content, which has no preferred phase, shrinks towards a floor set by the region's size;
    3. estimate that floor with the same statistic at the neighbouring periods ``period - 1`` and
       ``period + 1`` (which no stride-8 network prefers) and return the excess over the larger,
       clamped at 0.

    Only pixels whose ``period + 1`` window lies wholly inside the clipped region count. NaN where
    fewer than 4 of them fall on some phase (a small clipped region). Natural HDR references score
    0.000-0.005 here; see docs/models.md for the figures.
    """
    m = clipped_mask(ldr)
    size = period + 1
    inside = _box_sum(m.astype(np.float64), size) >= size * size - 0.5
    y = np.log2(np.maximum(luminance(pred), 1e-6).astype(np.float64))
    rms = []
    for p in (period, period - 1, period + 1):
        hp = y - _box_sum(y, p) / (p * p)
        rms.append(_phase_rms(hp, inside, p))
    if not all(math.isfinite(r) for r in rms):
        return float("nan")
    return max(0.0, rms[0] - max(rms[1], rms[2]))


def align_scale(pred: np.ndarray, ref: np.ndarray, ldr: np.ndarray, lo: float = 0.05, hi: float = 0.9) -> float:
    """Geometric-mean scale mapping ``pred`` to ``ref`` over well-exposed pixels."""
    m = (ldr.max(axis=-1) < hi) & (ldr.min(axis=-1) > lo)
    if m.sum() < 16:
        return 1.0
    yp = np.maximum(luminance(pred[m]), 1e-6)
    yr = np.maximum(luminance(ref[m]), 1e-6)
    return float(np.exp(np.mean(np.log(yr) - np.log(yp))))


def score(pred: np.ndarray, ref: np.ndarray, ldr: np.ndarray, align: bool = True) -> dict[str, float]:
    """Every scalar metric for one image (after optional scale alignment)."""
    s = align_scale(pred, ref, ldr) if align else 1.0
    p = pred * np.float32(s)
    return {
        "psnr_mu": psnr_mu(p, ref),
        "psnr_l": psnr_l(p, ref),
        "pu21_psnr": pu21_psnr(p, ref),
        "clipped_stops": clipped_error_stops(p, ref, ldr),
        "grid_stops": grid_artefact_stops(p, ldr),
        "scale": s,
    }


# ------------------------------------------------------------------------------------------
# SSIM, Reinhard tone mapping (Moriwaki Table 1), exposure stacks (Moriwaki Tables 2-3)
# ------------------------------------------------------------------------------------------

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # 11 x 11 window
SSIM_K1, SSIM_K2 = 0.01, 0.03
REINHARD_KEY = 0.18
STACK_EVS = (-4.0, -3.0, -2.0, -1.0, 0.0, 1.0)


def _gauss_filter_valid(x: np.ndarray, sigma: float = SSIM_SIGMA, radius: int = SSIM_RADIUS) -> np.ndarray:
    """Separable Gaussian filter over the first two axes, 'valid' region only (no padding)."""
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).astype(x.dtype)
    n = 2 * radius + 1
    h, w = x.shape[:2]
    rows = sum(k[i] * x[i:h - n + 1 + i] for i in range(n))
    return sum(k[i] * rows[:, i:w - n + 1 + i] for i in range(n))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity (Wang, Bovik, Sheikh & Simoncelli 2004) of two images in the same
    display units: 11 x 11 Gaussian window (sigma 1.5), ``K1 = 0.01``, ``K2 = 0.03``, statistics
    from the valid region only, SSIM map averaged over pixels and then over the channels.
    Images smaller than the window are compared with one global window (means/variances of the
    whole image)."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    if min(a.shape[:2]) < 2 * SSIM_RADIUS + 1:
        def f(x):
            return x.mean(axis=(0, 1), keepdims=True)
    else:
        f = _gauss_filter_valid
    mu_a, mu_b = f(a), f(b)
    saa = f(a * a) - mu_a * mu_a
    sbb = f(b * b) - mu_b * mu_b
    sab = f(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (saa + sbb + c2)
    return float(np.mean(num.astype(np.float64) / den))


def _srgb_encode(x: np.ndarray) -> np.ndarray:
    return linear_to_srgb(np.clip(x, 0.0, 1.0))


def reinhard_params(ref: np.ndarray, key: float = REINHARD_KEY, delta: float = 1e-6) -> tuple[float, float]:
    """``(log_average, white)`` of Reinhard et al. 2002's global operator from the reference:
    ``Lbar = exp(mean(log(delta + L)))`` and ``L_white = max(L_m)``, ``L_m = key L / Lbar``."""
    lum = luminance(np.maximum(ref, 0.0))
    lbar = float(np.exp(np.mean(np.log(delta + lum))))
    white = float(np.max(key * lum / lbar))
    return lbar, max(white, 1e-6)


def reinhard(hdr: np.ndarray, lbar: float, white: float, key: float = REINHARD_KEY) -> np.ndarray:
    """Reinhard et al. 2002, Eq. 2 and 4: ``L_m = key L / Lbar``, ``L_d = L_m (1 + L_m / L_white^2) / (1 + L_m)``;
    colour by the ratio ``C_d = C L_d / L``, clipped to [0, 1] and sRGB-encoded (display code values)."""
    hdr = np.maximum(np.asarray(hdr, np.float64), 0.0)
    lum = luminance(hdr)
    lm = key * lum / lbar
    ld = lm * (1.0 + lm / (white * white)) / (1.0 + lm)
    ratio = np.where(lum > 1e-12, ld / np.maximum(lum, 1e-12), 0.0)
    return _srgb_encode(hdr * ratio[..., None])


def reinhard_scores(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Moriwaki Table 1 (§4): PSNR (peak 1) and SSIM of the Reinhard-tone-mapped images.
    Both are tone mapped with the parameters of the *reference* (one display curve for both), so
    a difference in HDR values shows up as a difference in the display image."""
    lbar, white = reinhard_params(ref)
    a = reinhard(pred, lbar, white)
    b = reinhard(ref, lbar, white)
    return {"reinhard_psnr": _psnr(a, b, 1.0), "reinhard_ssim": ssim(a, b)}


def expose(hdr: np.ndarray, ev: float, bits: int | None = 8) -> np.ndarray:
    """The LDR picture of ``hdr`` at ``ev`` stops relative to the input's exposure (1.0 = the input's
    display white): ``srgb(clip(H 2^ev, 0, 1))``, quantised to ``bits`` (None: not quantised)."""
    code = _srgb_encode(np.asarray(hdr, np.float64) * (2.0 ** ev))
    if bits:
        levels = float(2 ** bits - 1)
        code = np.round(code * levels) / levels
    return code


def range_wise(pred: np.ndarray, ref: np.ndarray, evs=STACK_EVS, bits: int | None = 8) -> dict[str, float]:
    """Moriwaki's range-wise protocol (§4, Tables 2-3): re-expose reconstruction and
    reference at every EV of ``evs``, clip, sRGB-encode and quantise (8 bits), then PSNR (peak 1)
    and SSIM per EV. Keys ``stack_psnr@<ev>``, ``stack_ssim@<ev>``; ``stack_psnr`` is the PSNR of
    the MSE averaged over the EVs and ``stack_ssim`` the mean SSIM. The default EVs follow the paper's six 1-stop levels with the
    input at the second brightest (2^-3 ... 2^-8 with the input at 2^-7: EV -4 ... +1)."""
    out: dict[str, float] = {}
    mses, ss = [], []
    for ev in evs:
        a, b = expose(pred, ev, bits), expose(ref, ev, bits)
        mse = float(np.mean((a - b) ** 2))
        s = ssim(a, b)
        out[f"stack_psnr@{ev:+g}"] = 10.0 * np.log10(1.0 / mse) if mse > 0 else float("inf")
        out[f"stack_ssim@{ev:+g}"] = s
        mses.append(mse)
        ss.append(s)
    # The summary PSNR comes from the MSE averaged over the stack, not from averaging per-EV PSNRs:
    # a model that reproduces one exposure bit for bit (the input's own, for plain inverse CRF)
    # would otherwise score infinity, or be silently dropped from a mean of finite values.
    mean_mse = float(np.mean(mses))
    out["stack_psnr"] = 10.0 * np.log10(1.0 / mean_mse) if mean_mse > 0 else float("inf")
    out["stack_ssim"] = float(np.mean(ss))
    return out


def full_score(pred: np.ndarray, ref: np.ndarray, ldr: np.ndarray, align: bool = True, evs=STACK_EVS) -> dict[str, float]:
    """:func:`score` plus :func:`reinhard_scores` and :func:`range_wise`, all on the scale-aligned
    prediction (the evaluation protocol of ``hdrlift-eval``)."""
    out = score(pred, ref, ldr, align)
    p = pred * np.float32(out["scale"])
    out.update(reinhard_scores(p, ref))
    out.update(range_wise(p, ref, evs))
    return out


__all__ = ["psnr_mu", "psnr_l", "pu21_psnr", "pu21_encode", "clipped_error_stops", "align_scale", "score",
           "mu_tonemap", "clipped_mask", "ssim", "reinhard", "reinhard_params", "reinhard_scores", "expose",
           "range_wise", "full_score", "STACK_EVS"]
