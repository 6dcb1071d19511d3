"""Exposure stacks and brackets: Kim et al. 2021 (recursive stack + differentiable HDR synthesis), the
exposure-bracket networks (Kalantari & Ramamoorthi 2017, Wu et al. 2018, AHDRNet by Yan et al. 2019)
and the classical Debevec & Malik / Robertson merges, checked against what the papers state."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from hdrlift.engine.errors import ModelError
from hdrlift.engine.colour_maths import mu_law, srgb_to_linear
from hdrlift.engine.models import bracket_merge, bracket_networks, kalantari
from hdrlift.engine.models.camera_curve import gauss_jordan_solve, grid_indices, hat_weight
from hdrlift.engine.models.kim import DifferentiableHDRSynthesis, KimHDR, synthesize_hdr
from hdrlift.engine.models.loading import LoadedModel, load_model
from hdrlift.engine.models.registry import get_info

EVS = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])


def camera(e: np.ndarray) -> np.ndarray:
    """A known, non-gamma camera curve (saturating S-shape), exposure -> code value in [0, 1]."""
    e = np.clip(e, 0.0, None)
    return np.clip(1.25 * (e / (1.0 + e)) ** (1.0 / 1.6), 0.0, 1.0)


def scene(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """Synthetic HDR radiance, ~9 stops, each channel different, with texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = -5.5 + 6.5 * xx / (w - 1) + 0.8 * np.sin(yy / 4.0) + 0.3 * rng.standard_normal((h, w))
    return np.exp2(np.stack([base, base + 0.4 * np.cos(xx / 6.0), base - 0.3], axis=-1))


def bracket(e: np.ndarray, evs=EVS) -> tuple[np.ndarray, np.ndarray]:
    times = 2.0 ** np.asarray(evs, np.float64)
    return np.stack([np.round(camera(e * t) * 255).astype(np.uint8) for t in times]), times


def well_exposed(stack: np.ndarray) -> np.ndarray:
    z = stack.astype(np.float64)
    return (np.minimum(z, 255 - z) / 127.5).max(axis=0) > 0.3


def log_error(est: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    r = np.log(est.astype(np.float64) / truth)
    r = r - np.median(r[mask])  # radiance is known up to a factor
    return np.abs(r[mask])


def as_torch_stack(stack: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(stack.astype(np.float32) / 255.0).permute(0, 3, 1, 2).unsqueeze(0)


# --------------------------------------------------------------------------- helpers
def test_gauss_jordan_matches_linalg_solve():
    g = torch.Generator().manual_seed(1)
    m = torch.randn(2, 40, 40, generator=g, dtype=torch.float64)
    a = m @ m.transpose(1, 2) + 40 * torch.eye(40, dtype=torch.float64)
    b = torch.randn(2, 40, generator=g, dtype=torch.float64)
    assert torch.allclose(gauss_jordan_solve(a, b), torch.linalg.solve(a, b), atol=1e-10)


def test_grid_indices_match_numpy():
    for n, s in ((37, 20), (480, 20), (19, 19), (5, 20)):
        assert np.array_equal(grid_indices(n, s).numpy(), bracket_merge._grid(n, s))
        # made on the caller's device (no host copy inside a CUDA graph); a traced size as a tensor
        on_dev = grid_indices(n, s, torch.device("cpu"))
        assert on_dev.dtype == torch.int64 and np.array_equal(on_dev.numpy(), bracket_merge._grid(n, s))
        assert np.array_equal(grid_indices(torch.tensor(n), s, "cpu").numpy(), bracket_merge._grid(n, s))


# --------------------------------------------------------------------------- classical merges
@pytest.mark.parametrize("method", ["debevec", "robertson"])
def test_classical_recovers_radiance_and_monotone_curve(method):
    e = scene()
    stack, times = bracket(e)
    radiance, curve = bracket_merge.merge_classical(stack, times, method)
    assert radiance.shape == e.shape and radiance.dtype == np.float32
    mask = well_exposed(stack)
    assert mask.mean() > 0.9
    err = log_error(radiance, e, mask)
    assert np.median(err) < 0.02, np.median(err)
    assert np.percentile(err, 99) < 0.08, np.percentile(err, 99)
    inner = curve[:, 1:255]  # levels 0 and 255 carry no radiance information
    assert np.all(np.diff(inner, axis=1) > 0), f"{method} curve not monotone"


def test_debevec_curve_is_the_inverse_camera_curve():
    """g(z) - g(128) must follow ln f^-1(z) - ln f^-1(128) of the known camera."""
    e = scene()
    stack, times = bracket(e)
    g = bracket_merge.debevec_curve(stack, times)
    z = np.arange(30, 230)
    # inverse of camera(): c = 1.25 (x/(1+x))^(1/1.6)  ->  x = u / (1 - u), u = (c/1.25)^1.6
    def inv(c):
        u = (c / 1.25) ** 1.6
        return u / (1 - u)
    truth = np.log(inv(z / 255.0)) - np.log(inv(128 / 255.0))
    for ch in range(3):
        assert np.max(np.abs(g[ch][z] - g[ch][128] - truth)) < 0.06


def test_scale_to_reference_pins_well_exposed_pixels():
    ref = np.random.default_rng(2).uniform(0.1, 0.9, (16, 16, 3)).astype(np.float32)
    lin = np.where(ref <= 0.04045, ref / 12.92, ((ref + 0.055) / 1.055) ** 2.4)
    out = bracket_merge.scale_to_reference(lin * np.array([3.0, 0.5, 7.0], np.float32), ref)
    assert np.allclose(out, lin, rtol=1e-4)


# --------------------------------------------------------------------------- differentiable synthesis (Kim §3.1)
def test_synthesis_layer_reproduces_classical_debevec():
    e = scene()
    stack, times = bracket(e)
    g_np = bracket_merge.debevec_curve(stack, times)
    hdr_np = bracket_merge.debevec_merge(stack, times, g_np)
    layer = DifferentiableHDRSynthesis()
    st = as_torch_stack(stack)
    lt = torch.tensor(np.log(times), dtype=torch.float32)
    g_t = layer.solve_curve(st, lt)[0].numpy()
    assert np.max(np.abs(g_t - g_np)) < 1e-4
    hdr_t = layer(st, lt)[0].permute(1, 2, 0).numpy()
    assert np.max(np.abs(hdr_t / hdr_np - 1.0)) < 1e-4
    # the functional form is the same layer
    hdr_f = synthesize_hdr(st, lt)[0].permute(1, 2, 0).numpy()
    assert np.allclose(hdr_f, hdr_t)
    # and a 3-EV bracket works too (any stack)
    st3, t3 = bracket(e, [-2.0, 0.0, 2.0])
    h3 = layer(as_torch_stack(st3), torch.tensor(np.log(t3)))[0].permute(1, 2, 0).numpy()
    assert np.allclose(h3, bracket_merge.debevec_merge(st3, t3, bracket_merge.debevec_curve(st3, t3)), rtol=1e-4)


def test_synthesis_layer_gradients_reach_every_stack_image():
    e = scene(24, 32, seed=3) * 0.5
    stack, times = bracket(e)
    st = as_torch_stack(stack).clone().requires_grad_(True)
    lt = torch.tensor(np.log(times), dtype=torch.float32)
    hdr = DifferentiableHDRSynthesis()(st, lt)
    loss = mu_law(hdr / hdr.max().detach()).mean()  # the mu-law HDR loss of Kim Eq. 7
    loss.backward()
    grad = st.grad[0]
    assert torch.isfinite(grad).all()
    for j in range(grad.shape[0]):
        assert grad[j].abs().sum() > 0, f"no gradient for stack image {j}"
    # Eq. 3: the piecewise-linear curve has slope g(Z) - g(Z - 1) per level
    layer = DifferentiableHDRSynthesis()
    g = layer.solve_curve(st.detach(), lt)
    z = torch.full((1, 1, 3, 1, 1), 100.0, dtype=torch.float64, requires_grad=True)
    layer.curve_at(g, z).sum().backward()
    expect = (g[0, :, 100] - g[0, :, 99]).sum()
    assert torch.allclose(z.grad.sum(), expect, rtol=1e-6)


# --------------------------------------------------------------------------- Kim 2021 model
def _kim(seed=0) -> LoadedModel:
    torch.manual_seed(seed)
    return LoadedModel(get_info("kim"), KimHDR()).eval()


def test_kim_registered_and_refused_without_weights():
    info = get_info("kim")
    assert info.kind == "network" and info.multiple_of == 16 and not info.runnable
    with pytest.raises(ModelError, match="has no trained weights shipped yet"):
        load_model("kim")


def test_kim_odd_sizes_and_batch_two():
    m = _kim()
    x = torch.rand(2, 3, 37, 51)
    with torch.no_grad():
        y = m(x)
        mask = m.reconstruction_mask(x)
        stack = m.net.generate_stack(m._pad(x)[0])
    assert y.shape == (2, 3, 37, 51) and mask.shape == (2, 1, 37, 51)
    assert torch.isfinite(y).all() and (y > 0).all()
    assert 0.0 <= float(mask.min()) and float(mask.max()) <= 1.0
    assert stack.shape == (2, 7, 3, 48, 64)
    assert torch.equal(stack[:, 3], m._pad(x)[0])  # EV 0 is the input itself
    assert m.net.exposure_values() == [-3, -2, -1, 0, 1, 2, 3]
    # batch independence: image 1 alone gives the same result
    with torch.no_grad():
        y1 = m(x[1:2])
    assert torch.allclose(y1, y[1:2], rtol=1e-4, atol=1e-6)


def test_kim_reduced_precision_merges_in_float32():
    """In bf16 the stack networks run in bf16, but the synthesis layer and the scaling run in
    float32: the HDR comes back in bf16, finite, and pinned to f^-1(x) on well-exposed pixels
    (in bf16 arithmetic ``z * 255`` alone is off by up to a level, and exp(ln E) overflows fp16)."""
    torch.manual_seed(0)
    net = KimHDR().eval().to(torch.bfloat16)
    seen = []
    net.synthesis.register_forward_pre_hook(lambda mod, args: seen.append(args[0].dtype))
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 64), indexing="ij")
    x = torch.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.2 + 0.5 * xx * yy])[None]
    x[:, :, 8:20, 10:40] = 1.0
    with torch.no_grad():
        y = net(x.to(torch.bfloat16))
    assert seen == [torch.float32]
    assert y.dtype == torch.bfloat16 and bool(torch.isfinite(y).all()) and bool((y > 0).all())
    # scale_to_input: the hat-weighted mean log ratio to f^-1(x) is 0 per channel (bf16 output rounding aside)
    w = hat_weight(x * 255.0, 256)
    log_ratio = torch.log(y.float() / srgb_to_linear(x))
    per_channel = (w * log_ratio).sum(dim=(2, 3)) / w.sum(dim=(2, 3))
    assert float(per_channel.abs().max()) < 0.01, per_channel
    assert get_info("kim").fp32_only  # and the back ends run it in fp32 (test_backends)


def test_kim_end_to_end_gradients_reach_both_networks():
    torch.manual_seed(0)
    net = KimHDR()
    x = torch.rand(1, 3, 32, 32)
    stack, hdr = net.forward_stack(x)
    mu_law(hdr / hdr.detach().max()).mean().backward()
    for part in (net.stop_up.refine_net, net.stop_down.refine_net, net.stop_up.global_net, net.stop_down.local_net):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.slow
def test_kim_onnx_and_torchscript_parity(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from hdrlift.engine.backends.exporters import export_onnx

    m = _kim()
    path = export_onnx(m, tmp_path / "kim.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 37, 51, generator=torch.Generator().manual_seed(5))
    hdr, mask = sess.run(None, {"ldr": x.numpy()})
    with torch.no_grad():
        ref = m(x).numpy()
    assert hdr.shape == ref.shape and mask.shape == (2, 1, 37, 51)
    assert np.max(np.abs(hdr - ref) / np.maximum(np.abs(ref), 1e-3)) < 1e-4
    # TorchScript (traced, what Nuke's CatFileCreator takes) at yet another size
    from hdrlift.engine.backends.exporters import export_torchscript

    ts = torch.jit.load(str(export_torchscript(m, tmp_path / "kim.pt")))
    x1 = torch.rand(1, 3, 29, 40, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.allclose(ts(x1), m(x1), rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- fusion networks (Qiu's survey §3-5)
FUSION = ["kalantari", "wu", "ahdrnet"]


def _fusion(name: str, seed: int = 0) -> bracket_networks.FusionModel:
    torch.manual_seed(seed)
    info = get_info(name)
    return bracket_networks.FusionModel(info, info.factory()).eval()


def _bracket_tensor(n=2, h=37, w=45, seed=0):
    g = torch.Generator().manual_seed(seed)
    ldr = torch.rand(n, 3, 3, h, w, generator=g)
    t = torch.tensor([[0.25, 1.0, 4.0]] * n)
    return ldr, t


@pytest.mark.parametrize("name", FUSION)
def test_fusion_shapes_and_registry(name):
    info = get_info(name)
    assert info.kind == "fusion" and info.needs_weights and not info.runnable
    m = _fusion(name)
    ldr, t = _bracket_tensor()
    with torch.no_grad():
        hdr = m(ldr, t)
        tm = m.net.forward_tonemapped(m._pad(ldr)[0], t)
        mask = m.reconstruction_mask(ldr, t)
    assert hdr.shape == (2, 3, 37, 45) and mask.shape == (2, 1, 37, 45)
    assert torch.isfinite(hdr).all() and (hdr >= 0).all()
    assert 0 <= float(tm.min()) and float(tm.max()) <= 1.0
    # [0, 1]-normalised outputs reach at most the shortest exposure's white: t_ref / t_min = 4
    assert float(hdr.max()) <= 4.0 + 1e-4


def test_kalantari_weights_give_a_convex_combination():
    """Eq. 5: H is a weighted average of the aligned H_j, so it lies between their min and max."""
    m = _fusion("kalantari")
    ldr, t = _bracket_tensor(1, 24, 24)
    with torch.no_grad():
        hdr = m(ldr, t)
        _, lin = bracket_networks.bracket_inputs(ldr, t, 1)
    assert (hdr >= lin.amin(dim=1) - 1e-5).all() and (hdr <= lin.amax(dim=1) + 1e-5).all()
    # H_ref is exactly the inverse sRGB curve of the reference (our output convention)
    assert torch.allclose(lin[:, 1], srgb_to_linear(ldr[:, 1]))


def test_fusion_models_refused_without_weights():
    with pytest.raises(ModelError, match="has no trained weights shipped yet"):
        bracket_networks.load_fusion_model("ahdrnet")
    with pytest.raises(ModelError, match="not a multi-exposure fusion model"):
        bracket_networks.load_fusion_model("hdrunet")


def test_fusion_model_loads_user_weights(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    net = kalantari.KalantariWE()
    path = tmp_path / "k.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    m = bracket_networks.load_fusion_model("kalantari", weights=path)
    ldr, t = _bracket_tensor(1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(m(ldr, t), net.eval()(ldr, t))


@pytest.mark.parametrize("name", FUSION)
def test_fusion_onnx_parity_and_torchscript(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m = _fusion(name, seed=2)
    path = bracket_networks.export_fusion_onnx(m, tmp_path / f"{name}.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ldr, t = _bracket_tensor(2, 35, 41, seed=7)  # not the export size: dynamic H, W, N
    (hdr,) = sess.run(None, {"ldr": ldr.numpy(), "exposure": t.numpy()})
    with torch.no_grad():
        ref = m(ldr, t).numpy()
    assert hdr.shape == ref.shape
    assert np.max(np.abs(hdr - ref) / np.maximum(np.abs(ref), 1e-3)) < 1e-4
    with torch.no_grad():
        traced = torch.jit.trace(m.net, _bracket_tensor(1, 32, 48), check_trace=False)
        out = traced(*_bracket_tensor(1, 48, 64, seed=3))
        assert torch.allclose(out, m.net(*_bracket_tensor(1, 48, 64, seed=3)), rtol=1e-4, atol=1e-6)
