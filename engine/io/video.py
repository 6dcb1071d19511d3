"""Video decoding with PyAV: exact frame counts, colour tags and 10-bit-exact R'G'B'.

`VideoReader` opens a clip, reports its geometry, rate, codec, pixel format and colour tags,
and yields `Frame` objects whose ``rgb`` is float32 ``H x W x 3`` R'G'B' *code values* in
[0, 1]: the Y'CbCr -> R'G'B' matrix and the range (tv/pc) have been applied, the transfer
function has not (colour management happens later, with OCIO).

Why the Y'CbCr -> R'G'B' step is done here in numpy rather than by swscale
(``VideoFrame.reformat``): with PyAV 18 / FFmpeg 8, swscale's conversion to any output
deeper than 8 bits (``gbrpf32le``, ``rgb48le``, ``gbrp16le``) maps reference white to
0.99615 instead of 1.0 (a 0.4 % gain error, about 4 code values at 10 bits), and its 8-bit
outputs throw the 10-bit precision away. The conversion below follows ITU-T H.273
(equations for KR/KB matrices, YCgCo, and the tv/pc quantisation of section 8.3) and is exact
to float32 rounding; the tests check it against Y'CbCr planes built from first principles.
This is decoding of the video signal, not colour management: no primaries or transfer
function are touched.

Chroma planes of subsampled formats are upsampled bilinearly, with the chroma sample
positions of MPEG-2/H.264/HEVC/ProRes (horizontally co-sited with the left luma sample,
vertically centred); the JPEG-style ``yuvj*`` formats use centred positions.

``frames(code_values=True)`` hands each frame over undone instead: its integer planes
(:class:`CodeValues`), which the device path uploads and converts on the GPU with the very same
function (:func:`rgb_planes`, written once for numpy arrays and torch tensors).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Iterator

import av
import numpy as np

from hdrlift.engine.errors import ColourError, InputError
from hdrlift.engine.io.paths import require_regular_file
from hdrlift.engine.io.tags import (  # noqa: F401 - part of this module's interface
    MATRIX_NAMES,
    PRIMARIES_NAMES,
    RANGE_NAMES,
    TRANSFER_NAMES,
    ColourTags,
    Frame,
    normalise_tag,
)

# FFmpeg is told which demuxers and protocols it may use: plain containers and elementary streams
# through the file protocol. Playlist and list demuxers (hls, dash, concat, image2...) open the
# files their text names, which would let a file inside a server's --root read files outside it.
DEMUXERS = ("mov", "matroska", "webm", "avi", "mxf", "mpegts", "mpeg", "mpegvideo", "m4v", "h264", "hevc", "ivf",
            "yuv4mpegpipe", "nut", "ogg", "flv", "dv", "gif", "apng", "asf")
DEMUX_OPTIONS = {"format_whitelist": ",".join(DEMUXERS), "protocol_whitelist": "file"}

__all__ = [
    "ColourTags",
    "Frame",
    "VideoReader",
    "PRIMARIES_NAMES",
    "TRANSFER_NAMES",
    "MATRIX_NAMES",
    "RANGE_NAMES",
    "normalise_tag",
    "rgb_from_ycbcr",
    "rgb_planes",
    "CodeValues",
    "with_overrides",
]

#: Luma coefficients (KR, KB) of the Y'CbCr matrices this module decodes (H.273 table 4).
_KR_KB: dict[str, tuple[float, float]] = {
    "bt709": (0.2126, 0.0722),
    "fcc": (0.30, 0.11),
    "bt470bg": (0.299, 0.114),
    "smpte170m": (0.299, 0.114),
    "smpte240m": (0.212, 0.087),
    "bt2020nc": (0.2627, 0.0593),
}
#: Matrices `rgb_from_ycbcr` can decode.
SUPPORTED_MATRICES = frozenset(_KR_KB) | {"rgb", "ycgco"}



# --------------------------------------------------------------------------------------
# Pixel formats
# --------------------------------------------------------------------------------------

_PLANAR_YUV = re.compile(r"^yuv(?P<j>j)?(?P<a>a)?(?P<sub>420|422|444|440|411|410)p(?:(?P<bits>\d+)(?P<end>le|be))?$")
_PLANAR_RGB = re.compile(r"^gbra?p(?:(?P<bits>\d+)(?P<end>le|be))?$")
_GRAY = re.compile(r"^gray(?:(?P<bits>\d+)(?P<end>le|be))?$")
#: Packed RGB formats: channel order (letters; x = unused) and bits.
_PACKED_RGB: dict[str, tuple[str, int, str]] = {
    "rgb24": ("rgb", 8, "<"), "bgr24": ("bgr", 8, "<"),
    "rgba": ("rgba", 8, "<"), "bgra": ("bgra", 8, "<"),
    "argb": ("argb", 8, "<"), "abgr": ("abgr", 8, "<"),
    "rgb0": ("rgbx", 8, "<"), "bgr0": ("bgrx", 8, "<"),
    "0rgb": ("xrgb", 8, "<"), "0bgr": ("xbgr", 8, "<"),
    "rgb48le": ("rgb", 16, "<"), "rgb48be": ("rgb", 16, ">"),
    "bgr48le": ("bgr", 16, "<"), "bgr48be": ("bgr", 16, ">"),
    "rgba64le": ("rgba", 16, "<"), "rgba64be": ("rgba", 16, ">"),
    "bgra64le": ("bgra", 16, "<"), "bgra64be": ("bgra", 16, ">"),
}
_SUBSAMPLING: dict[str, tuple[int, int]] = {
    "444": (1, 1), "422": (2, 1), "420": (2, 2), "440": (1, 2), "411": (4, 1), "410": (4, 4),
}


@dataclass(frozen=True)
class _Layout:
    """How to pull R'G'B' or Y'CbCr samples out of a decoded frame of one pixel format."""

    kind: str  # "yuv", "gbr", "gray", "packed"
    bits: int
    endian: str  # "<" or ">"
    sub_x: int = 1
    sub_y: int = 1
    centred_chroma: bool = False  # yuvj*: JPEG chroma siting
    full_range_format: bool = False  # yuvj*: full range implied by the format
    order: str = ""  # packed RGB channel order
    alpha: bool = False  # an alpha plane (yuva*, gbrap*) or sample (packed rgba...)

    @property
    def is_rgb(self) -> bool:
        return self.kind in ("gbr", "packed")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.bits <= 8 else np.dtype(f"{self.endian}u2")


def _layout(pix_fmt: str) -> _Layout | None:
    """The layout of a supported pixel format, or None when hdrlift cannot decode it."""
    m = _PLANAR_YUV.match(pix_fmt)
    if m:
        bits = int(m["bits"] or 8)
        if bits > 16 or (m["j"] and bits != 8):
            return None
        sx, sy = _SUBSAMPLING[m["sub"]]
        return _Layout("yuv", bits, ">" if m["end"] == "be" else "<", sx, sy,
                       centred_chroma=bool(m["j"]), full_range_format=bool(m["j"]), alpha=bool(m["a"]))
    m = _PLANAR_RGB.match(pix_fmt)
    if m:
        bits = int(m["bits"] or 8)
        return _Layout("gbr", bits, ">" if m["end"] == "be" else "<", alpha=pix_fmt.startswith("gbra")) \
            if bits <= 16 else None
    m = _GRAY.match(pix_fmt)
    if m:
        bits = int(m["bits"] or 8)
        return _Layout("gray", bits, ">" if m["end"] == "be" else "<") if bits <= 16 else None
    if pix_fmt in _PACKED_RGB:
        order, bits, endian = _PACKED_RGB[pix_fmt]
        return _Layout("packed", bits, endian, order=order, alpha="a" in order)
    return None


def _plane(frame: av.VideoFrame, index: int, dtype: np.dtype, samples_per_pixel: int = 1) -> np.ndarray:
    """View of one plane of ``frame`` as a 2-D (or 3-D for packed) array without padding."""
    plane = frame.planes[index]
    row = plane.line_size // dtype.itemsize
    data = np.frombuffer(plane, dtype=dtype)
    data = data[: row * plane.height].reshape(plane.height, row)
    data = data[:, : plane.width * samples_per_pixel]
    if samples_per_pixel > 1:
        data = data.reshape(plane.height, plane.width, samples_per_pixel)
    return data


class _NumpyOps:
    """The array operations the Y'CbCr -> R'G'B' conversion needs, for numpy arrays. The device
    path (:mod:`hdrlift.engine.device_frames`) hands the same functions torch tensors with an
    object of the same shape, so that the conversion is written once."""

    @staticmethod
    def f32(a):
        return a.astype(np.float32)

    @staticmethod
    def const(values: np.ndarray, like):
        """A numpy array (indices, weights) where ``like`` lives."""
        return values

    @staticmethod
    def stack(arrays, axis: int):
        return np.stack(arrays, axis=axis)


def _k(value: float) -> float:
    """A constant rounded to float32 (as a Python float, so numpy arrays and torch tensors both
    keep float32 arithmetic with it)."""
    return float(np.float32(value))


def _upsample_axis(c, axis: int, factor: int, size: int, centred: bool, xp=_NumpyOps):
    """Linearly interpolate ``c`` along ``axis`` up to ``size`` samples.

    Chroma sample k sits at luma position ``factor * k`` (co-sited) or
    ``factor * k + (factor - 1) / 2`` (centred); edges are clamped.
    """
    if factor == 1 and c.shape[axis] == size:
        return c
    offset = (factor - 1) / 2.0 if centred else 0.0
    pos = (np.arange(size, dtype=np.float64) - offset) / factor
    i0 = np.floor(pos).astype(np.int64)
    w = (pos - i0).astype(np.float32)
    n = c.shape[axis]
    a = xp.const(np.clip(i0, 0, n - 1), c)
    b = xp.const(np.clip(i0 + 1, 0, n - 1), c)
    w1, w0 = xp.const(w, c), xp.const(1.0 - w, c)
    if axis == 0:
        return c[a, :] * w0[:, None] + c[b, :] * w1[:, None]
    return c[:, a] * w0[None, :] + c[:, b] * w1[None, :]


def _rgb_planes_from_ycbcr(y, cb, cr, matrix: str) -> tuple:
    """R', G', B' planes from normalised Y' and Cb, Cr (see :func:`rgb_from_ycbcr`)."""
    if matrix == "rgb":
        return cr + 0.5, y, cb + 0.5
    if matrix == "ycgco":
        tmp = y - cb
        return tmp + cr, y + cb, tmp - cr
    if matrix not in _KR_KB:
        raise ColourError(f"Y'CbCr matrix {matrix!r} is not supported")
    kr, kb = _KR_KB[matrix]
    kg = 1.0 - kr - kb
    r = y + _k(2.0 * (1.0 - kr)) * cr
    b = y + _k(2.0 * (1.0 - kb)) * cb
    g = y - _k(2.0 * kb * (1.0 - kb) / kg) * cb - _k(2.0 * kr * (1.0 - kr) / kg) * cr
    return r, g, b


def rgb_from_ycbcr(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, matrix: str) -> np.ndarray:
    """R'G'B' (float32 H x W x 3) from normalised Y' in [0, 1] and Cb, Cr in [-0.5, 0.5].

    Implements the inverse of ITU-T H.273 equations 31-37 (KR/KB matrices), 44-46 (YCgCo,
    with Cb = Cg and Cr = Co) and matrix "rgb" (Y' = G', Cb = B', Cr = R', shifted back by
    0.5 as the caller normalised them as chroma). No clipping.
    """
    return np.stack(_rgb_planes_from_ycbcr(y, cb, cr, matrix), axis=-1).astype(np.float32, copy=False)


def _normalise_luma(d, bits: int, full: bool, xp=_NumpyOps):
    """Code values of Y' (or R'G'B') -> [0, 1] for the tv or pc range (H.273 section 8.3)."""
    d = xp.f32(d)
    if full:
        return d * _k(1.0 / ((1 << bits) - 1))
    scale = float(1 << (bits - 8))
    return (d - _k(16.0 * scale)) * _k(1.0 / (219.0 * scale))


def _normalise_chroma(d, bits: int, full: bool, xp=_NumpyOps):
    """Code values of Cb/Cr -> [-0.5, 0.5] for the tv or pc range (H.273 section 8.3)."""
    d = xp.f32(d)
    if full:
        return (d - _k(1 << (bits - 1))) * _k(1.0 / ((1 << bits) - 1))
    scale = float(1 << (bits - 8))
    return (d - _k(128.0 * scale)) * _k(1.0 / (224.0 * scale))


def _frame_planes(frame: av.VideoFrame, layout: _Layout) -> tuple[np.ndarray, ...]:
    """The planes of a decoded frame that carry colour, as integer views without padding (the
    first three of a planar format, the one plane of a packed or grey one)."""
    if layout.kind == "packed":
        return (_plane(frame, 0, layout.dtype, samples_per_pixel=len(layout.order)),)
    if layout.kind == "gray":
        return (_plane(frame, 0, layout.dtype),)
    return tuple(_plane(frame, i, layout.dtype) for i in range(3))


def rgb_planes(planes, layout: _Layout, matrix: str, full_range: bool, width: int, height: int, xp=_NumpyOps) -> tuple:
    """R', G', B' float32 planes (unclipped) from a frame's integer planes (:func:`_frame_planes`):
    range, chroma upsampling and the Y'CbCr matrix. ``xp`` says how to handle the arrays
    (numpy here; torch tensors on the device path): the one conversion of both paths."""
    w, h = width, height
    if layout.kind == "yuv":
        y = _normalise_luma(planes[0], layout.bits, full_range, xp)
        if matrix == "rgb":
            # Y'CbCr planes carrying G', B', R' (H.273 matrix 0): every plane is a colour.
            cb = _normalise_luma(planes[1], layout.bits, full_range, xp) - 0.5
            cr = _normalise_luma(planes[2], layout.bits, full_range, xp) - 0.5
        else:
            cb = _normalise_chroma(planes[1], layout.bits, full_range, xp)
            cr = _normalise_chroma(planes[2], layout.bits, full_range, xp)
        if layout.sub_x > 1 or layout.sub_y > 1:
            centred = layout.centred_chroma
            cb = _upsample_axis(_upsample_axis(cb, 1, layout.sub_x, w, centred, xp), 0, layout.sub_y, h, True, xp)
            cr = _upsample_axis(_upsample_axis(cr, 1, layout.sub_x, w, centred, xp), 0, layout.sub_y, h, True, xp)
        return _rgb_planes_from_ycbcr(y, cb, cr, matrix)
    if layout.kind == "gbr":
        g = _normalise_luma(planes[0], layout.bits, full_range, xp)
        b = _normalise_luma(planes[1], layout.bits, full_range, xp)
        r = _normalise_luma(planes[2], layout.bits, full_range, xp)
        return r, g, b
    if layout.kind == "gray":
        y = _normalise_luma(planes[0], layout.bits, full_range, xp)
        return y, y, y
    px = planes[0]  # packed RGB
    return tuple(_normalise_luma(px[:, :, layout.order.index(c)], layout.bits, full_range, xp) for c in "rgb")


def _frame_to_rgb(frame: av.VideoFrame, layout: _Layout, matrix: str, full_range: bool) -> np.ndarray:
    """Convert one decoded frame to float32 H x W x 3 R'G'B' code values clipped to [0, 1]."""
    rgb = np.stack(rgb_planes(_frame_planes(frame, layout), layout, matrix, full_range, frame.width, frame.height),
                   axis=-1).astype(np.float32, copy=False)
    np.clip(rgb, 0.0, 1.0, out=rgb)
    return np.ascontiguousarray(rgb, dtype=np.float32)


@dataclass(frozen=True)
class CodeValues:
    """A decoded picture's integer code values as coded, before the range, chroma upsampling
    and Y'CbCr matrix: what the device path uploads (``hdrlift.engine.device_frames``), uint8
    planes for 8-bit formats and 16-bit words for deeper ones (4:2:0 8-bit: 1.5 bytes a pixel,
    against 12 for float32 R'G'B').

    ``planes``: views of the decoded frame's planes (:func:`_frame_planes`; copy them before the
    frame is gone); ``layout``, ``matrix``, ``full_range``: how :func:`rgb_planes` converts them;
    ``width``/``height``: the coded size; ``rotate``: quarter turns to show it upright.
    :meth:`rgb` is the host conversion, the same as the reader's float frames."""

    planes: tuple
    layout: _Layout
    matrix: str
    full_range: bool
    width: int
    height: int
    rotate: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        """The R'G'B' frame's shape once converted and turned upright (H x W x 3)."""
        return (self.width, self.height, 3) if self.rotate % 2 else (self.height, self.width, 3)

    def rgb(self) -> np.ndarray:
        """float32 H x W x 3 code values in [0, 1], upright: the reader's own ``Frame.rgb``."""
        rgb = np.stack(rgb_planes(self.planes, self.layout, self.matrix, self.full_range, self.width, self.height),
                       axis=-1).astype(np.float32, copy=False)
        np.clip(rgb, 0.0, 1.0, out=rgb)
        if self.rotate:
            rgb = np.rot90(rgb, self.rotate)
        return np.ascontiguousarray(rgb, dtype=np.float32)


def _frame_alpha(frame: av.VideoFrame, layout: _Layout) -> np.ndarray | None:
    """The alpha of a decoded frame as float32 H x W in [0, 1] (always full range), or None."""
    if not layout.alpha:
        return None
    dt = layout.dtype
    if layout.kind == "packed":
        a = _plane(frame, 0, dt, samples_per_pixel=len(layout.order))[:, :, layout.order.index("a")]
    else:
        a = _plane(frame, 3, dt)
    return np.ascontiguousarray(a.astype(np.float32) * np.float32(1.0 / ((1 << layout.bits) - 1)))


def _rotation_steps(degrees: float, path: str) -> int:
    """Quarter turns counter-clockwise that show a frame upright, from its display matrix's
    rotation (what ``ffmpeg -autorotate`` applies)."""
    steps = round(float(degrees) / 90.0)
    if abs(steps * 90.0 - float(degrees)) > 0.5:
        raise InputError(f"{path}: the display matrix rotates by {degrees:g} degrees, not a multiple of 90; "
                         "pass --no-autorotate to convert the frames as coded")
    return steps % 4


class _Deinterlacer:
    """FFmpeg's yadif, one frame out per frame in (``mode=send_frame``), fields as flagged."""

    def __init__(self, stream: Any):
        self.graph = av.filter.Graph()
        src = self.graph.add_buffer(template=stream)
        yadif = self.graph.add("yadif", "mode=send_frame:parity=auto:deint=interlaced")
        sink = self.graph.add("buffersink")
        src.link_to(yadif)
        yadif.link_to(sink)
        self.graph.configure()

    def push(self, frame: Any) -> list:
        """Frames out for ``frame`` in (None: the end of the stream)."""
        self.graph.push(frame)
        out = []
        while True:
            try:
                out.append(self.graph.pull())
            except (av.BlockingIOError, av.EOFError):
                return out


# --------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------

#: FFmpeg demuxers whose stream frame count (nb_frames, from the sample table) is a
#: trustworthy reference for spotting truncated files.
_INDEXED_FORMATS = ("mov", "mp4")


def _declared_seconds(container: Any, stream: Any) -> float | None:
    """How long the header says the video stream lasts, for containers without a sample table.

    Matroska/WebM files written by FFmpeg carry a per-track ``DURATION`` tag (H:MM:SS.fraction);
    otherwise the stream's own duration; otherwise the container's, when the video is its only
    stream (an audio track may outlast the picture). None when nothing trustworthy is given.
    """
    tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    if tag:
        try:
            h, m, sec = str(tag).strip().split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            pass
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _one_line(exc: BaseException) -> str:
    """A short single-line reason from an exception (FFmpeg errors carry errno + text)."""
    if isinstance(exc, av.FFmpegError):
        text = exc.strerror or str(exc)
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class VideoReader:
    """Decode a video file frame by frame into R'G'B' code values.

    Args:
        path: the video file.
        primaries, transfer, matrix, range: user overrides of the stream's colour tags
            (FFmpeg names, see `ColourTags`); an override always wins over the file.

    Untagged streams get matrix ``bt709`` when the picture is at least 720 lines high and
    ``smpte170m`` below, and range ``tv`` for Y'CbCr/grey formats (``pc`` for the JPEG-style
    ``yuvj*`` formats) and ``pc`` for RGB formats. RGB pixel formats always decode with
    matrix ``rgb``. Primaries and transfer are reported, never applied.

    Properties: ``width``, ``height``, ``frame_count`` (exact: the container's sample table
    for MP4/MOV, otherwise one demux pass over the packets, cached), ``fps`` (Fraction),
    ``tags`` (`ColourTags` after overrides, with the matrix and range actually used),
    ``stream_tags`` (as found in the file), ``codec``, ``pix_fmt``, ``bit_depth``.

    The reader is a context manager; `frames` may be called several times (each call decodes
    the file from the start).

    Raises:
        InputError: missing file, not a video, no video stream, undecodable first frame,
            unsupported pixel format or Y'CbCr matrix.
        ColourError: an override that is not a known tag name.
    """

    #: ``frames(code_values=True)`` is supported (the file loop asks for it on the device path)
    code_values = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        primaries: str | None = None,
        transfer: str | None = None,
        matrix: str | None = None,
        range: str | None = None,  # noqa: A002 - the contract's name
        autorotate: bool = True,
        deinterlace: bool = False,
    ) -> None:
        self._path = os.fspath(path)
        self._autorotate = autorotate
        self._deinterlace = deinterlace
        self.notes: list[str] = []  # what the caller should tell the user (interlacing...)
        self._overrides = ColourTags(
            primaries=normalise_tag("primaries", primaries),
            transfer=normalise_tag("transfer", transfer),
            matrix=normalise_tag("matrix", matrix),
            range=normalise_tag("range", range),
        )
        if not os.path.exists(self._path):
            raise InputError(f"input not found: {self._path}")
        if os.path.isdir(self._path):
            raise InputError(f"{self._path}: is a folder, not a video file")
        require_regular_file(self._path, "video")
        self._frame_count: int | None = None
        self._closed = False
        self._open_containers: set[Any] = set()
        self._probe()

    # -- opening -------------------------------------------------------------------------

    def _open(self) -> tuple[Any, Any]:
        """Open the container and pick its video stream (not a cover picture)."""
        try:
            container = av.open(self._path, mode="r", options=dict(DEMUX_OPTIONS))
        except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"{self._path}: not a readable video file ({_one_line(exc)}); hdrlift reads "
                             "video containers (MP4/MOV, MKV/WebM, MXF, AVI, MPEG-TS/PS, raw H.264/HEVC...), "
                             "never playlists or concat lists, which open other files") from None
        streams = [
            s for s in container.streams.video
            if not (int(s.disposition) & int(av.stream.Disposition.attached_pic))
        ]
        if not streams:
            container.close()
            raise InputError(f"{self._path}: no video stream")
        stream = streams[0]
        if stream.codec_context is None:
            container.close()
            raise InputError(f"{self._path}: no decoder for the video stream")
        stream.thread_type = "AUTO"
        self._open_containers.add(container)
        return container, stream

    def _close_container(self, container: Any) -> None:
        self._open_containers.discard(container)
        container.close()

    def _probe(self) -> None:
        """Read the stream's properties and decode its first frame."""
        container, stream = self._open()
        try:
            cc = stream.codec_context
            self._codec = cc.codec.name
            self._container_format = container.format.name
            self._container_frames = int(stream.frames or 0)
            self._declared_seconds = _declared_seconds(container, stream)
            self._stream_start = int(stream.start_time or 0)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            self._fps = Fraction(rate) if rate else Fraction(24)
            self._time_base = stream.time_base
            first = None
            try:
                for packet in container.demux(stream):
                    for frame in packet.decode():
                        first = frame
                        break
                    if first is not None:
                        break
            except av.FFmpegError as exc:
                raise InputError(
                    f"{self._path}: cannot decode the video stream ({_one_line(exc)})"
                ) from None
            if first is None:
                raise InputError(f"{self._path}: the video stream has no decodable frames")
            self._coded_size = (first.width, first.height)
            self._rotate = _rotation_steps(first.rotation, self._path) if self._autorotate else 0
            self._width, self._height = (first.height, first.width) if self._rotate % 2 else (first.width, first.height)
            self._interlaced = bool(first.interlaced_frame) or str(getattr(cc, "field_order", "")) in (
                "tt", "bb", "tb", "bt")
            if self._interlaced and not self._deinterlace:
                self.notes.append(f"{self._path} is interlaced: its frames are converted as progressive pictures "
                                  "(combing where things move); pass --deinterlace to deinterlace them first (yadif)")
            if not self._autorotate and first.rotation:
                self.notes.append(f"{self._path}: its display matrix rotates it by {first.rotation:g} degrees; "
                                  "--no-autorotate converts the frames as coded")
            self._pix_fmt = first.format.name
            layout = _layout(self._pix_fmt)
            if layout is None:
                raise InputError(f"{self._path}: unsupported pixel format {self._pix_fmt}")
            self._layout = layout

            def tag(table: dict[int, str], frame_value: int, ctx_value: int) -> str | None:
                return table.get(int(frame_value)) or table.get(int(ctx_value))

            # Matrix code point 0 (GBR) on a Y'CbCr pixel format is not trusted: FFmpeg
            # decodes real GBR streams to gbrp formats, while some encoders write 0 for
            # "unknown" (e.g. old ProRes). Users can still force it with matrix="rgb".
            if layout.is_rgb:
                matrix_tag: str | None = "rgb"
            else:
                yuv_matrices = {k: v for k, v in MATRIX_NAMES.items() if k != 0}
                matrix_tag = tag(yuv_matrices, first.colorspace, cc.colorspace)
            self._stream_tags = ColourTags(
                primaries=tag(PRIMARIES_NAMES, first.color_primaries, cc.color_primaries),
                transfer=tag(TRANSFER_NAMES, first.color_trc, cc.color_trc),
                matrix=matrix_tag,
                range=tag(RANGE_NAMES, first.color_range, cc.color_range),
            )
        finally:
            self._close_container(container)

        ov = self._overrides
        if layout.is_rgb:
            matrix = "rgb"
        elif layout.kind == "gray":
            matrix = "bt709"  # unused: grey has no chroma
        else:
            matrix = ov.matrix or self._stream_tags.matrix or (
                "bt709" if self._height >= 720 else "smpte170m")
        if layout.kind == "yuv" and matrix not in SUPPORTED_MATRICES:
            raise InputError(f"{self._path}: unsupported Y'CbCr matrix {matrix}")
        if layout.kind == "yuv" and matrix == "rgb" and (layout.sub_x, layout.sub_y) != (1, 1):
            raise InputError(f"{self._path}: matrix rgb with chroma subsampling ({self._pix_fmt})")
        rng = ov.range or self._stream_tags.range or (
            "pc" if layout.is_rgb or layout.full_range_format else "tv")
        self._tags = ColourTags(
            primaries=ov.primaries or self._stream_tags.primaries,
            transfer=ov.transfer or self._stream_tags.transfer,
            matrix=matrix,
            range=rng,
        )

    # -- properties ----------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The file being read."""
        return self._path

    @property
    def width(self) -> int:
        """Picture width in pixels."""
        return self._width

    @property
    def height(self) -> int:
        """Picture height in pixels."""
        return self._height

    @property
    def time_base(self) -> Fraction | None:
        """The time base of the frames' ``pts`` (the stream's)."""
        return Fraction(self._time_base) if self._time_base else None

    @property
    def fps(self) -> Fraction:
        """Frame rate (average rate of the stream; 24 when the container gives none)."""
        return self._fps

    @property
    def tags(self) -> ColourTags:
        """Colour tags after user overrides; matrix and range are the ones decoding uses."""
        return self._tags

    @property
    def stream_tags(self) -> ColourTags:
        """Colour tags as written in the file (None where unspecified)."""
        return self._stream_tags

    @property
    def codec(self) -> str:
        """FFmpeg decoder name, e.g. ``h264``, ``hevc``, ``prores``, ``vp9``."""
        return self._codec

    @property
    def pix_fmt(self) -> str:
        """FFmpeg pixel format of the decoded frames, e.g. ``yuv420p10le``."""
        return self._pix_fmt

    @property
    def bit_depth(self) -> int:
        """Bits per sample of the decoded frames (8, 10, 12...)."""
        return self._layout.bits

    @property
    def frame_count(self) -> int:
        """Exact number of frames `frames` yields for the whole clip.

        Counted once by demuxing the video packets (empty and edit-list-discarded packets
        excluded), then cached; a full `frames` pass also fills the cache.
        """
        if self._frame_count is None:
            self._frame_count = self._count_packets()
        return self._frame_count

    def _count_packets(self) -> int:
        container, stream = self._open()
        shown = total = 0
        end_ticks: int | None = None
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if packet.is_corrupt:
                    raise InputError(
                        f"{self._path}: truncated or corrupt file (damaged packet after frame {shown})"
                    )
                total += 1
                end_ticks = self._packet_end(packet, end_ticks)
                if not packet.is_discard:
                    shown += 1
        except av.FFmpegError as exc:
            raise InputError(
                f"{self._path}: truncated or corrupt file after frame {shown} ({_one_line(exc)})"
            ) from None
        finally:
            self._close_container(container)
        self._check_complete(total, shown, end_ticks)
        return shown

    def _packet_end(self, packet: Any, latest: int | None) -> int | None:
        """The later of ``latest`` and the end of ``packet`` (pts + duration), in stream ticks."""
        if packet.pts is None:
            return latest
        dur = packet.duration or 0
        if not dur and self._time_base:
            dur = int(round(1 / (self._fps * self._time_base)))
        end = int(packet.pts) + int(dur)
        return end if latest is None or end > latest else latest

    def _check_complete(self, packets: int, reached: int, end_ticks: int | None = None) -> None:
        """Raise when the header promised more than the file holds.

        Indexed containers (MP4/MOV) promise a number of samples; the others (Matroska, WebM...)
        a duration, which a cut file keeps while losing its end: the last packet must end
        within 1.5 frame times of it.
        """
        indexed = any(f in self._container_format.split(",") for f in _INDEXED_FORMATS)
        if indexed:
            if self._container_frames and packets < self._container_frames:
                raise InputError(
                    f"{self._path}: truncated file: decoding stopped after frame {reached} "
                    f"of {self._container_frames}"
                )
            return
        if self._declared_seconds is None or end_ticks is None or not self._time_base:
            return
        got = float((end_ticks - self._stream_start) * self._time_base)
        if got < self._declared_seconds - 1.5 / float(self._fps):
            raise InputError(
                f"{self._path}: truncated file: decoding stopped after frame {reached} at {got:.3f} s "
                f"of the {self._declared_seconds:.3f} s the header declares"
            )

    # -- decoding ------------------------------------------------------------------------

    def frames(self, start: int | None = 1, end: int | None = None, every: int = 1, *,
               code_values: bool = False) -> Iterator[Frame]:
        """Yield the frames numbered ``start, start + every, ...`` up to ``end`` (inclusive).

        ``start=None`` means the first frame (1), ``end=None`` the last. ``code_values=True``:
        each frame carries its integer planes (:class:`CodeValues`, ``Frame.code``) and no
        ``rgb``; ``Frame.code.rgb()`` gives the same float frame.

        Frames are numbered from 1 in presentation order; decoding is sequential from the
        start of the file, and only the frames yielded are converted to R'G'B'.

        Raises:
            ValueError: start < 1, every < 1 or end < start.
            InputError: the clip is truncated or corrupt (naming the last good frame), or a
                frame changes size mid-stream.
        """
        if start is None:
            start = 1
        if start < 1 or every < 1 or (end is not None and end < start):
            raise ValueError(f"bad frame range start={start} end={end} every={every}")
        if self._closed:
            raise ValueError("VideoReader is closed")
        if self._frame_count is not None and start > self._frame_count:
            raise InputError(
                f"{self._path}: start frame {start} is past the last frame ({self._frame_count})"
            )
        return self._iter_frames(start, end, every, code_values)

    def _iter_frames(self, start: int, end: int | None, every: int, code_values: bool = False) -> Iterator[Frame]:
        container, stream = self._open()
        number = 0
        shown = total = 0
        end_ticks: int | None = None
        first_pts: int | None = None
        matrix, full = self._tags.matrix or "bt709", self._tags.range == "pc"
        tb = stream.time_base
        deint = _Deinterlacer(stream) if self._deinterlace and self._interlaced else None
        try:
            demux = container.demux(stream)
            while True:
                try:
                    packet = next(demux)
                except StopIteration:
                    break
                except av.FFmpegError as exc:
                    raise InputError(
                        f"{self._path}: truncated or corrupt file after frame {number} ({_one_line(exc)})"
                    ) from None
                if packet.size:
                    if packet.is_corrupt:
                        raise InputError(
                            f"{self._path}: truncated or corrupt file (damaged data after frame {number})"
                        )
                    total += 1
                    end_ticks = self._packet_end(packet, end_ticks)
                    if not packet.is_discard:
                        shown += 1
                try:
                    decoded = packet.decode()
                    if deint is not None:
                        decoded = [f for d in decoded for f in deint.push(d)]
                        if not packet.size and packet.pts is None and packet.dts is None:  # the flush packet
                            decoded += deint.push(None)
                except av.FFmpegError as exc:
                    raise InputError(
                        f"{self._path}: corrupt video: decoding failed after frame {number} ({_one_line(exc)})"
                    ) from None
                for frame in decoded:
                    if deint is not None and frame.pts is not None and frame.time_base not in (None, tb):
                        frame.pts = int(round(frame.pts * frame.time_base / tb))  # yadif's time base -> the stream's
                        frame.time_base = tb
                    number += 1
                    if frame.is_corrupt:
                        raise InputError(f"{self._path}: corrupt video: frame {number} is damaged")
                    if first_pts is None and frame.pts is not None:
                        first_pts = frame.pts
                    if end is not None and number > end:
                        return
                    if number < start or (number - start) % every:
                        continue
                    if (frame.width, frame.height) != self._coded_size:
                        raise InputError(
                            f"{self._path}: frame {number} is {frame.width}x{frame.height}, "
                            f"the stream started at {self._coded_size[0]}x{self._coded_size[1]}"
                        )
                    if frame.format.name != self._pix_fmt:
                        raise InputError(
                            f"{self._path}: frame {number} changes pixel format to {frame.format.name}"
                        )
                    if frame.pts is not None and first_pts is not None and tb is not None:
                        time = float((frame.pts - first_pts) * tb)
                    else:
                        time = float((number - 1) / self._fps)
                    alpha = _frame_alpha(frame, self._layout)
                    if self._rotate and alpha is not None:  # upright, as players show it (the display matrix)
                        alpha = np.ascontiguousarray(np.rot90(alpha, self._rotate))
                    if code_values:
                        code = CodeValues(_frame_planes(frame, self._layout), self._layout, matrix, full,
                                          frame.width, frame.height, self._rotate)
                        yield Frame(number=number, index=number - 1, pts=frame.pts, time=time, rgb=None,
                                    alpha=alpha, code=code)
                        continue
                    rgb = _frame_to_rgb(frame, self._layout, matrix, full)
                    if self._rotate:
                        rgb = np.ascontiguousarray(np.rot90(rgb, self._rotate))
                    yield Frame(number=number, index=number - 1, pts=frame.pts, time=time, rgb=rgb, alpha=alpha)
            # End of stream: every packet decoded. Check nothing went missing.
            self._check_complete(total, number, end_ticks)
            if number < shown:
                raise InputError(
                    f"{self._path}: corrupt video: decoding stopped after frame {number} of {shown}"
                )
            if self._frame_count is None:
                self._frame_count = number
            if number < start:
                raise InputError(
                    f"{self._path}: start frame {start} is past the last frame ({number})"
                )
        finally:
            self._close_container(container)

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Close any container a running `frames` iteration still holds."""
        self._closed = True
        for container in list(self._open_containers):
            self._close_container(container)

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"VideoReader({self._path!r}, {self._width}x{self._height}, {self._codec}, "
            f"{self._pix_fmt}, fps={self._fps}, tags={self._tags})"
        )


def with_overrides(tags: ColourTags, **overrides: str | None) -> ColourTags:
    """Return ``tags`` with every non-None override (normalised) replacing the tag."""
    clean = {k: normalise_tag(k, v) for k, v in overrides.items() if v is not None}
    return replace(tags, **clean)
