"""Per-pixel masks on display code values: where a model expands, or how much it changed.

* :func:`highlight_alpha` — the blend weight of HDR-CNN (Eilertsen et al. 2017, as summarised in Qiu's
  survey *HDR Image Reconstruction Based on Deep Learning*, §6.1 Eq. 17): 0 below ``tau``, rising
  to 1 at code value 1 on the brightest channel;
* :func:`soft_exposure_mask` — the soft well-exposedness ramp ``beta`` of Santos et al. 2020 §3 /
  Fig. 2: 1 below a threshold, falling linearly to 0 at code value 1;
* :func:`relative_change_mask` — ``|H - f^-1(x)| / max(H, f^-1(x))``, the reconstruction mask of the
  networks that may change every pixel.
"""

from __future__ import annotations

import torch

from hdrlift.engine.colour_maths import srgb_to_linear


# --------------------------------------------------------------------------- masks
def highlight_alpha(x: torch.Tensor, tau: float = 0.95) -> torch.Tensor:
    """Blend weight of HDR-CNN, Eilertsen et al. 2017 (Qiu's survey, §6.1, Eq. 17).

    ``alpha = max(0, max_c(D) - tau) / (1 - tau)`` on the *display code values* ``D`` (the
    network input, not linear), clamped to ``[0, 1]`` so that code values above 1 cannot give
    a negative ``1 - alpha`` in Eq. 16. Returns ``(N, 1, H, W)``.
    """
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must be in [0, 1), got {tau}")
    peak = torch.amax(x, dim=1, keepdim=True)
    return ((peak - tau) / (1.0 - tau)).clamp(0.0, 1.0)


def soft_exposure_mask(x: torch.Tensor, threshold: float = 0.96) -> torch.Tensor:
    """Santos et al. 2020 §3 / Fig. 2: ``beta(x) = 1`` for ``x <= threshold``, then a
    linear ramp to ``beta(1) = 0`` (and 0 above 1), element-wise: same shape as ``x``.

    ``beta(x) = clamp((1 - x) / (1 - threshold), 0, 1)``.
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    return ((1.0 - x) / (1.0 - threshold)).clamp(0.0, 1.0)


def relative_change_mask(x: torch.Tensor, hdr: torch.Tensor) -> torch.Tensor:
    """``clamp(|H - f^-1(x)| / max(H, f^-1(x)), 0, 1)`` averaged over the channels: 0 where the
    output keeps the inverse sRGB curve of the input code value, 1 where all of it is new."""
    lin = srgb_to_linear(x).clamp(min=0.0)
    rel = (hdr - lin).abs() / torch.maximum(hdr, lin).clamp(min=1e-6)
    return rel.clamp(0.0, 1.0).mean(dim=1, keepdim=True)


__all__ = ["highlight_alpha", "soft_exposure_mask", "relative_change_mask"]
