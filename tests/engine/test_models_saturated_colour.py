"""Saturated coloured highlights, channel by channel (the shared output stage, masks.keep_unclipped).

A camera clips each channel on its own: in a red flower or an orange lamp only the red channel
reaches display white, and the green and blue channels still hold their true values. Every
single-image network must keep a channel that was not clipped at its linearised input value (a
zero channel stays exactly 0) and only expand the clipped ones, never below their own value.

Two levels: every registered single-image network with random (perturbed) weights, so the check
does not rest on what training happened to learn; and the shipped weights on a rendered scene with
saturated highlights, scored against the plain inverse camera curve as ``hdrlift-eval`` does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdrlift.engine.colour_maths import srgb_to_linear
from hdrlift.engine.models import expandnet, hdrcnn, hdrunet, kim, moriwaki, santos, singlehdr
from hdrlift.engine.models.loading import LoadedModel, crop_to, load_model, pad_to_multiple
from hdrlift.engine.models.masks import channel_alpha, keep_unclipped, soft_exposure_mask
from hdrlift.engine.models.registry import available, get_info
from tests.conftest import perturb_weights

# narrow variants of every single-image network of the catalogue (same code paths, fast)
SMALL = {
    "hdrcnn": lambda: hdrcnn.HDRCNN(width=0.125),
    "hdrcnn-lite": hdrcnn.hdrcnn_lite,
    "hdrunet": lambda: hdrunet.HDRUNet(nf=16, cond_nf=16, cond_maps=8, blocks=(1, 1, 1)),
    "santos": lambda: santos.SantosHDR(width=0.125),
    "expandnet": expandnet.expandnet,
    "moriwaki": lambda: moriwaki.MoriwakiGenerator(width=0.125),
    "singlehdr": lambda: singlehdr.SingleHDR(deq_widths=(8, 8, 16, 16, 16, 16), hal_widths=(8, 8, 16, 16, 32, 32),
                                             resnet_widths=(8, 16, 16, 32), lin_size=64),
    "kim": lambda: kim.KimHDR(base=4),
}
# the code value below which a channel counts as "not clipped" for each network's output stage
KEEP_BELOW = {"santos": santos.ALPHA, "expandnet": expandnet.ALPHA}
# each network's own prediction before the output stage (ExpandNet's per-image scale is checked by
# tests/engine/test_models_single_image.py::test_expandnet_output_mapping)
RAW = {
    "hdrcnn": lambda net, x: torch.exp(net.forward_log(x).clamp(net.log_eps, net.y_max)),
    "hdrcnn-lite": lambda net, x: torch.exp(net.forward_log(x).clamp(net.log_eps, net.y_max)),
    "moriwaki": lambda net, x: net.decode(net.forward_log(x)),
    "hdrunet": lambda net, x: net.decode(net.forward_encoded(x)),
    "kim": lambda net, x: net.forward_stack(x)[1],
    "santos": lambda net, x: torch.exp(net.forward_log1p(x).clamp(0.0, net.y_max)) - 1.0,
    "singlehdr": lambda net, x: net.stages(x)["refined"],
}


def single_image_networks() -> list[str]:
    return sorted(i.name for i in available() if i.kind == "network")


def test_every_single_image_network_is_covered():
    assert set(SMALL) == set(single_image_networks())


def perturb(net: torch.nn.Module, seed: int = 0, head: float = 0.3) -> torch.nn.Module:
    """Random weights with every branch active (zero-initialised heads get values of scale
    ``head``), so the networks predict something other than the input everywhere."""
    return perturb_weights(net, seed, head=head, scale=0.5)


def saturated_highlights(h: int = 64, w: int = 96) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Code values: a textured grey background with a pure red disc (R clipped, G = B = 0), an
    orange disc (R clipped, G 0.55, B 0), a yellow one with green inside the ramp (R clipped, G 0.97,
    B 0.2) and a white clipped disc. Returns the image and the masks of the discs."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    g = torch.Generator().manual_seed(3)
    x = (0.25 + 0.3 * xx / w + 0.05 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)
    discs = {}
    for name, (cy, cx, rgb) in {"red": (16, 20, (1.0, 0.0, 0.0)), "orange": (16, 60, (1.0, 0.55, 0.0)),
                                "yellow": (46, 24, (1.0, 0.97, 0.2)), "white": (46, 70, (1.0, 1.0, 1.0))}.items():
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= 10.0 ** 2
        for c in range(3):
            x[0, c][m] = rgb[c]
        discs[name] = m
    return x, discs


@pytest.mark.parametrize("name", sorted(SMALL))
def test_unclipped_channels_are_kept_and_zero_channels_stay_zero(name):
    torch.manual_seed(0)  # the initial weights, before perturb
    # SingleHDR's linearisation and dequantisation heads move I_lin far from the input's clip level
    # when perturbed strongly; milder there, so that some channels still clip in I_lin
    net = perturb(SMALL[name](), head=0.05 if name == "singlehdr" else 0.3)
    model = LoadedModel(get_info(name), net).eval()
    x, discs = saturated_highlights()
    with torch.no_grad():
        y = model(x)
        lin = srgb_to_linear(x)
        if name == "singlehdr":  # its linearised input is its own (learnt) I_lin
            lin = net.stages(x)["lin"]
    assert bool(torch.isfinite(y).all())
    keep = x <= KEEP_BELOW.get(name, 0.95)
    assert torch.equal(y[keep], lin[keep]), "a channel that was not clipped must keep its linearised value"
    if name != "singlehdr":
        red, orange = discs["red"], discs["orange"]
        assert torch.equal(y[0, 1][red], torch.zeros(int(red.sum())))  # pure red: G and B exactly 0
        assert torch.equal(y[0, 2][red], torch.zeros(int(red.sum())))
        assert torch.equal(y[0, 2][orange], torch.zeros(int(orange.sum())))
        assert torch.equal(y[0, 1][orange], lin[0, 1][orange])  # orange: G kept at f^-1(0.55)
    clipped = x >= 1.0
    assert bool((y[clipped] >= lin[clipped] - 1e-6).all()), "a clipped channel never goes below its own value"
    if name in RAW:  # everywhere: (1 - alpha_c) lin + alpha_c max(the network's own prediction, lin)
        with torch.no_grad():
            xp, h, w = pad_to_multiple(x, get_info(name).multiple_of)
            raw = crop_to(RAW[name](net, xp), h, w)
            if name == "singlehdr":
                alpha = net.stages(x)["alpha"]
            elif name == "santos":
                alpha = 1.0 - soft_exposure_mask(x, santos.ALPHA)
            else:
                alpha = channel_alpha(x, 0.95)
        assert bool((alpha > 0.5).any())
        expect = (1.0 - alpha) * lin + alpha * torch.maximum(raw, lin)
        assert torch.allclose(y, expect, rtol=1e-5, atol=1e-6)


def test_keep_unclipped_blends_per_channel():
    x = torch.tensor([0.0, 0.5, 0.95, 0.975, 1.0, 1.0]).view(1, 6, 1, 1)
    lin = srgb_to_linear(x)
    expanded = torch.tensor([5.0, 5.0, 5.0, 3.0, 0.5, 4.0]).view(1, 6, 1, 1)
    alpha = channel_alpha(x, 0.95)
    assert torch.allclose(alpha.flatten(), torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0, 1.0]))
    out = keep_unclipped(lin, expanded, alpha).flatten()
    assert out[0] == 0.0 and out[1] == lin.flatten()[1] and out[2] == lin.flatten()[2]
    assert torch.isclose(out[3], 0.5 * lin.flatten()[3] + 0.5 * 3.0)
    assert out[4] == 1.0  # an expansion below the channel's own value is raised to it
    assert out[5] == 4.0


# --------------------------------------------------------------------------- the shipped weights
def render_saturated_scene(size: int = 128, seed: int = 0) -> np.ndarray:
    """Scene-linear HDR (median about 0.18): a textured grey-green ground and wall, a red flower
    (R up to 6x display white, G and B exactly 0 in its core), an orange lamp shade (R up to 4x, G
    0.9, B 0) and a small white specular glint, each with a soft falloff."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    tex = rng.random((size, size)).astype(np.float32)
    img = np.stack([0.12 + 0.1 * tex, 0.16 + 0.1 * tex, 0.1 + 0.08 * tex], -1) * (0.6 + 0.8 * xx)[..., None]

    def blob(cy, cx, r):
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        return np.clip(1.0 - d / r, 0.0, 1.0) ** 0.7

    flower = blob(0.3, 0.28, 0.16)
    img = np.where(flower[..., None] > 0, np.stack([0.05 + 6.0 * flower, 0.02 * (1 - flower) ** 4,
                                                    0.02 * (1 - flower) ** 4], -1), img)
    shade = blob(0.62, 0.68, 0.18)
    img = np.where(shade[..., None] > 0, np.stack([0.05 + 4.0 * shade, 0.9 * shade, 0.0 * shade], -1), img)
    img = img + (40.0 * blob(0.8, 0.2, 0.025))[..., None]
    return img.astype(np.float32)


@pytest.mark.parametrize("name", [n for n in single_image_networks() if get_info(n).has_weights])
def test_shipped_weights_on_saturated_coloured_highlights(name):
    """The held-out symptom: inside clipped red and orange highlights the old default lifted the
    channels that are zero in the truth to ~0.0036 of white and lost 15-17 dB PSNR-mu against the
    plain inverse curve. The shipped weights must keep those channels at 0 and lose no more than
    0.5 dB against the inverse curve on such a scene, at 3 % and 10 % clipped."""
    from hdrlift.training import camera as cam
    from hdrlift.training import metrics as M

    hdr = render_saturated_scene()
    model = load_model(name)
    icrf = load_model("inverse-crf")
    for frac in (0.03, 0.10):
        ldr, ref, _ = cam.Camera(clip_fraction=frac)(hdr)
        zero_truth = ref == 0.0
        assert zero_truth[..., 2].mean() > 0.05  # the orange shade's blue, the flower's core
        x = torch.from_numpy(np.ascontiguousarray(ldr.transpose(2, 0, 1)))[None]
        with torch.no_grad():
            pred = model(x)[0].numpy().transpose(1, 2, 0)
            base = icrf(x)[0].numpy().transpose(1, 2, 0)
        assert np.all(pred[zero_truth] == 0.0), "a channel that is zero in the truth must stay zero"
        red_only = (ldr[..., 0] >= 1.0) & (ldr[..., 1] < 0.95) & (ldr[..., 2] < 0.95)
        assert red_only.mean() > 0.005
        assert np.array_equal(pred[red_only][:, 1:], base[red_only][:, 1:])
        s_model, s_base = M.score(pred, ref, ldr), M.score(base, ref, ldr)
        assert s_model["psnr_mu"] >= s_base["psnr_mu"] - 0.5, (frac, s_model["psnr_mu"], s_base["psnr_mu"])
