"""ExpandNet: "A deep convolutional neural network for high dynamic range expansion from low
dynamic range content".

Marnerides, Bashford-Rogers, Hatchett, Debattista, Computer Graphics Forum 37(2) 2018. Known here
through the papers that compare against it: Moriwaki et al. 2018 describe it as "a three-branch
architecture designed for single-step HDR image generation, and the branches are for global,
semi-local, and local feature extraction" (§2) and compare against it (Tables 1-3), as do Santos et
al. 2020 (Table 1 / Fig. 7). The layout
below uses the published architecture facts (paper §3, Fig. 2): no up- or down-sampling outside
the global branch, SELU activations, sigmoid output.

* **Local branch**: two 3x3 convs, 64 then 128 channels, SELU (receptive field 5 x 5).
* **Dilation (semi-local) branch**: four 3x3 convs with dilation 2, 64 channels, SELU on the
  first three (receptive field 17 x 17).
* **Global branch**: the input resized (bilinear) to 256 x 256, six 3x3 stride-2 convs of 64
  channels (256 -> 4) with SELU, then a 4x4 conv without padding down to 1 x 1 x 64; the 64-vector
  is replicated over the image.
* **Fusion**: concatenation (128 + 64 + 64 = 256 channels), a 1x1 conv to 64 with SELU and a 1x1
  conv to 3, sigmoid. 456,899 parameters.

Output domain and our contract (docs/CONTRACTS.md)
--------------------------------------------------
ExpandNet predicts a *normalised* HDR image ``O`` in ``[0, 1]`` (each training target is
min-max normalised), so its absolute scale is unknown. We map it to scene-linear Rec.709 the way
Santos et al. 2020 (Eq. 1) blend their prediction, and with a per-image exposure scale:

1. ``M = beta(T)`` per channel (Santos Fig. 2, ``alpha = 0.96``; :func:`masks.soft_exposure_mask`);
2. scale ``s`` per image: ``log s = sum_i w_i (log f^-1(T_i) - log O_i) / (sum_i w_i + 1e-6)`` over
   every pixel and channel, with weights ``w = M * clamp((T - 0.02) / 0.08, 0, 1)`` (well exposed,
   not in the quantised blacks), i.e. ``s O`` matches the inverse sRGB curve on the well-exposed
   pixels in the log-least-squares sense; an image with no such pixel gets ``s = 1``;
3. ``H = M ⊙ f^-1(T) + (1 - M) ⊙ max(s O, f^-1(T))`` — exact inverse sRGB where ``M = 1`` (per
   channel: a channel that was not clipped keeps its value), the network's expansion in the
   clipped channels, never below their own linearised value (the shared output stage,
   :func:`masks.keep_unclipped`).

``reconstruction_mask(x) = 1 - min_c M``. Any input size (``multiple_of = 1``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hdrlift.engine.colour_maths import srgb_to_linear
from hdrlift.engine.models.masks import keep_unclipped, soft_exposure_mask
from hdrlift.engine.models.registry import get_info

GLOBAL_SIZE = 256  # the global branch sees the image resized to 256 x 256
ALPHA = 0.96  # threshold of the blend mask (Santos et al. 2020, Fig. 2)
DARK_LO, DARK_HI = 0.02, 0.10  # code values ramping the scale weights in above the blacks
PARAMETERS = 456_899


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, padding: int = 1, dilation: int = 1,
          act: bool = True) -> nn.Module:
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation)
    return nn.Sequential(conv, nn.SELU()) if act else conv


class ExpandNet(nn.Module):
    """ExpandNet (module docstring). ``forward_normalised(x)`` is the paper's output ``O`` in
    ``[0, 1]``; ``forward(x)`` the linear HDR of our contract."""

    def __init__(self, alpha: float = ALPHA, global_size: int = GLOBAL_SIZE):
        super().__init__()
        if global_size != 256:
            # six stride-2 convs + a 4x4 valid conv reach 1 x 1 only from 256 x 256
            raise ValueError("the global branch is defined for a 256 x 256 resize")
        self.alpha = float(alpha)
        self.global_size = int(global_size)
        self.local = nn.Sequential(_conv(3, 64), _conv(64, 128))
        self.dilated = nn.Sequential(_conv(3, 64, padding=2, dilation=2), _conv(64, 64, padding=2, dilation=2),
                                     _conv(64, 64, padding=2, dilation=2),
                                     _conv(64, 64, padding=2, dilation=2, act=False))
        glob = [_conv(3, 64, stride=2)] + [_conv(64, 64, stride=2) for _ in range(5)]
        glob.append(_conv(64, 64, k=4, padding=0, act=False))
        self.glob = nn.Sequential(*glob)
        self.fuse = nn.Sequential(_conv(256, 64, k=1, padding=0), _conv(64, 3, k=1, padding=0, act=False))

    def forward_normalised(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's network: normalised HDR ``O`` in [0, 1]."""
        local = self.local(x)
        mid = self.dilated(x)
        small = F.interpolate(x, size=(self.global_size, self.global_size), mode="bilinear", align_corners=False)
        g = self.glob(small).expand_as(mid)
        return torch.sigmoid(self.fuse(torch.cat([local, mid, g], dim=1)))

    def to_contract(self, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """Map ``O`` to linear Rec.709 (module docstring, steps 1-3)."""
        m = soft_exposure_mask(x, self.alpha)
        lin = srgb_to_linear(x)
        # the fit sums over the whole image: float32 even for half/bfloat16 inputs
        xf, mf, lf, of = x.float(), m.float(), lin.float(), o.float()
        w = mf * ((xf - DARK_LO) / (DARK_HI - DARK_LO)).clamp(0.0, 1.0)
        d = torch.log(lf.clamp(min=1e-6)) - torch.log(of.clamp(min=1e-6))
        log_s = (w * d).sum(dim=(1, 2, 3), keepdim=True) / (w.sum(dim=(1, 2, 3), keepdim=True) + 1e-6)
        return keep_unclipped(lin, torch.exp(log_s).to(o.dtype) * o, 1.0 - m)

    def reconstruction_mask(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 - torch.amin(soft_exposure_mask(x, self.alpha), dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_contract(x, self.forward_normalised(x))


def expandnet() -> ExpandNet:
    return ExpandNet()


EXPANDNET_INFO = get_info("expandnet")  # declared in catalog.py
PAPER = EXPANDNET_INFO.paper

__all__ = ["ExpandNet", "expandnet", "PARAMETERS", "EXPANDNET_INFO"]
