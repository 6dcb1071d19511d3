"""Multi-exposure fusion: learnt mergers of an exposure bracket, and the classical merges.

Networks (survey seed ``001_*.txt`` §3-5), registered with ``kind="fusion"``:

``kalantari``
    Kalantari & Ramamoorthi 2017, *Deep HDR imaging of dynamic scenes* — the **weight estimator
    (WE)** architecture (§3.1): a 4-layer fully convolutional net, kernels decreasing 7, 5, 3, 1
    (channels 100, 100, 50 as in the original paper), ReLU, sigmoid output of one blending weight
    per image and colour channel, merged by Eq. 5 ``H = sum_j alpha_j H_j / sum_j alpha_j``.
    :meth:`FusionNet.forward_tonemapped` gives the mu-law output ``T`` of Eq. 1 (``mu = 5000``)
    on which the loss of Eq. 2 is computed. Three inputs (§3.3).
``wu``
    Wu et al. 2018, *Deep HDR imaging with large foreground motions* (§4.1), U-Net variant: one
    encoder per exposure (two 5x5 stride-2 convs, 64 and 128 channels), a merger (5x5 stride-2
    convs 256, 512 on the concatenated encoder features), a decoder of 5x5 stride-1/2 transposed
    convs (256, 128, 64, 64) with skip concatenations (merger and every encoder), a flat 5x5 conv to
    3 channels; batch norm except on the first and the output layer, leaky ReLU (0.2) encoding,
    ReLU decoding, sigmoid output bounded in [0, 1] (§4.1). Any number of exposures (fixed at
    construction, 3 by default); sizes multiple of 16.
``ahdrnet``
    Yan et al. 2019, *Attention-guided network for ghost-free HDR imaging* (§5): a shared 3x3
    encoding conv (64 channels) for every input, attention modules ``A_i = a_i(Z_i, Z_r)`` (two
    3x3 convs, ReLU then sigmoid, Eq. 12) on each non-reference image, ``Z'_i = A_i . Z_i``
    (Eq. 13), ``Z_s = Concat(Z'_1, Z_2, Z'_3)`` (Eq. 14); merging network: a 3x3 conv, three dilated
    residual dense blocks (6 layers, growth 32, dilation 2), global feature fusion (1x1 + 3x3),
    global residual with the reference features ``Z_r``, two 3x3 convs and a sigmoid (§5.2, Fig. 2).

Inputs, as the papers (§3.1 preprocessing, Eq. 9, §5.1): every image contributes ``X_i = [I_i, H_i]``
(6 channels), ``I_i`` the LDR and ``H_i`` its linearised version brought to the reference exposure.
Our network domain is sRGB code values, so the linearisation is the inverse sRGB curve (the papers
use a 2.2 gamma) and ``H_i = f^-1(I_i) t_ref / t_i``: the reference (the middle image of the
bracket sorted by exposure time, index ``K // 2``) is then exactly ``f^-1(I_ref)``, our output
convention (docs/CONTRACTS.md). The networks bounded in [0, 1] (Wu, AHDRNet, whose HDR is
normalised so the shortest exposure's white is 1, Eq. 9) are scaled by ``t_ref / t_min`` to the same
convention. ``forward(ldr, exposure)``: ``ldr`` ``(N, K, 3, H, W)`` code values, ``exposure``
``(N, K)`` exposure times (any unit; only ratios matter), sorted by increasing time.

The registry's :class:`LoadedModel` runs one image; :func:`load_fusion_model` goes through the
registry's load path (weights, errors) and wraps the net in :class:`FusionModel` (padding of the
whole bracket to ``multiple_of``). :func:`export_fusion_onnx` writes an ONNX file with inputs
``ldr`` and ``exposure``.

Classical merges (numpy), used by ``hdr-merge``:

* :func:`debevec_curve` / :func:`debevec_merge` — Debevec & Malik 1997 (*Recovering HDR radiance
  maps from photographs*; Eq. 1 of seed 002): least squares for ``g = ln f^-1`` with the triangle
  weight and second-difference smoothing, ``g(128) = 0``, solved as one full linear system
  (``numpy.linalg.lstsq``, unknowns ``g`` and ``ln E_i``) on a ``samples x samples`` pixel grid; merge
  by their Eq. 6. Shares its conventions with ``kim.DifferentiableHDRSynthesis``, which must
  reproduce it (tested).
* :func:`robertson_curve` / :func:`robertson_merge` — Robertson, Borman & Stevenson 1999/2003
  (*Estimation-theoretic approach to dynamic range enhancement using multiple exposures*):
  alternate the maximum-likelihood radiance ``E_i = sum_j w t_j I(z_ij) / sum_j w t_j^2`` and the
  response update ``I(m) = mean_{z_ij = m} t_j E_i`` (Gauss-Seidel, as seed 002 §2.1 describes),
  Gaussian-like weight ``exp(-4 (z - 127.5)^2 / 127.5^2)`` (zero at 0 and 255), ``I(128) = 1``;
  levels never observed are interpolated (a ramp to 0 below the lowest). Started from a 2.2 gamma
  curve (a linear start needs hundreds of iterations); 50 iterations. Without a smoothness prior it
  is more sensitive to JPEG noise than Debevec's (see docs/models_zoo_b.md).

Both return the inverse response as a *linear* curve ``(C, levels)`` (``exp(g)`` for Debevec).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hdrlift.engine.atomic import replacing
from hdrlift.engine.colour_maths import MU, mu_law, srgb_to_linear
from hdrlift.engine.errors import InputError, ModelError, OutputError
from hdrlift.engine.models.camera_curve import hat_weight
from hdrlift.engine.models.conv_blocks import DilatedResidualDenseBlock
from hdrlift.engine.models.registry import ModelInfo, get_info, load_model, register

LEVELS = 256
SAMPLES = 20
SMOOTHNESS = 20.0
PAPER_KALANTARI = ("Kalantari & Ramamoorthi 2017, Deep HDR imaging of dynamic scenes, weight estimator "
                   "(survey seed 001, §3.1 Eq. 1-7)")
PAPER_WU = "Wu et al. 2018, Deep HDR imaging with large foreground motions (survey seed 001, §4.1 Eq. 9-11)"
PAPER_AHDR = "Yan et al. 2019, AHDRNet: attention-guided ghost-free HDR imaging (survey seed 001, §5 Eq. 12-15)"


# =========================================================================== networks
def bracket_inputs(ldr: torch.Tensor, exposure: torch.Tensor, ref: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``X_i = [I_i, H_i]`` with ``H_i = f^-1(I_i) t_ref / t_i``: ``(N, K, 6, H, W)``, and the linear
    images ``H`` ``(N, K, 3, H, W)`` themselves."""
    n, k = ldr.shape[:2]
    t = exposure.to(ldr.dtype).view(n, k, 1, 1, 1)
    lin = srgb_to_linear(ldr.clamp(0.0, 1.0)) * (t[:, ref:ref + 1] / t)
    return torch.cat([ldr, lin], dim=2), lin


class FusionNet(nn.Module):
    """Base class: ``forward(ldr, exposure)`` -> linear HDR ``(N, 3, H, W)`` (module docstring)."""

    images = 3
    bounded = True  # output in [0, 1] relative to the shortest exposure's white (Eq. 9)

    @property
    def ref(self) -> int:
        return self.images // 2

    def peak(self, exposure: torch.Tensor) -> torch.Tensor:
        """``t_ref / t_min`` ``(N, 1, 1, 1)``: the value of the shortest exposure's white in our units."""
        t = exposure
        return (t[:, self.ref] / t.amin(dim=1)).view(-1, 1, 1, 1)

    def forward_normalised(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        return self.forward_normalised(ldr, exposure) * self.peak(exposure).to(ldr.dtype)

    def forward_tonemapped(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        """The mu-law tone-mapped output ``T`` (Eq. 1, ``mu = 5000``) of the [0, 1]-normalised HDR,
        on which the papers compute their losses (Eq. 2, 11, 15)."""
        return mu_law(self.forward_normalised(ldr, exposure), MU)

    def reconstruction_mask(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        """``1 - w(I_ref)`` (triangle weight of the reference's brightest channel): where the
        reference is not well exposed and the other images (or the network) fill in."""
        ref = ldr[:, self.ref].clamp(0.0, 1.0)
        return 1.0 - hat_weight(ref.amax(dim=1, keepdim=True) * (LEVELS - 1), LEVELS)


class KalantariWE(FusionNet):
    """Kalantari & Ramamoorthi 2017, weight estimator (module docstring)."""

    bounded = False

    def __init__(self, images: int = 3, widths=(100, 100, 50)):
        super().__init__()
        self.images = int(images)
        c1, c2, c3 = widths
        k = self.images
        self.net = nn.Sequential(
            nn.Conv2d(6 * k, c1, 7, padding=3), nn.ReLU(),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c3, 3 * k, 1), nn.Sigmoid(),
        )

    def weights(self, ldr: torch.Tensor, exposure: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, lin = bracket_inputs(ldr, exposure, self.ref)
        n, k, _, h, w = x.shape
        alpha = self.net(x.reshape(n, k * 6, h, w)).view(n, k, 3, h, w)
        return alpha, lin

    def forward(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        """Eq. 5: ``H = sum_j alpha_j H_j / sum_j alpha_j`` (already in our units)."""
        alpha, lin = self.weights(ldr, exposure)
        return (alpha * lin).sum(dim=1) / alpha.sum(dim=1).clamp(min=1e-6)

    def forward_normalised(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        return self.forward(ldr, exposure) / self.peak(exposure).to(ldr.dtype)


def _conv5(cin: int, cout: int, stride: int = 1, bn: bool = True, act: str = "lrelu") -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 5, stride=stride, padding=2, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2) if act == "lrelu" else nn.ReLU())
    return nn.Sequential(*layers)


def _deconv5(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class WuNet(FusionNet):
    """Wu et al. 2018, U-Net variant (module docstring)."""

    multiple_of = 16

    def __init__(self, images: int = 3, width: float = 1.0):
        super().__init__()
        self.images = int(images)
        k = self.images
        c64, c128, c256, c512 = (max(4, int(round(c * width))) for c in (64, 128, 256, 512))
        self.encoders = nn.ModuleList(
            nn.Sequential(_conv5(6, c64, 2, bn=False), _conv5(c64, c128, 2)) for _ in range(k))
        self.merge1 = _conv5(k * c128, c256, 2)
        self.merge2 = _conv5(c256, c512, 2)
        self.up1 = _deconv5(c512, c256)
        self.up2 = _deconv5(2 * c256, c128)
        self.up3 = _deconv5(c128 + k * c128, c64)
        self.up4 = _deconv5(c64 + k * c64, c64)
        self.out = nn.Conv2d(c64, 3, 5, padding=2)

    def forward_normalised(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        x, _ = bracket_inputs(ldr, exposure, self.ref)
        e1, e2 = [], []
        for i, enc in enumerate(self.encoders):
            a = enc[0](x[:, i])
            e1.append(a)
            e2.append(enc[1](a))
        m1 = self.merge1(torch.cat(e2, dim=1))
        m2 = self.merge2(m1)
        d = self.up1(m2)
        d = self.up2(torch.cat([d, m1], dim=1))
        d = self.up3(torch.cat([d] + e2, dim=1))
        d = self.up4(torch.cat([d] + e1, dim=1))
        return torch.sigmoid(self.out(d))


class AHDRNet(FusionNet):
    """Yan et al. 2019 (module docstring)."""

    def __init__(self, images: int = 3, channels: int = 64, growth: int = 32, blocks: int = 3,
                 layers: int = 6):
        super().__init__()
        self.images = int(images)
        c = channels
        self.encode = nn.Sequential(nn.Conv2d(6, c, 3, padding=1), nn.ReLU())
        self.attention = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.Sigmoid())
            for _ in range(self.images - 1))
        self.head = nn.Conv2d(self.images * c, c, 3, padding=1)
        self.drdbs = nn.ModuleList(DilatedResidualDenseBlock(c, growth, layers, 2) for _ in range(blocks))
        self.gff = nn.Sequential(nn.Conv2d(blocks * c, c, 1), nn.Conv2d(c, c, 3, padding=1))
        self.tail = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, 3, 3, padding=1))

    def forward_normalised(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        x, _ = bracket_inputs(ldr, exposure, self.ref)
        feats = [self.encode(x[:, i]) for i in range(self.images)]
        zr = feats[self.ref]
        att = iter(self.attention)
        stacked = []
        for i, z in enumerate(feats):
            if i == self.ref:
                stacked.append(z)
            else:
                stacked.append(next(att)(torch.cat([z, zr], dim=1)) * z)  # Eq. 12-13
        f = self.head(torch.cat(stacked, dim=1))  # Eq. 14 + first merging conv
        outs = []
        for blk in self.drdbs:
            f = blk(f)
            outs.append(f)
        f = self.gff(torch.cat(outs, dim=1)) + zr
        return torch.sigmoid(self.tail(f))


class FusionModel(nn.Module):
    """A fusion net with its weights: pads the bracket to the net's ``multiple_of``, crops back."""

    def __init__(self, info: ModelInfo, net: FusionNet):
        super().__init__()
        self.info = info
        self.net = net

    def _pad(self, ldr: torch.Tensor):
        """Reflect-pad bottom/right to ``multiple_of``; shape arithmetic stays symbolic when traced
        (no ``int()``), so exported graphs pad any ``H``, ``W``."""
        n, k, c, h, w = ldr.shape
        m = self.info.multiple_of
        if m <= 1:
            return ldr, h, w
        ph = (m - h % m) % m
        pw = (m - w % m) % m
        flat = F.pad(ldr.reshape(n * k, c, h, w), (0, pw, 0, ph), mode="reflect")
        return flat.reshape(n, k, c, flat.shape[-2], flat.shape[-1]), h, w

    def forward(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        xp, h, w = self._pad(ldr)
        return self.net(xp, exposure)[..., :h, :w]

    def reconstruction_mask(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        return self.net.reconstruction_mask(ldr, exposure)


@dataclasses.dataclass(frozen=True)
class FusionModelInfo(ModelInfo):
    """``ModelInfo`` of a multi-input fusion net: always needs weights (the base class only asks
    ``kind == "network"`` for them)."""

    images: int = 3

    @property
    def needs_weights(self) -> bool:
        return True


def load_fusion_model(name: str, device: str | torch.device = "cpu", weights=None) -> FusionModel:
    """Build fusion model ``name`` through the registry's load path (weights check, strict
    safetensors load, eval mode, no grad) and wrap it for brackets."""
    info = get_info(name)
    if info.kind != "fusion":
        raise ModelError(f"model {name!r} is not a multi-exposure fusion model (kind {info.kind!r})")
    loaded = load_model(name, device=device, weights=weights)
    return FusionModel(info, loaded.net).to(device).eval()


def export_fusion_onnx(model: nn.Module, path: str | os.PathLike, images: int = 3, size: tuple[int, int] = (48, 64),
                       opset: int = 17) -> pathlib.Path:
    """ONNX export of a fusion net or :class:`FusionModel`: inputs ``ldr`` ``(N, K, 3, H, W)`` and
    ``exposure`` ``(N, K)``, output ``hdr``; ``N``, ``H``, ``W`` dynamic. Atomic write."""
    out = pathlib.Path(path)
    g = torch.Generator().manual_seed(0)
    ldr = torch.rand(1, images, 3, *size, generator=g)
    exposure = torch.tensor([[2.0 ** (i - images // 2) for i in range(images)]])
    try:
        with replacing(out) as tmp, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (ldr, exposure), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["ldr", "exposure"], output_names=["hdr"],
                              dynamic_axes={"ldr": {0: "batch", 3: "height", 4: "width"}, "exposure": {0: "batch"},
                                            "hdr": {0: "batch", 2: "height", 3: "width"}})
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def kalantari() -> KalantariWE:
    return KalantariWE()


def wu() -> WuNet:
    return WuNet()


def ahdrnet() -> AHDRNet:
    return AHDRNet()


KALANTARI_INFO = register(FusionModelInfo(
    name="kalantari", summary="Kalantari 2017 weight estimator: CNN blending weights for a 3-exposure bracket",
    paper=PAPER_KALANTARI, kind="fusion", factory=kalantari, multiple_of=1, weights="kalantari.safetensors"))
WU_INFO = register(FusionModelInfo(
    name="wu", summary="Wu 2018: per-exposure encoders, merger and decoder (U-Net) for a 3-exposure bracket",
    paper=PAPER_WU, kind="fusion", factory=wu, multiple_of=16, weights="wu.safetensors"))
AHDRNET_INFO = register(FusionModelInfo(
    name="ahdrnet", summary="AHDRNet (Yan 2019): attention modules + dilated residual dense blocks, 3 exposures",
    paper=PAPER_AHDR, kind="fusion", factory=ahdrnet, multiple_of=1, weights="ahdrnet.safetensors"))


# =========================================================================== classical merges
def _as_levels(stack, levels: int = LEVELS) -> np.ndarray:
    """``(J, H, W, C)`` integer levels from uint8/uint16 or float code-value arrays."""
    arr = np.asarray(stack)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise InputError(f"an exposure stack must be J x H x W x C, got shape {arr.shape}")
    if arr.dtype == np.uint8 and levels == 256:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.integer):
        top = float(np.iinfo(arr.dtype).max)
        arr = arr.astype(np.float64) / top
    return np.clip(np.rint(np.asarray(arr, np.float64) * (levels - 1)), 0, levels - 1).astype(np.int64)


def _grid(n: int, samples: int) -> np.ndarray:
    k = np.arange(samples, dtype=np.int64)
    return ((2 * k + 1) * n) // (2 * samples)  # same pixels as camera_curve.grid_indices


def _hat(z: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    zmax = float(levels - 1)
    return np.clip(np.minimum(z, zmax - z) / (zmax / 2.0), 0.0, None)


def _log_times(times, count: int) -> np.ndarray:
    t = np.asarray(times, np.float64).reshape(-1)
    if t.size != count:
        raise InputError(f"{count} images but {t.size} exposure times")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise InputError(f"exposure times must be positive, got {t.tolist()}")
    return np.log(t)


def debevec_curve(stack, times, samples: int = SAMPLES, smoothness: float = SMOOTHNESS,
                  levels: int = LEVELS) -> np.ndarray:
    """Debevec & Malik 1997: ``g = ln f^-1`` per channel, ``(C, levels)``, ``g(levels // 2) = 0``.

    Minimises ``sum_ij w_ij^2 (g(Z_ij) - ln E_i - ln t_j)^2 + lambda^2 sum_z w(z)^2 g''(z)^2`` over the
    pixels of a ``samples x samples`` grid, as one ``lstsq`` over the unknowns ``[g, ln E]``."""
    z = _as_levels(stack, levels)
    j, h, w, c = z.shape
    lt = _log_times(times, j)
    zs = z[:, _grid(h, samples)][:, :, _grid(w, samples)].reshape(j, -1, c)  # (J, P, C)
    p = zs.shape[1]
    mid = levels // 2
    curves = np.empty((c, levels))
    zz = np.arange(1, levels - 1)
    ws = _hat(zz.astype(np.float64), levels) * smoothness
    for ch in range(c):
        zc = zs[:, :, ch]  # (J, P)
        rows = j * p + 1 + (levels - 2)
        a = np.zeros((rows, levels + p))
        b = np.zeros(rows)
        wij = _hat(zc.astype(np.float64), levels)
        r = np.arange(j * p)
        jj, ii = np.divmod(r, p)
        a[r, zc[jj, ii]] = wij[jj, ii]
        a[r, levels + ii] = -wij[jj, ii]
        b[r] = wij[jj, ii] * lt[jj]
        a[j * p, mid] = 1.0
        rs = j * p + 1 + np.arange(levels - 2)
        a[rs, zz - 1] = ws
        a[rs, zz] = -2.0 * ws
        a[rs, zz + 1] = ws
        sol = np.linalg.lstsq(a, b, rcond=None)[0]
        curves[ch] = sol[:levels]
    return curves


def _bounded_merge(vals: np.ndarray, w: np.ndarray, z: np.ndarray, levels: int) -> np.ndarray:
    den = w.sum(axis=0)
    num = (w * vals).sum(axis=0)
    merged = num / np.maximum(den, 1e-6)
    bright = z.mean(axis=0) > (levels - 1) / 2.0
    bound = np.where(bright, vals.max(axis=0), vals.min(axis=0))
    return np.where(den > 1e-6, merged, bound)


def debevec_merge(stack, times, log_curve: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """Debevec & Malik Eq. 6: ``ln E = sum_j w(Z_ij) (g(Z_ij) - ln t_j) / sum_j w(Z_ij)`` per channel;
    pixels with zero weight in every image take the ``max_j`` (clipped) or ``min_j`` (black) of
    ``g(Z_ij) - ln t_j``. Returns ``E`` ``(H, W, C)`` float32."""
    z = _as_levels(stack, levels)
    lt = _log_times(times, z.shape[0])
    g = np.asarray(log_curve, np.float64)
    vals = np.stack([g[ch][z[..., ch]] for ch in range(z.shape[-1])], axis=-1) - lt[:, None, None, None]
    ln_e = _bounded_merge(vals, _hat(z.astype(np.float64), levels), z, levels)
    return np.exp(ln_e).astype(np.float32)


def _robertson_weight(z: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    half = (levels - 1) / 2.0
    w = np.exp(-4.0 * (z - half) ** 2 / half ** 2)
    return np.where((z <= 0) | (z >= levels - 1), 0.0, w)


def _fill_unseen(curve: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Levels no pixel fell on: linear interpolation between observed levels; below the lowest,
    a ramp to zero at level 0 (``I(0) = 0``: no light, no signal); above the highest, the slope of
    the last observed segment."""
    lv = np.arange(curve.size, dtype=np.float64)
    obs = np.flatnonzero(seen)
    out = np.interp(lv, obs, curve[obs])
    lo, hi = obs[0], obs[-1]
    if lo > 0:
        out[:lo] = curve[lo] * lv[:lo] / lo
    if hi < curve.size - 1:
        prev = obs[-2]
        slope = (curve[hi] - curve[prev]) / (hi - prev)
        out[hi + 1:] = curve[hi] + max(slope, 0.0) * (lv[hi + 1:] - hi)
    return out


def robertson_curve(stack, times, iterations: int = 50, max_side: int = 256, levels: int = LEVELS, init_gamma: float = 2.2,
                    tol: float = 1e-7) -> np.ndarray:
    """Robertson et al.: linear inverse response ``I`` per channel ``(C, levels)``, ``I(levels // 2) = 1``,
    estimated on the pixels of a grid of at most ``max_side x max_side``."""
    z = _as_levels(stack, levels)
    j, h, w, c = z.shape
    t = np.exp(_log_times(times, j))
    z = z[:, _grid(h, min(h, max_side))][:, :, _grid(w, min(w, max_side))].reshape(j, -1, c)
    mid = levels // 2
    curves = np.empty((c, levels))
    for ch in range(c):
        zc = z[:, :, ch]  # (J, P)
        wz = _robertson_weight(zc.astype(np.float64), levels)
        curve = (np.arange(levels, dtype=np.float64) / mid) ** init_gamma
        tj = t[:, None]
        counts = np.bincount(zc.ravel(), minlength=levels).astype(np.float64)
        seen = counts > 0
        for _ in range(iterations):
            e = (wz * tj * curve[zc]).sum(0) / np.maximum((wz * tj * tj).sum(0), 1e-30)
            sums = np.bincount(zc.ravel(), weights=(tj * e[None, :]).ravel(), minlength=levels)
            new = np.where(seen, sums / np.maximum(counts, 1.0), 0.0)
            new = _fill_unseen(new, seen) if seen.sum() > 1 else curve
            if new[mid] > 0:
                ref = new[mid]
            else:  # pin the curve where it is positive around the middle code value
                pos = np.flatnonzero(new > 0)
                ref = np.interp(mid, pos, new[pos]) if pos.size else 1.0
            new = new / max(ref, 1e-30)
            done = np.max(np.abs(new - curve)) < tol
            curve = new
            if done:
                break
        curves[ch] = curve
    return curves


def robertson_merge(stack, times, curve: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """Maximum-likelihood radiance ``E = sum_j w t_j I(z) / sum_j w t_j^2`` ``(H, W, C)`` float32;
    pixels with no weight take the clipped/black bound ``I(z) / t_j`` like :func:`debevec_merge`."""
    z = _as_levels(stack, levels)
    t = np.exp(_log_times(times, z.shape[0]))[:, None, None, None]
    cv = np.asarray(curve, np.float64)
    val = np.stack([cv[ch][z[..., ch]] for ch in range(z.shape[-1])], axis=-1)
    w = _robertson_weight(z.astype(np.float64), levels)
    den = (w * t * t).sum(0)
    e = (w * t * val).sum(0) / np.maximum(den, 1e-30)
    ratio = val / t
    bright = z.mean(axis=0) > (levels - 1) / 2.0
    bound = np.where(bright, ratio.max(0), ratio.min(0))
    return np.where(den > 1e-12, e, bound).astype(np.float32)


def scale_to_reference(hdr: np.ndarray, ref_code: np.ndarray) -> np.ndarray:
    """Scale ``hdr`` ``(H, W, C)`` per channel so that the pixels well exposed in the reference image
    (code values ``ref_code`` in [0, 1]) equal the inverse sRGB curve of their code values (our output
    convention): ``s_c = exp(sum w (ln f^-1(ref) - ln E) / sum w)``, ``w`` the triangle weight."""
    ref = np.clip(np.asarray(ref_code, np.float64), 0.0, 1.0)
    lin = srgb_to_linear(ref)
    w = _hat(ref * (LEVELS - 1))
    d = np.log(np.maximum(lin, 1e-6)) - np.log(np.maximum(hdr.astype(np.float64), 1e-30))
    s = (w * d).sum(axis=(0, 1)) / np.maximum(w.sum(axis=(0, 1)), 1e-6)
    return (hdr * np.exp(s)[None, None, :]).astype(np.float32)


def merge_classical(stack, times, method: str = "debevec", curve_stack=None, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Merge a bracket ``(J, H, W, C)`` with ``method`` ``"debevec"`` or ``"robertson"``; returns
    ``(radiance (H, W, C) float32, linear inverse response (C, levels))``. The curve is estimated on
    ``curve_stack`` when given (e.g. the part of an aligned bracket every frame covers)."""
    est = stack if curve_stack is None else curve_stack
    if method == "debevec":
        g = debevec_curve(est, times, **kwargs)
        return debevec_merge(stack, times, g), np.exp(g)
    if method == "robertson":
        cv = robertson_curve(est, times, **kwargs)
        return robertson_merge(stack, times, cv), cv
    raise InputError(f"unknown classical merge {method!r}; choose debevec or robertson")


__all__ = [
    "bracket_inputs", "FusionNet", "KalantariWE", "WuNet", "AHDRNet", "FusionModel", "FusionModelInfo",
    "load_fusion_model", "export_fusion_onnx", "kalantari", "wu", "ahdrnet",
    "KALANTARI_INFO", "WU_INFO", "AHDRNET_INFO",
    "debevec_curve", "debevec_merge", "robertson_curve", "robertson_merge", "scale_to_reference",
    "merge_classical", "LEVELS", "SAMPLES", "SMOOTHNESS",
]
