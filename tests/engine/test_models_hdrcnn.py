"""HDR-CNN's decoder (engine/models/hdrcnn.py): resize-convolution up-sampling (no checkerboard),
the same bilinear start as the paper's transposed convolutions, and weights of either layout load
into the right one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hdrlift.engine.colour_maths import srgb_to_linear
from hdrlift.engine.models.conv_blocks import UpsampleDeconv, UpsampleResize
from hdrlift.engine.models.hdrcnn import HDRCNN
from hdrlift.engine.models.loading import load_model
from hdrlift.training.metrics import grid_artefact_stops
from tests.conftest import perturb_weights


def perturb(net: torch.nn.Module, seed: int = 0, amp: float = 0.3) -> torch.nn.Module:
    """Jitter every weight by ``amp`` times its tensor's mean magnitude (zero tensors get values)."""
    return perturb_weights(net, seed, scale=amp, additive=True)


def test_resize_block_starts_as_bilinear_upsampling():
    torch.manual_seed(0)
    x = torch.rand(2, 6, 9, 11)
    up = UpsampleResize(6, 3)
    # cin 6 -> cout 3: output channel o averages input channels o and o + 3, bilinearly resized
    expect = F.interpolate(0.5 * (x[:, :3] + x[:, 3:]), scale_factor=2.0, mode="bilinear", align_corners=False)
    assert torch.allclose(up(x), expect, atol=1e-6)
    # the transposed convolution's start is the same up-sampling away from the border
    dec = UpsampleDeconv(6, 3)
    assert torch.allclose(dec(x)[..., 2:-2, 2:-2], expect[..., 2:-2, 2:-2], atol=1e-5)


@pytest.mark.parametrize("upsample", ["resize", "deconv"])
def test_do_nothing_start(upsample):
    """An untrained network predicts y = log(f^-1(D) + eps): every channel below tau is f^-1(D)
    exactly, a clipped one f^-1(D) + eps (HDR-CNN Fig. 3 caption: fusions start as additions)."""
    net = HDRCNN(width=0.125, upsample=upsample).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        y = net(x)
    lin = srgb_to_linear(x)
    a = ((x - 0.95) / 0.05).clamp(0, 1)
    assert torch.equal(y[a == 0], lin[a == 0])
    assert torch.allclose(y, lin + a * net.eps, rtol=1e-5, atol=1e-6)


def test_resize_decoder_draws_no_grid_where_deconvolutions_do():
    """A flat clipped area (a blown-out sky) with trained-like (perturbed) weights: transposed
    convolutions give each output phase its own kernel sum, a stride-locked pattern that
    ``grid_stops`` measures; the resize-convolution decoder returns a flat area."""
    x = torch.ones(1, 3, 192, 192)
    x[..., :, :24] = 0.5  # some texture at one side, so the frame is not all one value
    ldr = x[0].numpy().transpose(1, 2, 0)
    grids = {}
    for kind in ("deconv", "resize"):
        torch.manual_seed(1)
        net = perturb(HDRCNN(width=0.125, upsample=kind), seed=3, amp=1.0)
        with torch.no_grad():
            net.out_fuse.fuse.bias.fill_(1.5)  # an expansion above white, as a trained network makes
            pred = net(x)[0].numpy().transpose(1, 2, 0)
        grids[kind] = grid_artefact_stops(pred, ldr)
    assert np.isfinite(grids["deconv"]) and np.isfinite(grids["resize"])
    assert grids["deconv"] > 0.002, grids  # the unshipped GPU fine-tune read 0.0033 (docs/models.md)
    assert grids["resize"] < 1e-4, grids


@pytest.mark.parametrize("kind", ["deconv", "resize"])
def test_weights_of_either_decoder_layout_load(kind, tmp_path):
    """``hdrcnn-lite`` weights trained with the paper's transposed convolutions (every file shipped
    before the resize decoder) and with resize-convolutions both load, into the matching layout."""
    from safetensors.torch import save_file

    torch.manual_seed(2)
    net = perturb(HDRCNN(width=0.25, upsample=kind), seed=4)
    path = tmp_path / f"{kind}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    model = load_model("hdrcnn-lite", weights=path)
    assert model.net.upsample == kind
    assert (kind == "deconv") == isinstance(model.net.up[0], UpsampleDeconv)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)
