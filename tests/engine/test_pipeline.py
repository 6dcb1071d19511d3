"""The main job end to end on real files: decode -> colour -> model -> EXR."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from hdrlift.engine.colour import NETWORK_INPUT_SPACE, NETWORK_OUTPUT_SPACE, ColourManager
from hdrlift.engine.errors import InputError, OutputError
from hdrlift.engine.io.exr import is_complete_exr, read_exr
from hdrlift.engine.io.video import VideoReader
from hdrlift.engine.colour_maths import srgb_to_linear
from hdrlift.engine.convert import output_path, sequence_pattern
from hdrlift.engine.pipeline import Pipeline, PipelineOptions

from tests.conftest import console_script


def _exrs(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(folder.glob("*.exr"))


def test_output_patterns():
    assert output_path("a/b.####.exr", 7) == pathlib.Path("a/b.0007.exr")
    assert output_path("a/b.%06d.exr", 12) == pathlib.Path("a/b.000012.exr")
    assert sequence_pattern("/x/clip.mp4", "out") == str(pathlib.Path("out/clip.####.exr"))
    assert sequence_pattern("/x/plate.####.dpx", "out") == str(pathlib.Path("out/plate.####.exr"))
    with pytest.raises(OutputError):
        output_path("a/b.exr", 1)


def test_h264_round_trip_matches_reference(sample_clip, tmp_path):
    """Every frame of a real H.264 clip becomes an EXR equal to OCIO(inverse sRGB(decoded))."""
    pipe = Pipeline(PipelineOptions(model="inverse-crf", output_space="ACEScg", half=False))
    report = pipe.convert(sample_clip, tmp_path / "out")
    files = _exrs(tmp_path / "out")
    assert [f.name for f in files] == [f"street.{i:04d}.exr" for i in range(1, 13)]
    assert report.frames == 12 and report.input_space == ColourManager().resolve("srgb")
    cm = ColourManager()
    to_aces = cm.converter(NETWORK_OUTPUT_SPACE, "ACEScg")
    with VideoReader(sample_clip) as r:
        frames = list(r.frames())
    assert len(frames) == 12
    for frame, f in zip(frames, files):
        pixels, attrs, channels = read_exr(f)
        assert channels[:3] == ["R", "G", "B"]
        import torch

        expect = to_aces(srgb_to_linear(torch.from_numpy(frame.rgb)).numpy())
        np.testing.assert_allclose(pixels[..., :3], expect, rtol=1e-5, atol=1e-6)
        assert attrs["hdrlift:model"] == "inverse-crf"
        assert attrs["hdrlift:source_frame"] == frame.number
        assert attrs["hdrlift:colorspace"] == "ACEScg"


def test_default_model_expands_clipped_highlights(tmp_path):
    """The shipped default network puts more light into clipped pixels than the inverse curve."""
    from hdrlift.engine.models import DEFAULT_MODEL, get_info
    from hdrlift.engine.sample import make_scene, render_frames, srgb_encode

    if not get_info(DEFAULT_MODEL).runnable:
        pytest.fail(f"default model {DEFAULT_MODEL} has no shipped weights")
    scene = make_scene(width=400, height=140)
    lin = next(render_frames(scene, 128, 96, 1))
    code = srgb_encode(lin)
    pipe = Pipeline(PipelineOptions(output_space="lin_rec709"))
    res = pipe.process(code, input_space=NETWORK_INPUT_SPACE)
    clipped = code.max(-1) >= 0.999
    well = code.max(-1) < 0.9
    assert clipped.sum() > 50
    base = ColourManager().converter(NETWORK_INPUT_SPACE, NETWORK_OUTPUT_SPACE)(code)
    # kept exactly where well exposed (HDR-CNN Eq. 16 with alpha = 0) ...
    np.testing.assert_allclose(res.hdr[well], base[well], rtol=1e-4, atol=1e-5)
    # ... and expanded above display white in the clipped region, closer to the truth in stops
    assert res.hdr[clipped].mean() > 1.05
    err_net = np.abs(np.log2(res.hdr[clipped].mean(-1) + 1e-6) - np.log2(lin[clipped].mean(-1)))
    err_base = np.abs(np.log2(base[clipped].mean(-1) + 1e-6) - np.log2(lin[clipped].mean(-1)))
    assert err_net.mean() < err_base.mean()
    assert res.mask[clipped].mean() > 0.5 and res.mask[well].max() == 0.0


def _write_clip(path, codec, pix_fmt, n, w=64, h=48, options=None):
    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=Fraction(24))
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.options = options or {}
        base = rng.random((h, w, 3))
        for i in range(n):
            img = ((base * 0.8 + 0.1 * np.sin(i / 3.0) + 0.1) * 65535).clip(0, 65535).astype(np.uint16)
            f = av.VideoFrame.from_ndarray(img, format="rgb48le").reformat(format=pix_fmt)
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_hevc_10bit_round_trip(tmp_path):
    clip = _write_clip(tmp_path / "ten.mkv", "libx265", "yuv420p10le", 5, options={"x265-params": "log-level=error"})
    pipe = Pipeline(PipelineOptions(model="inverse-crf", output_space="lin_rec709", half=False))
    pipe.convert(clip, tmp_path / "out")
    files = _exrs(tmp_path / "out")
    assert len(files) == 5
    with VideoReader(clip) as r:
        assert r.bit_depth == 10
        first = next(iter(r.frames()))
    px, _, _ = read_exr(files[0])
    import torch

    expect = srgb_to_linear(torch.from_numpy(ColourManager().converter(pipe.input_space_for(r.tags), NETWORK_INPUT_SPACE)(first.rgb)).clamp(0, 1)).numpy()
    np.testing.assert_allclose(px[..., :3], expect, rtol=1e-5, atol=1e-6)
    # 10-bit precision survives: more than 256 distinct levels in a channel
    assert len(np.unique(np.round(first.rgb[..., 1] * 1023))) > 256 or len(np.unique(first.rgb)) > 256


def test_frame_range_every_and_numbering(sample_clip, tmp_path):
    pipe = Pipeline(PipelineOptions(model="inverse-crf"))
    pipe.convert(sample_clip, tmp_path / "o" / "shot.####.exr", start=3, end=8, every=2)
    assert [f.name for f in _exrs(tmp_path / "o")] == ["shot.0003.exr", "shot.0005.exr", "shot.0007.exr"]
    with pytest.raises(InputError):
        pipe.convert(sample_clip, tmp_path / "p", start=50, end=60)


def test_existing_output_needs_resume_or_overwrite(sample_clip, tmp_path):
    pipe = Pipeline(PipelineOptions(model="inverse-crf"))
    pipe.convert(sample_clip, tmp_path / "o", end=2)
    with pytest.raises(OutputError, match="--resume"):
        pipe.convert(sample_clip, tmp_path / "o", end=2)
    rep = pipe.convert(sample_clip, tmp_path / "o", end=3, resume=True)
    assert len(rep.skipped) == 2 and len(rep.written) == 1


def test_mask_layer_and_metadata(sample_clip, tmp_path):
    pipe = Pipeline(PipelineOptions(mask_layer=True, compression="piz"))
    pipe.convert(sample_clip, tmp_path / "o", end=1)
    px, attrs, channels = read_exr(_exrs(tmp_path / "o")[0])
    assert channels == ["R", "G", "B", "mask.Y"]
    assert attrs["hdrlift:model"] == pipe.model_name
    assert "chromaticities" in attrs
    assert px[..., 3].min() >= 0.0 and px[..., 3].max() <= 1.0


def _video_cmd(*args):
    return [console_script("hdr-video"), *map(str, args)]


def _stopped_at(n, *args):
    """``hdr-video ARGS`` in a child that stops after handing ``n`` frames to the writers and
    waits for a signal (tests/engine/interruptible.py); returns once it says ``ready``."""
    child = pathlib.Path(__file__).with_name("interruptible.py")
    proc = subprocess.Popen([sys.executable, str(child), str(n), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # the event: n frames are in the writers' hands
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def test_killed_run_then_resume_is_byte_identical(tmp_path):
    from hdrlift.engine.sample import write_sample

    clip = write_sample(tmp_path / "clip.mp4", width=128, height=96, frames=24)
    ref, part = tmp_path / "ref", tmp_path / "part"
    subprocess.run(_video_cmd(clip, ref, "-q"), check=True, timeout=600)
    proc = _stopped_at(9, clip, part)  # frames 1-5 written (4 more may be in flight), 10-24 not decoded

    def frames():  # finished frames; a SIGKILL may leave a hidden ".name.tmp-PID.exr" beside them
        return [f for f in part.glob("*.exr") if not f.name.startswith(".")]

    proc.kill()
    proc.wait()
    n_done = len(frames())
    assert 0 < n_done < 24, "the run must be killed mid-way"
    assert all(is_complete_exr(f) for f in frames())
    r = subprocess.run(_video_cmd(clip, part, "-q", "--resume"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in part.iterdir()) == sorted(p.name for p in ref.iterdir())
    for f in ref.iterdir():
        assert (part / f.name).read_bytes() == f.read_bytes(), f.name


def test_ctrl_c_leaves_no_partial_file(tmp_path):
    from hdrlift.engine.sample import write_sample

    clip = write_sample(tmp_path / "clip.mp4", width=128, height=96, frames=48)
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, and a farm scheduler's stop
        out = tmp_path / sig.name
        proc = _stopped_at(6, clip, out)
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=120)
        finally:
            proc.kill()  # a no-op once it has ended; never left running if the wait fails
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1] == "hdr-video: interrupted; finished frames are complete; rerun with --resume"
        names = sorted(p.name for p in out.iterdir())
        # every frame handed to the writers is finished whole; nothing hidden is left behind
        assert names == [f"clip.{i:04d}.exr" for i in range(1, 7)], names
        assert all(is_complete_exr(out / n) for n in names)


def test_memory_stays_bounded_on_300_frames(tmp_path):
    """Peak memory of a 300-frame run is about that of a 30-frame run (bounded queues)."""
    from hdrlift.engine.sample import write_sample

    clip = write_sample(tmp_path / "long.mp4", width=320, height=180, frames=300)
    code = (
        "import resource, sys\n"
        "from hdrlift.engine.pipeline import Pipeline, PipelineOptions\n"
        "p = Pipeline(PipelineOptions(model='inverse-crf', compression='none'))\n"
        "p.convert(sys.argv[1], sys.argv[2], end=int(sys.argv[3]))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    peaks = []
    for n in (30, 300):
        r = subprocess.run([sys.executable, "-c", code, str(clip), str(tmp_path / f"o{n}"), str(n)],
                           capture_output=True, text=True, timeout=600, check=True)
        peaks.append(int(r.stdout.strip().splitlines()[-1]))
        assert len(list((tmp_path / f"o{n}").glob("*.exr"))) == n
    frame_kib = 320 * 180 * 3 * 4 / 1024
    # 270 more frames of float32 would be ~60 MiB; allow a few frames of slack only
    assert peaks[1] - peaks[0] < 12 * frame_kib + 8 * 1024, peaks


def _calls(pipe: Pipeline) -> list[int]:
    """Record the batch size of every back-end call (the real back end still does the work)."""
    sizes: list[int] = []
    run = pipe.backend.run

    def recording(x):
        sizes.append(int(x.shape[0]))
        return run(x)

    pipe.backend.run = recording
    return sizes


def test_batched_inference_matches_frame_by_frame(sample_clip, tmp_path):
    """Frames of one size go through the back end together (batch, within max_pixels), and the
    EXRs equal the frame-by-frame run's."""
    opts = dict(model="hdrcnn-lite", backend="torch", half=False)
    one = Pipeline(PipelineOptions(**opts, batch=1))
    one_calls = _calls(one)
    one.convert(sample_clip, tmp_path / "one")
    five = Pipeline(PipelineOptions(**opts, batch=5))
    five_calls = _calls(five)
    rep = five.convert(sample_clip, tmp_path / "five")
    assert one_calls == [1] * 12 and five_calls == [5, 5, 2]
    assert rep.frames == 12 and set(rep.timings) == {"decode", "colour", "model", "encode"}
    assert all(v > 0 for v in rep.timings.values())
    a, b = _exrs(tmp_path / "one"), _exrs(tmp_path / "five")
    assert [f.name for f in a] == [f.name for f in b] and len(a) == 12
    for fa, fb in zip(a, b):
        np.testing.assert_allclose(read_exr(fb)[0], read_exr(fa)[0], rtol=1e-5, atol=1e-6)
    # the tiling budget caps the batch: two 96 x 64 frames fit 12,288 pixels, three do not
    capped = Pipeline(PipelineOptions(**opts, batch=5, max_pixels=2 * 96 * 64))
    capped_calls = _calls(capped)
    capped.convert(sample_clip, tmp_path / "capped", start=1, end=5)
    assert capped_calls == [2, 2, 1]


def test_error_while_a_batch_gathers_writes_the_frames_before_it(sample_clip, tmp_path):
    """Frame 4's output exists (no --resume/--overwrite): the run stops there with a one-line
    error, after writing frames 1-3, which were waiting for a batch of 5; frame 4's file is
    untouched and nothing after it is written."""
    out = tmp_path / "out"
    out.mkdir()
    blocker = out / "street.0004.exr"
    blocker.write_bytes(b"not mine")
    pipe = Pipeline(PipelineOptions(model="inverse-crf", batch=5))
    with pytest.raises(OutputError, match="street.0004.exr exists"):
        pipe.convert(sample_clip, out)
    assert [f.name for f in _exrs(out)] == ["street.0001.exr", "street.0002.exr", "street.0003.exr",
                                            "street.0004.exr"]
    assert all(is_complete_exr(out / f"street.000{i}.exr") for i in (1, 2, 3))
    assert blocker.read_bytes() == b"not mine"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_bad_batch_and_budget_are_one_line_input_errors():
    with pytest.raises(InputError, match="batch must be >= 1"):
        Pipeline(PipelineOptions(model="inverse-crf", batch=0))
    with pytest.raises(InputError, match="max_pixels must be at least 4096"):
        Pipeline(PipelineOptions(model="inverse-crf", max_pixels=100))


def test_progress_total_counts_the_files_of_a_sequence_with_gaps(tmp_path):
    """Frames 1, 2, 5, 9, 10 exist: the progress total is the number of files the run will
    convert (with a range and --every too), not the span of their numbers."""
    import OpenImageIO as oiio

    src = tmp_path / "seq"
    src.mkdir()
    for n in (1, 2, 5, 9, 10):
        img = np.full((16, 24, 3), 20 * n, np.uint8)
        assert oiio.ImageBuf(img).write(str(src / f"plate.{n:04d}.png"))
    pipe = Pipeline(PipelineOptions(model="inverse-crf"))
    for kwargs, expect in (({}, [1, 2, 5, 9, 10]), ({"start": 2, "end": 9}, [2, 5, 9]),
                           ({"start": 1, "every": 4}, [1, 5, 9])):
        seen = []
        out = tmp_path / f"out{len(expect)}{kwargs.get('every', 1)}"
        pipe.convert(src / "plate.####.png", out, progress=lambda done, total, t: seen.append((done, total)), **kwargs)
        assert [int(p.name.split(".")[1]) for p in _exrs(out)] == expect
        assert seen and all(total == len(expect) for _, total in seen) and seen[-1][0] == len(expect), seen
