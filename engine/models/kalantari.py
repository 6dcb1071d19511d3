"""Kalantari & Ramamoorthi 2017, *Deep HDR imaging of dynamic scenes* — as summarised in Qiu's
survey *HDR Image Reconstruction Based on Deep Learning*, §3 (Eq. 1-7).

The **weight estimator (WE)** architecture (§3.1): a 4-layer fully convolutional net, kernels
decreasing 7, 5, 3, 1 (channels 100, 100, 50 as in the original paper), ReLU, sigmoid output of one
blending weight per image and colour channel, merged by Eq. 5 ``H = sum_j alpha_j H_j / sum_j
alpha_j``. :meth:`~hdrlift.engine.models.bracket_networks.FusionNet.forward_tonemapped` gives the
mu-law output ``T`` of Eq. 1 (``mu = 5000``) on which the loss of Eq. 2 is computed. Three inputs
(§3.3). Inputs and output units: :mod:`hdrlift.engine.models.bracket_networks`.
"""

from __future__ import annotations

import torch
from torch import nn

from hdrlift.engine.models.bracket_networks import FusionNet, bracket_inputs
from hdrlift.engine.models.registry import get_info


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


def kalantari() -> KalantariWE:
    return KalantariWE()


KALANTARI_INFO = get_info("kalantari")

__all__ = ["KalantariWE", "kalantari", "KALANTARI_INFO"]
