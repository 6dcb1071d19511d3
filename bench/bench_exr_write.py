"""Benchmark (not a test): what writing and decoding cost per 4K frame, the two ends of the
pipeline that must keep up with the GPU (issue 18: 24 frames/s from decode to EXR on disk).

    python bench/bench_exr_write.py [--size 3840x2160] [--frames 4] [--workers 1,2]
        [--compressions none,zip,zips,piz,dwaa,dwab] [--decode-frames 8] [--json out.json]

* **EXR writes**: one scene-linear frame of the project's procedural scene (``sample.make_scene``
  at the frame size), written with ``engine.io.exr.write_exr`` (what ``hdr-video`` calls:
  atomic, fsync'd) as half float with each compression, from float32 pixels (today's path:
  OpenImageIO converts to half) and from float16 pixels (the device path hands over half
  floats). Variants run interleaved, round after round, so that the ratios compare like with
  like on a loaded machine; ms/frame is the median. File size per frame in MiB.
* **Parallel writers**: ``frames x workers`` frames written by ``workers`` threads (the file
  loop's writer pool, ``--encode-workers``): frames/s and the speed-up over one worker.
* **Decoding**: the sample clip at the frame size (8-bit H.264 4:2:0), decoded by PyAV alone
  with its codec threads off (``thread_count = 1``) and on (``thread_type = "AUTO"``, what
  ``VideoReader`` sets), and through ``VideoReader`` as float R'G'B' (today) and as integer code
  values (the device path: no conversion on the host).

Everything is written under a temporary folder (``--out-dir`` to choose it) and removed after.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

COMPRESSIONS = ("none", "zip", "zips", "piz", "dwaa", "dwab")


def parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def scene_frame(width: int, height: int) -> np.ndarray:
    from hdrlift.engine.sample import make_scene

    return np.ascontiguousarray(make_scene(width=width, height=height), dtype=np.float32)


def time_writes(folder: pathlib.Path, pixels: dict[str, np.ndarray], compressions, frames: int) -> list[dict]:
    """Interleaved rounds: each round writes one frame of every (input dtype, compression)."""
    from hdrlift.engine.io.exr import write_exr

    keys = [(kind, comp) for comp in compressions for kind in pixels]
    times: dict[tuple, list[float]] = {k: [] for k in keys}
    sizes: dict[tuple, int] = {}
    for r in range(frames + 1):  # round 0 warms up (OpenEXR's thread pool, page cache)
        for kind, comp in keys:
            path = folder / f"w-{kind}-{comp}.{r:04d}.exr"
            t = time.perf_counter()
            write_exr(path, pixels[kind], half=True, compression=comp)
            dt = time.perf_counter() - t
            if r:
                times[(kind, comp)].append(dt)
            sizes[(kind, comp)] = path.stat().st_size
            path.unlink()
    return [{"pixels": kind, "compression": comp, "ms_median": round(1000 * statistics.median(times[(kind, comp)]), 1),
             "ms_best": round(1000 * min(times[(kind, comp)]), 1), "mib": round(sizes[(kind, comp)] / 2 ** 20, 2)}
            for kind, comp in keys]


def time_pool(folder: pathlib.Path, pixels: np.ndarray, compression: str, workers_list, frames: int) -> list[dict]:
    from hdrlift.engine.io.exr import write_exr

    rows = []
    for workers in workers_list:
        n = frames * workers
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda i: write_exr(folder / f"p-warm-{i}.exr", pixels, half=True, compression=compression),
                          range(workers)))
            t = time.perf_counter()
            list(pool.map(lambda i: write_exr(folder / f"p-{workers}-{i:04d}.exr", pixels, half=True,
                                              compression=compression), range(n)))
            dt = time.perf_counter() - t
        for f in folder.glob("p-*.exr"):
            f.unlink()
        rows.append({"compression": compression, "pixels": str(pixels.dtype), "workers": workers, "frames": n,
                     "frames_per_s": round(n / dt, 2)})
    base = rows[0]["frames_per_s"]
    for r in rows:
        r["speedup"] = round(r["frames_per_s"] / base, 2) if base else None
    return rows


def time_decode(clip: pathlib.Path, frames: int) -> list[dict]:
    import av

    from hdrlift.engine.io.video import VideoReader

    def pyav(threads: bool) -> float:
        with av.open(str(clip)) as c:
            s = c.streams.video[0]
            if threads:
                s.thread_type = "AUTO"
            else:
                s.thread_count = 1
            t = time.perf_counter()
            n = 0
            for f in c.decode(s):
                f.planes[0]  # the picture is decoded; nothing converted
                n += 1
                if n >= frames:
                    break
            return (time.perf_counter() - t) / n

    def reader(code_values: bool) -> float:
        with VideoReader(clip) as r:
            t = time.perf_counter()
            n = 0
            for f in r.frames(end=frames, code_values=code_values):
                if code_values:  # what the device path does on the host: a contiguous copy of the planes
                    [np.ascontiguousarray(p) for p in f.code.planes]
                n += 1
            return (time.perf_counter() - t) / n

    variants = [("PyAV decode, thread_count=1", lambda: pyav(False)),
                ("PyAV decode, thread_type=AUTO", lambda: pyav(True)),
                ("VideoReader float R'G'B' (today)", lambda: reader(False)),
                ("VideoReader code values (device path)", lambda: reader(True))]
    results: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _ in range(2):  # two interleaved rounds
        for name, fn in variants:
            results[name].append(fn())
    return [{"decode": name, "ms_per_frame": round(1000 * min(v), 1)} for name, v in results.items()]


def markdown(res: dict) -> str:
    lines = [f"EXR writes, one {res['size']} frame, half float, `write_exr` (atomic, fsync'd), median of "
             f"{res['frames']} interleaved rounds:", "",
             "| compression | from float32 ms/frame | from float16 ms/frame | float16 / float32 | MiB/frame |",
             "|---|---:|---:|---:|---:|"]
    by = {(r["pixels"], r["compression"]): r for r in res["writes"]}
    for comp in res["compressions"]:
        a, b = by[("float32", comp)], by[("float16", comp)]
        lines.append(f"| {comp} | {a['ms_median']} | {b['ms_median']} | {b['ms_median'] / a['ms_median']:.2f} | "
                     f"{a['mib']} |")
    lines += ["", "Parallel writers (`--encode-workers`):", "",
              "| compression | pixels | workers | frames | frames/s | speed-up |", "|---|---|---:|---:|---:|---:|"]
    for r in res["pool"]:
        lines.append(f"| {r['compression']} | {r['pixels']} | {r['workers']} | {r['frames']} | {r['frames_per_s']} | "
                     f"{r['speedup']} |")
    if res.get("decode"):
        lines += ["", f"Decoding the {res['size']} 8-bit H.264 sample clip (best of 2 rounds, "
                  f"{res['decode_frames']} frames):", "", "| decoder | ms/frame |", "|---|---:|"]
        for r in res["decode"]:
            lines.append(f"| {r['decode']} | {r['ms_per_frame']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="3840x2160", help="WxH (default 3840x2160)")
    ap.add_argument("--frames", type=int, default=4, help="timed rounds per write variant")
    ap.add_argument("--compressions", default=",".join(COMPRESSIONS))
    ap.add_argument("--workers", default="1,2", help="writer pool sizes, comma-separated")
    ap.add_argument("--pool-compressions", default="zip,dwaa", help="compressions timed with parallel writers")
    ap.add_argument("--decode-frames", type=int, default=8, help="frames of the clip to decode (0: skip decoding)")
    ap.add_argument("--out-dir", type=pathlib.Path, help="where to write (default: a temporary folder)")
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args(argv)
    w, h = parse_size(args.size)
    comps = [c for c in args.compressions.split(",") if c]
    workers = [int(v) for v in args.workers.split(",") if v]
    folder = pathlib.Path(tempfile.mkdtemp(prefix="bench-exr-", dir=args.out_dir))
    try:
        t0 = time.perf_counter()
        linear = scene_frame(w, h)
        pixels = {"float32": linear, "float16": linear.astype(np.float16)}
        print(f"scene {w}x{h} made in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
        writes = time_writes(folder, pixels, comps, args.frames)
        pool = []
        for comp in [c for c in args.pool_compressions.split(",") if c]:
            pool += time_pool(folder, pixels["float16"], comp, workers, args.frames)
        decode = []
        if args.decode_frames:
            from hdrlift.engine.sample import write_sample

            t0 = time.perf_counter()
            clip = write_sample(folder / "clip.mp4", width=w, height=h, frames=args.decode_frames)
            print(f"clip encoded in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
            decode = time_decode(clip, args.decode_frames)
        res = {"size": f"{w}x{h}", "frames": args.frames, "compressions": comps, "writes": writes, "pool": pool,
               "decode": decode, "decode_frames": args.decode_frames,
               "env": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                       "machine": platform.machine()}}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(markdown(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
