"""HDR10 / HLG delivery: transfer functions against reference points, the BT.2390 roll-off, the
Y'CbCr signal, and real masters written with libx265 and read back with PyAV (and ffprobe when it
is installed): tags, side data, boxes, timing, audio and decoded code values.

The expected code values are computed here from the published constants (SMPTE ST 2084, BT.2100
HLG, BT.2087's Rec.709 -> Rec.2020 matrix, BT.2020's KR/KB and the narrow-range quantisation),
not with the module under test.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest

from hdrlift.engine import delivery as D
from hdrlift.engine.colour import ColourManager

W, H, N = 64, 48, 8
FPS = Fraction(24000, 1001)
TB = Fraction(1, 24000)

# ---- independent references ----------------------------------------------------------------------
ST2084 = dict(m1=0.1593017578125, m2=78.84375, c1=0.8359375, c2=18.8515625, c3=18.6875)
HLG_ABC = (0.17883277, 0.28466892, 0.55991073)
BT2087 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])


def ref_pq(nits):
    y = np.asarray(nits, np.float64) / 10000.0
    p = y ** ST2084["m1"]
    return ((ST2084["c1"] + ST2084["c2"] * p) / (1 + ST2084["c3"] * p)) ** ST2084["m2"]


def ref_hlg(e):
    a, b, c = HLG_ABC
    e = np.asarray(e, np.float64)
    return np.where(e <= 1 / 12, np.sqrt(3 * np.maximum(e, 0)), a * np.log(np.maximum(12 * e - b, 1e-9)) + c)


def ref_codes(rgb_signal):
    """Narrow-range 10-bit BT.2020 NCL (Y', Cb, Cr) of one R'G'B' signal."""
    r, g, b = rgb_signal
    y = 0.2627 * r + 0.6780 * g + 0.0593 * b
    return (round((219 * y + 16) * 4), round((224 * (b - y) / 1.8814 + 128) * 4),
            round((224 * (r - y) / 1.4746 + 128) * 4))


# ---- transfer functions --------------------------------------------------------------------------
def test_pq_reference_points_and_round_trip():
    assert D.pq_inverse_eotf(100.0) == pytest.approx(0.5081, abs=1e-4)
    assert D.pq_inverse_eotf(1000.0) == pytest.approx(0.7518, abs=1e-4)
    assert D.pq_inverse_eotf(10000.0) == pytest.approx(1.0, abs=1e-12)
    assert D.pq_inverse_eotf(0.0) < 1e-6
    nits = np.geomspace(0.001, 10000, 200)
    np.testing.assert_allclose(D.pq_inverse_eotf(nits), ref_pq(nits), rtol=0, atol=1e-12)
    np.testing.assert_allclose(D.pq_eotf(D.pq_inverse_eotf(nits)), nits, rtol=1e-9)
    # float32 frames stay float32, within 2e-5 (0.02 of a 10-bit code step)
    f32 = D.pq_inverse_eotf(nits.astype(np.float32))
    assert f32.dtype == np.float32 and np.abs(f32 - ref_pq(nits)).max() < 2e-5


def test_pq_matches_opencolorio_builtin():
    import PyOpenColorIO as ocio

    cpu = ocio.Config.CreateRaw().getProcessor(
        ocio.BuiltinTransform("CURVE - LINEAR_to_ST-2084")).getDefaultCPUProcessor()
    nits = np.array([[0.1, 1.0, 50.0], [203.0, 1000.0, 4000.0]], np.float32)
    ours = D.pq_inverse_eotf(nits.astype(np.float64))
    theirs = (nits / 100.0).copy()  # OCIO's linear is nits / 100
    cpu.applyRGB(theirs)
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


def test_hlg_reference_points():
    assert D.hlg_oetf(1 / 12) == pytest.approx(0.5, abs=1e-12)
    assert D.hlg_oetf(1.0) == pytest.approx(1.0, abs=1e-6)
    assert D.hlg_oetf(0.0) == 0.0
    e = np.linspace(0, 1, 101)
    np.testing.assert_allclose(D.hlg_oetf(e), ref_hlg(e), atol=1e-7)
    np.testing.assert_allclose(D.hlg_inverse_oetf(D.hlg_oetf(e)), e, atol=1e-12)
    assert D.hlg_system_gamma(1000) == pytest.approx(1.2)
    assert D.hlg_system_gamma(2000) == pytest.approx(1.2 + 0.42 * math.log10(2))
    # BT.2408: HDR reference white (203 cd/m^2 on the 1000 cd/m^2 reference display) is 75 % HLG
    white = D.hlg_oetf(D.hlg_inverse_ootf(np.array([203.0, 203.0, 203.0]), 1000.0))
    np.testing.assert_allclose(white, 0.75, atol=2e-3)
    # OOTF and inverse OOTF undo each other
    scene = np.array([[0.2, 0.5, 0.1], [0.9, 0.9, 0.9], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(D.hlg_inverse_ootf(D.hlg_ootf(scene, 1000), 1000), scene, atol=1e-9)


def test_hlg_display_light_matches_opencolorio_builtin():
    """Display light -> HLG (inverse OOTF of a 1000 cd/m^2 display, then OETF) against OCIO's own
    Rec.2100-HLG 1000-nit display transform, for coloured pixels."""
    import PyOpenColorIO as ocio

    cm = ColourManager()
    to_xyz = cm.converter(cm.resolve("lin_rec2020"), "CIE XYZ-D65 - Scene-referred")
    cpu = ocio.Config.CreateRaw().getProcessor(
        ocio.BuiltinTransform("DISPLAY - CIE-XYZ-D65_to_REC.2100-HLG-1000nit")).getDefaultCPUProcessor()
    nits = np.array([[203.0, 203.0, 203.0], [500.0, 120.0, 30.0], [40.0, 300.0, 90.0], [30.0, 30.0, 400.0]],
                    np.float32)
    theirs = to_xyz(nits / 100.0)
    cpu.applyRGB(theirs)
    ours = D.hlg_oetf(D.hlg_inverse_ootf(nits.astype(np.float64), 1000.0))
    np.testing.assert_allclose(ours, theirs, atol=2e-3)
    # light the reference display cannot show (scene light above 1) is clipped to the signal range
    assert D.hlg_oetf(D.hlg_inverse_ootf(np.array([5.0, 5.0, 900.0]), 1000.0))[2] == pytest.approx(1.0)


# ---- BT.2390 EETF --------------------------------------------------------------------------------
def test_eetf_identity_below_knee_monotonic_and_hits_peak():
    peak = 1000.0
    max_lum = ref_pq(peak)
    ks = 1.5 * max_lum - 0.5
    knee_nits = float(D.pq_eotf(ks))
    assert 300 < knee_nits < 320  # BT.2390's knee for a 1000 cd/m^2 target from the 10000 range
    below = np.geomspace(0.01, knee_nits * 0.999, 100)
    np.testing.assert_allclose(D.bt2390_eetf(below, peak), below, rtol=1e-9)
    x = np.geomspace(0.01, 10000, 4000)
    y = D.bt2390_eetf(x, peak)
    assert np.all(np.diff(y) >= -1e-9) and y.max() <= peak + 1e-6
    assert D.bt2390_eetf(10000.0, peak) == pytest.approx(peak, rel=1e-9)
    assert D.bt2390_eetf(1e6, peak) == pytest.approx(peak, rel=1e-9)  # above the source range: clipped
    # C1 at the knee: slope 1 in PQ space on both sides
    e = 1e-4
    lo = (ref_pq(D.bt2390_eetf(D.pq_eotf(ks - e), peak)) - (ks - e))
    hi = (ref_pq(D.bt2390_eetf(D.pq_eotf(ks + e), peak)) - (ks + e))
    assert abs(lo) < 1e-9 and abs(hi) < 1e-6
    # other targets and source ranges
    assert D.bt2390_eetf(4000.0, 600.0, source_peak=4000.0) == pytest.approx(600.0, rel=1e-9)
    np.testing.assert_allclose(D.bt2390_eetf(x, 10000.0), x, rtol=1e-9)  # target = source: identity
    lifted = D.bt2390_eetf(np.array([0.0]), 1000.0, target_black=0.05)
    assert lifted[0] == pytest.approx(0.05, rel=1e-6)  # black lifted to the target black


def test_display_mapping_white_primaries_and_rolloff():
    m = D.DisplayMapping("pq", 1000.0)
    frame = np.zeros((2, 4, 3), np.float32)
    frame[0, 0] = 1.0
    frame[0, 1] = (1.0, 0.0, 0.0)
    frame[0, 2] = 0.18
    frame[0, 3] = 50.0
    nits = m.display_nits(frame)
    np.testing.assert_allclose(nits[0, 0], 203.0, rtol=1e-5)
    np.testing.assert_allclose(nits[0, 1], 203.0 * BT2087[:, 0], rtol=2e-3)  # OCIO's primaries = BT.2087
    sig = m.signal(frame)
    np.testing.assert_allclose(sig[0, 0], ref_pq(203.0), atol=2e-5)
    np.testing.assert_allclose(sig[0, 2], ref_pq(0.18 * 203.0), atol=2e-5)
    assert D.pq_eotf(sig[0, 3]).max() < 1000.0  # 10150 cd/m^2 rolled off below the peak
    hlg = D.DisplayMapping("hlg", 1000.0).signal(frame)
    np.testing.assert_allclose(hlg[0, 0], 0.75, atol=2e-3)


def test_ycbcr_planes_of_flat_colours():
    colours = [(1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0.6, 0.3, 0.1), (0.1, 0.2, 0.7)]
    for c in colours:
        sig = np.broadcast_to(np.array(c, np.float32), (4, 6, 3))
        y, cb, cr = D.ycbcr420_from_rgb(sig)
        assert y.shape == (4, 6) and cb.shape == (2, 3) and y.dtype == np.uint16
        ey, ecb, ecr = ref_codes(c)
        assert np.all(y == ey) and np.all(cb == ecb) and np.all(cr == ecr)
    assert ref_codes((1, 1, 1)) == (940, 512, 512) and ref_codes((0, 0, 0)) == (64, 512, 512)
    with pytest.raises(D.DeliveryError, match="even"):
        D.ycbcr420_from_rgb(np.zeros((3, 4, 3)))


def test_chroma_siting_is_mpeg_left():
    """Chroma samples sit on even columns with a [1 2 1]/4 filter: a red column (Cr = 0.5) at
    x = 2 gives half its Cr to the sample at x = 2; at x = 3 a quarter to those at x = 2 and 4."""
    sig = np.zeros((2, 8, 3))
    sig[:, 2, 0] = 1.0
    assert D.ycbcr420_from_rgb(sig)[2][0].tolist() == [512, 512 + 224, 512, 512]
    sig = np.roll(sig, 1, axis=1)
    assert D.ycbcr420_from_rgb(sig)[2][0].tolist() == [512, 512 + 112, 512 + 112, 512]


def test_light_levels_follow_cta_861_3():
    sig = np.zeros((4, 4, 3), np.float32)
    sig[:2, :, 1] = ref_pq(1000.0 * 0.99)  # half the frame green at ~990 cd/m^2
    lv = D.LightLevels()
    lv.add(sig)
    lv.add(np.zeros_like(sig))
    assert 985 <= lv.max_cll <= 995
    assert 490 <= lv.max_fall <= 500
    assert lv.frames == 2


def test_mastering_display_p3_d65_from_ocio():
    md = D.MasteringDisplay.from_colour_space("Linear P3-D65", 1000.0)
    assert md.x265() == "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
    bt = D.MasteringDisplay.from_colour_space("Linear Rec.2020", 4000.0)
    assert bt.x265() == "G(8500,39850)B(6550,2300)R(35400,14600)WP(15635,16450)L(40000000,1)"


# ---- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(bit_depth=8), "8-bit HDR10"),
    (dict(bit_depth=8, transfer="hlg"), "8-bit HLG"),
    (dict(peak_nits=50), "outside the range"),
    (dict(peak_nits=20000), "outside the range"),
    (dict(peak_nits=float("nan")), "number"),
    (dict(peak_nits=4000, transfer="hlg"), "outside the range"),
    (dict(transfer="sdr"), "unknown HDR transfer"),
    (dict(width=63), "even"),
    (dict(x265_params={"colorprim": "bt709"}), "set by the writer"),
    (dict(mastering_display="dci"), "unknown mastering display"),
    (dict(crf=80), "crf"),
])
def test_impossible_masters_are_refused_in_one_line(tmp_path, kwargs, match):
    args = dict(fps=24, width=W, height=H)
    args.update(kwargs)
    with pytest.raises(D.DeliveryError, match=match) as exc:
        D.HdrMasterWriter(tmp_path / "m.mp4", **args)
    assert "\n" not in str(exc.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["m.mkv", "m.avi", "m"])
def test_containers_without_hvc1_are_refused(tmp_path, name):
    with pytest.raises(D.DeliveryError, match=r"\.mp4, \.m4v or \.mov"):
        D.HdrMasterWriter(tmp_path / name, fps=24, width=W, height=H)


def test_audio_that_the_container_cannot_hold_is_refused_before_any_frame(tmp_path):
    src = tmp_path / "pcm.mov"  # G.711 mu-law: QuickTime holds it, MP4 does not
    with av.open(str(src), "w") as c:
        a = c.add_stream("pcm_mulaw", rate=8000)
        a.layout = "mono"
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.int16), format="s16", layout="mono")
        f.sample_rate, f.pts = 8000, 0
        for p in a.encode(f):
            c.mux(p)
        for p in a.encode():
            c.mux(p)
    with pytest.raises(D.DeliveryError, match="pcm_mulaw audio cannot be copied into .mp4"):
        D.HdrMasterWriter(tmp_path / "m.mp4", fps=24, width=W, height=H, audio_from=src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pcm.mov"]


# ---- real masters --------------------------------------------------------------------------------
# 16 x 16 patches (whole chroma blocks, so the interior is flat after 4:2:0) of known scene light.
PATCHES = {  # (row, col) of the top-left corner -> scene-linear Rec.709
    (0, 0): (1.0, 1.0, 1.0),  # SDR white -> 203 cd/m^2
    (0, 16): (0.18, 0.18, 0.18),
    (0, 32): (0.0, 0.0, 0.0),
    (0, 48): (100.0, 100.0, 100.0),  # 20300 cd/m^2: clipped to 10000, rolled off to the peak
    (16, 0): (1.0, 0.0, 0.0),  # Rec.709 red
    (16, 16): (0.2, 0.5, 0.1),
    (32, 0): (0.5, 0.5, 0.5),
}


def picture() -> np.ndarray:
    img = np.full((H, W, 3), 0.05, np.float32)
    for (r, c), v in PATCHES.items():
        img[r:r + 16, c:c + 16] = v
    return img


def expected_signal(v, transfer):
    """R'G'B' of a patch from the standards' constants (below the roll-off knee, or the peak)."""
    nits = 203.0 * BT2087 @ np.asarray(v, np.float64)
    if transfer == "pq":
        if nits.max() > 10000:
            return ref_pq(np.full(3, 1000.0))
        return ref_pq(nits)
    if nits.max() > 1000:
        return np.ones(3)
    fd = nits / 1000.0
    yd = 0.2627 * fd[0] + 0.6780 * fd[1] + 0.0593 * fd[2]
    scene = fd * yd ** ((1 - 1.2) / 1.2) if yd > 0 else fd
    return ref_hlg(scene)


def make_source(path):
    """64x48 H.264 at 23.976 fps (time base 1/24000) with an AAC track."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.codec_context.time_base = TB
        a = c.add_stream("aac", rate=48000)
        a.layout = "stereo"
        for i in range(N):
            f = av.VideoFrame.from_ndarray(np.full((H, W, 3), 20 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = i * 1001, TB
            for p in v.encode(f):
                c.mux(p)
        t = np.arange(1024 * 8) / 48000.0
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for k in range(8):
            af = av.AudioFrame.from_ndarray(np.stack([tone[k * 1024:(k + 1) * 1024]] * 2), format="fltp",
                                            layout="stereo")
            af.sample_rate, af.pts = 48000, k * 1024
            for p in a.encode(af):
                c.mux(p)
        for s in (v, a):
            for p in s.encode():
                c.mux(p)
    return path


@pytest.fixture(scope="module")
def masters(tmp_path_factory):
    d = tmp_path_factory.mktemp("masters")
    src = make_source(d / "src.mp4")
    with av.open(str(src)) as c:
        vs = c.streams.video[0]
        pts = sorted(int(p.pts) for p in c.demux(vs) if p.size)
        tb = vs.time_base
    out = {"src": src, "pts": pts, "tb": tb}
    img = picture()
    for transfer in ("pq", "hlg"):
        path = d / f"master_{transfer}.mp4"
        with D.HdrMasterWriter(path, transfer=transfer, fps=FPS, time_base=tb, width=W, height=H,
                               audio_from=src, preset="ultrafast", crf=4) as w:
            for p in pts:
                w.write(img, pts=p)
        out[transfer] = path
        out[transfer + "_levels"] = (w.max_cll, w.max_fall)
    out["dir"] = d
    return out


def read_back(path):
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        info = {"codec": vs.codec_context.name, "tag": vs.codec_tag, "rate": vs.average_rate,
                "cc": vs.codec_context, "audio": len(c.streams.audio)}
        info["tags"] = (vs.codec_context.color_primaries, vs.codec_context.color_trc,
                        vs.codec_context.colorspace, vs.codec_context.color_range)
        frames = []
        for f in c.decode(video=0):
            planes = [np.frombuffer(p, np.uint16).reshape(p.height, p.line_size // 2)[:, :p.width].copy()
                      for p in f.planes]
            side = {sd.type.name: bytes(sd) for sd in f.side_data}
            frames.append({"time": float(f.pts * f.time_base), "fmt": f.format.name, "planes": planes,
                           "side": side, "tags": (f.color_primaries, f.color_trc, f.colorspace, f.color_range)})
        info["frames"] = frames
    return info


def audio_packets(path):
    with av.open(str(path)) as c:
        return [(bytes(p), p.pts * p.time_base) for p in c.demux(c.streams.audio[0]) if p.size]


def test_pq_master_tags_timing_and_audio(masters):
    info = read_back(masters["pq"])
    assert info["codec"] == "hevc" and info["tag"] == "hvc1"
    assert info["tags"] == (9, 16, 9, 1)  # bt2020, smpte2084, bt2020nc, tv
    assert info["rate"] == FPS
    assert len(info["frames"]) == N
    assert all(f["fmt"] == "yuv420p10le" and f["tags"] == (9, 16, 9, 1) for f in info["frames"])
    want = [float(p * masters["tb"]) for p in masters["pts"]]
    got = [f["time"] for f in info["frames"]]
    assert got == pytest.approx(want, abs=1e-6)
    assert info["audio"] == 1
    assert audio_packets(masters["pq"]) == audio_packets(masters["src"])


def test_pq_master_side_data_and_boxes(masters):
    max_cll, max_fall = masters["pq_levels"]
    # the 100.0 patch is rolled off to the top code below 1000 cd/m^2; the frame average is the
    # patches' areas times their light, computed here from the reference constants
    assert 990 <= max_cll <= 1000
    light = np.full((H, W), 0.05 * 203.0)
    for (r, c), v in PATCHES.items():
        light[r:r + 16, c:c + 16] = 1000.0 if max(v) > 10 else (203.0 * BT2087 @ np.asarray(v)).max()
    assert abs(max_fall - light.mean()) <= 3
    first = read_back(masters["pq"])["frames"][0]["side"]
    md = struct.unpack("<20i", first["MASTERING_DISPLAY_METADATA"][:80])
    xy = [md[i] / md[i + 1] for i in range(0, 16, 2)]
    assert xy == pytest.approx([0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.3127, 0.3290], abs=1e-4)
    assert md[16] / md[17] == pytest.approx(0.0001) and md[18] / md[19] == pytest.approx(1000.0)
    assert struct.unpack("<2I", first["CONTENT_LIGHT_LEVEL"]) == (max_cll, max_fall)
    # mdcv / clli boxes of the hvc1 sample entry, found with a small parser of our own
    entry = sample_entry(masters["pq"].read_bytes())
    assert entry["type"] == b"hvc1"
    assert struct.unpack(">8H2I", entry[b"mdcv"]) == (13250, 34500, 7500, 3000, 34000, 16000, 15635, 16450,
                                                      10000000, 1)
    assert struct.unpack(">2H", entry[b"clli"]) == (max_cll, max_fall)
    assert b"colr" in entry


def sample_entry(data):
    def boxes(b):
        i = 0
        while i + 8 <= len(b):
            size, kind = struct.unpack(">I4s", b[i:i + 8])
            yield kind, b[i + 8:i + size]
            i += size

    def find(b, path):
        for kind, body in boxes(b):
            if kind == path[0]:
                if len(path) == 1:
                    return body
                found = find(body, path[1:])
                if found is not None:
                    return found
        return None

    stsd = find(data, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"])
    entry_type = stsd[12:16]
    entry = {"type": entry_type}
    for kind, body in boxes(stsd[8 + 8 + 78:]):
        entry[kind] = body
    return entry


@pytest.mark.parametrize("transfer", ["pq", "hlg"])
def test_decoded_code_values_match_the_standards(masters, transfer):
    frames = read_back(masters[transfer])["frames"]
    for f in (frames[0], frames[-1]):
        y, cb, cr = f["planes"]
        for (r, c), v in PATCHES.items():
            ey, ecb, ecr = ref_codes(expected_signal(v, transfer))
            if transfer == "pq" and max(v) > 10:  # the top PQ code at or below 1000 cd/m^2
                ey = math.floor(876 * ref_pq(1000.0) + 64)
            got_y = y[r + 4:r + 12, c + 4:c + 12]
            got_cb = cb[r // 2 + 2:r // 2 + 6, c // 2 + 2:c // 2 + 6]
            got_cr = cr[r // 2 + 2:r // 2 + 6, c // 2 + 2:c // 2 + 6]
            assert np.abs(got_y.astype(int) - ey).max() <= 2, (transfer, v, got_y.min(), got_y.max(), ey)
            assert np.abs(got_cb.astype(int) - ecb).max() <= 2, (transfer, v, ecb)
            assert np.abs(got_cr.astype(int) - ecr).max() <= 2, (transfer, v, ecr)
    if transfer == "hlg":
        assert abs(int(np.median(frames[0]["planes"][0][4:12, 4:12])) - 721) <= 1  # BT.2408: 75 % HLG


def test_hlg_master_tags_without_hdr10_metadata(masters):
    info = read_back(masters["hlg"])
    assert info["codec"] == "hevc" and info["tag"] == "hvc1"
    assert info["tags"] == (9, 18, 9, 1)  # arib-std-b67
    assert masters["hlg_levels"] == (None, None)
    side = info["frames"][0]["side"]
    assert "MASTERING_DISPLAY_METADATA" not in side and "CONTENT_LIGHT_LEVEL" not in side
    assert audio_packets(masters["hlg"]) == audio_packets(masters["src"])
    assert [f["time"] for f in info["frames"]] == pytest.approx(
        [float(p * masters["tb"]) for p in masters["pts"]], abs=1e-6)


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe (FFmpeg) is not installed")
def test_ffprobe_reads_the_same_metadata(masters):
    def probe(*args):
        out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", *args], capture_output=True, text=True,
                             check=True, timeout=60)
        return json.loads(out.stdout)

    pq = probe("-show_streams", "-select_streams", "v:0", str(masters["pq"]))["streams"][0]
    assert (pq["codec_name"], pq["codec_tag_string"], pq["pix_fmt"]) == ("hevc", "hvc1", "yuv420p10le")
    assert (pq["color_primaries"], pq["color_transfer"], pq["color_space"], pq["color_range"]) == (
        "bt2020", "smpte2084", "bt2020nc", "tv")
    kinds = {sd["side_data_type"]: sd for sd in pq.get("side_data_list", [])}
    assert kinds["Content light level metadata"]["max_content"] == masters["pq_levels"][0]
    assert kinds["Mastering display metadata"]["max_luminance"] == "10000000/10000"
    frame = probe("-show_frames", "-read_intervals", "%+#1", "-select_streams", "v:0",
                  str(masters["pq"]))["frames"][0]
    fk = {sd["side_data_type"]: sd for sd in frame.get("side_data_list", [])}
    assert fk["Content light level metadata"]["max_average"] == masters["pq_levels"][1]
    assert fk["Mastering display metadata"]["red_x"] == "34000/50000"
    hlg = probe("-show_streams", "-select_streams", "v:0", str(masters["hlg"]))["streams"][0]
    assert hlg["color_transfer"] == "arib-std-b67"
    audio = probe("-show_streams", "-select_streams", "a:0", str(masters["pq"]))["streams"][0]
    assert audio["codec_name"] == "aac"


# ---- atomic output -------------------------------------------------------------------------------
def test_error_mid_write_leaves_nothing(tmp_path):
    target = tmp_path / "m.mp4"
    with pytest.raises(KeyboardInterrupt):
        with D.HdrMasterWriter(target, fps=24, width=W, height=H, preset="ultrafast") as w:
            w.write(picture())
            assert any(p.name.startswith(".m.mp4") for p in tmp_path.iterdir())  # temporary + spool
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(D.DeliveryError, match="no frames"):
        with D.HdrMasterWriter(target, transfer="hlg", fps=24, width=W, height=H):
            pass
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_and_timestamps_are_refused(tmp_path):
    with D.HdrMasterWriter(tmp_path / "m.mov", transfer="hlg", fps=25, width=W, height=H,
                           preset="ultrafast") as w:
        with pytest.raises(D.DeliveryError, match="frame is"):
            w.write(np.zeros((H, W + 2, 3), np.float32))
        with pytest.raises(D.DeliveryError, match="finite"):
            w.write(np.full((H, W, 3), np.nan, np.float32))
        w.write(picture(), pts=5)
        with pytest.raises(D.DeliveryError, match="does not follow"):
            w.write(picture(), pts=5)
        w.write(picture())  # None: one frame later
    with av.open(str(tmp_path / "m.mov")) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
        assert c.streams.video[0].codec_tag == "hvc1" and len(c.streams.audio) == 0
    assert times == pytest.approx([0.2, 0.24])


def test_hdr_video_deliver_writes_the_master(masters, tmp_path, capsys):
    """``hdr-video --deliver``: the file loop's frames into an HDR10 master, with the source's
    time base, timestamps and audio; HLG likewise; EXR options and bad peaks refused in one line."""
    from hdrlift.engine.cli import video_main

    src = masters["src"]
    out = tmp_path / "master.mp4"
    assert video_main([str(src), str(out), "--deliver", "hdr10", "--preset", "ultrafast", "-q"]) == 0
    info = read_back(out)
    assert info["codec"] == "hevc" and info["tag"] == "hvc1" and info["tags"] == (9, 16, 9, 1)
    assert [f["time"] for f in info["frames"]] == pytest.approx([p * masters["tb"] for p in masters["pts"]], abs=1e-6)
    assert info["audio"] == 1 and audio_packets(out) == audio_packets(src)  # copied, not re-encoded
    sides = info["frames"][0]["side"]
    assert "MASTERING_DISPLAY_METADATA" in sides and "CONTENT_LIGHT_LEVEL" in sides
    hlg = tmp_path / "hlg.mov"
    assert video_main([str(src), str(hlg), "--deliver", "hlg", "--preset", "ultrafast", "-q", "--frames", "2-5"]) == 0
    assert "no audio" in capsys.readouterr().err  # a frame range would put the sound out of step
    info = read_back(hlg)
    assert info["tags"][:2] == (9, 18) and len(info["frames"]) == 4 and info["audio"] == 0
    for extra, code, words in ((["--resume"], 2, "EXR options"), (["--peak-nits", "50"], 3, "peak"),
                               (["--mask-layer"], 2, "EXR options")):
        assert video_main([str(src), str(tmp_path / "bad.mp4"), "--deliver", "hdr10", "-q", *extra]) == code
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert video_main([str(src), str(tmp_path / "bad.mkv"), "--deliver", "hdr10", "-q"]) == 3
    assert not list(tmp_path.glob("bad*")) and not list(tmp_path.glob(".*"))  # nothing half-written


@pytest.mark.parametrize("transfer", ["pq", "hlg"])
@pytest.mark.parametrize("frames", [1, 2])
def test_masters_shorter_than_the_encoder_delay(tmp_path, transfer, frames):
    """x265 gives the first packet of a 1- or 2-frame clip a garbage DTS; the writer repairs it."""
    out = tmp_path / "short.mov"
    with D.HdrMasterWriter(out, transfer=transfer, fps=25, width=W, height=H, preset="ultrafast") as w:
        for k in range(frames):
            w.write(picture(), pts=5 + k)
    with av.open(str(out)) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert times == pytest.approx([0.2 + 0.04 * k for k in range(frames)])
