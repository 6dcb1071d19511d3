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

What a model *is* (name, paper, kind, padding multiple, weights file, tiling and memory facts)
is a :class:`ModelInfo`; every shipped model's is declared in :mod:`hdrlift.engine.models.catalog`,
with its ``factory`` given as a ``"module:function"`` reference, so listing and looking up models
imports no torch. The network code is imported when a factory is first called, i.e. by
:func:`hdrlift.engine.models.loading.load_model`. Networks whose ``weights`` file is not shipped
are listed but refused by ``load_model`` with a clear message, so users never run an untrained
network by accident.

``LoadedModel``, ``load_model`` and ``load_state`` (torch) live in
:mod:`hdrlift.engine.models.loading` and are importable from here too.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import pathlib
from typing import Any, Callable

from hdrlift.engine.errors import ModelError

DEFAULT_MODEL = "hdrcnn-lite"

TILINGS = ("pointwise", "global", "network")


@dataclasses.dataclass(frozen=True)
class FactoryRef:
    """A model factory named by ``"package.module:function"``, imported on the first call."""

    target: str

    def __post_init__(self) -> None:
        module, sep, attr = self.target.partition(":")
        if not (module and sep and attr):
            raise ValueError(f"a factory reference is 'package.module:function', got {self.target!r}")

    def resolve(self) -> Callable[..., Any]:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    summary: str
    paper: str  # citation, with section/equation
    kind: str  # "network" (single image), "classical" (no weights) or "fusion" (exposure brackets: hdr-merge)
    # builds the torch module: a callable, or a "package.module:function" reference (a FactoryRef)
    factory: Callable[[], Any] | str
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
    # how frames above the pixel budget are tiled (engine/tiling.py): "pointwise" (any tiling is
    # exact, no margin), "global" (frame statistics: never tiled) or "network" (overlapping tiles
    # with a context margin); None: "global" for a classical operator, else "network"
    tiling: str | None = None
    # context pixels around each tile ("network" tiling), about the receptive-field radius that
    # matters; None: tiling.NETWORK_MARGIN
    tile_margin: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.factory, str):
            object.__setattr__(self, "factory", FactoryRef(self.factory))
        if self.tiling is None:
            object.__setattr__(self, "tiling", "global" if self.kind == "classical" else "network")
        if self.tiling not in TILINGS:
            raise ValueError(f"model {self.name!r}: tiling must be one of {TILINGS}, got {self.tiling!r}")

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


@dataclasses.dataclass(frozen=True)
class FusionModelInfo(ModelInfo):
    """``ModelInfo`` of a multi-input fusion net (``kind="fusion"``, run by ``hdr-merge`` on an
    exposure bracket of ``images`` pictures): always needs weights."""

    images: int = 3

    @property
    def needs_weights(self) -> bool:
        return True


_REGISTRY: dict[str, ModelInfo] = {}
_loaded_catalog = False


def register(info: ModelInfo) -> ModelInfo:
    if info.name in _REGISTRY and _REGISTRY[info.name] is not info:
        raise ValueError(f"model {info.name!r} registered twice")
    _REGISTRY[info.name] = info
    return info


def _ensure_loaded() -> None:
    global _loaded_catalog
    if not _loaded_catalog:
        importlib.import_module("hdrlift.engine.models.catalog")  # registers every shipped model
        _loaded_catalog = True


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


LOADING = ("LoadedModel", "load_model", "load_state")  # in .loading, with torch


__all__ = ["DEFAULT_MODEL", "TILINGS", "FactoryRef", "ModelInfo", "FusionModelInfo", "register",
           "available", "get_info"]
