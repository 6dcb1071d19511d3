"""HDR10 and HLG delivery masters: display mapping, transfer functions and a 10-bit HEVC writer.

The pipeline's frames are scene-linear Rec.709 with SDR display white at 1.0 (hdrlift's network
output domain, ``Linear Rec.709 (sRGB)``). A delivery master is display-referred BT.2100: light on
a reference display in cd/m^2, BT.2020 primaries, encoded with PQ (SMPTE ST 2084, "HDR10") or HLG
(ARIB STD-B67 / BT.2100), as 10-bit narrow-range Y'CbCr 4:2:0 in HEVC. The mapping, in order:

1. **Primaries**: the input colour space -> ``Linear Rec.2020`` through OpenColorIO
   (:meth:`ColourManager.converter`); no RGB matrix is written here. Negative results (colours
   outside BT.2020, only possible from wider inputs such as ACEScg) are clipped to 0.
2. **Level** (ITU-R BT.2408): SDR display white 1.0 -> HDR reference white ``white_nits``
   (203 cd/m^2), a plain scale. Diffuse white therefore sits at 58 % PQ and 75 % HLG.
3. **Roll-off** (ITU-R BT.2390 EETF, section 5.4): light above the knee is compressed smoothly
   so that the source range [0, ``source_peak_nits``] (10,000 cd/m^2, the whole PQ range, by
   default) lands in [0, ``peak_nits``]. The curve works in PQ space; below the knee
   ``KS = 1.5 * PQ(peak) / PQ(source peak) - 0.5`` it is the identity (for 1000 cd/m^2 the
   knee is at 317 cd/m^2, so reference white and everything below it pass unchanged; below a
   peak of about 700 cd/m^2 the knee drops under reference white). It is
   applied to max(R, G, B) and the three channels are scaled together (``roll_off="maxrgb"``,
   hue-preserving), or to each channel (``roll_off="rgb"``, which bleaches bright colours
   toward white as many TVs do).
4. **Transfer**: PQ inverse EOTF of the absolute light; or, for HLG, the BT.2100 inverse OOTF
   of a display of nominal peak ``peak_nits`` (system gamma 1.2 at 1000 cd/m^2) then the HLG
   OETF. HLG is scene-referred: the signal describes relative scene light and each display
   applies its own OOTF. hdrlift's light is display light (BT.2408 203 cd/m^2 white on the
   reference display), so it is converted the way BT.2100/BT.2408 convert display light to HLG:
   through the inverse OOTF of the nominal reference display. On a 1000 cd/m^2 display the
   HLG signal of reference white is 0.75, BT.2408's figure.
5. **Signal**: R'G'B' -> Y'CbCr with the BT.2020 non-constant-luminance matrix, 10-bit narrow
   ("tv") range, chroma 4:2:0 (MPEG-2/H.264/HEVC siting: horizontally co-sited, vertically
   centred), built here in numpy: swscale's RGB -> yuv420p10le conversion is off by about
   3 code values at white (white 943 instead of 940; see docs/delivery.md).

:class:`HdrMasterWriter` encodes with libx265 (PyAV), tags the stream on the codec context and
in x265's parameters (VUI + the container's ``colr`` box), uses the ``hvc1`` sample entry, copies
the audio of a source file, keeps the caller's timestamps and writes atomically. For PQ it also
writes SMPTE ST 2086 mastering-display and CTA-861.3 content-light-level metadata, with MaxCLL and
MaxFALL measured on the frames written: x265 needs them before its first frame, so PQ frames are
first spooled, losslessly (FFV1, 10-bit), to a hidden temporary file beside the output while the
statistics are gathered, and encoded from the spool on :meth:`HdrMasterWriter.close`. The same
values go into ``mdcv``/``clli`` boxes of the sample entry. See docs/delivery.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import numbers
import os
import pathlib
import struct
import tempfile
import time
from fractions import Fraction
from typing import Any, Iterator

import numpy as np

from hdrlift.engine.atomic import replacing
from hdrlift.engine.colour import NETWORK_OUTPUT_SPACE, ColourManager
from hdrlift.engine.convert import FrameSink, prepare_dir
from hdrlift.engine.errors import OutputError

__all__ = [
    "DeliveryError",
    "PQ_MAX_NITS",
    "REFERENCE_WHITE_NITS",
    "pq_inverse_eotf",
    "pq_eotf",
    "hlg_oetf",
    "hlg_inverse_oetf",
    "hlg_system_gamma",
    "hlg_ootf",
    "hlg_inverse_ootf",
    "bt2390_eetf",
    "MasteringDisplay",
    "DisplayMapping",
    "ycbcr420_from_rgb",
    "quantise_narrow",
    "frame_light_levels",
    "LightLevels",
    "HdrMasterWriter",
    "MasterReport",
    "add_hdr_boxes",
    "PEAK_RANGE",
]


class DeliveryError(OutputError):
    """A master that cannot be made as asked (8-bit HDR10, peak out of range, wrong container...)."""


# -- SMPTE ST 2084 (PQ) ---------------------------------------------------------------------------
PQ_MAX_NITS = 10000.0
_M1 = 2610.0 / 16384.0
_M2 = 2523.0 / 4096.0 * 128.0
_C1 = 3424.0 / 4096.0
_C2 = 2413.0 / 4096.0 * 32.0
_C3 = 2392.0 / 4096.0 * 32.0

#: ITU-R BT.2408: the level of HDR reference (diffuse) white, cd/m^2.
REFERENCE_WHITE_NITS = 203.0


def _float(x: Any) -> np.ndarray:
    """float32 arrays stay float32 (the frame path); anything else becomes float64."""
    a = np.asarray(x)
    return a if a.dtype == np.float32 else a.astype(np.float64)


def pq_inverse_eotf(nits: Any) -> np.ndarray:
    """SMPTE ST 2084 inverse EOTF: absolute luminance (cd/m^2, clipped to [0, 10000]) -> signal
    in [0, 1]. float32 in, float32 out; float64 otherwise."""
    y = np.clip(_float(nits) / PQ_MAX_NITS, 0.0, 1.0)
    p = np.power(y, _M1)
    return np.power((_C1 + _C2 * p) / (1.0 + _C3 * p), _M2)


def pq_eotf(signal: Any) -> np.ndarray:
    """SMPTE ST 2084 EOTF: signal in [0, 1] (clipped) -> absolute luminance in cd/m^2."""
    e = np.power(np.clip(_float(signal), 0.0, 1.0), 1.0 / _M2)
    return PQ_MAX_NITS * np.power(np.maximum(e - _C1, 0.0) / (_C2 - _C3 * e), 1.0 / _M1)


# -- BT.2100 HLG -----------------------------------------------------------------------------------
_HLG_A = 0.17883277
_HLG_B = 1.0 - 4.0 * _HLG_A
_HLG_C = 0.5 - _HLG_A * math.log(4.0 * _HLG_A)
#: BT.2100 HLG luminance weights of BT.2020 R, G, B (part of the HLG OOTF's definition).
_HLG_LUMA = (0.2627, 0.6780, 0.0593)


def hlg_oetf(scene: Any) -> np.ndarray:
    """BT.2100 HLG OETF: normalised scene light E in [0, 1] (clipped) -> signal E' in [0, 1]."""
    e = np.clip(_float(scene), 0.0, 1.0)
    low = np.sqrt(3.0 * e)
    high = _HLG_A * np.log(np.maximum(12.0 * e - _HLG_B, 1e-12)) + _HLG_C
    return np.where(e <= 1.0 / 12.0, low, high)


def hlg_inverse_oetf(signal: Any) -> np.ndarray:
    """BT.2100 HLG inverse OETF: signal E' in [0, 1] (clipped) -> normalised scene light E."""
    s = np.clip(_float(signal), 0.0, 1.0)
    return np.where(s <= 0.5, s * s / 3.0, (np.exp((s - _HLG_C) / _HLG_A) + _HLG_B) / 12.0)


def hlg_system_gamma(peak_nits: float) -> float:
    """BT.2100 HLG system gamma of a display of nominal peak ``peak_nits`` (1.2 at 1000 cd/m^2;
    the formula holds from 400 to 2000 cd/m^2)."""
    return 1.2 + 0.42 * math.log10(float(peak_nits) / 1000.0)


def _hlg_luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * _HLG_LUMA[0] + rgb[..., 1] * _HLG_LUMA[1] + rgb[..., 2] * _HLG_LUMA[2]


def hlg_ootf(scene_rgb: Any, peak_nits: float = 1000.0) -> np.ndarray:
    """BT.2100 HLG OOTF (zero black level): scene light RGB in [0, 1] (BT.2020) -> display light
    in cd/m^2, ``F_D = Lw * Ys^(gamma - 1) * E``."""
    e = np.clip(_float(scene_rgb), 0.0, 1.0)
    gamma = hlg_system_gamma(peak_nits)
    ys = _hlg_luma(e)[..., None]
    return float(peak_nits) * np.power(ys, gamma - 1.0, where=ys > 0, out=np.zeros_like(ys)) * e


def hlg_inverse_ootf(display_nits: Any, peak_nits: float = 1000.0) -> np.ndarray:
    """Inverse of :func:`hlg_ootf`: display light RGB in cd/m^2 (BT.2020, clipped to [0, Lw])
    -> normalised scene light in [0, 1]: ``E = (F_D / Lw) * Yd^((1 - gamma) / gamma)``."""
    fd = np.clip(_float(display_nits) / np.float32(peak_nits), 0.0, 1.0)
    gamma = hlg_system_gamma(peak_nits)
    yd = _hlg_luma(fd)[..., None]
    gain = np.power(yd, (1.0 - gamma) / gamma, where=yd > 0, out=np.zeros_like(yd))
    return np.clip(fd * gain, 0.0, 1.0)


# -- BT.2390 EETF ----------------------------------------------------------------------------------
def bt2390_eetf(nits: Any, target_peak: float, source_peak: float = PQ_MAX_NITS,
                target_black: float = 0.0, source_black: float = 0.0) -> np.ndarray:
    """ITU-R BT.2390 (section 5.4) EETF: luminance in cd/m^2 of a source mastered on
    [source_black, source_peak] -> luminance on a display of [target_black, target_peak].

    In PQ space, normalised to the source range: identity below the knee
    ``KS = 1.5 * maxLum - 0.5``, a Hermite spline from (KS, slope 1) to (1, maxLum) above it
    (monotonic: KS is the largest knee for which it is), then the black-level lift
    ``E + minLum * (1 - E)^4``. Values outside the source range are clipped to it first.
    A target at least as wide as the source gives the identity (after the clip).
    """
    lb, lw = float(pq_inverse_eotf(source_black)), float(pq_inverse_eotf(source_peak))
    span = lw - lb
    e1 = (pq_inverse_eotf(np.clip(_float(nits), source_black, source_peak)) - lb) / span
    min_lum = (float(pq_inverse_eotf(target_black)) - lb) / span
    max_lum = (float(pq_inverse_eotf(min(target_peak, source_peak))) - lb) / span
    ks = 1.5 * max_lum - 0.5
    if ks >= 1.0:
        e2 = e1
    else:
        t = (e1 - ks) / (1.0 - ks)
        t2, t3 = t * t, t * t * t
        spline = ((2 * t3 - 3 * t2 + 1) * ks + (t3 - 2 * t2 + t) * (1.0 - ks)
                  + (-2 * t3 + 3 * t2) * max_lum)
        e2 = np.where(e1 < ks, e1, spline)
    e3 = e2 + min_lum * np.power(np.clip(1.0 - e2, 0.0, 1.0), 4)
    return pq_eotf(e3 * span + lb)


# -- mastering display -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MasteringDisplay:
    """SMPTE ST 2086 mastering display colour volume: CIE 1931 xy of the red, green, blue
    primaries and white, and the display's max and min luminance in cd/m^2."""

    primaries: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    white: tuple[float, float]
    max_nits: float
    min_nits: float = 0.0001

    @classmethod
    def from_colour_space(cls, space: str, max_nits: float, min_nits: float = 0.0001,
                          colour: ColourManager | None = None) -> "MasteringDisplay":
        """The primaries and white of an OCIO scene-linear colour space (e.g. ``Linear P3-D65``,
        ``Linear Rec.2020``), measured by :meth:`ColourManager.chromaticities`."""
        cm = colour or ColourManager()
        rx, ry, gx, gy, bx, by, wx, wy = cm.chromaticities(space)
        return cls(((rx, ry), (gx, gy), (bx, by)), (wx, wy), float(max_nits), float(min_nits))

    def codes(self) -> dict[str, Any]:
        """The integer codes of HEVC SEI / ST 2086: xy in 0.00002 units, luminance in 0.0001."""
        def xy(p: tuple[float, float]) -> tuple[int, int]:
            return round(p[0] * 50000), round(p[1] * 50000)
        r, g, b = (xy(p) for p in self.primaries)
        return {"R": r, "G": g, "B": b, "WP": xy(self.white),
                "L": (round(self.max_nits * 10000), round(self.min_nits * 10000))}

    def x265(self) -> str:
        """x265's ``master-display`` value, ``G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)``."""
        c = self.codes()
        return "".join(f"{k}({c[k][0]},{c[k][1]})" for k in ("G", "B", "R", "WP", "L"))

    def mdcv_payload(self) -> bytes:
        """The body of an ISOBMFF/QuickTime ``mdcv`` box (primaries in G, B, R order, as the SEI)."""
        c = self.codes()
        return struct.pack(">8H2I", *c["G"], *c["B"], *c["R"], *c["WP"], c["L"][0], c["L"][1])


_MASTERING_SPACES = {"p3-d65": "lin_p3d65", "p3d65": "lin_p3d65", "display-p3": "lin_p3d65",
                     "bt2020": "lin_rec2020", "rec2020": "lin_rec2020"}


# -- display mapping -------------------------------------------------------------------------------
_TRANSFERS = {"pq": "pq", "hdr10": "pq", "smpte2084": "pq", "st2084": "pq",
              "hlg": "hlg", "arib-std-b67": "hlg"}
#: Peak luminance (cd/m^2) accepted for each transfer: HDR10 masters from a 400 cd/m^2
#: display up to the PQ limit; HLG within the range of BT.2100's system-gamma formula.
PEAK_RANGE = {"pq": (400.0, 10000.0), "hlg": (400.0, 2000.0)}


def _transfer(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    if key not in _TRANSFERS:
        raise DeliveryError(f"unknown HDR transfer {name!r}; use pq (HDR10, SMPTE ST 2084) or hlg (BT.2100)")
    return _TRANSFERS[key]


@dataclasses.dataclass
class DisplayMapping:
    """Scene-linear frames (``input_space``, SDR white = 1.0) -> BT.2100 R'G'B' signal.

    ``transfer`` "pq" or "hlg"; ``peak_nits`` the target display peak (the EETF's target; for
    HLG also the nominal peak of the reference display of the inverse OOTF); ``source_peak_nits``
    the top of the source range the roll-off compresses (light above it is clipped);
    ``white_nits`` where SDR white lands (BT.2408: 203); ``roll_off`` "maxrgb" or "rgb".
    """

    transfer: str = "pq"
    peak_nits: float = 1000.0
    source_peak_nits: float = PQ_MAX_NITS
    white_nits: float = REFERENCE_WHITE_NITS
    roll_off: str = "maxrgb"
    input_space: str = NETWORK_OUTPUT_SPACE
    colour: ColourManager | None = None

    def __post_init__(self) -> None:
        self.transfer = _transfer(self.transfer)
        lo, hi = PEAK_RANGE[self.transfer]
        for label, v in (("peak", self.peak_nits), ("source peak", self.source_peak_nits),
                         ("reference white", self.white_nits)):
            if not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise DeliveryError(f"{label} must be a number of cd/m^2, got {v!r}")
        if not lo <= self.peak_nits <= hi:
            raise DeliveryError(f"peak {self.peak_nits:g} cd/m^2 is outside the range of a "
                                f"{'HDR10' if self.transfer == 'pq' else 'HLG'} master "
                                f"({lo:g}-{hi:g} cd/m^2)")
        if not self.peak_nits <= self.source_peak_nits <= PQ_MAX_NITS:
            raise DeliveryError(f"source peak {self.source_peak_nits:g} cd/m^2 must lie between the "
                                f"peak ({self.peak_nits:g}) and 10000 cd/m^2")
        if not 80.0 <= self.white_nits < self.peak_nits:
            raise DeliveryError(f"reference white {self.white_nits:g} cd/m^2 must be at least 80 and "
                                f"below the peak ({self.peak_nits:g})")
        if self.roll_off not in ("maxrgb", "rgb"):
            raise DeliveryError(f"unknown roll-off {self.roll_off!r}; use maxrgb or rgb")
        self.peak_nits, self.source_peak_nits = float(self.peak_nits), float(self.source_peak_nits)
        self.white_nits = float(self.white_nits)
        cm = self.colour or ColourManager()
        self.colour = cm
        self._to_2020 = cm.converter(self.input_space, cm.resolve("lin_rec2020"))

    def display_nits(self, frame: np.ndarray) -> np.ndarray:
        """BT.2020 linear light in cd/m^2 before the roll-off (float32 H x W x 3)."""
        rgb = self._to_2020(np.asarray(frame, dtype=np.float32))
        np.maximum(rgb, 0.0, out=rgb)
        rgb *= np.float32(self.white_nits)
        return rgb

    def rolled_off(self, nits: np.ndarray) -> np.ndarray:
        """The BT.2390 EETF toward ``peak_nits`` applied per ``roll_off``."""
        eetf = lambda v: bt2390_eetf(v, self.peak_nits, self.source_peak_nits)  # noqa: E731
        if self.roll_off == "rgb":
            return eetf(nits)
        m = nits.max(axis=-1, keepdims=True)
        scale = np.divide(eetf(m), m, out=np.ones_like(m), where=m > 0)
        return np.minimum(nits * scale, self.peak_nits)

    def signal(self, frame: np.ndarray) -> np.ndarray:
        """R'G'B' signal in [0, 1] (float32 H x W x 3, BT.2020 primaries, PQ or HLG)."""
        light = self.rolled_off(self.display_nits(frame))
        if self.transfer == "pq":
            return pq_inverse_eotf(light)
        return hlg_oetf(hlg_inverse_ootf(light, self.peak_nits))


# -- Y'CbCr 4:2:0, 10-bit narrow range ------------------------------------------------------------
#: BT.2020 non-constant-luminance KR, KB (the Y'CbCr signal encoding of BT.2020/BT.2100).
_KR, _KB = 0.2627, 0.0593


def quantise_narrow(signal: np.ndarray, bits: int = 10, chroma: bool = False) -> np.ndarray:
    """BT.2100 narrow-range quantisation: round((219 E' + 16) 2^(n-8)) for Y' and R'G'B',
    round((224 C + 128) 2^(n-8)) for Cb/Cr; clipped to the codes a stream may carry
    (2^(n-8) ... 2^n - 2^(n-8) - 1, e.g. 4 ... 1019 at 10 bits)."""
    k = float(1 << (bits - 8))
    v = (224.0 * signal + 128.0) * k if chroma else (219.0 * signal + 16.0) * k
    return np.clip(np.rint(v), k, (1 << bits) - k - 1).astype(np.uint16)


def ycbcr420_from_rgb(signal: np.ndarray, bits: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R'G'B' signal (H x W x 3, even H and W) -> narrow-range Y' (H x W) and Cb, Cr
    (H/2 x W/2) code planes, uint16, BT.2020 non-constant luminance.

    Chroma is computed per pixel, then filtered to MPEG-2/H.264/HEVC sites (chroma_loc 0:
    co-sited with even luma columns, centred between row pairs): [1 2 1]/4 horizontally
    (edges repeated), the mean of the two rows vertically.
    """
    s = np.asarray(signal, dtype=np.float64)
    h, w = s.shape[:2]
    if h % 2 or w % 2:
        raise DeliveryError(f"4:2:0 needs an even width and height, got {w}x{h}")
    r, g, b = s[..., 0], s[..., 1], s[..., 2]
    y = _KR * r + (1.0 - _KR - _KB) * g + _KB * b
    cb = (b - y) / (2.0 * (1.0 - _KB))
    cr = (r - y) / (2.0 * (1.0 - _KR))

    def sub(c: np.ndarray) -> np.ndarray:
        c = 0.5 * (c[0::2] + c[1::2])
        left = np.concatenate([c[:, :1], c[:, 1:-1:2]], axis=1)
        return 0.25 * left + 0.5 * c[:, 0::2] + 0.25 * c[:, 1::2]

    return (quantise_narrow(y, bits), quantise_narrow(sub(cb), bits, chroma=True),
            quantise_narrow(sub(cr), bits, chroma=True))


# -- content light level ---------------------------------------------------------------------------
def frame_light_levels(pq_signal: np.ndarray, bits: int = 10) -> tuple[float, float]:
    """(max, average) over the frame of max(R, G, B) in cd/m^2 (CTA-861.3 Annex A) of a PQ
    R'G'B' signal, after the narrow-range quantisation it is written with."""
    k = float(1 << (bits - 8))
    code = quantise_narrow(np.asarray(pq_signal).max(axis=-1), bits).astype(np.float64)
    nits = pq_eotf((code / k - 16.0) / 219.0)
    return float(nits.max()), float(nits.mean())


@dataclasses.dataclass
class LightLevels:
    """Running MaxCLL / MaxFALL (CTA-861.3): the largest per-pixel max(R, G, B) and the largest
    frame average of it, in cd/m^2, over the frames added. Reported rounded up to integers."""

    max_pixel: float = 0.0
    max_frame_average: float = 0.0
    frames: int = 0

    def add(self, pq_signal: np.ndarray, bits: int = 10) -> None:
        peak, mean = frame_light_levels(pq_signal, bits)
        self.max_pixel = max(self.max_pixel, peak)
        self.max_frame_average = max(self.max_frame_average, mean)
        self.frames += 1

    @property
    def max_cll(self) -> int:
        return min(65535, math.ceil(self.max_pixel - 1e-6))

    @property
    def max_fall(self) -> int:
        return min(65535, math.ceil(self.max_frame_average - 1e-6))


# -- ISOBMFF mdcv / clli boxes ---------------------------------------------------------------------
_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl")


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, bytes]]:
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8:i + 16])[0]
        elif size == 0:
            size = end - i
        if size < 8 or i + size > end:
            raise DeliveryError("damaged MP4 box structure while adding HDR metadata boxes")
        yield i, size, kind
        i += size


def _rewrite_moov(moov: bytes, extra: dict[bytes, bytes]) -> bytes:
    """``moov`` with ``extra`` boxes (type -> payload) in the video track's first sample entry:
    replaced where present, appended otherwise. Every box on the way gets its new size."""
    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(payload), kind) + payload

    def sample_entry(entry: bytes) -> bytes:
        kind, fixed = entry[4:8], entry[8:8 + 78]  # VisualSampleEntry fields
        children = entry[8 + 78:]
        kept = b"".join(children[j:j + s] for j, s, k in _boxes(children, 0, len(children)) if k not in extra)
        return box(kind, fixed + kept + b"".join(box(k, v) for k, v in extra.items()))

    def walk(buf: bytes) -> tuple[bytes, bool]:
        out, done = bytearray(), False
        for i, size, kind in _boxes(buf, 0, len(buf)):
            whole = buf[i:i + size]
            editable = kind in _CONTAINERS[1:] or kind == b"stsd"
            if done or not editable or (kind == b"trak" and _find_handler(whole[8:]) != b"vide"):
                out += whole
                continue
            if struct.unpack(">I", whole[:4])[0] == 1:
                raise DeliveryError("64-bit box sizes in the movie header; cannot add HDR metadata boxes")
            if kind == b"stsd":
                head, entries = whole[8:16], whole[16:]
                first = next(_boxes(entries, 0, len(entries)))
                out += box(kind, head + sample_entry(entries[:first[1]]) + entries[first[1]:])
                done = True
            else:
                new, done = walk(whole[8:])
                out += box(kind, new)
        return bytes(out), done

    body, done = walk(moov[8:])
    if not done:
        raise DeliveryError("no video sample entry found while adding HDR metadata boxes")
    return struct.pack(">I4s", 8 + len(body), b"moov") + body


def _find_handler(trak_body: bytes) -> bytes | None:
    for i, size, kind in _boxes(trak_body, 0, len(trak_body)):
        if kind == b"mdia":
            for j, s, k in _boxes(trak_body, i + 8, i + size):
                if k == b"hdlr":
                    return trak_body[j + 16:j + 20]
    return None


def add_hdr_boxes(path: str | os.PathLike, mastering: MasteringDisplay, max_cll: int, max_fall: int) -> None:
    """Put ``mdcv`` (ST 2086) and ``clli`` (CTA-861.3) boxes in the video sample entry of an
    MP4/MOV file whose ``moov`` follows its media data (as FFmpeg writes without faststart), so
    no chunk offset moves. Rewrites the file's tail in place."""
    top: list[tuple[int, int, bytes]] = []
    with open(path, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        pos = 0
        while pos + 8 <= end:  # top-level box headers only: the media data is never read
            f.seek(pos)
            head = f.read(16)
            size, kind = struct.unpack(">I4s", head[:8])
            if size == 1:
                size = struct.unpack(">Q", head[8:16])[0]
            elif size == 0:
                size = end - pos
            if size < 8 or pos + size > end:
                raise DeliveryError("damaged MP4 box structure while adding HDR metadata boxes")
            top.append((pos, size, kind))
            pos += size
        moov = [(i, n) for i, n, k in top if k == b"moov"]
        mdat_end = max((i + n for i, n, k in top if k == b"mdat"), default=0)
        if len(moov) != 1 or moov[0][0] < mdat_end or moov[0][0] + moov[0][1] != end:
            raise DeliveryError("cannot add HDR metadata boxes: the movie header is not at the end of the file")
        start, size = moov[0]
        f.seek(start)
        new = _rewrite_moov(f.read(size), {b"mdcv": mastering.mdcv_payload(),
                                           b"clli": struct.pack(">2H", max_cll, max_fall)})
        f.seek(start)
        f.write(new)
        f.truncate()


# -- the writer ------------------------------------------------------------------------------------
_CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}
_TAGS = {  # FFmpeg enum values (ITU-T H.273 code points) and x265 names
    "primaries": (9, "bt2020"),
    "pq": (16, "smpte2084"),
    "hlg": (18, "arib-std-b67"),
    "matrix": (9, "bt2020nc"),
}


@dataclasses.dataclass
class MasterReport:
    """What :meth:`HdrMasterWriter.close` wrote."""

    path: pathlib.Path
    frames: int
    transfer: str
    peak_nits: float
    max_cll: int | None  # PQ only
    max_fall: int | None
    audio_packets: int
    seconds: float


class _AudioCopy:
    """Stream copy of the first audio stream of a source into an output container, muxed
    lazily so that it interleaves with the video."""

    def __init__(self, source: str) -> None:
        import av

        try:
            self._in = av.open(source, "r")
        except (av.FFmpegError, OSError) as exc:
            raise DeliveryError(f"cannot read audio from {source}: {getattr(exc, 'strerror', None) or exc}") from None
        streams = list(self._in.streams.audio)
        self.stream = streams[0] if streams else None
        self._out_stream = None
        self._packets: Iterator[Any] | None = None
        self._pending: Any = None
        self.copied = 0

    def check(self, fmt: str, suffix: str) -> None:
        """Refuse early an audio codec the container cannot store (found by a dry run)."""
        import av

        if self.stream is None:
            return
        name = self.stream.codec_context.name if self.stream.codec_context else "unknown"
        try:
            with av.open(io.BytesIO(), "w", format=fmt) as probe:
                if name not in probe.supported_codecs:
                    raise ValueError(f"{fmt} has no sample entry for it")
                probe.add_stream_from_template(self.stream)
                probe.start_encoding()
        except (av.FFmpegError, ValueError) as exc:
            raise DeliveryError(f"the source's {name} audio cannot be copied into {suffix} "
                                f"({getattr(exc, 'strerror', None) or exc}); write .mov or drop the audio") from None

    def attach(self, out: Any) -> None:
        if self.stream is not None:
            self._out_stream = out.add_stream_from_template(self.stream)
            self._packets = iter(self._in.demux(self.stream))

    def _next(self) -> Any:
        for pkt in self._packets or ():
            if pkt.dts is not None and pkt.size:
                return pkt
        return None

    def mux_until(self, out: Any, seconds: float | None) -> None:
        """Mux the audio packets that start before ``seconds`` (all of them for None)."""
        if self._out_stream is None:
            return
        while True:
            if self._pending is None:
                self._pending = self._next()
                if self._pending is None:
                    return
            pkt = self._pending
            if seconds is not None and float(pkt.dts * pkt.time_base) > seconds:
                return
            pkt.stream = self._out_stream
            out.mux(pkt)
            self.copied += 1
            self._pending = None

    def close(self) -> None:
        self._in.close()


class HdrMasterWriter:
    """Write scene-linear frames as an HDR10 (PQ) or HLG 10-bit HEVC master (.mp4/.mov).

    ``path``: the output (.mp4, .m4v or .mov). ``transfer``: "pq" (HDR10) or "hlg".
    ``peak_nits``: the display peak the BT.2390 roll-off targets and the mastering display's
    max luminance (PQ: 400-10000, default 1000; HLG: 400-2000, the nominal display of the
    inverse OOTF). ``fps``: frame rate (Fraction or number). ``time_base``: of the ``pts``
    given to :meth:`write` (default 1/fps); pass the source stream's time base and its frames'
    pts to keep the timing exactly, gaps included. ``width``/``height``: even.
    ``audio_from``: a media file whose first audio stream is copied (no re-encode); a file
    without audio gives a master without audio. ``crf``/``preset``: x265 quality and speed
    (defaults 16 and "medium": a master, not a stream); ``x265_params``: more x265 options
    (``{"lossless": 1}``, ``{"keyint": 48}``...), which cannot override the colour signalling.
    ``mastering_display``: "p3-d65" (default), "bt2020" or a :class:`MasteringDisplay`;
    ``source_peak_nits``, ``white_nits``, ``roll_off``, ``input_space``, ``colour``: see
    :class:`DisplayMapping`. ``bit_depth``: must be 10. ``spool_dir``: folder of the PQ
    spool (default: the output's folder).

    The file appears under ``path`` only when :meth:`close` succeeds; until then it is written
    under a hidden temporary name, removed with the spool on an error, Ctrl-C included, when
    the writer is used as a context manager (or :meth:`abort` is called).
    """

    def __init__(self, path: str | os.PathLike, *, transfer: str = "pq", peak_nits: float = 1000.0,
                 fps: Fraction | float | int, width: int, height: int, time_base: Fraction | None = None,
                 audio_from: str | os.PathLike | None = None, crf: float = 16, preset: str = "medium",
                 x265_params: dict[str, Any] | None = None, bit_depth: int = 10,
                 mastering_display: str | MasteringDisplay = "p3-d65",
                 source_peak_nits: float = PQ_MAX_NITS, white_nits: float = REFERENCE_WHITE_NITS,
                 roll_off: str = "maxrgb", input_space: str = NETWORK_OUTPUT_SPACE,
                 colour: ColourManager | None = None, spool_dir: str | os.PathLike | None = None) -> None:
        import av

        self.path = pathlib.Path(path)
        self._t0 = time.perf_counter()
        kind = _transfer(transfer)
        if bit_depth != 10:
            what = "HDR10" if kind == "pq" else "HLG"
            raise DeliveryError(f"{bit_depth}-bit {what} is not deliverable: BT.2100 masters in HEVC "
                                f"Main 10 are 10-bit (8-bit PQ/HLG bands visibly)")
        suffix = self.path.suffix.lower()
        if suffix not in _CONTAINER_FORMATS:
            raise DeliveryError(f"{self.path.name}: an HDR master goes in .mp4, .m4v or .mov (HEVC with "
                                f"the hvc1 sample entry and colr/mdcv/clli boxes), not '{suffix or 'no extension'}'")
        if "libx265" not in av.codecs_available:
            raise DeliveryError("this FFmpeg build (PyAV) has no libx265 encoder; HEVC masters need it")
        if int(width) != width or int(height) != height or width < 2 or height < 2 or width % 2 or height % 2:
            raise DeliveryError(f"4:2:0 HEVC needs an even width and height, got {width}x{height}")
        try:
            self.fps = Fraction(fps).limit_denominator(1_000_000)
        except (TypeError, ValueError):
            raise DeliveryError(f"frame rate must be a number, got {fps!r}") from None
        if not 0 < self.fps <= 1000:
            raise DeliveryError(f"frame rate {fps} is out of range")
        self.time_base = Fraction(time_base) if time_base is not None else 1 / self.fps
        if self.time_base <= 0:
            raise DeliveryError(f"time base must be positive, got {time_base}")
        if not isinstance(crf, numbers.Real) or not 0 <= crf <= 51:
            raise DeliveryError(f"x265 crf must lie in 0-51, got {crf!r}")
        self.mapping = DisplayMapping(kind, peak_nits, source_peak_nits, white_nits, roll_off,
                                      input_space, colour)
        self.transfer, self.peak_nits = kind, self.mapping.peak_nits
        # The brightest PQ code whose light does not exceed the peak: rounding PQ(1000 cd/m^2)
        # to the nearest 10-bit code would give 1005 cd/m^2, above the mastering display.
        top = math.floor(876.0 * float(pq_inverse_eotf(self.peak_nits)) + 64.0)
        self._max_signal = np.float32((top - 64.0) / 876.0) if kind == "pq" else np.float32(1.0)
        if isinstance(mastering_display, MasteringDisplay):
            self.mastering = mastering_display
        else:
            key = str(mastering_display).lower()
            if key not in _MASTERING_SPACES:
                raise DeliveryError(f"unknown mastering display {mastering_display!r}; use p3-d65 or bt2020")
            cm = self.mapping.colour
            self.mastering = MasteringDisplay.from_colour_space(cm.resolve(_MASTERING_SPACES[key]),
                                                                self.peak_nits, colour=cm)
        reserved = {"colorprim", "transfer", "colormatrix", "range", "hdr10", "hdr", "master-display",
                    "max-cll", "input-depth", "output-depth"}
        extra = {str(k): v for k, v in (x265_params or {}).items()}
        clash = sorted(reserved & set(extra))
        if clash:
            raise DeliveryError(f"x265 parameter(s) {', '.join(clash)} are set by the writer from the transfer "
                                f"and peak; remove them")
        self.width, self.height = int(width), int(height)
        self._crf, self._preset, self._extra = crf, str(preset), extra
        self._format = _CONTAINER_FORMATS[suffix]
        self._audio_src = os.fspath(audio_from) if audio_from is not None else None
        self.levels = LightLevels()
        self.frames = 0
        self._last_pts: int | None = None
        self._pts: list[int] = []
        self._stack = contextlib.ExitStack()
        self._closed = False
        self._out = self._stream = self._audio = None
        self._spool = self._spool_stream = None
        try:
            if self._audio_src is not None:
                if not os.path.isfile(self._audio_src):
                    raise DeliveryError(f"audio source not found: {self._audio_src}")
                self._audio = _AudioCopy(self._audio_src)
                self._stack.callback(self._audio.close)
                self._audio.check(self._format, suffix)
            self._tmp = self._stack.enter_context(replacing(self.path))
            if kind == "pq":
                folder = pathlib.Path(spool_dir) if spool_dir is not None else self.path.parent
                fd, spool = tempfile.mkstemp(prefix=f".{self.path.name}.spool-", suffix=".mkv", dir=folder)
                os.close(fd)
                self._spool_path = pathlib.Path(spool)
                self._stack.callback(self._spool_path.unlink, missing_ok=True)
                self._open_spool()
            else:
                self._open_output(None)
        except BaseException:
            self._stack.close()
            raise

    # -- streams ------------------------------------------------------------------------------
    def x265_params(self, max_cll: int | None = None, max_fall: int | None = None) -> str:
        """The ``x265-params`` string of this master (with MaxCLL/MaxFALL for PQ)."""
        params = {"colorprim": _TAGS["primaries"][1], "transfer": _TAGS[self.transfer][1],
                  "colormatrix": _TAGS["matrix"][1], "range": "limited", "chromaloc": 0,
                  "log-level": "error"}
        if self.transfer == "pq":
            params.update({"hdr10": 1, "hdr10-opt": 1, "master-display": self.mastering.x265()})
            if max_cll is not None:
                params["max-cll"] = f"{max_cll},{max_fall}"
        params.update(self._extra)
        return ":".join(f"{k}={v}" for k, v in params.items())

    def _tag(self, obj: Any) -> None:
        obj.color_primaries = _TAGS["primaries"][0]
        obj.color_trc = _TAGS[self.transfer][0]
        obj.colorspace = _TAGS["matrix"][0]
        obj.color_range = 1  # MPEG (tv, narrow)

    def _open_spool(self) -> None:
        import av

        self._spool = av.open(str(self._spool_path), "w", format="matroska")
        s = self._spool.add_stream("ffv1", rate=self.fps)
        s.width, s.height, s.pix_fmt = self.width, self.height, "yuv420p10le"
        s.options = {"level": "3", "slices": "4", "context": "0", "g": "1"}
        self._spool_stream = s

    def _open_output(self, levels: tuple[int, int] | None) -> None:
        import av

        out = av.open(str(self._tmp), "w", format=self._format)
        self._out = out
        s = out.add_stream("libx265", rate=self.fps)
        s.width, s.height, s.pix_fmt = self.width, self.height, "yuv420p10le"
        s.codec_tag = "hvc1"
        s.codec_context.time_base = self.time_base
        self._tag(s.codec_context)
        opts = {"crf": f"{self._crf:g}", "preset": self._preset,
                "x265-params": self.x265_params(*(levels or (None, None)))}
        s.options = opts
        self._stream = s
        self._last_dts: int | None = None
        self._frame_ticks = max(1, round(1 / (self.fps * self.time_base)))
        if self._audio is not None:
            self._audio.attach(out)
        try:
            out.start_encoding()
        except av.FFmpegError as exc:
            raise DeliveryError(f"cannot start the HEVC master: {exc.strerror or exc}") from None

    def _video_frame(self, planes: tuple[np.ndarray, ...], pts: int) -> Any:
        import av

        vf = av.VideoFrame(self.width, self.height, "yuv420p10le")
        for plane, data in zip(vf.planes, planes):
            row = plane.line_size // 2
            dst = np.frombuffer(plane, dtype=np.uint16).reshape(plane.height, row)
            dst[:, :plane.width] = data
        self._tag(vf)
        vf.pts = pts
        vf.time_base = self.time_base
        return vf

    def _encode(self, vf: Any) -> None:
        for pkt in self._stream.encode(vf):
            self._mux_video(pkt)

    def _mux_video(self, pkt: Any) -> None:
        # x265 reports a garbage DTS for the first packet of a clip shorter than its reorder
        # delay (1-2 frames at the fast presets). A DTS must increase and not pass the PTS: a
        # packet that breaks this gets the nearest valid value (never the case for longer clips).
        last, pts = self._last_dts, pkt.pts
        if pts is not None and (pkt.dts is None or pkt.dts > pts
                                or (last is not None and pkt.dts <= last)
                                or (last is None and pkt.dts < pts - 1000 * self._frame_ticks)):
            pkt.dts = pts if last is None else min(pts, last + 1)
        self._last_dts = pkt.dts
        if self._audio is not None and pkt.dts is not None:
            self._audio.mux_until(self._out, float(pkt.dts * pkt.time_base))
        self._out.mux(pkt)

    # -- public -------------------------------------------------------------------------------
    def write(self, frame_linear: np.ndarray, pts: int | None = None) -> None:
        """Add one frame: H x W x 3 float scene-linear in ``input_space`` (SDR white = 1.0).
        ``pts`` in ``time_base`` units, increasing; None continues at 1/fps steps."""
        if self._closed:
            raise DeliveryError("the master is already closed")
        a = np.asarray(frame_linear)
        if a.shape != (self.height, self.width, 3):
            raise DeliveryError(f"frame is {a.shape}, the master is {self.height} x {self.width} x 3")
        if a.dtype.kind != "f" or not np.isfinite(a).all():
            raise DeliveryError("frame must be finite floating-point scene-linear RGB")
        if pts is None:
            step = 1 / (self.fps * self.time_base)
            pts = 0 if self._last_pts is None else self._last_pts + max(1, round(step))
        pts = int(pts)
        if self._last_pts is not None and pts <= self._last_pts:
            raise DeliveryError(f"pts {pts} does not follow the previous frame's {self._last_pts}")
        signal = np.minimum(self.mapping.signal(a), self._max_signal)
        planes = ycbcr420_from_rgb(signal)
        if self.transfer == "pq":
            self.levels.add(signal)
            vf = self._video_frame(planes, len(self._pts))
            vf.time_base = 1 / self.fps
            for pkt in self._spool_stream.encode(vf):
                self._spool.mux(pkt)
            self._pts.append(pts)
        else:
            self._encode(self._video_frame(planes, pts))
        self._last_pts = pts
        self.frames += 1

    @property
    def max_cll(self) -> int | None:
        """MaxCLL of the frames written so far (PQ), cd/m^2."""
        return self.levels.max_cll if self.transfer == "pq" else None

    @property
    def max_fall(self) -> int | None:
        return self.levels.max_fall if self.transfer == "pq" else None

    def close(self) -> MasterReport:
        """Finish the master (PQ: encode the spool with the measured MaxCLL/MaxFALL) and move it
        to ``path``. On failure nothing is left behind."""
        if self._closed:
            raise DeliveryError("the master is already closed")
        if self.frames == 0:
            self.abort()
            raise DeliveryError(f"{self.path.name}: no frames were written")
        try:
            levels = None
            if self.transfer == "pq":
                levels = (self.levels.max_cll, self.levels.max_fall)
                self._finish_spool()
                self._open_output(levels)
                self._encode_spool()
            for pkt in self._stream.encode(None):
                self._mux_video(pkt)
            if self._audio is not None:
                self._audio.mux_until(self._out, None)
            self._out.close()
            self._out = None
            if levels is not None:
                add_hdr_boxes(self._tmp, self.mastering, *levels)
            report = MasterReport(self.path, self.frames, self.transfer, self.peak_nits,
                                  levels[0] if levels else None, levels[1] if levels else None,
                                  self._audio.copied if self._audio else 0, 0.0)
            self._closed = True
            self._stack.close()  # renames the temporary onto path, removes the spool
        except BaseException:
            self.abort()
            raise
        report.seconds = time.perf_counter() - self._t0
        return report

    def _finish_spool(self) -> None:
        for pkt in self._spool_stream.encode(None):
            self._spool.mux(pkt)
        self._spool.close()
        self._spool = None

    def _encode_spool(self) -> None:
        import av

        i = -1
        with av.open(str(self._spool_path), "r") as spool:
            for i, frame in enumerate(spool.decode(video=0)):
                planes = tuple(
                    np.frombuffer(p, dtype=np.uint16).reshape(p.height, p.line_size // 2)[:, :p.width]
                    for p in frame.planes)
                self._encode(self._video_frame(planes, self._pts[i]))
        if i + 1 != len(self._pts):
            raise DeliveryError(f"the spool gave back {i + 1} frames of {len(self._pts)}")

    def abort(self) -> None:
        """Drop the master: close everything and remove the temporary output and the spool."""
        self._closed = True
        for c in (self._spool, self._out):
            if c is not None:
                with contextlib.suppress(Exception):
                    c.close()
        self._spool = self._out = None
        # Unwind the stack as after an error: the temporary is deleted, not renamed.
        self._stack.__exit__(DeliveryError, DeliveryError("aborted"), None)

    def __del__(self) -> None:  # a writer dropped without close(): leave no temporaries behind
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self.abort()

    def __enter__(self) -> "HdrMasterWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            if not self._closed:
                self.abort()
        elif not self._closed:
            self.close()


# --------------------------------------------------------------------------- the file loop's sink
class MasterSink(FrameSink):
    """The file loop's sink for ``hdr-video --deliver``: the frames, in order, into one
    :class:`HdrMasterWriter` with the source's frame rate and timestamps, and its audio when
    ``audio`` (the whole clip is converted: a frame range would put the sound out of step).
    Frames arrive in the pipeline's output space (any scene-linear space of the config; the
    display mapping converts it to BT.2020)."""

    workers = 1  # the encoder takes the frames in order

    def __init__(self, path: str | os.PathLike, *, transfer: str = "pq", overwrite: bool = False,
                 audio: bool = True, **writer_options: Any):
        self.path = pathlib.Path(path)
        self.transfer = _transfer(transfer)
        self.overwrite = overwrite
        self.audio = audio
        self.options = writer_options
        self.writer: HdrMasterWriter | None = None
        self.report: MasterReport | None = None
        if self.path.suffix.lower() not in _CONTAINER_FORMATS:
            raise DeliveryError(f"{self.path.name}: an HDR master goes in .mp4, .m4v or .mov, not "
                                f"'{self.path.suffix or 'no extension'}'")
        if self.path.exists() and not overwrite:
            raise OutputError(f"{self.path} exists; pass --overwrite to replace it")

    def open(self, reader, step, input_space, start, end) -> None:
        fps = getattr(reader, "fps", None)
        if not fps:
            raise DeliveryError(f"{getattr(reader, 'path', 'the input')} has no frame rate (a still or an image "
                                "sequence); an HDR master is made from a video")
        prepare_dir(self.path.parent)
        self.writer = HdrMasterWriter(
            self.path, transfer=self.transfer, fps=fps, width=reader.width, height=reader.height,
            time_base=getattr(reader, "time_base", None), audio_from=reader.path if self.audio else None,
            input_space=step.output_space, **self.options)

    def target(self, number: int, may_skip: bool):
        return self.path

    def finished(self, target) -> bool:
        return False

    def write(self, work, hdr, mask, output) -> None:
        self.writer.write(hdr, pts=work.pts)

    def close(self) -> list[pathlib.Path]:
        self.report = self.writer.close()
        return [self.report.path]

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()

