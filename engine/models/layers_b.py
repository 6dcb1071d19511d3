"""Building blocks of the model-zoo part B (``kim``, ``fusion``) that ``blocks`` does not have.

Kept apart from :mod:`hdrlift.engine.models.blocks` (owned by another file's author); nothing in
here is specific to one paper, and everything traces/exports to ONNX opset 17:

* :class:`ConvSwish` — ``Conv2d`` + Swish (``x * sigmoid(x)``, Ramachandran et al. 2017), the
  activation of Kim et al. 2021 §3.2;
* :class:`CondInstanceNorm2d` — conditional instance normalisation (Kim et al. 2021 §3.2):
  instance normalisation whose scale/shift ``gamma_e, beta_e`` are picked by an integer condition;
* :class:`ConvGRUCell` — convolutional GRU (Siam et al. 2017, cited as [25] by Kim et al.);
* :class:`DilatedResidualDenseBlock` — the DRDB of AHDRNet (Yan et al. 2019; survey seed 001 §5.2);
* camera-curve helpers shared by the differentiable synthesis layer (``kim``) and the classical
  merges (``fusion``): :func:`hat_weight`, :func:`grid_indices`, :func:`gauss_jordan_solve`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class ConvSwish(nn.Sequential):
    """3x3 (or ``k``) ``same`` conv followed by Swish."""

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)
        self.act = Swish()


class CondInstanceNorm2d(nn.Module):
    """Conditional instance normalisation: ``Y = gamma_e * (X - mu) / sigma + beta_e``.

    ``mu``/``sigma`` are the per-image, per-channel mean and standard deviation over the spatial
    axes; ``gamma_e, beta_e`` in ``R^C`` are rows ``e`` of two learnt tables with ``conditions``
    rows (Kim et al. 2021 §3.2, one row per target exposure value). The paper prints the formula
    as ``(gamma_e (X - mu) + beta_e) / sigma``; we use the usual form above (Dumoulin et al.
    2017), which keeps ``beta_e`` a shift independent of the feature's contrast.
    ``e`` is a Python int (the recursion index), so a traced graph holds the chosen rows as
    constants.
    """

    def __init__(self, channels: int, conditions: int, eps: float = 1e-5):
        super().__init__()
        self.eps = float(eps)
        self.gamma = nn.Parameter(torch.ones(conditions, channels))
        self.beta = nn.Parameter(torch.zeros(conditions, channels))

    def forward(self, x: torch.Tensor, e: int) -> torch.Tensor:
        mu = x.mean(dim=(2, 3), keepdim=True)
        var = (x - mu).pow(2).mean(dim=(2, 3), keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        g = self.gamma[e].view(1, -1, 1, 1)
        b = self.beta[e].view(1, -1, 1, 1)
        return g * y + b


class ConvGRUCell(nn.Module):
    """Convolutional GRU (Siam et al. 2017):
    ``z = sig(W_z * [x, h])``, ``r = sig(W_r * [x, h])``, ``n = tanh(W_n * [x, r . h])``,
    ``h' = (1 - z) . h + z . n``. ``h=None`` starts from zeros."""

    def __init__(self, cin: int, hidden: int, k: int = 3):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(cin + hidden, 2 * hidden, k, padding=k // 2)
        self.cand = nn.Conv2d(cin + hidden, hidden, k, padding=k // 2)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        if h is None:
            h = torch.zeros_like(x[:, :1]).expand(-1, self.hidden, -1, -1)
        zr = torch.sigmoid(self.gates(torch.cat([x, h], dim=1)))
        z, r = zr[:, : self.hidden], zr[:, self.hidden:]
        n = torch.tanh(self.cand(torch.cat([x, r * h], dim=1)))
        return (1.0 - z) * h + z * n


class DilatedResidualDenseBlock(nn.Module):
    """Dilated residual dense block (AHDRNet, Yan et al. 2019; survey seed 001 §5.2, Fig. 2).

    ``layers`` densely connected 3x3 convs with dilation ``dilation`` and ReLU, each adding
    ``growth`` channels to the running concatenation; a 1x1 conv fuses the concatenation back
    to ``channels`` (local feature fusion) and the block's input is added (local residual).
    """

    def __init__(self, channels: int, growth: int = 32, layers: int = 6, dilation: int = 2):
        super().__init__()
        convs = []
        c = channels
        for _ in range(layers):
            convs.append(nn.Conv2d(c, growth, 3, padding=dilation, dilation=dilation))
            c += growth
        self.convs = nn.ModuleList(convs)
        self.fuse = nn.Conv2d(c, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = x
        for conv in self.convs:
            feats = torch.cat([feats, F.relu(conv(feats))], dim=1)
        return x + self.fuse(feats)


# --------------------------------------------------------------------------- camera-curve helpers
def hat_weight(z: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """Debevec & Malik 1997 triangle weight, normalised to ``[0, 1]``:
    ``w(z) = min(z - Z_min, Z_max - z) / ((Z_max - Z_min) / 2)`` on intensity levels
    ``z`` in ``[0, levels - 1]`` (zero at both ends, one in the middle). Differentiable in ``z``."""
    zmax = float(levels - 1)
    return (torch.minimum(z, zmax - z) / (zmax / 2.0)).clamp(min=0.0)


def grid_indices(size: torch.Tensor | int, samples: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``samples`` pixel positions along an axis of length ``size``: ``floor((k + 0.5) size / samples)``,
    integer arithmetic so numpy (``fusion``) and torch (also when traced for ONNX with a dynamic
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


__all__ = ["Swish", "ConvSwish", "CondInstanceNorm2d", "ConvGRUCell",
           "DilatedResidualDenseBlock", "hat_weight", "grid_indices", "gauss_jordan_solve"]
