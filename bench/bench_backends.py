"""Benchmark (not a test): per model, GFLOPs per 1080p frame and measured CPU ms/frame for the
torch and onnxruntime back ends, against this machine's measured fp32 matmul rate; plus the
tiled-vs-whole-frame differences of the networks. Prints markdown tables.

    OMP_NUM_THREADS=1 nice -n 15 python bench/bench_backends.py [--frames 2] [--models a,b]
        [--heavy-size 480x272] [--no-tiling]

Networks above ``--heavy-gflops`` GFLOPs per 1080p frame are timed at ``--heavy-size`` and scaled
to 1080p by the pixel ratio (their cost is linear in the pixel count); the table says so.
Networks without shipped weights run with random initialisation (speed does not depend on the
weights). FLOPs count convolutions only (2 x MACs, ``measure.count_flops``); the classical
operators are element-wise and bilateral work that count does not see.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

from hdrlift.engine.backends import create_backend, wrap_module
from hdrlift.engine.models import available, get_info, load_model
from hdrlift.engine.models.measure import count_flops
from hdrlift.engine.tiling import plan_tiles, run_tiled

FULL = (1080, 1920)


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 GFLOP/s of ``torch.matmul`` on two n x n matrices (best of ``repeats``)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def model_for(name: str):
    info = get_info(name)
    if info.runnable:
        return load_model(name), "shipped" if info.needs_weights else "-"
    torch.manual_seed(0)
    return wrap_module(name, info.factory()), "random init"


def time_backend(be, x: np.ndarray, frames: int) -> float:
    be.run(x)  # warm-up (allocations, onnxruntime's first-run graph work)
    best = float("inf")
    for _ in range(frames):
        t = time.perf_counter()
        be.run(x)
        best = min(best, time.perf_counter() - t)
    return best


def frame(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    f = np.stack([0.8 + 0.3 * np.sin(xx / 37 + yy / 53), 0.8 + 0.3 * np.cos(xx / 41), 0.85 + 0.2 * np.sin(yy / 29)])
    return np.clip(f, 0, 1)[None].astype(np.float32)


def stress(name: str, seed: int = 0):
    net = get_info(name).factory()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) / mod.weight[0].numel() ** 0.5)
                if mod.bias is not None:
                    mod.bias.zero_()
    return wrap_module(name, net)


def tiling_table(size=(320, 416), tile=256) -> list[str]:
    rows = ["| model (weights) | frame | tile | margin | tiles | max abs diff / max value | mean abs diff / max value |",
            "|---|---|---:|---:|---:|---:|---:|"]
    h, w = size
    x = frame(h, w)[0].transpose(1, 2, 0).copy()
    for name in ("hdrcnn-lite", "hdrunet"):
        for label, model in (("default init", None), ("stress init", stress(name))):
            if model is None:
                torch.manual_seed(0)
                model = wrap_module(name, get_info(name).factory())
            be = create_backend(model, kind="torch")
            whole, _ = run_tiled(be, x)
            scale = float(np.abs(whole).max())
            for margin in (16, 48):
                tiled, _ = run_tiled(be, x, force=True, tile=tile, margin=margin)
                n = plan_tiles(h, w, be.multiple_of, tile, margin).count
                d = np.abs(tiled - whole)
                rows.append(f"| {name} ({label}) | {w}x{h} | {tile} | {margin} | {n} | {d.max() / scale:.2e} | {d.mean() / scale:.2e} |")
            print(f"tiling {name} {label} done", file=sys.stderr)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=2, help="timed runs per back end (best is kept)")
    ap.add_argument("--models", help="comma-separated (default: every registered model)")
    ap.add_argument("--heavy-gflops", type=float, default=300.0)
    ap.add_argument("--heavy-size", default="480x272")
    ap.add_argument("--no-tiling", action="store_true")
    args = ap.parse_args()
    names = args.models.split(",") if args.models else [i.name for i in available()]
    hw, hh = (int(v) for v in args.heavy_size.split("x"))
    peak = matmul_peak()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
          f"fp32 matmul {peak:.1f} GFLOP/s", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for name in names:
            model, weights = model_for(name)
            gflops = count_flops(model.net, (1, 3, 1088 if model.info.multiple_of > 1 else 1080, 1920)) / 1e9
            size = (hh, hw) if gflops > args.heavy_gflops else FULL
            scale = FULL[0] * FULL[1] / (size[0] * size[1])
            x = frame(*size)
            res = {}
            for kind in ("torch", "onnxruntime"):
                be = create_backend(model, kind=kind, cache_dir=cache)
                res[kind] = time_backend(be, x, args.frames) * scale
                be.close()
            rows.append((name, weights, gflops, f"{size[1]}x{size[0]}", res["torch"], res["onnxruntime"]))
            print(f"{name}: torch {1000 * res['torch']:.0f} ms, onnxruntime {1000 * res['onnxruntime']:.0f} ms", file=sys.stderr)
    print(f"fp32 matmul rate (2048^3 torch.matmul): **{peak:.1f} GFLOP/s**\n")
    print("| model | weights | GFLOPs / 1080p frame | timed at | torch ms/frame | onnxruntime ms/frame | faster | torch % of matmul rate | onnxruntime % of matmul rate |")
    print("|---|---|---:|---|---:|---:|---|---:|---:|")
    for name, weights, gf, at, tt, ot in rows:
        pct = (lambda s: f"{100 * gf / s / peak:.0f} %" if gf > 0.1 else "-")
        faster = "torch" if tt < ot else "onnxruntime"
        print(f"| {name} | {weights} | {gf:.1f} | {at} | {1000 * tt:.0f} | {1000 * ot:.0f} | {faster} | {pct(tt)} | {pct(ot)} |")
    if not args.no_tiling:
        print()
        print("\n".join(tiling_table()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
