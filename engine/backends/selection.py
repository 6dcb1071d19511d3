"""Building and choosing a back end: :func:`create_backend` builds one by name, or picks one
(``kind="auto"``):

1. TensorRT, when ``tensorrt`` imports and CUDA is available (and ``device`` is not ``"cpu"``);
2. else torch on CUDA, when CUDA is available (and ``device`` is not ``"cpu"``);
3. else, on the CPU, the faster of torch and onnxruntime, measured once on a small frame
   (:data:`PROBE_SIZE`) and remembered in the cache folder (``auto-<key>.json``), so later runs
   skip the measurement. The choice and its reason are logged (logger ``hdrlift.backends``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import pathlib
import time

import numpy as np
import torch

from hdrlift.engine.atomic import atomic_write_bytes
from hdrlift.engine.backends.base import (KINDS, PRECISIONS, Backend, default_cache_dir, export_key, resolve_device,
                                          tensorrt_importable)
from hdrlift.engine.backends.ort_backend import OrtBackend
from hdrlift.engine.backends.torch_backend import TorchBackend
from hdrlift.engine.backends.trt_backend import TensorRTBackend
from hdrlift.engine.errors import ModelError
from hdrlift.engine.models.loading import LoadedModel, load_model

log = logging.getLogger("hdrlift.backends")
PROBE_SIZE = 256  # side of the square frame auto-selection times the CPU back ends on


def _resolve_model(model_name: str | LoadedModel, weights, device_for_load: str = "cpu") -> LoadedModel:
    if isinstance(model_name, LoadedModel):
        if weights:
            raise ModelError("pass either a loaded model or weights, not both")
        return model_name
    return load_model(model_name, device=device_for_load, weights=weights)


def _check_args(kind: str, device: str, precision: str) -> None:
    if kind not in KINDS:
        raise ModelError(f"unknown back end {kind!r}; choose one of {', '.join(KINDS)}")
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")


def create_backend(model_name: str | LoadedModel, kind: str = "auto", device: str = "cpu",
                   precision: str = "fp32", weights: str | os.PathLike | None = None,
                   cache_dir: str | os.PathLike | None = None, **options) -> Backend:
    """Build the back end ``kind`` for ``model_name`` (a registered name, or a
    :class:`LoadedModel`, e.g. from :func:`wrap_module`).

    ``options`` go to the back end's constructor (torch: ``channels_last``, ``cuda_graphs``,
    ``compile``; onnxruntime: ``threads``; TensorRT: ``profiles``, ``workspace_gib``).
    """
    _check_args(kind, device, precision)
    device = resolve_device(device)
    cache = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    model = _resolve_model(model_name, weights)
    requested = precision
    if precision != "fp32" and model.info.fp32_only:
        log.warning("model %s runs in fp32 only (%s); precision %s not applied",
                    model.info.name, model.info.fp32_only, precision)
        precision = "fp32"
    backend = _create(model, kind, device, precision, cache, options)
    backend.requested_precision = requested
    return backend


def _create(model: LoadedModel, kind: str, device: str, precision: str, cache: pathlib.Path,
            options: dict) -> Backend:
    if options.get("compile"):
        # torch.compile is the torch back end's: "auto" with it means torch, and no other back end takes it
        if kind == "auto":
            kind = "torch"
            log.info("back end for %s: torch (torch.compile asked)", model.info.name)
        elif kind != "torch":
            raise ModelError(f"compile (torch.compile) applies to the torch back end, not {kind}")
    if kind == "auto":
        kind, reason = _auto_kind(model, device, precision, cache)
        log.info("back end auto-selection for %s: %s (%s)", model.info.name, kind, reason)
    if kind == "torch":
        return TorchBackend(model, device=device, precision=precision, **options)
    if kind == "onnxruntime":
        return OrtBackend(model, device=device, precision=precision, cache_dir=cache, **options)
    return TensorRTBackend(model, device=device, precision=precision, cache_dir=cache, **options)


def _auto_kind(model: LoadedModel, device: str, precision: str, cache: pathlib.Path) -> tuple[str, str]:
    if device.startswith("cuda"):
        if tensorrt_importable():
            return "tensorrt", "tensorrt is installed and CUDA is available"
        return "torch", "CUDA is available, tensorrt is not installed"
    if precision != "fp32":
        return "torch", f"{precision} on the CPU runs through torch autocast only"
    return choose_cpu_backend(model, cache)


def _probe_key(model: LoadedModel) -> str:
    from importlib.metadata import version  # onnxruntime itself loads only when it is chosen

    parts = [export_key(model), f"torch{torch.__version__}", f"ort{version('onnxruntime')}",
             f"cpu{os.cpu_count()}", f"threads{os.environ.get('OMP_NUM_THREADS', '')}"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def choose_cpu_backend(model: LoadedModel, cache: pathlib.Path, size: int = PROBE_SIZE,
                       repeats: int = 3, use_cache: bool = True) -> tuple[str, str]:
    """Time torch and onnxruntime on one ``size`` x ``size`` frame (best of ``repeats`` after a
    warm-up), return ``(kind, reason)``. The verdict is stored in ``cache/auto-<key>.json`` (the
    key covers the weights, library versions, core count and ``OMP_NUM_THREADS``)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "torch", "onnxruntime is not installed"
    record = cache / f"auto-{_probe_key(model)}.json"
    if use_cache and record.is_file():
        try:
            data = json.loads(record.read_text())
            return data["kind"], f"{data['reason']} (measured earlier, {record.name})"
        except (ValueError, KeyError, OSError):
            pass
    rng = np.random.default_rng(0)
    x = rng.random((1, 3, size, size), dtype=np.float32)
    times = {}
    for kind, make in (("torch", lambda: TorchBackend(model, device="cpu")),
                       ("onnxruntime", lambda: OrtBackend(model, device="cpu", cache_dir=cache))):
        try:
            be = make()
        except Exception as exc:  # an operator onnxruntime lacks, say: fall back, and say why
            log.warning("auto-selection: %s unavailable for %s: %s", kind, model.info.name, exc)
            continue
        be.run(x)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            be.run(x)
            best = min(best, time.perf_counter() - t)
        times[kind] = best
        be.close()
    if not times:
        raise ModelError(f"no CPU back end can run model {model.info.name!r}")
    kind = min(times, key=times.get)
    reason = "measured on %dx%d: %s" % (size, size, ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in times.items()))
    try:
        atomic_write_bytes(record, json.dumps({"kind": kind, "reason": reason, "times_s": times}).encode())
    except OSError:
        pass  # a read-only cache only costs a re-measurement next time
    return kind, reason
