"""Building blocks of the model-zoo part A (``santos``, ``expandnet``, ``moriwaki``, ``singlehdr``)
that :mod:`hdrlift.engine.models.blocks` does not have.

Nothing in here is specific to one network; everything is plain ``torch`` without data-dependent
Python control flow, runs on the ``meta`` device (so :func:`blocks.count_flops` works), and
exports to ONNX opset 17 / traces with TorchScript with ``H`` and ``W`` kept dynamic.

* :func:`soft_exposure_mask` — the soft well-exposedness ramp ``beta`` of Santos et al. 2020
  (seed 003, §3, Fig. 2): 1 below a threshold, falling linearly to 0 at code value 1;
* :class:`SoftMaskedConv2d` — a convolution with feature masking and mask update (Santos et al.
  2020, §3.1, Eq. 2-4);
* :func:`relative_change_mask` — ``|H - f^-1(x)| / max(H, f^-1(x))``, the reconstruction mask of the
  networks that may change every pixel (same definition as ``kim``);
* :class:`UNet` — a plain U-Net (two 3x3 convs + leaky ReLU per level, average-pool down, bilinear
  up, skip concatenation) with a configurable width per level and a linear 1x1 head;
* :class:`BasicResBlock` / :class:`ResNet18Trunk` — the ResNet-18 layout (He et al. 2016) at a
  configurable width, ending in a global average pool;
* :class:`Sobel` and :func:`soft_histogram_maps` — per-pixel edge and histogram-bin feature maps;
* :func:`apply_curve` — a per-image 1-D look-up table (``(N, D)`` samples on ``[0, 1]``) applied
  to every pixel with linear interpolation (a gather, so it exports to ONNX).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hdrlift.engine.colour_maths import srgb_to_linear


# --------------------------------------------------------------------------- masks
def soft_exposure_mask(x: torch.Tensor, threshold: float = 0.96) -> torch.Tensor:
    """Santos et al. 2020 (seed 003), §3 / Fig. 2: ``beta(x) = 1`` for ``x <= threshold``, then a
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


class SoftMaskedConv2d(nn.Module):
    """Convolution with soft feature masking, Santos et al. 2020 (seed 003), §3.1:

    * Eq. 2: ``Z_l = X_l ⊙ M_l`` (features times their mask, element-wise, per channel);
    * Eq. 3: ``X_{l+1} = phi_l(W_l * Z_l + b_l)`` (``phi_l`` is applied by the caller);
    * Eq. 4: ``M_{l+1} = |W_l| / (||W_l||_1 + eps) * M_l`` — the same filter, made non-negative and
      normalised by its l1 norm per output channel (over input channels and taps), convolved with
      the mask with the same stride/padding and **no bias**; ``eps = 1e-6`` (§3.1).

    Since the normalised filter sums to ``1 / (1 + eps / ||W||_1)`` over its taps, a mask in
    ``[0, 1]`` stays in ``[0, 1]`` (zero padding lowers it at the image border, as in the paper's
    Fig. 4). The mask path uses the filter detached from autograd: the masks measure how much of a
    feature comes from valid pixels and are not learnt (§3.1: "the magnitude of the filters is
    irrelevant"). ``self.conv`` is an ``nn.Conv2d`` so :func:`blocks.count_flops` counts the
    feature convolution; the mask convolution costs the same again and is *not* counted.
    """

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, eps: float = 1e-6, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias)
        self.eps = float(eps)

    def mask_filter(self) -> torch.Tensor:
        """``|W| / (||W||_1 + eps)`` with the l1 norm per output channel (Eq. 4)."""
        w = self.conv.weight.detach().abs()
        return w / (w.sum(dim=(1, 2, 3), keepdim=True) + self.eps)

    def update_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Eq. 4 alone."""
        return F.conv2d(mask, self.mask_filter().to(mask.dtype), None, self.conv.stride, self.conv.padding)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W * (x ⊙ mask) + b, M_next)``: Eq. 2-3 without the activation, and Eq. 4."""
        return self.conv(x * mask), self.update_mask(mask)


# --------------------------------------------------------------------------- U-Net
class UNet(nn.Module):
    """U-Net: ``len(widths)`` levels of two 3x3 convs + leaky ReLU (``slope``), 2x2 average pooling
    between levels, bilinear x2 up-sampling, concatenation with the encoder features of the same
    level and two convs again; a linear 1x1 head to ``cout`` channels. Input ``H``, ``W`` must be
    multiples of ``2 ** (len(widths) - 1)``.

    ``zero_head=True`` starts the head at zero (a residual branch that starts as "no change").
    """

    def __init__(self, cin: int, cout: int, widths: tuple[int, ...], slope: float = 0.1,
                 zero_head: bool = False):
        super().__init__()
        if len(widths) < 2:
            raise ValueError("a U-Net needs at least 2 levels")
        self.levels = len(widths)
        self.multiple_of = 2 ** (self.levels - 1)
        self.slope = float(slope)
        enc = []
        c = cin
        for w in widths:
            enc.append(self._pair(c, w))
            c = w
        self.enc = nn.ModuleList(enc)
        dec = []
        for i in range(self.levels - 2, -1, -1):
            dec.append(self._pair(widths[i + 1] + widths[i], widths[i]))
        self.dec = nn.ModuleList(dec)
        self.head = nn.Conv2d(widths[0], cout, 1)
        if zero_head:
            with torch.no_grad():
                self.head.weight.zero_()
                self.head.bias.zero_()

    def _pair(self, cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(self.slope),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(self.slope))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for i, stage in enumerate(self.enc):
            if i > 0:
                h = F.avg_pool2d(h, 2)
            h = stage(h)
            skips.append(h)
        n = len(skips)
        for i, stage in enumerate(self.dec):
            h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
            h = stage(torch.cat([h, skips[n - 2 - i]], dim=1))
        return self.head(h)


# --------------------------------------------------------------------------- ResNet-18
class BasicResBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3x3 conv + BN, ReLU, identity or 1x1-stride shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        s = x if self.short is None else self.short(x)
        return F.relu(h + s)


class ResNet18Trunk(nn.Module):
    """ResNet-18 convolutional trunk: 7x7/2 conv + BN + ReLU, 3x3/2 max pool, four stages of two
    basic blocks (``widths``, stride 2 from the second stage on), global average pool ->
    ``(N, widths[-1])``. ``widths=(64, 128, 256, 512)`` is the original network."""

    def __init__(self, cin: int, widths: tuple[int, int, int, int] = (64, 128, 256, 512)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(cin, widths[0], 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
        stages = []
        c = widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicResBlock(c, w, stride), BasicResBlock(w, w)))
            c = w
        self.stages = nn.Sequential(*stages)
        self.out_channels = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(x))
        return h.mean(dim=(2, 3))


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


__all__ = ["soft_exposure_mask", "relative_change_mask", "SoftMaskedConv2d", "UNet", "BasicResBlock",
           "ResNet18Trunk", "Sobel", "soft_histogram_maps", "apply_curve"]
