"""Inference back ends behind one interface (:class:`Backend`): torch, onnxruntime, TensorRT.

See ``base`` for the interface and the auto-selection rule, docs/backends.md for the design.
"""

from hdrlift.engine.backends.base import (  # noqa: F401
    KINDS,
    PRECISIONS,
    Backend,
    InferenceWrapper,
    choose_cpu_backend,
    create_backend,
    default_cache_dir,
    export_key,
    weights_hash,
    wrap_module,
)
