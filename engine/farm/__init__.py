"""Render-farm jobs for hdr-video conversions: OpenJD job bundles and OpenCue outlines.

``hdrlift-farm openjd`` writes an Open Job Description (2023-09) job bundle that AWS Deadline
Cloud submits and ``openjd run`` runs; ``hdrlift-farm opencue`` builds an OpenCue job with
pyoutline. Every task runs ``hdr-video INPUT OUTPUT --frames A-B --resume``. See docs/farm.md.
"""

from hdrlift.engine.farm.spec import Conversion, FarmError, chunk_ranges, plan  # noqa: F401

__all__ = ["Conversion", "FarmError", "chunk_ranges", "plan"]
