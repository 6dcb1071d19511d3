"""Image filters, per-pixel feature maps and frame statistics, as ``torch`` (any batch; every
statistic is per image of the batch).

* smoothing: :func:`gaussian_kernel1d`, :class:`GaussianBlur` (separable, replicate padding),
  :class:`FastBilateral` (piecewise-linear cross bilateral filter, Durand & Dorsey 2002);
* feature maps: :class:`Sobel` edges and :func:`soft_histogram_maps` (soft histogram-bin
  membership per pixel);
* frame statistics: :func:`frame_max`, :func:`frame_min`, :func:`frame_log_mean`;
* :func:`apply_curve`: a per-image 1-D look-up table (``(N, D)`` samples on ``[0, 1]``) applied to
  every pixel with linear interpolation (a gather, so it exports to ONNX).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# --------------------------------------------------------------------------- smoothing
def gaussian_kernel1d(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` (radius ``ceil(3 sigma)``)."""
    if radius is None:
        radius = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).float()


class GaussianBlur(nn.Module):
    """Separable Gaussian blur of every channel (``channels`` fixed at construction), replicate
    padding, so any image size works (including sizes smaller than the kernel)."""

    def __init__(self, channels: int, sigma: float):
        super().__init__()
        k = gaussian_kernel1d(sigma)
        self.radius = (k.numel() - 1) // 2
        self.channels = channels
        self.register_buffer("kx", k.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), persistent=False)
        self.register_buffer("ky", k.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.radius
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), self.kx, groups=self.channels)
        return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), self.ky, groups=self.channels)


class FastBilateral(nn.Module):
    """Cross/joint bilateral filter, approximated the piecewise-linear way (Durand & Dorsey 2002,
    "Fast bilateral filtering for the display of HDR images", §5.1):

    the guide's range ``[lo, hi]`` is cut into ``K`` levels ``i_j`` at most ``sigma_r`` apart; for
    each level the range weights ``w_j = exp(-(g - i_j)^2 / 2 sigma_r^2)`` and ``w_j * src`` are
    blurred spatially (Gaussian ``sigma_s``, computed on a grid subsampled by
    ``~sigma_s / 3`` and up-sampled bilinearly), ``J_j = blur(w_j src) / blur(w_j)``, and the
    output interpolates linearly between the two levels around each pixel's guide value.
    Cost: ``K`` separable blurs on a small grid plus ``~4 K`` full-resolution element-wise
    passes, whatever ``sigma_s`` (150 px costs the same as 10 px).

    ``src`` and ``guide`` are ``(N, 1, H, W)``; the guide is clamped to ``[lo, hi]``.
    """

    def __init__(self, sigma_s: float, sigma_r: float, lo: float = 0.0, hi: float = 1.0):
        super().__init__()
        if sigma_s <= 0 or sigma_r <= 0 or hi <= lo:
            raise ValueError("sigma_s, sigma_r must be positive and hi > lo")
        self.sigma_s = float(sigma_s)
        self.sigma_r = float(sigma_r)
        self.lo = float(lo)
        self.hi = float(hi)
        self.down = max(1, int(round(sigma_s / 3.0)))
        k = max(2, int(math.ceil((hi - lo) / sigma_r)) + 1)
        self.levels = k
        self.step = (hi - lo) / (k - 1)
        self.register_buffer("centres", torch.linspace(lo, hi, k).view(1, k, 1, 1), persistent=False)
        self.blur = GaussianBlur(2 * k, sigma_s / self.down)

    def forward(self, src: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        h, w = src.shape[-2], src.shape[-1]
        g = guide.clamp(self.lo, self.hi)
        d = (g - self.centres) / self.sigma_r
        wr = torch.exp(-0.5 * d * d)  # (N, K, H, W)
        stack = torch.cat([wr * src, wr], dim=1)
        if self.down > 1:
            stack = F.avg_pool2d(stack, self.down, self.down, ceil_mode=True)
        stack = self.blur(stack)
        stack = F.interpolate(stack, size=(h, w), mode="bilinear", align_corners=False)
        k = self.levels
        j = stack[:, :k] / stack[:, k:].clamp(min=1e-12)
        hat = (1.0 - (g - self.centres).abs() / self.step).clamp(min=0.0)
        return (j * hat).sum(dim=1, keepdim=True)


# --------------------------------------------------------------------------- feature maps
class Sobel(nn.Module):
    """Sobel responses ``(d/dx, d/dy)`` of each of ``channels`` channels (kernels normalised by 1/8,
    replicate padding): ``(N, 2C, H, W)`` ordered ``[dx_0, dy_0, dx_1, dy_1, ...]``. The kernels are
    a buffer, so the conv exports to ONNX with a known weight shape."""

    def __init__(self, channels: int):
        super().__init__()
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
        k = torch.stack([kx, kx.t()]).unsqueeze(1).repeat(channels, 1, 1, 1)  # (2C, 1, 3, 3)
        self.channels = int(channels)
        self.register_buffer("kernel", k, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.kernel.to(x.dtype), groups=self.channels)


def soft_histogram_maps(x: torch.Tensor, bins: tuple[int, ...] = (4, 8, 16)) -> torch.Tensor:
    """Per-pixel soft membership of every channel's value in ``B`` equal bins on ``[0, 1]``, for each
    ``B`` in ``bins`` (triangle kernel of one bin width around each bin centre, so the memberships
    of one value sum to 1 inside ``[0.5/B, 1 - 0.5/B]``): ``(N, C * sum(bins), H, W)``. A global
    average pool of these maps is a (soft) histogram of the image."""
    maps = []
    v = x.clamp(0.0, 1.0).unsqueeze(2)  # (N, C, 1, H, W)
    for b in bins:
        centres = (torch.arange(b, dtype=x.dtype, device=x.device) + 0.5) / b
        m = (1.0 - (v - centres.view(1, 1, b, 1, 1)).abs() * b).clamp(min=0.0)  # (N, C, B, H, W)
        maps.append(m.flatten(1, 2))
    return torch.cat(maps, dim=1)


# --------------------------------------------------------------------------- frame statistics
def frame_max(x: torch.Tensor) -> torch.Tensor:
    """Per-image maximum over channels and pixels: ``(N, 1, 1, 1)``."""
    return torch.amax(x, dim=(1, 2, 3), keepdim=True)


def frame_min(x: torch.Tensor) -> torch.Tensor:
    """Per-image minimum over channels and pixels: ``(N, 1, 1, 1)``."""
    return torch.amin(x, dim=(1, 2, 3), keepdim=True)


def frame_log_mean(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-image geometric mean ``exp(mean(log(x + eps)))``: ``(N, 1, 1, 1)``."""
    return torch.exp(torch.log(x.clamp(min=0.0) + eps).mean(dim=(1, 2, 3), keepdim=True))


# --------------------------------------------------------------------------- curves
def apply_curve(x: torch.Tensor, curve: torch.Tensor) -> torch.Tensor:
    """Apply a per-image curve sampled at ``D`` uniform points of ``[0, 1]`` (``curve`` is
    ``(N, D)``) to every value of ``x`` (``(N, ...)``), clamped to ``[0, 1]``, with linear
    interpolation between the samples. Same shape and dtype as ``x``."""
    d = curve.shape[1]
    v = x.clamp(0.0, 1.0).reshape(x.shape[0], -1) * (d - 1)
    i0 = torch.floor(v).clamp(max=d - 2)
    frac = v - i0
    i0 = i0.long()
    c0 = torch.gather(curve, 1, i0)
    c1 = torch.gather(curve, 1, i0 + 1)
    return (c0 + (c1 - c0) * frac).reshape(x.shape)


__all__ = ["gaussian_kernel1d", "GaussianBlur", "FastBilateral", "Sobel", "soft_histogram_maps", "frame_max",
           "frame_min", "frame_log_mean", "apply_curve"]
