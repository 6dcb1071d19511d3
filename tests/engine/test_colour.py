"""Colour management: names, conversions checked against OCIO itself and against closed forms."""

from __future__ import annotations

import numpy as np
import PyOpenColorIO as ocio
import pytest

from hdrlift.engine.colour import (
    DEFAULT_CONFIG,
    NETWORK_INPUT_SPACE,
    NETWORK_OUTPUT_SPACE,
    ColourManager,
    colorspace_from_tags,
)
from hdrlift.engine.errors import ColourError
from hdrlift.engine.io.video import ColourTags

AP1 = (0.713, 0.293, 0.165, 0.830, 0.128, 0.044)
ACES_WHITE = (0.32168, 0.33767)
REC709 = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06)
D65 = (0.3127, 0.3290)


@pytest.fixture(scope="module")
def cm() -> ColourManager:
    return ColourManager(DEFAULT_CONFIG)


@pytest.fixture(scope="module")
def studio() -> ocio.Config:
    return ocio.Config.CreateFromFile("ocio://studio-config-latest")


def ocio_apply(config: ocio.Config, src: str, dst: str, rgb) -> np.ndarray:
    """Reference: a plain OCIO CPU processor with default settings, pixel by pixel."""
    cpu = config.getProcessor(src, dst).getDefaultCPUProcessor()
    return np.array([cpu.applyRGB([float(v) for v in px]) for px in np.asarray(rgb, np.float32).reshape(-1, 3)],
                    np.float64)


# -- closed forms -------------------------------------------------------------------------------

def npm(prim, white) -> np.ndarray:
    """RGB -> XYZ matrix from xy primaries and white (SMPTE RP 177)."""
    xy = np.array([*np.reshape(prim, (3, 2)), white], np.float64)
    xyz = np.stack([xy[:, 0] / xy[:, 1], np.ones(4), (1 - xy[:, 0] - xy[:, 1]) / xy[:, 1]])
    return xyz[:, :3] * np.linalg.solve(xyz[:, :3], xyz[:, 3])


def bradford(src_white, dst_white) -> np.ndarray:
    m = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    w = lambda xy: np.array([xy[0] / xy[1], 1.0, (1 - xy[0] - xy[1]) / xy[1]])  # noqa: E731
    gain = (m @ w(dst_white)) / (m @ w(src_white))
    return np.linalg.inv(m) @ np.diag(gain) @ m


def rec709_to_acescg_matrix() -> np.ndarray:
    return np.linalg.inv(npm(AP1, ACES_WHITE)) @ bradford(D65, ACES_WHITE) @ npm(REC709, D65)


def srgb_eotf(v):
    v = np.asarray(v, np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


# -- names --------------------------------------------------------------------------------------

@pytest.mark.parametrize("alias,name", [
    ("srgb", "sRGB Encoded Rec.709 (sRGB)"),
    ("rec709", "Gamma 2.4 Encoded Rec.709"),
    ("bt1886", "Gamma 2.4 Encoded Rec.709"),
    ("gamma22", "Gamma 2.2 Encoded Rec.709"),
    ("acescg", "ACEScg"),
    ("ACEScg", "ACEScg"),
    ("lin_rec709", "Linear Rec.709 (sRGB)"),
    ("Lin Rec709", "Linear Rec.709 (sRGB)"),
    ("lin_rec2020", "Linear Rec.2020"),
    ("aces", "ACES2065-1"),
    ("aces_interchange", "ACES2065-1"),  # a role
])
def test_resolve(cm, studio, alias, name):
    assert cm.resolve(alias) == name
    assert studio.getColorSpace(name) is not None  # a real name in the config


def test_network_domains_exist(cm):
    assert cm.resolve(NETWORK_INPUT_SPACE) == NETWORK_INPUT_SPACE
    assert cm.resolve(NETWORK_OUTPUT_SPACE) == NETWORK_OUTPUT_SPACE


@pytest.mark.parametrize("bad", ["ACEScgg", "no such space", ""])
def test_unknown_colour_space(cm, bad):
    with pytest.raises(ColourError) as e:
        cm.resolve(bad)
    msg = str(e.value)
    assert "\n" not in msg and ("unknown colour space" in msg or "empty" in msg)
    if bad == "ACEScgg":
        assert "did you mean: ACEScg" in msg
    with pytest.raises(ColourError):
        cm.converter(bad or " ", "acescg")


# -- conversions --------------------------------------------------------------------------------

def test_inverse_srgb_of_half(cm):
    out = cm.converter("srgb", "lin_rec709")(np.full((1, 1, 3), 0.5, np.float32))
    np.testing.assert_allclose(out, 0.21404114, rtol=1e-6)
    np.testing.assert_allclose(float(srgb_eotf(0.5)), 0.21404114, rtol=1e-7)


def test_rec709_to_acescg_matrix(cm, studio):
    conv = cm.converter("lin_rec709", "acescg")
    probe = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [0.18, 0.18, 0.18], [4.0, 0.5, 0.01]], np.float32)
    got = conv(probe)
    ref = ocio_apply(studio, "Linear Rec.709 (sRGB)", "ACEScg", probe)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    closed = probe.astype(np.float64) @ rec709_to_acescg_matrix().T
    np.testing.assert_allclose(got, closed, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[0], (0.6131, 0.0702, 0.0206), atol=1e-4)
    np.testing.assert_allclose(got[3], (1, 1, 1), atol=1e-5)  # white stays white (chromatic adaptation)


@pytest.mark.parametrize("src,dst", [
    ("srgb", "acescg"),
    ("rec709", "lin_rec709"),
    ("gamma22", "lin_rec709"),
    ("lin_rec709", "lin_rec2020"),
    ("acescg", "aces"),
    ("acescg", "srgb"),
])
def test_conversions_match_ocio(cm, studio, src, dst):
    rng = np.random.default_rng(0)
    rgb = rng.random((6, 7, 3)).astype(np.float32)
    rgb[0, 0] = (0, 0, 0)
    rgb[0, 1] = (1, 1, 1)
    keep = rgb.copy()
    got = cm.converter(src, dst)(rgb)
    np.testing.assert_array_equal(rgb, keep)  # argument untouched
    assert got.dtype == np.float32 and got.shape == rgb.shape and got.flags.c_contiguous
    ref = ocio_apply(studio, cm.resolve(src), cm.resolve(dst), rgb).reshape(rgb.shape)
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-6)


def test_transfer_closed_forms(cm):
    v = np.linspace(0, 1, 11, dtype=np.float32).reshape(1, 11, 1).repeat(3, axis=2)
    np.testing.assert_allclose(cm.converter("srgb", "lin_rec709")(v), srgb_eotf(v), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(cm.converter("bt1886", "lin_rec709")(v), v.astype(np.float64) ** 2.4, rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(cm.converter("gamma22", "lin_rec709")(v), v.astype(np.float64) ** 2.2, rtol=1e-5,
                               atol=1e-7)
    # sRGB white is linear 1.0 exactly enough for display white to stay white
    assert abs(float(cm.converter("srgb", "lin_rec709")(np.ones((1, 3), np.float32)).max()) - 1.0) < 1e-6


def test_identity_and_round_trip(cm):
    same = cm.converter("ACEScg", "acescg")
    assert same.is_identity
    a = np.random.default_rng(1).random((4, 4, 3)).astype(np.float32)
    out = same(a)
    np.testing.assert_array_equal(out, a)
    assert out is not a
    there = cm.converter("lin_rec709", "acescg")(a)
    back = cm.converter("acescg", "lin_rec709")(there)
    np.testing.assert_allclose(back, a, rtol=1e-5, atol=1e-6)


# -- chromaticities -----------------------------------------------------------------------------

def test_chromaticities(cm):
    aces = cm.chromaticities("acescg")
    np.testing.assert_allclose(aces, (*AP1, *ACES_WHITE), atol=1e-5)
    np.testing.assert_allclose(cm.chromaticities("lin_rec709"), (*REC709, *D65), atol=1e-5)
    with pytest.raises(ColourError, match="not scene-linear|not linear"):
        cm.chromaticities("srgb")


# -- video tags ---------------------------------------------------------------------------------

@pytest.mark.parametrize("prim,trc,alias", [
    ("bt709", "bt709", "bt1886"),
    ("bt709", "iec61966-2-1", "srgb"),
    (None, "iec61966-2-1", "srgb"),
    ("bt709", "gamma22", "gamma22"),
    (None, None, "bt1886"),
    ("smpte170m", "smpte170m", "bt1886"),
    ("bt709", "linear", "lin_rec709"),
])
def test_colorspace_from_tags(cm, prim, trc, alias):
    assert colorspace_from_tags(ColourTags(prim, trc, "bt709", "tv"), cm) == cm.resolve(alias)


def test_colorspace_from_tags_default_for_untagged(cm):
    assert colorspace_from_tags(ColourTags(), cm, default="srgb") == cm.resolve("srgb")


@pytest.mark.parametrize("trc,kind", [("smpte2084", "PQ"), ("arib-std-b67", "HLG")])
def test_hdr_transfers_refused(cm, trc, kind):
    with pytest.raises(ColourError) as e:
        colorspace_from_tags(ColourTags("bt2020", trc, "bt2020nc", "tv"), cm)
    msg = str(e.value)
    assert f"already HDR ({kind})" in msg and "--input-colorspace" in msg and "\n" not in msg


@pytest.mark.parametrize("prim,trc,word", [("bt709", "log100", "transfer"), ("film", "bt709", "primaries")])
def test_unsupported_tags(cm, prim, trc, word):
    with pytest.raises(ColourError, match=f"unsupported .*{word}"):
        colorspace_from_tags(ColourTags(prim, trc, None, None), cm)


# -- listing and configs ------------------------------------------------------------------------

def test_list_text(cm):
    text = cm.list_text()
    assert text.strip() and "ACEScg" in text
    assert "scene-linear:" in text and "hdrlift: acescg" in text


def test_config_from_file_and_env(tmp_path, monkeypatch, studio):
    path = tmp_path / "studio.ocio"
    path.write_text(ocio.Config.CreateFromBuiltinConfig("studio-config-latest").serialize())
    from_file = ColourManager(str(path))
    assert from_file.source == str(path)
    assert from_file.config_name == studio.getName()
    assert from_file.resolve("acescg") == "ACEScg"
    a = np.random.default_rng(2).random((3, 3)).astype(np.float32)
    np.testing.assert_allclose(from_file.converter("srgb", "acescg")(a),
                               ColourManager(DEFAULT_CONFIG).converter("srgb", "acescg")(a), rtol=1e-6, atol=1e-7)

    monkeypatch.setenv("OCIO", str(path))
    from_env = ColourManager()
    assert from_env.source == str(path)
    monkeypatch.setenv("OCIO", str(tmp_path / "missing.ocio"))
    with pytest.raises(ColourError, match=r"not found.*\(from \$OCIO\)"):
        ColourManager()
    monkeypatch.delenv("OCIO")
    assert ColourManager().source == DEFAULT_CONFIG


def test_bad_configs(tmp_path):
    with pytest.raises(ColourError, match="not found"):
        ColourManager(str(tmp_path / "nope.ocio"))
    with pytest.raises(ColourError, match="folder"):
        ColourManager(str(tmp_path))
    (tmp_path / "junk.ocio").write_text("this: is: not an ocio config\n")
    with pytest.raises(ColourError, match="cannot load OCIO config"):
        ColourManager(str(tmp_path / "junk.ocio"))
    with pytest.raises(ColourError, match="unknown built-in OCIO config"):
        ColourManager("ocio://no-such-config")
