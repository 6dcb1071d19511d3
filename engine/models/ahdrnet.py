"""Yan et al. 2019, *Attention-guided network for ghost-free HDR imaging* (AHDRNet) — as summarised
in Qiu's survey *HDR Image Reconstruction Based on Deep Learning*, §5 (Eq. 12-15).

A shared 3x3 encoding conv (64 channels) for every input, attention modules ``A_i = a_i(Z_i, Z_r)``
(two 3x3 convs, ReLU then sigmoid, Eq. 12) on each non-reference image, ``Z'_i = A_i . Z_i``
(Eq. 13), ``Z_s = Concat(Z'_1, Z_2, Z'_3)`` (Eq. 14); merging network: a 3x3 conv, three dilated
residual dense blocks (6 layers, growth 32, dilation 2), global feature fusion (1x1 + 3x3), global
residual with the reference features ``Z_r``, two 3x3 convs and a sigmoid (§5.2, Fig. 2). Inputs
and output units: :mod:`hdrlift.engine.models.bracket_networks`.
"""

from __future__ import annotations

import torch
from torch import nn

from hdrlift.engine.models.bracket_networks import FusionNet, bracket_inputs
from hdrlift.engine.models.conv_blocks import DilatedResidualDenseBlock
from hdrlift.engine.models.registry import get_info


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


def ahdrnet() -> AHDRNet:
    return AHDRNet()


AHDRNET_INFO = get_info("ahdrnet")

__all__ = ["AHDRNet", "ahdrnet", "AHDRNET_INFO"]
