"""Camera simulation: synthesise the LDR picture a camera would have recorded of an HDR scene.

One module shared by training, evaluation and the tests, so that what a network is trained on,
what it is scored on and what the tests check are the same recipe:

1. **Exposure** — either from a target clipped-pixel fraction (the fraction of pixels whose
   brightest channel reaches display white after scaling; the evaluation protocol uses 3% and
   10%) or from an exposure value relative to the frame's median luminance (Moriwaki §4:
   median-luminance normalisation, then ``2^-8 ... 2^-4`` quantisation levels of Tables 2-3
   become exposure offsets).
2. **Camera response** — ``srgb`` (the engine's input contract: a well-exposed code value
   is the inverse sRGB curve of the scene value), ``gamma`` (a pure power, Eilertsen's
   choice), or ``random``: a monotone curve from a small family in the spirit of the DoRF/EMoR
   database (a random gamma between 1.6 and 2.8 mixed with a smooth sigmoid toe/shoulder).
3. **Clipping** at display white, **quantisation** to 8 or 10 bits.
4. **Noise** — Poisson-Gaussian sensor noise applied on the linear signal before the curve
   (HDRUNet §3 uses this family of degradations).
5. **Compression** — JPEG (through OpenImageIO) or H.264 (through PyAV, one intra frame) at a
   given quality.

All functions take and return float32 arrays ``H x W x 3``; the HDR scene is linear Rec.709.
The exposure scale is returned with the LDR picture so that the reference HDR is expressed in
the same units as the engine's output (display white of the LDR input = 1.0).
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
from typing import Callable

import numpy as np

from hdrlift.engine.colour_maths import linear_to_srgb, luminance, srgb_to_linear


# ------------------------------------------------------------------------------------------
# Camera response curves (scene linear in [0, 1] -> code value in [0, 1])
# ------------------------------------------------------------------------------------------

def srgb_encode(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encoding (the inverse of the sRGB EOTF) of ``x`` clipped to [0, 1], float32."""
    return linear_to_srgb(np.clip(x, 0.0, 1.0)).astype(np.float32)


def srgb_decode(v: np.ndarray) -> np.ndarray:
    """sRGB EOTF: code value -> linear, in float32 (the engine's ``colour_maths.srgb_to_linear``)."""
    return srgb_to_linear(np.asarray(v, np.float32)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ResponseCurve:
    """A monotone camera response ``f``: linear [0, 1] -> code value [0, 1]."""

    name: str
    gamma: float = 2.2
    toe: float = 0.0  # weight of the sigmoid component of the random family, 0 = pure power
    slope: float = 6.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.clip(x, 0.0, 1.0).astype(np.float32)
        if self.name == "srgb":
            return srgb_encode(x)
        y = np.power(x, 1.0 / self.gamma)
        if self.toe > 0.0:
            # smooth S-shaped component normalised to map 0->0 and 1->1, monotone increasing
            s = lambda t: 1.0 / (1.0 + np.exp(-self.slope * (t - 0.5)))  # noqa: E731
            lo, hi = s(0.0), s(1.0)
            y = (1.0 - self.toe) * y + self.toe * (s(y) - lo) / (hi - lo)
        return y.astype(np.float32)


SRGB = ResponseCurve("srgb")


def gamma_curve(gamma: float = 2.2) -> ResponseCurve:
    return ResponseCurve("gamma", gamma=gamma)


def random_curve(rng: np.random.Generator) -> ResponseCurve:
    """A random monotone response from a DoRF/EMoR-like family (gamma 1.6-2.8, S-shape 0-0.5)."""
    return ResponseCurve("random", gamma=float(rng.uniform(1.6, 2.8)), toe=float(rng.uniform(0.0, 0.5)),
                         slope=float(rng.uniform(4.0, 8.0)))


# ------------------------------------------------------------------------------------------
# Exposure
# ------------------------------------------------------------------------------------------

def exposure_for_clip_fraction(hdr: np.ndarray, fraction: float) -> float:
    """Scale ``s`` so that ``fraction`` of the pixels have ``max_c(s * H) >= 1``.

    The scale is the reciprocal of the ``1 - fraction`` quantile of the per-pixel channel
    maximum. Frames whose quantile is zero (almost black) get a scale that maps their maximum
    to white instead.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"clip fraction must be in [0, 1), got {fraction}")
    m = hdr.max(axis=-1)
    q = float(np.quantile(m, 1.0 - fraction)) if fraction > 0 else float(m.max())
    if q <= 1e-12:
        q = max(float(m.max()), 1e-12)
    return 1.0 / q


def exposure_for_ev(hdr: np.ndarray, ev: float, key: float = 0.18) -> float:
    """Median-luminance normalisation (Moriwaki §4): median luminance -> ``key``, then ``2^ev``."""
    med = float(np.median(luminance(hdr)))
    med = med if med > 1e-12 else max(float(luminance(hdr).mean()), 1e-12)
    return key / med * 2.0 ** ev


# ------------------------------------------------------------------------------------------
# Degradations
# ------------------------------------------------------------------------------------------

def poisson_gaussian(lin: np.ndarray, rng: np.random.Generator, gain: float, read_sigma: float) -> np.ndarray:
    """Signal-dependent shot noise (variance ``gain * x``) plus read noise (``read_sigma``)."""
    if gain <= 0 and read_sigma <= 0:
        return lin
    sd = np.sqrt(np.maximum(lin, 0.0) * gain + read_sigma ** 2)
    return (lin + rng.standard_normal(lin.shape).astype(np.float32) * sd).astype(np.float32)


def quantise(code: np.ndarray, bits: int) -> np.ndarray:
    levels = float(2 ** bits - 1)
    return (np.round(np.clip(code, 0.0, 1.0) * levels) / levels).astype(np.float32)


def jpeg_roundtrip(code: np.ndarray, quality: int) -> np.ndarray:
    """Encode 8-bit JPEG at ``quality`` with OpenImageIO and decode it again."""
    import OpenImageIO as oiio

    u8 = (np.clip(code, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    fd, path = tempfile.mkstemp(suffix=".jpg")
    os.close(fd)
    try:
        spec = oiio.ImageSpec(u8.shape[1], u8.shape[0], 3, oiio.UINT8)
        spec.attribute("Compression", f"jpeg:{int(quality)}")
        out = oiio.ImageOutput.create(path)
        out.open(path, spec)
        out.write_image(u8)
        out.close()
        buf = oiio.ImageBuf(path)
        return np.ascontiguousarray(buf.get_pixels(oiio.FLOAT)[..., :3], dtype=np.float32)
    finally:
        os.unlink(path)


def h264_roundtrip(code: np.ndarray, crf: int) -> np.ndarray:
    """One-frame H.264 (yuv420p, BT.709 limited range) encode/decode at ``crf`` through PyAV."""
    import av

    h, w = code.shape[:2]
    h2, w2 = h - h % 2, w - w % 2
    u8 = (np.clip(code[:h2, :w2], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = w2, h2, "yuv420p"
        s.options = {"crf": str(int(crf)), "preset": "ultrafast"}
        fr = av.VideoFrame.from_ndarray(u8, format="rgb24").reformat(
            format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
        for p in s.encode(fr):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    buf.seek(0)
    with av.open(buf, "r") as c:
        f = next(c.decode(video=0))
        rgb = f.reformat(format="rgb24", src_colorspace="ITU709", src_color_range="MPEG").to_ndarray()
    out = code.copy()
    out[:h2, :w2] = rgb.astype(np.float32) / 255.0
    return out


# ------------------------------------------------------------------------------------------
# The whole camera
# ------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Camera:
    """Parameters of one simulated exposure. ``clip_fraction`` wins over ``ev`` when both set."""

    clip_fraction: float | None = 0.05
    ev: float | None = None
    curve: ResponseCurve = SRGB
    bits: int = 8
    noise_gain: float = 0.0
    read_sigma: float = 0.0
    jpeg_quality: int | None = None
    h264_crf: int | None = None

    def scale_for(self, hdr: np.ndarray) -> float:
        if self.clip_fraction is not None:
            return exposure_for_clip_fraction(hdr, self.clip_fraction)
        return exposure_for_ev(hdr, self.ev or 0.0)

    def __call__(self, hdr: np.ndarray, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """Return ``(ldr_code_values, reference_hdr, scale)``.

        ``reference_hdr = scale * hdr``: the scene in the engine's output units (1.0 = the
        LDR picture's white), what a perfect reconstruction of ``ldr`` returns.
        """
        rng = rng or np.random.default_rng(0)
        hdr = np.asarray(hdr, np.float32)
        if hdr.ndim != 3 or hdr.shape[-1] != 3:
            raise ValueError(f"expected an H x W x 3 HDR image, got shape {hdr.shape}")
        s = self.scale_for(hdr)
        ref = (hdr * np.float32(s)).astype(np.float32)
        lin = poisson_gaussian(ref, rng, self.noise_gain, self.read_sigma)
        code = self.curve(lin)
        if self.jpeg_quality is not None:
            code = jpeg_roundtrip(code, self.jpeg_quality)
        if self.h264_crf is not None:
            code = h264_roundtrip(code, self.h264_crf)
        code = quantise(code, self.bits)
        return code, ref, s


def random_camera(rng: np.random.Generator, *, clip_range: tuple[float, float] = (0.01, 0.12),
                  curves: str = "srgb", noise: bool = False, compression: bool = False) -> Camera:
    """Draw a training camera: clipped fraction uniform in ``clip_range``, optional random
    curve, noise (gain up to 1e-3, read noise up to 2e-3) and JPEG compression (quality 70-95)."""
    curve: ResponseCurve = SRGB
    if curves == "random":
        curve = random_curve(rng)
    elif curves == "gamma":
        curve = gamma_curve(float(rng.uniform(1.8, 2.6)))
    return Camera(
        clip_fraction=float(rng.uniform(*clip_range)),
        curve=curve,
        noise_gain=float(rng.uniform(0.0, 1e-3)) if noise else 0.0,
        read_sigma=float(rng.uniform(0.0, 2e-3)) if noise else 0.0,
        jpeg_quality=int(rng.integers(70, 96)) if compression and rng.random() < 0.5 else None,
    )


CurveFn = Callable[[np.ndarray], np.ndarray]

__all__ = ["Camera", "ResponseCurve", "SRGB", "gamma_curve", "random_curve", "random_camera",
           "srgb_encode", "srgb_decode", "exposure_for_clip_fraction", "exposure_for_ev",
           "poisson_gaussian", "quantise", "jpeg_roundtrip", "h264_roundtrip", "luminance"]
