"""What every reader yields: :class:`Frame`, and a stream's :class:`ColourTags` with the
names and aliases of their values (ITU-T H.273 code points, as FFmpeg names them).

Readers of stills and sequences use these too; this module imports no decoder (PyAV is
imported only by :mod:`hdrlift.engine.io.video`, when a video is opened).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hdrlift.engine.errors import ColourError

__all__ = ["ColourTags", "Frame", "PRIMARIES_NAMES", "TRANSFER_NAMES", "MATRIX_NAMES", "RANGE_NAMES",
           "normalise_tag"]

# --------------------------------------------------------------------------------------
# Colour tags: FFmpeg's enum values (libavutil/pixfmt.h, ITU-T H.273 code points) -> names.
# Unspecified (2) and reserved values map to None.
# --------------------------------------------------------------------------------------

#: AVColorPrimaries -> FFmpeg name.
PRIMARIES_NAMES: dict[int, str] = {
    1: "bt709",
    4: "bt470m",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "film",
    9: "bt2020",
    10: "smpte428",
    11: "smpte431",
    12: "smpte432",
    22: "ebu3213",
}

#: AVColorTransferCharacteristic -> FFmpeg name.
TRANSFER_NAMES: dict[int, str] = {
    1: "bt709",
    4: "gamma22",
    5: "gamma28",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    9: "log100",
    10: "log316",
    11: "iec61966-2-4",
    12: "bt1361e",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    17: "smpte428",
    18: "arib-std-b67",
}

#: AVColorSpace (matrix coefficients) -> name. FFmpeg calls code point 0 "gbr"; hdrlift
#: calls it "rgb" (and accepts "gbr" as an alias).
MATRIX_NAMES: dict[int, str] = {
    0: "rgb",
    1: "bt709",
    4: "fcc",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "ycgco",
    9: "bt2020nc",
    10: "bt2020c",
    11: "smpte2085",
    12: "chroma-derived-nc",
    13: "chroma-derived-c",
    14: "ictcp",
    15: "ipt-c2",
    16: "ycgco-re",
    17: "ycgco-ro",
}

#: AVColorRange -> name ("tv" = limited/MPEG, "pc" = full/JPEG).
RANGE_NAMES: dict[int, str] = {1: "tv", 2: "pc"}

_ALIASES: dict[str, dict[str, str]] = {
    "primaries": {"rec709": "bt709", "bt601-625": "bt470bg", "bt601-525": "smpte170m",
                  "rec2020": "bt2020", "dci-p3": "smpte431", "display-p3": "smpte432"},
    "transfer": {"srgb": "iec61966-2-1", "pq": "smpte2084", "hlg": "arib-std-b67",
                 "rec709": "bt709"},
    "matrix": {"gbr": "rgb", "bt601": "smpte170m", "rec709": "bt709", "bt2020": "bt2020nc",
               "bt2020ncl": "bt2020nc", "bt2020cl": "bt2020c"},
    "range": {"limited": "tv", "mpeg": "tv", "full": "pc", "jpeg": "pc"},
}

_TABLES: dict[str, dict[int, str]] = {
    "primaries": PRIMARIES_NAMES,
    "transfer": TRANSFER_NAMES,
    "matrix": MATRIX_NAMES,
    "range": RANGE_NAMES,
}

def normalise_tag(kind: str, value: str | None) -> str | None:
    """Return the canonical name of a colour tag given by a user (or None for None).

    ``kind`` is one of ``primaries``, ``transfer``, ``matrix``, ``range``. Names are FFmpeg's
    (case-insensitive) plus a few aliases (``srgb``, ``pq``, ``hlg``, ``limited``, ``full``,
    ``gbr``, ``bt601``...). Raises ColourError for an unknown name.
    """
    if value is None:
        return None
    if kind not in _TABLES:
        raise ValueError(f"unknown colour tag kind {kind!r}")
    name = str(value).strip().lower()
    name = _ALIASES[kind].get(name, name)
    valid = set(_TABLES[kind].values())
    if name not in valid:
        raise ColourError(
            f"unknown {kind} {value!r}; expected one of {', '.join(sorted(valid))}"
        )
    return name


@dataclass(frozen=True)
class ColourTags:
    """Colour tags of a stream, with FFmpeg's names; None where unspecified.

    primaries: e.g. "bt709", "smpte170m", "bt470bg", "bt2020", "smpte432".
    transfer:  e.g. "bt709", "iec61966-2-1" (sRGB), "gamma22", "gamma28", "bt2020-10",
               "smpte2084" (PQ), "arib-std-b67" (HLG).
    matrix:    "bt709", "smpte170m", "bt470bg", "bt2020nc", "rgb" (FFmpeg's "gbr"), ...
    range:     "tv" (limited) or "pc" (full).
    """

    primaries: str | None = None
    transfer: str | None = None
    matrix: str | None = None
    range: str | None = None


@dataclass(eq=False)
class Frame:
    """One decoded picture.

    number: frame number (videos: 1 for the first frame in presentation order; image
            sequences: the number in the file name).
    index:  0-based position of the frame in its source, whatever start/every asked for.
    pts:    presentation timestamp in the stream's time base (None when unknown or for images).
    time:   seconds since the first frame of the source (None for images without a rate).
    rgb:    float32 H x W x 3, C-contiguous R'G'B' code values (no transfer function applied);
            None when the reader was asked for code values (``code``).
    alpha:  float32 H x W in [0, 1] when the source has an alpha channel (straight, as stored),
            else None.
    code:   the integer code values as decoded (``video.CodeValues``: planes before the
            Y'CbCr matrix), when ``VideoReader.frames(code_values=True)`` was asked; else None.
    """

    number: int
    index: int
    pts: int | None
    time: float | None
    rgb: np.ndarray | None
    alpha: np.ndarray | None = None
    code: Any = None
