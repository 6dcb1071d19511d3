"""A small OpenEXR codec for frame payloads (``DTYPE_EXR``), in numpy and zlib alone.

Host plug-ins vendor :mod:`hdrlift.plugin` into Pythons that have no OpenImageIO (Nuke, Blender),
and the server must read what any client sends without letting a crafted header allocate
gigabytes. So the wire format is a deliberately small, strict subset of OpenEXR 2, written here
from the published file-layout description (openexr.com, "OpenEXR File Layout"):

* single-part scanline files (version field 2, no tiles, no deep data, no multi-part);
* channels ``R``, ``G``, ``B`` and optionally ``A`` and ``mask.Y`` (at most :data:`MAX_CHANNELS`),
  each HALF or FLOAT, sampling 1 x 1;
* compression NONE, ZIPS (one scanline per block) or ZIP (16 scanlines per block);
* attributes of type ``string``, ``int``, ``float``, ``chromaticities``, ``v2f`` and the other
  required header types; unknown attribute types are skipped, within :data:`MAX_HEADER_BYTES`.

Layout reminders (all little-endian): magic ``76 2f 31 01``, version ``02 00 00 00``, attributes
``name\\0 type\\0 int32 size, value`` ended by one ``\\0``, an offset table of one uint64 per
block, then each block as ``int32 y, int32 size, data``, the data being, for every scanline of
the block, every channel in name order, ``width`` samples each. ZIP/ZIPS data is the block's
bytes split into even- and odd-indexed halves, delta-coded (``d[i] = b[i] - b[i-1] + 128``),
then deflated; a block that would not shrink is stored as is.

Reading checks the declared size against ``max_pixels`` and every count against the payload's
length before anything is allocated, and inflates each block into exactly the bytes it must hold.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import zlib

import numpy as np

MAGIC = b"\x76\x2f\x31\x01"
VERSION = 2  # single-part scanline
HALF, FLOAT = 1, 2  # OpenEXR pixel types (0 is UINT, refused here)
NONE, ZIPS, ZIP = 0, 2, 3  # OpenEXR compression values used on the wire
COMPRESSION_NAMES = {0: "none", 1: "rle", 2: "zips", 3: "zip", 4: "piz", 5: "pxr24", 6: "b44", 7: "b44a",
                     8: "dwaa", 9: "dwab", 10: "htj2k256", 11: "htj2k32"}
LINES_PER_BLOCK = {NONE: 1, ZIPS: 1, ZIP: 16}
ALLOWED_CHANNELS = ("A", "B", "G", "R", "mask.Y")
MAX_CHANNELS = len(ALLOWED_CHANNELS)
MAX_HEADER_BYTES = 1 << 20
MAX_ATTRIBUTES = 512
_SAMPLE = {HALF: np.dtype("<f2"), FLOAT: np.dtype("<f4")}


def max_payload_bytes(width: int, height: int, float_samples: bool = True) -> int:
    """The most bytes a wire EXR of ``width`` x ``height`` can need: every channel stored
    uncompressed (a block that does not shrink is stored as is), plus the header, the offset
    table and the block headers. Receivers bound what they accumulate by this."""
    sample = 4 if float_samples else 2
    return MAX_HEADER_BYTES + 16 * int(height) + int(width) * int(height) * MAX_CHANNELS * sample


class ExrFormatError(ValueError):
    """A payload that is not an EXR of the wire subset, or that contradicts itself (one line)."""


class ExrTooLarge(ExrFormatError):
    """A payload whose declared size is above the reader's ``max_pixels``."""


# --------------------------------------------------------------------------- writing
def _attr(name: str, type_name: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + type_name.encode() + b"\0" + struct.pack("<i", len(value)) + value


def _user_attr(name: str, value) -> bytes:
    if isinstance(value, bool):
        return _attr(name, "int", struct.pack("<i", int(value)))
    if isinstance(value, (int, np.integer)):
        return _attr(name, "int", struct.pack("<i", int(value)))
    if isinstance(value, (float, np.floating)):
        return _attr(name, "float", struct.pack("<f", float(value)))
    if isinstance(value, str):
        return _attr(name, "string", value.encode("utf-8"))
    if name == "chromaticities":
        v = [float(x) for x in value]
        if len(v) != 8:
            raise ExrFormatError("chromaticities take 8 numbers")
        return _attr(name, "chromaticities", struct.pack("<8f", *v))
    raise ExrFormatError(f"attribute {name!r}: cannot write a {type(value).__name__}")


def _zip_block(raw: bytes) -> bytes:
    b = np.frombuffer(raw, np.uint8)
    t = np.concatenate([b[0::2], b[1::2]])
    d = np.empty_like(t)
    if t.size:
        d[0] = t[0]
        d[1:] = (t[1:].astype(np.int16) - t[:-1].astype(np.int16) + 128) & 0xFF
    packed = zlib.compress(d.tobytes(), 6)
    return packed if len(packed) < len(raw) else raw


#: the part of a temporary's name that :func:`write_file` puts in (``.NAME.hdrlift-tmp-PID-THREAD``)
TEMP_MARK = ".hdrlift-tmp-"


def write_file(path: str | os.PathLike, planes: dict[str, np.ndarray], *, half: bool = True,
               compression: int = ZIP, attributes: dict | None = None) -> None:
    """:func:`encode` into ``path`` whole: a hidden temporary in the same folder (named with
    :data:`TEMP_MARK`, the process and the thread, so parallel writers never share one), flushed to
    disk, then renamed over ``path``. A reader or a crash never sees half a file; a failed write
    removes its temporary and raises (``OSError`` as the OS gave it)."""
    data = encode(planes, half=half, compression=compression, attributes=attributes)
    folder, name = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, f".{name}{TEMP_MARK}{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Remove the temporaries of :func:`write_file` that a killed process left in ``folder``
    (never a finished file); returns how many."""
    n = 0
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(folder):
            if name.startswith(".") and TEMP_MARK in name:
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, name))
                    n += 1
    return n


def encode(planes: dict[str, np.ndarray], *, half: bool = True, compression: int = ZIP,
           attributes: dict | None = None) -> bytes:
    """``planes`` (channel name -> ``H x W`` array) -> the bytes of an EXR file."""
    if compression not in LINES_PER_BLOCK:
        raise ExrFormatError(f"wire EXR compression must be none, zips or zip, got {compression}")
    names = sorted(planes)
    if not names or any(n not in ALLOWED_CHANNELS for n in names):
        raise ExrFormatError(f"wire EXR channels are {', '.join(ALLOWED_CHANNELS)}; got {', '.join(names)}")
    shape = np.shape(planes[names[0]])
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1 or any(np.shape(planes[n]) != shape for n in names):
        raise ExrFormatError("wire EXR planes must be non-empty H x W arrays of one size")
    h, w = shape
    ptype = HALF if half else FLOAT
    dt = _SAMPLE[ptype]
    chlist = b"".join(n.encode() + b"\0" + struct.pack("<iB3xii", ptype, 0, 1, 1) for n in names) + b"\0"
    header = [
        _attr("channels", "chlist", chlist),
        _attr("compression", "compression", bytes([compression])),
        _attr("dataWindow", "box2i", struct.pack("<4i", 0, 0, w - 1, h - 1)),
        _attr("displayWindow", "box2i", struct.pack("<4i", 0, 0, w - 1, h - 1)),
        _attr("lineOrder", "lineOrder", b"\0"),
        _attr("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
        _attr("screenWindowCenter", "v2f", struct.pack("<2f", 0.0, 0.0)),
        _attr("screenWindowWidth", "float", struct.pack("<f", 1.0)),
    ]
    for k, v in sorted((attributes or {}).items()):
        header.append(_user_attr(str(k), v))
    head = MAGIC + struct.pack("<I", VERSION) + b"".join(header) + b"\0"
    with np.errstate(over="ignore"):  # above half's range is inf, as OpenEXR itself stores it
        stack = np.stack([np.asarray(planes[n], dtype=np.float32) for n in names]).astype(dt)  # C x H x W
    lines = LINES_PER_BLOCK[compression]
    blocks = []
    for y in range(0, h, lines):
        raw = np.ascontiguousarray(stack[:, y:y + lines].transpose(1, 0, 2)).tobytes()  # line, channel, x
        data = raw if compression == NONE else _zip_block(raw)
        blocks.append(struct.pack("<ii", y, len(data)) + data)
    offsets, pos = [], len(head) + 8 * len(blocks)
    for blk in blocks:
        offsets.append(pos)
        pos += len(blk)
    return head + struct.pack(f"<{len(offsets)}Q", *offsets) + b"".join(blocks)


# --------------------------------------------------------------------------- reading
class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def need(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ExrFormatError("EXR payload is truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def cstring(self, limit: int = 256) -> str:
        end = self.data.find(b"\0", self.pos, self.pos + limit + 1)
        if end < 0:
            raise ExrFormatError("EXR header has a name that is too long or not terminated")
        s = self.data[self.pos:end]
        self.pos = end + 1
        try:
            return s.decode("ascii")
        except UnicodeDecodeError:
            raise ExrFormatError("EXR header has a name that is not ASCII") from None


def _channels(value: bytes) -> list[tuple[str, int]]:
    r = _Reader(value)
    out = []
    while True:
        if r.pos >= len(value):
            raise ExrFormatError("EXR channel list is not terminated")
        if value[r.pos] == 0:
            break
        name = r.cstring()
        ptype, _linear, xs, ys = struct.unpack("<iB3xii", r.need(16))
        if name not in ALLOWED_CHANNELS:
            raise ExrFormatError(f"EXR payload channel {name!r} is not one of {', '.join(ALLOWED_CHANNELS)}")
        if ptype not in _SAMPLE:
            raise ExrFormatError(f"EXR payload channel {name!r} is not half or float")
        if (xs, ys) != (1, 1):
            raise ExrFormatError(f"EXR payload channel {name!r} is subsampled")
        if any(n == name for n, _ in out):
            raise ExrFormatError(f"EXR payload names channel {name!r} twice")
        out.append((name, ptype))
        if len(out) > MAX_CHANNELS:
            raise ExrFormatError(f"EXR payload has more than {MAX_CHANNELS} channels")
    if [n for n, _ in out] != sorted(n for n, _ in out):
        raise ExrFormatError("EXR payload channels are not in name order")
    return out


def _attribute_value(type_name: str, value: bytes):
    try:
        if type_name == "string":
            return value.decode("utf-8", "replace")
        if type_name == "int" and len(value) == 4:
            return struct.unpack("<i", value)[0]
        if type_name == "float" and len(value) == 4:
            return struct.unpack("<f", value)[0]
        if type_name == "chromaticities" and len(value) == 32:
            return struct.unpack("<8f", value)
        if type_name == "v2f" and len(value) == 8:
            return struct.unpack("<2f", value)
    except struct.error:
        pass
    return None  # a type this subset does not interpret


def decode(data: bytes, *, max_pixels: int | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """EXR bytes -> (channel name -> ``H x W`` float32, attributes). Raises :class:`ExrFormatError`."""
    data = bytes(data)
    r = _Reader(data)
    if r.need(4) != MAGIC:
        raise ExrFormatError("payload is not an OpenEXR file (bad magic number)")
    version = struct.unpack("<I", r.need(4))[0]
    if version & 0xFF != 2:
        raise ExrFormatError(f"EXR payload has file version {version & 0xFF}; version 2 is read")
    if version & ~0xFF:
        raise ExrFormatError("EXR payload is tiled, deep, multi-part or uses long names; the wire takes "
                             "single-part scanline files")
    attrs: dict = {}
    required: dict = {}
    while True:
        if r.pos >= min(len(data), MAX_HEADER_BYTES):
            raise ExrFormatError("EXR header is not terminated within the size limit")
        if data[r.pos] == 0:
            r.pos += 1
            break
        if len(attrs) + len(required) >= MAX_ATTRIBUTES:
            raise ExrFormatError(f"EXR header has more than {MAX_ATTRIBUTES} attributes")
        name, type_name = r.cstring(), r.cstring()
        size = struct.unpack("<i", r.need(4))[0]
        if size < 0 or r.pos + size > MAX_HEADER_BYTES:
            raise ExrFormatError(f"EXR attribute {name!r} has an impossible size {size}")
        value = r.need(size)
        if name in ("channels", "compression", "dataWindow", "lineOrder"):
            required[name] = (type_name, value)
        else:
            v = _attribute_value(type_name, value)
            if v is not None:
                attrs[name] = v
    for k, t in (("channels", "chlist"), ("compression", "compression"), ("dataWindow", "box2i")):
        if k not in required or required[k][0] != t:
            raise ExrFormatError(f"EXR header lacks its {k} attribute")
    chans = _channels(required["channels"][1])
    comp = required["compression"][1][:1]
    comp = comp[0] if comp else -1
    if comp not in LINES_PER_BLOCK:
        raise ExrFormatError(f"EXR payload compression {COMPRESSION_NAMES.get(comp, comp)} is not taken on the "
                             "wire; use zip, zips or none")
    if len(required["dataWindow"][1]) != 16:
        raise ExrFormatError("EXR dataWindow is malformed")
    x0, y0, x1, y1 = struct.unpack("<4i", required["dataWindow"][1])
    w, h = x1 - x0 + 1, y1 - y0 + 1
    if w < 1 or h < 1:
        raise ExrFormatError(f"EXR payload declares {w}x{h} pixels")
    if max_pixels is not None and w * h > max_pixels:
        raise ExrTooLarge(f"EXR payload is {w}x{h}; at most {max_pixels} pixels are taken")
    if "lineOrder" in required and required["lineOrder"][1][:1] not in (b"\0", b"\1"):
        raise ExrFormatError("EXR payload has a random line order")
    line_bytes = w * sum(_SAMPLE[t].itemsize for _, t in chans)
    lines = LINES_PER_BLOCK[comp]
    nblocks = -(-h // lines)
    if len(data) - r.pos < 8 * nblocks + 8 * nblocks:  # offsets, plus at least a block header each
        raise ExrFormatError("EXR payload is truncated")
    offsets = struct.unpack(f"<{nblocks}Q", r.need(8 * nblocks))
    planes = {n: np.empty((h, w), np.float32) for n, _ in chans}
    seen = set()
    for off in offsets:
        if off < r.pos or off + 8 > len(data):
            raise ExrFormatError("EXR offset table points outside the payload")
        y, size = struct.unpack("<ii", data[off:off + 8])
        row = y - y0
        if row < 0 or row >= h or row % lines or row in seen:
            raise ExrFormatError(f"EXR block at line {y} is outside the data window or repeated")
        seen.add(row)
        n_lines = min(lines, h - row)
        want = n_lines * line_bytes
        if size < 0 or off + 8 + size > len(data):
            raise ExrFormatError("EXR block runs past the end of the payload")
        chunk = data[off + 8:off + 8 + size]
        if comp == NONE or size == want:
            raw = chunk
        else:
            inflater = zlib.decompressobj()
            try:
                raw = inflater.decompress(chunk, want)
            except zlib.error as exc:
                raise ExrFormatError(f"EXR block at line {y} does not inflate: {exc}") from None
            if len(raw) != want or inflater.unconsumed_tail:
                raise ExrFormatError(f"EXR block at line {y} does not hold {want} bytes")
            t = np.frombuffer(raw, np.uint8).astype(np.int64)
            t[1:] -= 128
            t = (np.cumsum(t) & 0xFF).astype(np.uint8)
            half_len = (t.size + 1) // 2
            b = np.empty_like(t)
            b[0::2], b[1::2] = t[:half_len], t[half_len:]
            raw = b.tobytes()
        if len(raw) != want:
            raise ExrFormatError(f"EXR block at line {y} holds {len(raw)} bytes, not {want}")
        pos = 0
        for i in range(n_lines):
            for name, t in chans:
                n = w * _SAMPLE[t].itemsize
                planes[name][row + i] = np.frombuffer(raw, _SAMPLE[t], w, pos)
                pos += n
    if len(seen) != nblocks:
        raise ExrFormatError("EXR payload misses blocks")
    return planes, attrs
