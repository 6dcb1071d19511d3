"""OpenEXR writing and reading: round trips, metadata, layers, determinism, atomicity."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import OpenImageIO as oiio
import pytest

from hdrlift.engine.errors import InputError, OutputError
from hdrlift.engine.io.exr import ExrImage, is_complete_exr, read_exr, write_exr
from hdrlift.engine.convert import _TEMP_NAME

AP1 = (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767)


def hdr(h=48, w=64, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.random((h, w, 3)).astype(np.float32)
    a *= np.float32(2.0) ** rng.integers(-8, 8, (h, w, 1)).astype(np.float32)  # many stops
    a[0, 0] = (0.0, 1.0, 65000.0)
    return a


def leftovers(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_round_trip_float_is_exact(tmp_path):
    a = hdr()
    write_exr(tmp_path / "f.exr", a, half=False)
    img = read_exr(tmp_path / "f.exr")
    assert isinstance(img, ExrImage)
    pixels, attrs, channels = img
    assert channels == ["R", "G", "B"]
    assert pixels.dtype == np.float32 and pixels.shape == (48, 64, 3)
    np.testing.assert_array_equal(pixels, a)
    np.testing.assert_array_equal(img.rgb, a)
    spec = oiio.ImageInput.open(str(tmp_path / "f.exr")).spec()
    assert spec.format == oiio.FLOAT


def test_round_trip_half_within_half_precision(tmp_path):
    a = hdr(seed=1)
    write_exr(tmp_path / "h.exr", a)  # half by default
    pixels, _, channels = read_exr(tmp_path / "h.exr")
    assert channels == ["R", "G", "B"]
    np.testing.assert_allclose(pixels, a, rtol=2.0 ** -11, atol=2.0 ** -24)
    np.testing.assert_array_equal(pixels, a.astype(np.float16).astype(np.float32))
    assert oiio.ImageInput.open(str(tmp_path / "h.exr")).spec().format == oiio.HALF


def test_attributes_read_back(tmp_path):
    attrs = {
        "chromaticities": AP1,
        "hdrlift:colorspace": "ACEScg",
        "hdrlift:source": "/shots/a b/clip.mov",
        "hdrlift:source_frame": 17,
        "hdrlift:gain": 0.25,
        "hdrlift:flag": True,
        "hdrlift:big": 2**40,
    }
    write_exr(tmp_path / "a.exr", hdr(8, 8), attributes=attrs)
    _, got, _ = read_exr(tmp_path / "a.exr")
    np.testing.assert_allclose(got["chromaticities"], AP1, rtol=1e-6)
    assert got["hdrlift:colorspace"] == "ACEScg"
    assert got["hdrlift:source"] == "/shots/a b/clip.mov"
    assert got["hdrlift:source_frame"] == 17 and isinstance(got["hdrlift:source_frame"], int)
    assert got["hdrlift:gain"] == pytest.approx(0.25)
    assert got["hdrlift:flag"] == 1
    assert got["hdrlift:big"] == str(2**40)  # beyond EXR's 32-bit ints: kept exact as text
    assert "DateTime" not in got  # no time stamp: files are reproducible
    # the type a compositor sees: float[8] chromaticities
    spec = oiio.ImageInput.open(str(tmp_path / "a.exr")).spec()
    types = {a.name: str(a.type) for a in spec.extra_attribs}
    assert types["chromaticities"] == "float[8]"


def test_chromaticities_need_eight_numbers(tmp_path):
    with pytest.raises(InputError, match="8 numbers"):
        write_exr(tmp_path / "c.exr", hdr(4, 4), attributes={"chromaticities": (0.1, 0.2)})
    assert leftovers(tmp_path) == []


def test_mask_layer(tmp_path):
    a = hdr(16, 20)
    mask = np.linspace(0, 1, 16 * 20, dtype=np.float32).reshape(16, 20)
    write_exr(tmp_path / "m.exr", a, half=False, layers={"mask": mask[..., None]})
    img = read_exr(tmp_path / "m.exr")
    assert img.channels == ["R", "G", "B", "mask.Y"]
    assert img.pixels.shape == (16, 20, 4)
    np.testing.assert_array_equal(img.layer("mask"), mask)
    np.testing.assert_array_equal(img.planes["mask.Y"], mask)
    np.testing.assert_array_equal(img.rgb, a)
    with pytest.raises(InputError, match="layer 'mask'"):
        write_exr(tmp_path / "bad.exr", a, layers={"mask": mask[:8]})
    assert not (tmp_path / "bad.exr").exists()


def test_two_writes_are_byte_identical(tmp_path):
    a = hdr(seed=3)
    attrs = {"chromaticities": AP1, "hdrlift:model": "x", "hdrlift:source_frame": 1}
    write_exr(tmp_path / "one.exr", a, attributes=attrs, layers={"mask": a[..., 0] > 1})
    # a later second: OIIO would stamp a different DateTime if hdrlift let it
    import time

    time.sleep(1.05)
    write_exr(tmp_path / "two.exr", a, attributes=attrs, layers={"mask": a[..., 0] > 1})
    assert (tmp_path / "one.exr").read_bytes() == (tmp_path / "two.exr").read_bytes()


@pytest.mark.parametrize("compression", ["none", "rle", "zips", "zip", "piz", "pxr24", "b44", "dwaa", "dwab"])
def test_compression_is_honoured(tmp_path, compression):
    a = hdr(32, 32)
    write_exr(tmp_path / "c.exr", a, compression=compression)
    pixels, attrs, _ = read_exr(tmp_path / "c.exr")
    assert attrs["compression"] == compression
    if compression in ("none", "rle", "zips", "zip", "piz"):  # lossless for half
        np.testing.assert_array_equal(pixels, a.astype(np.float16).astype(np.float32))


def test_unknown_compression(tmp_path):
    with pytest.raises(OutputError, match="unknown EXR compression 'lzma'"):
        write_exr(tmp_path / "c.exr", hdr(4, 4), compression="lzma")


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 4), (4, 4, 1), (0, 4, 3)])
def test_wrong_shapes_refused(tmp_path, shape):
    with pytest.raises(InputError, match="H x W x 3|empty"):
        write_exr(tmp_path / "s.exr", np.zeros(shape, np.float32))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_refused(tmp_path, bad):
    a = hdr(4, 4)
    a[1, 2, 0] = bad
    with pytest.raises(InputError, match="NaN/Inf"):
        write_exr(tmp_path / "n.exr", a)
    assert leftovers(tmp_path) == []


def test_missing_folder(tmp_path):
    with pytest.raises(OutputError) as e:
        write_exr(tmp_path / "no" / "such" / "f.exr", hdr(4, 4))
    assert "\n" not in str(e.value) and "does not exist" in str(e.value)


def test_read_only_folder_leaves_nothing(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        probe = ro / "probe"
        try:
            probe.write_bytes(b"x")
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("running with privileges that ignore folder permissions (root)")
        with pytest.raises(OutputError) as e:
            write_exr(ro / "f.exr", hdr(4, 4))
        assert str(e.value).startswith(f"cannot write {ro / 'f.exr'}: ")
        assert "\n" not in str(e.value)
        assert leftovers(ro) == []
    finally:
        ro.chmod(0o755)


def test_target_is_a_folder_leaves_no_temporary(tmp_path):
    (tmp_path / "f.exr").mkdir()
    with pytest.raises(OutputError, match="cannot write"):
        write_exr(tmp_path / "f.exr", hdr(4, 4))
    assert leftovers(tmp_path) == ["f.exr"] and (tmp_path / "f.exr").is_dir()


def test_failed_rename_removes_temporary(tmp_path, monkeypatch):
    """A failure after the file is written (here: the rename) leaves neither target nor temporary."""
    import hdrlift.engine.io.exr as exr_mod

    def refuse(src, dst):
        assert _TEMP_NAME.match(pathlib.Path(src).name), src  # the pipeline's clean-up regex knows it
        assert pathlib.Path(src).parent == pathlib.Path(dst).parent
        assert is_complete_exr(src)  # the temporary is whole before it is renamed
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exr_mod.os, "replace", refuse)
    with pytest.raises(OutputError, match=r"^cannot write .*f\.exr: No space left on device$"):
        write_exr(tmp_path / "f.exr", hdr(4, 4))
    assert leftovers(tmp_path) == []


def test_disk_full_mid_write_leaves_nothing(tmp_path):
    """A real short write: the file-size limit stands in for a full disk (works as root too)."""
    code = textwrap.dedent(
        """
        import resource, signal, sys, numpy as np
        from hdrlift.engine.errors import OutputError
        from hdrlift.engine.io.exr import write_exr
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        noise = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
        try:
            write_exr(sys.argv[1], noise, half=False, compression="none")
        except OutputError as exc:
            print("OutputError:", exc)
        """
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.exr")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"OutputError: cannot write {tmp_path / 'big.exr'}"), r.stdout
    assert leftovers(tmp_path) == []


def test_overwrite_replaces_atomically(tmp_path):
    write_exr(tmp_path / "f.exr", hdr(4, 4, seed=1), half=False)
    b = hdr(4, 4, seed=2)
    write_exr(tmp_path / "f.exr", b, half=False)
    np.testing.assert_array_equal(read_exr(tmp_path / "f.exr").rgb, b)
    assert leftovers(tmp_path) == ["f.exr"]


def test_is_complete_exr(tmp_path):
    good = tmp_path / "good.exr"
    write_exr(good, hdr(64, 64), half=False)
    assert is_complete_exr(good)
    data = good.read_bytes()
    for frac in (0.1, 0.5, 0.95):
        cut = tmp_path / f"cut{frac}.exr"
        cut.write_bytes(data[: int(len(data) * frac)])
        assert not is_complete_exr(cut)
        with pytest.raises(InputError) as e:
            read_exr(cut)
        assert str(cut) in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "empty.exr").write_bytes(b"")
    (tmp_path / "junk.exr").write_bytes(os.urandom(2000))
    oiio.ImageBuf(np.zeros((4, 4, 3), np.uint8)).write(str(tmp_path / "png.exr.png"))
    for p in ("empty.exr", "junk.exr", "png.exr.png", "missing.exr"):
        assert not is_complete_exr(tmp_path / p)
    assert not is_complete_exr(tmp_path)  # a folder


def test_read_missing_and_corrupt(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_exr(tmp_path / "nope.exr")
    (tmp_path / "junk.exr").write_bytes(b"\x76\x2f\x31\x01" + os.urandom(500))
    with pytest.raises(InputError, match="junk.exr"):
        read_exr(tmp_path / "junk.exr")
