"""The graphs the back ends and hosts run: ONNX (fp32, or fp16 for strongly typed TensorRT builds)
and TorchScript for Nuke's Inference node (CatFileCreator), exported from a registered model.

Every export goes through :class:`hdrlift.engine.backends.base.InferenceWrapper`, so the file
pads to the model's ``multiple_of`` itself and accepts any ``H`` and ``W``:

* ONNX (opset 17): input ``ldr`` ``(N, 3, H, W)``, outputs ``hdr`` ``(N, 3, H, W)`` and ``mask``
  ``(N, 1, H, W)``; ``N``, ``H``, ``W`` dynamic. ``fp16=True`` casts the module to half before
  the export, so inputs, weights and outputs are float16 (what a TensorRT *strongly typed*
  network needs: the ONNX types decide every layer's precision).
* TorchScript: one ``1 x 3 x H x W`` float input (sRGB code values), one ``1 x 3 x H x W`` output
  (linear Rec.709): the form Nuke's CatFileCreator wraps into a ``.cat`` file.

All writes are atomic (temporary name in the target folder, then ``os.replace``).
:func:`cached_onnx` keeps one export per model, weights, opset and precision in the cache folder
(the file onnxruntime runs and TensorRT parses). TensorRT plans are built by
:func:`hdrlift.engine.backends.trt_backend.build_plan`; the ``hdrlift-export`` command
(:mod:`hdrlift.engine.export`) writes any of them.
"""

from __future__ import annotations

import contextlib
import copy
import os
import pathlib
import warnings
from typing import Iterator

import torch

from hdrlift.engine.atomic import replacing
from hdrlift.engine.backends.base import INPUT_NAME, OUTPUT_NAMES, InferenceWrapper, default_cache_dir, export_key
from hdrlift.engine.errors import HdrliftError, ModelError, OutputError
from hdrlift.engine.models.loading import LoadedModel, load_model

DEFAULT_OPSET = 17
TRACE_SIZE = 64  # side of the example input the tracer sees (H, W stay dynamic)


def _model(model: str | LoadedModel, weights) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    return load_model(model, device="cpu", weights=weights)


@contextlib.contextmanager
def _exporting(out: pathlib.Path, what: str, name: str) -> Iterator[pathlib.Path]:
    """A temporary path next to ``out`` (:func:`hdrlift.engine.atomic.replacing`), renamed onto
    ``out`` when the block succeeds; failures become one-line errors: :class:`OutputError` for the
    file system, :class:`ModelError` ("<what> export of <name> failed") for anything else."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {out.parent}: {exc.strerror or exc}") from None
    if not os.access(out.parent, os.W_OK):
        raise OutputError(f"folder {out.parent} is not writable")
    try:
        with replacing(out) as tmp:
            yield tmp
    except HdrliftError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    except Exception as exc:
        raise ModelError(f"{what} export of {name!r} failed: {exc}") from None


def _example(model: LoadedModel, dtype: torch.dtype) -> torch.Tensor:
    side = max(TRACE_SIZE, model.info.multiple_of)
    side += model.info.multiple_of // 2 if model.info.multiple_of > 1 else 0  # exercise the padding
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, side, side + 2 * (model.info.multiple_of > 1), generator=g).to(dtype)


def export_onnx(model: str | LoadedModel, path: str | os.PathLike, weights: str | os.PathLike | None = None,
                opset: int = DEFAULT_OPSET, fp16: bool = False, dynamic: bool = True) -> pathlib.Path:
    """Export ``model`` (a registered name, or a :class:`LoadedModel`) to ONNX at ``path``."""
    loaded = _model(model, weights)
    dtype = torch.float16 if fp16 else torch.float32
    # a copy for fp16: .half() works in place and the caller's model must stay float32
    wrapper = InferenceWrapper(copy.deepcopy(loaded) if fp16 else loaded).eval().to(dtype)
    x = _example(loaded, dtype)
    out = pathlib.Path(path)
    axes = {0: "batch", 2: "height", 3: "width"}
    dyn = {INPUT_NAME: axes, OUTPUT_NAMES[0]: axes, OUTPUT_NAMES[1]: axes} if dynamic else None
    with _exporting(out, "ONNX", loaded.info.name) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer chatter about the legacy exporter and shapes
            torch.onnx.export(wrapper, (x,), str(tmp), dynamo=False, opset_version=int(opset),
                              input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                              dynamic_axes=dyn, do_constant_folding=True)
        import onnx

        proto = onnx.load(str(tmp))
        for value, channels in zip(proto.graph.output, (3, 1)):  # shape inference may leave C symbolic
            dim = value.type.tensor_type.shape.dim[1]
            dim.Clear()
            dim.dim_value = channels
        onnx.checker.check_model(proto, full_check=True)
        meta = {"hdrlift:model": loaded.info.name, "hdrlift:model_version": loaded.info.version,
                "hdrlift:multiple_of": str(loaded.info.multiple_of), "hdrlift:precision": "fp16" if fp16 else "fp32"}
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, str(v)
        onnx.save(proto, str(tmp))
    return out


def export_torchscript(model: str | LoadedModel, path: str | os.PathLike,
                       weights: str | os.PathLike | None = None) -> pathlib.Path:
    """TorchScript for Nuke's CatFileCreator: ``1x3xHxW`` float32 in, ``1x3xHxW`` float32 out.

    Traced (not scripted: the traced graph keeps ``H``/``W`` symbolic, and tracing needs no
    TorchScript-compatible source in the model files); the padding to ``multiple_of`` is part of
    the graph.
    """
    loaded = _model(model, weights)
    wrapper = InferenceWrapper(loaded, outputs="hdr").eval()
    x = _example(loaded, torch.float32)
    out = pathlib.Path(path)
    with _exporting(out, "TorchScript", loaded.info.name) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrapper, (x,), check_trace=False)
        traced = torch.jit.freeze(traced.eval()) if _freezable(traced) else traced
        traced.save(str(tmp))
    return out


def _freezable(module: torch.jit.ScriptModule) -> bool:
    # freezing inlines the weights as constants; harmless, and keeps Nuke's loader simple
    return isinstance(module, torch.jit.ScriptModule) and not module.training


def cached_onnx(model: LoadedModel, cache_dir: str | os.PathLike | None = None, *, fp16: bool = False,
                opset: int = DEFAULT_OPSET) -> pathlib.Path:
    """The cached ONNX export of ``model`` (exported now if missing): the file the onnxruntime
    back end runs and the TensorRT back end parses."""
    folder = pathlib.Path(cache_dir if cache_dir is not None else default_cache_dir()) / "onnx"
    path = folder / f"{export_key(model, opset=opset, fp16=fp16)}.onnx"
    if not path.is_file():
        export_onnx(model, path, opset=opset, fp16=fp16)
    return path
