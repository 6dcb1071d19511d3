"""Classical merges of an exposure bracket (numpy, no torch), used by ``hdr-merge``.

* :func:`debevec_curve` / :func:`debevec_merge` — Debevec & Malik 1997 (*Recovering HDR radiance
  maps from photographs*; Eq. 1 of Kim et al. 2021): least squares for ``g = ln f^-1`` with the
  triangle weight and second-difference smoothing, ``g(128) = 0``, solved as one full linear system
  (``numpy.linalg.lstsq``, unknowns ``g`` and ``ln E_i``) on a ``samples x samples`` pixel grid; merge
  by their Eq. 6. Shares its conventions with ``kim.DifferentiableHDRSynthesis``, which must
  reproduce it (tested).
* :func:`robertson_curve` / :func:`robertson_merge` — Robertson, Borman & Stevenson 1999/2003
  (*Estimation-theoretic approach to dynamic range enhancement using multiple exposures*):
  alternate the maximum-likelihood radiance ``E_i = sum_j w t_j I(z_ij) / sum_j w t_j^2`` and the
  response update ``I(m) = mean_{z_ij = m} t_j E_i`` (Gauss-Seidel, as Kim et al. 2021 §2.1
  describe it), Gaussian-like weight ``exp(-4 (z - 127.5)^2 / 127.5^2)`` (zero at 0 and 255),
  ``I(128) = 1``; levels never observed are interpolated (a ramp to 0 below the lowest). Started
  from a 2.2 gamma curve (a linear start needs hundreds of iterations); 50 iterations. Without a
  smoothness prior it is more sensitive to JPEG noise than Debevec's (see
  docs/models_exposure_stacks.md).

Both return the inverse response as a *linear* curve ``(C, levels)`` (``exp(g)`` for Debevec).
:func:`scale_to_reference` then brings the radiance to the project's output convention (the
reference's well-exposed pixels equal the inverse sRGB curve of their code values).
"""

from __future__ import annotations

import numpy as np

from hdrlift.engine.colour_maths import srgb_to_linear
from hdrlift.engine.errors import InputError

LEVELS = 256
SAMPLES = 20
SMOOTHNESS = 20.0


def _as_levels(stack, levels: int = LEVELS) -> np.ndarray:
    """``(J, H, W, C)`` integer levels from uint8/uint16 or float code-value arrays."""
    arr = np.asarray(stack)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise InputError(f"an exposure stack must be J x H x W x C, got shape {arr.shape}")
    if arr.dtype == np.uint8 and levels == 256:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.integer):
        top = float(np.iinfo(arr.dtype).max)
        arr = arr.astype(np.float64) / top
    return np.clip(np.rint(np.asarray(arr, np.float64) * (levels - 1)), 0, levels - 1).astype(np.int64)


def _grid(n: int, samples: int) -> np.ndarray:
    k = np.arange(samples, dtype=np.int64)
    return ((2 * k + 1) * n) // (2 * samples)  # same pixels as camera_curve.grid_indices


def _hat(z: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    zmax = float(levels - 1)
    return np.clip(np.minimum(z, zmax - z) / (zmax / 2.0), 0.0, None)


def _log_times(times, count: int) -> np.ndarray:
    t = np.asarray(times, np.float64).reshape(-1)
    if t.size != count:
        raise InputError(f"{count} images but {t.size} exposure times")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise InputError(f"exposure times must be positive, got {t.tolist()}")
    return np.log(t)


def debevec_curve(stack, times, samples: int = SAMPLES, smoothness: float = SMOOTHNESS,
                  levels: int = LEVELS) -> np.ndarray:
    """Debevec & Malik 1997: ``g = ln f^-1`` per channel, ``(C, levels)``, ``g(levels // 2) = 0``.

    Minimises ``sum_ij w_ij^2 (g(Z_ij) - ln E_i - ln t_j)^2 + lambda^2 sum_z w(z)^2 g''(z)^2`` over the
    pixels of a ``samples x samples`` grid, as one ``lstsq`` over the unknowns ``[g, ln E]``."""
    z = _as_levels(stack, levels)
    j, h, w, c = z.shape
    lt = _log_times(times, j)
    zs = z[:, _grid(h, samples)][:, :, _grid(w, samples)].reshape(j, -1, c)  # (J, P, C)
    p = zs.shape[1]
    mid = levels // 2
    curves = np.empty((c, levels))
    zz = np.arange(1, levels - 1)
    ws = _hat(zz.astype(np.float64), levels) * smoothness
    for ch in range(c):
        zc = zs[:, :, ch]  # (J, P)
        rows = j * p + 1 + (levels - 2)
        a = np.zeros((rows, levels + p))
        b = np.zeros(rows)
        wij = _hat(zc.astype(np.float64), levels)
        r = np.arange(j * p)
        jj, ii = np.divmod(r, p)
        a[r, zc[jj, ii]] = wij[jj, ii]
        a[r, levels + ii] = -wij[jj, ii]
        b[r] = wij[jj, ii] * lt[jj]
        a[j * p, mid] = 1.0
        rs = j * p + 1 + np.arange(levels - 2)
        a[rs, zz - 1] = ws
        a[rs, zz] = -2.0 * ws
        a[rs, zz + 1] = ws
        sol = np.linalg.lstsq(a, b, rcond=None)[0]
        curves[ch] = sol[:levels]
    return curves


def _bounded_merge(vals: np.ndarray, w: np.ndarray, z: np.ndarray, levels: int) -> np.ndarray:
    den = w.sum(axis=0)
    num = (w * vals).sum(axis=0)
    merged = num / np.maximum(den, 1e-6)
    bright = z.mean(axis=0) > (levels - 1) / 2.0
    bound = np.where(bright, vals.max(axis=0), vals.min(axis=0))
    return np.where(den > 1e-6, merged, bound)


def debevec_merge(stack, times, log_curve: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """Debevec & Malik Eq. 6: ``ln E = sum_j w(Z_ij) (g(Z_ij) - ln t_j) / sum_j w(Z_ij)`` per channel;
    pixels with zero weight in every image take the ``max_j`` (clipped) or ``min_j`` (black) of
    ``g(Z_ij) - ln t_j``. Returns ``E`` ``(H, W, C)`` float32."""
    z = _as_levels(stack, levels)
    lt = _log_times(times, z.shape[0])
    g = np.asarray(log_curve, np.float64)
    vals = np.stack([g[ch][z[..., ch]] for ch in range(z.shape[-1])], axis=-1) - lt[:, None, None, None]
    ln_e = _bounded_merge(vals, _hat(z.astype(np.float64), levels), z, levels)
    return np.exp(ln_e).astype(np.float32)


def _robertson_weight(z: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    half = (levels - 1) / 2.0
    w = np.exp(-4.0 * (z - half) ** 2 / half ** 2)
    return np.where((z <= 0) | (z >= levels - 1), 0.0, w)


def _fill_unseen(curve: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Levels no pixel fell on: linear interpolation between observed levels; below the lowest,
    a ramp to zero at level 0 (``I(0) = 0``: no light, no signal); above the highest, the slope of
    the last observed segment."""
    lv = np.arange(curve.size, dtype=np.float64)
    obs = np.flatnonzero(seen)
    out = np.interp(lv, obs, curve[obs])
    lo, hi = obs[0], obs[-1]
    if lo > 0:
        out[:lo] = curve[lo] * lv[:lo] / lo
    if hi < curve.size - 1:
        prev = obs[-2]
        slope = (curve[hi] - curve[prev]) / (hi - prev)
        out[hi + 1:] = curve[hi] + max(slope, 0.0) * (lv[hi + 1:] - hi)
    return out


def robertson_curve(stack, times, iterations: int = 50, max_side: int = 256, levels: int = LEVELS,
                    init_gamma: float = 2.2, tol: float = 1e-7) -> np.ndarray:
    """Robertson et al.: linear inverse response ``I`` per channel ``(C, levels)``, ``I(levels // 2) = 1``,
    estimated on the pixels of a grid of at most ``max_side x max_side``."""
    z = _as_levels(stack, levels)
    j, h, w, c = z.shape
    t = np.exp(_log_times(times, j))
    z = z[:, _grid(h, min(h, max_side))][:, :, _grid(w, min(w, max_side))].reshape(j, -1, c)
    mid = levels // 2
    curves = np.empty((c, levels))
    for ch in range(c):
        zc = z[:, :, ch]  # (J, P)
        wz = _robertson_weight(zc.astype(np.float64), levels)
        curve = (np.arange(levels, dtype=np.float64) / mid) ** init_gamma
        tj = t[:, None]
        counts = np.bincount(zc.ravel(), minlength=levels).astype(np.float64)
        seen = counts > 0
        for _ in range(iterations):
            e = (wz * tj * curve[zc]).sum(0) / np.maximum((wz * tj * tj).sum(0), 1e-30)
            sums = np.bincount(zc.ravel(), weights=(tj * e[None, :]).ravel(), minlength=levels)
            new = np.where(seen, sums / np.maximum(counts, 1.0), 0.0)
            new = _fill_unseen(new, seen) if seen.sum() > 1 else curve
            if new[mid] > 0:
                ref = new[mid]
            else:  # pin the curve where it is positive around the middle code value
                pos = np.flatnonzero(new > 0)
                ref = np.interp(mid, pos, new[pos]) if pos.size else 1.0
            new = new / max(ref, 1e-30)
            done = np.max(np.abs(new - curve)) < tol
            curve = new
            if done:
                break
        curves[ch] = curve
    return curves


def robertson_merge(stack, times, curve: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """Maximum-likelihood radiance ``E = sum_j w t_j I(z) / sum_j w t_j^2`` ``(H, W, C)`` float32;
    pixels with no weight take the clipped/black bound ``I(z) / t_j`` like :func:`debevec_merge`."""
    z = _as_levels(stack, levels)
    t = np.exp(_log_times(times, z.shape[0]))[:, None, None, None]
    cv = np.asarray(curve, np.float64)
    val = np.stack([cv[ch][z[..., ch]] for ch in range(z.shape[-1])], axis=-1)
    w = _robertson_weight(z.astype(np.float64), levels)
    den = (w * t * t).sum(0)
    e = (w * t * val).sum(0) / np.maximum(den, 1e-30)
    ratio = val / t
    bright = z.mean(axis=0) > (levels - 1) / 2.0
    bound = np.where(bright, ratio.max(0), ratio.min(0))
    return np.where(den > 1e-12, e, bound).astype(np.float32)


def scale_to_reference(hdr: np.ndarray, ref_code: np.ndarray) -> np.ndarray:
    """Scale ``hdr`` ``(H, W, C)`` per channel so that the pixels well exposed in the reference image
    (code values ``ref_code`` in [0, 1]) equal the inverse sRGB curve of their code values (our output
    convention): ``s_c = exp(sum w (ln f^-1(ref) - ln E) / sum w)``, ``w`` the triangle weight."""
    ref = np.clip(np.asarray(ref_code, np.float64), 0.0, 1.0)
    lin = srgb_to_linear(ref)
    w = _hat(ref * (LEVELS - 1))
    d = np.log(np.maximum(lin, 1e-6)) - np.log(np.maximum(hdr.astype(np.float64), 1e-30))
    s = (w * d).sum(axis=(0, 1)) / np.maximum(w.sum(axis=(0, 1)), 1e-6)
    return (hdr * np.exp(s)[None, None, :]).astype(np.float32)


def merge_classical(stack, times, method: str = "debevec", curve_stack=None, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Merge a bracket ``(J, H, W, C)`` with ``method`` ``"debevec"`` or ``"robertson"``; returns
    ``(radiance (H, W, C) float32, linear inverse response (C, levels))``. The curve is estimated on
    ``curve_stack`` when given (e.g. the part of an aligned bracket every frame covers)."""
    est = stack if curve_stack is None else curve_stack
    if method == "debevec":
        g = debevec_curve(est, times, **kwargs)
        return debevec_merge(stack, times, g), np.exp(g)
    if method == "robertson":
        cv = robertson_curve(est, times, **kwargs)
        return robertson_merge(stack, times, cv), cv
    raise InputError(f"unknown classical merge {method!r}; choose debevec or robertson")


__all__ = ["debevec_curve", "debevec_merge", "robertson_curve", "robertson_merge", "scale_to_reference",
           "merge_classical", "LEVELS", "SAMPLES", "SMOOTHNESS"]
