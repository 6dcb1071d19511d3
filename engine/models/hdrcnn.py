"""HDR-CNN: "HDR image reconstruction from a single exposure using deep CNNs".

Eilertsen, Kronander, Denes, Mantiuk, Unger, ACM TOG 36(6), 2017 — as summarised in Qiu's survey
*HDR Image Reconstruction Based on Deep Learning*, §6 ("HDR image reconstruction from a single
exposure using deep CNNs"), Eq. 16-18 (model) and Eq. 19-22 (losses, implemented under
``training/``, not here).

Network (survey §6.1, Fig. 3 "hybrid dynamic range autoencoder"):

* **Encoder** — the VGG16 convolutional layout on the LDR display values ``D``:
  conv3-64 x2, pool, conv3-128 x2, pool, conv3-256 x3, pool, conv3-512 x3, pool,
  conv3-512 x3, pool, then one latent conv3-512 at 1/32 resolution. ReLU throughout.
* **Decoder** — five x2 up-sampling stages in the *log HDR* domain, each a 4x4 stride-2
  transposed convolution initialised to bilinear up-sampling (Fig. 3 caption), channels
  512, 512, 256, 128, 64, followed by the skip fusion of the encoder stage at the same
  resolution (conv5_3, conv4_3, conv3_3, conv2_2, conv1_2). Ours by default: a bilinear resize
  followed by a 3x3 convolution initialised to the same bilinear start
  (:class:`conv_blocks.UpsampleResize`, ``upsample="resize"``): a trained transposed convolution
  can draw a checkerboard with the network's stride in large clipped areas (an 8-px grid held a
  GPU fine-tune of ``hdrcnn-lite`` back, docs/models.md), a resize-convolution cannot.
  ``upsample="deconv"`` is the paper's; weights trained with either load into the right one
  (:meth:`HDRCNN.adapt_to_state_dict`).
* **Skip connections, Eq. 18** — ``h~D = sigma(W [h^D, log(f^-1(h^E) + eps)] + b)``: the encoder
  feature is taken to the log-HDR domain, concatenated with the decoder feature and fused by a
  1x1 conv initialised to perform an addition (Fig. 3 caption); ``sigma`` is a leaky ReLU
  (slope 0.2) on the inner stages and the identity on the last one, whose output is log HDR.
* **Input skip** — the first skip, at full resolution, carries the input image itself:
  the last fusion sees ``log(f^-1(D) + eps)`` (3 channels) and a 1x1 projection (64 -> 3) of the
  decoder, and outputs the log-HDR prediction ``y``.
* **Blend, Eq. 16-17, channel by channel** — ``H_c = (1 - alpha_c) f^-1(D_c) + alpha_c max(exp(y_c),
  f^-1(D_c))`` with ``alpha_c = max(0, D_c - tau) / (1 - tau)``, ``tau = 0.95`` by default
  (:func:`masks.keep_unclipped`). The paper takes ``alpha`` on ``max_c(D)``, which makes the network
  re-predict the unclipped channels of a partially clipped pixel (a red flower's green and blue) and
  lifts a zero channel to at least ``exp(log eps)``; we blend per channel (``masks``' docstring says
  why). Where ``alpha_c == 0`` the channel is exactly ``f^-1(D_c)``; the network only fills in
  saturated channels, never below their own linearised value.

Choices of ours, documented here because the survey leaves them open:

* ``f^-1`` (inverse camera curve) is the **inverse sRGB EOTF** (:func:`colour_maths.srgb_to_linear`):
  our network input domain is sRGB code values and our output contract is "a well-exposed pixel
  equals the inverse sRGB curve of its code value" (docs/CONTRACTS.md). The paper uses a gamma
  curve (a simple power); the sRGB curve is the same idea with the standard's linear toe.
  It is applied to the (non-negative, unbounded) encoder features too, as Eq. 18 writes it.
* ``eps = 1/255`` (:data:`LOG_EPS`); the training loss of Eq. 19 must use the same constant.
* The log prediction is clamped to ``[log(eps), Y_MAX]`` before ``exp`` (``exp(10) ~ 22026``,
  about 14.4 stops over display white, safe in float16); :meth:`HDRCNN.forward_log` returns the
  unclamped ``y`` for the losses.
* ``alpha`` is clamped to ``[0, 1]`` (code values above 1 cannot make ``1 - alpha`` negative).
* No batch normalisation (the reference uses it in the decoder); the network trains from
  scratch without a VGG/Places pre-training, and a BN-free graph keeps the exports simple.
* **Do-nothing start** — the 64 -> 3 projection before the last fusion starts at zero and the
  fusion at an addition, so an untrained network predicts ``y = log(f^-1(D) + eps)`` exactly,
  i.e. ``H ~ f^-1(D)`` everywhere: training starts from "no expansion" and only learns the
  highlight expansion.
* ``width`` scales every channel count: 1.0 is the paper's network (``hdrcnn``); 0.25 gives
  16, 32, 64, 128, 128 with a 128-channel latent (``hdrcnn-lite``, for CPUs).

Input ``(N, 3, H, W)`` with ``H`` and ``W`` multiples of 32 (five poolings); the registry's
``LoadedModel`` pads/crops any other size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hdrlift.engine.colour_maths import srgb_to_linear
from hdrlift.engine.models.conv_blocks import UPSAMPLERS, ConvAct, SkipFuse, UpsampleDeconv, scaled
from hdrlift.engine.models.masks import channel_alpha, highlight_alpha, keep_unclipped
from hdrlift.engine.models.registry import get_info

LOG_EPS = 1.0 / 255.0  # eps of Eq. 18 (and Eq. 19 in training)
Y_MAX = 10.0  # clamp of the log prediction before exp: exp(10) ~ 22026 x display white
DEFAULT_TAU = 0.95  # Eq. 17
MULTIPLE_OF = 32  # 2**5 poolings

# VGG16 conv layout: (channels, convs) per stage, then a latent conv at 1/32.
VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
LATENT_CHANNELS = 512


def log_domain(h: torch.Tensor, eps: float = LOG_EPS) -> torch.Tensor:
    """Domain transformation of Eq. 18: ``log(f^-1(h) + eps)`` with ``f^-1`` the inverse sRGB
    curve, computed in float32 (the power of large features overflows float16) and returned in
    the dtype of ``h``. Negative inputs are clamped to 0 first."""
    hf = h.float().clamp(min=0.0)
    return torch.log(srgb_to_linear(hf) + eps).to(h.dtype)


class HDRCNN(nn.Module):
    """The hybrid dynamic range autoencoder of Eilertsen et al. 2017 (see the module docstring).

    ``forward(x)`` returns linear HDR (Eq. 16); ``forward_log(x)`` the unclamped log prediction
    ``y``; ``blend(x, y)`` applies Eq. 16; ``reconstruction_mask(x)`` returns ``alpha`` (Eq. 17).
    """

    def __init__(self, width: float = 1.0, tau: float = DEFAULT_TAU, eps: float = LOG_EPS,
                 slope: float = 0.2, upsample: str = "resize"):
        super().__init__()
        if not 0.0 <= tau < 1.0:
            raise ValueError(f"tau must be in [0, 1), got {tau}")
        if upsample not in UPSAMPLERS:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLERS)}, got {upsample!r}")
        self.upsample = upsample
        self.width = float(width)
        self.tau = float(tau)
        self.eps = float(eps)
        self.log_eps = math.log(self.eps)
        self.y_max = float(Y_MAX)

        # ---- encoder (VGG16 layout)
        stages = []
        cin = 3
        skip_channels = []
        for ch, n in VGG16_STAGES:
            c = scaled(ch, width)
            layers = []
            for _ in range(n):
                layers.append(ConvAct(cin, c, 3, act="relu"))
                cin = c
            stages.append(nn.Sequential(*layers))
            skip_channels.append(c)
        self.encoder = nn.ModuleList(stages)
        c_lat = scaled(LATENT_CHANNELS, width)
        self.latent = ConvAct(cin, c_lat, 3, act="relu")

        # ---- decoder: up-sample to each encoder stage's resolution, fuse its skip (Eq. 18)
        ups = []
        fuses = []
        cin = c_lat
        for c in reversed(skip_channels):
            ups.append(UPSAMPLERS[upsample](cin, c))
            fuses.append(SkipFuse(c, act="lrelu", slope=slope))
            cin = c
        self.up = nn.ModuleList(ups)
        self.fuse = nn.ModuleList(fuses)

        # ---- output: 1x1 projection to 3 channels + fusion with the input skip
        self.to_rgb = nn.Conv2d(cin, 3, 1)
        self.out_fuse = SkipFuse(3, act=None)
        self.reset_do_nothing()

    @torch.no_grad()
    def reset_do_nothing(self) -> None:
        """Zero the last projection and make the last fusion an addition: y = log(f^-1(D) + eps)."""
        self.to_rgb.weight.zero_()
        self.to_rgb.bias.zero_()
        self.out_fuse.reset_addition(1.0, 1.0)

    def set_upsample(self, kind: str) -> None:
        """Rebuild the decoder's up-sampling blocks as ``kind`` (``"resize"`` or ``"deconv"``),
        freshly initialised to bilinear up-sampling; a no-op when they already are."""
        if kind not in UPSAMPLERS:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLERS)}, got {kind!r}")
        if kind == self.upsample:
            return
        ref = next(self.parameters())
        self.up = nn.ModuleList([UPSAMPLERS[kind](*self._up_channels(u)) for u in self.up]).to(ref.device, ref.dtype)
        self.upsample = kind

    @staticmethod
    def _up_channels(block: nn.Module) -> tuple[int, int]:
        if isinstance(block, UpsampleDeconv):
            return block.deconv.in_channels, block.deconv.out_channels
        return block.conv.in_channels, block.conv.out_channels

    def adapt_to_state_dict(self, state: dict) -> None:
        """Match the up-sampling blocks to a state dict before it is loaded (called by
        :func:`loading.load_state`): weights with ``up.N.deconv.*`` keys were trained with the
        paper's transposed convolutions (every ``hdrcnn-lite`` shipped before the resize-convolution
        decoder, and the users' own), ``up.N.conv.*`` with resize-convolutions."""
        if any(k.startswith("up.") and ".deconv." in k for k in state):
            self.set_upsample("deconv")
        elif any(k.startswith("up.") and ".conv." in k for k in state):
            self.set_upsample("resize")

    # ------------------------------------------------------------------ pieces
    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder, latent layers and decoder with the log-domain skip connections of Eq. 18, up to
        the RGB projection (before the final input skip)."""
        skips: list[torch.Tensor] = []
        h = x
        for stage in self.encoder:
            h = stage(h)
            skips.append(log_domain(h, self.eps))
            h = F.max_pool2d(h, 2)
        h = self.latent(h)
        n = len(skips)
        for i, (up, fuse) in enumerate(zip(self.up, self.fuse)):
            h = fuse(up(h), skips[n - 1 - i])
        return self.to_rgb(h)

    def forward_log(self, x: torch.Tensor) -> torch.Tensor:
        """The CNN output ``y`` of Eq. 16 (log linear HDR), unclamped; ``x`` display code values."""
        return self.out_fuse(self.trunk(x), log_domain(x, self.eps))

    def blend(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Eq. 16 per channel: ``(1 - alpha_c) f^-1(D_c) + alpha_c max(exp(y_c), f^-1(D_c))``,
        ``alpha_c`` Eq. 17's ramp on each channel, ``y`` clamped (module docstring)."""
        lin = srgb_to_linear(x)
        expanded = torch.exp(y.clamp(self.log_eps, self.y_max))
        return keep_unclipped(lin, expanded, channel_alpha(x, self.tau))

    def reconstruction_mask(self, x: torch.Tensor) -> torch.Tensor:
        """``alpha`` of Eq. 17 (the largest of the per-channel weights), ``(N, 1, H, W)`` in [0, 1]."""
        return highlight_alpha(x, self.tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blend(x, self.forward_log(x))


def hdrcnn(width: float = 1.0, tau: float = DEFAULT_TAU) -> HDRCNN:
    """The paper's network (``width=1.0``)."""
    return HDRCNN(width=width, tau=tau)


def hdrcnn_lite(tau: float = DEFAULT_TAU) -> HDRCNN:
    """Quarter-width variant for CPUs: channels 16, 32, 64, 128, 128, latent 128."""
    return HDRCNN(width=0.25, tau=tau)


HDRCNN_INFO = get_info("hdrcnn")  # declared in catalog.py, with hdrcnn-lite
HDRCNN_LITE_INFO = get_info("hdrcnn-lite")
PAPER = HDRCNN_INFO.paper

__all__ = ["HDRCNN", "hdrcnn", "hdrcnn_lite", "log_domain", "LOG_EPS", "Y_MAX", "DEFAULT_TAU",
           "MULTIPLE_OF", "HDRCNN_INFO", "HDRCNN_LITE_INFO"]
