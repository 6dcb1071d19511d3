"""Colour primitives: the sRGB curve both ways, Rec.709 luminance, the mu-law and its inverse.

One home for the arithmetic that the models, the training code, the classical merges and the
sample-clip generator all need (colour *management*, between named spaces, is OpenColorIO's:
:mod:`hdrlift.engine.colour`). Every function takes a numpy array (or numpy scalar, or a Python
number) or a ``torch.Tensor`` and answers in the same kind; importing this module does not import
torch, so numpy-only callers (``hdr-merge``'s classical merges, the training metrics, the camera
simulation) never pay for it.

* numpy arrays are images ``H x W x C`` (channels last), as everywhere in the project's numpy
  code; tensors are ``(N, C, H, W)``. :func:`luminance` follows each convention.
* The torch branch is written with tensor methods only (``x.clamp``, ``a.where(cond, b)``,
  ``x.log1p()``), the very operations the networks have always run, so it traces, exports to
  ONNX (opset 17) and compiles exactly as before.
* Nothing here clips or casts: callers that want code values in ``[0, 1]`` or float32 results
  say so where they call (``linear_to_srgb(np.clip(x, 0, 1)).astype(np.float32)``). The curves
  evaluate their power branch on an input raised to the knee, so negative and out-of-range values
  are finite, never warn and never send a NaN into a gradient; on the elements a branch is chosen
  for, this is exactly the plain formula.
"""

from __future__ import annotations

import math

import numpy as np

# Rec.709 / sRGB luminance weights (ITU-R BT.709 §3.2)
REC709_LUMA = (0.2126, 0.7152, 0.0722)
_REC709_LUMA_F32 = np.array(REC709_LUMA, np.float32)

MU = 5000.0  # mu of the mu-law (Kalantari & Ramamoorthi 2017, Eq. 1)


def _is_numpy(x) -> bool:
    """True for numpy arrays and scalars and Python numbers; False for tensors (constant-folded
    under ``torch.compile``, a plain check when tracing)."""
    return isinstance(x, (np.ndarray, np.generic, float, int))


def srgb_to_linear(x):
    """Inverse sRGB encoding (IEC 61966-2-1 EOTF): code values -> linear, display white 1.0.

    Piecewise: ``x / 12.92`` for ``x <= 0.04045``, else ``((x + 0.055) / 1.055) ** 2.4``.
    Values above 1 follow the power branch (no clip); negative values follow the linear branch.
    """
    if _is_numpy(x):
        return np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0.04045) + 0.055) / 1.055) ** 2.4)
    lin = x / 12.92
    pw = ((x.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4
    return lin.where(x <= 0.04045, pw)


def linear_to_srgb(x):
    """sRGB encoding (inverse of :func:`srgb_to_linear`), same piecewise conventions:
    ``12.92 x`` for ``x <= 0.0031308``, else ``1.055 x ** (1 / 2.4) - 0.055``."""
    if _is_numpy(x):
        return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.maximum(x, 0.0031308), 1.0 / 2.4) - 0.055)
    lin = x * 12.92
    pw = 1.055 * x.clamp(min=0.0031308) ** (1.0 / 2.4) - 0.055
    return lin.where(x <= 0.0031308, pw)


def luminance(x):
    """Rec.709 luminance.

    * tensor ``(N, 3, H, W)`` -> ``(N, 1, H, W)`` (the channel dim kept): ``0.2126 R + 0.7152 G +
      0.0722 B`` in the tensor's dtype;
    * numpy ``(..., 3)`` (channels last) -> ``(...)``: ``x @ w`` with the weights in float32 (a
      float64 image stays float64).
    """
    if _is_numpy(x):
        return x @ _REC709_LUMA_F32
    return REC709_LUMA[0] * x[:, 0:1] + REC709_LUMA[1] * x[:, 1:2] + REC709_LUMA[2] * x[:, 2:3]


def mu_law(h, mu: float = MU):
    """The mu-law range compressor ``T = log(1 + mu H) / log(1 + mu)`` (Kalantari & Ramamoorthi
    2017, Eq. 1), ``H`` clamped at 0 first. ``mu = 5000`` (Kalantari, AHDRNet, Kim); Santos et al.
    2020 Eq. 10 use 500."""
    if _is_numpy(h):
        return np.log1p(mu * np.maximum(h, 0.0)) / np.log1p(mu)
    return (mu * h.clamp(min=0.0)).log1p() / math.log1p(mu)


def inverse_mu_law(t, mu: float = MU):
    """Inverse of :func:`mu_law`: ``H = ((1 + mu)^T - 1) / mu``."""
    if _is_numpy(t):
        return np.expm1(t * np.log1p(mu)) / mu
    return (t * math.log1p(mu)).expm1() / mu


def tanh_mu_law(x, norm, mu: float = MU):
    """The mu-law of ``tanh(max(x, 0) / norm)``: the tone curve of the NTIRE 2021 HDR challenge's
    PSNR-mu (HDRUNet, Chen et al. 2021 §4.1), bounded in ``[0, 1)`` whatever the peak of ``x``.

    numpy: ``log1p(mu t) / log1p(mu)`` with numpy's ``log1p(mu)`` (a float64 scalar, so a float32
    image gives float64). Tensors: the divisor is ``log1p`` of a float32 tensor holding ``mu``, as
    the training objective has always computed it."""
    if _is_numpy(x):
        return np.log1p(mu * np.tanh(np.maximum(x, 0.0) / norm)) / np.log1p(mu)
    import torch

    return torch.log1p(mu * torch.tanh(x.clamp(min=0.0) / norm)) / torch.log1p(torch.tensor(mu))


__all__ = ["REC709_LUMA", "MU", "srgb_to_linear", "linear_to_srgb", "luminance", "mu_law", "inverse_mu_law",
           "tanh_mu_law"]
