"""Building a registered model with its weights: :func:`load_model` -> :class:`LoadedModel`.

The torch half of the registry (:mod:`hdrlift.engine.models.registry` holds what a model is and
imports no torch). :class:`LoadedModel` pads any input to the model's ``multiple_of`` and crops the
result back, so every model takes any size; weights are safetensors only (never a pickle).
"""

from __future__ import annotations

import pathlib

import torch
import torch.nn.functional as F
from torch import nn

from hdrlift.engine.errors import ModelError
from hdrlift.engine.models.registry import ModelInfo, available, get_info


# --------------------------------------------------------------------------- padding
def pad_amounts(h: int, w: int, multiple: int) -> tuple[int, int]:
    """Rows and columns to add at the bottom/right so that ``h`` and ``w`` become multiples."""
    return (-h) % multiple, (-w) % multiple


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Pad ``x`` (N, C, H, W) at bottom/right to a multiple of ``multiple``; returns (x, H, W).

    Reflection where the image is large enough (reflect needs pad < size), replication otherwise.
    The sizes are not turned into Python ints, so a traced graph (ONNX export) pads any ``H``,
    ``W``.
    """
    h, w = x.shape[-2:]
    ph, pw = pad_amounts(h, w, multiple)
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


def crop_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return x[..., :h, :w]


# --------------------------------------------------------------------------- loading
class LoadedModel(nn.Module):
    """A registered model with its weights, padding the input to the model's multiple."""

    def __init__(self, info: ModelInfo, net: nn.Module):
        super().__init__()
        self.info = info
        self.net = net

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        return pad_to_multiple(x, self.info.multiple_of)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp, h, w = self._pad(x)
        return crop_to(self.net(xp), h, w)

    def reconstruction_mask(self, x: torch.Tensor) -> torch.Tensor:
        fn = getattr(self.net, "reconstruction_mask", None)
        if fn is None:
            return torch.zeros_like(x[:, :1])
        xp, h, w = self._pad(x)
        return crop_to(fn(xp), h, w)


def load_state(net: nn.Module, path: pathlib.Path | str, name: str) -> None:
    """Load safetensors weights into ``net`` strictly (never pickle)."""
    from safetensors.torch import load_file

    path = pathlib.Path(path)
    if path.suffix != ".safetensors":
        raise ModelError(f"weights must be a .safetensors file, got {path.name!r} (pickles are never loaded)")
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise ModelError(f"weights file not found: {path}") from None
    except Exception as exc:  # corrupt header, truncated file
        raise ModelError(f"cannot read weights {path}: {exc}") from None
    adapt = getattr(net, "adapt_to_state_dict", None)
    if adapt is not None:  # a network whose layout follows its weights (HDR-CNN's up-sampling)
        adapt(state)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"weights {path.name} do not match model {name!r}: {first}") from None


def load_model(name: str, device: str | torch.device = "cpu", weights: str | pathlib.Path | None = None) -> LoadedModel:
    """Build model ``name``, load its weights (shipped, or ``weights`` given by the user), eval mode."""
    info = get_info(name)
    net = info.factory()
    if info.needs_weights:
        path = pathlib.Path(weights) if weights else info.weights_path()
        if path is None or not path.is_file():
            if weights:
                raise ModelError(f"weights file not found: {weights}")
            ready = ", ".join(i.name for i in available() if i.runnable)
            raise ModelError(
                f"model {name!r} has no trained weights shipped yet; train it with hdrlift-train "
                f"and pass --weights FILE, or pick one of: {ready}"
            )
        load_state(net, path, name)
    elif weights:
        raise ModelError(f"model {name!r} is a classical operator and takes no weights")
    model = LoadedModel(info, net).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


__all__ = ["LoadedModel", "load_model", "load_state", "pad_amounts", "pad_to_multiple", "crop_to"]
