"""The discriminator and adversarial losses of Moriwaki et al. 2018, "Hybrid loss for learning
single-image-based HDR reconstruction" (§3.2 Eq. 4-5 and §4 "Training").

* **Architecture** (§3.2: "eight convolutional layers and two fully connected layers"; §4: "based
  on [21]", i.e. the SRGAN discriminator of Ledig et al. 2017, "trained from scratch"): 3x3 convs
  with 64, 64, 128, 128, 256, 256, 512, 512 channels and strides 1, 2, 1, 2, 1, 2, 1, 2, leaky
  ReLU (0.2), batch normalisation after every conv but the first; then a fully-connected layer to
  1024, leaky ReLU, and a fully-connected layer to one logit. ``D = sigmoid(logit)``.
  SRGAN flattens a fixed-size map; to accept any patch size we average-pool the last map to
  ``pool x pool`` (default 4: 512 * 16 -> 1024) before the first FC layer — our choice, the paper
  does not give the FC input size (256 x 256 training patches would give 16 x 16 x 512).
* **Input**: the *logarithm* of the HDR image (Eq. 4-5: ``D(log y_hat)``, ``D(log y)``), computed as
  ``log(H + eps)`` with the generator's ``eps = 1/255`` (:func:`log_hdr`), which is exactly
  ``MoriwakiGenerator.forward_log``.
* **Losses**: Eq. 4, the generator's ``L_GAN = sum_j -log D(log y_hat_j)`` (a sum over the
  mini-batch, as printed; weighted by ``alpha = 1e-3`` in Eq. 1), and Eq. 5, the discriminator's
  ``L_D = -1/M sum_j [log(1 - D(log y_hat_j)) + log D(log y_j)]`` — both written on logits with
  ``softplus`` (``-log sigmoid(z) = softplus(-z)``, ``-log(1 - sigmoid(z)) = softplus(z)``), which is
  the same value without overflow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOG_EPS = 1.0 / 255.0
CONV_LAYOUT = ((64, 1), (64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2))


def log_hdr(hdr: torch.Tensor, eps: float = LOG_EPS) -> torch.Tensor:
    """The discriminator's input domain: ``log(max(H, 0) + eps)``."""
    return torch.log(hdr.clamp(min=0.0) + eps)


class MoriwakiDiscriminator(nn.Module):
    """8 conv + 2 FC discriminator (module docstring). ``forward(log_image)`` -> logits ``(N,)``."""

    def __init__(self, in_channels: int = 3, pool: int = 4, slope: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, (ch, stride) in enumerate(CONV_LAYOUT):
            layers.append(nn.Conv2d(c, ch, 3, stride=stride, padding=1, bias=(i == 0)))
            if i > 0:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(nn.LeakyReLU(slope))
            c = ch
        self.features = nn.Sequential(*layers)
        self.pool = int(pool)
        self.fc1 = nn.Linear(c * self.pool * self.pool, 1024)
        self.act = nn.LeakyReLU(slope)
        self.fc2 = nn.Linear(1024, 1)

    def forward(self, log_image: torch.Tensor) -> torch.Tensor:
        h = self.features(log_image)
        h = F.adaptive_avg_pool2d(h, self.pool).flatten(1)
        return self.fc2(self.act(self.fc1(h))).squeeze(1)


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 4: ``sum_j -log D(log y_hat_j)`` over the mini-batch."""
    return F.softplus(-fake_logits).sum()


def discriminator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 5: ``-1/M sum_j [log(1 - D(log y_hat_j)) + log D(log y_j)]``."""
    return (F.softplus(fake_logits) + F.softplus(-real_logits)).mean()


__all__ = ["MoriwakiDiscriminator", "log_hdr", "generator_adversarial_loss", "discriminator_loss", "LOG_EPS"]
