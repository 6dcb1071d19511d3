"""Video decoding with real clips made here with PyAV: counts, numbering, timing, colour, tags.

Each clip is encoded from Y'CbCr planes built in numpy from a known R'G'B' picture (BT.709
matrix, tv range, chroma sited as MPEG/HEVC/ProRes expect), so the decoded R'G'B' can be
compared with the picture that went in: exactly up to quantisation for the lossless encodes,
within the codec's error for ProRes.
"""

from __future__ import annotations

import pathlib
from fractions import Fraction

import av
import numpy as np
import pytest

from hdrlift.engine.errors import ColourError, InputError
from hdrlift.engine.io.images import open_source
from hdrlift.engine.io.video import ColourTags, VideoReader

W, H, N = 64, 48, 10
KR, KB = 0.2126, 0.0722  # BT.709
PATCHES = {  # 8x8 patches on the chroma grid (top-left corner -> R'G'B')
    (8, 8): (0.85, 0.15, 0.10),
    (8, 24): (0.10, 0.75, 0.20),
    (8, 40): (0.15, 0.20, 0.80),
    (32, 8): (0.80, 0.75, 0.10),
}
INDEX = (32, 40)  # grey patch whose level tells the frame apart


def picture(i: int) -> np.ndarray:
    """Frame ``i`` (0-based): smooth ramps, colour patches, a grey patch at level (i + 1) / (N + 2)."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    rgb = np.stack([0.1 + 0.8 * x / (W - 1), 0.1 + 0.8 * y / (H - 1),
                    0.5 + 0.02 * i + 0.2 * (x + y) / (W + H)],
                   axis=-1)
    for (r, c), col in PATCHES.items():
        rgb[r:r + 8, c:c + 8] = col
    r, c = INDEX
    rgb[r:r + 8, c:c + 8] = (i + 1) / (N + 2)
    return np.clip(rgb, 0.0, 1.0)


def interior(mask_margin: int = 2) -> np.ndarray:
    """Pixels away from patch edges and the picture border (chroma upsampling blurs edges)."""
    keep = np.zeros((H, W), bool)
    keep[mask_margin:H - mask_margin, mask_margin:W - mask_margin] = True
    for (r, c) in [*PATCHES, INDEX]:
        keep[max(0, r - mask_margin):r + 8 + mask_margin, max(0, c - mask_margin):c + 8 + mask_margin] = False
        keep[r + mask_margin:r + 8 - mask_margin, c + mask_margin:c + 8 - mask_margin] = True
    return keep


def ycbcr_planes(rgb: np.ndarray, bits: int, sub_x: int, sub_y: int) -> list[np.ndarray]:
    """Quantised tv-range BT.709 Y'CbCr planes; chroma co-sited left, vertically centred."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = KR * r + (1 - KR - KB) * g + KB * b
    cb = (b - y) / (2 * (1 - KB))
    cr = (r - y) / (2 * (1 - KR))
    if sub_x == 2:
        cb, cr = cb[:, ::2], cr[:, ::2]
    if sub_y == 2:
        cb, cr = (cb[0::2] + cb[1::2]) / 2, (cr[0::2] + cr[1::2]) / 2
    s = float(1 << (bits - 8))
    dt = np.uint8 if bits == 8 else np.uint16
    q = lambda v, off, span: np.clip(np.round((span * v + off) * s), 0, (1 << bits) - 1).astype(dt)  # noqa: E731
    return [q(y, 16, 219), q(cb, 128, 224), q(cr, 128, 224)]


def make_frame(rgb: np.ndarray, pix_fmt: str, bits: int, sub_x: int, sub_y: int) -> av.VideoFrame:
    frame = av.VideoFrame(W, H, pix_fmt)
    for plane, data in zip(frame.planes, ycbcr_planes(rgb, bits, sub_x, sub_y)):
        row = plane.line_size // data.itemsize
        padded = np.zeros((plane.height, row), data.dtype)
        padded[:, : plane.width] = data
        plane.update(padded.astype(data.dtype.newbyteorder("<")).tobytes())
    frame.color_range = 1  # tv
    frame.colorspace = 1  # bt709
    frame.color_primaries = 1
    frame.color_trc = 1
    return frame


CODECS = {
    # name: (codec, container ext, pix_fmt, bits, sub_x, sub_y, options, lossless)
    "h264": ("libx264", "mp4", "yuv420p", 8, 2, 2, {"qp": "0", "preset": "ultrafast"}, True),
    "hevc10": ("libx265", "mkv", "yuv420p10le", 10, 2, 2,
               {"x265-params": "lossless=1:log-level=error", "preset": "ultrafast"}, True),
    "prores": ("prores_ks", "mov", "yuv422p10le", 10, 2, 1, {"profile": "3"}, False),
    "vp9": ("libvpx-vp9", "webm", "yuv444p", 8, 1, 1, {"lossless": "1", "deadline": "realtime", "cpu-used": "8"}, True),
}


def write_clip(path: pathlib.Path, name: str, n: int = N, tags: dict | None = None) -> pathlib.Path:
    codec, _, pix_fmt, bits, sx, sy, options, _ = CODECS[name]
    tags = {"color_primaries": 1, "color_trc": 1, "colorspace": 1, "color_range": 1} if tags is None else tags
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        stream.options = dict(options)
        for k, v in tags.items():
            setattr(stream.codec_context, k, v)
        for i in range(n):
            frame = make_frame(picture(i), pix_fmt, bits, sx, sy)
            for k, v in tags.items():
                setattr(frame, k, v)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("clips")
    return {name: write_clip(d / f"{name}.{CODECS[name][1]}", name) for name in CODECS}


@pytest.mark.parametrize("name", list(CODECS))
def test_decode_matches_source(clips, name):
    _, _, pix_fmt, bits, sx, sy, _, lossless = CODECS[name]
    with VideoReader(clips[name]) as r:
        assert (r.width, r.height, r.pix_fmt, r.bit_depth) == (W, H, pix_fmt, bits)
        assert r.fps == 24
        assert r.frame_count == N
        frames = list(r.frames())
    assert [f.number for f in frames] == list(range(1, N + 1))
    assert [f.index for f in frames] == list(range(N))
    times = [f.time for f in frames]
    assert times[0] == 0.0 and all(b > a for a, b in zip(times, times[1:]))
    np.testing.assert_allclose(times, np.arange(N) / 24, atol=1e-3)
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))
    # quantisation of one code value at this bit depth, in R'G'B' (the matrix amplifies chroma)
    code = 1.0 / (219 * (1 << (bits - 8)))
    keep = interior()
    for i, f in enumerate(frames):
        assert f.rgb.dtype == np.float32 and f.rgb.shape == (H, W, 3) and f.rgb.flags.c_contiguous
        err = np.abs(f.rgb - picture(i))
        if lossless:
            assert err[keep].max() < 4 * code, (name, i, err[keep].max())
        else:  # ProRes 422 HQ
            assert err[keep].max() < 0.02 and err[keep].mean() < 2 * code, (name, i, err[keep].max())
        assert err.mean() < 0.01
        # the grey index patch tells frame i apart: order is presentation order
        r0, c0 = INDEX
        assert abs(float(f.rgb[r0 + 4, c0 + 4].mean()) - (i + 1) / (N + 2)) < 2 * code + (0 if lossless else 0.004)


def test_ten_bit_precision_survives(clips):
    with VideoReader(clips["hevc10"]) as r:
        f = next(iter(r.frames()))
    levels = np.unique(np.round(f.rgb[..., 0] * 876))  # 10-bit tv-range steps
    assert len(levels) > 2 * len(np.unique(np.round(f.rgb[..., 0] * 219)))


@pytest.mark.parametrize("name", list(CODECS))
def test_tags_read(clips, name):
    with VideoReader(clips[name]) as r:
        assert r.stream_tags.matrix == "bt709" and r.stream_tags.range == "tv"
        if name != "vp9":  # VP9 signals only the matrix and range in its bitstream
            assert r.stream_tags.primaries == "bt709" and r.stream_tags.transfer == "bt709"
        assert r.tags.matrix == "bt709" and r.tags.range == "tv"


def test_untagged_defaults(tmp_path):
    clip = write_clip(tmp_path / "u.mkv", "hevc10", n=2, tags={})
    with VideoReader(clip) as r:
        assert r.stream_tags.primaries is None and r.stream_tags.transfer is None
        # below 720 lines: SD matrix assumed; tv range for Y'CbCr
        assert r.tags == ColourTags(None, None, "smpte170m", "tv")


def test_user_overrides_win(clips):
    path = clips["h264"]
    with VideoReader(path) as plain:
        ref = next(iter(plain.frames())).rgb
    with VideoReader(path, matrix="bt601", transfer="srgb", primaries="bt709") as r:
        assert r.stream_tags.matrix == "bt709"
        assert r.tags == ColourTags("bt709", "iec61966-2-1", "smpte170m", "tv")
        other = next(iter(r.frames())).rgb
    r0, c0 = INDEX
    grey = (slice(r0 + 2, r0 + 6), slice(c0 + 2, c0 + 6))
    np.testing.assert_allclose(other[grey], ref[grey], atol=1e-6)  # no chroma: matrix-independent
    pr, pc = next(iter(PATCHES))
    assert np.abs(other[pr + 4, pc + 4] - ref[pr + 4, pc + 4]).max() > 0.02  # colours change
    with VideoReader(path, range="pc") as r:
        full = next(iter(r.frames())).rgb
    # tv code 16 + 219 v read as full range: (16 + 219 v) / 255
    v = 1 / (N + 2)
    assert abs(float(full[r0 + 4, c0 + 4].mean()) - (16 + 219 * v) / 255) < 2 / 255
    with open_source(path, transfer="gamma22") as r:
        assert isinstance(r, VideoReader) and r.tags.transfer == "gamma22"
    with pytest.raises(ColourError, match="unknown matrix"):
        VideoReader(path, matrix="nonsense")


def test_frame_range(clips):
    with VideoReader(clips["vp9"]) as r:
        assert [f.number for f in r.frames(start=3, end=8, every=2)] == [3, 5, 7]
        assert [f.number for f in r.frames(start=None, end=3)] == [1, 2, 3]
        got = list(r.frames(start=9))
        assert [f.number for f in got] == [9, 10] and [f.index for f in got] == [8, 9]
        np.testing.assert_allclose(got[0].time, 8 / 24, atol=1e-3)
        with pytest.raises(InputError, match="past the last frame"):
            list(r.frames(start=11))
        with pytest.raises(ValueError):
            r.frames(every=0)


def test_corrupt_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(InputError) as e:
        VideoReader(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InputError, match="not found"):
        VideoReader(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="folder"):
        VideoReader(tmp_path)


@pytest.mark.parametrize("name", ["h264", "prores"])
def test_truncated_file(clips, tmp_path, name):
    data = clips[name].read_bytes()
    cut = tmp_path / f"cut.{CODECS[name][1]}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError) as e:
        with VideoReader(cut) as r:
            r.frame_count
            list(r.frames())
    assert str(cut) in str(e.value) and "\n" not in str(e.value)


def test_truncated_faststart_mp4_names_the_last_good_frame(tmp_path):
    """MP4 with its index first (faststart): the sample table shows what the cut lost."""
    path = tmp_path / "fs.mp4"
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for i in range(N):
            frame = make_frame(picture(i), "yuv420p", 8, 2, 2)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with VideoReader(path) as r:
        assert r.frame_count == N
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with VideoReader(cut) as r:  # the header is whole: it opens
        with pytest.raises(InputError, match=r"truncated or corrupt file .*after frame \d+"):
            r.frame_count
        got = []
        with pytest.raises(InputError, match="truncated or corrupt"):
            for f in r.frames():
                got.append(f.number)
    assert 0 < len(got) < N and got == list(range(1, len(got) + 1))


def test_truncated_matroska_yields_the_whole_frames_then_says_truncated(clips, tmp_path):
    """Matroska/WebM have no sample table, and FFmpeg drops the damaged last block without an
    error; the header's duration (FFmpeg's per-track DURATION tag) survives the cut, so the
    reader yields the whole frames before it and then raises instead of ending short."""
    data = clips["vp9"].read_bytes()
    with VideoReader(clips["vp9"]) as r:  # the whole file passes the same check
        assert len(list(r.frames())) == N and r.frame_count == N
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: len(data) // 2])
    frames = []
    with VideoReader(cut) as r:
        with pytest.raises(InputError, match=r"truncated file: decoding stopped after frame \d+ at [\d.]+ s of the "
                                             r"[\d.]+ s the header declares"):
            for f in r.frames():
                frames.append(f)
        with pytest.raises(InputError, match="truncated file"):
            r.frame_count
        # a range that ends before the cut never reaches the end, so it is not an error
        assert [f.number for f in r.frames(1, 2)] == [1, 2]
    assert 0 < len(frames) < N
    for i, f in enumerate(frames):
        assert f.number == i + 1 and np.abs(f.rgb - picture(i)).max() < 0.01
