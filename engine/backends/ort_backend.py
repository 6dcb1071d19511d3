"""The onnxruntime back end.

The model is exported once (``hdrlift.engine.backends.exporters.export_onnx``: opset 17, dynamic ``N``, ``H``,
``W``, padding inside the graph, outputs ``hdr`` and ``mask``) into the cache folder under
``onnx/<name>-v<version>-<weights sha256[:16]>-op17-<fp32|fp16>-x<format>.onnx``, so new weights
or a new model version never reuse a stale file. Sessions run on ``CUDAExecutionProvider`` when
``device`` is CUDA and the provider is present, else on ``CPUExecutionProvider``. On CUDA, a model
whose registry entry is ``fp32_only`` (Kim) runs with the provider's ``use_tf32`` off: TF32 puts its
curve solve 5 % off (docs/backends.md).

Threads: ``threads`` (default: ``$OMP_NUM_THREADS`` when set, else onnxruntime's own default of
one per physical core) sets ``intra_op_num_threads``.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from hdrlift.engine.backends.base import INPUT_NAME, Backend
from hdrlift.engine.backends.exporters import cached_onnx
from hdrlift.engine.errors import ModelError
from hdrlift.engine.models.loading import LoadedModel


def provider_list(device: str, strict_fp32: bool = False) -> list:
    """onnxruntime's ``providers`` argument for ``device`` ("cpu", "cuda", "cuda:N")."""
    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    opts = {"device_id": int(device.split(":")[1]) if ":" in device else 0}
    if strict_fp32:
        opts["use_tf32"] = "0"
    return [("CUDAExecutionProvider", opts), "CPUExecutionProvider"]


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model: LoadedModel, device: str = "cpu", precision: str = "fp32", *,
                 cache_dir: str | os.PathLike | None = None, threads: int | None = None,
                 onnx_path: str | os.PathLike | None = None):
        super().__init__(model, device, precision)
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("onnxruntime is not installed (pip install 'hdrlift[onnx]')") from None
        if precision == "bf16":
            raise ModelError("onnxruntime back end: bf16 is not supported; use fp32 or fp16")
        on_cuda = device.startswith("cuda")
        self.strict_fp32 = on_cuda and precision == "fp32" and bool(model.info.fp32_only)
        providers = provider_list(device, self.strict_fp32)
        if on_cuda:
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelError("onnxruntime has no CUDAExecutionProvider here (pip install onnxruntime-gpu)")
        elif precision == "fp16":
            raise ModelError("onnxruntime back end: fp16 needs the CUDA execution provider; use fp32 on the CPU")
        self.fp16 = precision == "fp16"
        self.onnx_path = pathlib.Path(onnx_path) if onnx_path else cached_onnx(model, cache_dir, fp16=self.fp16)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
            threads = int(os.environ["OMP_NUM_THREADS"])
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), sess_options=opts, providers=providers)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"onnxruntime cannot load {self.onnx_path.name}: {first}") from None
        self.providers = self.session.get_providers()
        self.threads = threads

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feed = x.astype(np.float16) if self.fp16 else x
        hdr, mask = self.session.run(None, {INPUT_NAME: feed})
        return hdr.astype(np.float32, copy=False), mask.astype(np.float32, copy=False)

    def describe(self) -> dict:
        import onnxruntime as ort

        d = super().describe()
        d.update(onnx=str(self.onnx_path), providers=self.providers, onnxruntime=ort.__version__,
                 threads=self.threads or "default", strict_fp32=self.strict_fp32)
        return d

    def close(self) -> None:
        self.session = None
