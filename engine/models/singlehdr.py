"""SingleHDR: "Single-image HDR reconstruction by learning to reverse the camera pipeline".

Liu, Lai, Chen, Kao, Yang, Chuang, Huang, CVPR 2020 — as summarised by Qiu's survey *HDR Image
Reconstruction Based on Deep Learning*, §7.1 (Eq. 23-24). The losses (``L_deq``, ``L_lin +
lambda_crf L_crf``, ``L_hal`` + perceptual + TV, the joint objective Eq. 24) belong to
``training/``. The pipeline reverses the three steps of LDR image formation (clipping, non-linear
camera response, quantisation) with one sub-network each, plus a refinement:

1. **Dequantization-Net** (§7.1 "Dequantization"): a 6-level U-Net, two convs per level with leaky
   ReLU (0.1), a tanh output in ``[-1, 1]`` *added* to the input: ``I_deq = I + tanh(U(I))``.
2. **Linearization-Net** (§7.1 "Linearization"): a ResNet-18 trunk, global average pooling and
   two fully-connected layers predict ``K`` PCA weights ``w``; the inverse CRF, sampled at
   ``D = 1024`` code values, is ``g = g0 + B w``. Made monotone by Eq. 23: ``g'_1 = 0``,
   ``g'_d = g_d - g_{d-1}``, ``g'_m = min(min_d g'_d, 0)``, ``g~'_d = g'_d - g'_m``,
   ``g~_d = sum_{i<=d} g~'_i / sum_i g~'_i`` (:func:`monotone_inverse_crf`; the shift applies to
   ``d >= 2``, so ``g~_1 = 0``: black stays black). ``I_lin = g~(I_deq)``
   with linear interpolation between the samples (:func:`filters.apply_curve`), the same curve for
   the three channels. As in the original paper the trunk sees the image, its Sobel edges and
   soft histogram maps (4, 8 and 16 bins per channel) concatenated.
3. **Hallucination-Net** (§7.1 "Hallucination"): an encoder-decoder with skip connections whose
   last layer is a ReLU, so the residual ``C(I_lin) >= 0`` ("the missing values in the
   over-exposed regions should always be greater than the existing pixel values"), added in the
   over-exposed regions: ``H = I_lin + alpha ⊙ C(I_lin)``, ``alpha = max(0, I_lin - gamma) / (1 - gamma)``,
   ``gamma = 0.95``, per channel as the survey prints it (no maximum over channels: a channel that
   was not clipped gets no residual; :func:`masks.channel_alpha` on ``I_lin``), clamped to [0, 1].
4. **Refinement-Net** (§7.1 "Refinement"): "the same U-Net architecture as the
   Dequantization-Net", residual learning. We refine in the log domain (the domain of ``L_hal``):
   ``H_ref = exp(log(H + eps) + R([log(H + eps), I_lin, I_deq])) - eps``, ``eps = 1/255``.
5. **Output stage** (ours, shared by every single-image network, :func:`masks.keep_unclipped`):
   ``(1 - alpha) ⊙ I_lin + alpha ⊙ max(H_ref, I_lin)`` with the per-channel ``alpha`` of step 3, so a
   channel that was not clipped keeps its linearised value ``I_lin`` (the refinement would otherwise
   move it, and lift a zero channel by ``eps (e^R - 1)``).

What we had to choose (the survey gives no widths, and the EMoR data are not available here)
---------------------------------------------------------------------------------------------
* **Inverse-CRF basis.** The paper uses the EMoR model (Grossberg & Nayar 2003, mean curve + PCA
  basis of 201 measured response curves, ``K = 11``). Instead we build, in code, a fixed basis:
  ``g0`` = the inverse sRGB curve (so zero weights give exactly our contract's linearisation), and
  ``K = 11`` functions ``sin(k pi x)``, ``k = 1..K``, sampled at the ``D`` points and made exactly
  orthonormal (QR in float64) — smooth deformations that vanish at 0 and 1, which Eq. 23 fixes
  anyway (``g~_1 = 0``, ``g~_D = 1``). Low ``k`` bend the curve like a gamma change, high ``k``
  add finer wiggles; Eq. 23 turns any combination into a monotone curve. Buffers, not parameters
  (the basis is not in the weights file).
* **Widths** (the paper's sub-networks are larger: a VGG16 hallucination autoencoder, a
  full-width ResNet-18): Dequantization-/Refinement-Net U-Nets with 16, 32, 64, 128, 128, 128
  channels; Hallucination-Net a 6-level U-Net with 16, 32, 64, 128, 256, 256 channels (average
  pooling, bilinear up-sampling); ResNet-18 trunk at half width (32, 64, 128, 256), FC 256 -> 256 -> K.
* **Linearization-Net resolution.** The trunk sees the image resized (bilinear) to 256 x 256: the
  CRF is one curve per image and the trunk ends in a global average pool, so this keeps its cost
  independent of the frame size.
* **"Do-nothing" start.** The last layers of the four sub-networks start at zero: ``tanh(0) = 0``,
  ``w = 0`` (``g~ = g0`` = inverse sRGB), ``ReLU(0) = 0`` and ``R = 0``, so an untrained model returns
  the inverse sRGB curve of its input (up to the 1024-sample interpolation, < 1e-6).

``reconstruction_mask(x)`` is the hallucination mask ``alpha`` (its largest channel); :meth:`expand`
returns the HDR image and that mask from one pass (used by the back ends). Inputs must be multiples of 32 (five
poolings in the U-Nets; the registry pads).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hdrlift.engine.colour_maths import srgb_to_linear
from hdrlift.engine.models.conv_blocks import ResNet18Trunk, UNet
from hdrlift.engine.models.filters import Sobel, apply_curve, soft_histogram_maps
from hdrlift.engine.models.masks import channel_alpha, highlight_alpha, keep_unclipped
from hdrlift.engine.models.registry import get_info

CRF_SAMPLES = 1024  # D of Eq. 23
PCA_WEIGHTS = 11  # K (EMoR's, used by the paper)
GAMMA = 0.95  # over-exposure threshold of the hallucination mask
LOG_EPS = 1.0 / 255.0
Y_MAX = 10.0
LIN_SIZE = 256  # the Linearization-Net sees a 256 x 256 resize
HIST_BINS = (4, 8, 16)
DEQ_WIDTHS = (16, 32, 64, 128, 128, 128)
HAL_WIDTHS = (16, 32, 64, 128, 256, 256)
RESNET_WIDTHS = (32, 64, 128, 256)
MULTIPLE_OF = 2 ** (len(DEQ_WIDTHS) - 1)


def crf_basis(samples: int = CRF_SAMPLES, k: int = PCA_WEIGHTS) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g0, B)``: the mean inverse CRF (inverse sRGB, ``(D,)``) and an orthonormal basis ``(D, K)``
    of ``sin(j pi x)``, ``j = 1..K`` on ``x = d / (D - 1)`` (module docstring), float32."""
    x = torch.linspace(0.0, 1.0, samples, dtype=torch.float64)
    g0 = srgb_to_linear(x)
    raw = torch.stack([torch.sin(j * math.pi * x) for j in range(1, k + 1)], dim=1)
    q, r = torch.linalg.qr(raw)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # keep each function's sign
    return g0.float(), q.float()


def monotone_inverse_crf(g: torch.Tensor) -> torch.Tensor:
    """Eq. 23 on curves ``g`` of shape ``(N, D)``: shift the first-order differences so that the
    smallest is 0, integrate and normalise to end at 1. Returns ``(N, D)``, non-decreasing, with
    ``g~_1 = 0`` and ``g~_D = 1``.

    Reading of Eq. 23: ``g'_1 = 0`` is the integration constant, and the shift by ``-g'_m``
    applies to the differences ``d = 2..D``; shifting ``g'_1`` too (the literal reading) would lift
    black to ``-g'_m / sum_i g~'_i > 0`` whenever the raw curve had a negative slope. A constant
    curve (all differences 0) gives all zeros (the sum is guarded by 1e-12).
    """
    d = g[:, 1:] - g[:, :-1]  # g'_d, d = 2..D
    g_m = d.amin(dim=1, keepdim=True).clamp(max=0.0)  # min(min_d g'_d, 0) (g'_1 = 0 included)
    shifted = d - g_m
    total = shifted.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return torch.cat([torch.zeros_like(g[:, :1]), torch.cumsum(shifted, dim=1) / total], dim=1)


class LinearizationNet(nn.Module):
    """ResNet-18 trunk + GAP + two FC layers -> ``K`` PCA weights -> monotone inverse CRF (Eq. 23)."""

    def __init__(self, k: int = PCA_WEIGHTS, samples: int = CRF_SAMPLES, widths=RESNET_WIDTHS,
                 bins=HIST_BINS, size: int = LIN_SIZE):
        super().__init__()
        self.bins = tuple(bins)
        self.size = int(size)
        cin = 3 + 6 + 3 * sum(self.bins)
        self.sobel = Sobel(3)
        self.trunk = ResNet18Trunk(cin, tuple(widths))
        c = self.trunk.out_channels
        self.fc = nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, k))
        with torch.no_grad():
            self.fc[2].weight.zero_()
            self.fc[2].bias.zero_()
        g0, basis = crf_basis(samples, k)
        self.register_buffer("g0", g0, persistent=False)
        self.register_buffer("basis", basis, persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return torch.cat([small, self.sobel(small), soft_histogram_maps(small, self.bins)], dim=1)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The ``K`` PCA weights, ``(N, K)``."""
        return self.fc(self.trunk(self.features(x)))

    def curve(self, w: torch.Tensor) -> torch.Tensor:
        """Monotone inverse CRF ``(N, D)`` (float32) from PCA weights ``(N, K)``: ``g0 + B w``, Eq. 23."""
        g = self.g0.float().unsqueeze(0) + w.float() @ self.basis.float().t()
        return monotone_inverse_crf(g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``I_lin = g~(x)``, same dtype as ``x``."""
        crf = self.curve(self.weights(x))
        return apply_curve(x.float(), crf).to(x.dtype)


class SingleHDR(nn.Module):
    """The whole pipeline (module docstring): dequantization, linearization, hallucination, refinement."""

    def __init__(self, deq_widths=DEQ_WIDTHS, hal_widths=HAL_WIDTHS, resnet_widths=RESNET_WIDTHS,
                 k: int = PCA_WEIGHTS, gamma: float = GAMMA, eps: float = LOG_EPS, lin_size: int = LIN_SIZE):
        super().__init__()
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {gamma}")
        self.gamma = float(gamma)
        self.eps = float(eps)
        self.log_eps = math.log(self.eps)
        self.y_max = float(Y_MAX)
        self.dequantize = UNet(3, 3, tuple(deq_widths), slope=0.1, zero_head=True)
        self.linearize = LinearizationNet(k=k, widths=tuple(resnet_widths), size=lin_size)
        self.hallucinate = UNet(3, 3, tuple(hal_widths), slope=0.1, zero_head=True)
        self.refine = UNet(9, 3, tuple(deq_widths), slope=0.1, zero_head=True)
        self.multiple_of = max(self.dequantize.multiple_of, self.hallucinate.multiple_of)

    # ------------------------------------------------------------------ stages
    def stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate result: ``deq``, ``lin``, ``alpha`` (per channel), ``residual``
        (``C >= 0``), ``hal`` (``H``), ``refined`` (``H_ref``) and ``hdr`` (the output stage), all
        ``(N, 3, H, W)``."""
        deq = x + torch.tanh(self.dequantize(x))
        lin = self.linearize(deq)
        alpha = channel_alpha(lin, self.gamma)
        # clamp, not relu: same values, but gradient 1 at exactly 0, so the zero-initialised last
        # layer of the Hallucination-Net can start learning under the joint loss
        residual = self.hallucinate(lin).clamp(min=0.0)
        hal = lin + alpha * residual
        y = torch.log(hal.clamp(min=0.0) + self.eps)
        r = self.refine(torch.cat([y, lin, deq], dim=1))
        refined = (torch.exp((y + r).clamp(self.log_eps, self.y_max)) - self.eps).clamp(min=0.0)
        hdr = keep_unclipped(lin, refined, alpha)
        return {"deq": deq, "lin": lin, "alpha": alpha, "residual": residual, "hal": hal, "refined": refined,
                "hdr": hdr}

    def expand(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hdr, mask)`` from one pass (the back ends call this when present)."""
        s = self.stages(x)
        return s["hdr"], s["alpha"].amax(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)["hdr"]

    def reconstruction_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The hallucination mask ``alpha`` (on ``I_lin``) of the most saturated channel, ``(N, 1, H, W)``."""
        lin = self.linearize(x + torch.tanh(self.dequantize(x)))
        return highlight_alpha(lin, self.gamma)


def singlehdr() -> SingleHDR:
    return SingleHDR()


SINGLEHDR_INFO = get_info("singlehdr")  # declared in catalog.py
PAPER = SINGLEHDR_INFO.paper

__all__ = ["SingleHDR", "singlehdr", "LinearizationNet", "crf_basis", "monotone_inverse_crf",
           "MULTIPLE_OF", "SINGLEHDR_INFO"]
