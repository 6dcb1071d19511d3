"""Training data of Santos et al. 2020, "Single image HDR reconstruction using a CNN with masked
features and perceptual loss": patch sampling (§3.4, Algorithm 1) and the masks of the
inpainting pre-training (§3.3, §4 "Dataset").

Patch sampling (§3.4, Algorithm 1 ``PatchMetric(H, M)``)
--------------------------------------------------------
"We propose to first decompose the HDR image into base and detail layers using a bilateral
filter [Durand and Dorsey 2002]. We use the average of the gradients (Sobel operator) of the detail
layer in the saturated areas as our metric [...] patches with a mean gradient above a certain
threshold (0.85 in our implementation) [are] textured". Algorithm 1, line by line
(:func:`patch_metric`):

1. ``I = RgbToGray(H)`` — the paper does not give the weights; we use the ITU-R BT.601 weights
   ``0.299, 0.587, 0.114`` of the common ``rgb2gray`` functions (OpenCV, MATLAB);
2. ``L = log(I + 1)``;
3. ``B = bilateralFilter(L, sigma_c = 100, sigma_s = 10)`` (base layer) — computed with Durand &
   Dorsey's piecewise-linear acceleration (their §5.1: the range axis sampled at a few intensity
   levels, one Gaussian blur per level, linear interpolation between levels; :func:`bilateral_filter`),
   with levels every ``sigma_c / 2`` (at least two) and the spatial Gaussian truncated at
   ``3 sigma_s``; neighbours outside the patch do not count (normalised convolution).
   :func:`bilateral_filter_exact` is the brute-force filter it is tested against;
4. ``D = L - B`` (detail layer);
5. ``G = |G_x| + |G_y|``, ``G_x``, ``G_y`` the 3 x 3 Sobel derivatives of ``D`` (unnormalised, as
   OpenCV's ``Sobel(ksize=3)``; border pixels replicated);
6. ``return mean(G ⊙ (1 - M))`` — ``M`` the soft input mask of the LDR patch (``beta`` of §3 Fig. 2,
   ``alpha = 0.96``, per channel), the product broadcast over the three channels and averaged over
   all pixels and channels, as printed. (The prose says "the average of the gradients [...] in the
   saturated areas"; ``region="saturated"`` divides by the mean of ``1 - M`` instead.)

``H`` is the reference in the engine's output units (1.0 = display white of the LDR patch), the
units of Santos' Eq. 1 and of our :class:`hdrlift.training.data.PatchDataset`.

The paper extracts 250 random patches per image, keeps those above the threshold (plus a subset
of the others), and discards patches with no saturated content (§4 "Dataset"). On the fly,
:func:`select_patch` does the same per training sample: it draws up to ``tries`` candidates, returns
the first textured one (metric >= threshold), else the candidate with the largest metric (a patch
without saturated pixels scores 0 and loses to any patch with some). With our smaller patches
(128 px instead of 512) and clip fractions (1-12 %) the printed mean over the whole patch rarely
reaches 0.85, so in practice the sampler returns the most textured of ``tries`` candidates.

Inpainting pre-training masks (§3.3, §4)
----------------------------------------
"We use the method of Liu et al. [2018] to generate masks of random streaks and holes of arbitrary
shapes and sizes"; "we still use our feature masking mechanism for pre-training, but the input
masks are binary". Liu et al.'s masks come from occlusion estimates between video frames (not
available here), so :func:`inpainting_mask` draws them procedurally (our generator): *streaks* —
random-walk polylines 1-4 % of the patch side thick — and *holes* — clumps of large discs 4-9 %
of the side in radius, alternated until the requested fraction of pixels is covered (the last
disc may overshoot by at most its own area). Liu et al. test on hole-to-image ratios of 1-60 %,
our default coverage range.

:func:`fill_holes` sets the masked pixels to display white (1.0 in every channel): there the Santos
input mask ``beta(1) = 0``, so the network's own feature masking sees a binary hole, exactly as
in the paper's pre-training, and for any other network a hole looks like a clipped region. The
pre-training target is the clipped linear scene ``min(H, 1)`` (the LDR content, without the
highlights): the task is to inpaint the holes, not to expand the range
(:class:`hdrlift.training.data.PatchDataset` with ``pretrain="inpainting"``).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

SIGMA_C = 100.0  # Algorithm 1: bilateral filter colour sigma
SIGMA_S = 10.0  # Algorithm 1: bilateral filter space sigma
THRESHOLD = 0.85  # §3.4: "a mean gradient above [...] 0.85" = textured
MASK_ALPHA = 0.96  # threshold of beta (§3, Fig. 2)
GRAY = (0.299, 0.587, 0.114)  # RgbToGray (BT.601, our choice)
DEFAULT_TRIES = 8
DEFAULT_COVERAGE = (0.01, 0.6)


# ------------------------------------------------------------------------------------------
# Algorithm 1: the patch metric
# ------------------------------------------------------------------------------------------

def soft_mask(ldr: np.ndarray, alpha: float = MASK_ALPHA) -> np.ndarray:
    """``M = beta(T)`` of §3 / Fig. 2 (numpy, per channel): 1 up to ``alpha``, 0 at display white."""
    return np.clip((1.0 - np.asarray(ldr, np.float32)) / (1.0 - alpha), 0.0, 1.0).astype(np.float32)


def _gauss_taps(sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(3.0 * sigma)))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _blur_zero(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D array with zero padding (the caller normalises)."""
    k = _gauss_taps(sigma)
    r = k.size // 2
    h, w = x.shape
    p = np.pad(x, ((0, 0), (r, r)))
    rows = sum(k[i] * p[:, i:i + w] for i in range(k.size))
    p = np.pad(rows, ((r, r), (0, 0)))
    return sum(k[i] * p[i:i + h, :] for i in range(k.size))


def bilateral_filter(img: np.ndarray, sigma_c: float = SIGMA_C, sigma_s: float = SIGMA_S,
                     spacing: float = 0.5) -> np.ndarray:
    """Bilateral filter of a 2-D array, Durand & Dorsey 2002's piecewise-linear acceleration.

    The range axis is sampled at levels ``i_j`` every ``spacing * sigma_c`` between the image's
    minimum and maximum (at least two); for each level ``J_j = G_s * (g_j L) / G_s * g_j`` with
    ``g_j = exp(-(L - i_j)^2 / (2 sigma_c^2))`` and ``G_s`` a Gaussian of ``sigma_s`` truncated at
    ``3 sigma_s`` (zero outside the image, so only pixels inside count); each pixel interpolates
    linearly between the two levels around its own value.
    """
    x = np.asarray(img, np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi - lo <= 1e-12:
        return x.astype(np.float32)
    n = max(2, int(math.ceil((hi - lo) / (spacing * sigma_c))) + 1)
    step = (hi - lo) / (n - 1)
    out = np.zeros_like(x)
    for j in range(n):
        level = lo + j * step
        g = np.exp(-0.5 * ((x - level) / sigma_c) ** 2)
        num = _blur_zero(g * x, sigma_s)
        den = _blur_zero(g, sigma_s)
        jj = num / np.maximum(den, 1e-300)
        wgt = np.clip(1.0 - np.abs(x - level) / step, 0.0, 1.0)
        out += wgt * jj
    return out.astype(np.float32)


def bilateral_filter_exact(img: np.ndarray, sigma_c: float = SIGMA_C, sigma_s: float = SIGMA_S) -> np.ndarray:
    """Brute-force bilateral filter (Tomasi & Manduchi 1998) with the window of
    :func:`bilateral_filter` (``3 sigma_s``, neighbours inside the image only). Slow: for tests."""
    x = np.asarray(img, np.float64)
    h, w = x.shape
    k = _gauss_taps(sigma_s)
    r = k.size // 2
    num = np.zeros_like(x)
    den = np.zeros_like(x)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if abs(dy) >= h or abs(dx) >= w:
                continue
            ys, yd = slice(max(0, dy), h + min(0, dy)), slice(max(0, -dy), h + min(0, -dy))
            xs, xd = slice(max(0, dx), w + min(0, dx)), slice(max(0, -dx), w + min(0, -dx))
            nb = x[ys, xs]
            wgt = k[dy + r] * k[dx + r] * np.exp(-0.5 * ((nb - x[yd, xd]) / sigma_c) ** 2)
            num[yd, xd] += wgt * nb
            den[yd, xd] += wgt
    return (num / den).astype(np.float32)


def sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3 x 3 Sobel derivatives ``(G_x, G_y)`` (unnormalised, OpenCV's ``ksize=3``), border replicated."""
    p = np.pad(np.asarray(img, np.float32), 1, mode="edge")
    h, w = img.shape
    s = lambda dy, dx: p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]  # noqa: E731
    gx = (s(-1, 1) + 2 * s(0, 1) + s(1, 1)) - (s(-1, -1) + 2 * s(0, -1) + s(1, -1))
    gy = (s(1, -1) + 2 * s(1, 0) + s(1, 1)) - (s(-1, -1) + 2 * s(-1, 0) + s(-1, 1))
    return gx, gy


def detail_layer(hdr: np.ndarray, sigma_c: float = SIGMA_C, sigma_s: float = SIGMA_S) -> np.ndarray:
    """Algorithm 1, lines 1-4: ``D = L - bilateral(L)``, ``L = log(gray(H) + 1)``."""
    gray = np.maximum(np.asarray(hdr, np.float32), 0.0) @ np.asarray(GRAY, np.float32)
    lum = np.log1p(gray)
    return lum - bilateral_filter(lum, sigma_c, sigma_s)


def patch_metric(hdr: np.ndarray, mask: np.ndarray, sigma_c: float = SIGMA_C, sigma_s: float = SIGMA_S,
                 region: str = "patch") -> float:
    """Algorithm 1 ``PatchMetric(H, M)``: ``mean(G ⊙ (1 - M))``, ``G = |G_x| + |G_y|`` the Sobel
    gradient of the detail layer (module docstring). ``hdr`` ``H x W x 3`` linear, ``mask`` the soft
    input mask ``H x W x 3`` (or ``H x W``). ``region="saturated"``: divide by ``mean(1 - M)``
    (the prose's "average [...] in the saturated areas"); 0 when nothing is saturated."""
    gx, gy = sobel(detail_layer(hdr, sigma_c, sigma_s))
    g = np.abs(gx) + np.abs(gy)
    inv = 1.0 - np.asarray(mask, np.float32)
    if inv.ndim == 3:
        g = g[..., None]
    total = float(np.mean(g * inv))
    if region == "patch":
        return total
    if region == "saturated":
        sat = float(np.mean(inv))
        return total / sat if sat > 0 else 0.0
    raise ValueError(f"region must be 'patch' or 'saturated', got {region!r}")


def select_patch(draw: Callable[[], tuple[np.ndarray, np.ndarray]], tries: int = DEFAULT_TRIES,
                 threshold: float = THRESHOLD, region: str = "patch") -> tuple[np.ndarray, np.ndarray, float]:
    """Santos' patch selection on the fly (module docstring): call ``draw() -> (ldr, hdr)``
    (``H x W x 3``) up to ``tries`` times; return ``(ldr, hdr, metric)`` of the first candidate
    whose metric reaches ``threshold``, else of the one with the largest metric."""
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(max(1, int(tries))):
        ldr, hdr = draw()
        m = patch_metric(hdr, soft_mask(ldr), region=region)
        if m >= threshold:
            return ldr, hdr, m
        if best is None or m > best[2]:
            best = (ldr, hdr, m)
    assert best is not None
    return best


# ------------------------------------------------------------------------------------------
# Inpainting pre-training masks
# ------------------------------------------------------------------------------------------

STREAK_RADIUS = (0.01, 0.04)  # fraction of the patch side (thickness / 2)
HOLE_RADIUS = (0.04, 0.09)


def _stamp(hole: np.ndarray, cy: float, cx: float, r: float) -> int:
    """Set a disc of radius ``r`` in ``hole``; return how many pixels it newly covered."""
    h, w = hole.shape
    y0, y1 = max(0, int(math.floor(cy - r))), min(h, int(math.ceil(cy + r)) + 1)
    x0, x1 = max(0, int(math.floor(cx - r))), min(w, int(math.ceil(cx + r)) + 1)
    if y0 >= y1 or x0 >= x1:
        return 0
    yy, xx = np.mgrid[y0:y1, x0:x1]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    box = hole[y0:y1, x0:x1]
    new = int(np.count_nonzero(disc & ~box))
    box |= disc
    return new


def inpainting_mask(h: int, w: int, rng: np.random.Generator, coverage: float) -> np.ndarray:
    """A ``h x w`` boolean mask (True = hole) of random streaks and holes covering ``coverage`` of
    the pixels (module docstring): at least the requested fraction, and at most one disc more
    (``< pi (0.09 min(h, w))^2`` pixels, 2.5 % of a square patch)."""
    if not 0.0 <= coverage < 1.0:
        raise ValueError(f"coverage must be in [0, 1), got {coverage}")
    hole = np.zeros((h, w), bool)
    target = int(math.ceil(coverage * h * w))
    side = float(min(h, w))
    count = 0
    while count < target:
        streak = rng.random() < 0.5
        if streak:
            r = max(1.0, rng.uniform(*STREAK_RADIUS) * side)
            vertices = int(rng.integers(3, 10))
            lengths = (0.1 * side, 0.4 * side)
            turn = 0.8
        else:
            r = max(1.5, rng.uniform(*HOLE_RADIUS) * side)
            vertices = int(rng.integers(2, 6))
            lengths = (0.3 * r, 1.2 * r)
            turn = 2.0
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        angle = rng.uniform(0.0, 2.0 * math.pi)
        count += _stamp(hole, y, x, r)
        for _ in range(vertices):
            if count >= target:
                break
            angle += rng.normal(0.0, turn)
            length = rng.uniform(*lengths)
            ny = float(np.clip(y + length * math.sin(angle), 0, h - 1))
            nx = float(np.clip(x + length * math.cos(angle), 0, w - 1))
            dist = math.hypot(ny - y, nx - x)
            n = max(1, int(math.ceil(dist / max(0.5, 0.5 * r))))
            for i in range(1, n + 1):
                count += _stamp(hole, y + (ny - y) * i / n, x + (nx - x) * i / n, r)
                if count >= target:
                    break
            y, x = ny, nx
    return hole


def fill_holes(ldr: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The LDR patch ``H x W x 3`` with the holes set to display white (1.0), a copy."""
    out = np.array(ldr, np.float32, copy=True)
    out[hole] = 1.0
    return out


__all__ = ["patch_metric", "detail_layer", "bilateral_filter", "bilateral_filter_exact", "sobel", "soft_mask",
           "select_patch", "inpainting_mask", "fill_holes", "THRESHOLD", "SIGMA_C", "SIGMA_S", "DEFAULT_COVERAGE",
           "DEFAULT_TRIES"]
