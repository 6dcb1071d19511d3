"""Validation cases beyond plain views: saturated coloured highlights and small speculars.

``hdrlift-eval`` scores every model on perspective views of the val panoramas. The views alone
missed two failures that held-out photographs showed: saturated *coloured* highlights (an orange
object, a red flower, a neon sign: one channel clips while the others hold their values, some of
them zero) and small, very bright speculars (glints a few pixels wide, tens to thousands of times
display white). Both are rare in the panoramas, so each val view is also rendered as:

* ``saturated`` (:func:`saturate_highlights`): the view's highlights recoloured with a saturated
  light — pure red, orange, amber, green, blue or magenta, several of them with channels that are
  exactly zero. The weight ``w`` ramps from 0 at half of the view's 90th-percentile brightness to 1
  at that percentile and above (brightness = the largest channel), and a recoloured pixel keeps its
  brightness: ``H' = (1 - w) H + w max_c(H) t`` with ``max_c(t) = 1``. The camera then clips the
  tint's strongest channel first, as a real one does.
* ``specular`` (:func:`add_speculars`): 3 to 7 glints rendered into the view, Gaussian spots of
  radius 0.6-1.8 px whose peak is 10-1000 times (log-uniform) the view's 97th-percentile
  brightness (about display white at the 3 % clip level), half of them white, the others warm,
  cool or saturated.

Both are deterministic given the view and the generator (``hdrlift-eval --seed``). They are
synthetic: what is measured is whether a model does something sensible with such highlights (keeps
the recorded channels, expands the clipped one, does not flatten a glint), next to the plain
inverse camera curve under the same camera.
"""

from __future__ import annotations

import numpy as np

CASES = ("views", "saturated", "specular")

#: saturated tints (largest channel 1); several have channels that are exactly 0
TINTS = {
    "red": (1.0, 0.0, 0.0),
    "orange": (1.0, 0.35, 0.0),
    "amber": (1.0, 0.62, 0.04),
    "green": (0.06, 1.0, 0.12),
    "blue": (0.0, 0.18, 1.0),
    "magenta": (1.0, 0.0, 0.65),
}
#: colours of the glints: white half of the time, else one of these
GLINT_TINTS = ((1.0, 0.86, 0.62), (0.72, 0.85, 1.0), (1.0, 0.2, 0.1), (0.2, 1.0, 0.35), (0.25, 0.45, 1.0))


def brightness(hdr: np.ndarray) -> np.ndarray:
    """The largest channel per pixel (what the camera clips first)."""
    return hdr.max(axis=-1)


def recolour(hdr: np.ndarray, tint, quantile: float = 0.90, ramp: float = 0.5) -> np.ndarray:
    """``H' = (1 - w) H + w max_c(H) t`` (module docstring): ``w`` ramps from 0 at ``(1 - ramp)``
    times the view's ``quantile`` of brightness to 1 at it; ``t`` (largest channel 1) the tint.
    Also the training augmentation (``"recolour"``, :class:`hdrlift.training.data.PatchDataset`)."""
    t = np.asarray(tint, np.float32)
    b = brightness(hdr)
    q = float(np.quantile(b, quantile))
    if q <= 0:
        return hdr.copy()
    w = np.clip((b / q - (1.0 - ramp)) / ramp, 0.0, 1.0)[..., None].astype(np.float32)
    out = (1.0 - w) * hdr + w * b[..., None] * t
    return np.ascontiguousarray(out.astype(np.float32))


def saturate_highlights(hdr: np.ndarray, rng: np.random.Generator, tint: str | None = None) -> tuple[np.ndarray, str]:
    """The view with its highlights recoloured by a saturated tint (module docstring); returns
    ``(hdr', tint name)``."""
    name = tint or str(rng.choice(sorted(TINTS)))
    return recolour(hdr, TINTS[name]), name


def random_tint(rng: np.random.Generator) -> np.ndarray:
    """A random saturated colour, largest channel 1: hue uniform, HSV saturation 0.7-1 (the
    training augmentation draws its own colours, not the six validation tints)."""
    h, s = float(rng.uniform(0.0, 6.0)), float(rng.uniform(0.7, 1.0))
    k = (np.array([5.0, 3.0, 1.0]) + h) % 6.0
    return (1.0 - s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(np.float32)


def add_speculars(hdr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The view with 3-7 small, very bright glints added (module docstring)."""
    h, w = hdr.shape[:2]
    ref = float(np.quantile(brightness(hdr), 0.97)) or 1.0
    out = hdr.astype(np.float32).copy()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.integers(3, 8))):
        cy, cx = float(rng.uniform(4, h - 4)), float(rng.uniform(4, w - 4))
        r = float(rng.uniform(0.6, 1.8))
        peak = ref * 10.0 ** float(rng.uniform(1.0, 3.0))
        colour = np.ones(3, np.float32) if rng.random() < 0.5 else np.asarray(
            GLINT_TINTS[int(rng.integers(len(GLINT_TINTS)))], np.float32)
        y0, y1 = max(0, int(cy - 4 * r)), min(h, int(cy + 4 * r) + 2)
        x0, x1 = max(0, int(cx - 4 * r)), min(w, int(cx + 4 * r) + 2)
        d2 = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2
        out[y0:y1, x0:x1] += (peak * np.exp(-d2 / (r * r)))[..., None] * colour
    return out


def variant(case: str, hdr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """``(hdr', suffix)`` of a view for ``case``; ``views`` returns the view itself."""
    if case == "views":
        return hdr, ""
    if case == "saturated":
        out, name = saturate_highlights(hdr, rng)
        return out, f"/sat-{name}"
    if case == "specular":
        return add_speculars(hdr, rng), "/spec"
    raise ValueError(f"unknown validation case {case!r}; valid: {', '.join(CASES)}")


__all__ = ["CASES", "TINTS", "recolour", "random_tint", "saturate_highlights", "add_speculars", "variant", "brightness"]
