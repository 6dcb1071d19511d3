"""Building blocks shared by every model file (networks and classical operators).

Nothing in here is specific to one paper; each model file composes these so that no conv
block is written twice. Everything is plain ``torch`` that exports to ONNX (opset 17) and
scripts/traces with TorchScript: no data-dependent Python control flow in ``forward``.

Contents
--------
* :func:`highlight_alpha`, HDR-CNN's blend weight (the colour primitives it and the models use
  are in :mod:`hdrlift.engine.colour_maths`);
* layers: :class:`ConvAct`, :class:`ResBlock`, :class:`UpsampleDeconv` (transposed conv
  initialised to bilinear), :class:`UpsampleShuffle` (conv + pixel shuffle), :class:`SFTLayer`, :class:`SFTResBlock`,
  :class:`SkipFuse` (concat + 1x1 conv initialised to an addition);
* smoothing and frame statistics for the classical operators: :class:`GaussianBlur`,
  :class:`FastBilateral` (piecewise-linear bilateral), :func:`frame_max`, :func:`frame_min`,
  :func:`frame_log_mean` (all per image of the batch);
* padding helpers: :func:`pad_to_multiple`, :func:`crop_to`;
* :func:`count_flops`: a hook-based conv/deconv FLOP counter (2 x MACs) run on the ``meta``
  device, so even a 1080p frame through the full-width HDR-CNN costs no compute.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


# --------------------------------------------------------------------------- masks
def highlight_alpha(x: torch.Tensor, tau: float = 0.95) -> torch.Tensor:
    """Blend weight of HDR-CNN, Eilertsen et al. 2017 (survey seed 001, §6.1, Eq. 17).

    ``alpha = max(0, max_c(D) - tau) / (1 - tau)`` on the *display code values* ``D`` (the
    network input, not linear), clamped to ``[0, 1]`` so that code values above 1 cannot give
    a negative ``1 - alpha`` in Eq. 16. Returns ``(N, 1, H, W)``.
    """
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must be in [0, 1), got {tau}")
    peak = torch.amax(x, dim=1, keepdim=True)
    return ((peak - tau) / (1.0 - tau)).clamp(0.0, 1.0)


# --------------------------------------------------------------------------- layers
def make_act(kind: str | None, slope: float = 0.2) -> nn.Module:
    """``"relu"``, ``"lrelu"`` (negative slope ``slope``) or ``None`` (identity)."""
    if kind is None or kind == "none":
        return nn.Identity()
    if kind == "relu":
        return nn.ReLU(inplace=False)
    if kind == "lrelu":
        return nn.LeakyReLU(slope, inplace=False)
    raise ValueError(f"unknown activation {kind!r}")


class ConvAct(nn.Sequential):
    """``Conv2d`` (``same`` padding for odd kernels, or ``stride`` 2 down-sampling) + activation."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, act: str | None = "relu",
                 slope: float = 0.2, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias)
        self.act = make_act(act, slope)


def scaled(channels: int, width: float, minimum: int = 4) -> int:
    """Channel count ``channels * width`` rounded, never below ``minimum``."""
    return max(minimum, int(round(channels * width)))


def bilinear_kernel(k: int) -> torch.Tensor:
    """The ``k x k`` kernel with which a stride-``k//2`` transposed conv performs bilinear up-sampling."""
    factor = (k + 1) // 2
    centre = factor - 1 if k % 2 == 1 else factor - 0.5
    og = torch.arange(k, dtype=torch.float64)
    filt = 1 - (og - centre).abs() / factor
    return (filt[:, None] * filt[None, :]).float()


class UpsampleDeconv(nn.Module):
    """x2 up-sampling by a 4x4 stride-2 transposed conv, initialised to bilinear up-sampling.

    With ``cin != cout`` the bilinear kernel sits on the diagonal ``i -> i mod cout`` scaled so
    that the sum over the input channels that land on one output is an average; the other
    weights start at zero (Eilertsen et al. 2017, Fig. 3 caption: "deconvolutions are
    initialised to perform bilinear upsampling").
    """

    def __init__(self, cin: int, cout: int, act: str | None = None, slope: float = 0.2):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=True)
        self.act = make_act(act, slope)
        self.reset_bilinear()

    @torch.no_grad()
    def reset_bilinear(self) -> None:
        w = self.deconv.weight  # (cin, cout, k, k)
        w.zero_()
        kern = bilinear_kernel(4)
        cin, cout = w.shape[0], w.shape[1]
        per_out = [0] * cout
        for i in range(cin):
            per_out[i % cout] += 1
        for i in range(cin):
            o = i % cout
            w[i, o] = kern / per_out[o]
        self.deconv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.deconv(x))


class UpsampleShuffle(nn.Sequential):
    """x2 up-sampling by a 3x3 conv to ``4 * cout`` channels and a pixel shuffle."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)


class SkipFuse(nn.Module):
    """Concatenate ``[decoder, skip]`` and fuse with a 1x1 conv initialised to ``decoder + skip``.

    Both inputs have ``channels`` channels, so the addition initialisation is exact (what
    Eilertsen et al. 2017 do, Fig. 3 caption). An optional ``skip_scale`` weights the skip's
    identity (``0`` starts the fusion as a pass-through of the decoder, ``1`` as an addition),
    and ``decoder_scale`` likewise for the decoder branch.
    """

    def __init__(self, channels: int, act: str | None = None, slope: float = 0.2,
                 decoder_scale: float = 1.0, skip_scale: float = 1.0):
        super().__init__()
        self.channels = channels
        self.fuse = nn.Conv2d(2 * channels, channels, 1, bias=True)
        self.act = make_act(act, slope)
        self.reset_addition(decoder_scale, skip_scale)

    @torch.no_grad()
    def reset_addition(self, decoder_scale: float = 1.0, skip_scale: float = 1.0) -> None:
        c = self.channels
        w = torch.zeros(c, 2 * c, 1, 1)
        idx = torch.arange(c)
        w[idx, idx] = decoder_scale
        w[idx, idx + c] = skip_scale
        self.fuse.weight.copy_(w)
        self.fuse.bias.zero_()

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.act(self.fuse(torch.cat([x, skip], dim=1)))


class ResBlock(nn.Module):
    """Residual block ``x + conv(act(conv(x)))`` with 3x3 convs (optionally modulated, see SFT)."""

    def __init__(self, channels: int, act: str = "relu", slope: float = 0.2):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = make_act(act, slope)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class SFTLayer(nn.Module):
    """Spatial feature transform: ``x * (1 + gamma(c)) + beta(c)``, each of ``gamma`` and ``beta``
    a two-layer 1x1 conv head (leaky ReLU between) on the condition features ``c``.

    ``gamma``/``beta`` have the full ``C x H x W`` shape of ``x`` (spatially varying
    modulation, as in HDRUNet, Chen et al. 2021, §3.1).
    """

    def __init__(self, cond_channels: int, channels: int, hidden: int, slope: float = 0.1):
        super().__init__()
        self.scale = nn.Sequential(nn.Conv2d(cond_channels, hidden, 1), nn.LeakyReLU(slope),
                                   nn.Conv2d(hidden, channels, 1))
        self.shift = nn.Sequential(nn.Conv2d(cond_channels, hidden, 1), nn.LeakyReLU(slope),
                                   nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return x * (1.0 + self.scale(cond)) + self.shift(cond)


class SFTResBlock(nn.Module):
    """Residual block whose two 3x3 convs are each preceded by an SFT modulation:
    ``x + conv2(SFT2(relu(conv1(SFT1(x, c))), c))`` (the HDRUNet base-network block, Chen et al.
    2021 §3.1 / Fig. 3). The convs start Kaiming-normal (fan-in) scaled by ``init_scale`` so the
    block starts close to the identity."""

    def __init__(self, channels: int, cond_channels: int, hidden: int, init_scale: float = 0.1):
        super().__init__()
        self.sft1 = SFTLayer(cond_channels, channels, hidden)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.sft2 = SFTLayer(cond_channels, channels, hidden)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2):
                nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
                conv.weight.mul_(init_scale)
                conv.bias.zero_()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(self.sft1(x, cond)))
        return x + self.conv2(self.sft2(h, cond))


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


def frame_max(x: torch.Tensor) -> torch.Tensor:
    """Per-image maximum over channels and pixels: ``(N, 1, 1, 1)``."""
    return torch.amax(x, dim=(1, 2, 3), keepdim=True)


def frame_min(x: torch.Tensor) -> torch.Tensor:
    """Per-image minimum over channels and pixels: ``(N, 1, 1, 1)``."""
    return torch.amin(x, dim=(1, 2, 3), keepdim=True)


def frame_log_mean(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-image geometric mean ``exp(mean(log(x + eps)))``: ``(N, 1, 1, 1)``."""
    return torch.exp(torch.log(x.clamp(min=0.0) + eps).mean(dim=(1, 2, 3), keepdim=True))


# --------------------------------------------------------------------------- padding helpers
def pad_amounts(h: int, w: int, multiple: int) -> tuple[int, int]:
    """Rows and columns to add at the bottom/right so that ``h`` and ``w`` become multiples."""
    return (-h) % multiple, (-w) % multiple


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Pad ``x`` (N, C, H, W) at bottom/right to a multiple of ``multiple``; returns (x, H, W).

    Reflection where the image is large enough, replication otherwise (same rule as
    ``registry.LoadedModel``).
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph, pw = pad_amounts(h, w, multiple)
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


def crop_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return x[..., :h, :w]


# --------------------------------------------------------------------------- FLOP counter
def count_flops(model: nn.Module, shape: tuple[int, ...] = (1, 3, 1088, 1920),
                call: Callable[[nn.Module, torch.Tensor], object] | None = None) -> int:
    """FLOPs (2 x multiply-accumulates) of every ``Conv2d`` and ``ConvTranspose2d`` for one
    forward pass of an input of ``shape``. Element-wise ops, activations and the blend are not
    counted (they are < 1 % of any model here).

    The model is deep-copied onto the ``meta`` device, so no memory or compute is spent even
    at 1080p; ``model`` itself is untouched. ``call(model, x)`` overrides ``model(x)``.
    """
    meta = copy.deepcopy(model).to("meta")
    total = [0]

    def conv_hook(mod: nn.Conv2d, inp, out) -> None:
        kh, kw = mod.kernel_size
        macs = out.numel() * (mod.in_channels // mod.groups) * kh * kw
        total[0] += 2 * macs

    def deconv_hook(mod: nn.ConvTranspose2d, inp, out) -> None:
        kh, kw = mod.kernel_size
        macs = inp[0].numel() * (mod.out_channels // mod.groups) * kh * kw
        total[0] += 2 * macs

    handles = []
    for m in meta.modules():
        if isinstance(m, nn.ConvTranspose2d):
            handles.append(m.register_forward_hook(deconv_hook))
        elif isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
    x = torch.empty(shape, device="meta")
    try:
        with torch.no_grad():
            (call or (lambda m, t: m(t)))(meta, x)
    finally:
        for hd in handles:
            hd.remove()
    return total[0]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "highlight_alpha",
    "make_act", "ConvAct", "scaled", "bilinear_kernel", "UpsampleDeconv", "UpsampleShuffle",
    "SkipFuse", "ResBlock", "SFTLayer", "SFTResBlock", "gaussian_kernel1d", "GaussianBlur", "FastBilateral",
    "frame_max", "frame_min", "frame_log_mean", "pad_amounts", "pad_to_multiple", "crop_to",
    "count_flops", "count_params",
]
