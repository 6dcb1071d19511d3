"""Shared fixtures: real media made with the project's own generators (no downloaded files)."""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
# back-end caches (ONNX exports, auto-selection records) go to a per-run folder, not ~/.cache
os.environ.setdefault("HDRLIFT_CACHE", tempfile.mkdtemp(prefix="hdrlift-test-cache-"))

HDRI = pathlib.Path(os.environ.get("HDRLIFT_HDRI", REPO.parent / "shared" / "data" / "hdri"))


def console_script(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"console script {name} is not installed in {BIN} (pip install -e .)")
    return str(path)


@pytest.fixture(scope="session")
def sample_clip(tmp_path_factory) -> pathlib.Path:
    """A small 8-bit H.264 clip of the procedural HDR scene (12 frames, 96x64)."""
    from hdrlift.engine.sample import write_sample

    d = tmp_path_factory.mktemp("sample")
    return write_sample(d / "street.mp4", width=96, height=64, frames=12, fps=24)
