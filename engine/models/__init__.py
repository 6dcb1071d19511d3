"""Models: one file per paper (plus classical operators), declared in ``catalog``, looked up in
``registry`` (torch-free: listing models imports no torch) and built by ``loading``."""

from hdrlift.engine.models.registry import (  # noqa: F401
    DEFAULT_MODEL,
    FusionModelInfo,
    ModelInfo,
    available,
    get_info,
    register,
)

from hdrlift.engine.models import registry as _registry


def __getattr__(name: str):
    """``LoadedModel``, ``load_model`` and ``load_state`` (torch), imported on first use."""
    if name in _registry.LOADING:
        from hdrlift.engine.models import loading

        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
