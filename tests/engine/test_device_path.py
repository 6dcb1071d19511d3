"""The device path (``PipelineOptions(device_colour=True)``, engine/device_frames.py,
``pipeline.DeviceStep``) against today's path, on the CPU: real clips through PyAV, real OCIO,
real EXRs through OpenImageIO.

On the CPU the device path runs the same code it runs on CUDA minus the streams: integer code
values in, the Y'CbCr conversion, colour in, the back end, colour out and the cast to half as
torch operations, the EXR written from the half floats.

Tolerance (``_half_steps``): every channel of every pixel within one half-float step of
today's EXR (``2**-10 * max(|v|, 2**-14)``). Today's path rounds OCIO's float32 result to half
when OpenEXR writes it; the device path rounds torch's float32 result to half on the device.
The two float32 results differ by float32 rounding (the colour conversions are checked to
agree within far less than a half step in test_device_colour.py), so where a value lies next to
the boundary between two half floats the two paths may round to neighbours: one step, never
more. (On these clips they come out bit-identical; the bound is what is promised.)
"""

from __future__ import annotations

import pathlib

import numpy as np
import OpenImageIO as oiio
import pytest
import torch

from hdrlift.engine.cli import video_main
from hdrlift.engine.device_frames import TorchOps, _host_plane
from hdrlift.engine.io.exr import read_exr
from hdrlift.engine.io.video import VideoReader, rgb_planes
from hdrlift.engine.pipeline import DeviceStep, Pipeline, PipelineOptions
from hdrlift.engine.sample import write_sample
from test_io_video import CODECS, write_clip


def _half_steps(ref: np.ndarray, got: np.ndarray) -> float:
    """The largest difference in half-float steps of the reference value."""
    return float((np.abs(got.astype(np.float64) - ref) / (2.0 ** -10 * np.maximum(np.abs(ref), 2.0 ** -14))).max())


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("device-clips")
    out = {name: write_clip(root / f"clip-{name}.{CODECS[name][1]}", name, n=3) for name in CODECS}
    out["sample"] = write_sample(root / "sample.mp4", width=192, height=112, frames=3)
    return out


@pytest.mark.parametrize("name", list(CODECS))
def test_code_values_decode_as_the_host_does(clips, name):
    """8-bit 4:2:0 H.264, 10-bit 4:2:0 HEVC, 10-bit 4:2:2 ProRes, 8-bit 4:4:4 VP9: the integer
    planes converted by torch equal the reader's float frames (one conversion, two array kinds)."""
    with VideoReader(clips[name]) as r:
        floats = [f.rgb for f in r.frames()]
        codes = [f.code for f in r.frames(code_values=True)]
    assert all(c is not None for c in codes) and len(codes) == len(floats) == 3
    bits = CODECS[name][3]
    assert {p.dtype.itemsize for p in codes[0].planes} == {1 if bits == 8 else 2}  # uint8 / 16-bit words up
    ops = TorchOps()
    for rgb, code in zip(floats, codes):
        planes = [torch.from_numpy(_host_plane(p)) for p in code.planes]
        t = torch.stack(list(rgb_planes(planes, code.layout, code.matrix, code.full_range, code.width, code.height,
                                        ops)), 0).clamp(0, 1)
        np.testing.assert_allclose(t.permute(1, 2, 0).numpy(), rgb, rtol=0, atol=2 ** -20)
        np.testing.assert_array_equal(code.rgb(), rgb)


def _run(clip, out, **options) -> tuple[Pipeline, object]:
    p = Pipeline(PipelineOptions(backend="torch", **options))
    report = p.convert(clip, out, overwrite=True)
    return p, report


CASES = [
    # clip, model, output space, options
    ("sample", "inverse-crf", "ACEScg", {}),
    ("hevc10", "hdrcnn-lite", "ARRI LogC4", {"mask_layer": True}),
    ("prores", "inverse-crf", "Linear Rec.2020", {"half": False}),
    ("vp9", "hdrcnn-lite", "Rec.2100-PQ - Display", {"batch": 2}),
    ("h264", "hdrcnn-lite", "ACEScg", {"max_pixels": 64 * 64}),  # above the budget: tiles through the host
]


@pytest.mark.parametrize("clip,model,space,options", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_device_path_writes_todays_exrs(clips, tmp_path, clip, model, space, options):
    _, today = _run(clips[clip], tmp_path / "today", model=model, output_space=space, device_colour=False, **options)
    p, dev = _run(clips[clip], tmp_path / "device", model=model, output_space=space, device_colour=True, **options)
    assert "device colour" in dev.where and "device colour" not in today.where
    assert len(today.written) == len(dev.written) == 3
    for a, b in zip(today.written, dev.written):
        ia, ib = read_exr(a), read_exr(b)
        assert ia.channels == ib.channels
        assert {k: v for k, v in ia.attributes.items() if k != "hdrlift:source"} == \
            {k: v for k, v in ib.attributes.items() if k != "hdrlift:source"}
        spec = oiio.ImageInput.open(str(b))
        assert spec.spec().format == (oiio.HALF if options.get("half", True) else oiio.FLOAT)
        spec.close()
        assert _half_steps(ia.pixels, ib.pixels) <= 1.0, (a.name, _half_steps(ia.pixels, ib.pixels))


def test_the_comparison_catches_a_colour_error(clips, tmp_path):
    """The check above is not blind: the device path told the clip is gamma 2.2 instead of its
    tagged BT.1886 fails it."""
    _, today = _run(clips["hevc10"], tmp_path / "today", model="inverse-crf", device_colour=False)
    _, wrong = _run(clips["hevc10"], tmp_path / "wrong", model="inverse-crf", device_colour=True,
                    input_space="Gamma 2.2 Encoded Rec.709")
    assert max(_half_steps(read_exr(a).pixels, read_exr(b).pixels) for a, b in zip(today.written, wrong.written)) > 4


def test_pictures_upload_their_float_frames(tmp_path):
    """An image sequence has no code values to hand over: its float frames go up as they are."""
    rng = np.random.default_rng(1)
    for n in (1, 2):
        img = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
        assert oiio.ImageBuf(img).write(str(tmp_path / f"pic.{n:04d}.png"))
    src = str(tmp_path / "pic.####.png")
    _, today = _run(src, tmp_path / "today", model="inverse-crf", device_colour=False)
    _, dev = _run(src, tmp_path / "device", model="inverse-crf", device_colour=True)
    for a, b in zip(today.written, dev.written):
        assert _half_steps(read_exr(a).pixels, read_exr(b).pixels) <= 1.0


def test_device_colour_defaults_off_on_the_cpu_and_the_cli_turns_it_on(clips, tmp_path, capsys):
    assert Pipeline(PipelineOptions(model="inverse-crf", backend="torch")).device_colour is False
    assert video_main([str(clips["sample"]), str(tmp_path / "cli"), "--model", "inverse-crf", "--backend", "torch",
                       "--device-colour", "--frames", "1-2"]) == 0
    assert "device colour" in capsys.readouterr().err
    assert len(list((tmp_path / "cli").glob("*.exr"))) == 2


def test_the_step_is_the_file_loops_step(clips, tmp_path):
    """One loop: the device path is a FrameStep plugged into engine/convert.py, nothing else."""
    p = Pipeline(PipelineOptions(model="inverse-crf", backend="torch", device_colour=True))
    step = DeviceStep(p)
    assert step.code_values and step.frames.upload_stream is None  # no streams on the CPU
    report = p.convert(clips["sample"], tmp_path / "o", preview=tmp_path / "preview.png")
    assert report.frames == 3 and (tmp_path / "preview.png").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_device_path_writes_todays_exrs(clips, tmp_path):
    """On a GPU: the streams, pinned buffers and events, against today's path on the same GPU
    (the same network; cuDNN may pick another algorithm between calls, a float32-level
    difference that can move a rounding to half by one more step)."""
    for name in ("sample", "hevc10"):
        _, today = _run(clips[name], tmp_path / f"t-{name}", model="hdrcnn-lite", device="cuda", device_colour=False)
        _, dev = _run(clips[name], tmp_path / f"d-{name}", model="hdrcnn-lite", device="cuda", device_colour=True)
        assert "device colour" in dev.where
        for a, b in zip(today.written, dev.written):
            assert _half_steps(read_exr(a).pixels, read_exr(b).pixels) <= 2.0
