"""Convolutional building blocks that the networks compose, so that no block is written twice.

Nothing in here is specific to one paper. Everything is plain ``torch`` without data-dependent
Python control flow in ``forward``: it runs on the ``meta`` device (so
:func:`hdrlift.engine.models.measure.count_flops` works), exports to ONNX opset 17 and traces with
TorchScript with ``H`` and ``W`` kept dynamic.

* plain convolutions: :func:`make_act`, :class:`ConvAct` (``Conv2d`` + ReLU / leaky ReLU),
  :func:`scaled` (channel counts at a width), :class:`Swish` / :class:`ConvSwish` (``x *
  sigmoid(x)``, Ramachandran et al. 2017, the activation of Kim et al. 2021 §3.2);
* up-sampling and skips: :class:`UpsampleDeconv` (transposed conv initialised to bilinear),
  :class:`UpsampleResize` (bilinear resize + 3x3 conv initialised to the same bilinear start: no
  checkerboard), :class:`UpsampleShuffle` (conv + pixel shuffle), :class:`SkipFuse` (concat + 1x1 conv initialised
  to an addition);
* residual blocks: :class:`ResBlock`, the spatial feature transform :class:`SFTLayer` and
  :class:`SFTResBlock` (HDRUNet, Chen et al. 2021 §3.1), :class:`DilatedResidualDenseBlock`
  (AHDRNet, Yan et al. 2019, as summarised in Qiu's survey *HDR Image Reconstruction Based on
  Deep Learning*, §5.2);
* conditioning and recurrence: :class:`CondInstanceNorm2d` (conditional instance normalisation,
  Kim et al. 2021 §3.2), :class:`ConvGRUCell` (Siam et al. 2017, cited as [25] by Kim et al.);
* :class:`SoftMaskedConv2d`: convolution with soft feature masking and mask update (Santos et al.
  2020 §3.1 Eq. 2-4);
* trunks: :func:`encoder_features` (a U-Net encoder's features per level), :class:`UNet` (two 3x3
  convs + leaky ReLU per level, average-pool down, bilinear up, skip concatenation, linear 1x1
  head), :class:`BasicResBlock` / :class:`ResNet18Trunk` (the ResNet-18 layout of He et al. 2016 at
  a configurable width, ending in a global average pool).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# --------------------------------------------------------------------------- plain convolutions
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


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class ConvSwish(nn.Sequential):
    """3x3 (or ``k``) ``same`` conv followed by Swish."""

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)
        self.act = Swish()


# --------------------------------------------------------------------------- up-sampling and skips
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


class UpsampleResize(nn.Module):
    """x2 up-sampling without a grid: bilinear resize, then a 3x3 convolution ("resize-convolution",
    Odena, Dumoulin & Olah 2016, "Deconvolution and checkerboard artifacts", Distill).

    A stride-2 transposed convolution gives every output pixel one of four phase-dependent sums of
    its kernel taps, and a trained kernel whose phases disagree draws a fixed pattern with the
    network's stride (the 8-px grid of a GPU fine-tune of ``hdrcnn-lite``, docs/models.md). Here
    every output pixel sees the same kernel over a resized map, so nothing is locked to a phase.
    The convolution starts as the identity on the diagonal ``i -> i mod cout`` (averaged like
    :class:`UpsampleDeconv`), so the block starts as exactly the bilinear up-sampling that the
    deconvolution is initialised to (Eilertsen et al. 2017, Fig. 3 caption). It costs
    ``9 cin cout`` multiply-adds per output pixel against ``4 cin cout`` for the 4x4 deconvolution.
    """

    def __init__(self, cin: int, cout: int, act: str | None = None, slope: float = 0.2):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=True)
        self.act = make_act(act, slope)
        self.reset_bilinear()

    @torch.no_grad()
    def reset_bilinear(self) -> None:
        w = self.conv.weight  # (cout, cin, 3, 3)
        w.zero_()
        cout, cin = w.shape[0], w.shape[1]
        per_out = [0] * cout
        for i in range(cin):
            per_out[i % cout] += 1
        for i in range(cin):
            w[i % cout, i, 1, 1] = 1.0 / per_out[i % cout]
        self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.act(self.conv(x))


UPSAMPLERS = {"resize": UpsampleResize, "deconv": UpsampleDeconv}


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


# --------------------------------------------------------------------------- residual blocks
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


class DilatedResidualDenseBlock(nn.Module):
    """Dilated residual dense block (AHDRNet, Yan et al. 2019; Qiu's survey §5.2, Fig. 2).

    ``layers`` densely connected 3x3 convs with dilation ``dilation`` and ReLU, each adding
    ``growth`` channels to the running concatenation; a 1x1 conv fuses the concatenation back
    to ``channels`` (local feature fusion) and the block's input is added (local residual).
    """

    def __init__(self, channels: int, growth: int = 32, layers: int = 6, dilation: int = 2):
        super().__init__()
        convs = []
        c = channels
        for _ in range(layers):
            convs.append(nn.Conv2d(c, growth, 3, padding=dilation, dilation=dilation))
            c += growth
        self.convs = nn.ModuleList(convs)
        self.fuse = nn.Conv2d(c, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = x
        for conv in self.convs:
            feats = torch.cat([feats, F.relu(conv(feats))], dim=1)
        return x + self.fuse(feats)


# --------------------------------------------------------------------------- conditioning and recurrence
class CondInstanceNorm2d(nn.Module):
    """Conditional instance normalisation: ``Y = gamma_e * (X - mu) / sigma + beta_e``.

    ``mu``/``sigma`` are the per-image, per-channel mean and standard deviation over the spatial
    axes; ``gamma_e, beta_e`` in ``R^C`` are rows ``e`` of two learnt tables with ``conditions``
    rows (Kim et al. 2021 §3.2, one row per target exposure value). The paper prints the formula
    as ``(gamma_e (X - mu) + beta_e) / sigma``; we use the usual form above (Dumoulin et al.
    2017), which keeps ``beta_e`` a shift independent of the feature's contrast.
    ``e`` is a Python int (the recursion index), so a traced graph holds the chosen rows as
    constants.
    """

    def __init__(self, channels: int, conditions: int, eps: float = 1e-5):
        super().__init__()
        self.eps = float(eps)
        self.gamma = nn.Parameter(torch.ones(conditions, channels))
        self.beta = nn.Parameter(torch.zeros(conditions, channels))

    def forward(self, x: torch.Tensor, e: int) -> torch.Tensor:
        mu = x.mean(dim=(2, 3), keepdim=True)
        var = (x - mu).pow(2).mean(dim=(2, 3), keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        g = self.gamma[e].view(1, -1, 1, 1)
        b = self.beta[e].view(1, -1, 1, 1)
        return g * y + b


class ConvGRUCell(nn.Module):
    """Convolutional GRU (Siam et al. 2017):
    ``z = sig(W_z * [x, h])``, ``r = sig(W_r * [x, h])``, ``n = tanh(W_n * [x, r . h])``,
    ``h' = (1 - z) . h + z . n``. ``h=None`` starts from zeros."""

    def __init__(self, cin: int, hidden: int, k: int = 3):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(cin + hidden, 2 * hidden, k, padding=k // 2)
        self.cand = nn.Conv2d(cin + hidden, hidden, k, padding=k // 2)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        if h is None:
            h = torch.zeros_like(x[:, :1]).expand(-1, self.hidden, -1, -1)
        zr = torch.sigmoid(self.gates(torch.cat([x, h], dim=1)))
        z, r = zr[:, : self.hidden], zr[:, self.hidden:]
        n = torch.tanh(self.cand(torch.cat([x, r * h], dim=1)))
        return (1.0 - z) * h + z * n


# --------------------------------------------------------------------------- masked convolution
class SoftMaskedConv2d(nn.Module):
    """Convolution with soft feature masking, Santos et al. 2020 §3.1:

    * Eq. 2: ``Z_l = X_l ⊙ M_l`` (features times their mask, element-wise, per channel);
    * Eq. 3: ``X_{l+1} = phi_l(W_l * Z_l + b_l)`` (``phi_l`` is applied by the caller);
    * Eq. 4: ``M_{l+1} = |W_l| / (||W_l||_1 + eps) * M_l`` — the same filter, made non-negative and
      normalised by its l1 norm per output channel (over input channels and taps), convolved with
      the mask with the same stride/padding and **no bias**; ``eps = 1e-6`` (§3.1).

    Since the normalised filter sums to ``1 / (1 + eps / ||W||_1)`` over its taps, a mask in
    ``[0, 1]`` stays in ``[0, 1]`` (zero padding lowers it at the image border, as in the paper's
    Fig. 4). The mask path uses the filter detached from autograd: the masks measure how much of a
    feature comes from valid pixels and are not learnt (§3.1: "the magnitude of the filters is
    irrelevant"). ``self.conv`` is an ``nn.Conv2d`` so :func:`measure.count_flops` counts the
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


# --------------------------------------------------------------------------- trunks
def encoder_features(stages: nn.ModuleList, x: torch.Tensor, pool) -> list[torch.Tensor]:
    """A U-Net encoder's output at every level: ``stages[0](x)``, then each next stage on the
    previous output down-sampled by ``pool(h, 2)`` (``F.avg_pool2d``, ``F.max_pool2d``)."""
    skips = []
    h = x
    for i, stage in enumerate(stages):
        if i > 0:
            h = pool(h, 2)
        h = stage(h)
        skips.append(h)
    return skips


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
        skips = encoder_features(self.enc, x, F.avg_pool2d)
        h = skips[-1]
        n = len(skips)
        for i, stage in enumerate(self.dec):
            h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
            h = stage(torch.cat([h, skips[n - 2 - i]], dim=1))
        return self.head(h)


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


__all__ = ["make_act", "ConvAct", "scaled", "Swish", "ConvSwish", "bilinear_kernel", "UpsampleDeconv", "UpsampleResize",
           "UPSAMPLERS",
           "UpsampleShuffle", "SkipFuse", "ResBlock", "SFTLayer", "SFTResBlock", "DilatedResidualDenseBlock",
           "CondInstanceNorm2d", "ConvGRUCell", "SoftMaskedConv2d", "encoder_features", "UNet", "BasicResBlock",
           "ResNet18Trunk"]
