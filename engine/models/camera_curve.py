"""Camera-curve maths shared by the differentiable HDR synthesis layer of Kim et al. 2021
(:mod:`hdrlift.engine.models.kim`) and the classical merges (:mod:`hdrlift.engine.models.bracket_merge`):
the Debevec & Malik 1997 triangle weight :func:`hat_weight`, the sample grid :func:`grid_indices`
and an ONNX-exportable linear solve :func:`gauss_jordan_solve`.
"""

from __future__ import annotations

import torch


# --------------------------------------------------------------------------- camera curves
def hat_weight(z: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """Debevec & Malik 1997 triangle weight, normalised to ``[0, 1]``:
    ``w(z) = min(z - Z_min, Z_max - z) / ((Z_max - Z_min) / 2)`` on intensity levels
    ``z`` in ``[0, levels - 1]`` (zero at both ends, one in the middle). Differentiable in ``z``."""
    zmax = float(levels - 1)
    return (torch.minimum(z, zmax - z) / (zmax / 2.0)).clamp(min=0.0)


def grid_indices(size: torch.Tensor | int, samples: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``samples`` pixel positions along an axis of length ``size``: ``floor((k + 0.5) size / samples)``,
    integer arithmetic so numpy (``bracket_merge``) and torch (also when traced for ONNX with a dynamic
    ``size``) pick the very same pixels. Returns int64 ``(samples,)`` made on ``device`` (no
    host-to-device copy, so the caller can be captured in a CUDA graph)."""
    k = torch.arange(samples, dtype=torch.int64, device=device)
    if isinstance(size, torch.Tensor):
        size = size.to(device=k.device, dtype=torch.int64)
    return torch.div((2 * k + 1) * size, 2 * samples, rounding_mode="floor")


def gauss_jordan_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve ``a x = b`` for a batch of symmetric positive-definite ``a`` ``(B, n, n)``,
    ``b`` ``(B, n)`` by Gauss-Jordan elimination without pivoting (stable for SPD matrices).

    Written with element-wise ops and matmul-free broadcasting only, unrolled over ``n`` steps,
    so it exports to ONNX (which has no linear-solve operator) and runs the same in onnxruntime.
    Meant for ``n`` of a few hundred (a camera curve of 256 levels).
    """
    n = a.shape[-1]
    eye = torch.eye(n, dtype=a.dtype, device=a.device)
    x = b.unsqueeze(-1)
    for k in range(n):
        pivot = a[:, k:k + 1, k:k + 1]
        row = a[:, k:k + 1, :] / pivot
        rb = x[:, k:k + 1, :] / pivot
        factor = a[:, :, k:k + 1] - eye[:, k:k + 1]
        a = a - factor * row
        x = x - factor * rb
    return x.squeeze(-1)


__all__ = ["hat_weight", "grid_indices", "gauss_jordan_solve"]
