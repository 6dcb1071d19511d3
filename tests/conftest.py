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


def perturb_weights(net, seed: int = 0, head: float = 0.05, scale: float = 0.3, additive: bool = False):
    """Untrained weights with every branch active, for the model tests: the zero-initialised heads
    ("do-nothing" starts) get ``head * N(0, 1)`` and every other weight tensor of 2+ dimensions is
    jittered, ``p * (1 + scale N)`` or, ``additive``, ``p + scale mean|p| N``, so the outputs
    depend on all the convolutions (an identity network would make parity checks trivial).
    Deterministic in ``seed``; returns ``net`` in eval mode."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() < 2:
                continue
            if float(p.abs().max()) == 0.0:
                p.copy_(head * torch.randn(p.shape, generator=g))
            elif additive:
                p.add_(scale * p.abs().mean() * torch.randn(p.shape, generator=g))
            else:
                p.mul_(1.0 + scale * torch.randn(p.shape, generator=g))
    return net.eval()
