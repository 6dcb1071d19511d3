"""Single-image networks: Santos et al. 2020 (masked features), ExpandNet (Marnerides et al. 2018),
Moriwaki et al. 2018 (hybrid-loss generator + discriminator), SingleHDR (Liu et al. 2020) — checked
against what the papers state, then the common contract (shapes, odd sizes, batches, dtypes, ONNX /
TorchScript export); and the model catalogue every model is declared in."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hdrlift.engine.errors import ModelError
from hdrlift.engine.colour_maths import srgb_to_linear
from hdrlift.engine.models import expandnet, moriwaki, santos, singlehdr
from hdrlift.engine.models.conv_blocks import SoftMaskedConv2d, UNet
from hdrlift.engine.models.filters import Sobel, apply_curve, soft_histogram_maps
from hdrlift.engine.models.hdrcnn import HDRCNN
from hdrlift.engine.models.masks import relative_change_mask, soft_exposure_mask
from hdrlift.engine.models.measure import count_params
from hdrlift.engine.models.loading import LoadedModel, load_model
from hdrlift.engine.models.registry import available, get_info
from hdrlift.training.discriminator import (
    MoriwakiDiscriminator,
    discriminator_loss,
    generator_adversarial_loss,
    log_hdr,
)
from tests.conftest import perturb_weights

NAMES = ("santos", "expandnet", "moriwaki", "singlehdr")
FACTORIES = {"santos": santos.santos, "expandnet": expandnet.expandnet, "moriwaki": moriwaki.moriwaki,
             "singlehdr": singlehdr.singlehdr}
PARAMS = {"santos": 25_775_444, "expandnet": 456_899, "moriwaki": 24_565_144, "singlehdr": 11_848_116}


# narrow variants of the same code paths, for the tests that only check dtypes and exports
SMALL = {"santos": lambda: santos.SantosHDR(width=0.25), "expandnet": expandnet.expandnet,
         "moriwaki": lambda: moriwaki.MoriwakiGenerator(width=0.25),
         "singlehdr": lambda: singlehdr.SingleHDR(deq_widths=(8, 8, 16, 16, 16, 16), hal_widths=(8, 8, 16, 16, 32, 32),
                                                  resnet_widths=(8, 16, 16, 32), lin_size=64)}


def perturb(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Untrained weights with every branch active (tests/conftest.py::perturb_weights)."""
    return perturb_weights(net, seed)


def loaded(name: str, seed: int = 0, small: bool = False) -> LoadedModel:
    net = (SMALL if small else FACTORIES)[name]()
    model = LoadedModel(get_info(name), perturb(net, seed)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def textured(n: int, h: int, w: int, seed: int = 0, clip: float = 0.2) -> torch.Tensor:
    """Code values with texture and a clipped highlight region (about ``clip`` of the pixels at 1)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = 0.15 + 0.7 * xx + 0.08 * torch.sin(yy * 23.0) + 0.05 * torch.rand(n, 3, h, w, generator=g)
    x = base / (1.0 - clip)
    return x.clamp(0.0, 1.0)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


# =========================================================================== Santos 2020
def test_santos_beta_is_fig2_ramp():
    t = torch.tensor([0.0, 0.5, 0.96, 0.97, 0.98, 0.99, 1.0, 1.2])
    b = soft_exposure_mask(t, 0.96)
    assert torch.allclose(b, torch.tensor([1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]), atol=1e-5)
    assert santos.ALPHA == 0.96


def test_santos_mask_update_is_eq4():
    torch.manual_seed(0)
    conv = SoftMaskedConv2d(4, 6, 3, stride=2)
    m = torch.rand(2, 4, 16, 16)
    w = conv.conv.weight.detach().abs()
    expect = F.conv2d(m, w / (w.sum(dim=(1, 2, 3), keepdim=True) + 1e-6), None, 2, 1)
    assert torch.allclose(conv.update_mask(m), expect, atol=1e-7)
    # normalised filter: an all-valid mask stays 1 away from the zero-padded border, and [0, 1] holds
    ones = conv.update_mask(torch.ones(1, 4, 16, 16))
    assert torch.allclose(ones[..., 1:, 1:], torch.ones_like(ones[..., 1:, 1:]), atol=1e-4)
    assert float(conv.update_mask(m).min()) >= 0.0 and float(conv.update_mask(m).max()) <= 1.0
    # Eq. 2-3: features are computed from x ⊙ M
    x = torch.randn(2, 4, 16, 16)
    feat, _ = conv(x, m)
    assert torch.allclose(feat, conv.conv(x * m), atol=1e-6)


def test_santos_masking_suppresses_saturated_pixels():
    """§3.1: features computed from saturated content are suppressed. Changing what lies under
    the clipped region (values >= 1: the scene content a clip hides) leaves the masked first-layer
    features unchanged, while the same change in a well-exposed region changes them; with a plain
    convolution (same weights, no masking) both changes matter. Deeper, the propagated mask
    (Eq. 4) keeps the features inside a large clipped area near zero."""
    torch.manual_seed(0)
    net = santos.SantosHDR(width=0.25).eval()
    x = torch.full((1, 3, 128, 128), 0.5)
    x[..., :, :64] = 0.3 + 0.3 * torch.rand(1, 3, 128, 64)  # textured, well exposed
    x[..., :, 64:] = 1.0  # clipped
    sat = torch.zeros_like(x, dtype=torch.bool)
    sat[..., 40:90, 80:120] = True
    unsat = torch.zeros_like(sat)
    unsat[..., 40:90, 8:48] = True
    delta = 0.3 * torch.rand(x.shape, generator=torch.Generator().manual_seed(1))

    with torch.no_grad():
        z0, f0, m2 = net.first_layer(x)
        z_s, f_s, _ = net.first_layer(torch.where(sat, x + delta, x))
        z_u, f_u, _ = net.first_layer(torch.where(unsat, x - delta, x))
    masked_sat = float((f_s - f0).abs().max())
    masked_unsat = float((f_u - f0).abs().max())
    assert masked_unsat > 1e-2
    assert masked_sat <= 1e-6 * masked_unsat + 1e-7
    assert float((z_s - z0).abs().max()) == 0.0
    plain = net.enc[0].conv
    with torch.no_grad():
        plain_sat = float((plain(torch.where(sat, x + delta, x)) - plain(x)).abs().max())
    assert plain_sat > 0.5 * masked_unsat  # without masking the clipped region's content leaks in
    # Eq. 4 propagation: the layer-2 mask is ~0 inside the clipped area, ~1 inside the valid one
    assert float(m2[..., 20:44, 36:60].max()) < 1e-6
    assert float(m2[..., 20:44, 4:28].min()) > 0.999


def test_santos_blend_keeps_well_exposed_pixels_exactly():
    """Eq. 1 with f^-1 = inverse sRGB: pixels/channels with M = 1 equal f^-1(T) bit for bit, a
    channel clipped alone is replaced while the others of the pixel are kept; a clipped channel is
    the network's expansion exp(Y) - 1, bounded below by its own linearised value (the shared
    output stage, masks.keep_unclipped)."""
    model = loaded("santos")
    x = textured(1, 128, 128)
    x[0, 0, 5:15, 5:15] = 1.0  # red clipped, green/blue well exposed
    x[0, 1:, 5:15, 5:15] = 0.4
    with torch.no_grad():
        y = model(x)
        expansion = torch.exp(model.net.forward_log1p(x).clamp(0.0, 10.0)) - 1.0
    lin = srgb_to_linear(x)
    keep = x <= santos.ALPHA
    assert keep.float().mean() > 0.5
    assert torch.equal(y[keep], lin[keep])
    clipped = x >= 1.0
    assert torch.allclose(y[clipped], torch.maximum(expansion, lin)[clipped])
    # Eq. 1 itself on a chosen prediction: exp(Y) - 1 = 3 where clipped, kept where M = 1
    y3 = model.net.blend(x, torch.full_like(x, math.log(4.0)))
    assert torch.allclose(y3[clipped], torch.full_like(y3[clipped], 3.0))
    assert torch.equal(y3[keep], lin[keep])
    assert float(y.min()) >= 0.0 and bool(torch.isfinite(y).all())
    mask = model.reconstruction_mask(x)
    assert torch.equal(mask[0, 0, 5:15, 5:15], torch.ones(10, 10))
    assert torch.allclose(mask, 1.0 - soft_exposure_mask(x, 0.96).amin(dim=1, keepdim=True))


def test_santos_architecture_fig6():
    net = santos.SantosHDR()
    kernels = [c.conv.kernel_size[0] for c in net.enc]
    outs = [c.conv.out_channels for c in net.enc]
    assert kernels == [7, 5, 5, 3, 3, 3, 3] and outs == [64, 128, 256, 512, 512, 512, 512]
    assert all(c.conv.stride == (2, 2) for c in net.enc)
    assert [c.conv.out_channels for c in net.dec] == [512, 512, 512, 256, 128, 64, 3]
    assert get_info("santos").multiple_of == 128


# =========================================================================== ExpandNet
def test_expandnet_branches_and_parameters():
    net = expandnet.ExpandNet()
    assert count_params(net) == expandnet.PARAMETERS
    local = [m for m in net.local.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.out_channels) for c in local] == [((3, 3), 64), ((3, 3), 128)]
    convs = [m for m in net.dilated.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(c.dilation == (2, 2) for c in convs)
    with torch.no_grad():
        g = net.glob(torch.rand(2, 3, 256, 256))
    assert g.shape == (2, 64, 1, 1)  # strided convs down to 1 x 1 on the 256 x 256 resize
    with torch.no_grad():
        o = net.forward_normalised(torch.rand(1, 3, 33, 47))
    assert o.shape == (1, 3, 33, 47) and float(o.min()) >= 0.0 and float(o.max()) <= 1.0  # sigmoid


def test_expandnet_global_branch_is_global():
    """The replicated global vector lets a far-away change alter a pixel the local (5x5) and
    dilated (17x17) receptive fields cannot see."""
    net = perturb(expandnet.ExpandNet())
    x = torch.rand(1, 3, 64, 96)
    x2 = x.clone()
    x2[..., :, 60:] = 1.0 - x2[..., :, 60:]
    with torch.no_grad():
        a, b = net.forward_normalised(x), net.forward_normalised(x2)
    assert float((a[..., :, :30] - b[..., :, :30]).abs().max()) > 1e-5


def test_expandnet_output_mapping():
    """Santos Eq. 1-style blend with a per-image scale fitted on the well-exposed pixels."""
    net = expandnet.ExpandNet()
    x = textured(2, 32, 48)
    lin = srgb_to_linear(x)
    o = (0.25 * lin).clamp(max=1.0)
    o = torch.where(x >= 1.0, torch.full_like(o, 0.9), o)  # the network's highlight prediction
    y = net.to_contract(x, o)
    keep = x <= expandnet.ALPHA
    assert torch.equal(y[keep], lin[keep])
    clipped = x >= 1.0
    assert torch.allclose(y[clipped], torch.full_like(y[clipped], 3.6), rtol=1e-4)  # s = 4
    # no well-exposed pixel at all: s = 1, finite; an expansion below the clipped channel's own
    # linearised value (0.5 < 1) is raised to it (the shared output stage, masks.keep_unclipped)
    y1 = net.to_contract(torch.ones(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.5))
    assert torch.allclose(y1, torch.ones_like(y1))


# =========================================================================== Moriwaki 2018
def test_moriwaki_generator_is_hdrcnn_on_linear_input():
    """§4: initialised from HDR-CNN's weights (same modules); §3.1: linearised input."""
    gen = moriwaki.MoriwakiGenerator(width=0.25)
    assert isinstance(gen, HDRCNN)
    src = HDRCNN(width=0.25)
    gen.load_state_dict(src.state_dict(), strict=True)
    seen = {}
    gen.encoder[0].register_forward_pre_hook(lambda m, inp: seen.setdefault("x", inp[0]))
    x = textured(1, 64, 64)
    with torch.no_grad():
        y = gen(x)
    assert torch.allclose(seen["x"], srgb_to_linear(x))
    # HDR-CNN's do-nothing start: the generator returns the inverse sRGB curve everywhere
    assert torch.allclose(y, srgb_to_linear(x), rtol=1e-5, atol=1e-6)


def test_moriwaki_predicts_the_whole_image():
    """The paper's generator has no highlight-only blend (Eq. 2-3 weight every pixel, under-exposed
    ones more): with ``full_image=True`` it changes dark pixels, which HDR-CNN's Eq. 16 keeps. The
    engine's default goes through the shared per-channel output stage, which keeps them too."""
    gen = perturb(moriwaki.MoriwakiGenerator(width=0.25, full_image=True))
    ref = HDRCNN(width=0.25)
    ref.load_state_dict(gen.state_dict())
    default = moriwaki.MoriwakiGenerator(width=0.25).eval()
    default.load_state_dict(gen.state_dict())
    x = textured(1, 64, 64) * 0.5  # nothing near saturation
    with torch.no_grad():
        y, y_ref, y_def = gen(x), ref.eval()(x), default(x)
    lin = srgb_to_linear(x)
    assert torch.allclose(y_ref, lin, atol=1e-6)  # HDR-CNN: alpha = 0 -> input kept
    assert float((y - lin).abs().max()) > 1e-3
    assert float(y.min()) >= 0.0
    assert torch.equal(y_def, lin)  # the output stage: nothing was clipped, every channel kept
    m = gen.reconstruction_mask(x)
    assert torch.allclose(m, relative_change_mask(x, y))


def test_moriwaki_discriminator_and_losses():
    d = MoriwakiDiscriminator()
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    fcs = [m for m in d.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 8 and len(fcs) == 2
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    hdr = torch.rand(3, 3, 64, 96) * 20
    logits = d(log_hdr(hdr))
    assert logits.shape == (3,)
    assert d(log_hdr(torch.rand(2, 3, 128, 128))).shape == (2,)
    z_f, z_r = torch.randn(5), torch.randn(5)
    dz_f, dz_r = torch.sigmoid(z_f), torch.sigmoid(z_r)
    assert torch.allclose(generator_adversarial_loss(z_f), (-torch.log(dz_f)).sum(), atol=1e-5)  # Eq. 4
    assert torch.allclose(discriminator_loss(z_f, z_r),
                          -(torch.log(1 - dz_f) + torch.log(dz_r)).mean(), atol=1e-5)  # Eq. 5
    assert torch.isfinite(discriminator_loss(torch.tensor([80.0]), torch.tensor([-80.0])))
    # the loss trains the discriminator: gradients reach the first conv
    loss = discriminator_loss(d(log_hdr(hdr[:2])), d(log_hdr(hdr[1:])))
    loss.backward()
    assert float(convs[0].weight.grad.abs().sum()) > 0
    assert torch.allclose(log_hdr(hdr), torch.log(hdr + 1 / 255))


# =========================================================================== SingleHDR
def test_singlehdr_basis_is_orthonormal_and_vanishes_at_ends():
    g0, b = singlehdr.crf_basis()
    assert b.shape == (1024, 11)
    assert torch.allclose(b.t() @ b, torch.eye(11), atol=1e-5)
    assert float(b[0].abs().max()) < 1e-6 and float(b[-1].abs().max()) < 1e-6
    assert torch.allclose(g0, srgb_to_linear(torch.linspace(0, 1, 1024)), atol=1e-6)


def test_singlehdr_inverse_crf_is_monotone_for_random_weights():
    """Eq. 23: whatever the K PCA weights, the inverse CRF is non-decreasing, starts at 0 and ends at 1."""
    lin = singlehdr.LinearizationNet()
    w = torch.randn(64, 11, generator=torch.Generator().manual_seed(3)) * 2.0
    raw = lin.g0 + w @ lin.basis.t()
    assert bool(((raw[:, 1:] - raw[:, :-1]) < 0).any(dim=1).all())  # the raw curves are not monotone
    g = lin.curve(w)
    assert bool(((g[:, 1:] - g[:, :-1]) >= 0).all())
    assert torch.allclose(g[:, 0], torch.zeros(64)) and torch.allclose(g[:, -1], torch.ones(64))
    # Eq. 23 leaves an already monotone curve from 0 to 1 unchanged (zero weights: inverse sRGB)
    assert torch.allclose(lin.curve(torch.zeros(1, 11))[0], lin.g0, atol=1e-6)
    # applied to an image: monotone in the code value
    x = torch.linspace(0, 1, 300).view(1, 1, 1, 300).expand(64, 3, 1, 300)
    y = apply_curve(x, g)
    assert bool(((y[..., 1:] - y[..., :-1]) >= -1e-7).all())


def test_apply_curve_matches_numpy_interp():
    curve = torch.rand(2, 17).cumsum(dim=1)
    x = torch.rand(2, 3, 5, 7) * 1.2 - 0.1
    y = apply_curve(x, curve)
    grid = np.linspace(0, 1, 17)
    for i in range(2):
        expect = np.interp(np.clip(x[i].numpy(), 0, 1), grid, curve[i].numpy())
        assert np.allclose(y[i].numpy(), expect, atol=1e-5)


def test_singlehdr_hallucination_residual_is_non_negative():
    """§7.1: ReLU residual, added only where I_lin exceeds gamma = 0.95."""
    torch.manual_seed(0)  # the initial weights, before perturb
    net = perturb(singlehdr.singlehdr(), seed=2)
    x = textured(2, 64, 96, clip=0.3)
    with torch.no_grad():
        s = net.stages(x)
    assert float(s["residual"].min()) >= 0.0 and float(s["residual"].max()) > 0.0
    assert bool((s["hal"] >= s["lin"]).all())
    # alpha per channel, as the survey prints it (no maximum over channels)
    expect_alpha = ((s["lin"] - 0.95) / 0.05).clamp(0, 1)
    assert torch.allclose(s["alpha"], expect_alpha)
    keep = s["alpha"] == 0
    assert 0.3 < float(keep.float().mean()) < 0.95
    assert torch.equal(s["hal"][keep], s["lin"][keep])
    # the output stage: unclipped channels keep I_lin, clipped ones blend towards max(H_ref, I_lin)
    assert torch.equal(s["hdr"][keep], s["lin"][keep])
    assert float(s["alpha"].max()) > 0.5
    a = s["alpha"]
    assert torch.allclose(s["hdr"], (1 - a) * s["lin"] + a * torch.maximum(s["refined"], s["lin"]), rtol=1e-6, atol=1e-7)
    assert float((s["deq"] - x).abs().max()) <= 1.0  # tanh residual
    assert torch.equal(net.reconstruction_mask(x), s["alpha"].amax(dim=1, keepdim=True))


def test_singlehdr_do_nothing_start_is_inverse_srgb():
    net = singlehdr.singlehdr().eval()
    x = textured(1, 64, 64)
    with torch.no_grad():
        y = net(x)
    assert torch.allclose(y, srgb_to_linear(x), rtol=1e-5, atol=2e-6)


def test_feature_maps():
    x = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(1, 3, 8, 16).contiguous()
    s = Sobel(3)(x)
    assert s.shape == (1, 6, 8, 16)
    assert torch.allclose(s[:, 0::2, :, 1:-1], torch.full_like(s[:, 0::2, :, 1:-1], 1 / 15), atol=1e-6)
    assert float(s[:, 1::2].abs().max()) < 1e-6
    h = soft_histogram_maps(x, (4, 8))
    assert h.shape == (1, 3 * 12, 8, 16)
    inner = (x[0, 0, 0] >= 1 / 16) & (x[0, 0, 0] <= 15 / 16)
    assert torch.allclose(h[0, 12:20, 0][:, inner].sum(dim=0), torch.ones(int(inner.sum())), atol=1e-5)
    u = UNet(3, 2, (4, 8, 8))
    assert u(torch.rand(2, 3, 12, 20)).shape == (2, 2, 12, 20) and u.multiple_of == 4


# =========================================================================== common contract
@pytest.mark.parametrize("name", NAMES)
def test_registered_without_weights(name):
    info = get_info(name)
    assert info.kind == "network" and info.weights == f"{name}.safetensors"
    assert info.multiple_of == {"santos": 128, "expandnet": 1, "moriwaki": 32, "singlehdr": 32}[name]
    assert "§" in info.paper
    if not info.has_weights:
        with pytest.raises(ModelError, match="no trained weights"):
            load_model(name)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts(name):
    n = count_params(FACTORIES[name]())
    print(f"{name}: {n:,} parameters")
    assert n == PARAMS[name]


@pytest.mark.parametrize("name", NAMES)
def test_odd_size_batch_and_mask(name):
    model = loaded(name)
    x = textured(2, 37, 53, seed=4)
    with torch.no_grad():
        y = model(x)
        m = model.reconstruction_mask(x)
        y1 = model(x[1:2])
    assert y.shape == (2, 3, 37, 53) and y.dtype == torch.float32
    assert m.shape == (2, 1, 37, 53)
    assert bool(torch.isfinite(y).all()) and float(y.min()) >= 0.0
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    assert torch.allclose(y[1:2], y1, rtol=1e-4, atol=1e-5)  # batch items are independent


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_runs(name, dtype):
    net = perturb(SMALL[name]())
    m = get_info(name).multiple_of
    x = textured(1, max(m, 32), max(m, 32) * 2 // (2 if m > 32 else 1))
    try:
        with torch.no_grad():
            y = net.to(dtype)(x.to(dtype))
    except RuntimeError as exc:  # a CPU kernel without this dtype is a torch limit, not ours
        if "not implemented" in str(exc):
            pytest.skip(f"torch CPU: {exc}")
        raise
    assert y.dtype == dtype and bool(torch.isfinite(y).all())
    with torch.no_grad():
        ref = net.float()(x)
    assert float((y.float() - ref).abs().max()) < 0.1 * float(ref.abs().max()) + 0.05


@pytest.mark.parametrize("name", NAMES)
def test_onnx_and_torchscript_exports(name, tmp_path):
    """Through the project's exporters (padding inside the graph, dynamic N/H/W): onnxruntime and
    the traced TorchScript agree with torch at a size and batch other than the traced ones. The
    narrow variants keep the file fast; the full-width registered networks export the same graph
    (checked by hand, see docs/models_single_image.md)."""
    import onnxruntime as ort

    from hdrlift.engine.backends.exporters import export_onnx, export_torchscript

    model = loaded(name, seed=5, small=True)
    onnx_path = export_onnx(model, tmp_path / f"{name}.onnx")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    h, w = (130, 150) if name == "santos" else (70, 100)
    x = textured(2, h, w, seed=6)
    with torch.no_grad():
        ref = model(x).numpy()
        ref_mask = model.reconstruction_mask(x).numpy()
    hdr, mask = sess.run(None, {"ldr": x.numpy()})
    assert hdr.shape == ref.shape and mask.shape == ref_mask.shape
    err = rel_err(hdr, ref)
    print(f"{name}: ONNX opset 17 max relative error {err:.2e}")
    assert err < 1e-4
    assert rel_err(mask, ref_mask) < 1e-4

    ts_path = export_torchscript(model, tmp_path / f"{name}.pt")
    ts = torch.jit.load(str(ts_path))
    with torch.no_grad():
        out = ts(x[:1])
    assert rel_err(out.numpy(), ref[:1]) < 1e-4


# =========================================================================== the catalogue
def test_listing_models_imports_no_torch():
    """``--list-models`` and ``--version`` look models up without importing torch (~1.5 s)."""
    import subprocess
    import sys

    code = ("import sys; import hdrlift.engine.models as m; m.available(); m.get_info(m.DEFAULT_MODEL); "
            "from hdrlift.engine.models import DEFAULT_MODEL, ModelInfo, available, get_info; "
            "import hdrlift.engine.colour_maths, hdrlift.engine.models.bracket_merge; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("info", available(), ids=lambda i: i.name)
def test_catalogue_entry_matches_its_model_file(info):
    """Each entry's factory resolves in the paper's own file, which keeps its padding multiple
    (``MULTIPLE_OF``, 1 where there is none) and looks its ``ModelInfo`` up rather than making one."""
    import importlib

    factory = info.factory.resolve()
    module = importlib.import_module(factory.__module__)
    assert info.multiple_of == getattr(module, "MULTIPLE_OF", 1)
    assert get_info(info.name) is info
    assert info.tiling == ("pointwise" if info.name == "inverse-crf" else "global" if info.kind == "classical"
                           else "network")
    if info.name == "hdrunet":  # the authors' model size
        from hdrlift.engine.models import hdrunet

        assert count_params(info.factory()) == hdrunet.PARAMETERS
