"""Stills and image sequences: real files written with OpenImageIO, read back through open_source."""

from __future__ import annotations

import pathlib

import numpy as np
import OpenImageIO as oiio
import pytest

from hdrlift.engine.errors import ColourError, InputError
from hdrlift.engine.io.images import SequenceReader, StillReader, open_source, read_image
from hdrlift.engine.io.video import ColourTags, Frame, VideoReader


def gradient(h=24, w=32, channels=3, seed=0) -> np.ndarray:
    """Smooth ramps plus a few random patches, float in [0, 1]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([x / (w - 1), y / (h - 1), (x + y) / (w + h - 2), 1.0 - x / (w - 1)], axis=-1)
    rng = np.random.default_rng(seed)
    base[2:6, 2:6, :3] = rng.random(3)
    base[0, 0, :3] = (0.0, 1.0, 0.5)
    return base[..., :channels]


def write(path: pathlib.Path, pixels: np.ndarray, fmt=None, **attrs) -> pathlib.Path:
    h, w, c = pixels.shape
    types = {"uint8": oiio.UINT8, "uint16": oiio.UINT16, "float16": oiio.HALF, "float32": oiio.FLOAT}
    spec = oiio.ImageSpec(w, h, c, fmt or types[str(pixels.dtype)])
    for k, v in attrs.items():
        spec.attribute(k, v)
    out = oiio.ImageOutput.create(str(path))
    assert out is not None, oiio.geterror()
    assert out.open(str(path), spec), out.geterror()
    assert out.write_image(np.ascontiguousarray(pixels)), out.geterror()
    assert out.close()
    return path


def only_frame(reader) -> Frame:
    frames = list(reader.frames())
    assert len(frames) == 1
    f = frames[0]
    assert (f.number, f.index, f.pts, f.time) == (1, 0, None, None)
    assert f.rgb.dtype == np.float32 and f.rgb.flags.c_contiguous and f.rgb.ndim == 3 and f.rgb.shape[2] == 3
    return f


# -- stills -------------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", ["png", "tif", "bmp", "tga", "dpx"])
def test_8bit_still_is_code_over_255(tmp_path, ext):
    code = np.round(gradient() * 255).astype(np.uint8)
    src = write(tmp_path / f"a.{ext}", code)
    with open_source(src) as r:
        assert isinstance(r, StillReader)
        assert (r.width, r.height, r.frame_count, r.first_number) == (32, 24, 1, 1)
        assert r.tags is None  # untagged: the pipeline treats it as sRGB
        f = only_frame(r)
    np.testing.assert_array_equal(f.rgb, code.astype(np.float32) / np.float32(255))
    assert f.rgb.max() == 1.0 and f.rgb.min() == 0.0


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_still_is_code_over_65535(tmp_path, ext):
    code = np.round(gradient() * 65535).astype(np.uint16)
    src = write(tmp_path / f"a.{ext}", code)
    f = only_frame(open_source(src))
    np.testing.assert_array_equal(f.rgb, code.astype(np.float32) / np.float32(65535))
    assert len(np.unique(f.rgb[..., 0])) > 30  # more than 8-bit steps survive


def test_jpeg(tmp_path):
    src = gradient(48, 64)
    path = tmp_path / "a.jpg"
    write(path, np.round(src * 255).astype(np.uint8), **{"CompressionQuality": 100})
    f = only_frame(open_source(path))
    ref = oiio.ImageInput.open(str(path)).read_image("uint8")
    np.testing.assert_array_equal(f.rgb, ref.astype(np.float32) / np.float32(255))
    assert np.abs(f.rgb - src).mean() < 0.01  # JPEG at quality 100: close to the source
    assert open_source(tmp_path / "a.jpg").__class__ is StillReader


@pytest.mark.parametrize("bits", [10, 12])
def test_dpx_10_and_12_bit_are_exact(tmp_path, bits):
    top = (1 << bits) - 1
    code = np.round(gradient(20, 30) * top).astype(np.uint16)
    code[1, 1] = (0, 1, top)
    wide = (code << (16 - bits)) | (code >> (2 * bits - 16))  # bit replication to 16 bits
    path = write(tmp_path / f"a{bits}.dpx", wide, oiio.UINT16, **{"oiio:BitsPerSample": bits})
    assert oiio.ImageInput.open(str(path)).spec().getattribute("oiio:BitsPerSample") == bits
    f = only_frame(open_source(path))
    np.testing.assert_array_equal(f.rgb, code.astype(np.float32) / np.float32(top))
    np.testing.assert_array_equal(np.round(f.rgb * top).astype(np.uint16), code)


def test_float_tiff_passes_through(tmp_path):
    a = (gradient() * 3.0 - 0.5).astype(np.float32)  # above 1 and below 0: kept as stored
    f = only_frame(open_source(write(tmp_path / "f.tif", a)))
    np.testing.assert_array_equal(f.rgb, a)
    h = a.astype(np.float16)
    f = only_frame(open_source(write(tmp_path / "h.tif", h)))
    np.testing.assert_array_equal(f.rgb, h.astype(np.float32))


def test_nan_is_left_for_the_pipeline(tmp_path):
    a = np.full((4, 4, 3), 0.5, np.float32)
    a[1, 1, 1] = np.nan
    f = only_frame(open_source(write(tmp_path / "nan.tif", a)))
    assert np.isnan(f.rgb[1, 1, 1]) and np.isfinite(f.rgb).sum() == 47


def test_grey_is_replicated(tmp_path):
    g = np.round(gradient(channels=1) * 255).astype(np.uint8)
    f = only_frame(open_source(write(tmp_path / "g.png", g)))
    assert f.rgb.shape == (24, 32, 3)
    for c in range(3):
        np.testing.assert_array_equal(f.rgb[..., c], g[..., 0] / np.float32(255))


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_rgba_drops_alpha_and_keeps_colour(tmp_path, ext):
    a = np.round(gradient(channels=4) * 255).astype(np.uint8)
    a[..., 3] = 0
    a[:4, :, 3] = 128
    # stored unassociated (as PNG defines it): what a paint program writes
    f = only_frame(open_source(write(tmp_path / f"rgba.{ext}", a, **{"oiio:UnassociatedAlpha": 1})))
    np.testing.assert_array_equal(f.rgb, a[..., :3] / np.float32(255))  # not premultiplied


@pytest.mark.parametrize("channels", [2, 5])
def test_unsupported_channel_counts(tmp_path, channels):
    ext = "png" if channels == 2 else "tif"
    path = write(tmp_path / f"c.{ext}", np.zeros((4, 4, channels), np.uint8))
    with pytest.raises(InputError) as e:
        open_source(path)
    assert str(e.value) == (f"{path} has {channels} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA)")


def test_corrupt_and_truncated_files(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(InputError) as e:
        open_source(junk)
    assert str(junk) in str(e.value) and "\n" not in str(e.value)

    good = write(tmp_path / "good.png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = good.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        with open_source(cut) as r:  # the header is intact: opening works, the pixels do not
            list(r.frames())
    assert str(cut) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InputError, match="cut.png"):
        read_image(cut)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(InputError) as e:
        open_source(tmp_path / "nope.png")
    assert str(e.value) == f"{tmp_path / 'nope.png'}: no such file"
    with pytest.raises(InputError, match="no such file"):
        open_source(tmp_path / "nope.mov")
    with pytest.raises(InputError, match="folder"):
        open_source(tmp_path)


def test_hdr_files_refused_clearly(tmp_path):
    from hdrlift.engine.io.exr import write_exr

    write_exr(tmp_path / "a.exr", np.ones((4, 4, 3), np.float32))
    with pytest.raises(InputError, match="already HDR"):
        open_source(tmp_path / "a.exr")


def test_unknown_extension_goes_to_the_video_reader(tmp_path):
    (tmp_path / "clip.xyz").write_bytes(b"not a video at all" * 100)
    with pytest.raises(InputError, match="clip.xyz"):
        open_source(tmp_path / "clip.xyz")


def test_colour_overrides(tmp_path):
    path = write(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    assert open_source(path).tags is None
    assert open_source(path, transfer="bt709", primaries="bt709").tags == ColourTags("bt709", "bt709", None, None)
    # an override without a transfer keeps the image default, sRGB
    assert open_source(path, primaries="rec709").tags == ColourTags("bt709", "iec61966-2-1", None, None)
    with pytest.raises(ColourError, match="unknown transfer"):
        open_source(path, transfer="nonsense")


def test_still_frame_range(tmp_path):
    path = write(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    with open_source(path) as r:
        assert [f.number for f in r.frames(start=1, end=1)] == [1]
        assert list(r.frames(end=0)) == []
        with pytest.raises(InputError, match="past the last frame"):
            r.frames(start=2)
        with pytest.raises(ValueError):
            r.frames(every=0)
    with pytest.raises(ValueError, match="closed"):
        r.frames()


# -- sequences ----------------------------------------------------------------------------------

def make_sequence(folder: pathlib.Path, numbers, name="plate", ext="png", pad=4, size=(12, 16)) -> dict[int, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    frames = {}
    for n in numbers:
        code = np.full((*size, 3), n % 256, np.uint8)
        code[0, 0] = (1, 2, 3)
        write(folder / f"{name}.{n:0{pad}d}.{ext}", code)
        frames[n] = code.astype(np.float32) / np.float32(255)
    return frames


@pytest.mark.parametrize("pattern", ["plate.####.png", "plate.%04d.png"])
def test_sequence_numbers_from_names(tmp_path, pattern):
    truth = make_sequence(tmp_path / "s", range(101, 111))
    (tmp_path / "s" / "plate.0105.png.bak").write_bytes(b"x")  # not part of it
    (tmp_path / "s" / "plate.105.png").write_bytes(b"x")  # wrong padding: not part of it
    (tmp_path / "s" / "other.0101.png").write_bytes(b"x")
    with open_source(tmp_path / "s" / pattern) as r:
        assert isinstance(r, SequenceReader)
        assert (r.frame_count, r.first_number, r.width, r.height) == (10, 101, 16, 12)
        assert r.numbers == list(range(101, 111)) and r.tags is None
        frames = list(r.frames())
    assert [f.number for f in frames] == list(range(101, 111))
    assert [f.index for f in frames] == list(range(10))
    for f in frames:
        assert f.pts is None and f.time is None
        assert f.rgb.dtype == np.float32 and f.rgb.flags.c_contiguous
        np.testing.assert_array_equal(f.rgb, truth[f.number])


def test_sequence_start_end_every_match_the_pipeline_count(tmp_path):
    from hdrlift.engine.convert import count_frames

    make_sequence(tmp_path / "s", range(1, 13))
    r = open_source(tmp_path / "s" / "plate.####.png")
    cases = [((None, None, 1), list(range(1, 13))), ((3, 8, 2), [3, 5, 7]), ((None, 4, 1), [1, 2, 3, 4]),
             ((10, None, 1), [10, 11, 12]), ((2, None, 5), [2, 7, 12]), ((12, 40, 1), [12])]
    for (start, end, every), want in cases:
        got = [f.number for f in r.frames(start=start, end=end, every=every)]
        assert got == want, (start, end, every)
        assert count_frames(r, start, end, every) == len(want)
    with pytest.raises(InputError, match="past the last frame"):
        r.frames(start=13)
    with pytest.raises(ValueError):
        r.frames(start=5, end=4)


def test_sequence_with_gaps_and_wide_numbers(tmp_path):
    make_sequence(tmp_path / "s", [998, 999, 1001, 12345], pad=3)
    r = open_source(tmp_path / "s" / "plate.%03d.png")
    assert r.numbers == [998, 999, 1001, 12345]  # unpadded numbers longer than the field count
    assert [f.number for f in r.frames(start=999, end=1001)] == [999, 1001]


def test_sequence_other_formats_and_unpadded(tmp_path):
    make_sequence(tmp_path / "d", [7, 8], ext="dpx", pad=1, name="shot_a")
    r = open_source(tmp_path / "d" / "shot_a.%d.dpx")
    assert r.numbers == [7, 8]
    assert np.allclose(next(iter(r.frames())).rgb[1, 1], 7 / 255)


def test_sequence_size_change_is_an_error(tmp_path):
    make_sequence(tmp_path / "s", [1, 2])
    make_sequence(tmp_path / "s", [3], size=(12, 18))
    r = open_source(tmp_path / "s" / "plate.####.png")
    it = r.frames()
    assert [next(it).number, next(it).number] == [1, 2]
    with pytest.raises(InputError, match=r"plate\.0003\.png is 18x12, but the sequence started at 16x12"):
        next(it)


def test_sequence_bad_frame_names_the_file(tmp_path):
    make_sequence(tmp_path / "s", [1, 2])
    (tmp_path / "s" / "plate.0003.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"plate\.0003\.png"):
        list(open_source(tmp_path / "s" / "plate.####.png").frames())


def test_sequence_nothing_matches(tmp_path):
    (tmp_path / "s").mkdir()
    with pytest.raises(InputError, match="no files match"):
        open_source(tmp_path / "s" / "plate.####.png")
    with pytest.raises(InputError, match="no such folder"):
        open_source(tmp_path / "nope" / "plate.####.png")


def test_pipeline_converts_a_sequence_and_a_still(tmp_path):
    """End to end through open_source: EXRs named after the source frame numbers."""
    from hdrlift.engine.io.exr import read_exr
    from hdrlift.engine.pipeline import Pipeline, PipelineOptions

    make_sequence(tmp_path / "s", [5, 6, 7])
    pipe = Pipeline(PipelineOptions(model="inverse-crf", half=False, output_space="lin_rec709"))
    rep = pipe.convert(tmp_path / "s" / "plate.####.png", tmp_path / "out", start=6)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["plate.0006.exr", "plate.0007.exr"]
    assert rep.input_space == pipe.colour.resolve("srgb")
    _, attrs, _ = read_exr(tmp_path / "out" / "plate.0007.exr")
    assert attrs["hdrlift:source_frame"] == 7

    still = write(tmp_path / "still.png", np.full((8, 8, 3), 255, np.uint8))
    pipe.convert(still, tmp_path / "still.exr", single=True)
    px, _, _ = read_exr(tmp_path / "still.exr")
    np.testing.assert_allclose(px, 1.0, rtol=1e-5)  # sRGB white -> linear 1.0


def test_video_files_get_the_video_reader(tmp_path):
    from hdrlift.engine.sample import write_sample

    clip = write_sample(tmp_path / "c.mp4", width=32, height=32, frames=2)
    with open_source(clip, range="tv") as r:
        assert isinstance(r, VideoReader) and r.frame_count == 2 and r.tags.range == "tv"
