"""The device colour path (engine/device_colour.py) against OCIO itself, on the CPU.

Every conversion the pipeline can make in the built-in studio config is checked: colour in
from every colour space ``--input-colorspace`` accepts (the ones ``--list-colorspaces``
prints, which include every space the colour tags and ICC profiles map to) to the network
domain, and colour out from each working space the networks can work in (linear Rec.709,
P3-D65, Rec.2020, AP1: ``ColourManager.working_space``) to every output space. Colour in and
colour out are independent given the working space, so these cover every input/output pair of
a run.

Tolerance (``_within_half``): each channel within one half-float step of OCIO's value
(``2**-10 * max(|v|, 2**-14)``, 2**-14 being half's smallest normal), or within ``2**-20`` of the
pixel's largest component. The second term is float32 rounding in a 3 x 3 matrix product: where
the product nearly cancels (a saturated log-camera colour converted to AP1, say) both OCIO and
torch compute the small channel as a difference of large ones and keep about 2**-23 of the
large ones, which a half float of that pixel (2**-11 of its largest component) cannot resolve
either.
"""

from __future__ import annotations

import numpy as np
import pytest
import PyOpenColorIO as ocio
import torch

from hdrlift.engine import device_colour as dc
from hdrlift.engine.colour import ColourManager, Converter

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # float32 overflow of far out-of-range log inputs, in both paths

CM = ColourManager("ocio://studio-config-latest")
SPACES = CM.colorspaces()
WORKING = (None, "Linear P3-D65", "Linear Rec.2020", "ACEScg")


def _samples(seed: int) -> np.ndarray:
    """1 x N x 3 float32: a 17^3 lattice of [0, 1] (code values), uniform random colours,
    log-spaced values from 2**-14 to 2**10 (scene-linear highlights), and a few edge colours."""
    rng = np.random.default_rng(seed)
    g = np.linspace(0.0, 1.0, 17, dtype=np.float32)
    lattice = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    uniform = rng.random((2048, 3), dtype=np.float32)
    logs = np.exp2(rng.uniform(-14, 10, (2048, 3))).astype(np.float32)
    edges = np.float32([[0, 0, 0], [1, 1, 1], [0.18, 0.18, 0.18], [-0.01, 0.0, 0.02], [5000.0, 100.0, 1e-3],
                        [60000.0, 60000.0, 60000.0]])
    return np.concatenate([lattice, uniform, logs, edges]).reshape(1, -1, 3)


X = _samples(0)


def _within_half(ref: np.ndarray, got: np.ndarray) -> tuple[bool, float]:
    """(ok, worst ratio of the difference to the tolerance); NaN must match NaN and infinity
    the same infinity (a log-encoded input far above its range overflows float32 in both)."""
    special_ref, special_got = ~np.isfinite(ref), ~np.isfinite(got)
    if not np.array_equal(special_ref, special_got):
        return False, float("inf")
    if not np.array_equal(np.nan_to_num(ref[special_ref]), np.nan_to_num(got[special_got])):
        return False, float("inf")
    ref, got = np.where(special_ref, 0, ref).astype(np.float64), np.where(special_got, 0, got).astype(np.float64)
    pixel = np.abs(ref).max(axis=-1, keepdims=True)
    tol = np.maximum(2.0 ** -10 * np.maximum(np.abs(ref), 2.0 ** -14), 2.0 ** -20 * pixel)
    ratio = np.abs(got - ref) / tol
    return bool((ratio <= 1.0).all()), float(ratio.max())


def _device(t: dc.DeviceTransform, hwc: np.ndarray) -> np.ndarray:
    """Apply a device transform to an H x W x 3 array on the CPU (CHW tensors), back to HWC."""
    out = t(torch.from_numpy(np.ascontiguousarray(hwc)).permute(2, 0, 1))
    return out.permute(1, 2, 0).contiguous().numpy()


@pytest.mark.parametrize("space", SPACES)
def test_colour_in_equals_ocio(space):
    host = CM.to_network(space)
    dev = dc.to_network(CM, space)
    assert not dev.host, dev.describe()  # translated, not OCIO on the host
    ok, worst = _within_half(host(X), _device(dev, X))
    assert ok, f"{space} -> network domain: {worst:.2f} x the tolerance ({dev})"


@pytest.mark.parametrize("working", WORKING, ids=lambda w: w or "Linear Rec.709")
@pytest.mark.parametrize("space", SPACES)
def test_colour_out_equals_ocio(space, working):
    host = CM.from_network(working, space)
    dev = dc.from_network(CM, working, space)
    assert not dev.host, dev.describe()
    ok, worst = _within_half(host(X), _device(dev, X))
    assert ok, f"{working or 'Linear Rec.709'} -> {space}: {worst:.2f} x the tolerance ({dev})"


def test_working_spaces_are_the_ones_the_pipeline_uses():
    """WORKING above lists every working space ``ColourManager.working_space`` can give here."""
    seen = {CM.working_space(s) for s in SPACES}
    assert seen <= set(WORKING), seen


def test_operators_cover_the_curves_and_luts_of_the_config():
    """The pairs above go through every kind of translated operator (not only matrices)."""
    names = set()
    for s in SPACES:
        names.update(op.name for op in dc.to_network(CM, s).ops)
        for w in WORKING:
            names.update(op.name for op in dc.from_network(CM, w, s).ops)
    assert {"matrix", "exponent", "moncurve", "lin_to_log", "log_to_lin", "range", "lut1d", "rec2100_surround",
            "srgb_encode"} <= names, names


def _altered(t: dc.DeviceTransform, index: int, op) -> dc.DeviceTransform:
    ops = list(t.ops)
    ops[index] = op
    return dc.DeviceTransform(t.src, t.dst, ops)


def test_a_wrong_matrix_fails_the_check():
    dev = dc.from_network(CM, None, "ACEScg")
    assert [op.name for op in dev.ops] == ["matrix"]
    m = dev.ops[0]
    wrong = dc._Matrix(m.m * torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.002, 1.0], [1.0, 1.0, 1.0]]), m.offset)
    ok, worst = _within_half(CM.from_network(None, "ACEScg")(X), _device(_altered(dev, 0, wrong), X))
    assert not ok and worst > 1.5
    swapped = dc._Matrix(m.m[[1, 0, 2]], m.offset)  # rows in the wrong order
    assert not _within_half(CM.from_network(None, "ACEScg")(X), _device(_altered(dev, 0, swapped), X))[0]


def test_a_wrong_curve_fails_the_check():
    """BT.1886's gamma 2.4 in place of the sRGB curve, or IEC 61966-2-1's stated constants in
    place of OCIO's continuous moncurve, are caught (the second by its few-ULP toe only where
    the two differ by more than a half step: it must not pass everywhere)."""
    space = "Gamma 2.4 Encoded Rec.709"
    dev = dc.to_network(CM, space)
    assert [op.name for op in dev.ops] == ["exponent", "moncurve"]
    wrong = dc._Exponent(torch.full((3, 1, 1), 2.2), "clamp")
    ok, _ = _within_half(CM.to_network(space)(X), _device(_altered(dev, 0, wrong), X))
    assert not ok
    # a moncurve whose slope is off by 1 % in the toe
    mc = dev.ops[1]
    toe = dc._MonCurve(mc.gamma, mc.scale, mc.offset, mc.brk, mc.slope * 1.01, mc.forward, mc.mirror)
    assert not _within_half(CM.to_network(space)(X), _device(_altered(dev, 1, toe), X))[0]


def test_a_wrong_half_domain_lut_lookup_fails_the_check():
    """Rounding to the nearest half float instead of interpolating between the bracketing two
    (what a naive ``table[x.half()]`` lookup does) is caught on the PQ curve (its decoding side,
    code value -> linear, steep enough for the input's rounding to show)."""
    space = "Rec.2100-PQ - Display"
    dev = dc.to_network(CM, space)
    i = [op.name for op in dev.ops].index("lut1d")
    lut = dev.ops[i]

    class Nearest(dc._Op):
        name = "nearest"

        def __call__(self, x):
            bits = x.clamp(-65504, 65504).to(torch.float16).view(torch.int16).to(torch.int64) & 0xFFFF
            return lut._gather(bits)

    x = np.clip(X, 0.0, 1.0)
    assert _within_half(CM.to_network(space)(x), _device(dev, x))[0]
    assert not _within_half(CM.to_network(space)(x), _device(_altered(dev, i, Nearest()), x))[0]


def _converter(transform: ocio.Transform) -> Converter:
    cfg = ocio.Config.CreateRaw()
    proc = cfg.getProcessor(transform)
    return Converter("a", "b", proc.getOptimizedCPUProcessor(ocio.BIT_DEPTH_F32, ocio.BIT_DEPTH_F32, CM.flags), proc)


@pytest.mark.parametrize("interp", ["linear", "tetrahedral"])
def test_3d_luts_interpolate_as_ocio(interp):
    """A facility config's 3D LUT (not in the studio config): OCIO's own table, trilinear or
    tetrahedral, against OCIO's CPU renderer."""
    n = 17
    rng = np.random.default_rng(3)
    g = np.linspace(0, 1, n)
    r, gg, b = np.meshgrid(g, g, g, indexing="ij")
    table = np.stack([r ** 1.3 + 0.1 * gg, 0.8 * gg + 0.2 * r * b, np.sqrt(b) * 0.9 + 0.05 * r], -1)
    table += rng.normal(0, 0.01, table.shape)  # not a smooth function: interpolation must match exactly
    lut = ocio.Lut3DTransform()
    lut.setGridSize(n)
    for i in range(n):
        for j in range(n):
            for k in range(n):
                lut.setValue(i, j, k, *(float(v) for v in table[i, j, k]))
    lut.setInterpolation(ocio.INTERP_TETRAHEDRAL if interp == "tetrahedral" else ocio.INTERP_LINEAR)
    conv = _converter(lut)
    dev = dc.translate(conv, CM.flags)
    assert [op.name for op in dev.ops] == ["lut3d"] and not dev.host
    x = np.clip(X, 0.0, 1.0)
    assert _within_half(conv(x), _device(dev, x))[0]


def test_an_untranslated_operator_runs_through_host_ocio():
    """An operator with no torch form (a grading transform) is not approximated: the device
    transform applies OCIO's processor on the host, so the result is OCIO's."""
    grade = ocio.ExposureContrastTransform(exposure=0.7, contrast=1.2, pivot=0.18,
                                           style=ocio.EXPOSURE_CONTRAST_LINEAR)
    conv = _converter(grade)
    dev = dc.translate(conv, CM.flags)
    assert dev.host and "ExposureContrast" in dev.reason
    x = np.abs(X[:, :500])
    np.testing.assert_array_equal(_device(dev, x), conv(x))


def test_batches_and_leading_dimensions():
    dev = dc.to_network(CM, "Gamma 2.4 Encoded Rec.709")
    x = torch.rand(2, 3, 5, 7)
    one = torch.stack([dev(x[0]), dev(x[1])])
    torch.testing.assert_close(dev(x), one, rtol=0, atol=0)
    with pytest.raises(ValueError):
        dev(torch.rand(5, 7, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_equals_cpu():
    for space in ("Gamma 2.4 Encoded Rec.709", "S-Log3 S-Gamut3", "Rec.2100-PQ - Display"):
        for t in (dc.to_network(CM, space), dc.from_network(CM, None, space)):
            x = torch.from_numpy(X[0].T.reshape(3, 1, -1).copy())
            cpu, gpu = t(x), t(x.cuda()).cpu()
            assert _within_half(cpu.numpy().reshape(3, -1).T, gpu.numpy().reshape(3, -1).T)[0], t
