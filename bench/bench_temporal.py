"""Benchmark (not a test): frame-to-frame stability of each model's highlights on video.

The project's sample clip pans a camera across a static HDR scene by a whole number of pixels per
frame, so a scene point's position in the previous frame is known exactly. For every pair of
consecutive frames, over the pixels clipped in both frames (where a model has to invent the
highlight), this measures how far the model's answer for the same scene point moves between
frames, in stops: mean |log2 Y_t(y, x) - log2 Y_t-1(y, x + shift)|. The ground truth's value is 0
(the scene does not change), so everything measured is flicker the model adds; the mean error
against the truth in the same pixels is printed beside it for scale.

    python bench/bench_temporal.py [--frames 24] [--size 640x360] [--models hdrcnn-lite,expandnet,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from hdrlift.engine.io.exr import read_exr
from hdrlift.engine.io.video import VideoReader
from hdrlift.engine.pipeline import Pipeline, PipelineOptions
from hdrlift.engine.sample import write_sample

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def pan_offsets(width: int, frames: int) -> list[int]:
    """x0 of each frame's window, as engine.sample.render_frames places it."""
    sw = max(int(width * 3.75), width + 2)
    return [int(round((sw - width) * i / max(1, frames - 1))) for i in range(frames)]


def log_luma(img: np.ndarray) -> np.ndarray:
    return np.log2(np.maximum(img @ LUMA, 1e-6))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--models", default="hdrcnn-lite,expandnet,hdrunet,inverse-crf,landis,akyuz")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    xs = pan_offsets(w, args.frames)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_sample(os.path.join(tmp, "pan.mp4"), width=w, height=h, frames=args.frames, truth_dir=tmp)
        with VideoReader(clip) as r:
            frames = [f.rgb for f in r.frames()]
        truth = [read_exr(os.path.join(tmp, f"truth.{i + 1:04d}.exr")).pixels[..., :3] for i in range(args.frames)]
        for name in args.models.split(","):
            pipe = Pipeline(PipelineOptions(model=name))
            preds = [log_luma(pipe.process(f).linear709) for f in frames]
            flick, err, n = [], [], 0
            for t in range(1, args.frames):
                d = xs[t] - xs[t - 1]
                if d >= w:
                    continue
                cur = slice(0, w - d)  # columns of frame t whose scene point frame t-1 shows at x + d
                clipped = (frames[t][:, cur].max(-1) >= 0.99) & (frames[t - 1][:, d:].max(-1) >= 0.99)
                if clipped.sum() < 64:
                    continue
                a, b = preds[t][:, cur][clipped], preds[t - 1][:, d:][clipped]
                flick.append(float(np.mean(np.abs(a - b))))
                err.append(float(np.mean(np.abs(a - log_luma(truth[t])[:, cur][clipped]))))
                n += int(clipped.sum())
            rows.append((name, np.mean(flick), np.percentile(flick, 90), np.mean(err), len(flick), n // max(1, len(flick))))
            print(f"{name}: {rows[-1][1]:.3f} stops", file=sys.stderr)
    print("| model | flicker, mean (stops) | flicker, 90th pct of frame pairs | error vs truth (stops) | frame pairs | clipped px per pair |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| `{r[0]}` | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.3f} | {r[4]} | {r[5]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
