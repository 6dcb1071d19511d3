"""Fixtures for the training tests: small synthetic HDR images written as real EXR files with
OpenImageIO in a temporary folder (no downloaded data), and a tiny random VGG19."""

from __future__ import annotations

import pathlib

import pytest

from training_helpers import synthetic_hdr, write_exr


@pytest.fixture(scope="session")
def hdr_folder(tmp_path_factory) -> pathlib.Path:
    """Four small EXRs: two 2:1 panoramas (perspective crops) and two ordinary pictures."""
    d = tmp_path_factory.mktemp("hdr")
    write_exr(d / "pano_a.exr", synthetic_hdr(64, 128, 1))
    write_exr(d / "pano_b.exr", synthetic_hdr(64, 128, 2))
    write_exr(d / "photo_a.exr", synthetic_hdr(80, 96, 3))
    write_exr(d / "photo_b.exr", synthetic_hdr(72, 100, 4))
    return d


@pytest.fixture()
def random_vgg(monkeypatch):
    """Perceptual losses run with a random-weight VGG19 (no ImageNet file needed)."""
    import torch

    from hdrlift.training import vgg

    nets: dict[str, vgg.VGG19Features] = {}

    def fake_shared_vgg(device="cpu"):
        key = str(torch.device(device))
        if key not in nets:
            with torch.random.fork_rng(devices=[]):  # the same random VGG every time, global RNG untouched
                torch.manual_seed(0)
                nets[key] = vgg.VGG19Features(pretrained=False).to(device)
        return nets[key]

    monkeypatch.setattr(vgg, "shared_vgg", fake_shared_vgg)
    monkeypatch.setattr(vgg, "default_weights_path", lambda: pathlib.Path(__file__))  # "weights exist"
    return fake_shared_vgg


@pytest.fixture()
def no_vgg(monkeypatch):
    """No VGG19 weights anywhere."""
    from hdrlift.training import vgg

    monkeypatch.setattr(vgg, "default_weights_path", lambda: None)
