"""Exports: ONNX files, TorchScript for Nuke's CatFileCreator, and the hdrlift-export CLI."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from hdrlift.engine.backends import create_backend, wrap_module
from hdrlift.engine.backends.base import tensorrt_importable
from hdrlift.engine.backends.exporters import export_onnx, export_torchscript
from hdrlift.engine.export import main
from hdrlift.engine.models import get_info

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def lite_random():
    torch.manual_seed(0)
    net = get_info("hdrcnn-lite").factory()
    with torch.no_grad():
        net.to_rgb.weight.normal_(0.0, 0.05)
    return wrap_module("hdrcnn-lite", net)


def frame(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(0.6 + 0.5 * rng.random((1, 3, h, w)), 0, 1).astype(np.float32)


def test_export_onnx_file(tmp_path):
    path = export_onnx("landis", tmp_path / "landis.onnx")
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["hdrlift:model"] == "landis" and meta["hdrlift:precision"] == "fp32"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = frame(37, 53)
    hdr, mask = sess.run(None, {"ldr": x})
    ref_h, ref_m = create_backend("landis", kind="torch").run(x)
    np.testing.assert_allclose(hdr, ref_h, rtol=1e-4, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["landis.onnx"]  # atomic: no temporaries left


def test_torchscript_for_nuke_loads_and_matches(tmp_path):
    model = lite_random()
    path = export_torchscript(model, tmp_path / "hdrcnn_lite.pt")
    ts = torch.jit.load(str(path))
    ref = create_backend(model, kind="torch")
    for h, w in [(64, 96), (45, 77)]:  # neither is the traced size; 45x77 needs the padding
        x = frame(h, w, seed=h)
        with torch.no_grad():
            out = ts(torch.from_numpy(x))
        assert isinstance(out, torch.Tensor) and out.shape == (1, 3, h, w) and out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), ref.run(x)[0], rtol=1e-4, atol=1e-5)
    graph_inputs = [i for i in ts.graph.inputs()][1:]  # first is self
    assert len(graph_inputs) == 1


@pytest.mark.parametrize("name", ["hdrcnn", "hdrunet"])
def test_torchscript_of_the_full_width_networks(name, tmp_path):
    """The registered full-width HDR-CNN (VGG16 encoder) and HDRUNet trace into the same Nuke form
    and agree with torch at sizes other than the traced one (HDRUNet's SFT and weighting branches,
    HDR-CNN's Eq. 16 blend, the registry's padding all inside the traced graph)."""
    torch.manual_seed(1)
    net = get_info(name).factory()
    with torch.no_grad():
        for p in net.parameters():  # random, non-degenerate weights: outputs depend on every branch
            p.add_(0.02 * torch.randn_like(p))
    model = wrap_module(name, net)
    ts = torch.jit.load(str(export_torchscript(model, tmp_path / f"{name}.pt")))
    ref = create_backend(model, kind="torch")
    for h, w in [(64, 96), (50, 70)]:
        x = frame(h, w, seed=w)
        with torch.no_grad():
            out = ts(torch.from_numpy(x))
        assert out.shape == (1, 3, h, w) and bool(torch.isfinite(out).all())
        np.testing.assert_allclose(out.numpy(), ref.run(x)[0], rtol=1e-4, atol=1e-5)


def test_cli_writes_onnx_and_torchscript(tmp_path, capsys):
    out = tmp_path / "exports" / "crf.onnx"
    assert main(["--model", "inverse-crf", "--format", "onnx", "--out", str(out)]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    half = tmp_path / "crf16.onnx"
    assert main(["--model", "inverse-crf", "--format", "onnx-fp16", "--out", str(half)]) == 0
    proto = onnx.load(str(half))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    ts = tmp_path / "crf.pt"
    assert main(["--model", "inverse-crf", "--format", "torchscript", "--out", str(ts)]) == 0
    assert torch.jit.load(str(ts))(torch.full((1, 3, 4, 4), 0.5)).shape == (1, 3, 4, 4)


def test_cli_errors(tmp_path, capsys):
    out = tmp_path / "a.onnx"
    out.write_bytes(b"keep")
    assert main(["--model", "inverse-crf", "--format", "onnx", "--out", str(out)]) == 3
    assert out.read_bytes() == b"keep"
    assert "exists" in capsys.readouterr().err
    assert main(["--model", "nope", "--format", "onnx", "--out", str(tmp_path / "b.onnx")]) == 4
    err = capsys.readouterr().err
    assert err.startswith("hdrlift-export: error: unknown model") and err.count("\n") == 1
    assert main(["--model", "inverse-crf", "--format", "onnx", "--out", str(tmp_path)]) == 3
    assert main(["--model", "landis", "--format", "onnx", "--weights", str(tmp_path / "w.safetensors"),
                 "--out", str(tmp_path / "c.onnx")]) == 4  # classical operators take no weights
    if not get_info("kim").has_weights:
        assert main(["--model", "kim", "--format", "onnx", "--out", str(tmp_path / "d.onnx")]) == 4
        assert "no trained weights" in capsys.readouterr().err
    if not tensorrt_importable():
        assert main(["--model", "inverse-crf", "--format", "trt", "--out", str(tmp_path / "e.plan")]) == 4
        assert "TensorRT is not installed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        main(["--model", "inverse-crf", "--format", "tflite", "--out", str(tmp_path / "f")])
    assert bad.value.code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]  # nothing half-written


def test_console_script(tmp_path):
    from tests.conftest import console_script

    exe = console_script("hdrlift-export")
    out = tmp_path / "k.onnx"
    r = subprocess.run([exe, "--model", "kovaleski-oliveira", "--format", "onnx", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.is_file()


def test_cli_writes_torchscript_for_nukes_inference_node(tmp_path, capsys):
    out = tmp_path / "landis_nuke.pt"
    assert main(["--model", "landis", "--format", "nuke", "--out", str(out), "--working-space", "acescg",
                 "--input-transfer", "camera-rec709", "--channels", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    extra = {"hdrlift.json": ""}
    ts = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra["hdrlift.json"])
    assert meta["working_space"] == "ACEScg" and meta["input_transfer"] == "camera-rec709" and meta["channels"] == 3
    with torch.no_grad():
        assert ts(torch.full((1, 3, 5, 9), 0.18)).shape == (1, 3, 5, 9)
    default = tmp_path / "crf_nuke.pt"
    assert main(["--model", "inverse-crf", "--format", "nuke", "--out", str(default)]) == 0
    with torch.no_grad():
        assert torch.jit.load(str(default))(torch.full((1, 3, 4, 4), 0.18)).shape == (1, 4, 4, 4)


def test_cli_nuke_options_need_the_nuke_format(tmp_path, capsys):
    assert main(["--model", "landis", "--format", "onnx", "--channels", "3", "--out", str(tmp_path / "a.onnx")]) == 2
    assert "go with --format nuke" in capsys.readouterr().err
    assert main(["--model", "kalantari", "--format", "nuke", "--out", str(tmp_path / "k.pt")]) == 4
    assert list(tmp_path.iterdir()) == []
