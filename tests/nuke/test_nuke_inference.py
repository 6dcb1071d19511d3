"""Both Nuke routes' maths against the engine, in the engine's environment (skipped elsewhere):
the node's colour module against OCIO, and the TorchScript that ``hdrlift-export --format nuke``
writes for Nuke's Inference node (CatFileCreator makes the .cat of it): shapes, odd and tiny
sizes, fp16, equality with the engine's Pipeline. Run with this repository's torch (see
docs/nuke.md for the versions Nuke embeds); nothing here ran inside Nuke."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("hdrlift.engine.pipeline")

from hdrlift.engine.backends import wrap_module  # noqa: E402
from hdrlift.engine.backends.exporters import export_nuke, nuke_module  # noqa: E402
from hdrlift.engine.colour import ColourManager  # noqa: E402
from hdrlift.engine.models import get_info  # noqa: E402
from hdrlift.engine.models.loading import LoadedModel  # noqa: E402
from hdrlift.engine.pipeline import Pipeline  # noqa: E402
from hdrlift_nuke import colour  # noqa: E402


# --------------------------------------------------------------------------- the node's colour maths vs OCIO
@pytest.mark.parametrize("curve, space, atol", [("srgb", "sRGB Encoded Rec.709 (sRGB)", 2e-5),
                                                ("gamma2.4", "rec709", 1e-6), ("gamma2.2", "gamma22", 1e-6),
                                                ("bt709", "camera-rec709", 3e-4)])
def test_transfer_curves_match_ocio(curve, space, atol):
    # bt709: the ITU formula (Nuke's rec709); OCIO's camera curve bends at 0.01794 instead of 0.018
    lin = np.linspace(0, 1, 4097, dtype=np.float32)
    img = np.repeat(lin[None, :, None], 3, axis=2)
    ocio = ColourManager().converter("lin_rec709", space)(img)[0, :, 0]
    np.testing.assert_allclose(colour.encode(lin, curve), ocio, atol=atol)


def test_acescg_matrix_matches_ocio():
    eye = np.eye(3, dtype=np.float32)[None]
    ocio = ColourManager().converter("ACEScg", "lin_rec709")(eye)[0].T
    np.testing.assert_allclose(colour.rgb_matrix("ap1", "rec709"), ocio, atol=1e-6)


# --------------------------------------------------------------------------- TorchScript for the Inference node
def _linear(h, w, seed=0):
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w, 3), dtype=np.float32) * np.float32(1.15)) ** 2.2  # some above display white
    img[: h // 3, : w // 4] = 1.0
    img[-1, -1] = [-0.05, 0.3, 1.8]
    return img.astype(np.float32)


def _nchw(img):
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))[None])


def _hwc(t):
    return t[0].detach().float().numpy().transpose(1, 2, 0)


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    path = tmp_path_factory.mktemp("nuke") / "hdrcnn_lite.pt"
    export_nuke("hdrcnn-lite", path)
    return path


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(model="hdrcnn-lite", backend="torch", output_space="lin_rec709")


def test_the_file_nuke_loads(lite):
    extra = {"hdrlift.json": ""}
    ts = torch.jit.load(str(lite), _extra_files=extra)
    meta = json.loads(extra["hdrlift.json"])
    assert meta["model"] == "hdrcnn-lite" and meta["channels"] == 4 and meta["working_space"] == "Linear Rec.709 (sRGB)"
    assert meta["torch"] == torch.__version__ and meta["fp16"] is True
    assert len(list(ts.graph.inputs())) == 2  # self and one tensor: what CatFileCreator wraps
    assert not ts.training and list(ts.parameters())  # not frozen: Nuke's .cuda()/.half() reach the weights
    graph = str(ts.inlined_graph)
    assert '"cpu"' not in graph and "Device = prim::Constant" not in graph  # nothing pinned to the CPU
    assert "aten::pad(" not in graph  # the padding by its older names


@pytest.mark.parametrize("h, w", [(64, 96), (37, 53), (5, 7), (1, 1)], ids=["multiple", "odd", "tiny", "1x1"])
def test_shapes_and_equality_with_the_engine(lite, pipe, h, w):
    ts = torch.jit.load(str(lite))
    x = _linear(h, w, seed=h * w)
    with torch.no_grad():
        out = ts(_nchw(x))
    assert out.shape == (1, 4, h, w) and out.dtype == torch.float32
    ref = pipe.process(x, input_space="lin_rec709")  # a linear input: the engine encodes it as sRGB, clips
    np.testing.assert_allclose(_hwc(out)[..., :3], ref.hdr, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(_hwc(out)[..., 3], ref.mask, atol=1e-5)


def test_an_acescg_working_space_and_three_channels(tmp_path):
    ts = torch.jit.load(str(export_nuke("hdrcnn-lite", tmp_path / "aces.pt", working_space="acescg", channels=3)))
    x = _linear(33, 47, seed=3)
    with torch.no_grad():
        out = ts(_nchw(x))
    assert out.shape == (1, 3, 33, 47)
    # the plate behind an ACES script's pixels is Rec.709 footage: the export brings the pixels back
    # to linear Rec.709 (OCIO's matrix) and encodes them as the engine does a linear Rec.709 input
    pipe = Pipeline(model="hdrcnn-lite", backend="torch", output_space="ACEScg")
    x709 = pipe.colour.converter("ACEScg", "lin_rec709")(x)
    ref = pipe.process(x709, input_space="lin_rec709")
    np.testing.assert_allclose(_hwc(out), ref.hdr, rtol=1e-4, atol=2e-5)


def test_the_rec709_camera_transfer(tmp_path, pipe):
    ts = torch.jit.load(str(export_nuke("hdrcnn-lite", tmp_path / "cam.pt", input_transfer="camera-rec709")))
    x = _linear(29, 41, seed=4)
    with torch.no_grad():
        out = ts(_nchw(x))
    # what hdr-video does with the plate's file: its code values (the camera curve) read as BT.1886 video
    code = colour.encode(x, "bt709").astype(np.float32)
    ref = pipe.process(code, input_space="rec709")
    np.testing.assert_allclose(_hwc(out)[..., :3], ref.hdr, rtol=1e-4, atol=5e-5)


def test_a_classical_operator(tmp_path):
    ts = torch.jit.load(str(export_nuke("landis", tmp_path / "landis.pt")))
    x = _linear(20, 30, seed=5)
    with torch.no_grad():
        out = ts(_nchw(x))
    ref = Pipeline(model="landis", backend="torch", output_space="lin_rec709").process(x, input_space="lin_rec709")
    np.testing.assert_allclose(_hwc(out)[..., :3], ref.hdr, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(_hwc(out)[..., 3], ref.mask, atol=1e-5)


def _half_conv_on_cpu() -> bool:
    try:
        torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3, dtype=torch.float16), torch.ones(1, 1, 3, 3, dtype=torch.float16))
        return True
    except RuntimeError:
        return False


@pytest.mark.skipif(not _half_conv_on_cpu(), reason="this torch has no float16 convolution on the CPU")
def test_fp16_as_optimize_for_speed_and_memory(lite, pipe):
    """Nuke's "Optimize for speed and memory" runs the module in half precision (here on the CPU, as
    CUDA is not available): the fp16 copy of the network runs; the output follows the input's dtype."""
    ts = torch.jit.load(str(lite)).half()
    assert ts.precision_probe.dtype == torch.float16
    x = _linear(37, 53, seed=6)
    ref = pipe.process(x, input_space="lin_rec709")
    with torch.no_grad():
        out_half = ts(_nchw(x).half())
        out_float = ts(_nchw(x))  # a float input to the halved module works too
    assert out_half.dtype == torch.float16 and out_float.dtype == torch.float32
    for out in (out_half, out_float):
        np.testing.assert_allclose(_hwc(out)[..., :3], ref.hdr, rtol=2e-2, atol=2e-2)
    assert float(np.abs(_hwc(out_float)[..., :3] - ref.hdr).max()) > 0  # it did run in half


def test_a_float32_only_model_says_so_under_fp16():
    info = dataclasses.replace(get_info("landis"), fp32_only="test: float32 only")
    model = LoadedModel(info, get_info("landis").factory()).eval()
    ts = nuke_module(model)
    x = _nchw(_linear(8, 8))
    with torch.no_grad():
        assert ts(x).shape == (1, 4, 8, 8)
        with pytest.raises((RuntimeError, torch.jit.Error),
                           match="float32 only: turn off the Inference node's 'Optimize for speed"):
            ts.half()(x.half())


def test_a_random_network_matches_too(tmp_path):
    torch.manual_seed(0)
    net = get_info("hdrunet").factory()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model = wrap_module("hdrunet", net)
    ts = torch.jit.load(str(export_nuke(model, tmp_path / "hdrunet.pt")))
    from hdrlift.engine.backends import create_backend

    x = _linear(30, 45, seed=7)
    with torch.no_grad():
        out = ts(_nchw(x))
    code = colour.encode(np.clip(x, 0, 1), "srgb").astype(np.float32)
    hdr, mask = create_backend(model, kind="torch").run(code.transpose(2, 0, 1)[None].copy())
    np.testing.assert_allclose(out[0, :3].numpy(), hdr[0], rtol=1e-4, atol=5e-5)
