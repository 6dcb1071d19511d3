"""The TensorRT back end (TensorRT 10 Python API), kept thin.

Build (:func:`build_plan`)
    ``trt.Builder`` -> ``create_network`` (strongly typed when the ONNX file is the fp16 export:
    the ONNX types then fix every layer's precision; otherwise a plain explicit-batch network, and
    ``fp16=True`` without a strongly typed graph sets ``BuilderFlag.FP16``) -> ``trt.OnnxParser``
    -> ``BuilderConfig`` with a workspace memory-pool limit, one optimisation profile per entry of
    :data:`DEFAULT_PROFILES` (540p, 720p, 1080p, 2160p and a batched tile profile; each
    ``min/opt/max``), and a timing cache file shared by every build on this GPU and TensorRT
    version -> ``build_serialized_network``. The plan is written atomically.

Plan cache
    ``<cache>/trt/<model key>-<plan key>.plan`` where the plan key is the SHA-256 of the GPU name,
    its compute capability, the TensorRT version, the SHA-256 of the exact ONNX bytes parsed and
    the profile list. A new driver-visible GPU, TensorRT upgrade, new weights (they change the ONNX
    bytes) or new profiles each give a new key; stale plans are never loaded.

Run
    ``trt.Runtime.deserialize_cuda_engine`` -> ``create_execution_context``; per call the smallest
    profile whose range holds the input is selected (``set_optimization_profile_async``), the
    input shape set (``set_input_shape``), torch CUDA tensors bound with ``set_tensor_address`` and
    the engine enqueued with ``execute_async_v3`` on torch's current stream.

``tensorrt`` is imported lazily; without it :func:`import_tensorrt` raises :class:`ModelError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import threading

import numpy as np
import torch

from hdrlift.engine.atomic import atomic_write_bytes
from hdrlift.engine.backends.base import INPUT_NAME, OUTPUT_NAMES, Backend, default_cache_dir
from hdrlift.engine.backends.exporters import cached_onnx
from hdrlift.engine.errors import ModelError
from hdrlift.engine.models.loading import LoadedModel

log = logging.getLogger("hdrlift.backends")


@dataclasses.dataclass(frozen=True)
class Profile:
    """One optimisation profile: ``(N, H, W)`` at min, opt and max (C is always 3)."""

    name: str
    min: tuple[int, int, int]
    opt: tuple[int, int, int]
    max: tuple[int, int, int]

    def holds(self, n: int, h: int, w: int) -> bool:
        return all(lo <= v <= hi for v, lo, hi in zip((n, h, w), self.min, self.max))

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple((s[0], 3, s[1], s[2]) for s in (self.min, self.opt, self.max))


def _ceil(v: int, m: int) -> int:
    return -(-v // m) * m


def default_profiles(multiple_of: int = 32, tile: int = 512, tile_batch: int = 8) -> tuple[Profile, ...]:
    """A batched square-tile profile for the tiler, then 540p, 720p, 1080p and 2160p (batch 1,
    landscape, max rounded up to ``multiple_of``). Every profile starts at 16x16; at run time the
    tightest profile that holds the input is selected, so each resolution runs on the kernels
    tuned for its ``opt`` shape."""
    out = [Profile("tiles", (1, 16, 16), (max(1, tile_batch // 2), tile, tile), (tile_batch, tile, tile))]
    for name, h, w in (("540p", 540, 960), ("720p", 720, 1280), ("1080p", 1080, 1920), ("2160p", 2160, 3840)):
        out.append(Profile(name, (1, 16, 16), (1, h, w), (1, _ceil(h, multiple_of), _ceil(w, multiple_of))))
    return tuple(out)


DEFAULT_PROFILES = default_profiles()


def import_tensorrt():
    """``import tensorrt`` or a one-line :class:`ModelError`."""
    try:
        import tensorrt as trt
    except ImportError:
        raise ModelError("TensorRT is not installed (pip install tensorrt, needs an NVIDIA GPU); "
                         "use --backend torch or onnxruntime") from None
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise ModelError(f"TensorRT {trt.__version__} is too old; hdrlift needs TensorRT 10 or later")
    return trt


def _logger(trt):
    return trt.Logger(trt.Logger.WARNING)


def _onnx_is_fp16(onnx_path: pathlib.Path) -> bool:
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    return proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def gpu_identity(device: int = 0) -> dict:
    """What a plan is tied to: GPU name, compute capability, TensorRT version."""
    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise ModelError("TensorRT needs a CUDA GPU; torch sees none")
    major, minor = torch.cuda.get_device_capability(device)
    return {"gpu": torch.cuda.get_device_name(device), "sm": f"{major}.{minor}", "tensorrt": trt.__version__}


def plan_key(onnx_path: str | os.PathLike, profiles=DEFAULT_PROFILES, fp16: bool = False, device: int = 0,
             strict_fp32: bool = False) -> str:
    """SHA-256 (20 hex digits) over GPU name, compute capability, TensorRT version, the ONNX
    file's own SHA-256, the profiles and the precision flags."""
    return _plan_digest(gpu_identity(device), hashlib.sha256(pathlib.Path(onnx_path).read_bytes()).hexdigest(),
                        profiles, fp16, strict_fp32)


def _plan_digest(ident: dict, onnx_hash: str, profiles, fp16: bool, strict_fp32: bool) -> str:
    fields = {**ident, "onnx": onnx_hash, "fp16": bool(fp16), "profiles": [dataclasses.astuple(p) for p in profiles]}
    if strict_fp32:  # only then, so plans cached before this flag existed keep their keys
        fields["strict_fp32"] = True
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


def build_plan(onnx_path: str | os.PathLike, plan_path: str | os.PathLike, *, fp16: bool = False,
               profiles=DEFAULT_PROFILES, workspace_gib: float = 4.0,
               timing_cache: str | os.PathLike | None = None, strict_fp32: bool = False) -> pathlib.Path:
    """Parse ``onnx_path`` and write a serialized engine (plan) to ``plan_path`` (atomic).

    A float16 ONNX file (the ``onnx-fp16`` export) builds a strongly typed network; a float32 one
    builds an fp32 network, with ``BuilderFlag.FP16`` added when ``fp16`` is asked for.
    ``strict_fp32`` clears ``BuilderFlag.TF32`` (on by default in TensorRT) for models whose
    registry entry is ``fp32_only``: Kim's curve solve is 5 % off with TF32 (measured on an H100
    through torch, docs/backends.md).
    """
    trt = import_tensorrt()
    onnx_path = pathlib.Path(onnx_path)
    logger = _logger(trt)
    builder = trt.Builder(logger)
    strongly_typed = _onnx_is_fp16(onnx_path)
    flags = 0
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16 and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    if strict_fp32:
        config.clear_flag(trt.BuilderFlag.TF32)
    input_name = network.get_input(0).name
    for prof in profiles:
        p = builder.create_optimization_profile()
        p.set_shape(input_name, *prof.shapes())
        config.add_optimization_profile(p)
    cache_blob = b""
    if timing_cache is not None and pathlib.Path(timing_cache).is_file():
        cache_blob = pathlib.Path(timing_cache).read_bytes()
    cache = config.create_timing_cache(cache_blob)
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT could not build an engine from {onnx_path.name} (see the log above)")
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    return atomic_write_bytes(plan_path, bytes(serialized))


_TORCH_DTYPES = {}


def _torch_dtype(trt, dt) -> torch.dtype:
    if not _TORCH_DTYPES:
        _TORCH_DTYPES.update({trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                              trt.DataType.INT32: torch.int32})
        if hasattr(trt.DataType, "BF16"):
            _TORCH_DTYPES[trt.DataType.BF16] = torch.bfloat16
    return _TORCH_DTYPES[dt]


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, model: LoadedModel, device: str = "cuda", precision: str = "fp16", *,
                 cache_dir: str | os.PathLike | None = None, profiles=None, workspace_gib: float = 4.0):
        trt = import_tensorrt()  # first: the message users without TensorRT must see
        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise ModelError("the TensorRT back end needs a CUDA GPU (--device cuda)")
        if precision == "bf16":
            raise ModelError("TensorRT back end: use fp16 or fp32")
        super().__init__(model, device, precision)
        self.trt = trt
        self.dev_index = int(device.split(":")[1]) if ":" in device else 0
        self.profiles = tuple(profiles) if profiles else default_profiles(model.info.multiple_of)
        cache = pathlib.Path(cache_dir if cache_dir is not None else default_cache_dir())
        fp16 = precision == "fp16"
        # fp16: the half-precision ONNX export, built strongly typed
        self.onnx_path = cached_onnx(model, cache, fp16=fp16)
        self.strict_fp32 = not fp16 and bool(model.info.fp32_only)
        key = plan_key(self.onnx_path, self.profiles, fp16, self.dev_index, self.strict_fp32)
        self.plan_path = cache / "trt" / f"{self.onnx_path.stem}-{key}.plan"
        ident = gpu_identity(self.dev_index)
        timing = cache / "trt" / f"timing-{ident['gpu'].replace(' ', '_')}-sm{ident['sm']}-trt{ident['tensorrt']}.cache"
        if not self.plan_path.is_file():
            log.info("building TensorRT plan %s (once per GPU, TensorRT version and weights)", self.plan_path.name)
            with torch.cuda.device(self.dev_index):
                build_plan(self.onnx_path, self.plan_path, fp16=fp16, profiles=self.profiles,
                           workspace_gib=workspace_gib, timing_cache=timing, strict_fp32=self.strict_fp32)
        with torch.cuda.device(self.dev_index):
            self.runtime = trt.Runtime(_logger(trt))
            self.engine = self.runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
            if self.engine is None:
                raise ModelError(f"TensorRT cannot load plan {self.plan_path} (delete it to rebuild)")
            self.context = self.engine.create_execution_context()
        self.io_dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n))
                          for n in (INPUT_NAME, *OUTPUT_NAMES)}
        self._profile = 0
        self._lock = threading.Lock()  # one execution context: one call at a time
        biggest = max(self.profiles, key=lambda p: p.max[1] * p.max[2])
        self.max_hw = (biggest.max[1], biggest.max[2])
        self.max_batch = max(p.max[0] for p in self.profiles)

    def _pick_profile(self, n: int, h: int, w: int) -> int:
        fits = [(p.max[0] * p.max[1] * p.max[2], i) for i, p in enumerate(self.profiles) if p.holds(n, h, w)]
        if not fits:
            raise ModelError(f"input {n}x3x{h}x{w} is outside every TensorRT profile "
                             f"(largest {self.max_hw[0]}x{self.max_hw[1]}); run it through the tiler")
        return min(fits)[1]

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hdr, mask = self._execute(torch.from_numpy(x), wait=True)
        return hdr.float().cpu().numpy(), mask.float().cpu().numpy()

    def run_tensor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The frames stay on the GPU; the plan is queued on the current stream, not waited for."""
        h, w = x.shape[-2:]
        hdr, mask = self._execute(self._pad_tensor(x), wait=False)
        return hdr[:, :, :h, :w].float(), mask[:, :, :h, :w].float()

    def _execute(self, x: torch.Tensor, wait: bool) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        idx = self._pick_profile(n, h, w)
        dev = torch.device("cuda", self.dev_index)
        with self._lock, torch.cuda.device(dev):
            stream = torch.cuda.current_stream(dev)
            if idx != self._profile:
                self.context.set_optimization_profile_async(idx, stream.cuda_stream)
                self._profile = idx
            inp = x.to(dev).to(self.io_dtypes[INPUT_NAME]).contiguous()
            self.context.set_input_shape(INPUT_NAME, tuple(inp.shape))
            self.context.set_tensor_address(INPUT_NAME, inp.data_ptr())
            outs = []
            for name in OUTPUT_NAMES:
                shape = tuple(self.context.get_tensor_shape(name))
                t = torch.empty(shape, dtype=self.io_dtypes[name], device=dev)
                self.context.set_tensor_address(name, t.data_ptr())
                outs.append(t)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise ModelError("TensorRT execution failed (see the log above)")
            if wait:
                stream.synchronize()
            else:
                inp.record_stream(stream)  # the input must outlive the queued plan
        return outs[0], outs[1]

    def describe(self) -> dict:
        d = super().describe()
        d.update(tensorrt=self.trt.__version__, plan=str(self.plan_path), onnx=str(self.onnx_path),
                 profiles=[p.name for p in self.profiles], tf32=self.precision == "fp32" and not self.strict_fp32)
        return d
