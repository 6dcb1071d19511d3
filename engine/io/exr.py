"""OpenEXR output (and reading back) with OpenImageIO: atomic, deterministic, one-line errors.

`write_exr` writes scene-linear RGB (half or float) plus optional single-channel layers
(``mask.Y``) and metadata to a hidden temporary file next to the target
(``.NAME.tmp-PID-RANDOM.exr``), flushes it to disk and renames it into place, so a finished
frame is never partial whatever happens to the process: a killed run leaves at most a hidden
temporary, which `hdrlift.engine.convert.remove_stale_temporaries` tidies later.

Files are deterministic: OpenImageIO stamps a "DateTime" attribute on every EXR it writes
unless told otherwise; hdrlift suppresses it (unless the caller passes one), so the same
pixels and attributes always give byte-identical files (a resumed run matches an
uninterrupted one).
"""

from __future__ import annotations

import numbers
import os
import pathlib
import secrets
from typing import Any, Mapping, NamedTuple

import numpy as np
import OpenImageIO as oiio

from hdrlift.engine.defaults import EXR_COMPRESSIONS
from hdrlift.engine.errors import InputError, OutputError
from hdrlift.engine.io.paths import require_regular_file

__all__ = ["COMPRESSIONS", "check_compression", "ExrImage", "write_exr", "read_exr", "is_complete_exr", "temporary_name",
           "frame_attributes"]

#: Compression names OpenImageIO's OpenEXR writer understands. "dwaa"/"dwab"/"zip"/"zips"
#: also take a quality or level after a colon ("dwaa:45", "zip:6").
COMPRESSIONS = EXR_COMPRESSIONS

_INT32 = (-(2**31), 2**31 - 1)


def temporary_name(final: pathlib.Path) -> pathlib.Path:
    """The hidden temporary a write of ``final`` goes through (same folder: rename is atomic)."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}.exr")


class ExrImage(NamedTuple):
    """An EXR read back: unpacks as ``pixels, attributes, channels``.

    pixels:     float32 H x W x C, every channel in file order.
    attributes: the header attributes OpenImageIO reports (name -> str, int, float or tuple).
    channels:   the channel names in file order, e.g. ``["R", "G", "B", "mask.Y"]``.
    """

    pixels: np.ndarray
    attributes: dict[str, Any]
    channels: list[str]

    @property
    def rgb(self) -> np.ndarray:
        """The R, G, B channels as a C-contiguous float32 H x W x 3 array."""
        try:
            idx = [self.channels.index(c) for c in ("R", "G", "B")]
        except ValueError:
            raise InputError(f"EXR has no R, G, B channels (channels: {', '.join(self.channels)})") from None
        return np.ascontiguousarray(self.pixels[..., idx])

    @property
    def planes(self) -> dict[str, np.ndarray]:
        """Every channel by name, each a float32 H x W array."""
        return {name: self.pixels[..., i] for i, name in enumerate(self.channels)}

    def layer(self, name: str) -> np.ndarray:
        """A single-channel layer written by `write_exr` (``name.Y``), as float32 H x W."""
        key = f"{name}.Y"
        if key not in self.channels:
            raise KeyError(f"no layer {name!r} (channels: {', '.join(self.channels)})")
        return self.pixels[..., self.channels.index(key)]


def frame_attributes(*, output_space: str, input_space: str, model: str, model_version: str,
                     weights: str | None = None, ocio_config: str = "", chromaticities=None,
                     source: str | None = None, frame: int | None = None, server: str | None = None) -> dict[str, Any]:
    """The header attributes that say how a frame was made: colour spaces (and the output's
    chromaticities), model and version, hdrlift's version and OCIO config, and where the frame
    came from. The one builder for every EXR hdrlift writes (local runs, path jobs,
    ``--server`` runs, the server's EXR replies)."""
    from hdrlift.engine import __version__

    attrs: dict[str, Any] = {
        "oiio:ColorSpace": output_space,
        "hdrlift:colorspace": output_space,
        "hdrlift:input_colorspace": input_space,
        "hdrlift:model": model,
        "hdrlift:model_version": str(model_version),
        "hdrlift:version": __version__,
    }
    if weights:
        attrs["hdrlift:weights"] = weights  # hash of the network's weights (shipped or --weights)
    if ocio_config:
        attrs["hdrlift:ocio_config"] = ocio_config
    if source is not None:
        attrs["hdrlift:source"] = str(source)
    if frame is not None:
        attrs["hdrlift:source_frame"] = int(frame)
    if server:
        attrs["hdrlift:server"] = server
    if chromaticities is not None:
        attrs["chromaticities"] = tuple(float(c) for c in chromaticities)
    return attrs


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def check_compression(compression: str) -> str:
    if not isinstance(compression, str):
        raise OutputError(f"EXR compression must be a name, got {compression!r}")
    base, _, level = compression.partition(":")
    if base.lower() not in COMPRESSIONS or (level and not level.strip().lstrip("-").replace(".", "", 1).isdigit()):
        raise OutputError(f"unknown EXR compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")
    return base.lower() + (f":{level.strip()}" if level else "")


def _as_plane(name: str, value: Any, shape: tuple[int, int]) -> np.ndarray:
    if not isinstance(name, str) or not name or any(c.isspace() for c in name) or "." in name:
        raise InputError(f"EXR layer name must be a non-empty word without dots or spaces, got {name!r}")
    a = np.asarray(value)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2 or a.shape != shape:
        raise InputError(f"EXR layer {name!r} must be {shape[0]} x {shape[1]} (or x 1), got shape {tuple(np.shape(value))}")
    if a.dtype.kind not in "fiub":
        raise InputError(f"EXR layer {name!r} must be numeric, got {a.dtype}")
    if a.dtype != np.float16:
        a = a.astype(np.float32, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(a)))
    if bad:
        raise InputError(f"EXR layer {name!r} contains NaN/Inf ({bad} values)")
    return a


def _numbers(value: Any) -> tuple[float, ...]:
    """``value`` as a flat tuple of floats, or () when it is not a non-empty sequence of numbers."""
    flat = np.asarray(value, dtype=object).ravel().tolist()
    if not flat or not all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in flat):
        return ()
    return tuple(float(v) for v in flat)


def _set_attribute(spec: oiio.ImageSpec, key: str, value: Any) -> None:
    if not isinstance(key, str) or not key:
        raise TypeError(f"EXR attribute names must be non-empty strings, got {key!r}")
    if key == "chromaticities":
        vals = tuple(float(v) for v in value)
        if len(vals) != 8:
            raise InputError(f"EXR attribute 'chromaticities' needs 8 numbers (rx ry gx gy bx by wx wy), got {len(vals)}")
        spec.attribute(key, oiio.TypeDesc("float[8]"), vals)
    elif isinstance(value, str):
        spec.attribute(key, value)
    elif isinstance(value, (bool, np.bool_)):
        spec.attribute(key, int(value))
    elif isinstance(value, numbers.Integral):
        v = int(value)
        if _INT32[0] <= v <= _INT32[1]:
            spec.attribute(key, v)
        else:  # EXR ints are 32-bit: keep larger ones exact as text
            spec.attribute(key, str(v))
    elif isinstance(value, numbers.Real):
        spec.attribute(key, float(value))
    elif isinstance(value, (tuple, list, np.ndarray)) and _numbers(value):
        vals = _numbers(value)
        spec.attribute(key, oiio.TypeDesc(f"float[{len(vals)}]"), vals)
    else:
        raise TypeError(f"EXR attribute {key!r}: unsupported value type {type(value).__name__}")


def write_exr(
    path: str | os.PathLike,
    rgb: np.ndarray,
    *,
    half: bool = True,
    compression: str = "zip",
    attributes: Mapping[str, Any] | None = None,
    layers: Mapping[str, np.ndarray] | None = None,
    alpha: np.ndarray | None = None,
) -> None:
    """Write ``rgb`` (H x W x 3, finite) as an OpenEXR file, atomically. A float16 ``rgb``
    written as half goes to OpenEXR as it is (no float32 copy; the same file as its float32
    values would give, since those round to the same half floats).

    Channels R, G, B (half or float per ``half``), ``A`` when ``alpha`` (H x W, straight as a
    PNG or ProRes 4444 stores it) is given, then one channel ``NAME.Y`` per entry of ``layers``
    (H x W or H x W x 1). OpenEXR colour is associated with its alpha, so R, G, B are written
    multiplied by ``alpha``; A is written as given. ``attributes``: header attributes; strings,
    ints, floats, and sequences of numbers (``float[n]``; ``chromaticities`` must have 8).
    ``compression``: an OpenEXR compression name (`COMPRESSIONS`).

    Raises:
        InputError: wrong shape, non-finite pixels, a bad layer.
        OutputError: unknown compression, missing or unwritable folder, full disk... (one
            line; no file is left behind, neither the target nor a temporary).
    """
    final = pathlib.Path(path)
    comp = check_compression(compression)
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"EXR pixels must be H x W x 3, got shape {tuple(a.shape)}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"EXR pixels are empty: shape {tuple(a.shape)}")
    if a.dtype.kind not in "fiub":
        raise InputError(f"EXR pixels must be numeric, got {a.dtype}")
    # half floats written as half stay as they are (the device path hands them over: no float32
    # copy); anything else is written from float32
    work = np.float16 if (half and a.dtype == np.float16) else np.float32
    a = a.astype(work, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(a)))
    if bad:
        raise InputError(f"pixels for {final} contain NaN/Inf ({bad} values)")
    h, w = a.shape[:2]
    planes = [a]
    names = ["R", "G", "B"]
    if alpha is not None:
        al = _as_plane("A", alpha, (h, w))
        planes = [(a * al[..., None]).astype(work, copy=False), al[..., None].astype(work)]  # associated colour
        names.append("A")
    for name, value in (layers or {}).items():
        planes.append(_as_plane(name, value, (h, w))[..., None].astype(work, copy=False))
        names.append(f"{name}.Y")
    pixels = np.ascontiguousarray(np.concatenate(planes, axis=2) if len(planes) > 1 else a)

    spec = oiio.ImageSpec(w, h, len(names), oiio.HALF if half else oiio.FLOAT)
    spec.channelnames = tuple(names)
    spec.attribute("compression", comp)
    spec.attribute("DateTime", "")  # OIIO would stamp the time: keep files reproducible
    for key, value in (attributes or {}).items():
        _set_attribute(spec, key, value)

    folder = final.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {final}: folder {folder} does not exist")
    if final.is_dir():
        raise OutputError(f"cannot write {final}: it is a folder")
    tmp = temporary_name(final)
    try:
        out = oiio.ImageOutput.create("openexr")
        if out is None:
            raise OutputError(f"cannot write {final}: OpenImageIO has no OpenEXR writer ({_first_line(oiio.geterror())})")
        try:
            if not out.open(str(tmp), spec):
                raise OutputError(f"cannot write {final}: {_reason(out.geterror(), tmp, final)}")
            ok = out.write_image(pixels)
            err = "" if ok else out.geterror()
        finally:
            closed = out.close()
        if not ok or not closed:
            raise OutputError(f"cannot write {final}: {_reason(err or out.geterror(), tmp, final)}")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except OutputError:
        _discard(tmp)
        raise
    except OSError as exc:
        _discard(tmp)
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from None
    except BaseException:
        _discard(tmp)
        raise


def _reason(err: str, tmp: pathlib.Path, final: pathlib.Path) -> str:
    text = _first_line(err).replace(str(tmp), str(final)) or "unknown OpenImageIO error"
    return text


def _discard(tmp: pathlib.Path) -> None:
    try:
        tmp.unlink()
    except OSError:
        pass


def read_exr(path: str | os.PathLike) -> ExrImage:
    """Read every channel and the header of an EXR (first part / subimage).

    Returns an `ExrImage`: ``pixels, attributes, channels = read_exr(path)``.
    Raises InputError (one line) for a missing, unreadable, truncated or corrupt file.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise InputError(f"{p}: no such file")
    if os.path.isdir(p):
        raise InputError(f"{p}: is a folder, not an EXR file")
    require_regular_file(p, "EXR")
    inp = oiio.ImageInput.open(p)
    if inp is None:
        raise InputError(f"cannot read EXR {p}: {_first_line(oiio.geterror()) or 'unknown format'}")
    try:
        spec = inp.spec()
        px = inp.read_image(oiio.FLOAT)
        if px is None or inp.has_error:
            raise InputError(f"cannot read EXR {p}: {_first_line(inp.geterror()) or 'truncated or corrupt file'}")
        attrs = {a.name: a.value for a in spec.extra_attribs}
        names = list(spec.channelnames)
    finally:
        inp.close()
    pixels = np.ascontiguousarray(np.asarray(px, np.float32).reshape(spec.height, spec.width, spec.nchannels))
    return ExrImage(pixels, attrs, names)


def read_attributes(path: str | os.PathLike) -> dict[str, Any] | None:
    """The header attributes of an EXR (no pixels read), or None when it is not a readable EXR."""
    try:
        p = os.fspath(path)
        if not os.path.isfile(p):
            return None
        inp = oiio.ImageInput.open(p)
        if inp is None:
            oiio.geterror()
            return None
        try:
            if inp.format_name() != "openexr":
                return None
            return {a.name: a.value for a in inp.spec().extra_attribs}
        finally:
            inp.close()
    except Exception:
        return None


def is_complete_exr(path: str | os.PathLike) -> bool:
    """True only when ``path`` is an EXR whose header and every pixel read without error.

    A truncated or damaged file (or anything else) gives False; this never raises.
    """
    try:
        p = os.fspath(path)
        if not os.path.isfile(p):
            return False
        inp = oiio.ImageInput.open(p)
        if inp is None:
            oiio.geterror()  # clear the pending error
            return False
        try:
            if inp.format_name() != "openexr":
                return False
            px = inp.read_image(oiio.FLOAT)
            return px is not None and not inp.has_error
        finally:
            inp.geterror()
            inp.close()
    except Exception:
        return False
