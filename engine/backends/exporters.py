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
from typing import Iterator, Tuple

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


# --------------------------------------------------------------------------- Nuke's Inference node
#: ``hdrlift-export --format nuke --working-space``: Nuke's scene-linear working space -> this
#: OCIO colour space (the node's input and output). Nuke's default ("linear", nuke-default config)
#: is scene-linear Rec.709; an ACES project works in ACEScg.
NUKE_WORKING_SPACES = {"lin_rec709": "Linear Rec.709 (sRGB)", "acescg": "ACEScg"}
#: ``--input-transfer``: how the plate's code values are recovered from Nuke's linear input.
#: ``srgb``: the network sees the sRGB encoding of the linear input (what the engine does for a
#: linear input space; right for plates read as sRGB, gamma 2.2 or the gamma 2.4 display curve).
#: ``camera-rec709``: the plate was read with Nuke's ``rec709`` (the BT.709 camera curve): that curve
#: is re-applied and the code values are read as BT.1886 video, as ``hdr-video`` reads a Rec.709 clip.
NUKE_TRANSFERS = ("srgb", "camera-rec709")


def _ocio_matrix(src: str, dst: str) -> list[list[float]]:
    """The 3x3 matrix OCIO applies from ``src`` to ``dst`` (both linear), read off the built-in
    config by converting the unit vectors, and checked to be linear on random colours."""
    import numpy as np

    from hdrlift.engine.colour import ColourManager

    conv = ColourManager().converter(src, dst)
    m = conv(np.eye(3, dtype=np.float32)[None])[0].astype(np.float64).T  # columns: images of R, G, B
    probe = np.random.default_rng(0).random((1, 8, 3), dtype=np.float32) * np.float32(4.0)
    if not np.allclose(conv(probe)[0], probe[0].astype(np.float64) @ m.T, rtol=1e-5, atol=1e-6):
        raise ModelError(f"OCIO's conversion {src} -> {dst} is not a 3x3 matrix")
    return [[float(v) for v in row] for row in m]


class _Fp32Only(torch.nn.Module):
    """Stands in for the half-precision copy of a model that must run in float32."""

    def __init__(self, name: str):
        super().__init__()
        self.message = (f"hdrlift model {name} runs in float32 only: turn off the Inference node's "
                        "'Optimize for speed and memory'")

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        raise RuntimeError(self.message)


class NukeInference(torch.nn.Module):
    """What Nuke's Inference node runs: ``forward(x)``, ``x`` ``1 x 3 x H x W`` scene-linear in the
    working space (float32, or float16 under "Optimize for speed and memory"), any ``H`` and ``W``;
    returns ``1 x 4 x H x W`` (HDR RGB in the working space, then the reconstruction mask) or
    ``1 x 3 x H x W``, in the input's dtype.

    Inside: working space -> linear Rec.709 (OCIO's matrix, taken at export time), clip to
    [0, 1], the plate's code values (``camera-rec709``: BT.709 camera curve, then read as BT.1886
    video), the sRGB encoding the networks take, padding to the model's multiple (reflection, at
    the bottom and right; replication when the frame is smaller than the padding, as the back ends
    do; the padding operators are called by their old names, which older torch versions also
    have), the traced network, crop, and back to the working space. The colour maths runs in float32.
    The network runs in float32, or in float16 once the module was cast with ``.half()`` (a
    float32 buffer, ``precision_probe``, tells which): two traced copies are kept, because a trace
    records the dtype conversions the model makes (float32 islands inside a half network)."""

    __constants__ = ["use_matrix", "camera709", "rgba", "multiple"]

    def __init__(self, core32: torch.nn.Module, core16: torch.nn.Module, multiple: int,
                 to709: list[list[float]] | None, from709: list[list[float]] | None, camera709: bool, rgba: bool):
        super().__init__()
        self.core32 = core32
        self.core16 = core16
        self.multiple = int(multiple)
        self.use_matrix = to709 is not None
        eye = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        self.to709 = to709 if to709 is not None else eye
        self.from709 = from709 if from709 is not None else eye
        self.camera709 = bool(camera709)
        self.rgba = bool(rgba)
        self.register_buffer("precision_probe", torch.zeros(1))

    @staticmethod
    def _matrix(v: torch.Tensor, m: list[list[float]]) -> torch.Tensor:
        r, g, b = v[:, 0:1], v[:, 1:2], v[:, 2:3]
        return torch.cat([r * m[0][0] + g * m[0][1] + b * m[0][2],
                          r * m[1][0] + g * m[1][1] + b * m[1][2],
                          r * m[2][0] + g * m[2][1] + b * m[2][2]], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_dtype = x.dtype
        v = x.float()
        if self.use_matrix:
            v = self._matrix(v, self.to709)
        v = v.clamp(0.0, 1.0)
        if self.camera709:  # BT.709 camera curve (ITU-R BT.709 1.2), then BT.1886 display light
            v = torch.where(v < 0.018, v * 4.5, 1.099 * v.clamp(min=0.018).pow(0.45) - 0.099)
            v = v.pow(2.4)
        v = torch.where(v <= 0.0031308, v * 12.92, 1.055 * v.clamp(min=0.0031308).pow(1.0 / 2.4) - 0.055)
        h, w = v.shape[2], v.shape[3]
        m = self.multiple
        ph = (m - h % m) % m
        pw = (m - w % m) % m
        if ph > 0 or pw > 0:
            if ph < h and pw < w:
                v = torch.ops.aten.reflection_pad2d(v, [0, pw, 0, ph])
            else:
                v = torch.ops.aten.replication_pad2d(v, [0, pw, 0, ph])
        if self.precision_probe.dtype == torch.float16:
            hdr, mask = self.core16(v.half())
        else:
            hdr, mask = self.core32(v)
        hdr = hdr[:, :, :h, :w].float()
        if self.use_matrix:
            hdr = self._matrix(hdr, self.from709)
        if self.rgba:
            hdr = torch.cat([hdr, mask[:, :, :h, :w].float()], 1)
        return hdr.to(in_dtype)


def _trace_core(model: LoadedModel, dtype: torch.dtype) -> torch.jit.ScriptModule:
    core = InferenceWrapper(copy.deepcopy(model).to(dtype) if dtype != torch.float32 else model).eval()
    core.multiple = 1  # NukeInference pads; the core sees multiples of the model's multiple_of
    m = model.info.multiple_of
    side = -(-max(TRACE_SIZE, m) // m) * m
    x = torch.rand(1, 3, side, side + m, generator=torch.Generator().manual_seed(0)).to(dtype)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.jit.trace(core, (x,), check_trace=False)


def nuke_module(model: str | LoadedModel, *, working_space: str = "lin_rec709", input_transfer: str = "srgb",
                channels: int = 4, weights: str | os.PathLike | None = None) -> torch.jit.ScriptModule:
    """The scripted :class:`NukeInference` for ``model`` (see there); :func:`export_nuke` saves it."""
    if working_space not in NUKE_WORKING_SPACES:
        raise ModelError(f"Nuke working space must be one of {', '.join(NUKE_WORKING_SPACES)}, got {working_space!r}")
    if input_transfer not in NUKE_TRANSFERS:
        raise ModelError(f"Nuke input transfer must be one of {', '.join(NUKE_TRANSFERS)}, got {input_transfer!r}")
    if channels not in (3, 4):
        raise ModelError(f"Nuke output channels must be 3 or 4, got {channels}")
    loaded = _model(model, weights)
    if loaded.info.kind == "fusion":
        raise ModelError(f"model {loaded.info.name!r} merges exposure brackets; the Inference node takes one image")
    space = NUKE_WORKING_SPACES[working_space]
    to709 = from709 = None
    if working_space != "lin_rec709":
        to709, from709 = _ocio_matrix(space, "Linear Rec.709 (sRGB)"), _ocio_matrix("Linear Rec.709 (sRGB)", space)
    core32 = _trace_core(loaded, torch.float32)
    core16 = _Fp32Only(loaded.info.name) if loaded.info.fp32_only else _trace_core(loaded, torch.float16)
    module = NukeInference(core32, core16, loaded.info.multiple_of, to709, from709,
                           camera709=input_transfer == "camera-rec709", rgba=channels == 4)
    return torch.jit.script(module.eval())


def export_nuke(model: str | LoadedModel, path: str | os.PathLike, *, working_space: str = "lin_rec709",
                input_transfer: str = "srgb", channels: int = 4,
                weights: str | os.PathLike | None = None) -> pathlib.Path:
    """TorchScript for Nuke's Inference node (CatFileCreator makes the ``.cat``): ``1x3xHxW``
    scene-linear working-space in, ``1x4xHxW`` (HDR RGB + mask) or ``1x3xHxW`` out; see
    :class:`NukeInference`. Not frozen: Nuke moves the module to the GPU and may cast it to half,
    which frozen weights (graph constants) would not follow. The settings are stored in the file
    as ``extra/hdrlift.json`` (``torch.jit.load(path, _extra_files={"hdrlift.json": ""})``)."""
    import json

    loaded = _model(model, weights)
    out = pathlib.Path(path)
    meta = {"model": loaded.info.name, "model_version": loaded.info.version, "working_space":
            NUKE_WORKING_SPACES.get(working_space, working_space), "input_transfer": input_transfer,
            "channels": int(channels), "multiple_of": loaded.info.multiple_of,
            "fp16": not loaded.info.fp32_only, "torch": torch.__version__}
    with _exporting(out, "Nuke TorchScript", loaded.info.name) as tmp:
        module = nuke_module(loaded, working_space=working_space, input_transfer=input_transfer, channels=channels)
        module.save(str(tmp), _extra_files={"hdrlift.json": json.dumps(meta, sort_keys=True)})
    return out
