"""Benchmark (not a test): hdr-video frames/s at 1080p on this machine, per model.

Makes a 1080p sample clip with the project's own generator, converts it with each model through
the same Pipeline the CLI uses, and prints a markdown table: wall-clock frames/s and the busy time
of each stage per frame (decode, colour in + out, model, EXR encode). Stages overlap (decode and
colour in on one thread, inference on another, colour out and EXR writes on the encode workers),
so frames/s is set by the slowest one and the cores available, not by their sum.

    python bench/bench_hdr_video.py [--frames 12] [--size 1920x1080] [--models inverse-crf,landis,hdrcnn-lite]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import torch

from hdrlift.engine.models import available
from hdrlift.engine.pipeline import Pipeline, PipelineOptions
from hdrlift.engine.sample import write_sample


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--models", help="comma-separated (default: every runnable model)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    models = args.models.split(",") if args.models else [i.name for i in available() if i.runnable]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.frames} frames {w}x{h}", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_sample(os.path.join(tmp, "bench.mp4"), width=w, height=h, frames=args.frames)
        for name in models:
            pipe = Pipeline(PipelineOptions(model=name))
            pipe.process(torch.rand(64, 64, 3).numpy())  # warm-up
            t = time.perf_counter()
            rep = pipe.convert(clip, os.path.join(tmp, name), overwrite=True)
            wall = time.perf_counter() - t
            n = rep.frames
            rows.append((name, n / wall, *(1000 * rep.timings[k] / n for k in ("decode", "colour", "model", "encode"))))
            print(f"{name}: {n / wall:.2f} frames/s", file=sys.stderr)
    print("| model | frames/s | decode ms/frame | colour in+out ms/frame | model ms/frame | EXR encode ms/frame |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
