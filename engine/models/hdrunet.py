"""HDRUNet: "Single image HDR reconstruction with denoising and dequantization".

Chen, Liu, Zhang, Qiao, Dong, CVPR Workshops (NTIRE) 2021, §3 (network) and §4.1 (implementation
details). The ``Tanh_L1`` loss of Eq. 3 belongs to ``training/``.

Three sub-networks all take the LDR image ``I`` (§3.1, Fig. 3):

* **Base network** ``G`` — a UNet with 64 channels at three scales: a 3x3 conv, an SFT layer and
  a 3x3 conv at full resolution; a stride-2 conv down to 1/2 and 2 residual blocks; a stride-2
  conv down to 1/4 and ``N = 8`` residual blocks (§4.1) with a skip around them; pixel-shuffle
  up-sampling (§4.1) to 1/2 with the 1/2 features added, 2 residual blocks; pixel shuffle to
  full resolution with the full-resolution features added, an SFT layer, a 3x3 conv and the
  3-channel output conv. Every residual block modulates both of its convs with SFT.
* **Condition network** — maps ``I`` to shared condition features (a 3x3 conv and two 1x1
  convs, leaky ReLU 0.1) and three heads that give 32-channel condition maps at full, 1/2 and
  1/4 resolution (strided convs), one per scale of the base network.
* **SFT, Eq. 1** — ``SFT(x) = alpha ⊙ x + beta`` with ``alpha, beta`` of size ``C x H x W``
  (spatially varying and per channel, §4.2 / Table 4), predicted from the condition map by two
  1x1 heads; written ``x * (1 + gamma) + beta`` so a zero head is the identity.
* **Weighting network, Eq. 2** — four convs (3x3, 3x3, 1x1, 1x1, ReLU) predict ``W``, and the
  output is ``Y = W ⊙ I + G(I)``.

The sizes (channels, kernel sizes, the 32-channel condition maps and 32-channel SFT hidden
layer, the 2/8/2 residual blocks) follow the authors' public code, and the model has exactly
**1,651,494** parameters, as theirs (asserted by ``tests/engine/test_models_single_image.py``). The
module names are ours, so the authors' checkpoint needs a key mapping to load.

Domains (how the paper maps to our contract, docs/CONTRACTS.md)
---------------------------------------------------------------
The paper trains on NTIRE 2021 pairs "stored after gamma correction (i.e. non-linear)" (§4.1):
the input is the 8-bit non-linear LDR in [0, 1] and the output ``Y`` is the *non-linear*
(gamma-encoded, 16-bit) HDR aligned to the LDR exposure, so it can exceed 1 in highlights; the
challenge's encoding is a 2.24 gamma (§4.3 applies gamma 2.24 to linear methods).
Our network input is sRGB code values (close to that gamma), so ``x`` goes in unchanged and the
encoded output is decoded with ``output_transfer``:

* ``"srgb"`` (default, what ``training/`` targets): ``H = f^-1(max(Y, 0))`` with the inverse sRGB
  curve extended above 1, so a pixel the network leaves alone (``Y = I``) comes out exactly as
  the inverse sRGB curve of its code value, our output convention;
* ``"gamma2.24"``: ``H = max(Y, 0) ^ 2.24``, for weights trained on the NTIRE data as published.

What the engine returns (``forward``) then goes through the shared per-channel output stage
:func:`masks.keep_unclipped` with HDR-CNN's ramp (``tau = 0.95`` per channel, ours): a channel that
was not clipped keeps ``f^-1(x_c)``, a clipped one takes ``max(H_c, f^-1(x_c))``. The paper's network
re-predicts every pixel (it denoises and dequantises too, §3); our contract keeps what the camera
recorded (docs/CONTRACTS.md), and the re-predicted well-exposed pixels cost the shipped weights
more than they gained (``docs/models.md``). The loss (Eq. 3, on :meth:`forward_encoded`) still
trains the whole image; ``full_image=True`` returns the paper's whole-image output.

:meth:`HDRUNet.forward_encoded` returns ``Y`` itself (for the paper's loss). Down-sampling is by
two stride-2 convs, so inputs must be multiples of 4 (``multiple_of=4``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hdrlift.engine.colour_maths import srgb_to_linear
from hdrlift.engine.models.conv_blocks import SFTLayer, SFTResBlock, UpsampleShuffle
from hdrlift.engine.models.masks import channel_alpha, keep_unclipped
from hdrlift.engine.models.registry import get_info

PARAMETERS = 1_651_494  # the authors' model size
MULTIPLE_OF = 4  # two stride-2 down-samplings
OUTPUT_TRANSFERS = ("srgb", "gamma2.24")
OUTPUT_TAU = 0.95  # per-channel ramp of the output stage (HDR-CNN Eq. 17, per channel)


class HDRUNet(nn.Module):
    """HDRUNet (see the module docstring). ``forward(x)`` returns linear HDR; ``forward_encoded``
    the paper's non-linear output ``Y`` of Eq. 2."""

    def __init__(self, nf: int = 64, cond_nf: int = 64, cond_maps: int = 32, blocks=(2, 8, 2),
                 output_transfer: str = "srgb", full_image: bool = False):
        super().__init__()
        self.full_image = bool(full_image)
        if output_transfer not in OUTPUT_TRANSFERS:
            raise ValueError(f"output_transfer must be one of {OUTPUT_TRANSFERS}, got {output_transfer!r}")
        self.srgb_output = output_transfer == "srgb"
        lrelu = 0.1

        # ---- condition network: shared features, then one head per scale (full, 1/2, 1/4)
        self.cond_trunk = nn.Sequential(
            nn.Conv2d(3, cond_nf, 3, padding=1), nn.LeakyReLU(lrelu),
            nn.Conv2d(cond_nf, cond_nf, 1), nn.LeakyReLU(lrelu),
            nn.Conv2d(cond_nf, cond_nf, 1), nn.LeakyReLU(lrelu),
        )
        self.cond_full = nn.Sequential(
            nn.Conv2d(cond_nf, cond_nf, 1), nn.LeakyReLU(lrelu), nn.Conv2d(cond_nf, cond_maps, 1))
        self.cond_half = nn.Sequential(
            nn.Conv2d(cond_nf, cond_nf, 3, stride=2, padding=1), nn.LeakyReLU(lrelu),
            nn.Conv2d(cond_nf, cond_maps, 1))
        self.cond_quarter = nn.Sequential(
            nn.Conv2d(cond_nf, cond_nf, 3, stride=2, padding=1), nn.LeakyReLU(lrelu),
            nn.Conv2d(cond_nf, cond_maps, 3, stride=2, padding=1))

        # ---- weighting network (Eq. 2)
        self.weighting = nn.Sequential(
            nn.Conv2d(3, nf, 3, padding=1), nn.ReLU(),
            nn.Conv2d(nf, nf, 3, padding=1), nn.ReLU(),
            nn.Conv2d(nf, nf, 1), nn.ReLU(),
            nn.Conv2d(nf, 3, 1),
        )

        # ---- base network (UNet with SFT-modulated residual blocks)
        n1, n2, n3 = blocks
        self.head = nn.Conv2d(3, nf, 3, padding=1)
        self.head_sft = SFTLayer(cond_maps, nf, cond_maps, slope=lrelu)
        self.head_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.down1 = nn.Conv2d(nf, nf, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(nf, nf, 3, stride=2, padding=1)
        self.enc_blocks = nn.ModuleList([SFTResBlock(nf, cond_maps, cond_maps) for _ in range(n1)])
        self.mid_blocks = nn.ModuleList([SFTResBlock(nf, cond_maps, cond_maps) for _ in range(n2)])
        self.dec_blocks = nn.ModuleList([SFTResBlock(nf, cond_maps, cond_maps) for _ in range(n3)])
        self.up1 = UpsampleShuffle(nf, nf)
        self.up2 = UpsampleShuffle(nf, nf)
        self.tail_sft = SFTLayer(cond_maps, nf, cond_maps, slope=lrelu)
        self.tail_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.tail = nn.Conv2d(nf, 3, 3, padding=1)

    def forward_encoded(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 2: ``Y = W ⊙ I + G(I)``, the non-linear HDR of the paper (may exceed 1)."""
        cond = self.cond_trunk(x)
        c_full = self.cond_full(cond)
        c_half = self.cond_half(cond)
        c_quarter = self.cond_quarter(cond)

        f0 = F.relu(self.head(x))
        f0 = F.relu(self.head_conv(self.head_sft(f0, c_full)))
        f1 = F.relu(self.down1(f0))
        for blk in self.enc_blocks:
            f1 = blk(f1, c_half)
        f2 = F.relu(self.down2(f1))
        h = f2
        for blk in self.mid_blocks:
            h = blk(h, c_quarter)
        h = h + f2
        h = F.relu(self.up1(h)) + f1
        for blk in self.dec_blocks:
            h = blk(h, c_half)
        h = F.relu(self.up2(h)) + f0
        h = F.relu(self.tail_conv(self.tail_sft(h, c_full)))
        g = self.tail(h)
        return self.weighting(x) * x + g

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        """Non-linear HDR ``Y`` -> scene-linear (see "Domains" in the module docstring)."""
        y = y.clamp(min=0.0)
        if self.srgb_output:
            return srgb_to_linear(y)
        return y ** 2.24

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hdr = self.decode(self.forward_encoded(x))
        if self.full_image:
            return hdr
        # the per-channel output stage (module docstring)
        return keep_unclipped(srgb_to_linear(x.clamp(0.0, 1.0)), hdr, channel_alpha(x, OUTPUT_TAU))

    def reconstruction_mask(self, x: torch.Tensor) -> torch.Tensor:
        """Relative expansion over the inverse sRGB curve, ``clamp((H - f^-1(D)) / H, 0, 1)``
        averaged over the channels (0 = kept, 1 = all of the value was added)."""
        return self.reconstruction_mask_from(x, self.forward(x))

    def reconstruction_mask_from(self, x: torch.Tensor, hdr: torch.Tensor) -> torch.Tensor:
        """:meth:`reconstruction_mask` from an output already computed: the back ends call this,
        so the mask costs no second pass through the network."""
        lin = srgb_to_linear(x).clamp(min=0.0)
        rel = ((hdr - lin) / hdr.clamp(min=1e-6)).clamp(0.0, 1.0)
        return rel.mean(dim=1, keepdim=True)


def hdrunet() -> HDRUNet:
    return HDRUNet()


HDRUNET_INFO = get_info("hdrunet")  # declared in catalog.py
PAPER = HDRUNET_INFO.paper

__all__ = ["HDRUNet", "hdrunet", "PARAMETERS", "MULTIPLE_OF", "HDRUNET_INFO"]
