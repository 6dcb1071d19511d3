"""Per-pixel masks on display code values: where a model expands, or how much it changed.

* :func:`highlight_alpha` — the blend weight of HDR-CNN (Eilertsen et al. 2017, as summarised in Qiu's
  survey *HDR Image Reconstruction Based on Deep Learning*, §6.1 Eq. 17): 0 below ``tau``, rising
  to 1 at code value 1 on the brightest channel;
* :func:`soft_exposure_mask` — the soft well-exposedness ramp ``beta`` of Santos et al. 2020 §3 /
  Fig. 2: 1 below a threshold, falling linearly to 0 at code value 1;
* :func:`relative_change_mask` — ``|H - f^-1(x)| / max(H, f^-1(x))``, the reconstruction mask of the
  networks that may change every pixel;
* :func:`channel_alpha` and :func:`keep_unclipped` — the output stage every single-image network
  ends with: channel by channel, a channel that was not clipped keeps its linearised input value,
  and a clipped one takes the network's expansion, never below its own linearised value.

Why channel by channel
----------------------
HDR-CNN's Eq. 17 takes ``alpha`` on the *brightest* channel of a pixel, so in a saturated coloured
highlight (a red flower: R clipped, G and B near 0) Eq. 16 replaces all three channels with the
network's ``exp(y)``: the channels the camera recorded exactly are thrown away, and a zero channel
comes back as whatever the network predicts there, at least ``exp(log eps) = 1/255`` once ``y`` is
clamped (measured on held-out photographs: 15-17 dB PSNR-mu lost on such images). A camera clips
each channel on its own, so a channel below the threshold still holds its true value (up to
quantisation). :func:`keep_unclipped` therefore blends per channel, ``alpha_c`` from that channel's
own code value: the reading of SingleHDR's mask ``alpha = max(0, I_lin - gamma) / (1 - gamma)`` as
Qiu's survey prints it (§7.1, no maximum over channels) and of Santos et al.'s per-channel mask
``M`` (§3, Eq. 1, Fig. 2), applied to every network. And since "the missing values in the
over-exposed regions should always be greater than the existing pixel values" (SingleHDR, survey
§7.1), a clipped channel's expansion is bounded below by its own linearised value.
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


def channel_alpha(x: torch.Tensor, tau: float = 0.95) -> torch.Tensor:
    """Eq. 17's ramp per channel: ``alpha_c = clamp((D_c - tau) / (1 - tau), 0, 1)``, same shape as
    ``x`` (0 for a channel below ``tau``, 1 for a channel at display white). Its maximum over the
    channels is :func:`highlight_alpha`."""
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must be in [0, 1), got {tau}")
    return ((x - tau) / (1.0 - tau)).clamp(0.0, 1.0)


def keep_unclipped(lin: torch.Tensor, expanded: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The output stage of every single-image network (module docstring):
    ``H_c = (1 - alpha_c) lin_c + alpha_c max(E_c, lin_c)``.

    ``lin`` is the network's linearised input (the inverse sRGB curve of the code values, or the
    learnt linearisation of SingleHDR), ``expanded`` ``E`` the network's prediction and ``alpha``
    the per-channel weight (:func:`channel_alpha`, or ``1 - M`` of Santos' soft mask), all of the
    same shape. Where ``alpha_c == 0`` the result is ``lin_c`` bit for bit (a zero channel stays 0:
    nothing is added to it); where ``alpha_c == 1`` it is ``max(E_c, lin_c)``.

    While training (gradients enabled on ``expanded``) the bound passes its gradient straight
    through to ``E`` (``E + (max(E, lin) - E).detach()``, the same value): a plain maximum would give
    a prediction below the bound no gradient at all, and a network that starts there (a fresh
    ExpandNet predicts about the mean of the well-exposed pixels) would never learn to lift it. The
    truth of a clipped channel is at least its clipped value, so "raise the output" is the right
    direction there."""
    if torch.is_grad_enabled() and expanded.requires_grad:
        bounded = expanded + (torch.maximum(expanded, lin) - expanded).detach()
    else:
        bounded = torch.maximum(expanded, lin)
    return (1.0 - alpha) * lin + alpha * bounded


__all__ = ["highlight_alpha", "soft_exposure_mask", "relative_change_mask", "channel_alpha", "keep_unclipped"]
