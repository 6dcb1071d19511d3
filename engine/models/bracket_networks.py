"""What the exposure-bracket networks (``kalantari``, ``wu``, ``ahdrnet``; ``kind="fusion"``, run by
``hdr-merge``) share: their inputs, their base class, their padding wrapper, loading and ONNX export.

Inputs, as the papers (Qiu's survey *HDR Image Reconstruction Based on Deep Learning*, §3.1
preprocessing, Eq. 9, §5.1): every image contributes ``X_i = [I_i, H_i]`` (6 channels), ``I_i`` the
LDR and ``H_i`` its linearised version brought to the reference exposure. Our network domain is sRGB
code values, so the linearisation is the inverse sRGB curve (the papers use a 2.2 gamma) and
``H_i = f^-1(I_i) t_ref / t_i``: the reference (the middle image of the bracket sorted by exposure
time, index ``K // 2``) is then exactly ``f^-1(I_ref)``, our output convention (docs/CONTRACTS.md).
The networks bounded in [0, 1] (Wu, AHDRNet, whose HDR is normalised so the shortest exposure's
white is 1, Eq. 9) are scaled by ``t_ref / t_min`` to the same convention. ``forward(ldr,
exposure)``: ``ldr`` ``(N, K, 3, H, W)`` code values, ``exposure`` ``(N, K)`` exposure times (any
unit; only ratios matter), sorted by increasing time. :meth:`FusionNet.forward_tonemapped` gives the
mu-law output ``T`` (Eq. 1, ``mu = 5000``) on which the papers' losses are computed.

The registry's ``LoadedModel`` runs one image; :func:`load_fusion_model` goes through the
registry's load path (weights, errors) and wraps the net in :class:`FusionModel` (padding of the
whole bracket to ``multiple_of``). :func:`export_fusion_onnx` writes an ONNX file with inputs
``ldr`` and ``exposure``.
"""

from __future__ import annotations

import os
import pathlib
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from hdrlift.engine.atomic import replacing
from hdrlift.engine.colour_maths import MU, mu_law, srgb_to_linear
from hdrlift.engine.errors import ModelError, OutputError
from hdrlift.engine.models.bracket_merge import LEVELS
from hdrlift.engine.models.camera_curve import hat_weight
from hdrlift.engine.models.loading import load_model
from hdrlift.engine.models.registry import ModelInfo, get_info


def bracket_inputs(ldr: torch.Tensor, exposure: torch.Tensor, ref: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``X_i = [I_i, H_i]`` with ``H_i = f^-1(I_i) t_ref / t_i``: ``(N, K, 6, H, W)``, and the linear
    images ``H`` ``(N, K, 3, H, W)`` themselves."""
    n, k = ldr.shape[:2]
    t = exposure.to(ldr.dtype).view(n, k, 1, 1, 1)
    lin = srgb_to_linear(ldr.clamp(0.0, 1.0)) * (t[:, ref:ref + 1] / t)
    return torch.cat([ldr, lin], dim=2), lin


class FusionNet(nn.Module):
    """Base class: ``forward(ldr, exposure)`` -> linear HDR ``(N, 3, H, W)`` (module docstring)."""

    images = 3
    bounded = True  # output in [0, 1] relative to the shortest exposure's white (Eq. 9)

    @property
    def ref(self) -> int:
        return self.images // 2

    def peak(self, exposure: torch.Tensor) -> torch.Tensor:
        """``t_ref / t_min`` ``(N, 1, 1, 1)``: the value of the shortest exposure's white in our units."""
        t = exposure
        return (t[:, self.ref] / t.amin(dim=1)).view(-1, 1, 1, 1)

    def forward_normalised(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        return self.forward_normalised(ldr, exposure) * self.peak(exposure).to(ldr.dtype)

    def forward_tonemapped(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        """The mu-law tone-mapped output ``T`` (Eq. 1, ``mu = 5000``) of the [0, 1]-normalised HDR,
        on which the papers compute their losses (Eq. 2, 11, 15)."""
        return mu_law(self.forward_normalised(ldr, exposure), MU)

    def reconstruction_mask(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        """``1 - w(I_ref)`` (triangle weight of the reference's brightest channel): where the
        reference is not well exposed and the other images (or the network) fill in."""
        ref = ldr[:, self.ref].clamp(0.0, 1.0)
        return 1.0 - hat_weight(ref.amax(dim=1, keepdim=True) * (LEVELS - 1), LEVELS)


class FusionModel(nn.Module):
    """A fusion net with its weights: pads the bracket to the net's ``multiple_of``, crops back."""

    def __init__(self, info: ModelInfo, net: FusionNet):
        super().__init__()
        self.info = info
        self.net = net

    def _pad(self, ldr: torch.Tensor):
        """Reflect-pad bottom/right to ``multiple_of``; shape arithmetic stays symbolic when traced
        (no ``int()``), so exported graphs pad any ``H``, ``W``."""
        n, k, c, h, w = ldr.shape
        m = self.info.multiple_of
        if m <= 1:
            return ldr, h, w
        ph = (m - h % m) % m
        pw = (m - w % m) % m
        flat = F.pad(ldr.reshape(n * k, c, h, w), (0, pw, 0, ph), mode="reflect")
        return flat.reshape(n, k, c, flat.shape[-2], flat.shape[-1]), h, w

    def forward(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        xp, h, w = self._pad(ldr)
        return self.net(xp, exposure)[..., :h, :w]

    def reconstruction_mask(self, ldr: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        return self.net.reconstruction_mask(ldr, exposure)


def load_fusion_model(name: str, device: str | torch.device = "cpu", weights=None) -> FusionModel:
    """Build fusion model ``name`` through the registry's load path (weights check, strict
    safetensors load, eval mode, no grad) and wrap it for brackets."""
    info = get_info(name)
    if info.kind != "fusion":
        raise ModelError(f"model {name!r} is not a multi-exposure fusion model (kind {info.kind!r})")
    loaded = load_model(name, device=device, weights=weights)
    return FusionModel(info, loaded.net).to(device).eval()


def export_fusion_onnx(model: nn.Module, path: str | os.PathLike, images: int = 3, size: tuple[int, int] = (48, 64),
                       opset: int = 17) -> pathlib.Path:
    """ONNX export of a fusion net or :class:`FusionModel`: inputs ``ldr`` ``(N, K, 3, H, W)`` and
    ``exposure`` ``(N, K)``, output ``hdr``; ``N``, ``H``, ``W`` dynamic. Atomic write."""
    out = pathlib.Path(path)
    g = torch.Generator().manual_seed(0)
    ldr = torch.rand(1, images, 3, *size, generator=g)
    exposure = torch.tensor([[2.0 ** (i - images // 2) for i in range(images)]])
    try:
        with replacing(out) as tmp, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (ldr, exposure), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["ldr", "exposure"], output_names=["hdr"],
                              dynamic_axes={"ldr": {0: "batch", 3: "height", 4: "width"}, "exposure": {0: "batch"},
                                            "hdr": {0: "batch", 2: "height", 3: "width"}})
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


__all__ = ["bracket_inputs", "FusionNet", "FusionModel", "load_fusion_model", "export_fusion_onnx"]
