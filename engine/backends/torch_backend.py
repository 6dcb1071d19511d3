"""The torch back end: the registry's model (``hdrlift.engine.models.load_model``) in eager mode.

On the CPU it runs float32 (``bf16`` through ``torch.autocast("cpu")``; ``fp16`` is refused: CPU
kernels for half convolutions are slow or missing). On CUDA:

* ``fp16``: the module and the input are cast with ``.half()`` (the models keep their
  overflow-prone maths, e.g. HDR-CNN's log domain, in float32 internally); ``bf16``: autocast;
* ``channels_last`` memory format (default on CUDA where the model's registry entry says
  ``channels_last_cuda``: on an H100 it helped HDR-CNN but doubled ExpandNet's time);
* ``cuda_graphs=True``: one CUDA graph captured per input shape and replayed (saves the launch
  overhead of the many small kernels of a light network; costs a static copy of the input and
  outputs per shape);
* ``compile=True``: ``torch.compile`` of the wrapper (``compile_mode`` picks the mode);
* fp32 convolutions may use TF32 tensor cores (PyTorch's default; within 1e-3 of CPU fp32 for
  every network but one on an H100, ``bench/check_cuda.py``), except for a model whose registry
  entry says ``fp32_only`` (Kim: 5 % off with TF32, 4e-5 without), which runs with TF32 off
  (and in fp32 whatever precision is asked: ``create_backend``).

These CUDA paths are guarded by ``torch.cuda.is_available()``.
"""

from __future__ import annotations

import contextlib
import copy
import threading

import numpy as np
import torch

from hdrlift.engine.backends.base import Backend, InferenceWrapper
from hdrlift.engine.errors import ModelError
from hdrlift.engine.models.loading import LoadedModel


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: LoadedModel, device: str = "cpu", precision: str = "fp32", *,
                 channels_last: bool | None = None, cuda_graphs: bool = False, compile: bool = False,
                 compile_mode: str = "max-autotune-no-cudagraphs"):
        super().__init__(model, device, precision)
        on_cuda = device.startswith("cuda")
        if on_cuda and not torch.cuda.is_available():
            raise ModelError("torch back end: CUDA requested but not available")
        if precision == "fp16" and not on_cuda:
            raise ModelError("torch back end: fp16 needs CUDA; use fp32 (or bf16) on the CPU")
        if cuda_graphs and not on_cuda:
            raise ModelError("torch back end: CUDA graphs need CUDA")
        default_cl = on_cuda and model.info.channels_last_cuda
        self.channels_last = default_cl if channels_last is None else bool(channels_last)
        self.cuda_graphs = bool(cuda_graphs)
        self.compiled = bool(compile)
        self.strict_fp32 = on_cuda and bool(model.info.fp32_only)
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        # a private copy: .half(), .to(device) and channels_last work in place on shared modules
        wrapper = InferenceWrapper(copy.deepcopy(model) if (on_cuda or precision != "fp32") else model)
        wrapper = wrapper.to(device).eval()
        if precision == "fp16":
            wrapper = wrapper.half()
        if self.channels_last:
            wrapper = wrapper.to(memory_format=torch.channels_last)
        self.module = wrapper
        self._call = torch.compile(wrapper, mode=compile_mode, dynamic=False) if compile else wrapper
        self._graphs: dict[tuple, tuple] = {}
        self._lock = threading.Lock()  # CUDA graph replay uses shared static buffers

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type="cuda" if self.device.startswith("cuda") else "cpu",
                                  dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode(), self._autocast(), self._strict_fp32():
            return self._call(t)

    @contextlib.contextmanager
    def _strict_fp32(self):
        """TF32 off for the call when the model is ``fp32_only`` (the flags are process-wide:
        saved and restored around the call)."""
        if not self.strict_fp32:
            yield
            return
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved

    def _graph_run(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(t.shape), t.dtype)
        entry = self._graphs.get(key)
        if entry is None:
            static_in = t.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up outside the capture (cudnn autotuning, allocations)
                    self._forward(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            entry = (graph, static_in, static_out)
            self._graphs[key] = entry
        graph, static_in, static_out = entry
        static_in.copy_(t)
        graph.replay()
        return static_out[0].clone(), static_out[1].clone()

    def _device_run(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A tensor on this back end's device (any float dtype) through the network: the
        outputs in the network's dtype, on the device."""
        t = t.to(self._dtype)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        if self.cuda_graphs:
            with self._lock:
                return self._graph_run(t)
        return self._forward(t)

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = torch.from_numpy(x)
        if self.device != "cpu":
            t = t.to(self.device, non_blocking=False)
        hdr, mask = self._device_run(t)
        return hdr.float().cpu().numpy(), mask.float().cpu().numpy()

    def run_tensor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The frames stay on the device; on CUDA the work is queued on the current stream."""
        h, w = x.shape[-2:]
        hdr, mask = self._device_run(self._pad_tensor(x).to(self.device))
        return hdr[:, :, :h, :w].float(), mask[:, :, :h, :w].float()

    def describe(self) -> dict:
        d = super().describe()
        d.update(channels_last=self.channels_last, cuda_graphs=self.cuda_graphs, compiled=self.compiled,
                 torch=torch.__version__, threads=torch.get_num_threads(),
                 tf32=self.device.startswith("cuda") and self.precision == "fp32" and not self.strict_fp32)
        return d
