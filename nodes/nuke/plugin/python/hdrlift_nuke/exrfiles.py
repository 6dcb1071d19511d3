"""The EXRs of a run: what Nuke's internal Write renders, and the results the internal Read shows.

Both go through :mod:`hdrlift.plugin.openexr` (numpy + zlib: Nuke's Python has no OpenImageIO),
which reads single-part scanline files compressed with none, "Zip (1 scanline)" or "Zip (16
scanlines)" and channels R, G, B (A, mask.Y) in half or float: the gizmo's Write is set up so.

Nuke writes the image's bounding box as the EXR data window, which may be smaller than the format
(the display window) or, with overscan, reach outside it: :func:`read_rgb` returns the display
window, black where the data window does not cover it. Results are written whole (a hidden
temporary, then ``os.replace``) with channels R, G, B and ``mask.Y`` (Nuke's Read shows the
latter as a layer ``mask``) and the ``hdrlift:*`` attributes that let a re-run skip the frame.
"""

from __future__ import annotations

import struct

import numpy as np

from hdrlift.plugin import openexr

MAX_PIXELS = 1 << 28  # 16K x 16K
_HEADER_LIMIT = openexr.MAX_HEADER_BYTES


class ExrError(ValueError):
    """A file that is not an EXR this node reads or writes (one line, naming the file)."""


def _header(data: bytes, path: str) -> dict:
    """The attributes of an EXR header: ``box2i`` as 4-tuples, ``string`` as text, ``int`` and
    ``float`` as numbers; other types are skipped. Raises :class:`ExrError`."""
    if data[:4] != openexr.MAGIC:
        raise ExrError(f"{path} is not an OpenEXR file")
    out: dict = {}
    pos = 8
    while True:
        if pos >= min(len(data), _HEADER_LIMIT):
            raise ExrError(f"{path}: EXR header is truncated or too long")
        if data[pos] == 0:
            return out
        fields = []
        for _ in range(2):
            end = data.find(b"\0", pos, pos + 256)
            if end < 0:
                raise ExrError(f"{path}: EXR attribute name is not terminated")
            fields.append(data[pos:end].decode("latin-1"))
            pos = end + 1
        if pos + 4 > len(data):
            raise ExrError(f"{path}: EXR header is truncated")
        (size,) = struct.unpack_from("<i", data, pos)
        pos += 4
        value = data[pos:pos + size]
        if size < 0 or len(value) != size:
            raise ExrError(f"{path}: EXR attribute {fields[0]!r} runs past the header")
        pos += size
        name, kind = fields
        if kind == "box2i" and size == 16:
            out[name] = struct.unpack("<4i", value)
        elif kind == "string":
            out[name] = value.decode("utf-8", "replace")
        elif kind == "int" and size == 4:
            out[name] = struct.unpack("<i", value)[0]
        elif kind == "float" and size == 4:
            out[name] = struct.unpack("<f", value)[0]


def read_attributes(path: str) -> dict:
    """The header attributes of the EXR at ``path`` (only the first 64 KiB are read, or up to the
    header limit for a longer header)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(64 << 10)
            try:
                return _header(data, path)
            except ExrError:
                if len(data) < (64 << 10):
                    raise
            return _header(data + fh.read(_HEADER_LIMIT - len(data)), path)
    except OSError as exc:
        raise ExrError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_rgb(path: str) -> np.ndarray:
    """The display window of the EXR at ``path`` as ``H x W x 3`` float32 (top row first)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ExrError(f"cannot read {path}: {exc.strerror or exc}") from None
    head = _header(data, path)
    try:
        planes, _ = openexr.decode(data, max_pixels=MAX_PIXELS)
    except openexr.ExrFormatError as exc:
        raise ExrError(f"{path}: {exc} (the HdrLift gizmo's Write must render rgb, 16- or 32-bit float, "
                       "compression none or Zip)") from None
    if not all(c in planes for c in "RGB"):
        raise ExrError(f"{path} has channels {', '.join(sorted(planes))}; R, G and B are needed")
    dx0, dy0, dx1, dy1 = head.get("dataWindow", (0, 0, -1, -1))
    wx0, wy0, wx1, wy1 = head.get("displayWindow", (dx0, dy0, dx1, dy1))
    width, height = wx1 - wx0 + 1, wy1 - wy0 + 1
    if width < 1 or height < 1 or width * height > MAX_PIXELS:
        raise ExrError(f"{path}: display window of {width}x{height} pixels")
    out = np.zeros((height, width, 3), np.float32)
    # the part of the data window inside the display window
    x0, y0, x1, y1 = max(dx0, wx0), max(dy0, wy0), min(dx1, wx1), min(dy1, wy1)
    if x0 <= x1 and y0 <= y1:
        for i, c in enumerate("RGB"):
            out[y0 - wy0:y1 - wy0 + 1, x0 - wx0:x1 - wx0 + 1, i] = planes[c][y0 - dy0:y1 - dy0 + 1, x0 - dx0:x1 - dx0 + 1]
    return out


def write_result(path: str, hdr: np.ndarray, mask: np.ndarray | None, *, half: bool, attributes: dict) -> None:
    """Write ``hdr`` (``H x W x 3``) and ``mask`` (``H x W``) to ``path`` whole: a hidden temporary
    in the same folder, then ``os.replace``."""
    planes = {"R": hdr[..., 0], "G": hdr[..., 1], "B": hdr[..., 2]}
    if mask is not None:
        planes["mask.Y"] = mask
    try:
        openexr.write_file(path, planes, half=half, compression=openexr.ZIP, attributes=attributes)
    except OSError as exc:
        raise ExrError(f"cannot write {path}: {exc.strerror or exc}") from None
