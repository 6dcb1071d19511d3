"""Masked-feature U-Net: "Single image HDR reconstruction using a CNN with masked features and
perceptual loss".

Santos, Ren, Kalantari, ACM TOG 39(4) (SIGGRAPH) 2020. The losses (§3.2,
Eq. 5-12: log-l1 reconstruction, VGG and style losses on the mu-law image), the inpainting
pre-training (§3.3) and the patch sampling (§3.4, Algorithm 1) belong to ``training/``.

Following the paper equation by equation:

* **Input mask** (§3, Fig. 2): ``M = beta(T)`` element-wise on the LDR code values ``T`` (per
  channel, ``M`` is ``H x W x C``), ``beta`` equal to 1 up to ``alpha = 0.96`` and falling
  linearly to 0 at 1 (:func:`masks.soft_exposure_mask`).
* **Feature masking in every convolution** (§3.1, Eq. 2-4; §4 "We use the feature masking
  strategy in all the convolutional layers"): ``Z_l = X_l ⊙ M_l`` (Eq. 2),
  ``X_{l+1} = phi_l(W_l * Z_l + b_l)`` (Eq. 3) and ``M_{l+1} = |W_l| / (||W_l||_1 + eps) * M_l``
  with ``eps = 1e-6`` (Eq. 4); ``X_1 = T``, ``M_1 = M`` (:class:`conv_blocks.SoftMaskedConv2d`).
* **Architecture** (§4, Fig. 6): a U-Net in the layout of Liu et al. 2018 (whose inpainting recipe
  §3.3 follows): seven stride-2 encoder convs — 7x7/64, 5x5/128, 5x5/256, then four 3x3/512 — with
  leaky ReLU (slope 0.2; the paper names the function, not the slope); a decoder that up-samples
  features **and** masks by nearest neighbour, concatenates the encoder features and masks of the
  same scale (skip connections "between all the encoder layers and their corresponding decoder
  layers") and applies a masked 3x3 conv — 512, 512, 512, 256, 128, 64 channels with ReLU, then
  3 channels with a linear activation at full resolution (the last skip is the input ``T`` and its
  mask ``M``). No batch normalisation (the paper mentions none). Xavier initialisation (§4).
* **Output** (§3, Eq. 1): ``H = M ⊙ T^gamma + (1 - M) ⊙ [exp(Y) - 1]``, ``Y`` the network output in
  the ``log(H + 1)`` domain (the domain of the loss, Eq. 6). ``M`` is per channel, so a channel
  that was not clipped keeps its linearised value; through the shared output stage
  (:func:`masks.keep_unclipped`, with ``alpha = 1 - M``) the expansion of a clipped channel is also
  bounded below by its own linearised value (ours; ``masks``' docstring).

Our domains (docs/CONTRACTS.md): the paper linearises the well-exposed input with ``gamma = 2.0``;
our contract is the inverse sRGB curve, so Eq. 1 uses ``f^-1(T)`` (sRGB EOTF) instead of ``T^2``:
a pixel with ``M = 1`` comes out *exactly* as the inverse sRGB curve of its code value. ``Y`` is
clamped to ``[0, 10]`` before the exponential (``exp(10) - 1 ~ 22025`` x display white), so
``exp(Y) - 1 >= 0`` and ``0 * inf`` never occurs.

``reconstruction_mask(x) = 1 - min_c M`` (how much of the most saturated channel the network
replaced). Inputs must be multiples of 128 (seven stride-2 convs; the registry pads).
``width`` scales every channel count (1.0 = the paper).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hdrlift.engine.colour_maths import srgb_to_linear
from hdrlift.engine.models.conv_blocks import SoftMaskedConv2d, scaled
from hdrlift.engine.models.masks import keep_unclipped, soft_exposure_mask
from hdrlift.engine.models.registry import get_info

ALPHA = 0.96  # threshold of beta (Fig. 2)
MASK_EPS = 1e-6  # eps of Eq. 4
Y_MAX = 10.0  # clamp of the log(H + 1) prediction before exp
LRELU_SLOPE = 0.2
# (kernel, channels) of the seven stride-2 encoder convs (Fig. 6)
ENCODER = ((7, 64), (5, 128), (5, 256), (3, 512), (3, 512), (3, 512), (3, 512))
MULTIPLE_OF = 2 ** len(ENCODER)


class SantosHDR(nn.Module):
    """The masked-feature U-Net (module docstring). ``forward(x)`` returns linear HDR (Eq. 1),
    ``forward_log1p(x)`` the network output ``Y`` (``log(H + 1)`` domain; named so that
    it is not mistaken for HDR-CNN's ``log(H + eps)`` ``forward_log``), ``input_mask(x)`` ``M``."""

    def __init__(self, width: float = 1.0, alpha: float = ALPHA, eps: float = MASK_EPS):
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        self.alpha = float(alpha)
        self.y_max = float(Y_MAX)
        enc = []
        chans = []
        cin = 3
        for k, ch in ENCODER:
            c = scaled(ch, width)
            enc.append(SoftMaskedConv2d(cin, c, k, stride=2, eps=eps))
            chans.append(c)
            cin = c
        self.enc = nn.ModuleList(enc)
        # decoder: at level i (from the bottom) concat up(h) with encoder output i-1 (or the input)
        skips = [3] + chans[:-1]
        dec = []
        c = chans[-1]
        for i in range(len(ENCODER) - 1, -1, -1):
            cout = skips[i] if i > 0 else 3
            dec.append(SoftMaskedConv2d(c + skips[i], cout, 3, stride=1, eps=eps))
            c = cout
        self.dec = nn.ModuleList(dec)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Xavier initialisation (§4), zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ pieces
    def input_mask(self, x: torch.Tensor) -> torch.Tensor:
        """``M = beta(T)`` (§3, Fig. 2), ``(N, 3, H, W)``."""
        return soft_exposure_mask(x, self.alpha)

    def first_layer(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Z_1, X_2, M_2)`` of Eq. 2-4 for the first layer (exposed for tests and analysis)."""
        m = self.input_mask(x)
        z = x * m
        feat, m2 = self.enc[0](x, m)
        return z, F.leaky_relu(feat, LRELU_SLOPE), m2

    def forward_log1p(self, x: torch.Tensor) -> torch.Tensor:
        """The network output ``Y`` (log(H + 1) domain), unclamped."""
        m = self.input_mask(x)
        feats = [x]
        masks = [m]
        h, hm = x, m
        for conv in self.enc:
            h, hm = conv(h, hm)
            h = F.leaky_relu(h, LRELU_SLOPE)
            feats.append(h)
            masks.append(hm)
        n = len(self.dec)
        for i, conv in enumerate(self.dec):
            skip, skip_m = feats[n - 1 - i], masks[n - 1 - i]
            h = torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skip], dim=1)
            hm = torch.cat([F.interpolate(hm, scale_factor=2.0, mode="nearest"), skip_m], dim=1)
            h, hm = conv(h, hm)
            if i < n - 1:
                h = F.relu(h)
        return h

    def blend(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Eq. 1 with ``f^-1`` = inverse sRGB: ``M ⊙ f^-1(T) + (1 - M) ⊙ max(exp(Y) - 1, f^-1(T))``."""
        m = self.input_mask(x)
        expanded = torch.exp(y.clamp(0.0, self.y_max)) - 1.0  # (expm1 has no ONNX opset-17 op)
        return keep_unclipped(srgb_to_linear(x), expanded, 1.0 - m)

    def reconstruction_mask(self, x: torch.Tensor) -> torch.Tensor:
        """``1 - min_c M``: ``(N, 1, H, W)`` in [0, 1]."""
        return 1.0 - torch.amin(self.input_mask(x), dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blend(x, self.forward_log1p(x))


def santos() -> SantosHDR:
    return SantosHDR()


SANTOS_INFO = get_info("santos")  # declared in catalog.py
PAPER = SANTOS_INFO.paper

__all__ = ["SantosHDR", "santos", "ALPHA", "MULTIPLE_OF", "SANTOS_INFO"]
