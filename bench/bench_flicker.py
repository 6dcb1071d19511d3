"""Benchmark (not a test): do the shipped models add flicker on real motion? The warping error of
Lai et al. 2018 (``training/temporal.py``) of each model's output, next to the input's own and the
ground truth's, on clips with camera and object motion.

The clips are rendered from the CC0 HDR panoramas of the val split (``../shared/data/hdri``, not
committed): a pinhole camera pans, tilts, zooms and shakes inside a panorama (a perspective motion
field, not a 2-D shift), a textured ball with a specular highlight crosses the frame on its own
path, spinning, in front of it (occlusions and disocclusions), with a 180-degree shutter (5
sub-frames of motion blur). Each clip is photographed by ``training/camera.py``'s sRGB camera at
one exposure for the whole clip (4 % of the first frame clipped), with mild sensor noise, and
encoded as 8-bit H.264 (CRF 18, sRGB-tagged) with PyAV; the models see the decoded frames, as
``hdr-video`` would. The flow comes from the decoded input (DIS).

Rows: ``input`` = the input's linearised code values (inverse sRGB), the floor that noise,
compression and flow errors put under every score; ``truth`` = the scene-linear frames the clip
was made from (what a perfect, perfectly stable reconstruction scores: noise-free, but with
highlights far brighter than any model's, so in clipped pixels its warping error is several times
the input's); then each model. Columns: the
warping error over all visible pixels, and over the visible pixels clipped in the input (where a
model invents the highlight), both on PQ code values with SDR white at 203 cd/m^2, x 10^-4, with
their ratio to the input's; and the mean |log2| luminance error against the truth in the clipped
pixels. ``+ stabiliser`` rows: the prototype flow-guided blending of the expansion
(``training/temporal.py:stabilise_expansion``) applied to the network's output.

    python bench/bench_flicker.py [--frames 24] [--size 320x192] [--clips 5] [--models ...]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from fractions import Fraction

import numpy as np

from hdrlift.engine.colour_maths import luminance
from hdrlift.engine.io.video import VideoReader
from hdrlift.engine.pipeline import Pipeline
from hdrlift.training import camera as cam
from hdrlift.training import temporal as T
from hdrlift.training.data import default_data_root, normalise_median, perspective_crop, read_hdr

# Panoramas of the val split (sun, sunset, city lamps at night, windows, an arcade), each with its
# camera move: (yaw0, yaw1) degrees, (pitch0, pitch1), (fov0, fov1), shake amplitude in degrees.
CLIPS = [
    ("noon_grass_1k.hdr", (-40, 25), (8, 14), (70, 62), 0.35),
    ("industrial_sunset_02_1k.hdr", (150, 95), (2, 6), (60, 60), 0.6),
    ("blaubeuren_night_1k.hdr", (10, 70), (5, 0), (65, 55), 0.4),
    ("st_fagans_interior_1k.hdr", (-100, -30), (0, 10), (75, 75), 0.3),
    ("leadenhall_market_1k.hdr", (30, -20), (15, 20), (80, 70), 0.5),
]
SHUTTER = (-0.2, -0.1, 0.0, 0.1, 0.2)  # sub-frame times of a 180-degree shutter (5 samples)
MODELS = "hdrcnn-lite,expandnet,hdrunet,inverse-crf"


def smooth(t: float) -> float:
    return t * t * (3 - 2 * t)


def render_ball(h: int, w: int, cx: float, cy: float, r: float, spin: float, scale: float,
                tex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scene-linear picture and coverage of a textured, lit sphere of radius r (pixels)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = (x - cx) / r, (y - cy) / r
    d2 = dx * dx + dy * dy
    cover = np.clip((1.0 - np.sqrt(d2)) * r + 0.5, 0.0, 1.0)  # 1-pixel anti-aliased edge
    nz = np.sqrt(np.clip(1.0 - d2, 0.0, 1.0))
    # texture from spherical coordinates, spun about the vertical axis
    lon = (np.arctan2(dx, nz) + spin) / (2 * math.pi) % 1.0
    lat = np.arcsin(np.clip(dy, -1, 1)) / math.pi + 0.5
    th, tw = tex.shape[:2]
    albedo = tex[np.clip((lat * (th - 1)).astype(int), 0, th - 1), (lon * (tw - 1)).astype(int)]
    light = np.array([-0.5, -0.6, 0.62], np.float32)
    light /= np.linalg.norm(light)
    ndl = np.clip(dx * light[0] + dy * light[1] + nz * light[2], 0.0, 1.0)
    refl_z = 2 * ndl * nz - light[2]  # reflection of the light toward the viewer (0, 0, 1)
    spec = np.clip(refl_z, 0.0, 1.0) ** 60
    img = scale * (albedo * (0.15 + 0.85 * ndl)[..., None] + 40.0 * spec[..., None])
    return img.astype(np.float32), cover.astype(np.float32)


def render_clip(pano: np.ndarray, move, frames: int, w: int, h: int, seed: int) -> list[np.ndarray]:
    """Scene-linear frames (median ~0.18) of a camera move through ``pano`` with a ball in front."""
    (yaw0, yaw1), (p0, p1), (f0, f1), shake = move
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.standard_normal((frames * len(SHUTTER) + 1, 2)), axis=0)
    walk = walk - np.linspace(0, 1, len(walk))[:, None] * walk[-1]  # a shake that drifts back
    walk *= shake / max(1e-6, np.abs(walk).max())
    tex_rng = np.random.default_rng(seed + 1)
    from hdrlift.engine.sample import _value_noise

    n = _value_noise(tex_rng, 64, 128, 6, 4)
    tex = np.stack([0.25 + 0.5 * n, 0.2 + 0.3 * n[::-1], 0.15 + 0.2 * n[:, ::-1]], -1).astype(np.float32)
    out = []
    med = None
    for i in range(frames):
        acc = np.zeros((h, w, 3), np.float32)
        for k, sub in enumerate(SHUTTER):  # 180-degree shutter
            t = min(max((i + sub) / max(1, frames - 1), 0.0), 1.0)
            s = smooth(t)
            jy, jp = walk[len(SHUTTER) * i + k + 1]
            view = perspective_crop(pano, yaw0 + (yaw1 - yaw0) * s + jy, p0 + (p1 - p0) * s + jp,
                                    f0 + (f1 - f0) * s, w)
            view = view[(w - h) // 2:(w - h) // 2 + h]
            if med is None:
                med = float(np.median(luminance(view)))
            # the ball: left to right on an arc, toward the camera, spinning
            cx = w * (0.15 + 0.7 * t)
            cy = h * (0.35 + 0.35 * (2 * t - 1) ** 2)
            ball, cover = render_ball(h, w, cx, cy, h * (0.14 + 0.06 * t), 5.0 * t, med * 2.0, tex)
            acc += view * (1 - cover[..., None]) + ball * cover[..., None]
        out.append(acc / len(SHUTTER))
    scale = 0.18 / max(med or 0.18, 1e-9)
    return [(f * np.float32(scale)).astype(np.float32) for f in out]


def photograph(scene: list[np.ndarray], path: str, fps: int = 24, seed: int = 0) -> float:
    """8-bit H.264 of the clip at one exposure (4 % of the first frame clipped); returns the scale."""
    import av

    s = cam.exposure_for_clip_fraction(scene[0], 0.04)
    rng = np.random.default_rng(seed)
    h, w = scene[0].shape[:2]
    with av.open(path, "w") as c:
        st = c.add_stream("libx264", rate=Fraction(fps))
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"crf": "18", "preset": "medium",
                      "x264-params": "colorprim=bt709:transfer=iec61966-2-1:colormatrix=bt709:range=tv"}
        st.codec_context.color_range = 1
        st.codec_context.thread_count = 1  # x264 with threads is not reproducible from run to run
        for i, f in enumerate(scene):
            lin = cam.poisson_gaussian(f * np.float32(s), rng, gain=2e-4, read_sigma=1e-3)
            code = cam.quantise(cam.srgb_encode(lin), 8)
            vf = av.VideoFrame.from_ndarray((code * 255 + 0.5).astype(np.uint8), format="rgb24")
            vf = vf.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
            vf.pts = i
            for p in st.encode(vf):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return s


def scores(linear: list[np.ndarray], pairs: list[T.FlowPair], clipped: list[np.ndarray],
           truth: list[np.ndarray]) -> dict[str, float]:
    """Warping errors (:func:`training.temporal.warping_scores`), the mean PQ code and the mean
    |log2| luminance error against the truth in the clipped pixels."""
    pq = [T.pq_encode(f) for f in linear]
    level = np.mean([f[c].mean() for f, c in zip(pq, clipped) if c.any()])
    err = np.mean([np.abs(np.log2(np.maximum(f[c] @ T.LUMA709, 1e-6))
                          - np.log2(np.maximum(g[c] @ T.LUMA709, 1e-6))).mean()
                   for f, g, c in zip(linear, truth, clipped) if c.any()])
    return {**T.warping_scores(linear, pairs, clipped), "level": float(level), "stops": float(err)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", default="320x192")
    ap.add_argument("--clips", type=int, default=len(CLIPS))
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--strength", type=float, default=0.6, help="stabiliser blend weight of the history")
    ap.add_argument("--data", default=None, help="folder of the panoramas (default ../shared/data/hdri)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    root = args.data or str(default_data_root())
    models = [m for m in args.models.split(",") if m]
    pipes = {m: Pipeline(model=m) for m in models}
    nets = [m for m in models if m != "inverse-crf"]
    keys = ["input", "truth", *models, *(f"{m} + stabiliser" for m in nets)]
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in keys}
    visible, clipped_px = [], []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for ci, (name, *move) in enumerate(CLIPS[:args.clips]):
            pano = read_hdr(os.path.join(root, name))
            scene = render_clip(pano, move, args.frames, w, h, seed=ci)
            clip = os.path.join(tmp, f"clip{ci}.mp4")
            s = photograph(scene, clip, seed=ci)
            with VideoReader(clip) as r:
                inputs = [f.rgb for f in r.frames()]
            pairs = T.input_flows(inputs)
            clipped = [f.max(-1) >= 0.98 for f in inputs]
            visible.append(np.mean([p.visible for p in pairs]))
            clipped_px.append(np.mean([c.mean() for c in clipped]))
            truth = [f * np.float32(s) for f in scene]
            lin_in = [T.srgb_to_linear(f) for f in inputs]
            rows["input"].append(scores(lin_in, pairs, clipped, truth))
            rows["truth"].append(scores(truth, pairs, clipped, truth))
            for m, p in pipes.items():
                out = [p.process(f, input_space="sRGB Encoded Rec.709 (sRGB)").linear709 for f in inputs]
                rows[m].append(scores(out, pairs, clipped, truth))
                if m in nets:
                    fixed = T.stabilise_expansion(lin_in, out, pairs, strength=args.strength)
                    rows[f"{m} + stabiliser"].append(scores(fixed, pairs, clipped, truth))
            print(f"{name}: " + ", ".join(f"{k} {v[-1]['full'] * 1e4:.3f}/{v[-1]['clipped'] * 1e4:.3f}"
                                          for k, v in rows.items())
                  + f" ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    names = [c[0].replace("_1k.hdr", "") for c in CLIPS[:args.clips]]
    print(f"{len(names)} clips x {args.frames} frames, {w}x{h}; visible (non-occluded) pixels "
          f"{np.mean(visible) * 100:.0f} %, clipped in the input {np.mean(clipped_px) * 100:.1f} %\n")
    print("| | E_warp, all visible px | vs input | E_warp, clipped px | vs input | error vs truth, "
          "clipped px (stops) | " + " | ".join(names) + " |")
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len(names))

    def ratio(k: str, col: str) -> float:  # geometric mean over the clips of the ratio to the input
        return float(np.exp(np.nanmean([np.log(a[col] / b[col]) for a, b in zip(rows[k], rows["input"])])))

    for k, vals in rows.items():
        v = {c: float(np.nanmean([r[c] for r in vals])) for c in ("full", "clipped", "stops")}
        label = f"*{k}*" if k in ("input", "truth") else f"`{k.split(' ')[0]}`{k[len(k.split(' ')[0]):]}"
        print(f"| {label} | {v['full'] * 1e4:.3f} | {ratio(k, 'full'):.2f}x | {v['clipped'] * 1e4:.3f} | "
              f"{ratio(k, 'clipped'):.2f}x | {v['stops']:.2f} | "
              + " | ".join(f"{r['full'] * 1e4:.2f} / {r['clipped'] * 1e4:.2f}" for r in vals) + " |")
    print(f"\n(E_warp x 10^-4 on PQ code values, mean over clips; 'vs input': geometric mean over the clips "
          f"of the ratio to the input's; per-clip columns: all visible / clipped pixels; stabiliser "
          f"strength {args.strength}; {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
