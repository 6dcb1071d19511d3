"""Sources other than video: still images and numbered image sequences, read with OpenImageIO.

`open_source` picks the reader for a path:

* a pattern with a frame-number field in the file name (``plate.####.dpx``, ``plate.%04d.png``)
  -> `SequenceReader` over the files that exist, numbered from their names;
* an existing still (``.png .jpg .jpeg .tif .tiff .dpx .bmp .tga``) -> `StillReader`;
* anything else that exists -> `hdrlift.engine.io.video.VideoReader`.

The readers share VideoReader's interface as `hdrlift.engine.pipeline.Pipeline` uses it:
context manager, ``frames(start, end, every)`` yielding `Frame` objects (numbers are frame
numbers: 1 for a still, the number in the file name for a sequence; ``start``/``end`` are
inclusive frame numbers), ``frame_count``, ``first_number``, ``width``, ``height``, ``tags``
and ``close()``.

Pixels are R'G'B' code values as float32 ``H x W x 3``, C-contiguous: 8-bit / 255, 16-bit
/ 65535, 10- and 12-bit DPX exactly code / (2^bits - 1), float files as stored (no clipping,
no NaN check: the pipeline checks frames). Grey images are replicated to RGB. An alpha channel
comes as the frames' ``alpha`` (straight, as stored; the stored, unassociated colour is the RGB).

An embedded ICC profile is read (:mod:`hdrlift.engine.io.icc`) and reported as the readers'
``profile``; the pipeline takes the colour space it names, or refuses a profile it cannot map.

Colour tags: image files carry none hdrlift reads, so ``tags`` is None and the pipeline
treats the pixels as sRGB, unless the caller passes overrides (``primaries``, ``transfer``,
``matrix``, ``range``, as for VideoReader); then ``tags`` is a `ColourTags` of the overrides
with the transfer defaulting to sRGB (``iec61966-2-1``).
"""

from __future__ import annotations

import os
import re
from typing import Iterator

import numpy as np
import OpenImageIO as oiio

from hdrlift.engine.errors import InputError
from hdrlift.engine.io.paths import require_regular_file
from hdrlift.engine.io.tags import ColourTags, Frame, normalise_tag

__all__ = ["STILL_EXTENSIONS", "HDR_EXTENSIONS", "open_source", "read_image", "StillReader",
           "SequenceReader", "parse_sequence_pattern"]

#: File extensions read as LDR stills / sequence frames (lower case, with the dot).
STILL_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dpx", ".bmp", ".tga"})
#: Extensions of files that are already HDR: refused with a clear message.
HDR_EXTENSIONS = frozenset({".exr", ".hdr"})

_PRINTF = re.compile(r"%(0?)(\d*)d")
_HASHES = re.compile(r"#+")


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def _tags_from_overrides(primaries=None, transfer=None, matrix=None, range=None) -> ColourTags | None:  # noqa: A002
    given = {"primaries": primaries, "transfer": transfer, "matrix": matrix, "range": range}
    clean = {k: normalise_tag(k, v) for k, v in given.items()}
    if all(v is None for v in clean.values()):
        return None
    if clean["transfer"] is None:
        clean["transfer"] = "iec61966-2-1"
    return ColourTags(**clean)


# -- pixels -----------------------------------------------------------------------------------

def _probe(path: str) -> oiio.ImageSpec:
    """The spec of an image file, checked for a supported channel count."""
    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise InputError(f"cannot read image {path}: {_first_line(oiio.geterror()) or 'unknown format'}")
    try:
        spec = oiio.ImageSpec(inp.spec())
    finally:
        inp.close()
    _check_channels(path, spec)
    return spec


def _check_channels(path: str, spec: oiio.ImageSpec) -> None:
    n = spec.nchannels
    if n not in (1, 3, 4):
        raise InputError(f"{path} has {n} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA)")
    if spec.width < 1 or spec.height < 1:
        raise InputError(f"{path}: empty image ({spec.width}x{spec.height})")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one LDR image as float32 H x W x 3 R'G'B' code values (see the module docstring).

    Raises InputError (one line, naming the file) for a missing, unreadable, truncated or
    corrupt file, or an unsupported channel count.
    """
    return read_picture(path)[0]


def read_picture(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read one LDR image: (R'G'B' float32 H x W x 3, alpha float32 H x W or None)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise InputError(f"{p}: no such file")
    if os.path.isdir(p):
        raise InputError(f"{p}: is a folder, not an image")
    config = oiio.ImageSpec()
    config.attribute("oiio:UnassociatedAlpha", 1)  # keep stored colour: alpha is dropped
    inp = oiio.ImageInput.open(p, config)
    if inp is None:
        raise InputError(f"cannot read image {p}: {_first_line(oiio.geterror()) or 'unknown format'}")
    try:
        spec = inp.spec()
        _check_channels(p, spec)
        base = spec.format.basetype
        bits = int(spec.getattribute("oiio:BitsPerSample") or 0)
        if base == oiio.UINT8:
            native, kind = "uint8", "u8"
        elif base == oiio.UINT16:
            native, kind = "uint16", "u16"
        else:
            native, kind = oiio.FLOAT, "f"
        px = inp.read_image(native)
        if px is None or inp.has_error:
            raise InputError(f"cannot read image {p}: {_first_line(inp.geterror()) or 'truncated or corrupt file'}")
    finally:
        inp.close()
    px = np.asarray(px).reshape(spec.height, spec.width, spec.nchannels)
    if kind == "u8":
        rgb = px.astype(np.float32) / np.float32(255.0)
    elif kind == "u16":
        if 0 < bits < 16:
            # DPX 10/12-bit: OIIO widens codes to 16 bits by bit replication; take them back
            code = px >> np.uint16(16 - bits)
            rgb = code.astype(np.float32) / np.float32((1 << bits) - 1)
        else:
            rgb = px.astype(np.float32) / np.float32(65535.0)
    else:
        rgb = px.astype(np.float32, copy=False)
    alpha = None
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    elif rgb.shape[2] == 4:
        alpha = np.ascontiguousarray(rgb[..., 3], dtype=np.float32)
        rgb = rgb[..., :3]
    return np.ascontiguousarray(rgb, dtype=np.float32), alpha


def embedded_profile(spec: oiio.ImageSpec, path: str):
    """The ICC profile an image carries (:class:`hdrlift.engine.io.icc.Profile`), or None."""
    from hdrlift.engine.io.icc import IccError, Profile, identify

    data = spec.getattribute("ICCProfile")
    if data is None or len(data) == 0:
        return None
    try:
        profile = identify(np.asarray(data, dtype=np.uint8).tobytes())
    except IccError as exc:
        profile = Profile(f"unreadable: {exc}", None, None, None)
    profile.source = path
    return profile


# -- readers ----------------------------------------------------------------------------------

def _check_range(start: int | None, end: int | None, every: int) -> None:
    if every < 1 or (start is not None and end is not None and end < start):
        raise ValueError(f"bad frame range start={start} end={end} every={every}")


class _ImageReader:
    """Common parts of the still and sequence readers."""

    def __init__(self, tags: ColourTags | None) -> None:
        self._tags = tags
        self._closed = False

    @property
    def tags(self) -> ColourTags | None:
        """Colour tags from the caller's overrides; None (= sRGB) when none were given."""
        return self._tags

    @property
    def profile(self):
        """The embedded ICC profile (of the first file of a sequence), or None."""
        return embedded_profile(self._spec, self.path)

    @property
    def stream_tags(self) -> ColourTags:
        """Tags found in the file(s): always unspecified."""
        return ColourTags()

    @property
    def fps(self):
        return None

    def close(self) -> None:
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StillReader(_ImageReader):
    """One still image as a one-frame source (frame number 1)."""

    def __init__(self, path: str | os.PathLike, *, primaries: str | None = None, transfer: str | None = None,
                 matrix: str | None = None, range: str | None = None) -> None:  # noqa: A002
        self._path = os.fspath(path)
        tags = _tags_from_overrides(primaries, transfer, matrix, range)
        if not os.path.exists(self._path):
            raise InputError(f"{self._path}: no such file")
        if os.path.isdir(self._path):
            raise InputError(f"{self._path}: is a folder, not an image")
        require_regular_file(self._path, "image")
        super().__init__(tags)
        self._spec = _probe(self._path)

    path = property(lambda self: self._path)
    width = property(lambda self: self._spec.width)
    height = property(lambda self: self._spec.height)
    frame_count = property(lambda self: 1)
    first_number = property(lambda self: 1)

    def frames(self, start: int | None = None, end: int | None = None, every: int = 1) -> Iterator[Frame]:
        """Yield the one frame (number 1) when it lies in ``start``-``end``."""
        _check_range(start, end, every)
        if self._closed:
            raise ValueError("StillReader is closed")
        if start is not None and start > 1:
            raise InputError(f"{self._path}: start frame {start} is past the last frame (1)")
        return self._iter(end)

    def _iter(self, end: int | None) -> Iterator[Frame]:
        if end is not None and end < 1:
            return
        rgb, alpha = read_picture(self._path)
        if rgb.shape[:2] != (self.height, self.width):
            raise InputError(f"{self._path} changed size while being read")
        yield Frame(number=1, index=0, pts=None, time=None, rgb=rgb, alpha=alpha)

    def __repr__(self) -> str:
        return f"StillReader({self._path!r}, {self.width}x{self.height})"


def parse_sequence_pattern(pattern: str | os.PathLike) -> tuple[str, re.Pattern, int] | None:
    """``(folder, regex of the file names, padding)`` for a sequence pattern, or None.

    The frame field is the last ``####`` (padding = number of #) or ``%0Nd``/``%d`` in the file
    name. The regex's group 1 is the frame number: exactly ``padding`` digits, or more digits
    without a leading zero (frame 12345 of ``####``).
    """
    s = os.fspath(pattern)
    folder, name = os.path.split(s)
    fields = [(m.start(), m.end(), int(m.group(2) or 1)) for m in _PRINTF.finditer(name)]
    fields += [(m.start(), m.end(), len(m.group(0))) for m in _HASHES.finditer(name)]
    if not fields:
        return None
    a, b, pad = max(fields)
    regex = re.compile(re.escape(name[:a]) + r"(\d+)" + re.escape(name[b:]) + r"\Z")
    return folder or ".", regex, pad


class SequenceReader(_ImageReader):
    """Numbered image files (``plate.####.dpx`` / ``plate.%04d.dpx``) as one source.

    Frames are the files that exist, in number order, numbered from their names (gaps are
    allowed and skipped); every frame must have the size of the first.
    """

    def __init__(self, pattern: str | os.PathLike, *, primaries: str | None = None, transfer: str | None = None,
                 matrix: str | None = None, range: str | None = None) -> None:  # noqa: A002
        self._pattern = os.fspath(pattern)
        tags = _tags_from_overrides(primaries, transfer, matrix, range)
        parsed = parse_sequence_pattern(self._pattern)
        if parsed is None:
            raise InputError(f"{self._pattern}: not a sequence pattern (use name.####.ext or name.%04d.ext)")
        folder, regex, pad = parsed
        ext = os.path.splitext(self._pattern)[1].lower()
        if ext in HDR_EXTENSIONS:
            raise InputError(f"{self._pattern}: {ext} images are already HDR; hdrlift reconstructs HDR from SDR images")
        if not os.path.isdir(folder):
            raise InputError(f"{self._pattern}: no such folder {folder}")
        found: dict[int, str] = {}
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise InputError(f"{self._pattern}: cannot list {folder}: {exc.strerror or exc}") from None
        for entry in entries:
            m = regex.match(entry.name)
            if not m or not entry.is_file():
                continue
            digits = m.group(1)
            if len(digits) != pad and (len(digits) < pad or digits.startswith("0")):
                continue
            n = int(digits)
            if n in found:
                raise InputError(f"{self._pattern}: frame {n} is there twice ({os.path.basename(found[n])}, {entry.name})")
            found[n] = os.path.join(folder, entry.name)
        if not found:
            raise InputError(f"{self._pattern}: no files match the sequence pattern")
        super().__init__(tags)
        self._numbers = sorted(found)
        self._files = [found[n] for n in self._numbers]
        self._spec = _probe(self._files[0])

    path = property(lambda self: self._pattern)
    width = property(lambda self: self._spec.width)
    height = property(lambda self: self._spec.height)
    frame_count = property(lambda self: len(self._numbers))
    first_number = property(lambda self: self._numbers[0])
    last_number = property(lambda self: self._numbers[-1])

    @property
    def numbers(self) -> list[int]:
        """The frame numbers found, ascending."""
        return list(self._numbers)

    @property
    def files(self) -> list[str]:
        """The files found, in frame order."""
        return list(self._files)

    def frames(self, start: int | None = None, end: int | None = None, every: int = 1) -> Iterator[Frame]:
        """Yield frames numbered ``start, start + every, ...`` (those that exist) up to ``end``.

        ``start=None``: the first frame found; ``end=None``: the last.
        """
        _check_range(start, end, every)
        if self._closed:
            raise ValueError("SequenceReader is closed")
        if start is not None and start > self.last_number:
            raise InputError(f"{self._pattern}: start frame {start} is past the last frame ({self.last_number})")
        return self._iter(self.first_number if start is None else start, end, every)

    def _iter(self, start: int, end: int | None, every: int) -> Iterator[Frame]:
        for index, (number, path) in enumerate(zip(self._numbers, self._files)):
            if end is not None and number > end:
                return
            if number < start or (number - start) % every:
                continue
            if self._closed:
                return
            require_regular_file(path, "sequence frame")  # still a file when its turn comes
            rgb, alpha = read_picture(path)
            if rgb.shape[:2] != (self.height, self.width):
                raise InputError(f"{path} is {rgb.shape[1]}x{rgb.shape[0]}, but the sequence started at "
                                 f"{self.width}x{self.height} ({os.path.basename(self._files[0])})")
            yield Frame(number=number, index=index, pts=None, time=None, rgb=rgb, alpha=alpha)

    def __repr__(self) -> str:
        return (f"SequenceReader({self._pattern!r}, frames {self.first_number}-{self.last_number} "
                f"({self.frame_count} files), {self.width}x{self.height})")


VIDEO_ONLY_OPTIONS = ("autorotate", "deinterlace")


def open_source(path: str | os.PathLike, **reader_options):
    """The reader for a video file, a still image or an image sequence pattern.

    ``reader_options``: colour-tag overrides (``primaries``, ``transfer``, ``matrix``,
    ``range``) handed to the reader, and the video readers' ``autorotate`` and ``deinterlace``
    (pictures have neither). Raises InputError for a missing path, a folder, or a file no
    reader can open.
    """
    p = os.fspath(path)
    video_options = {k: reader_options.pop(k) for k in VIDEO_ONLY_OPTIONS if k in reader_options}
    if not os.path.exists(p) and parse_sequence_pattern(p) is not None:
        return SequenceReader(p, **reader_options)
    if not os.path.exists(p):
        raise InputError(f"{p}: no such file")
    if os.path.isdir(p):
        raise InputError(f"{p}: is a folder; give a video file, an image, or a sequence pattern such as "
                         f"{os.path.join(p, 'name.####.png')}")
    require_regular_file(p)
    ext = os.path.splitext(p)[1].lower()
    if ext in HDR_EXTENSIONS:
        raise InputError(f"{p}: {ext} images are already HDR; hdrlift reconstructs HDR from SDR images")
    if ext in STILL_EXTENSIONS:
        return StillReader(p, **reader_options)
    from hdrlift.engine.io.video import VideoReader  # PyAV only when a video is opened

    return VideoReader(p, **reader_options, **video_options)
