"""From Nuke's scene-linear pixels back to the plate's code values, and the names the server takes.

Nuke works in scene-linear light: the Read that brought the plate in removed its transfer curve
(and, in an ACES project, converted Rec.709 primaries to ACEScg). The networks take the plate's
code values, so the node undoes that: working space -> linear Rec.709 (a 3x3 matrix for ACEScg),
clip to [0, 1] (an SDR plate holds nothing else), then the transfer the Read removed. The frame
goes to the server as code values in the colour space that transfer names, which the server's
OCIO turns into the network's sRGB code values exactly as ``hdr-video`` does for such a file.

=====================  ============================================  =========================
knob value             curve re-applied here (what the Read removed)  server input colour space
=====================  ============================================  =========================
sRGB                   IEC 61966-2-1 piecewise sRGB                   ``srgb``
Rec.709                BT.709 camera curve (Nuke's ``rec709``)        ``rec709`` (BT.1886, 2.4)
Rec.1886 (gamma 2.4)   pure power 1/2.4                               ``rec709``
gamma 2.2              pure power 1/2.2                               ``gamma22``
=====================  ============================================  =========================

``Rec.709`` re-applies the camera curve Nuke's nuke-default ``rec709`` inverts, then reads the
code values as BT.1886 video, as ``hdr-video`` reads a Rec.709-tagged clip (SDR video is
graded on BT.1886 displays). For an ungraded camera original use ``hdr-video --input-colorspace
camera-rec709`` instead.

The ACEScg -> Rec.709 matrix is computed here from the two sets of primaries and white points
with the Bradford chromatic adaptation (the convention of OCIO's ACES configs); the tests check it
against OCIO's own matrix.
"""

from __future__ import annotations

import numpy as np

#: Knob value -> (curve, the server's input colour space).
TRANSFERS = {
    "sRGB": ("srgb", "srgb"),
    "Rec.709": ("bt709", "rec709"),
    "Rec.1886 (gamma 2.4)": ("gamma2.4", "rec709"),
    "gamma 2.2": ("gamma2.2", "gamma22"),
}

#: Knob value -> the server's name of that scene-linear space.
WORKING_SPACES = {"linear Rec.709": "lin_rec709", "ACEScg": "acescg"}

#: Knob value -> the server's output colour space (``working space``: the one above).
OUTPUT_SPACES = {"working space": "", "ACEScg": "acescg", "linear Rec.709": "lin_rec709",
                 "linear Rec.2020": "lin_rec2020", "ACES2065-1": "aces"}

# CIE xy chromaticities: (red, green, blue), white
_PRIMARIES = {
    "rec709": (((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), (0.3127, 0.3290)),
    "ap1": (((0.713, 0.293), (0.165, 0.830), (0.128, 0.044)), (0.32168, 0.33767)),
}
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


class ColourSettingError(ValueError):
    """A knob value this module does not know (one line)."""


def _rgb_to_xyz(primaries, white) -> tuple[np.ndarray, np.ndarray]:
    xy = np.asarray(primaries, dtype=np.float64)
    xyz = np.stack([xy[:, 0] / xy[:, 1], np.ones(3), (1.0 - xy[:, 0] - xy[:, 1]) / xy[:, 1]])  # columns
    w = np.array([white[0] / white[1], 1.0, (1.0 - white[0] - white[1]) / white[1]])
    return xyz * np.linalg.solve(xyz, w), w


def rgb_matrix(src: str, dst: str) -> np.ndarray:
    """3x3 float64 matrix from linear RGB with ``src`` primaries to ``dst`` (``rec709``, ``ap1``),
    Bradford-adapted between their white points: ``dst_rgb = M @ src_rgb``."""
    m_src, w_src = _rgb_to_xyz(*_PRIMARIES[src])
    m_dst, w_dst = _rgb_to_xyz(*_PRIMARIES[dst])
    cone = np.diag((_BRADFORD @ w_dst) / (_BRADFORD @ w_src))
    cat = np.linalg.inv(_BRADFORD) @ cone @ _BRADFORD
    return np.linalg.inv(m_dst) @ cat @ m_src


def encode(linear: np.ndarray, curve: str) -> np.ndarray:
    """Linear light in [0, 1] -> code values with ``curve`` (``srgb``, ``bt709``, ``gamma2.4``,
    ``gamma2.2``), computed in float64."""
    v = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    if curve == "srgb":
        return np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(np.maximum(v, 0.0031308), 1 / 2.4) - 0.055)
    if curve == "bt709":  # ITU-R BT.709-6, 1.2: the camera's opto-electronic transfer
        return np.where(v < 0.018, 4.5 * v, 1.099 * np.power(np.maximum(v, 0.018), 0.45) - 0.099)
    if curve.startswith("gamma"):
        return np.power(v, 1.0 / float(curve[5:]))
    raise ColourSettingError(f"unknown transfer curve {curve!r}")


def transfer(name: str) -> tuple[str, str]:
    try:
        return TRANSFERS[name]
    except KeyError:
        raise ColourSettingError(f"input transfer {name!r} is not one of {', '.join(TRANSFERS)}") from None


def working_space(name: str) -> str:
    try:
        return WORKING_SPACES[name]
    except KeyError:
        raise ColourSettingError(f"working space {name!r} is not one of {', '.join(WORKING_SPACES)}") from None


def output_space(name: str, working: str) -> str:
    """The server's output colour space for the knob value ``name`` (``working space``: ``working``'s)."""
    try:
        return OUTPUT_SPACES[name] or working_space(working)
    except KeyError:
        raise ColourSettingError(f"output colour space {name!r} is not one of {', '.join(OUTPUT_SPACES)}") from None


def to_plate(rgb: np.ndarray, working: str, transfer_name: str) -> tuple[np.ndarray, str]:
    """Nuke's ``H x W x 3`` scene-linear pixels in ``working`` -> (the plate's code values, float32
    C-contiguous in [0, 1], the server's name of their colour space)."""
    curve, server_space = transfer(transfer_name)
    v = np.asarray(rgb, dtype=np.float64)
    if v.ndim != 3 or v.shape[2] != 3:
        raise ColourSettingError(f"expected H x W x 3 pixels, got shape {v.shape}")
    v = np.nan_to_num(v, nan=0.0, posinf=1.0, neginf=0.0)
    if working_space(working) == "acescg":
        v = v @ rgb_matrix("ap1", "rec709").T
    return np.ascontiguousarray(encode(v, curve), dtype=np.float32), server_space
