"""Inference back ends behind one interface (:class:`Backend`): torch, onnxruntime, TensorRT.

``base``: the interface and what back ends share; ``selection``: :func:`create_backend` and the
auto-selection rule; ``exporters``: the ONNX and TorchScript graphs. docs/backends.md has the design.
"""

from hdrlift.engine.backends.base import (  # noqa: F401
    KINDS,
    PRECISIONS,
    Backend,
    InferenceWrapper,
    default_cache_dir,
    export_key,
    weights_hash,
    wrap_module,
)
from hdrlift.engine.backends.selection import choose_cpu_backend, create_backend  # noqa: F401

__all__ = ["KINDS", "PRECISIONS", "Backend", "InferenceWrapper", "default_cache_dir", "export_key", "weights_hash",
           "wrap_module", "choose_cpu_backend", "create_backend"]
