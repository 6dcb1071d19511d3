"""Embedded ICC profiles of stills: which colour space the pixels are in.

A JPEG, PNG or TIFF may carry an ICC profile (OpenImageIO reports it as the ``ICCProfile``
attribute). hdrlift honours it or refuses aloud, never drops it: :func:`identify` reads the
profile's colorants, white and tone curves (written from the ICC specification, ICC.1:2010 /
ICC.1:2001-04: the header, the tag table, and the ``XYZ``, ``curv``, ``para``, ``sf32``, ``desc``
and ``mluc`` tag types) and names the OCIO colour space they describe when it is one hdrlift
knows: sRGB, Display P3 (sRGB curve, P3-D65 primaries), Adobe RGB (1998), gamma 2.2 or 1.8
Rec.709, sRGB-encoded AP1. Anything else is reported with the profile's own description, so
the user can say what to do with ``--input-colorspace``.

Colorants are stored adapted to the PCS white (D50). They are brought back to the profile's
own white with the inverse of its ``chad`` matrix when it has one (v4), else with the Bradford
transform from its media white (v2 profiles that carry their D65 white in ``wtpt``); their
chromaticities are then compared with the standards' within 0.005.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np

_D50 = np.array([0.9642, 1.0, 0.8249])
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])

# CIE 1931 xy of red, green, blue and white of the RGB spaces hdrlift maps profiles to
PRIMARIES = {
    "rec709": ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060), (0.3127, 0.3290)),   # ITU-R BT.709 / sRGB
    "p3d65": ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060), (0.3127, 0.3290)),    # SMPTE EG 432-1
    "adobergb": ((0.640, 0.330), (0.210, 0.710), (0.150, 0.060), (0.3127, 0.3290)),  # Adobe RGB (1998)
    "rec2020": ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046), (0.3127, 0.3290)),  # ITU-R BT.2020
    "ap1": ((0.713, 0.293), (0.165, 0.830), (0.128, 0.044), (0.32168, 0.33767)),    # SMPTE ST 2065-1
}
# (primaries, curve) -> hdrlift's colour space id (hdrlift.engine.colour's table)
SPACES = {
    ("rec709", "srgb"): "srgb_rec709",
    ("p3d65", "srgb"): "srgb_p3d65",
    ("adobergb", "gamma2.2"): "g22_adobergb",
    ("rec709", "gamma2.2"): "g22_rec709",
    ("rec709", "gamma1.8"): "g18_rec709",
    ("rec709", "gamma2.4"): "g24_rec709",
    ("ap1", "srgb"): "srgb_ap1",
}


class IccError(ValueError):
    """A profile that does not parse (one line)."""


@dataclasses.dataclass
class Profile:
    description: str
    primaries: str | None  # a key of PRIMARIES, or None when they match none
    curve: str | None  # "srgb", "gamma2.2", "gamma1.8", "gamma2.4", or None
    space_id: str | None  # what hdrlift maps it to, or None
    source: str = ""  # the file that carries it

    def summary(self) -> str:
        return (f"ICC profile {self.description!r} ({self.primaries or 'unknown primaries'}, "
                f"{self.curve or 'unknown tone curve'})")


def _s15(b: bytes) -> float:
    return struct.unpack(">i", b)[0] / 65536.0


def _tags(data: bytes) -> dict[str, bytes]:
    if len(data) < 132 or data[36:40] != b"acsp":
        raise IccError("not an ICC profile (no 'acsp' signature)")
    count = struct.unpack(">I", data[128:132])[0]
    if count > 1000 or 132 + 12 * count > len(data):
        raise IccError("ICC tag table is damaged")
    out = {}
    for i in range(count):
        sig, off, size = struct.unpack(">4sII", data[132 + 12 * i:144 + 12 * i])
        if off + size > len(data) or size < 8:
            raise IccError(f"ICC tag {sig!r} lies outside the profile")
        out[sig.decode("latin-1")] = data[off:off + size]
    return out


def _xyz(tag: bytes) -> np.ndarray:
    if tag[:4] != b"XYZ " or len(tag) < 20:
        raise IccError("ICC colorant is not an XYZ tag")
    return np.array([_s15(tag[8 + 4 * i:12 + 4 * i]) for i in range(3)])


def _curve(tag: bytes):
    """The tone curve as a function of code value (0..1) -> linear, or None."""
    kind = tag[:4]
    if kind == b"curv":
        n = struct.unpack(">I", tag[8:12])[0]
        if n == 0:
            return lambda x: x
        if n == 1:
            g = struct.unpack(">H", tag[12:14])[0] / 256.0
            return lambda x: x ** g
        if len(tag) < 12 + 2 * n:
            raise IccError("ICC curve table is truncated")
        table = np.frombuffer(tag[12:12 + 2 * n], ">u2").astype(np.float64) / 65535.0
        grid = np.linspace(0.0, 1.0, n)
        return lambda x: np.interp(x, grid, table)
    if kind == b"para":
        ftype = struct.unpack(">H", tag[8:10])[0]
        nparams = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(ftype)
        if nparams is None or len(tag) < 12 + 4 * nparams:
            raise IccError("ICC parametric curve is of an unknown type")
        p = [_s15(tag[12 + 4 * i:16 + 4 * i]) for i in range(nparams)] + [0.0] * 7
        g, a, b, c, d, e, f = p[:7]
        if ftype == 0:
            return lambda x: x ** g
        if ftype == 1:
            return lambda x: np.where(x >= -b / a, np.maximum(a * x + b, 0) ** g, 0.0)
        if ftype == 2:
            return lambda x: np.where(x >= -b / a, np.maximum(a * x + b, 0) ** g + c, c)
        if ftype == 3:
            return lambda x: np.where(x >= d, np.maximum(a * x + b, 0) ** g, c * x)
        return lambda x: np.where(x >= d, np.maximum(a * x + b, 0) ** g + e, c * x + f)
    return None


def _srgb(x):
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


_CURVES = {"srgb": _srgb, "gamma2.2": lambda x: x ** 2.2, "gamma1.8": lambda x: x ** 1.8,
           "gamma2.4": lambda x: x ** 2.4}


def _description(tags: dict[str, bytes]) -> str:
    tag = tags.get("desc", b"")
    try:
        if tag[:4] == b"desc":
            n = struct.unpack(">I", tag[8:12])[0]
            return tag[12:12 + n].split(b"\0")[0].decode("latin-1").strip() or "unnamed"
        if tag[:4] == b"mluc":
            count, size = struct.unpack(">II", tag[8:16])
            if count and size >= 12:
                length, offset = struct.unpack(">II", tag[20:28])
                return tag[offset:offset + length].decode("utf-16-be", "replace").strip("\0 ") or "unnamed"
    except (struct.error, UnicodeDecodeError):
        pass
    return "unnamed"


def _adapt_to_d50(white: np.ndarray) -> np.ndarray:
    """Bradford chromatic adaptation from ``white`` to D50 (XYZ -> XYZ)."""
    src, dst = _BRADFORD @ white, _BRADFORD @ _D50
    return np.linalg.inv(_BRADFORD) @ np.diag(dst / src) @ _BRADFORD


def identify(data: bytes) -> Profile:
    """What an RGB display profile describes. IccError when it does not parse."""
    data = bytes(data)
    tags = _tags(data)
    desc = _description(tags)
    if data[16:20] != b"RGB ":
        return Profile(desc, None, None, None)
    try:
        colorants = np.stack([_xyz(tags[k]) for k in ("rXYZ", "gXYZ", "bXYZ")], axis=1)  # columns
    except KeyError:
        return Profile(desc, None, None, None)  # a LUT-based profile: not a matrix/TRC one
    if "chad" in tags and tags["chad"][:4] == b"sf32" and len(tags["chad"]) >= 44:
        chad = np.array([_s15(tags["chad"][8 + 4 * i:12 + 4 * i]) for i in range(9)]).reshape(3, 3)
    elif "wtpt" in tags:
        chad = _adapt_to_d50(_xyz(tags["wtpt"]))
    else:
        chad = np.eye(3)
    native = np.linalg.solve(chad, colorants)  # the colorants under the profile's own white
    xyz = np.concatenate([native, native.sum(axis=1, keepdims=True)], axis=1)
    xy = (xyz[:2] / xyz.sum(axis=0)).T  # r, g, b, white
    primaries = next((name for name, ref in PRIMARIES.items()
                      if np.abs(xy - np.array(ref)).max() < 0.005), None)
    curve = None
    fns = [_curve(tags[k]) if k in tags else None for k in ("rTRC", "gTRC", "bTRC")]
    if all(f is not None for f in fns):
        x = np.linspace(0.02, 1.0, 50)
        got = [np.asarray(f(x), np.float64) for f in fns]
        curve = next((name for name, ref in _CURVES.items()
                      if all(np.abs(g - ref(x)).max() < 0.004 for g in got)), None)
    return Profile(desc, primaries, curve, SPACES.get((primaries, curve)))
