"""Hybrid-loss generator: "Hybrid loss for learning single-image-based HDR reconstruction".

Moriwaki, Yoshihashi, Kawakami, You, Naemura, 2018 (arXiv:1812.07134).
The paper's contribution is the training: the hybrid loss (§3.2, Eq. 1-6: log-domain
reconstruction loss with under-exposure weights, adversarial loss, VGG19 ``pool5`` perceptual
loss) and the discriminator (8 conv + 2 FC layers, §3.2 / §4) live in ``training/``
(``training/discriminator.py``). This file is the generator they train:

* **Architecture** (§3.2, Fig. 3; §4 "Training"): "an encoder-decoder network with skip
  connections", initialised from "the weights of the trained model of HDR-CNN" — so it *is* the
  HDR-CNN autoencoder of Eilertsen et al. 2017 (Qiu's survey §6.1, Fig. 3, Eq. 18): VGG16
  encoder, deconvolution decoder, skip fusions. We compose :class:`hdrcnn.HDRCNN` (same modules,
  same parameter names, so HDR-CNN weights load as the paper's initialisation).
* **Linearised input** (§3.1, Fig. 2): "we estimate HDR images from raw images, which preserve
  linear relationship to light intensity [...] raw images can be easily recovered from JPEG
  images when the camera response function is known". Our camera response is the sRGB curve
  (the network input domain), so the encoder sees ``x_lin = f^-1(x)`` (code values clamped to
  ``[0, 1]`` first). The input skip connection of HDR-CNN's Eq. 18, ``log(f^-1(D) + eps)``, is
  then ``log(x_lin + eps)``; the encoder skips keep HDR-CNN's transform.
* **Output** (§3.2, Eq. 2, 4-6: every loss is on ``log(y_hat)`` over *all* pixels, and the
  reconstruction loss up-weights the under-exposed ones, Eq. 3): the generator predicts the whole
  image, there is no highlight-only blend as HDR-CNN's Eq. 16. The decoder's log output ``y`` is
  decoded as ``H = exp(y) - eps`` (clamped at 0; ``y`` clamped to ``[log eps, 10]``), so the
  HDR-CNN "do-nothing" initialisation (``y = log(x_lin + eps)``) returns ``f^-1(x)`` exactly,
  our contract's well-exposed value; ``log(H + eps) = y`` is the quantity the losses see.
* **Output stage (ours)**: what the engine returns goes through the shared per-channel stage
  :func:`masks.keep_unclipped` with HDR-CNN's ramp (``tau = 0.95``, Eq. 17 per channel): a channel
  that was not clipped keeps ``f^-1(x_c)``, a clipped one takes ``max(H_c, f^-1(x_c))``. The losses
  still train the whole-image prediction (:meth:`forward_log`, Eq. 2-6); the stage only decides
  which of its values the engine keeps, so that no recorded channel is replaced by a prediction
  (docs/CONTRACTS.md's well-exposed value; ``masks``' docstring). ``full_image=True`` returns
  the paper's whole-image output instead.

``reconstruction_mask(x)`` is the relative change over the inverse sRGB curve
(:func:`masks.relative_change_mask`; with ``full_image=True`` the generator may change any pixel). Inputs must be multiples of 32.
"""

from __future__ import annotations

import torch

from hdrlift.engine.colour_maths import srgb_to_linear
from hdrlift.engine.models.hdrcnn import HDRCNN, LOG_EPS, MULTIPLE_OF
from hdrlift.engine.models.masks import channel_alpha, keep_unclipped, relative_change_mask
from hdrlift.engine.models.registry import get_info


class MoriwakiGenerator(HDRCNN):
    """HDR-CNN with a linearised input and a full-image log output (module docstring)."""

    def __init__(self, width: float = 1.0, eps: float = LOG_EPS, slope: float = 0.2, full_image: bool = False):
        super().__init__(width=width, eps=eps, slope=slope)
        self.full_image = bool(full_image)

    def forward_log(self, x: torch.Tensor) -> torch.Tensor:
        """``y = log(H + eps)`` predicted from the linearised input (§3.1)."""
        lin = srgb_to_linear(x.clamp(0.0, 1.0))
        return self.out_fuse(self.trunk(lin), torch.log(lin + self.eps))

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        """``H = max(exp(y) - eps, 0)`` with ``y`` clamped to ``[log eps, 10]``."""
        return (torch.exp(y.clamp(self.log_eps, self.y_max)) - self.eps).clamp(min=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hdr = self.decode(self.forward_log(x))
        if self.full_image:
            return hdr
        # the per-channel output stage (module docstring), HDR-CNN's tau
        return keep_unclipped(srgb_to_linear(x.clamp(0.0, 1.0)), hdr, channel_alpha(x, self.tau))

    def reconstruction_mask(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruction_mask_from(x, self.forward(x))

    def reconstruction_mask_from(self, x: torch.Tensor, hdr: torch.Tensor) -> torch.Tensor:
        """:meth:`reconstruction_mask` from an output already computed (used by the back ends)."""
        return relative_change_mask(x, hdr)


def moriwaki() -> MoriwakiGenerator:
    return MoriwakiGenerator(width=1.0)


MORIWAKI_INFO = get_info("moriwaki")  # declared in catalog.py
PAPER = MORIWAKI_INFO.paper

__all__ = ["MoriwakiGenerator", "moriwaki", "MULTIPLE_OF", "MORIWAKI_INFO"]
