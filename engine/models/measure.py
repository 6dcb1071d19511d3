"""Measuring networks: :func:`count_flops`, a hook-based conv/deconv FLOP counter (2 x MACs) run on
the ``meta`` device, so even a 1080p frame through the full-width HDR-CNN costs no compute, and
:func:`count_params`.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn


# --------------------------------------------------------------------------- FLOPs and parameters
def count_flops(model: nn.Module, shape: tuple[int, ...] = (1, 3, 1088, 1920),
                call: Callable[[nn.Module, torch.Tensor], object] | None = None) -> int:
    """FLOPs (2 x multiply-accumulates) of every ``Conv2d`` and ``ConvTranspose2d`` for one
    forward pass of an input of ``shape``. Element-wise ops, activations and the blend are not
    counted (they are < 1 % of any model here).

    The model is deep-copied onto the ``meta`` device, so no memory or compute is spent even
    at 1080p; ``model`` itself is untouched. ``call(model, x)`` overrides ``model(x)``.
    """
    meta = copy.deepcopy(model).to("meta")
    total = [0]

    def conv_hook(mod: nn.Conv2d, inp, out) -> None:
        kh, kw = mod.kernel_size
        macs = out.numel() * (mod.in_channels // mod.groups) * kh * kw
        total[0] += 2 * macs

    def deconv_hook(mod: nn.ConvTranspose2d, inp, out) -> None:
        kh, kw = mod.kernel_size
        macs = inp[0].numel() * (mod.out_channels // mod.groups) * kh * kw
        total[0] += 2 * macs

    handles = []
    for m in meta.modules():
        if isinstance(m, nn.ConvTranspose2d):
            handles.append(m.register_forward_hook(deconv_hook))
        elif isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
    x = torch.empty(shape, device="meta")
    try:
        with torch.no_grad():
            (call or (lambda m, t: m(t)))(meta, x)
    finally:
        for hd in handles:
            hd.remove()
    return total[0]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["count_flops", "count_params"]
