"""Unusual and hostile inputs of hdr-video / hdr-image / hdr-merge / hdrlift-make-sample.

Each case here once gave silently wrong output, a traceback or a misleading message (an
outside tester's report on 19a7a7d); each now gets its right outcome: the input's metadata
honoured or refused aloud, one line and the documented exit code, nothing half-written.
"""

from __future__ import annotations

import pathlib
import shutil
import struct
import subprocess
import sys
import zlib

import av
import numpy as np
import OpenImageIO as oiio
import pytest

import icc_writer as icc
from hdrlift.engine.cli import image_main, video_main
from hdrlift.engine.colour import ColourManager
from hdrlift.engine.io.exr import read_attributes, read_exr
from hdrlift.engine.io.video import VideoReader

from tests.conftest import REPO, console_script

P3_SPACE = "sRGB Encoded P3-D65"


def _err(capsys, prog="hdr-video") -> str:
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith(f"{prog}: error: "), err
    return err[0]


def _write(path: pathlib.Path, code: np.ndarray, bits: int = 8, icc_profile: bytes | None = None) -> pathlib.Path:
    h, w, c = code.shape
    fmt, top, dtype = (oiio.UINT8, 255, np.uint8) if bits == 8 else (oiio.UINT16, 65535, np.uint16)
    spec = oiio.ImageSpec(w, h, c, fmt)
    if c == 4:
        spec.attribute("oiio:UnassociatedAlpha", 1)  # store the colour as given (PNG alpha is straight)
    if icc_profile is not None:
        spec.attribute("ICCProfile", oiio.TypeDesc(f"uint8[{len(icc_profile)}]"),
                       np.frombuffer(icc_profile, np.uint8))
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec), out.geterror()
    assert out.write_image(np.ascontiguousarray(np.round(code * top).astype(dtype))), out.geterror()
    out.close()
    return path


# ------------------------------------------------------------------ colour: gamut, ICC profiles
def _wide_gamut_patches() -> np.ndarray:
    """Code values, none near clipping, most of them outside Rec.709 when they are P3 or BT.2020."""
    cols = np.array([[0.15, 0.80, 0.20], [0.85, 0.15, 0.10], [0.10, 0.30, 0.85], [0.5, 0.5, 0.5]], np.float32)
    return np.repeat(np.repeat(cols[None], 8, axis=0), 8, axis=1)  # 8 x 32 patches


def test_a_p3_still_keeps_its_gamut(tmp_path):
    code = _wide_gamut_patches()
    png = _write(tmp_path / "p3.png", code, bits=16)
    q = np.round(code * 65535) / 65535
    cm = ColourManager()
    assert (cm.converter(P3_SPACE, "lin_rec709")(q) < -0.01).any()  # outside Rec.709: clipping would show
    assert image_main([str(png), str(tmp_path / "o.exr"), "--input-colorspace", P3_SPACE, "--float", "-q"]) == 0
    got = read_exr(tmp_path / "o.exr").rgb
    want = cm.converter(P3_SPACE, "ACEScg")(q)  # OCIO's own conversion: nothing here was clipped
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)


def test_a_bt2020_clip_keeps_its_gamut(tmp_path):
    code = _wide_gamut_patches()
    clip = tmp_path / "bt2020.mp4"
    with av.open(str(clip), "w") as out:  # lossless RGB H.264 tagged BT.2020 primaries, BT.709 transfer
        s = out.add_stream("libx264rgb", rate=24, options={"qp": "0"})
        s.width, s.height, s.pix_fmt = code.shape[1], code.shape[0], "bgr24"
        s.codec_context.color_primaries, s.codec_context.color_trc = 9, 1
        for i in range(2):
            f = av.VideoFrame.from_ndarray(np.round(code * 255).astype(np.uint8), format="rgb24")
            f.pts = i
            for p in s.encode(f.reformat(format="bgr24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    config = str(REPO / "ocio" / "hdrlift.ocio")  # defines BT.1886 Rec.2020 (the studio config does not)
    with VideoReader(clip) as r:
        assert r.tags.primaries == "bt2020"
        decoded = next(iter(r.frames())).rgb
    assert video_main([str(clip), str(tmp_path / "o"), "--ocio-config", config, "--float", "-q"]) == 0
    got = read_exr(tmp_path / "o" / "bt2020.0001.exr").rgb
    cm = ColourManager(config)
    want = cm.converter("Gamma 2.4 Encoded Rec.2020", "ACEScg")(decoded)
    assert (cm.converter("Gamma 2.4 Encoded Rec.2020", "Linear Rec.709 (sRGB)")(decoded) < -0.01).any()
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)


def _still(tmp_path, name, profile=None) -> pathlib.Path:
    rng = np.random.default_rng(7)
    code = np.clip(rng.random((24, 32, 3)) * 1.1, 0, 1).astype(np.float32)
    return _write(tmp_path / name, code, icc_profile=profile)


@pytest.mark.parametrize("version4", [False, True])
def test_an_embedded_icc_profile_is_honoured(tmp_path, version4):
    plain = _still(tmp_path, "plain.png")
    tagged = _still(tmp_path, "p3.png", icc.profile(icc.P3, "srgb", "Display P3", version4=version4))
    adobe = _still(tmp_path, "adobe.tif", icc.profile(icc.ADOBE, 563 / 256, "Adobe RGB (1998)", version4=version4))
    runs = {"p3": (tagged, []), "p3_asked": (plain, ["--input-colorspace", P3_SPACE]), "srgb": (plain, []),
            "adobe": (adobe, []), "adobe_asked": (plain, ["--input-colorspace", "Gamma 2.2 Encoded AdobeRGB"])}
    got = {}
    for name, (src, args) in runs.items():
        out = tmp_path / f"{name}.exr"
        assert image_main([str(src), str(out), "--model", "inverse-crf", "--float", "-q", *args]) == 0
        got[name] = read_exr(out).rgb
    # the profile is read as if the user had named its colour space, and it matters
    assert np.array_equal(got["p3"], got["p3_asked"]) and not np.allclose(got["p3"], got["srgb"], atol=1e-3)
    assert np.array_equal(got["adobe"], got["adobe_asked"]) and not np.allclose(got["adobe"], got["srgb"], atol=1e-3)
    assert read_attributes(tmp_path / "p3.exr")["hdrlift:input_colorspace"] == P3_SPACE
    assert read_attributes(tmp_path / "adobe.exr")["hdrlift:input_colorspace"] == "Gamma 2.2 Encoded AdobeRGB"


def test_an_unknown_icc_profile_is_refused_not_ignored(tmp_path, capsys):
    odd = ((0.70, 0.28), (0.20, 0.75), (0.14, 0.05))  # matches no space hdrlift maps
    src = _still(tmp_path, "odd.png", icc.profile(odd, 1.0, "Scanner RGB v3"))
    assert image_main([str(src), str(tmp_path / "o.exr"), "-q"]) == 5
    line = _err(capsys, "hdr-image")
    assert "Scanner RGB v3" in line and "--input-colorspace" in line
    assert not (tmp_path / "o.exr").exists()
    # the user's word wins over the profile
    assert image_main([str(src), str(tmp_path / "o.exr"), "-q", "--input-colorspace", "srgb"]) == 0


# ------------------------------------------------------------------ video metadata
def _clip(path: pathlib.Path, n: int = 3, w: int = 64, h: int = 32, rotation: int = 0, interlaced: bool = False,
          codec: str = "libx264", pix_fmt: str = "yuv420p", alpha: np.ndarray | None = None):
    with av.open(str(path), "w") as out:
        opts = {"x264-params": "interlaced=1:tff=1"} if interlaced else {}
        s = out.add_stream(codec, rate=24, options=opts)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if rotation:
            s.set_display_rotation(rotation)
        for i in range(n):
            a = np.zeros((h, w, 3), np.uint8)
            a[:8, :8] = 250  # marks the coded top-left corner
            a[::2, 16:] = 200 if interlaced else 90  # field lines
            a[:, 20 + 4 * i:24 + 4 * i] = 255  # motion
            if alpha is not None:
                f = av.VideoFrame.from_ndarray(np.dstack([a, alpha]).astype(np.uint8), format="rgba")
            else:
                f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts = i
            for p in s.encode(f.reformat(format=pix_fmt)):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def test_rotation_is_applied_as_players_show_it(tmp_path, capsys):
    clip = _clip(tmp_path / "phone.mp4", rotation=90)
    assert video_main([str(clip), str(tmp_path / "up"), "--model", "inverse-crf", "--frames", "1", "-q"]) == 0
    up = read_exr(tmp_path / "up" / "phone.0001.exr").rgb
    assert up.shape == (64, 32, 3)  # upright: the display matrix turns the 64x32 picture a quarter
    assert up[-4:, :4].min() > 0.5 and up[:4, :4].max() < 0.1  # coded top-left shows bottom-left
    if shutil.which("ffmpeg"):  # the same orientation as FFmpeg's own autorotate
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-frames:v", "1", str(tmp_path / "ff.png")], check=True)
        ff = oiio.ImageBuf(str(tmp_path / "ff.png")).get_pixels(oiio.FLOAT)
        assert ff.shape[:2] == up.shape[:2] and np.array_equal(ff[..., 0] > 0.5, up[..., 0] > 0.5)
    capsys.readouterr()
    assert video_main([str(clip), str(tmp_path / "coded"), "--model", "inverse-crf", "--frames", "1", "-q",
                       "--no-autorotate"]) == 0
    assert "display matrix rotates it by 90" in capsys.readouterr().err
    assert read_exr(tmp_path / "coded" / "phone.0001.exr").rgb.shape == (32, 64, 3)


def test_interlaced_video_warns_or_is_deinterlaced(tmp_path, capsys):
    clip = _clip(tmp_path / "tv.mp4", n=4, h=48, interlaced=True)
    assert video_main([str(clip), str(tmp_path / "a"), "--model", "inverse-crf", "-q"]) == 0
    err = capsys.readouterr().err
    assert "hdr-video: warning:" in err and "interlaced" in err and "--deinterlace" in err
    assert video_main([str(clip), str(tmp_path / "b"), "--model", "inverse-crf", "-q", "--deinterlace"]) == 0
    assert "interlaced" not in capsys.readouterr().err
    a = read_exr(tmp_path / "a" / "tv.0002.exr").rgb
    b = read_exr(tmp_path / "b" / "tv.0002.exr").rgb
    comb = lambda x: np.abs(np.diff(x[:, 16:, 1], axis=0)).mean()  # noqa: E731 - line-to-line difference
    assert comb(b) < 0.5 * comb(a)  # yadif removed the field combing


def test_alpha_becomes_the_exr_alpha(tmp_path):
    rng = np.random.default_rng(3)
    rgb = np.clip(rng.random((20, 24, 3)) * 1.1, 0, 1)
    a = np.linspace(0, 1, 24)[None, :].repeat(20, axis=0)
    png = _write(tmp_path / "cut.png", np.dstack([rgb, a]), bits=16)
    opaque = _write(tmp_path / "opaque.png", rgb, bits=16)
    for src in (png, opaque):
        assert image_main([str(src), str(tmp_path / f"{src.stem}.exr"), "--float", "-q", "--mask-layer"]) == 0
    cut, solid = read_exr(tmp_path / "cut.exr"), read_exr(tmp_path / "opaque.exr")
    assert cut.channels == ["R", "G", "B", "A", "mask.Y"] and solid.channels == ["R", "G", "B", "mask.Y"]
    alpha = cut.pixels[..., 3]
    np.testing.assert_allclose(alpha, np.round(a * 65535) / 65535, atol=1e-6)  # as stored
    np.testing.assert_allclose(cut.rgb, solid.rgb * alpha[..., None], rtol=1e-6, atol=1e-7)  # associated colour


def test_prores_4444_alpha_is_kept(tmp_path):
    if "prores_ks" not in av.codecs_available:
        pytest.skip("this FFmpeg has no prores_ks encoder")
    alpha = np.tile(np.linspace(0, 255, 64).astype(np.uint8)[None, :], (32, 1))
    clip = _clip(tmp_path / "key.mov", n=2, codec="prores_ks", pix_fmt="yuva444p10le", alpha=alpha)
    assert video_main([str(clip), str(tmp_path / "o"), "--model", "inverse-crf", "--float", "-q"]) == 0
    img = read_exr(tmp_path / "o" / "key.0001.exr")
    assert img.channels[:4] == ["R", "G", "B", "A"]
    np.testing.assert_allclose(img.pixels[..., 3], alpha / 255.0, atol=1.5e-3)  # 8 -> 10-bit alpha, as stored


# ------------------------------------------------------------------ names, resume, one frame
def test_names_that_look_like_patterns_stay_literal(sample_clip, tmp_path):
    for name in ("take#1.mp4", "shot_%d.mp4"):
        src = tmp_path / name
        shutil.copy(sample_clip, src)
        assert video_main([str(src), str(tmp_path / "out"), "--model", "inverse-crf", "--frames", "1-2", "-q"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["shot_%d.0001.exr", "shot_%d.0002.exr", "take#1.0001.exr", "take#1.0002.exr"]


def test_resume_refuses_to_mix_models_or_colour_spaces(sample_clip, tmp_path, capsys):
    out = tmp_path / "o"
    assert video_main([str(sample_clip), str(out), "--model", "inverse-crf", "--frames", "1-3", "-q"]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    for extra, what in ((["--model", "landis"], "model inverse-crf (this run: landis)"),
                        (["--model", "inverse-crf", "--output-colorspace", "lin_rec709"], "colorspace ACEScg")):
        assert video_main([str(sample_clip), str(out), "--resume", "-q", *extra]) == 3
        line = _err(capsys)
        assert "frames 1-3" in line and what in line and "--overwrite" in line, line
        assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing touched
    assert video_main([str(sample_clip), str(out), "--resume", "-q", "--model", "inverse-crf"]) == 0
    assert len(list(out.iterdir())) == 12 and all(out.joinpath(n).stat().st_mtime_ns == t for n, t in before.items())


def test_hdr_image_takes_one_frame_of_a_video(sample_clip, tmp_path, capsys):
    assert image_main([str(sample_clip), str(tmp_path / "one.exr"), "-q"]) == 2
    line = _err(capsys, "hdr-image")
    assert "12 frames" in line and "--frame" in line and "--resume" not in line
    assert not list(tmp_path.glob("*.exr"))
    assert image_main([str(sample_clip), str(tmp_path / "one.exr"), "--frame", "5", "-q"]) == 0
    assert read_attributes(tmp_path / "one.exr")["hdrlift:source_frame"] == 5
    assert image_main([str(sample_clip), str(tmp_path / "one.exr"), "--frame", "5", "-q"]) == 3
    line = _err(capsys, "hdr-image")
    assert "--overwrite" in line and "--resume" not in line


# ------------------------------------------------------------------ odd ends
def test_cuda_on_a_cpu_build_is_one_line(tmp_path, capsys):
    src = _still(tmp_path, "s.png")
    assert image_main([str(src), str(tmp_path / "o.exr"), "--device", "cuda"]) == 4
    line = _err(capsys, "hdr-image")
    assert "CUDA" in line and "internal error" not in line


def _huge_png_header(path: pathlib.Path, w: int, h: int) -> pathlib.Path:
    """A PNG whose header declares w x h pixels, followed by almost no data: a reader that trusts
    it would allocate w * h * 3 floats before finding the data missing."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def _peak_run(*args) -> tuple[int, int, str]:
    code = ("import resource, sys\nfrom hdrlift.engine.cli import image_main\n"
            "rc = image_main(sys.argv[1:])\n"
            "print(rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)
    rc, peak_kib = (int(v) for v in r.stdout.split())
    return rc, peak_kib, r.stderr


def test_frames_above_the_limit_are_refused_before_decoding(tmp_path):
    src = _still(tmp_path, "s.png")  # 32 x 24 = 768 pixels
    rc, small_peak_kib, err = _peak_run(src, tmp_path / "o.exr", "--max-frame-pixels", "700")
    assert rc == 2 and err.count("\n") == 1
    assert "32x24" in err and "700-pixel frame limit" in err and "--max-frame-pixels 768" in err
    assert not (tmp_path / "o.exr").exists()
    # a 20000 x 20000 header with no picture behind it: one line, and no memory taken for it
    rc, peak_kib, err = _peak_run(_huge_png_header(tmp_path / "huge.png", 20000, 20000), tmp_path / "o.exr")
    assert rc == 2 and err.count("\n") == 1 and err.startswith("hdr-image: error:"), err
    # the same process refusing a 768-pixel frame is the baseline (libraries loaded, no frame); the 1.2 GB
    # of 8-bit pixels (let alone the 4.8 GB float frame) a decode would take must not appear above it
    assert peak_kib < small_peak_kib + 256 * 1024, (peak_kib, small_peak_kib)


def test_outputs_that_cannot_be_made_are_output_errors(sample_clip, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    src = _still(tmp_path, "s.png")
    assert image_main([str(src), str(tmp_path / "o.exr"), "-q", "--preview", str(blocker / "p.png")]) == 3
    assert "preview" in _err(capsys, "hdr-image")
    assert video_main([str(sample_clip), str(tmp_path / "one.exr"), "-q"]) == 3
    assert "names one file" in _err(capsys)
    assert not (tmp_path / "one.exr").exists()
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--resume", "--overwrite", "-q"]) == 2
    assert "exclude each other" in _err(capsys)


def test_sample_truth_and_merge_output_folders_are_made(tmp_path):
    exe = console_script("hdrlift-make-sample")
    truth = tmp_path / "not" / "yet"
    r = subprocess.run([exe, str(tmp_path / "s.mp4"), "--frames", "2", "--size", "32x24", "--truth", str(truth)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in truth.iterdir()) == ["truth.0001.exr", "truth.0002.exr"]
    from test_merge import write_bracket

    from hdrlift.engine import merge

    paths, _ = write_bracket(tmp_path, ext=".png", exif=False, shifts=((0, 0),) * 3, h=24, w=32)
    out = tmp_path / "new" / "folder" / "m.exr"
    assert merge.main([*map(str, paths), str(out), "--ev", "-2,0,2", "--no-align", "-q"]) == 0
    assert out.is_file()
