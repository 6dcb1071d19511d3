"""Models: one file per paper (plus classical operators), behind the registry in ``registry``."""

from hdrlift.engine.models.registry import (  # noqa: F401
    DEFAULT_MODEL,
    LoadedModel,
    ModelInfo,
    available,
    get_info,
    load_model,
    register,
)
