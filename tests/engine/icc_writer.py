"""Matrix/TRC ICC display profiles for tests, written from the ICC specification (ICC.1:2010):
a 128-byte header, a tag table, and ``desc``, ``wtpt``, ``rXYZ``/``gXYZ``/``bXYZ``,
``rTRC``/``gTRC``/``bTRC`` (and ``chad`` for version 4 profiles)."""

from __future__ import annotations

import struct

import numpy as np

D50 = np.array([0.9642, 1.0, 0.8249])
D65_XY = (0.3127, 0.3290)
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


def _xyz(x: float, y: float) -> np.ndarray:
    return np.array([x / y, 1.0, (1 - x - y) / y])


def npm(primaries, white=D65_XY) -> np.ndarray:
    """RGB -> XYZ (columns: the primaries scaled so that RGB 1,1,1 is the white, Y = 1)."""
    p = np.stack([_xyz(*xy) for xy in primaries], axis=1)
    return p * np.linalg.solve(p, _xyz(*white))


def bradford(src_white: np.ndarray, dst_white: np.ndarray = D50) -> np.ndarray:
    s, d = BRADFORD @ src_white, BRADFORD @ dst_white
    return np.linalg.inv(BRADFORD) @ np.diag(d / s) @ BRADFORD


def _s15(v: float) -> bytes:
    return struct.pack(">i", int(round(v * 65536)))


def _tag_xyz(v) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(c) for c in v)


def _tag_desc(text: str) -> bytes:
    t = text.encode("ascii") + b"\0"
    body = b"desc\0\0\0\0" + struct.pack(">I", len(t)) + t + b"\0" * 12 + b"\0" * 67
    return body


def _tag_curve(curve) -> bytes:
    if curve == "srgb":  # parametric type 3 (IEC 61966-2-1)
        params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
        return b"para\0\0\0\0" + struct.pack(">H", 3) + b"\0\0" + b"".join(_s15(p) for p in params)
    if isinstance(curve, float):  # a pure power law, u8Fixed8
        return b"curv\0\0\0\0" + struct.pack(">IH", 1, int(round(curve * 256))) + b"\0\0"
    table = np.asarray(curve, dtype=np.float64)  # sampled, 0..1
    return b"curv\0\0\0\0" + struct.pack(">I", len(table)) + (np.round(table * 65535)).astype(">u2").tobytes()


def profile(primaries, curve="srgb", description="test profile", version4: bool = False, white=D65_XY) -> bytes:
    """An RGB display profile with these primaries (3 xy pairs) and tone curve ("srgb", a gamma
    as a float, or a sampled table)."""
    white_xyz = _xyz(*white)
    adapt = bradford(white_xyz)
    colorants = adapt @ npm(primaries, white)
    tags = [(b"desc", _tag_desc(description)),
            (b"wtpt", _tag_xyz(D50 if version4 else white_xyz)),
            (b"rXYZ", _tag_xyz(colorants[:, 0])), (b"gXYZ", _tag_xyz(colorants[:, 1])),
            (b"bXYZ", _tag_xyz(colorants[:, 2]))]
    trc = _tag_curve(curve)
    tags += [(b"rTRC", trc), (b"gTRC", trc), (b"bTRC", trc)]
    if version4:
        tags.append((b"chad", b"sf32\0\0\0\0" + b"".join(_s15(v) for v in adapt.ravel())))
    table = struct.pack(">I", len(tags))
    offset = 128 + 4 + 12 * len(tags)
    data = b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = 128 + len(table) + len(data)
    header = bytearray(128)
    header[0:4] = struct.pack(">I", size)
    header[8:12] = bytes([4 if version4 else 2, 0x30 if version4 else 0x10, 0, 0])
    header[12:16] = b"mntr"
    header[16:20] = b"RGB "
    header[20:24] = b"XYZ "
    header[36:40] = b"acsp"
    header[68:80] = b"".join(_s15(c) for c in D50)
    return bytes(header) + table + data


REC709 = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060))
P3 = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
ADOBE = ((0.640, 0.330), (0.210, 0.710), (0.150, 0.060))
