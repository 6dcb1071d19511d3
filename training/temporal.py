"""Temporal stability of video reconstructions: the warping error of Lai et al. 2018.

Lai, Huang, Wang, Shechtman, Yumer, Yang, "Learning Blind Video Temporal Consistency" (ECCV 2018),
section 5.1: for consecutive frames, the previous output warped onto the current one by the
optical flow should match the current output wherever the motion is visible in both frames:

    E_warp(V_t, V_t-1) = 1 / sum_i M_t(i) * sum_i M_t(i) || V_t(i) - warp(V_t-1)(i) ||^2

with ``|| . ||^2`` the squared Euclidean norm over the three channels and ``M_t`` the
non-occlusion mask; the video's score is the mean over its T - 1 frame pairs.

How hdrlift computes it:

* **Flow from the input video**, not from the outputs (a flickering output would distort its own
  flow): OpenCV's DIS optical flow (Kroeger et al. 2016, ``cv2.DISOpticalFlow_create``, preset
  "medium") on the input's Rec.709 luma, 8 bits. The paper uses FlowNet2; torchvision's RAFT
  weights cannot be downloaded here, and DIS needs none.
* **Backward warping**: the flow ``F_b`` from frame t to frame t-1 says where each pixel of frame
  t was in frame t-1, so ``warp(V_t-1)(p) = V_t-1(p + F_b(p))``, bilinear (``cv2.remap``).
* **Occlusion mask** (Ruder et al. 2016, "Artistic style transfer for videos", the method Lai et
  al. use): with ``F_f`` the flow from t-1 to t sampled at ``p + F_b(p)``, a pixel is visible in
  both frames when ``|F_b + F_f|^2 < 0.01 (|F_b|^2 + |F_f|^2) + 0.5`` (forward-backward
  consistency) and it is not on a motion boundary, ``|grad u|^2 + |grad v|^2 <= 0.01 |F_b|^2 +
  0.002``. Pixels whose match falls outside frame t-1 are excluded too (the strip a pan brings
  into view).
* **Domain**: HDR outputs are compared as PQ code values (SMPTE ST 2084, in [0, 1]) with SDR white
  (1.0) at 203 cd/m^2 (BT.2408), no roll-off, so that a change of the same visibility counts the
  same in shadows and highlights. The input's own error, computed the same way on its linearised
  code values (inverse sRGB), is the reference: motion blur, noise, compression and flow errors
  all put a floor under the score that a model is not responsible for.

Needs ``opencv-python-headless`` (the ``temporal`` extra of pyproject.toml).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np

from hdrlift.engine.delivery import REFERENCE_WHITE_NITS, pq_inverse_eotf

__all__ = [
    "FlowPair",
    "luma8",
    "dis_flow",
    "warp",
    "occlusion_mask",
    "input_flows",
    "pq_encode",
    "srgb_to_linear",
    "warping_error",
    "pair_warping_error",
    "stabilise_expansion",
]

LUMA709 = np.array([0.2126, 0.7152, 0.0722], np.float32)


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise ImportError("the warping error needs OpenCV: pip install opencv-python-headless "
                          "(the 'temporal' extra of hdrlift)") from exc
    return cv2


def luma8(rgb: np.ndarray) -> np.ndarray:
    """8-bit Rec.709 luma of R'G'B' code values in [0, 1] (the flow's input)."""
    y = np.asarray(rgb, np.float32) @ LUMA709
    return np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8)


def dis_flow(src: np.ndarray, dst: np.ndarray, preset: str = "medium") -> np.ndarray:
    """DIS optical flow from 8-bit grey ``src`` to ``dst``: H x W x 2 float32 (dx, dy) such that
    ``src(p) ~ dst(p + flow(p))``."""
    cv2 = _cv2()
    presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
    dis = cv2.DISOpticalFlow_create(presets[preset])
    return dis.calc(np.ascontiguousarray(src), np.ascontiguousarray(dst), None)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return x, y


def warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``out(p) = img(p + flow(p))``, bilinear, edges repeated. ``img`` H x W (x C) float."""
    cv2 = _cv2()
    h, w = flow.shape[:2]
    x, y = _grid(h, w)
    a = np.ascontiguousarray(img, dtype=np.float32)
    return cv2.remap(a, x + flow[..., 0], y + flow[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def occlusion_mask(flow_b: np.ndarray, flow_f: np.ndarray, motion_boundaries: bool = True) -> np.ndarray:
    """Pixels of frame t visible in frame t-1 (bool H x W), from the backward flow ``flow_b``
    (t -> t-1) and the forward flow ``flow_f`` (t-1 -> t): forward-backward consistency
    ``|F_b + F_f(p + F_b)|^2 < 0.01 (|F_b|^2 + |F_f(p + F_b)|^2) + 0.5``, the match inside
    frame t-1, and (``motion_boundaries``, Ruder et al.'s second test) away from motion
    boundaries: ``|grad u|^2 + |grad v|^2 <= 0.01 |F_b|^2 + 0.002``, where a smooth flow
    field blurs across an object's edge and the forward-backward test alone lets a part of the
    disoccluded strip through."""
    h, w = flow_b.shape[:2]
    x, y = _grid(h, w)
    back = warp(flow_f, flow_b)
    s = flow_b + back
    lhs = (s * s).sum(-1)
    rhs = 0.01 * ((flow_b * flow_b).sum(-1) + (back * back).sum(-1)) + 0.5
    tx, ty = x + flow_b[..., 0], y + flow_b[..., 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    mask = (lhs < rhs) & inside
    if motion_boundaries:
        grad = sum(g * g for c in (0, 1) for g in np.gradient(flow_b[..., c]))
        mask &= grad <= 0.01 * (flow_b * flow_b).sum(-1) + 0.002
    return mask


@dataclasses.dataclass
class FlowPair:
    """Frame t's backward flow to frame t-1 and its non-occlusion mask."""

    flow: np.ndarray  # H x W x 2, t -> t-1
    mask: np.ndarray  # H x W bool

    @property
    def visible(self) -> float:
        return float(self.mask.mean())


def input_flows(frames: Sequence[np.ndarray], preset: str = "medium",
                motion_boundaries: bool = True) -> list[FlowPair]:
    """The T - 1 flow pairs of an input clip: ``frames`` are R'G'B' code values in [0, 1]
    (H x W x 3) or 8-bit grey frames."""
    grey = [f if (f.ndim == 2 and f.dtype == np.uint8) else luma8(f) for f in frames]
    pairs = []
    for t in range(1, len(grey)):
        fb = dis_flow(grey[t], grey[t - 1], preset)
        ff = dis_flow(grey[t - 1], grey[t], preset)
        pairs.append(FlowPair(fb, occlusion_mask(fb, ff, motion_boundaries)))
    return pairs


def srgb_to_linear(code: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB EOTF (the input's own linear light, white = 1.0)."""
    v = np.clip(np.asarray(code, np.float32), 0.0, 1.0)
    return np.where(v <= 0.04045, v / 12.92, np.power((v + 0.055) / 1.055, 2.4)).astype(np.float32)


def pq_encode(linear: np.ndarray, white_nits: float = REFERENCE_WHITE_NITS) -> np.ndarray:
    """PQ code values (float32, [0, 1]) of scene-linear RGB with white 1.0 at ``white_nits``."""
    a = np.maximum(np.asarray(linear, np.float32), 0.0) * np.float32(white_nits)
    return pq_inverse_eotf(a).astype(np.float32)


def pair_warping_error(cur: np.ndarray, prev: np.ndarray, pair: FlowPair) -> float:
    """E_warp of one frame pair: mean over visible pixels of ``||cur - warp(prev)||^2``."""
    if not pair.mask.any():
        return float("nan")
    d = np.asarray(cur, np.float32) - warp(prev, pair.flow)
    sq = (d * d).sum(-1) if d.ndim == 3 else d * d
    return float(sq[pair.mask].mean())


def warping_error(frames: Iterable[np.ndarray], pairs: Sequence[FlowPair]) -> tuple[float, list[float]]:
    """Lai et al.'s E_warp of a clip: (mean over the frame pairs, per-pair values). ``frames``
    are the T frames in the domain to compare (e.g. :func:`pq_encode` of an output)."""
    frames = list(frames)
    if len(frames) != len(pairs) + 1:
        raise ValueError(f"{len(frames)} frames need {len(frames) - 1} flow pairs, got {len(pairs)}")
    per = [pair_warping_error(frames[t], frames[t - 1], pairs[t - 1]) for t in range(1, len(frames))]
    vals = [v for v in per if np.isfinite(v)]
    return (float(np.mean(vals)) if vals else float("nan")), per


def warping_scores(linear: Sequence[np.ndarray], pairs: Sequence[FlowPair],
                   clipped: Sequence[np.ndarray]) -> dict[str, float]:
    """Warping errors of a clip's scene-linear frames on PQ code values: ``full`` over every
    visible pixel, ``clipped`` over the visible pixels that were clipped in the input (where a
    network makes up what it shows; pairs with fewer than 32 such pixels are left out)."""
    pq = [pq_encode(f) for f in linear]
    full, _ = warping_error(pq, pairs)
    hi = [pair_warping_error(pq[t + 1], pq[t], FlowPair(p.flow, p.mask & clipped[t + 1]))
          for t, p in enumerate(pairs) if (p.mask & clipped[t + 1]).sum() >= 32]
    return {"full": full, "clipped": float(np.mean(hi)) if hi else float("nan")}


def video_table(clips: Sequence[str], models: Sequence[str], *, device: str = "cpu",
                weights: dict[str, str] | None = None, max_frames: int | None = None) -> dict:
    """``hdrlift-eval --video``: the warping error of each model's output on real clips, beside the
    input's own (its sRGB-decoded light). Flow comes from the input (DIS), the occlusion mask from
    the forward-backward check; errors are on PQ code values (white 1.0 at 203 cd/m2). A model
    that adds flicker scores above the input's own warping error."""
    from hdrlift.engine.io.video import VideoReader
    from hdrlift.engine.pipeline import Pipeline

    pipes = {m: Pipeline(model=m, device=device, weights=(weights or {}).get(m)) for m in models}
    per_clip: dict[str, dict[str, dict[str, float]]] = {}
    for clip in clips:
        with VideoReader(clip) as r:
            frames = [f.rgb for f in r.frames(end=max_frames)]
            space = pipes[models[0]].input_space_for(r.tags) if models else None
        pairs = input_flows(frames)
        clipped = [f.max(-1) >= 0.98 for f in frames]
        rows = {"input": warping_scores([srgb_to_linear(f) for f in frames], pairs, clipped)}
        for m, p in pipes.items():
            rows[m] = warping_scores([p.process(f, input_space=space).linear709 for f in frames], pairs, clipped)
        per_clip[str(clip)] = rows
    names = ["input", *models]
    mean = {n: {k: float(np.nanmean([per_clip[c][n][k] for c in per_clip])) for k in ("full", "clipped")}
            for n in names}
    return {"models": names, "mean": mean, "per_clip": per_clip}


def video_markdown(table: dict) -> str:
    """The ``--video`` table: warping error x 1e4 (PQ), and its ratio to the input's own."""
    base = table["mean"]["input"]
    lines = ["| model | warping error, all pixels (x1e-4) | vs input | in clipped pixels (x1e-4) | vs input |",
             "|---|---:|---:|---:|---:|"]
    for n in table["models"]:
        v = table["mean"][n]
        lines.append(f"| {n} | {v['full'] * 1e4:.3f} | {v['full'] / base['full']:.2f}x | "
                     f"{v['clipped'] * 1e4:.3f} | {v['clipped'] / base['clipped']:.2f}x |")
    return "\n".join(lines) + "\n"


def stabilise_expansion(inputs_linear: Sequence[np.ndarray], outputs: Sequence[np.ndarray],
                        pairs: Sequence[FlowPair], strength: float = 0.6) -> list[np.ndarray]:
    """Prototype temporal stabiliser (bench only; not wired into the pipeline): flow-guided
    recursive blending of the *expansion*, not of the picture.

    The expansion of frame t is its log luminance gain over the input's linear light,
    ``g_t = log(Y(out_t) / Y(in_t))`` (zero where a model keeps the input). Where the input's
    flow says a pixel was visible in frame t-1, the gain is blended with the previous frame's
    stabilised gain warped onto frame t: ``g'_t = strength * warp(g'_t-1) + (1 - strength) * g_t``;
    elsewhere (occlusions, the strip a pan brings in) ``g'_t = g_t``. The output is
    ``out_t * exp(g'_t - g_t)``: the current frame's texture, colour and well-exposed pixels
    stay as the model made them (no ghosting of detail); only the brightness of what the model
    invented is smoothed along the motion. Causal, one frame of state, so it streams.
    """
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"strength must lie in [0, 1), got {strength}")
    if len(outputs) != len(pairs) + 1 or len(inputs_linear) != len(outputs):
        raise ValueError("need T inputs, T outputs and T - 1 flow pairs")
    eps = np.float32(1e-4)
    result, prev = [], None
    for t, (lin, out) in enumerate(zip(inputs_linear, outputs)):
        out = np.asarray(out, np.float32)
        g = np.log(np.maximum(out @ LUMA709, eps) / np.maximum(np.asarray(lin, np.float32) @ LUMA709, eps))
        if prev is not None:
            pair = pairs[t - 1]
            blended = strength * warp(prev, pair.flow) + (1.0 - strength) * g
            g_new = np.where(pair.mask, blended, g).astype(np.float32)
        else:
            g_new = g
        result.append(out * np.exp(g_new - g)[..., None])
        prev = g_new
    return result
