"""Frame marshalling shared by the hdrlift client and server: numpy <-> planar payloads, chunks.

Planar layout (the ``hdrlift.v1`` contract): channel 0's plane, then channel 1's, ...; each plane
row-major, top row first; samples little-endian IEEE binary16 (``DTYPE_HALF``) or binary32
(``DTYPE_FLOAT``). ``DTYPE_EXR`` payloads are the bytes of an OpenEXR file (channels R, G, B and,
with a mask, ``mask.Y``) in the small wire subset of :mod:`hdrlift.plugin.openexr`.

Nothing here evaluates or unpickles what a peer sends: payloads are only ever read as numbers
after their sizes were checked against the header.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from hdrlift.plugin import openexr
from hdrlift.plugin.v1 import hdrlift_pb2 as pb

DTYPE_HALF = pb.DTYPE_HALF
DTYPE_FLOAT = pb.DTYPE_FLOAT
DTYPE_EXR = pb.DTYPE_EXR

_NUMPY = {pb.DTYPE_HALF: np.dtype("<f2"), pb.DTYPE_FLOAT: np.dtype("<f4")}
_NAMES = {"half": pb.DTYPE_HALF, "float": pb.DTYPE_FLOAT, "exr": pb.DTYPE_EXR,
          "float16": pb.DTYPE_HALF, "float32": pb.DTYPE_FLOAT}

DEFAULT_CHUNK_BYTES = 1 << 20  # 1 MiB: far below gRPC's default 4 MiB message limit
MIN_CHUNK_BYTES = 4096


class FrameFormatError(ValueError):
    """A payload or chunk sequence that does not match its header (one-line message)."""


def dtype_code(value) -> int:
    """``"half"``/``"float"``/``"exr"`` (or a ``DType`` value) -> the proto enum value."""
    if isinstance(value, str):
        try:
            return _NAMES[value.lower()]
        except KeyError:
            raise FrameFormatError(f"unknown dtype {value!r}; choose half, float or exr") from None
    v = int(value)
    if v not in (pb.DTYPE_HALF, pb.DTYPE_FLOAT, pb.DTYPE_EXR):
        raise FrameFormatError(f"unknown dtype {v}")
    return v


def dtype_name(code: int) -> str:
    return {pb.DTYPE_HALF: "half", pb.DTYPE_FLOAT: "float", pb.DTYPE_EXR: "exr"}.get(int(code), str(code))


def sample_bytes(code: int) -> int:
    return _NUMPY[int(code)].itemsize


def planar_size(width: int, height: int, channels: int, code: int) -> int:
    """Bytes of a planar frame (``code`` HALF or FLOAT)."""
    return int(width) * int(height) * int(channels) * sample_bytes(code)


def encode_planar(image: np.ndarray, code: int = pb.DTYPE_FLOAT) -> bytes:
    """``H x W x C`` (or ``H x W``) array -> planar bytes in ``code``'s sample type."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise FrameFormatError(f"frame must be H x W x C, got shape {tuple(a.shape)}")
    dt = _NUMPY.get(int(code))
    if dt is None:
        raise FrameFormatError(f"planar payloads are half or float, not {dtype_name(code)}")
    with np.errstate(over="ignore"):  # above half's range is inf, as in a half EXR: not worth a warning
        return np.ascontiguousarray(a.transpose(2, 0, 1), dtype=dt).tobytes()


def decode_planar(data: bytes | bytearray | memoryview, width: int, height: int, channels: int,
                  code: int) -> np.ndarray:
    """Planar bytes -> ``H x W x C`` float32 (C-contiguous). Checks the size against the header."""
    dt = _NUMPY.get(int(code))
    if dt is None:
        raise FrameFormatError(f"planar payloads are half or float, not {dtype_name(code)}")
    if width < 1 or height < 1 or channels < 1:
        raise FrameFormatError(f"frame size must be positive, got {width}x{height}x{channels}")
    want = planar_size(width, height, channels, code)
    if len(data) != want:
        raise FrameFormatError(f"payload has {len(data)} bytes; a {width}x{height}x{channels} "
                               f"{dtype_name(code)} frame needs {want}")
    planes = np.frombuffer(data, dtype=dt).reshape(channels, height, width)
    return np.ascontiguousarray(planes.transpose(1, 2, 0), dtype=np.float32)


def encode_exr(rgb: np.ndarray, mask: np.ndarray | None = None, *, half: bool = True,
               attributes: dict | None = None) -> bytes:
    """``H x W x 3`` (+ mask ``H x W``) -> the bytes of an EXR file (zip compression), written
    by :mod:`hdrlift.plugin.openexr` (numpy and zlib only)."""
    a = np.asarray(rgb, dtype=np.float32)
    if a.ndim != 3 or a.shape[2] != 3:
        raise FrameFormatError(f"frame must be H x W x 3, got shape {tuple(a.shape)}")
    planes = {"R": a[:, :, 0], "G": a[:, :, 1], "B": a[:, :, 2]}
    if mask is not None:
        planes["mask.Y"] = np.asarray(mask, dtype=np.float32)
    try:
        return openexr.encode(planes, half=half, compression=openexr.ZIP, attributes=attributes)
    except openexr.ExrFormatError as exc:
        raise FrameFormatError(str(exc)) from None


def decode_exr(data: bytes, *, max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """EXR bytes -> (rgb ``H x W x 3`` float32, mask ``H x W`` or None, attributes).

    The wire subset of :mod:`hdrlift.plugin.openexr`: the header is read first and its declared
    size and channels checked (against ``max_pixels``, and at most R, G, B, A, mask.Y) before any
    pixel is decoded, so a hostile header cannot make the reader allocate a huge image.
    """
    try:
        planes, attrs = openexr.decode(data, max_pixels=max_pixels)
    except openexr.ExrTooLarge as exc:
        raise FrameTooLarge(str(exc)) from None
    except openexr.ExrFormatError as exc:
        raise FrameFormatError(str(exc)) from None
    missing = [c for c in ("R", "G", "B") if c not in planes]
    if missing:
        raise FrameFormatError(f"EXR payload needs channels R, G, B; it has {', '.join(sorted(planes))}")
    rgb = np.ascontiguousarray(np.stack([planes["R"], planes["G"], planes["B"]], axis=2))
    return rgb, planes.get("mask.Y"), attrs


class FrameTooLarge(FrameFormatError):
    """A frame above the receiver's pixel limit."""


def split_chunks(data: bytes, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> list[memoryview]:
    """Cut ``data`` into pieces of at most ``chunk_bytes`` (at least one piece, maybe empty)."""
    n = max(MIN_CHUNK_BYTES, int(chunk_bytes))
    mv = memoryview(data)
    if len(mv) == 0:
        return [mv]
    return [mv[i:i + n] for i in range(0, len(mv), n)]


def frame_chunks(frame_id: int, data: bytes, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 header: pb.FrameHeader | None = None) -> Iterator[pb.Chunk]:
    """``Chunk`` messages for one frame; ``header`` (if any) rides on the first."""
    pieces = split_chunks(data, chunk_bytes)
    total = len(pieces)
    for i, piece in enumerate(pieces):
        c = pb.Chunk(frame_id=frame_id, index=i, total=total, payload=bytes(piece))
        if i == 0 and header is not None:
            c.header.CopyFrom(header)
        yield c


class FrameAssembler:
    """Reassembles frames from chunks that must arrive in order, one frame at a time.

    ``add(chunk)`` returns ``(frame_id, header_or_None, payload)`` when ``chunk`` completes a
    frame, else None. Raises :class:`FrameFormatError` for an out-of-order index, a changing
    ``total``, a frame id that does not increase, a new frame before the last one finished, or
    more bytes than ``max_bytes`` (checked as chunks arrive, so memory stays bounded).
    """

    def __init__(self, max_bytes: int, max_chunks: int = 1 << 20):
        self.max_bytes = int(max_bytes)
        self.max_chunks = int(max_chunks)
        self._id: int | None = None
        self._last_id: int | None = None
        self._total = 0
        self._next = 0
        self._header = None
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def busy(self) -> bool:
        return self._id is not None

    def add(self, chunk: pb.Chunk):
        fid, idx, total = int(chunk.frame_id), int(chunk.index), int(chunk.total)
        if total < 1 or total > self.max_chunks:
            raise FrameFormatError(f"frame {fid}: chunk total {total} out of range 1..{self.max_chunks}")
        if self._id is None:
            if self._last_id is not None and fid <= self._last_id:
                raise FrameFormatError(f"frame id {fid} does not increase (last was {self._last_id})")
            if idx != 0:
                raise FrameFormatError(f"frame {fid}: first chunk has index {idx}, expected 0")
            self._id, self._total, self._next = fid, total, 0
            self._header = chunk.header if chunk.HasField("header") else None
            self._parts, self._size = [], 0
        elif fid != self._id:
            raise FrameFormatError(f"chunk of frame {fid} arrived before frame {self._id} was complete "
                                   f"({self._next}/{self._total} chunks)")
        if idx != self._next:
            raise FrameFormatError(f"frame {fid}: chunk {idx} out of order, expected {self._next}")
        if total != self._total:
            raise FrameFormatError(f"frame {fid}: chunk total changed from {self._total} to {total}")
        if idx > 0 and chunk.HasField("header"):
            raise FrameFormatError(f"frame {fid}: only chunk 0 may carry a header")
        self._size += len(chunk.payload)
        if self._size > self.max_bytes:  # the bound its header declared: a broken promise, not a size limit
            raise FrameFormatError(f"frame {fid}: more than the {self.max_bytes} payload bytes it may have")
        self._parts.append(chunk.payload)
        self._next += 1
        if self._next < self._total:
            return None
        out = (fid, self._header, b"".join(self._parts))
        self._last_id = fid
        self._id, self._header, self._parts, self._size = None, None, [], 0
        return out
