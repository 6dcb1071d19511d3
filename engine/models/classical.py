"""Classical expansion operators (inverse tone mapping), as ``torch`` modules.

They follow the registry contract exactly like the networks (display code values in, scene-linear
Rec.709 out, ``reconstruction_mask``), take no weights (``kind="classical"``), accept any size
(``multiple_of=1``) and any batch: every frame statistic (max, min, geometric mean) is computed
per image of the batch.

Conventions shared by all of them
---------------------------------
* The input is first linearised with the inverse sRGB curve (:func:`colour_maths.srgb_to_linear`),
  i.e. the operators see ``L_d`` in ``[0, 1]`` with display white = 1.0 (docs/CONTRACTS.md).
* The papers state their output peak in cd/m^2 for a given HDR display; here the peak is a
  ratio to display white (``peak = 16`` = 4 stops over display white by default). Multiply by
  the display-white luminance (e.g. 100 cd/m^2) to get the papers' absolute units.
* Luminance is Rec.709 (:func:`colour_maths.luminance`); the operators change luminance and scale RGB
  by the same ratio ``L_w / L_d``, which keeps chromaticity.
* These operators use frame statistics; the pipeline must not tile them (a tile's max is not
  the frame's).

Operators
---------
``inverse-crf``
    The inverse camera curve alone, no expansion (the baseline every method is compared to).
``landis``
    Landis 2002, "Production-ready global illumination" (SIGGRAPH course notes), in the form of
    Banterle et al.'s review of expansion operators (Advanced High Dynamic Range Imaging, 2011,
    ch. 7): for ``L_d >= R``, ``k = ((L_d - R) / (L_d,max - R))^alpha`` and
    ``L_w = (1 - k) L_d + k * peak * L_d``; ``L_w = L_d`` below ``R``. ``R = 0.5`` on *linear*
    luminance (the review's default; about code value 0.735), ``alpha = 2``, ``peak = 16``.
    Mask: ``k``.
``akyuz``
    Akyüz, Fleming, Riecke, Reinhard, Bülthoff 2007, "Do HDR displays support LDR content?",
    linear expansion ``L_w = k ((L_d - L_d,min) / (L_d,max - L_d,min))^gamma``, ``gamma = 1``,
    ``k = peak = 16``. ``k`` is the output value of the frame's brightest pixel relative to
    display white; note the operator rescales *every* pixel (mid grey 0.18 in a frame spanning
    [0, 1] lands on 2.9), unlike the highlight-only operators: with ``k = 1`` and a frame spanning
    ``[0, 1]`` it reduces to ``inverse-crf``. Mask: the normalised ``L_d``.
``huo``
    Huo, Yang, Dong, Brost 2014, "Physiological inverse tone mapping based on retina response"
    (The Visual Computer 30(5)). The retina's Naka–Rushton response
    ``R / R_max = I^n / (I^n + sigma^n)`` is inverted with ``R / R_max = L_d / L_d,max``, the
    local adaptation ``I_s`` taken from two iterated bilateral filters of ``L_d`` (spatial 16 then
    10 px, range 0.3 then 0.1, as in the paper) and ``sigma`` from the frame's geometric mean:
    ``L_w = (L_d / L_d,max) * ((peak * I_s)^n + (peak * L_d,geomean)^n)^(1/n)``, ``n = 0.86``
    (the paper's value), ``peak = 16`` (the paper's ``L_max`` output). This is the formula as
    implemented in the HDR Toolbox (Banterle), the reference implementation used in the
    literature's comparisons. The operator brightens the whole frame, highlights most. Mask: the
    local adaptation ``I_s / L_d,max`` in [0, 1].
``kovaleski-oliveira``
    Kovaleski & Oliveira 2014, "High-quality reverse tone mapping for a wide range of
    exposures" (SIBGRAPI 2014): a brightness enhancement function ``E = 1 + 3 * BF(C)``, where
    ``C`` marks pixels with ``max_c(D) > threshold`` (code values, ``threshold = 0.9`` default;
    the paper uses 230/255 for video, 254/255 for stills) and ``BF`` is a cross bilateral
    filter of ``C`` guided by the luma of the code values (``sigma_s = 150`` px for HD content,
    ``sigma_r = 25/255``); ``L_w = L_d * E`` (the display range mapping of the paper with black
    level 0 and display white 1.0), so highlights gain up to 4x (2 stops). The bilateral filter
    is the piecewise-linear approximation of :class:`filters.FastBilateral` (Durand & Dorsey
    2002), not the paper's bilateral grid. Mask: ``BF(C)``.
"""

from __future__ import annotations

import torch
from torch import nn

from hdrlift.engine.colour_maths import luminance, srgb_to_linear
from hdrlift.engine.models.filters import FastBilateral, frame_log_mean, frame_max, frame_min
from hdrlift.engine.models.catalog import CLASSICAL
from hdrlift.engine.models.registry import get_info

DEFAULT_PEAK = 16.0  # output peak relative to display white (4 stops)
_TINY = 1e-8


def apply_luminance(lin: torch.Tensor, lum: torch.Tensor, lum_new: torch.Tensor) -> torch.Tensor:
    """Scale linear RGB by ``lum_new / lum`` (keeps chromaticity); black pixels get ``lum_new``
    as grey."""
    ratio = lum_new / lum.clamp(min=_TINY)
    grey = lum_new.expand_as(lin)
    return torch.where(lum > _TINY, lin * ratio, grey)


class ClassicalOperator(nn.Module):
    """Base: subclasses implement ``expand(x) -> (hdr, mask)`` on display code values."""

    def expand(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(x)[0]

    def reconstruction_mask(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(x)[1]


class InverseCRF(ClassicalOperator):
    """Inverse sRGB curve only: ``f^-1(D)``; the mask is zero everywhere."""

    def expand(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return srgb_to_linear(x), torch.zeros_like(x[:, :1])


class Landis(ClassicalOperator):
    """Landis 2002 power expansion above a threshold (see module docstring)."""

    def __init__(self, alpha: float = 2.0, threshold: float = 0.5, peak: float = DEFAULT_PEAK):
        super().__init__()
        if alpha <= 0 or not 0.0 <= threshold < 1.0 or peak < 1.0:
            raise ValueError("landis: alpha > 0, 0 <= threshold < 1, peak >= 1")
        self.alpha = float(alpha)
        self.threshold = float(threshold)
        self.peak = float(peak)

    def expand(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lin = srgb_to_linear(x)
        lum = luminance(lin)
        r = self.threshold
        span = (frame_max(lum) - r).clamp(min=1e-6)
        k = ((lum - r) / span).clamp(0.0, 1.0) ** self.alpha
        # L_w / L_d = (1 - k) + k * peak, applied without dividing (exactly 1 where k == 0)
        gain = 1.0 + k * (self.peak - 1.0)
        return lin * gain, k


class Akyuz(ClassicalOperator):
    """Akyüz et al. 2007 linear (``gamma = 1``) expansion to ``k = peak`` (see module docstring)."""

    def __init__(self, peak: float = DEFAULT_PEAK, gamma: float = 1.0):
        super().__init__()
        if peak <= 0 or gamma <= 0:
            raise ValueError("akyuz: peak and gamma must be positive")
        self.peak = float(peak)
        self.gamma = float(gamma)

    def expand(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lin = srgb_to_linear(x)
        lum = luminance(lin)
        lo = frame_min(lum)
        span = (frame_max(lum) - lo).clamp(min=1e-6)
        norm = ((lum - lo) / span).clamp(0.0, 1.0)
        lum_w = self.peak * norm ** self.gamma
        return apply_luminance(lin, lum, lum_w), norm


class Huo(ClassicalOperator):
    """Huo et al. 2014 physiological (Naka–Rushton) expansion (see module docstring)."""

    def __init__(self, peak: float = DEFAULT_PEAK, n: float = 0.86):
        super().__init__()
        if peak <= 0 or n <= 0:
            raise ValueError("huo: peak and n must be positive")
        self.peak = float(peak)
        self.n = float(n)
        self.bf1 = FastBilateral(16.0, 0.3)
        self.bf2 = FastBilateral(10.0, 0.1)

    def expand(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lin = srgb_to_linear(x)
        lum = luminance(lin).clamp(min=0.0)
        lmax = frame_max(lum).clamp(min=1e-6)
        adapt = self.bf2(self.bf1(lum, lum), lum).clamp(min=0.0)
        sigma = self.peak * frame_log_mean(lum)
        n = self.n
        lum_w = (lum / lmax) * ((self.peak * adapt) ** n + sigma ** n) ** (1.0 / n)
        mask = (adapt / lmax).clamp(0.0, 1.0)
        return apply_luminance(lin, lum, lum_w), mask


class KovaleskiOliveira(ClassicalOperator):
    """Kovaleski & Oliveira 2014 bilateral brightness enhancement (see module docstring)."""

    def __init__(self, threshold: float = 0.9, sigma_s: float = 150.0, sigma_r: float = 25.0 / 255.0,
                 gain: float = 3.0):
        super().__init__()
        if not 0.0 < threshold < 1.0 or gain < 0:
            raise ValueError("kovaleski-oliveira: 0 < threshold < 1 and gain >= 0")
        self.threshold = float(threshold)
        self.gain = float(gain)
        self.bf = FastBilateral(sigma_s, sigma_r)

    def expand(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lin = srgb_to_linear(x)
        clipped = (torch.amax(x, dim=1, keepdim=True) > self.threshold).to(x.dtype)
        luma = luminance(x)  # luma of the code values guides the filter (edges as seen)
        bef = self.bf(clipped, luma).clamp(0.0, 1.0)
        return lin * (1.0 + self.gain * bef), bef


# registered in catalog.py (names, summaries, papers, tiling), in this order
INFOS = {name: get_info(name) for name, *_ in CLASSICAL}

__all__ = ["ClassicalOperator", "InverseCRF", "Landis", "Akyuz", "Huo", "KovaleskiOliveira",
           "apply_luminance", "DEFAULT_PEAK", "INFOS"]
