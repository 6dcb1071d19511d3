"""Training objectives that optimise the evaluation protocol itself.

:func:`psnr_objective` — the negative mean, over the images of a batch, of PSNR in the two
domains ``hdrlift-eval`` scores (mu-law with the NTIRE 2021 tanh normalisation, and PU21 on
absolute luminance, see :mod:`hdrlift.training.metrics`), plus a small L1 term on log HDR.

Why: the evaluation averages PSNR in dB over images, so an image the inverse camera curve
already gets almost right (a barely clipped sky, 65 dB) weighs as much as one with a clipped
sun (30 dB), and losing 3 dB on the first costs more than winning 0.2 dB on the second. A
per-pixel loss (Eilertsen Eq. 19, or L1 on log) weighs pixels, not images, and trades the easy
images away; ``log10(MSE_i)`` per image weighs every image by ``1 / MSE_i``, as the metric does.
:func:`psnr_gain` — the same per-image PSNR, counted as the gain over the plain inverse camera
curve on the same image, with a hinge on every image that gains less than ``margin_db``: the
evaluation's worst-case column (``worst_mu``/``worst_pu21``) asks that a default never fall far
below doing nothing on any image, and a mean objective alone trades such images for the rest.

This is a choice of ours; the papers' own losses live in :mod:`hdrlift.training.losses`.
"""

from __future__ import annotations

import torch

from hdrlift.engine.colour_maths import luminance, tanh_mu_law
from hdrlift.training.metrics import DISPLAY_WHITE_NITS, MU, PU21_BANDING_GLARE, PU21_L_MAX, PU21_L_MIN


def pu21_encode_t(nits: torch.Tensor) -> torch.Tensor:
    """PU21 (banding_glare) on a tensor; see :func:`hdrlift.training.metrics.pu21_encode`."""
    p1, p2, p3, p4, p5, p6, p7 = PU21_BANDING_GLARE
    y = nits.clamp(PU21_L_MIN, PU21_L_MAX)
    yp = y ** p4
    return p7 * (((p1 + p2 * yp) / (1.0 + p3 * yp)) ** p5 - p6)


def mu_tonemap_t(x: torch.Tensor, norm: torch.Tensor, mu: float = MU) -> torch.Tensor:
    """The tensor form of :func:`hdrlift.training.metrics.mu_tonemap`."""
    return tanh_mu_law(x, norm, mu)


def psnr_objective(pred: torch.Tensor, target: torch.Tensor, log_l1: float = 0.1,
                   floor: float = 1e-10) -> torch.Tensor:
    """``mean_i [log10 MSE_mu(i) + log10 MSE_PU21(i) / peak^2] + log_l1 * L1(log)`` (lower is better)."""
    n = pred.shape[0]
    norm = torch.quantile(target.reshape(n, -1), 0.99, dim=1).clamp(min=1e-6).view(n, 1, 1, 1)
    mse_mu, mse_pu = _per_image_mse(pred, target, norm)
    eps = 1.0 / 255.0
    l1 = (torch.log(pred.clamp(min=0.0) + eps) - torch.log(target + eps)).abs().mean()
    return (torch.log10(mse_mu + floor) + torch.log10(mse_pu + floor)).mean() + log_l1 * l1


def _per_image_mse(pred: torch.Tensor, target: torch.Tensor, norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: the MSE of the tanh mu-law (normalised by ``norm``) and of PU21 / peak^2."""
    n = pred.shape[0]
    mse_mu = ((mu_tonemap_t(pred, norm) - mu_tonemap_t(target, norm)) ** 2).reshape(n, -1).mean(1)
    peak = float(pu21_encode_t(torch.tensor(PU21_L_MAX)))
    pa = pu21_encode_t(luminance(pred.clamp(min=0.0)) * DISPLAY_WHITE_NITS)
    pb = pu21_encode_t(luminance(target) * DISPLAY_WHITE_NITS)
    return mse_mu, ((pa - pb) ** 2).reshape(n, -1).mean(1) / (peak * peak)


def psnr_gain(pred: torch.Tensor, target: torch.Tensor, ldr: torch.Tensor, margin_db: float = 0.5,
              hinge: float = 4.0, clipped_l1: float = 0.1, floor: float = 1e-10) -> torch.Tensor:
    """Per image ``i`` and domain ``d`` (tanh mu-law, PU21), ``r_id = log10(MSE_d(pred_i) / MSE_d(base_i))``
    with ``base`` the inverse sRGB curve of the input (``inverse-crf``; ``-10 r`` is the PSNR gain
    in dB); the objective is ``mean_i sum_d [r_id + hinge * max(0, r_id + margin_db / 10)]`` plus
    ``clipped_l1`` times :func:`clipped_log_l1`. Lower is better.

    The first term has the gradient of :func:`psnr_objective` (``log10 MSE(base)`` does not depend
    on the network); the hinge gives each image that gains less than ``margin_db`` ``1 + hinge``
    times the weight, so the images where expanding is a gamble (a bright overcast sky, snow, a
    neon tube barely above white) weigh against the ones where it pays. The clipped-channel log
    term keeps the gradient toward the highlights' level (``docs/training.md``, "Highlight
    magnitude")."""
    from hdrlift.engine.colour_maths import srgb_to_linear

    n = pred.shape[0]
    norm = torch.quantile(target.reshape(n, -1), 0.99, dim=1).clamp(min=1e-6).view(n, 1, 1, 1)
    base = srgb_to_linear(ldr.clamp(0.0, 1.0)).detach()
    terms = []
    for p, b in zip(_per_image_mse(pred, target, norm), _per_image_mse(base, target, norm)):
        r = torch.log10(p + floor) - torch.log10(b.detach() + floor)
        terms.append(r + hinge * torch.relu(r + margin_db / 10.0))
    loss = (terms[0] + terms[1]).mean()
    if clipped_l1:
        loss = loss + clipped_l1 * clipped_log_l1(pred, target, ldr)
    return loss


def clipped_log_l1(pred: torch.Tensor, target: torch.Tensor, ldr: torch.Tensor, tau: float = 0.95,
                   eps: float = 1.0 / 255.0, power: float = 1.0) -> torch.Tensor:
    """L1 of ``log(H + eps)`` over the clipped channels of each image, averaged per image first
    (``sum_c alpha_c |log(pred + eps) - log(H + eps)| / sum_c alpha_c``), then over the batch.

    With the per-channel output stage (``masks.keep_unclipped``) the unclipped channels are exact,
    so a plain mean over all pixels (``log_l1``) is this loss weighted by each patch's clipped
    fraction: a patch with 12 % of its pixels clipped, most of them barely above white (a bright
    sky), weighs twelve times a patch whose 1 % are a lamp. Per image, every patch counts alike, as
    in the evaluation's per-image means.

    ``power=2`` (``clipped_log_l2``) squares the log error instead, as Eilertsen et al.'s Eq. 19
    does: its minimiser is the conditional *mean* of the log HDR where L1's is the median, and in a
    clipped region the log HDR is skewed towards the few very bright sources (suns, lamps), so L2
    predicts brighter highlights than L1 (docs/training.md, "Highlight magnitude")."""
    from hdrlift.engine.models.masks import channel_alpha

    a = channel_alpha(ldr, tau)
    d = (torch.log(pred.clamp(min=0.0) + eps) - torch.log(target.clamp(min=0.0) + eps)).abs()
    if power != 1.0:
        d = d ** power
    n = pred.shape[0]
    num = (a * d).reshape(n, -1).sum(1)
    den = a.reshape(n, -1).sum(1)
    return (num / den.clamp(min=1.0)).mean()


def clipped_log_l2(pred: torch.Tensor, target: torch.Tensor, ldr: torch.Tensor, tau: float = 0.95,
                   eps: float = 1.0 / 255.0) -> torch.Tensor:
    """:func:`clipped_log_l1` with the squared log error (Eilertsen Eq. 19's L2, per image)."""
    return clipped_log_l1(pred, target, ldr, tau, eps, power=2.0)


__all__ = ["psnr_objective", "psnr_gain", "clipped_log_l1", "clipped_log_l2", "pu21_encode_t", "mu_tonemap_t"]
