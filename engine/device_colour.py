"""The pipeline's OCIO conversions as torch operations, so that colour in and colour out run on
the inference device (a CUDA GPU, or the CPU with the very same code).

How a conversion is translated
    Not by re-deriving colour science: a :class:`DeviceTransform` is made from the *same* OCIO
    processor that :class:`hdrlift.engine.colour.ColourManager` applies on the host. OCIO
    optimises the processor (the manager's flags: float32 in and out) and lists the operators it
    kept (``Processor.getOptimizedProcessor(...).createGroupTransform()``); each operator becomes
    the torch expression of OCIO's documented maths for it, with the parameters OCIO holds:

    * ``MatrixTransform``: ``M rgb + offset`` (a 3 x 3 matrix and an offset, float32);
    * ``ExponentTransform``: ``max(x, 0) ** g`` (negative style clamp), ``sign(x) |x| ** g``
      (mirror) or ``x ** g`` above 0 and ``x`` below (pass-through); the inverse uses ``1 / g``;
    * ``ExponentWithLinearTransform``: the "moncurve", a power law with a linear toe whose break
      point and slope follow from ``gamma`` and ``offset`` so that value and slope meet: the sRGB
      curve (IEC 61966-2-1, gamma 2.4, offset 0.055), BT.709/BT.2020's OETF (gamma 1/0.45,
      offset 0.099) and L*; forward decodes (code value -> linear), inverse encodes;
    * ``LogTransform``, ``LogAffineTransform``, ``LogCameraTransform``: ``logSideSlope *
      log_base(linSideSlope x + linSideOffset) + logSideOffset`` (the argument floored at the
      smallest normal float), with the camera variant's linear segment below ``linSideBreak``
      (ARRI LogC3/LogC4, Sony S-Log3, Panasonic V-Log, RED Log3G10, ACEScct, DaVinci
      Intermediate, BMDFilm Gen5, DJI D-Log), and their inverses;
    * ``RangeTransform``: scale, offset and clamp;
    * ``FixedFunctionTransform`` ``REC2100_SURROUND``: ``rgb * Y ** (gamma - 1)`` with ``Y`` the
      BT.2100 luminance (the HLG system gamma, ITU-R BT.2100 table 5), ``|Y|`` floored at 1e-4;
    * ``Lut1DTransform`` and ``Lut3DTransform``: OCIO's own LUT data (the studio config's PQ,
      HLG, Apple Log, Canon Log and ACEScc curves are 1D LUTs OCIO builds itself), interpolated
      as OCIO's CPU renderer does: linear between entries on a [0, 1] domain, or, for the
      65536-entry half-float-domain LUTs, linear between the two half floats that bracket the
      input; 3D LUTs trilinear or tetrahedral as the LUT asks.

    A conversion through an operator not listed here (a facility config's grading transforms or
    ACES 2 output transforms, say) is not approximated: its :class:`DeviceTransform` applies the
    host OCIO processor to the frame (``host`` is true, the reason is in ``describe()``), which
    is exact and costs a download and an upload. In the built-in studio config every pair
    ``hdr-video`` offers translates (``tests/engine/test_device_colour.py`` checks all of them).

Accuracy
    The torch expressions compute in float32 like OCIO's CPU renderers, in a different order
    here and there (the matrix as an einsum, ``pow`` from torch, not from libm). Measured against
    OCIO on the CPU for every input space to the network domain and every working space to
    every output space of the studio config (tests/engine/test_device_colour.py), the largest
    difference is below one half-float step of the value (``2**-10 * max(|value|, 2**-14)``):
    a half-float EXR cannot tell the two apart except where a value sits on a rounding
    boundary of half floats (then the two paths round to neighbouring half floats).

Layout
    Tensors are ``(..., 3, H, W)`` float32 (channels third from last, as the networks take
    them); every operator works per pixel, so any leading shape works. Parameters are moved to
    the tensor's device on first use (:meth:`DeviceTransform.to`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np
import PyOpenColorIO as ocio
import torch

from hdrlift.engine.colour import ColourManager, Converter, _SrgbEncoded
from hdrlift.engine.colour_maths import linear_to_srgb

__all__ = ["DeviceTransform", "translate", "to_network", "from_network", "UNSUPPORTED"]

_FLT_MIN = float(np.finfo(np.float32).tiny)  # OCIO floors log arguments at the smallest normal float
_HALF_MAX = 65504.0


def _chan(values: Any) -> torch.Tensor:
    """Per-channel parameters as a (3, 1, 1) float32 tensor (broadcasts over ..., 3, H, W)."""
    v = np.asarray(values, dtype=np.float64).ravel()[:3]
    return torch.tensor(v, dtype=torch.float32).view(3, 1, 1)


def _f32(value: float) -> float:
    """A parameter rounded to float32, as OCIO's renderers hold it."""
    return float(np.float32(value))


# ------------------------------------------------------------------------------------- operators
class _Op:
    """One operator: ``__call__(x)`` on ``(..., 3, H, W)`` float32, ``to(device)`` moves its
    tensors. Subclasses are dataclasses whose tensor fields move with ``to``."""

    name = "op"

    def to(self, device: torch.device | str) -> "_Op":
        changes = {f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                   if isinstance(getattr(self, f.name), torch.Tensor)}
        return dataclasses.replace(self, **changes) if changes else self  # type: ignore[type-var]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class _Matrix(_Op):
    m: torch.Tensor  # 3 x 3
    offset: torch.Tensor  # 3, 1, 1
    name = "matrix"

    def __call__(self, x):
        return torch.einsum("ij,...jhw->...ihw", self.m, x) + self.offset


@dataclasses.dataclass(frozen=True)
class _Exponent(_Op):
    """ExponentTransform: a pure power law per channel."""

    g: torch.Tensor
    style: str  # clamp, mirror, pass_thru
    name = "exponent"

    def __call__(self, x):
        if self.style == "mirror":
            return torch.copysign(x.abs().pow(self.g), x)
        if self.style == "pass_thru":
            return torch.where(x > 0, x.clamp(min=0).pow(self.g), x)
        return x.clamp(min=0).pow(self.g)


@dataclasses.dataclass(frozen=True)
class _MonCurve(_Op):
    """ExponentWithLinearTransform. Forward (decode): ``x <= brk ? x * slope :
    (x * scale + offset) ** gamma``; inverse (encode): ``x <= brk ? x * slope :
    x ** gamma * scale - offset`` with the inverse's own constants. ``mirror``: odd symmetry."""

    gamma: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor
    brk: torch.Tensor
    slope: torch.Tensor
    forward: bool
    mirror: bool
    name = "moncurve"

    def _curve(self, x):
        if self.forward:
            power = (x * self.scale + self.offset).clamp(min=0).pow(self.gamma)
        else:
            power = x.clamp(min=0).pow(self.gamma) * self.scale - self.offset
        return torch.where(x <= self.brk, x * self.slope, power)

    def __call__(self, x):
        if self.mirror:
            return torch.copysign(self._curve(x.abs()), x)
        return self._curve(x)


def _moncurve(t: ocio.ExponentWithLinearTransform, forward: bool) -> _MonCurve:
    """The moncurve's constants (break point and slope where line and power law meet in value
    and slope), in float64 then float32 as OCIO's renderer holds them."""
    eps = 1e-6
    cols: dict[str, list[float]] = {k: [] for k in ("gamma", "scale", "offset", "brk", "slope")}
    for g, o in zip(list(t.getGamma())[:3], list(t.getOffset())[:3]):
        g, o = max(g, 1.0 + eps), max(o, eps)
        if forward:
            vals = dict(gamma=g, scale=1.0 / (1.0 + o), offset=o / (1.0 + o), brk=o / (g - 1.0),
                        slope=((g - 1.0) / o) * (o * g / ((g - 1.0) * (1.0 + o))) ** g)
        else:
            vals = dict(gamma=1.0 / g, scale=1.0 + o, offset=o, brk=(o * g / ((g - 1.0) * (1.0 + o))) ** g,
                        slope=((g - 1.0) / o) ** (g - 1.0) * ((1.0 + o) / g) ** g)
        for k, v in vals.items():
            cols[k].append(_f32(v))
    mirror = t.getNegativeStyle() == ocio.NEGATIVE_MIRROR
    return _MonCurve(**{k: _chan(v) for k, v in cols.items()}, forward=forward, mirror=mirror)


@dataclasses.dataclass(frozen=True)
class _LinToLog(_Op):
    """``klog * log2(max(FLT_MIN, m x + b)) + kb`` above ``lin_break`` (``-inf``: no break),
    ``linear_slope * x + linear_offset`` below."""

    m: torch.Tensor
    b: torch.Tensor
    klog: torch.Tensor
    kb: torch.Tensor
    lin_break: torch.Tensor
    linear_slope: torch.Tensor
    linear_offset: torch.Tensor
    name = "lin_to_log"

    def __call__(self, x):
        log = (x * self.m + self.b).clamp(min=_FLT_MIN).log2() * self.klog + self.kb
        return torch.where(x < self.lin_break, x * self.linear_slope + self.linear_offset, log)


@dataclasses.dataclass(frozen=True)
class _LogToLin(_Op):
    """The inverse: ``(2 ** ((y - kb) / klog) - b) / m`` above ``log_break``, the line below."""

    m: torch.Tensor
    b: torch.Tensor
    klog: torch.Tensor
    kb: torch.Tensor
    log_break: torch.Tensor
    linear_slope: torch.Tensor
    linear_offset: torch.Tensor
    name = "log_to_lin"

    def __call__(self, y):
        lin = (torch.exp2((y - self.kb) / self.klog) - self.b) / self.m
        return torch.where(y < self.log_break, (y - self.linear_offset) / self.linear_slope, lin)


def _log_op(base: float, log_slope, log_offset, lin_slope, lin_offset, lin_break=None, linear_slope=None,
            forward: bool = True) -> _Op:
    """Log, LogAffine and LogCamera transforms (LogTransform: slopes 1, offsets 0, no break)."""
    n = 3
    log_slope, log_offset, lin_slope, lin_offset = (np.asarray(v, np.float64)[:n] for v in
                                                    (log_slope, log_offset, lin_slope, lin_offset))
    log2_base = math.log2(base)
    if lin_break is None:
        brk = np.full(n, -np.inf)
        lslope = np.ones(n)
        loff = np.zeros(n)
        log_brk = np.full(n, -np.inf)
    else:
        brk = np.asarray(lin_break, np.float64)[:n]
        if linear_slope is None:
            lslope = log_slope * lin_slope / ((lin_slope * brk + lin_offset) * math.log(base))
        else:
            lslope = np.asarray(linear_slope, np.float64)[:n]
        log_brk = np.log2(lin_slope * brk + lin_offset) * (log_slope / log2_base) + log_offset
        loff = log_brk - lslope * brk
    common = dict(m=_chan(lin_slope), b=_chan(lin_offset), klog=_chan(log_slope / log2_base), kb=_chan(log_offset),
                  linear_slope=_chan(lslope), linear_offset=_chan(loff))
    if forward:
        return _LinToLog(lin_break=_chan(brk), **common)
    return _LogToLin(log_break=_chan(log_brk), **common)


@dataclasses.dataclass(frozen=True)
class _Range(_Op):
    scale: float
    offset: float
    lo: float | None
    hi: float | None
    name = "range"

    def __call__(self, x):
        y = x * self.scale + self.offset if (self.scale != 1.0 or self.offset != 0.0) else x
        if self.lo is not None or self.hi is not None:
            y = y.clamp(min=self.lo, max=self.hi)
        return y


def _range(t: ocio.RangeTransform) -> _Range:
    vals = [(t.getMinInValue() if t.hasMinInValue() else None), (t.getMaxInValue() if t.hasMaxInValue() else None),
            (t.getMinOutValue() if t.hasMinOutValue() else None), (t.getMaxOutValue() if t.hasMaxOutValue() else None)]
    min_in, max_in, min_out, max_out = vals
    if t.getDirection() == ocio.TRANSFORM_DIR_INVERSE:
        min_in, max_in, min_out, max_out = min_out, max_out, min_in, max_in
    if None not in (min_in, max_in, min_out, max_out) and max_in != min_in:
        scale = (max_out - min_out) / (max_in - min_in)
        offset = min_out - scale * min_in
    elif min_in is not None and min_out is not None:
        scale, offset = 1.0, min_out - min_in
    elif max_in is not None and max_out is not None:
        scale, offset = 1.0, max_out - max_in
    else:
        scale, offset = 1.0, 0.0
    clamp = t.getStyle() == ocio.RANGE_CLAMP
    lo = _f32(min_out) if clamp and min_out is not None else None
    hi = _f32(max_out) if clamp and max_out is not None else None
    return _Range(_f32(scale), _f32(offset), lo, hi)


@dataclasses.dataclass(frozen=True)
class _Rec2100Surround(_Op):
    """ITU-R BT.2100 HLG system gamma: ``rgb * max(|Y|, min_lum) ** exponent``."""

    exponent: float
    min_lum: float
    name = "rec2100_surround"

    def __call__(self, x):
        r, g, b = x.unbind(-3)
        y = (0.2627 * r + 0.6780 * g + 0.0593 * b).abs().clamp(min=self.min_lum)
        return x * y.pow(self.exponent).unsqueeze(-3)


@dataclasses.dataclass(frozen=True)
class _Lut1D(_Op):
    """A 1D LUT (3 x N table). Standard domain: input clamped to [0, 1], linear between
    entries. Half domain (N = 65536, one entry per half float): linear between the two half
    floats that bracket the input (infinities held at the largest half). Entries that overflow
    float32 are held at the largest float, as OCIO holds them."""

    table: torch.Tensor  # 3 x N float32
    half_domain: bool
    halfs: torch.Tensor | None = None  # the 65536 half floats as float32, for the half domain
    name = "lut1d"

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        n = self.table.shape[1]
        offsets = torch.arange(3, device=idx.device, dtype=idx.dtype).view(3, 1, 1) * n
        return self.table.reshape(-1)[idx + offsets]

    def __call__(self, x):
        if not self.half_domain:
            top = self.table.shape[1] - 1
            pos = (x * float(top)).nan_to_num(0.0).clamp(0.0, float(top))
            lo, hi = pos.floor(), pos.ceil()
            delta = hi - pos
            a, b = self._gather(lo.long()), self._gather(hi.long())
            return b + delta * (a - b)
        x = x.clamp(-_HALF_MAX, _HALF_MAX)  # OCIO holds infinities and overflow at the largest half
        h = x.to(torch.float16)
        bits = h.view(torch.int16).to(torch.int64) & 0xFFFF
        above = h.float().abs() > x.abs()  # the nearest half is past the input: bracket below it
        idx_a = torch.where(above, bits - 1, bits)
        idx_b = torch.where(above, bits, bits + 1)
        # one step past the largest half (0x7bff / 0xfbff) is infinity: hold at the largest half
        idx_b = torch.where((idx_b & 0x7FFF) == 0x7C00, idx_b - 1, idx_b)
        fa, fb = self.halfs[idx_a], self.halfs[idx_b]
        frac = ((x - fa) / (fb - fa)).nan_to_num(0.0, posinf=0.0, neginf=0.0)
        a, b = self._gather(idx_a), self._gather(idx_b)
        return b + (1.0 - frac) * (a - b)


def _half_values() -> torch.Tensor:
    return torch.arange(65536, dtype=torch.int32).to(torch.int16).view(torch.float16).float()


def _lut1d(t: ocio.Lut1DTransform) -> _Lut1D | None:
    if t.getDirection() != ocio.TRANSFORM_DIR_FORWARD or t.getHueAdjust() != ocio.HUE_NONE:
        return None
    if t.getInterpolation() not in (ocio.INTERP_LINEAR, ocio.INTERP_DEFAULT, ocio.INTERP_BEST):
        return None
    n = t.getLength()
    data = np.asarray(t.getData(), dtype=np.float32).reshape(n, 3).T.copy()
    # OCIO's renderer holds infinities as the largest float and NaN as 0 (its SanitizeFloat):
    # a log curve's 1D LUT over the whole half domain overflows float32 at its top
    data = np.nan_to_num(data, nan=0.0, posinf=np.finfo(np.float32).max, neginf=-np.finfo(np.float32).max)
    half = bool(t.getInputHalfDomain())
    if half and n != 65536:
        return None
    return _Lut1D(torch.from_numpy(data), half, _half_values() if half else None)


@dataclasses.dataclass(frozen=True)
class _Lut3D(_Op):
    """A 3D LUT (N x N x N x 3, indexed red, green, blue) on the [0, 1] cube, trilinear or
    tetrahedral."""

    table: torch.Tensor
    tetrahedral: bool
    name = "lut3d"

    def __call__(self, x):
        n = self.table.shape[0]
        pos = (x.nan_to_num(0.0).clamp(0.0, 1.0) * float(n - 1))
        base = pos.floor().clamp(max=n - 2).long() if n > 1 else pos.floor().long()
        f = pos - base
        flat = self.table.reshape(-1, 3)
        r0, g0, b0 = base.unbind(-3)
        fr, fg, fb = f.unbind(-3)

        def at(dr: int, dg: int, db: int) -> torch.Tensor:  # (..., 3, H, W)
            idx = ((r0 + dr) * n + (g0 + dg)) * n + (b0 + db)
            return flat[idx].movedim(-1, -3)

        fr, fg, fb = fr.unsqueeze(-3), fg.unsqueeze(-3), fb.unsqueeze(-3)
        if not self.tetrahedral:
            c00 = at(0, 0, 0) + (at(1, 0, 0) - at(0, 0, 0)) * fr
            c01 = at(0, 0, 1) + (at(1, 0, 1) - at(0, 0, 1)) * fr
            c10 = at(0, 1, 0) + (at(1, 1, 0) - at(0, 1, 0)) * fr
            c11 = at(0, 1, 1) + (at(1, 1, 1) - at(0, 1, 1)) * fr
            c0 = c00 + (c10 - c00) * fg
            c1 = c01 + (c11 - c01) * fg
            return c0 + (c1 - c0) * fb
        c000, c111 = at(0, 0, 0), at(1, 1, 1)
        c100, c010, c001 = at(1, 0, 0), at(0, 1, 0), at(0, 0, 1)
        c110, c101, c011 = at(1, 1, 0), at(1, 0, 1), at(0, 1, 1)
        # the six tetrahedra of the cube, by the order of the fractions
        out = torch.zeros_like(c000)
        cases = [
            ((fr >= fg) & (fg >= fb), (c100, c110), (fr, fg, fb)),
            ((fr >= fb) & (fb > fg), (c100, c101), (fr, fb, fg)),
            ((fb > fr) & (fr >= fg), (c001, c101), (fb, fr, fg)),
            ((fg > fr) & (fr >= fb), (c010, c110), (fg, fr, fb)),
            ((fg >= fb) & (fb > fr), (c010, c011), (fg, fb, fr)),
            ((fb > fg) & (fg > fr), (c001, c011), (fb, fg, fr)),
        ]
        for mask, (p1, p2), (a, b, c) in cases:
            val = c000 + (p1 - c000) * a + (p2 - p1) * b + (c111 - p2) * c
            out = torch.where(mask, val, out)
        return out


def _lut3d(t: ocio.Lut3DTransform) -> _Lut3D | None:
    if t.getDirection() != ocio.TRANSFORM_DIR_FORWARD:
        return None
    interp = t.getInterpolation()
    if interp not in (ocio.INTERP_LINEAR, ocio.INTERP_TETRAHEDRAL, ocio.INTERP_DEFAULT, ocio.INTERP_BEST):
        return None
    n = t.getGridSize()
    data = np.asarray(t.getData(), dtype=np.float32).reshape(n, n, n, 3)  # red slowest (OCIO's order)
    return _Lut3D(torch.from_numpy(data.copy()), interp in (ocio.INTERP_TETRAHEDRAL, ocio.INTERP_BEST))


@dataclasses.dataclass(frozen=True)
class _SrgbEncode(_Op):
    """The sRGB encoding (IEC 61966-2-1) of :func:`hdrlift.engine.colour_maths.linear_to_srgb`:
    the network domain in working primaries wider than Rec.709 (``ColourManager.to_network``)."""

    name = "srgb_encode"

    def __call__(self, x):
        return linear_to_srgb(x)


@dataclasses.dataclass(frozen=True)
class _Host(_Op):
    """The host OCIO processor on the frame (download, OCIO, upload): for conversions with an
    operator this module does not translate."""

    convert: Callable[[np.ndarray], np.ndarray]
    name = "host_ocio"

    def __call__(self, x):
        hwc = x.detach().float().movedim(-3, -1).cpu().numpy()
        out = torch.from_numpy(np.ascontiguousarray(self.convert(hwc)))
        return out.movedim(-1, -3).to(x.device)


#: the OCIO operator kinds translated here, as ``type(transform).__name__`` (docstring above)
SUPPORTED = ("MatrixTransform", "ExponentTransform", "ExponentWithLinearTransform", "LogTransform",
             "LogAffineTransform", "LogCameraTransform", "RangeTransform", "FixedFunctionTransform:REC2100_SURROUND",
             "Lut1DTransform", "Lut3DTransform")
UNSUPPORTED = object()


def _op(t: ocio.Transform) -> _Op | None:
    """One optimised OCIO operator as a torch operator, or None when it is not translated."""
    inverse = t.getDirection() == ocio.TRANSFORM_DIR_INVERSE
    if isinstance(t, ocio.MatrixTransform):
        m = np.asarray(t.getMatrix(), np.float64).reshape(4, 4)
        m[:3, 3] = np.asarray(t.getOffset(), np.float64)[:3]
        if inverse:
            m = np.linalg.inv(m)
        return _Matrix(torch.tensor(m[:3, :3], dtype=torch.float32), _chan(m[:3, 3]))
    if isinstance(t, ocio.ExponentTransform):
        g = np.asarray(t.getValue(), np.float64)[:3]
        style = {ocio.NEGATIVE_CLAMP: "clamp", ocio.NEGATIVE_MIRROR: "mirror",
                 ocio.NEGATIVE_PASS_THRU: "pass_thru"}.get(t.getNegativeStyle())
        if style is None:
            return None
        return _Exponent(_chan(1.0 / g if inverse else g), style)
    if isinstance(t, ocio.ExponentWithLinearTransform):
        return _moncurve(t, forward=not inverse)
    if isinstance(t, ocio.LogCameraTransform):
        slope = t.getLinearSlopeValue() if t.isLinearSlopeValueSet() else None
        return _log_op(t.getBase(), t.getLogSideSlopeValue(), t.getLogSideOffsetValue(), t.getLinSideSlopeValue(),
                       t.getLinSideOffsetValue(), t.getLinSideBreakValue(), slope, forward=not inverse)
    if isinstance(t, ocio.LogAffineTransform):
        return _log_op(t.getBase(), t.getLogSideSlopeValue(), t.getLogSideOffsetValue(), t.getLinSideSlopeValue(),
                       t.getLinSideOffsetValue(), forward=not inverse)
    if isinstance(t, ocio.LogTransform):
        return _log_op(t.getBase(), [1.0] * 3, [0.0] * 3, [1.0] * 3, [0.0] * 3, forward=not inverse)
    if isinstance(t, ocio.RangeTransform):
        return _range(t)
    if isinstance(t, ocio.FixedFunctionTransform):
        if t.getStyle() != ocio.FIXED_FUNCTION_REC2100_SURROUND:
            return None
        gamma = float(t.getParams()[0])
        if inverse:
            return _Rec2100Surround(_f32(1.0 / gamma - 1.0), _f32(1e-4 ** gamma))
        return _Rec2100Surround(_f32(gamma - 1.0), 1e-4)
    if isinstance(t, ocio.Lut1DTransform):
        return _lut1d(t)
    if isinstance(t, ocio.Lut3DTransform):
        return _lut3d(t)
    return None


def _op_label(t: ocio.Transform) -> str:
    label = type(t).__name__
    if isinstance(t, ocio.FixedFunctionTransform):
        label += f":{str(t.getStyle()).rsplit('.', 1)[-1].replace('FIXED_FUNCTION_', '')}"
    return label


# ------------------------------------------------------------------------------------- transforms
class DeviceTransform:
    """One colour conversion as torch operators on ``(..., 3, H, W)`` float32 tensors.

    ``src``/``dst`` name the colour spaces; ``ops`` are the translated operators in order;
    ``host`` is true when the conversion runs through OCIO on the host instead (an operator that
    is not translated: ``reason`` names it). Calling it returns a new float32 tensor on the
    input's device."""

    def __init__(self, src: str, dst: str, ops: list[_Op], *, host: bool = False, reason: str = ""):
        self.src, self.dst = src, dst
        self.ops = tuple(ops)
        self.host = host
        self.reason = reason
        self._moved: dict[str, tuple[_Op, ...]] = {"cpu": self.ops}

    @property
    def is_identity(self) -> bool:
        return not self.ops

    def _ops_on(self, device: torch.device) -> tuple[_Op, ...]:
        if device.type == "cuda" and device.index is None:  # "cuda" and "cuda:N" are one cache entry
            device = torch.device("cuda", torch.cuda.current_device())
        key = str(device)
        ops = self._moved.get(key)
        if ops is None:
            ops = tuple(op.to(device) for op in self.ops)
            self._moved[key] = ops
        return ops

    def to(self, device: torch.device | str) -> "DeviceTransform":
        """Move the parameters to ``device`` now (they are moved on first use otherwise)."""
        self._ops_on(torch.device(device))
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or x.shape[-3] != 3:
            raise ValueError(f"device colour expects (..., 3, H, W) tensors, got {tuple(x.shape)}")
        y = x.float()
        for op in self._ops_on(y.device):
            y = op(y)
        return y if y is not x else y.clone()

    def describe(self) -> dict:
        return {"src": self.src, "dst": self.dst, "ops": [op.name for op in self.ops], "host": self.host,
                **({"reason": self.reason} if self.reason else {})}

    def __repr__(self) -> str:
        how = "host OCIO" if self.host else (", ".join(op.name for op in self.ops) or "identity")
        return f"DeviceTransform({self.src!r} -> {self.dst!r}: {how})"


def _translate_processor(proc: ocio.Processor, flags: Any) -> tuple[list[_Op] | None, str]:
    group = proc.getOptimizedProcessor(ocio.BIT_DEPTH_F32, ocio.BIT_DEPTH_F32, flags).createGroupTransform()
    ops: list[_Op] = []
    for t in group:
        op = _op(t)
        if op is None:
            return None, f"OCIO operator {_op_label(t)} is not translated to torch"
        ops.append(op)
    return ops, ""


def translate(conv: "Converter | _SrgbEncoded", flags: Any = None) -> DeviceTransform:
    """The :class:`DeviceTransform` of a host converter (``ColourManager.converter``,
    ``network_converter``, ``to_network`` or ``from_network``): the same OCIO processor,
    optimised with the manager's ``flags`` (default: exact curves), as torch operators."""
    from hdrlift.engine.colour import _EXACT

    flags = _EXACT if flags is None else flags
    if isinstance(conv, _SrgbEncoded):
        inner = translate(conv._to_linear, flags)
        if inner.host:
            return DeviceTransform(conv.src, conv.dst, [_Host(conv)], host=True, reason=inner.reason)
        return DeviceTransform(conv.src, conv.dst, [*inner.ops, _SrgbEncode()])
    if conv.is_identity:
        return DeviceTransform(conv.src, conv.dst, [])
    proc = conv.processor
    ops, reason = _translate_processor(proc, flags) if proc is not None else (None, "no OCIO processor")
    if ops is None:
        return DeviceTransform(conv.src, conv.dst, [_Host(conv)], host=True, reason=reason)
    return DeviceTransform(conv.src, conv.dst, ops)


def to_network(cm: ColourManager, space: str) -> DeviceTransform:
    """``space`` -> the network input domain in the working primaries of ``space`` (not yet
    clipped): the device form of :meth:`ColourManager.to_network`."""
    return translate(cm.to_network(space), cm.flags)


def from_network(cm: ColourManager, working: str | None, space: str) -> DeviceTransform:
    """The networks' output (scene-linear in ``working``; None: Rec.709) -> ``space``: the device
    form of :meth:`ColourManager.from_network`."""
    return translate(cm.from_network(working, space), cm.flags)
