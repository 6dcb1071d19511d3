"""Benchmark (not a test): the naive way vs ``hdr-video`` (the Pipeline class), end to end, on the
same 1080p clip and the same network.

Naive: extract every frame to PNG (the ``ffmpeg`` CLI if it is on PATH, else PyAV), then one plain
loop: read the PNG (OpenImageIO), convert to the network domain (OCIO), run the model, convert to
the output space (OCIO), write the EXR (OpenImageIO, half, zip) -- one frame at a time, nothing
overlapped. ``hdr-video``: ``Pipeline.convert`` (decode thread, inference, EXR writer pool).

    OMP_NUM_THREADS=1 nice -n 15 python bench/bench_naive.py [--frames 6] [--size 1920x1080] [--model inverse-crf]

The sample clip is made with ``hdrlift.engine.sample.write_sample``. A network without shipped
weights is not accepted by the Pipeline, so pick a runnable model (``--model``).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch


def extract_pngs(clip: pathlib.Path, folder: pathlib.Path) -> tuple[list[pathlib.Path], str]:
    folder.mkdir(parents=True, exist_ok=True)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        subprocess.run([ffmpeg, "-v", "error", "-i", str(clip), str(folder / "f_%04d.png")], check=True)
        return sorted(folder.glob("f_*.png")), "ffmpeg CLI"
    import av
    import OpenImageIO as oiio

    with av.open(str(clip)) as container:
        for i, vf in enumerate(container.decode(video=0), start=1):
            rgb = vf.to_ndarray(format="rgb24")
            oiio.ImageBuf(np.ascontiguousarray(rgb)).write(str(folder / f"f_{i:04d}.png"))
    return sorted(folder.glob("f_*.png")), "PyAV"


def naive(clip: pathlib.Path, out: pathlib.Path, model_name: str) -> tuple[float, int, dict]:
    import OpenImageIO as oiio

    from hdrlift.engine.colour import DEFAULT_OUTPUT_SPACE, ColourManager
    from hdrlift.engine.models import load_model

    t0 = time.perf_counter()
    times = {"extract": 0.0, "read": 0.0, "model": 0.0, "write": 0.0}
    pngs, how = extract_pngs(clip, out / "png")
    times["extract"] = time.perf_counter() - t0
    cm = ColourManager()
    to_net = cm.network_converter(cm.resolve("srgb"), to_network=True)
    to_out = cm.network_converter(cm.resolve(DEFAULT_OUTPUT_SPACE), to_network=False)
    model = load_model(model_name)
    out.mkdir(parents=True, exist_ok=True)
    for i, png in enumerate(pngs, start=1):
        t = time.perf_counter()
        rgb = oiio.ImageBuf(str(png)).get_pixels(oiio.FLOAT)[..., :3]
        times["read"] += time.perf_counter() - t
        t = time.perf_counter()
        net_in = np.clip(to_net(np.ascontiguousarray(rgb)), 0, 1)
        with torch.inference_mode():
            lin = model(torch.from_numpy(net_in).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
        hdr = to_out(np.ascontiguousarray(lin))
        times["model"] += time.perf_counter() - t
        t = time.perf_counter()
        spec = oiio.ImageSpec(hdr.shape[1], hdr.shape[0], 3, oiio.HALF)
        spec.attribute("compression", "zip")
        o = oiio.ImageOutput.create(str(out / f"naive.{i:04d}.exr"))
        o.open(str(out / f"naive.{i:04d}.exr"), spec)
        o.write_image(hdr)
        o.close()
        times["write"] += time.perf_counter() - t
    times["how"] = how
    return time.perf_counter() - t0, len(pngs), times


def pipeline(clip: pathlib.Path, out: pathlib.Path, model_name: str, backend: str = "auto") -> tuple[float, int, dict]:
    from hdrlift.engine.pipeline import Pipeline, PipelineOptions

    t0 = time.perf_counter()
    pipe = Pipeline(PipelineOptions(model=model_name, backend=backend))
    rep = pipe.convert(clip, out, overwrite=True)
    return time.perf_counter() - t0, rep.frames, rep.timings


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--model", default="inverse-crf")
    ap.add_argument("--backends", default="auto,torch",
                    help="hdr-video back ends to run (default auto,torch: the default, and the naive loop's own "
                         "back end so the gain from overlapping alone is visible)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads, {args.frames} frames {w}x{h}, model {args.model}", file=sys.stderr)
    from hdrlift.engine.sample import write_sample

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        clip = write_sample(tmp / "clip.mp4", width=w, height=h, frames=args.frames)
        nt, nn_, ntimes = naive(clip, tmp / "naive", args.model)
        print(f"naive: {nt:.1f} s ({ntimes['how']})", file=sys.stderr)
        runs = []
        for be in args.backends.split(","):
            try:
                pt, pn, ptimes = pipeline(clip, tmp / f"pipe-{be}", args.model, be)
                print(f"hdr-video --backend {be}: {pt:.1f} s", file=sys.stderr)
                runs.append((be, pt, pn, ptimes))
            except ImportError as exc:
                print(f"hdr-video --backend {be} could not run here: {exc}", file=sys.stderr)
    print("| way | frames | seconds (wall, incl. model load) | frames/s | per-frame busy time (ms) |")
    print("|---|---:|---:|---:|---|")
    busy = ", ".join(f"{k} {1000 * v / nn_:.0f}" for k, v in ntimes.items() if k != "how")
    print(f"| naive ({ntimes['how']} PNGs, loop, torch, OIIO EXR) | {nn_} | {nt:.2f} | {nn_ / nt:.2f} | {busy} |")
    for be, pt, pn, ptimes in runs:
        busy = ", ".join(f"{k} {1000 * v / pn:.0f}" for k, v in ptimes.items())
        print(f"| hdr-video --backend {be} | {pn} | {pt:.2f} | {pn / pt:.2f} | {busy} |")
    for be, pt, pn, _ in runs:
        print(f"\nhdr-video --backend {be} / naive throughput: **{(pn / pt) / (nn_ / nt):.2f}x**")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
