"""Back ends: torch vs onnxruntime parity for every registered model, auto-selection, the ONNX
graphs the TensorRT back end feeds to TensorRT (proven with onnxruntime), TensorRT itself where
it is installed, and the factory's errors."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from hdrlift.engine.backends import create_backend, export_key, wrap_module
from hdrlift.engine.backends.base import INPUT_NAME, OUTPUT_NAMES, tensorrt_importable
from hdrlift.engine.backends.exporters import cached_onnx
from hdrlift.engine.backends.selection import choose_cpu_backend
from hdrlift.engine.backends.ort_backend import OrtBackend
from hdrlift.engine.backends.torch_backend import TorchBackend
from hdrlift.engine.errors import ModelError
from hdrlift.engine.models import available, get_info, load_model
from hdrlift.engine.models.loading import LoadedModel

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

CLASSICAL = [i.name for i in available() if i.kind == "classical"]
NETWORKS = [i.name for i in available() if i.kind == "network"]


def frame_batch(n=2, h=70, w=90, seed=1) -> np.ndarray:
    """Smooth content with clipped highlights (so the expansion paths are exercised)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for i in range(n):
        base = 0.55 + 0.55 * np.sin(xx / (9 + i) + yy / 13)[None] * np.array([1.0, 0.8, 0.6], np.float32)[:, None, None]
        out.append(np.clip(base + 0.03 * rng.standard_normal((3, h, w)), 0, 1))
    return np.stack(out).astype(np.float32)


def network_model(name: str) -> LoadedModel:
    """The shipped network if its weights exist, else a seeded random initialisation (for
    HDR-CNN the do-nothing output projection is randomised too, so the network matters)."""
    info = get_info(name)
    if info.has_weights:
        return load_model(name)
    torch.manual_seed(0)
    net = info.factory()
    if hasattr(net, "to_rgb"):
        with torch.no_grad():
            net.to_rgb.weight.normal_(0.0, 0.05)
            net.to_rgb.bias.normal_(0.0, 0.1)
    return wrap_module(name, net)


def model_for(name: str):
    return name if get_info(name).kind == "classical" else network_model(name)


def assert_close(a, b, rtol=1e-4, atol=1e-5):
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale)


# ----------------------------------------------------------------------------- parity
@pytest.mark.parametrize("name", CLASSICAL + [n for n in NETWORKS if n != "hdrcnn"])
def test_torch_and_onnxruntime_agree(name, tmp_path):
    model = model_for(name)
    x = frame_batch()
    tb = create_backend(model, kind="torch")
    ob = create_backend(model, kind="onnxruntime", cache_dir=tmp_path)
    (h1, m1), (h2, m2) = tb.run(x), ob.run(x)
    assert h1.shape == (2, 3, 70, 90) and m1.shape == (2, 1, 70, 90)
    assert h1.dtype == np.float32 and m2.dtype == np.float32
    assert np.isfinite(h1).all()
    assert_close(h2, h1)
    assert_close(m2, m1)


@pytest.mark.parametrize("name", [n for n in NETWORKS if n != "hdrcnn"])
def test_back_end_runs_each_network_once_per_frame(name):
    """The mask comes from the output already computed (``reconstruction_mask_from``) or from the
    input alone: no network pays a second forward pass for it."""
    model = model_for(name)
    calls = []
    first_conv = next(m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda *_: calls.append(1))
    x = frame_batch(n=1, h=128, w=128)  # a multiple of every network's size step
    with torch.inference_mode():
        model.net(torch.from_numpy(x))  # one plain pass (recursive nets run their first conv more than once)
    one_pass = len(calls)
    calls.clear()
    create_backend(model, kind="torch").run(x)
    assert len(calls) == one_pass, f"{name}: {len(calls) / one_pass:g} forward passes for one frame"


@pytest.mark.slow
def test_full_width_hdrcnn_parity(tmp_path):
    model = model_for("hdrcnn")
    x = frame_batch(1, 64, 96)
    (h1, m1) = create_backend(model, kind="torch").run(x)
    (h2, m2) = create_backend(model, kind="onnxruntime", cache_dir=tmp_path).run(x)
    assert_close(h2, h1)
    assert_close(m2, m1)


@pytest.mark.parametrize("name", ["hdrcnn-lite", "landis", "hdrunet"])
def test_backend_equals_registry_model(name, tmp_path):
    """The back ends compute what LoadedModel.forward / reconstruction_mask compute, including
    inputs smaller than the padding multiple (replicated, as LoadedModel does)."""
    model = model_for(name)
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    for shape in [(1, 3, 45, 77), (1, 3, 5, 7)]:
        x = frame_batch(1, shape[2], shape[3], seed=3)
        with torch.no_grad():
            ref_h = loaded(torch.from_numpy(x)).numpy()
            ref_m = loaded.reconstruction_mask(torch.from_numpy(x)).numpy()
        for kind in ("torch", "onnxruntime"):
            h, m = create_backend(loaded, kind=kind, cache_dir=tmp_path).run(x)
            assert h.shape == ref_h.shape and m.shape == ref_m.shape
            assert_close(h, ref_h)
            assert_close(m, ref_m)


def test_onnx_cache_is_keyed_by_weights(tmp_path):
    m1 = network_model("hdrcnn-lite")
    torch.manual_seed(123)
    m2 = wrap_module("hdrcnn-lite", get_info("hdrcnn-lite").factory())
    p1 = cached_onnx(m1, tmp_path)
    stamp = p1.stat().st_mtime_ns
    assert cached_onnx(m1, tmp_path) == p1 and p1.stat().st_mtime_ns == stamp  # reused, not re-exported
    p2 = cached_onnx(m2, tmp_path)
    assert p2 != p1
    assert export_key(m1) in p1.name and "hdrcnn-lite-v1-" in p1.name
    assert [p.name for p in (tmp_path / "onnx").iterdir() if p.name.startswith(".")] == []  # no temporaries


# ----------------------------------------------------------------------------- TensorRT's ONNX graphs
@pytest.mark.parametrize("fp16", [False, True])
@pytest.mark.parametrize("name", ["hdrcnn-lite", "kovaleski-oliveira"])
def test_tensorrt_onnx_graph_runs_in_onnxruntime(name, fp16, tmp_path):
    """The exact ONNX files TensorRTBackend parses (cached_onnx, fp32 and the strongly typed
    fp16 variant) run in onnxruntime at several sizes and match torch fp32."""
    model = model_for(name)
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    path = cached_onnx(loaded, tmp_path, fp16=fp16)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version == 17
    want = onnx.TensorProto.FLOAT16 if fp16 else onnx.TensorProto.FLOAT
    assert [i.name for i in proto.graph.input] == [INPUT_NAME]
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES)
    for v in list(proto.graph.input) + list(proto.graph.output):
        assert v.type.tensor_type.elem_type == want
        dims = v.type.tensor_type.shape.dim
        assert [bool(d.dim_param) for d in dims] == [True, False, True, True]  # N, H, W dynamic
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tb = create_backend(loaded, kind="torch")
    for h, w in [(64, 96), (50, 70)]:
        x = frame_batch(1, h, w, seed=h)
        ref_h, ref_m = tb.run(x)
        out_h, out_m = sess.run(None, {INPUT_NAME: x.astype(np.float16 if fp16 else np.float32)})
        assert out_h.shape == (1, 3, h, w) and out_m.shape == (1, 1, h, w)
        if fp16:
            assert out_h.dtype == np.float16
            np.testing.assert_allclose(out_h.astype(np.float32), ref_h, rtol=2e-2, atol=2e-2)
            np.testing.assert_allclose(out_m.astype(np.float32), ref_m, atol=2e-2)
        else:
            assert_close(out_h, ref_h)


def test_tensorrt_missing_is_one_line_model_error():
    if tensorrt_importable():
        pytest.skip("tensorrt is installed here")
    with pytest.raises(ModelError) as err:
        create_backend("inverse-crf", kind="tensorrt")
    msg = str(err.value)
    assert msg.startswith("TensorRT is not installed") and "\n" not in msg


def test_tensorrt_builds_and_matches_torch(tmp_path):
    pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")
    model = network_model("hdrcnn-lite")
    x = frame_batch(1, 540, 960)
    ref_h, ref_m = create_backend(model, kind="torch").run(x)
    for precision, tol in (("fp32", 1e-3), ("fp16", 3e-2)):
        be = create_backend(model, kind="tensorrt", device="cuda", precision=precision, cache_dir=tmp_path)
        h, m = be.run(x)
        np.testing.assert_allclose(h, ref_h, rtol=tol, atol=tol)
        assert be.plan_path.is_file()
        again = create_backend(model, kind="tensorrt", device="cuda", precision=precision, cache_dir=tmp_path)
        assert again.plan_path == be.plan_path  # cached plan reused


def test_fp32_only_models_ask_every_gpu_back_end_for_strict_fp32():
    """Kim (fp32_only) must not run in TF32: onnxruntime's CUDA provider gets ``use_tf32=0`` and
    TensorRT plans are keyed (and built, ``BuilderFlag.TF32`` cleared) apart from TF32 ones. The
    GPU runs themselves need a GPU; what each back end is told is checked here."""
    from hdrlift.engine.backends import trt_backend as T
    from hdrlift.engine.backends.ort_backend import provider_list

    assert provider_list("cpu", strict_fp32=True) == ["CPUExecutionProvider"]
    assert provider_list("cuda:1") == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert provider_list("cuda", strict_fp32=True)[0] == ("CUDAExecutionProvider", {"device_id": 0, "use_tf32": "0"})
    ident = {"gpu": "NVIDIA H100", "sm": "9.0", "tensorrt": "11.0"}
    profiles = T.default_profiles(16)
    plain = T._plan_digest(ident, "ab" * 32, profiles, False, False)
    assert T._plan_digest(ident, "ab" * 32, profiles, False, True) != plain
    assert T._plan_digest(ident, "ab" * 32, profiles, True, False) != plain
    assert T._plan_digest(ident, "ab" * 32, profiles, False, False) == plain
    assert get_info("kim").fp32_only and not get_info("hdrcnn-lite").fp32_only


# ----------------------------------------------------------------------------- selection and errors
def test_auto_selection_on_cpu_measures_once_and_logs(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hdrlift.backends")
    be = create_backend("landis", kind="auto", device="cpu", cache_dir=tmp_path)
    assert be.name in ("torch", "onnxruntime")
    records = list(tmp_path.glob("auto-*.json"))
    assert len(records) == 1
    data = json.loads(records[0].read_text())
    assert data["kind"] == be.name and set(data["times_s"]) == {"torch", "onnxruntime"}
    assert any("auto-selection for landis" in r.getMessage() and be.name in r.getMessage() for r in caplog.records)
    kind, reason = choose_cpu_backend(load_model("landis"), tmp_path)
    assert kind == be.name and "measured earlier" in reason
    x = frame_batch(1, 32, 48)
    np.testing.assert_allclose(be.run(x)[0], create_backend("landis", kind="torch").run(x)[0], rtol=1e-4, atol=1e-5)


def test_auto_prefers_torch_for_bf16_and_describe(tmp_path):
    be = create_backend("inverse-crf", kind="auto", precision="bf16", cache_dir=tmp_path)
    assert isinstance(be, TorchBackend) and be.precision == "bf16"
    d = be.describe()
    assert d["backend"] == "torch" and d["model"] == "inverse-crf" and d["device"] == "cpu"
    ob = create_backend("inverse-crf", kind="onnxruntime", cache_dir=tmp_path)
    assert isinstance(ob, OrtBackend)
    assert ob.describe()["providers"] == ["CPUExecutionProvider"]


def test_fp32_only_model_runs_fp32_whatever_is_asked(tmp_path, caplog):
    """A model whose registry entry says ``fp32_only`` (Kim) runs in fp32 when bf16/fp16 is asked,
    says so once, and reports both in describe(); other models keep the precision asked for."""
    torch.manual_seed(0)
    info = get_info("kim")
    assert info.fp32_only and not get_info("hdrcnn-lite").fp32_only
    model = LoadedModel(info, info.factory()).eval()
    with caplog.at_level(logging.WARNING, logger="hdrlift.backends"):
        be = create_backend(model, kind="torch", precision="bf16", cache_dir=tmp_path)
    assert be.precision == "fp32" and be.describe()["precision_requested"] == "bf16"
    assert any("runs in fp32 only" in r.getMessage() for r in caplog.records)
    x = frame_batch(1, 32, 48)
    ref = create_backend(model, kind="torch", cache_dir=tmp_path)
    assert "precision_requested" not in ref.describe()
    np.testing.assert_array_equal(be.run(x)[0], ref.run(x)[0])
    other = create_backend("inverse-crf", kind="torch", precision="bf16", cache_dir=tmp_path)
    assert other.precision == "bf16" and "precision_requested" not in other.describe()


@pytest.mark.parametrize("kwargs, text", [
    ({"kind": "openvino"}, "unknown back end"),
    ({"precision": "int8"}, "unknown precision"),
    ({"device": "tpu"}, "unknown device"),
    ({"kind": "torch", "precision": "fp16"}, "fp16 needs CUDA"),
    ({"kind": "onnxruntime", "precision": "bf16"}, "bf16"),
])
def test_factory_errors(kwargs, text, tmp_path):
    with pytest.raises(ModelError, match=text):
        create_backend("inverse-crf", cache_dir=tmp_path, **kwargs)


def test_cuda_without_gpu_and_bad_input(tmp_path):
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA"):
            create_backend("inverse-crf", device="cuda")
    be = create_backend("inverse-crf", kind="torch")
    from hdrlift.engine.errors import InputError

    with pytest.raises(InputError, match="N x 3 x H x W"):
        be.run(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(ModelError, match="unknown model"):
        create_backend("no-such-model", kind="torch")
