"""Training losses of the seed papers, each citing its equation.

Every loss takes tensors ``(N, 3, H, W)``. ``pred`` is what the network returns (linear HDR
unless the name says log), ``target`` the linear reference in the same units, ``ldr`` the
network input (display code values in [0, 1]) where a loss needs the saturation mask.

Eilertsen et al. 2017 (survey seed 001, §6.1):

* :func:`eilertsen_log` — Eq. 19, ``1/3N sum |alpha_i (y_hat - log(H + eps))|^2``.
* :func:`eilertsen_ir` — Eq. 20-22, illuminance/reflectance split with a Gaussian
  (``sigma = 2``) low-pass of the log luminance (weights ``0.213, 0.715, 0.072``), ``lambda``
  weighting the illuminance term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hdrlift.engine.models.blocks import gaussian_kernel1d, highlight_alpha

EILERTSEN_W = (0.213, 0.715, 0.072)  # Eq. 20-21 luminance weights
LOG_EPS = 1.0 / 255.0


def eilertsen_log(y_hat: torch.Tensor, target: torch.Tensor, ldr: torch.Tensor, tau: float = 0.95,
                  eps: float = LOG_EPS) -> torch.Tensor:
    """Eq. 19: alpha-weighted squared error between the log prediction and ``log(H + eps)``."""
    alpha = highlight_alpha(ldr, tau)
    d = alpha * (y_hat - torch.log(target.clamp(min=0.0) + eps))
    return (d * d).mean()


def _log_lum(y: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(EILERTSEN_W, dtype=y.dtype, device=y.device).view(1, 3, 1, 1)
    return torch.log((w * torch.exp(y)).sum(dim=1, keepdim=True))


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = gaussian_kernel1d(sigma).to(x)
    r = k.numel() // 2
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


def eilertsen_ir(y_hat: torch.Tensor, target: torch.Tensor, ldr: torch.Tensor, lam: float = 0.5,
                 sigma: float = 2.0, tau: float = 0.95, eps: float = LOG_EPS) -> torch.Tensor:
    """Eq. 20-22: illuminance (``G_sigma * L``) and reflectance (``y - log I``) terms, each
    alpha-weighted, mixed by ``lam`` (illuminance) and ``1 - lam`` (reflectance)."""
    alpha = highlight_alpha(ldr, tau)
    y = torch.log(target.clamp(min=0.0) + eps)
    li_hat = _blur(_log_lum(y_hat), sigma)
    li = _blur(_log_lum(y), sigma)
    lr_hat = y_hat - li_hat
    lr = y - li
    term_i = ((alpha * (li_hat - li)) ** 2).mean()
    term_r = ((alpha * (lr_hat - lr)) ** 2).mean()
    return lam * term_i + (1.0 - lam) * term_r


__all__ = ["eilertsen_log", "eilertsen_ir"]
