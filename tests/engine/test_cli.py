"""hdr-video / hdr-image as a user meets them: real files, one-line errors, exit codes."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import numpy as np
import OpenImageIO as oiio
import pytest

from hdrlift.engine.cli import image_main, video_main
from hdrlift.engine.io.exr import read_exr

from tests.conftest import console_script


def _one_line_error(capsys, prog="hdr-video"):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{prog}: error: "), err
    return err[0]


def _png(path: pathlib.Path, h=40, w=56, channels=3, bits=8):
    rng = np.random.default_rng(3)
    a = rng.random((h, w, channels)).astype(np.float32)
    a[:8, :8] = 1.0  # a clipped patch
    dtype, scale = (np.uint8, 255) if bits == 8 else (np.uint16, 65535)
    buf = oiio.ImageBuf(np.ascontiguousarray((a * scale).astype(dtype)))
    assert buf.write(str(path)), buf.geterror()
    return path


def test_console_script_help_and_demo_like_run(sample_clip, tmp_path):
    exe = console_script("hdr-video")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--resume" in out.stdout and "--output-colorspace" in out.stdout
    r = subprocess.run([exe, str(sample_clip), str(tmp_path / "exr"), "--preview", str(tmp_path / "p.png"), "-q"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "exr").glob("street.*.exr"))) == 12
    prev = oiio.ImageBuf(str(tmp_path / "p.png"))
    assert prev.spec().width > 2 * 96 and prev.spec().height == 64


def test_list_models_marks_weights(capsys):
    assert video_main(["--list-models"]) == 0
    out = capsys.readouterr().out
    assert "inverse-crf" in out and "hdrcnn-lite" in out
    assert "no weights shipped" in out  # e.g. kim until trained


def test_list_colorspaces(capsys):
    assert video_main(["--list-colorspaces"]) == 0
    assert "ACEScg" in capsys.readouterr().out


def test_image_still(tmp_path, capsys):
    src = _png(tmp_path / "in.png")
    assert image_main([str(src), str(tmp_path / "out.exr"), "-q", "--mask-layer"]) == 0
    px, attrs, ch = read_exr(tmp_path / "out.exr")
    assert px.shape == (40, 56, 4) and ch[-1] == "mask.Y"
    assert np.isfinite(px).all()


def test_missing_input(tmp_path, capsys):
    assert video_main([str(tmp_path / "nope.mp4"), str(tmp_path / "o")]) == 2
    assert "nope.mp4" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_corrupt_video(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 255, 50_000, dtype=np.uint8).tobytes())
    assert video_main([str(bad), str(tmp_path / "o"), "-q"]) == 2
    _one_line_error(capsys)
    assert not list((tmp_path / "o").glob("*")) if (tmp_path / "o").exists() else True


def test_truncated_video_keeps_finished_frames_whole(sample_clip, tmp_path, capsys):
    cut = tmp_path / "cut.mp4"
    data = sample_clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    code = video_main([str(cut), str(tmp_path / "o"), "-q", "--model", "inverse-crf"])
    if code == 0:  # a clip cut after its index can still decode the frames before the cut
        assert 0 < len(list((tmp_path / "o").glob("*.exr"))) < 12
    else:
        assert code == 2
        _one_line_error(capsys)
    for f in (tmp_path / "o").glob("*"):
        assert not f.name.startswith("."), f


def test_unknown_model_and_untrained_model(sample_clip, tmp_path, capsys):
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--model", "nosuch"]) == 4
    assert "nosuch" in _one_line_error(capsys)
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--model", "kim"]) == 4
    assert "no trained weights" in _one_line_error(capsys)


def test_pickle_weights_refused(sample_clip, tmp_path, capsys):
    w = tmp_path / "evil.pt"
    w.write_bytes(b"\x80\x04not really")
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--weights", str(w)]) == 4
    assert "safetensors" in _one_line_error(capsys)


def test_unknown_colour_space(sample_clip, tmp_path, capsys):
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--output-colorspace", "ACEScgg"]) == 5
    assert "ACEScg" in _one_line_error(capsys)  # suggests the close match


def test_unwritable_output(sample_clip, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert video_main([str(sample_clip), str(blocker / "o"), "-q", "--model", "inverse-crf"]) == 3
    _one_line_error(capsys)


def test_nan_pixels_in_float_tiff(tmp_path, capsys):
    a = np.full((16, 16, 3), 0.5, np.float32)
    a[3, 4, 1] = np.nan
    buf = oiio.ImageBuf(a)
    assert buf.write(str(tmp_path / "nan.tif"))
    assert image_main([str(tmp_path / "nan.tif"), str(tmp_path / "o.exr")]) == 2
    assert "NaN" in _one_line_error(capsys, "hdr-image")
    assert not (tmp_path / "o.exr").exists()


def test_wrong_channel_count(tmp_path, capsys):
    src = _png(tmp_path / "two.png", channels=2)
    assert image_main([str(src), str(tmp_path / "o.exr")]) == 2
    assert "channels" in _one_line_error(capsys, "hdr-image")


@pytest.mark.parametrize("spec, text", [("9-3", "ends before it starts"), ("0-0", "start at 1"), ("0-", "start at 1")])
def test_bad_frame_range_is_usage_error(sample_clip, tmp_path, capsys, spec, text):
    with pytest.raises(SystemExit) as e:
        video_main([str(sample_clip), str(tmp_path / "o"), "--frames", spec])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_odd_size_image(tmp_path):
    src = _png(tmp_path / "odd.png", h=37, w=53, bits=16)
    assert image_main([str(src), str(tmp_path / "odd.exr"), "-q"]) == 0
    px, _, _ = read_exr(tmp_path / "odd.exr")
    assert px.shape[:2] == (37, 53)


def test_unexpected_exception_is_one_line_unless_debugging(sample_clip, tmp_path, capsys, monkeypatch):
    """The last line of defence: a bug anywhere below the CLI still gives one line and exit 1;
    HDRLIFT_DEBUG=1 lets the traceback through for the report."""
    from hdrlift.engine import pipeline

    def broken(self, *args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(pipeline.Pipeline, "convert", broken)
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--model", "inverse-crf", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (RuntimeError: boom)" in err and "HDRLIFT_DEBUG" in err
    monkeypatch.setenv("HDRLIFT_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        video_main([str(sample_clip), str(tmp_path / "o"), "--model", "inverse-crf", "-q"])


def test_batch_budget_and_encode_workers_options(sample_clip, tmp_path, capsys):
    rc = video_main([str(sample_clip), str(tmp_path / "exr"), "--model", "inverse-crf", "--batch", "3",
                     "--max-pixels", str(3 * 96 * 64), "--encode-workers", "1", "--frames", "1-7", "-q"])
    assert rc == 0 and len(list((tmp_path / "exr").glob("street.*.exr"))) == 7
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        video_main([str(sample_clip), str(tmp_path / "x"), "--batch", "0"])
    assert e.value.code == 2 and "--batch: must be a positive integer" in capsys.readouterr().err
    assert image_main([str(_png(tmp_path / "in.png")), str(tmp_path / "o.exr"), "--max-pixels", "100"]) == 2
    assert "max_pixels must be at least 4096" in _one_line_error(capsys, "hdr-image")
