"""hdrlift engine: decode, colour, models, back ends, pipeline, CLI."""
__version__ = "0.1.0"
