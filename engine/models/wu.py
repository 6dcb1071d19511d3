"""Wu et al. 2018, *Deep HDR imaging with large foreground motions* — as summarised in Qiu's survey
*HDR Image Reconstruction Based on Deep Learning*, §4.1 (Eq. 9-11).

U-Net variant: one encoder per exposure (two 5x5 stride-2 convs, 64 and 128 channels), a merger (5x5
stride-2 convs 256, 512 on the concatenated encoder features), a decoder of 5x5 stride-1/2
transposed convs (256, 128, 64, 64) with skip concatenations (merger and every encoder), a flat 5x5
conv to 3 channels; batch norm except on the first and the output layer, leaky ReLU (0.2) encoding,
ReLU decoding, sigmoid output bounded in [0, 1] (§4.1). Any number of exposures (fixed at
construction, 3 by default); sizes multiple of 16. Inputs and output units:
:mod:`hdrlift.engine.models.bracket_networks`.
"""

from __future__ import annotations

import torch
from torch import nn

from hdrlift.engine.models.bracket_networks import FusionNet, bracket_inputs
from hdrlift.engine.models.registry import get_info

MULTIPLE_OF = 16  # four stride-2 convs


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

    multiple_of = MULTIPLE_OF

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


def wu() -> WuNet:
    return WuNet()


WU_INFO = get_info("wu")

__all__ = ["WuNet", "wu", "MULTIPLE_OF", "WU_INFO"]
