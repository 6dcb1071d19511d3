"""The model registry behind `--model`.

Every model, network or classical operator, follows one contract so the pipeline, the server
and the exporters treat them alike:

* input: ``x`` of shape ``(N, 3, H, W)``, float32 (or float16 on CUDA), display code values in
  ``[0, 1]`` encoded as sRGB with Rec.709 primaries (the network domain; see
  ``hdrlift.engine.colour.NETWORK_INPUT_SPACE``);
* output: ``(N, 3, H, W)`` scene-linear Rec.709, scaled so that a well-exposed pixel keeps the
  value of the inverse sRGB curve (display white = 1.0) and clipped regions may rise above 1;
* ``model.reconstruction_mask(x)`` returns ``(N, 1, H, W)`` in ``[0, 1]``: how much each pixel
  was expanded (0 = kept as the inverse camera curve).

A model module registers a :class:`ModelInfo` at import time with :func:`register`. Networks
whose ``weights`` file is not shipped are listed but refused by :func:`load_model` with a
clear message, so users never run an untrained network by accident.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import pathlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hdrlift.engine.errors import ModelError

DEFAULT_MODEL = "hdrcnn-lite"

# Modules that register models when imported. Kept explicit so import order is stable.
_MODEL_MODULES = (
    "hdrlift.engine.models.classical",
    "hdrlift.engine.models.hdrcnn",
    "hdrlift.engine.models.hdrunet",
    "hdrlift.engine.models.santos",
    "hdrlift.engine.models.expandnet",
    "hdrlift.engine.models.moriwaki",
    "hdrlift.engine.models.singlehdr",
    "hdrlift.engine.models.kim",
    "hdrlift.engine.models.kalantari",
    "hdrlift.engine.models.wu",
    "hdrlift.engine.models.ahdrnet",
)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    summary: str
    paper: str  # citation, with section/equation
    kind: str  # "network" (single image), "classical" (no weights) or "fusion" (exposure brackets: hdr-merge)
    factory: Callable[[], nn.Module]
    multiple_of: int = 1  # H and W are padded up to a multiple of this, then cropped back
    weights: str | None = None  # safetensors file name under engine/models/weights/
    version: str = "1"
    # why the model must run in fp32 whatever precision is asked for (None: fp16/bf16 are fine)
    fp32_only: str | None = None
    # the torch back end's default memory format on CUDA (measured per model on an H100:
    # docs/benchmarks.md "On an H100"); an explicit channels_last option overrides it
    channels_last_cuda: bool = True
    # peak CUDA memory per input pixel, bytes, as (fp32, fp16) for the torch back end, measured on an
    # H100 at 4K (docs/benchmarks.md "On an H100"); None: not measured (a cautious default is used)
    cuda_bytes_per_pixel: tuple[int, int] | None = None

    @property
    def needs_weights(self) -> bool:
        return self.kind in ("network", "fusion")

    def weights_path(self) -> pathlib.Path | None:
        if self.weights is None:
            return None
        return pathlib.Path(str(importlib.resources.files("hdrlift.engine.models") / "weights" / self.weights))

    @property
    def has_weights(self) -> bool:
        p = self.weights_path()
        return p is not None and p.is_file()

    @property
    def runnable(self) -> bool:
        return not self.needs_weights or self.has_weights


_REGISTRY: dict[str, ModelInfo] = {}
_loaded_modules = False


def register(info: ModelInfo) -> ModelInfo:
    if info.name in _REGISTRY and _REGISTRY[info.name] is not info:
        raise ValueError(f"model {info.name!r} registered twice")
    _REGISTRY[info.name] = info
    return info


def _ensure_loaded() -> None:
    global _loaded_modules
    if _loaded_modules:
        return
    for mod in _MODEL_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a model file not written yet must not break the rest
            if exc.name != mod:
                raise
    _loaded_modules = True


def available() -> list[ModelInfo]:
    """Every registered model, runnable ones first, then by name."""
    _ensure_loaded()
    return sorted(_REGISTRY.values(), key=lambda i: (not i.runnable, i.name))


def get_info(name: str) -> ModelInfo:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        names = ", ".join(i.name for i in available() if i.runnable)
        raise ModelError(f"unknown model {name!r}; models with weights: {names} (see --list-models)") from None


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
