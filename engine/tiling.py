"""Tiled inference for frames above a pixel budget: overlapping tiles, raised-cosine blending.

Layout
------
The frame is conceptually padded at the bottom/right to the model's ``multiple_of`` by
reflection (exactly what whole-frame inference does inside the exported graph), and cut into
tiles of ``tile`` x ``tile`` pixels (multiples of ``multiple_of``) whose origins are multiples of
``multiple_of`` too, so every pooling/stride grid of a network lines up with the whole-frame
grid. Neighbouring tiles overlap by at least ``2 * margin + blend`` pixels (the last tile of a
row/column is pushed back to the frame edge, so its overlap may be larger):

* ``margin`` pixels next to a tile's inner edge get weight 0 from that tile: they are context
  only, computed with zero padding where the whole frame had real pixels. With ``margin`` at least
  the model's receptive-field radius the kept pixels are the whole-frame values;
* over the rest of the overlap the newer tile fades in with a raised-cosine ramp
  ``w(t) = 1/2 - 1/2 cos(pi (t + 1/2) / L)`` (smooth, so no seam is visible even where the
  margin is smaller than the receptive field).

Blending is sequential and convex: ``out <- out + w (tile - out)`` first along each strip of
tiles (horizontally), then strip by strip into the frame (vertically). The result is a
separable partition-of-unity blend, and wherever two tiles agree it returns their value
*exactly* (``w * 0`` adds nothing), so a pointwise operator gives bit-identical results tiled or
not.

Which models tile (:func:`tile_policy`)
---------------------------------------
Each model says so in its registry entry (``ModelInfo.tiling`` and ``ModelInfo.tile_margin``,
declared in :mod:`hdrlift.engine.models.catalog`):

* ``pointwise`` (``inverse-crf``): any tiling, ``margin = 0``, exact;
* ``global``: the other classical operators use frame statistics (max, min, geometric mean) and
  frame-wide bilateral filters, so a tile is not a frame: they always run whole-frame (they are
  light enough) and a frame above the budget only logs a warning;
* ``network``: ``margin`` from ``ModelInfo.tile_margin``, else :data:`NETWORK_MARGIN` (measured
  receptive-field radii: HDR-CNN 154 px, HDRUNet 93 px; 99.9 % of the gradient mass of a randomly
  initialised HDRUNet lies within 63 px, of HDR-CNN-lite within 14 px, which is why 64 px is the
  default; see docs/backends.md for the measured tiled-vs-whole differences).

Memory: besides the input frame, :func:`run_tiled` holds the output frame (hdr + mask), one strip
(4 x tile x width floats) and one batch of tiles (``batch`` x 4 x tile^2 floats, the budget).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from hdrlift.engine.defaults import DEFAULT_MAX_PIXELS  # noqa: F401 - tiling's own default, kept in defaults
from hdrlift.engine.errors import InputError

log = logging.getLogger("hdrlift.tiling")

CUDA_MAX_PIXELS = 7680 * 4320  # the CUDA default never exceeds 8K UHD per back-end call
CUDA_MIN_PIXELS = 512 * 512
CUDA_MEMORY_SHARE = 0.5  # of the GPU memory free when the pipeline starts
CUDA_FALLBACK_BYTES_PER_PIXEL = (2400, 1600)  # fp32, fp16: above every network measured so far
DEFAULT_TILE = 1024
DEFAULT_BLEND = 32
NETWORK_MARGIN = 64  # networks whose registry entry gives no tile_margin


def default_max_pixels(info, device: str, precision: str = "fp32", free_bytes: int | None = None) -> int:
    """The pixel budget per back-end call when the user gives none (``--max-pixels``).

    On the CPU, 1080p: larger frames run in tiles, which bounds host memory and costs little. On
    CUDA a network's budget is ``CUDA_MEMORY_SHARE`` of the free GPU memory divided by its peak
    bytes per pixel (``ModelInfo.cuda_bytes_per_pixel``, measured on an H100 at 4K; a cautious
    figure for unmeasured models), between 512 x 512 and 8K UHD: a 4K frame of the default model
    in fp16 (319 bytes/pixel, 2.5 GiB) runs whole on any GPU with 5 GiB free, instead of in tiles
    whose overlap would add a third more work, and small frames batch together.
    """
    if not str(device).startswith("cuda") or getattr(info, "kind", "network") != "network":
        return DEFAULT_MAX_PIXELS
    if free_bytes is None:
        import torch

        free_bytes, _ = torch.cuda.mem_get_info(torch.device(device))
    fp32, fp16 = getattr(info, "cuda_bytes_per_pixel", None) or CUDA_FALLBACK_BYTES_PER_PIXEL
    per_pixel = fp32 if precision == "fp32" or getattr(info, "fp32_only", None) else fp16
    budget = int(CUDA_MEMORY_SHARE * free_bytes / per_pixel)
    return max(CUDA_MIN_PIXELS, min(budget, CUDA_MAX_PIXELS))


def tile_policy(info) -> str:
    """``"pointwise"``, ``"global"`` or ``"network"`` for a registry ``ModelInfo`` (its ``tiling``)."""
    return info.tiling


def default_margin(info) -> int:
    """Context pixels around each tile: 0 for a pointwise model, else the model's ``tile_margin``
    (:data:`NETWORK_MARGIN` when it gives none)."""
    if tile_policy(info) == "pointwise":
        return 0
    return NETWORK_MARGIN if info.tile_margin is None else int(info.tile_margin)


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """Tile origins along each axis, in the padded frame of ``hp`` x ``wp``."""

    h: int
    w: int
    hp: int
    wp: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    margin: int

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)


def _starts(size: int, tile: int, stride: int) -> tuple[int, ...]:
    if size <= tile:
        return (0,)
    n = 1 + math.ceil((size - tile) / stride)
    return tuple([k * stride for k in range(n - 1)] + [size - tile])


def plan_tiles(h: int, w: int, multiple_of: int, tile: int = DEFAULT_TILE, margin: int = 64,
               blend: int = DEFAULT_BLEND) -> TilePlan:
    """Tile layout for an ``h`` x ``w`` frame (see the module docstring)."""
    m = max(1, int(multiple_of))
    if tile < m:
        raise ValueError(f"tile {tile} is smaller than the model's multiple {m}")
    tile = tile - tile % m
    overlap = _round_up(2 * margin + max(1, blend), m)
    if overlap > tile // 2:
        raise ValueError(f"tile {tile} too small for margin {margin} + blend {blend} (overlap {overlap} > tile / 2)")
    hp, wp = _round_up(h, m), _round_up(w, m)
    th, tw = min(tile, hp), min(tile, wp)
    stride = tile - overlap
    return TilePlan(h, w, hp, wp, th, tw, _starts(hp, th, stride), _starts(wp, tw, stride), margin)


def _ramp(length: int) -> np.ndarray:
    t = (np.arange(length, dtype=np.float64) + 0.5) / length
    return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)


def _fade_in(n: int, overlap: int, margin: int) -> np.ndarray:
    """Weight of a new tile over its first ``n`` pixels, ``overlap`` of which are shared with
    content already placed: 0 over ``margin``, raised cosine up to 1, 1 beyond the overlap."""
    w = np.ones(n, np.float32)
    if overlap <= 0:
        return w
    ramp = overlap - 2 * margin
    if ramp < 1:
        raise ValueError(f"overlap {overlap} leaves no room to blend with margin {margin}")
    w[:margin] = 0.0
    w[margin:margin + ramp] = _ramp(ramp)
    return w


def _reflect_index(idx: np.ndarray, size: int) -> np.ndarray:
    """Indices past ``size - 1`` mirrored without repeating the edge (torch/ONNX ``reflect``)."""
    return np.where(idx >= size, 2 * (size - 1) - idx, idx)


def needs_tiling(backend, h: int, w: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> bool:
    if tile_policy(backend.info) == "global":
        return False
    lim = getattr(backend, "max_hw", None)
    too_big_for_engine = lim is not None and (h > lim[0] or w > lim[1])
    return h * w > max_pixels or too_big_for_engine


def run_tiled(backend, frame: np.ndarray, *, max_pixels: int = DEFAULT_MAX_PIXELS, tile: int | None = None,
              margin: int | None = None, blend: int = DEFAULT_BLEND, batch: int | None = None,
              force: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Run ``backend`` on one ``H x W x 3`` float32 frame (network input domain); returns
    ``(hdr H x W x 3, mask H x W)`` float32. Frames within ``max_pixels`` (and within the back
    end's largest shape) run whole unless ``force``."""
    a = np.asarray(frame)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"frame must be H x W x 3, got shape {tuple(a.shape)}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    h, w = a.shape[:2]
    policy = tile_policy(backend.info)
    if policy == "global" or not (force or needs_tiling(backend, h, w, max_pixels)):
        if policy == "global" and h * w > max_pixels:
            log.warning("%s uses frame statistics and is never tiled; running %dx%d whole",
                        backend.model_name, w, h)
        hdr, mask = backend.run(a.transpose(2, 0, 1)[None])
        return np.ascontiguousarray(hdr[0].transpose(1, 2, 0)), np.ascontiguousarray(mask[0, 0])

    m = backend.multiple_of
    margin = default_margin(backend.info) if margin is None else int(margin)
    tile = int(tile or getattr(backend, "preferred_tile", None) or DEFAULT_TILE)
    lim = getattr(backend, "max_hw", None)
    if lim is not None:
        tile = min(tile, lim[0] - lim[0] % m, lim[1] - lim[1] % m)
    plan = plan_tiles(h, w, m, tile, margin, blend)
    per_tile = plan.tile_h * plan.tile_w
    if batch is None:
        batch = max(1, max_pixels // per_tile)
    mb = getattr(backend, "max_batch", None)
    if mb:
        batch = min(batch, mb)

    out_hdr = np.empty((h, w, 3), np.float32)
    out_mask = np.empty((h, w), np.float32)
    cols_all = [_reflect_index(np.arange(x0, x0 + plan.tile_w), w) for x0 in plan.xs]
    prev_row_end = 0
    for y0 in plan.ys:
        rows = _reflect_index(np.arange(y0, y0 + plan.tile_h), h)
        strip = np.empty((4, plan.tile_h, plan.wp), np.float32)
        prev_col_end = 0
        for b0 in range(0, len(plan.xs), batch):
            xs = plan.xs[b0:b0 + batch]
            tiles = np.stack([a[rows][:, cols_all[b0 + i]] for i in range(len(xs))]).transpose(0, 3, 1, 2)
            hdr, mask = backend.run(np.ascontiguousarray(tiles))
            for i, x0 in enumerate(xs):
                t = np.concatenate([hdr[i], mask[i]], axis=0)  # (4, th, tw)
                ov = max(0, prev_col_end - x0)
                wx = _fade_in(plan.tile_w, ov, margin) if ov else None
                seg = strip[:, :, x0:x0 + plan.tile_w]
                if wx is None:
                    seg[...] = t
                else:
                    seg[:, :, :ov] += wx[:ov] * (t[:, :, :ov] - seg[:, :, :ov])
                    seg[:, :, ov:] = t[:, :, ov:]
                prev_col_end = x0 + plan.tile_w
        # strip -> frame (vertical blend); rows past h are padding and are dropped
        y1 = min(y0 + plan.tile_h, h)
        body = strip[:, : y1 - y0, :w].transpose(1, 2, 0)  # (rows, w, 4) view
        ov = max(0, min(prev_row_end, y1) - y0)
        if ov:
            wy = _fade_in(plan.tile_h, max(0, prev_row_end - y0), margin)[:ov, None, None]
            out_hdr[y0:y0 + ov] += wy * (body[:ov, :, :3] - out_hdr[y0:y0 + ov])
            out_mask[y0:y0 + ov] += wy[..., 0] * (body[:ov, :, 3] - out_mask[y0:y0 + ov])
        out_hdr[y0 + ov:y1] = body[ov:, :, :3]
        out_mask[y0 + ov:y1] = body[ov:, :, 3]
        prev_row_end = y1
    return out_hdr, out_mask
