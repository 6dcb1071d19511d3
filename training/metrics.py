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
"""

from __future__ import annotations

import numpy as np

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
MU = 5000.0
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
    bounded = np.tanh(np.maximum(x, 0.0) / norm)
    return np.log1p(mu * bounded) / np.log1p(mu)


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
    a = pu21_encode(np.maximum(pred, 0.0) @ LUMA * white_nits)
    b = pu21_encode(np.maximum(ref, 0.0) @ LUMA * white_nits)
    peak = float(pu21_encode(np.array(PU21_L_MAX)))
    return _psnr(a, b, peak)


def clipped_mask(ldr: np.ndarray, threshold: float = CLIPPED_CODE) -> np.ndarray:
    return ldr.max(axis=-1) >= threshold


def clipped_error_stops(pred: np.ndarray, ref: np.ndarray, ldr: np.ndarray) -> float:
    """Mean |log2(Y_pred / Y_ref)| over clipped pixels (NaN if nothing is clipped)."""
    m = clipped_mask(ldr)
    if not m.any():
        return float("nan")
    yp = np.maximum(pred[m] @ LUMA, 1e-6)
    yr = np.maximum(ref[m] @ LUMA, 1e-6)
    return float(np.mean(np.abs(np.log2(yp / yr))))


def align_scale(pred: np.ndarray, ref: np.ndarray, ldr: np.ndarray, lo: float = 0.05, hi: float = 0.9) -> float:
    """Geometric-mean scale mapping ``pred`` to ``ref`` over well-exposed pixels."""
    m = (ldr.max(axis=-1) < hi) & (ldr.min(axis=-1) > lo)
    if m.sum() < 16:
        return 1.0
    yp = np.maximum(pred[m] @ LUMA, 1e-6)
    yr = np.maximum(ref[m] @ LUMA, 1e-6)
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
        "scale": s,
    }


__all__ = ["psnr_mu", "psnr_l", "pu21_psnr", "pu21_encode", "clipped_error_stops", "align_scale", "score",
           "mu_tonemap", "clipped_mask"]
