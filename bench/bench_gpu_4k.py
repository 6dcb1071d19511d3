"""The prepared 4K device run of issue 18 (not a test): the whole pipeline from decode to EXR on
disk, and its parts, on a GPU; ``bench/gpu_run.sh`` sets the machine up and calls this.

    python bench/bench_gpu_4k.py --out DIR [--size 3840x2160] [--frames 48] [--model hdrcnn-lite]
        [--device cuda] [--compile auto|on|off] [--workers 8] [--budget-s 420]

Steps, in order; each is recorded in ``DIR/results.json`` as soon as it ends (a run cut short
keeps what it measured), with its error if it failed, or ``skipped`` once ``--budget-s`` is
spent:

1. ``env``: Python, torch, CUDA, the GPU, the decoders' and OCIO's versions, CPU count.
2. ``clip``: the project's sample clip (``engine/sample.py write_sample``: 8-bit H.264 4:2:0,
   sRGB-tagged) at ``--size``, ``--frames`` frames.
3. ``network``: the torch back end per variant (fp32; fp16; fp16 + ``torch.compile`` when
   ``--compile`` allows): the network alone on a frame already on the device (CUDA events),
   ``Backend.run`` (float32 numpy in and out: what today's path pays) and ``Backend.run_tensor``
   (device tensors in and out: the device path), ms/frame medians.
4. ``device_colour``: colour in (BT.1886 -> network domain) and colour out (linear Rec.709 ->
   ACEScg, cast to half) at ``--size`` on the device, ms/frame.
5. ``decode``: PyAV with and without codec threads, ``VideoReader`` float frames and code values
   (``bench/bench_exr_write.py time_decode``).
6. ``exr``: half EXR writes per compression from float16 pixels, and a pool of 1 to
   ``max(--workers)`` writer threads (``bench_exr_write.time_writes`` / ``time_pool``).
7. ``pipeline``: ``Pipeline.convert`` of the clip to half zip EXRs on disk (a scratch folder,
   removed after), frames/s and the per-stage busy seconds, for today's path (host colour,
   float32 frames), the device path, and the device path with ``torch.compile``; each after a
   two-frame warm-up on the same pipeline. The first EXR of each is compared with today's
   (``max_half_steps``: the largest difference in half-float steps).

``--device cpu --size 256x144 --frames 4`` runs every step on the CPU in about a minute (fp32
only, no compile unless ``--compile on``): the dry run ``tests/engine/test_bench_gpu_4k.py``
makes, so that a GPU session only has to run it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench_exr_write, beside this file


def log(msg: str) -> None:
    print(f"[bench_gpu_4k {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Run:
    """The results file, written after every step."""

    def __init__(self, out: pathlib.Path, budget_s: float):
        self.path = out / "results.json"
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.data: dict = {"steps": {}}

    def save(self) -> None:
        self.data["seconds"] = round(time.perf_counter() - self.t0, 1)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def step(self, name: str):
        rec: dict = {}
        self.data["steps"][name] = rec
        if time.perf_counter() - self.t0 > self.budget_s:
            rec["skipped"] = "budget"
            log(f"{name}: skipped (budget)")
            self.save()
            yield None
            return
        t = time.perf_counter()
        log(f"{name}: start")
        try:
            yield rec
        except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
            rec["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:400] if str(exc) else ''}"
            rec["traceback"] = traceback.format_exc(limit=6)
            log(f"{name}: FAILED {rec['error']}")
        rec["seconds"] = round(time.perf_counter() - t, 1)
        log(f"{name}: done in {rec['seconds']} s")
        self.save()


def environment() -> dict:
    import torch

    env = {"python": platform.python_version(), "executable": sys.executable, "cpu_count": os.cpu_count(),
           "torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_mib=round(p.total_memory / 2 ** 20), cudnn=torch.backends.cudnn.version())
    for mod, attr in (("av", "__version__"), ("OpenImageIO", "__version__"), ("PyOpenColorIO", "__version__"),
                      ("onnxruntime", "__version__"), ("tensorrt", "__version__"), ("numpy", "__version__")):
        try:
            env[mod] = getattr(__import__(mod), attr)
        except Exception as exc:  # noqa: BLE001
            env[mod] = f"missing ({type(exc).__name__})"
    return env


def _timer(device: str):
    """(start, stop) -> ms: CUDA events on a GPU (the device's own clock), else wall time."""
    import torch

    if device.startswith("cuda"):
        def run(fn):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            return a.elapsed_time(b)
    else:
        def run(fn):
            t = time.perf_counter()
            fn()
            return 1000 * (time.perf_counter() - t)
    return run


def _median(fn, n: int, timer) -> float:
    return round(statistics.median(timer(fn) for _ in range(n)), 2)


def network_step(rec: dict, model: str, device: str, h: int, w: int, variants: list[dict], n: int) -> None:
    import torch

    from bench_gpu import frame
    from hdrlift.engine.backends import create_backend

    timer = _timer(device)
    x_np = frame(h, w)
    rows = []
    for v in variants:
        row = dict(v)
        rows.append(row)
        rec["variants"] = rows
        try:
            t = time.perf_counter()
            be = create_backend(model, kind="torch", device=device, precision=v["precision"],
                                **({"compile": True} if v.get("compile") else {}))
            x = torch.from_numpy(x_np).to(device)
            xd = x.to(be._dtype)
            with torch.inference_mode():
                for _ in range(2):  # warm-up (and the compile, when asked)
                    be._device_run(xd)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
            row["warmup_s"] = round(time.perf_counter() - t, 1)
            row["network_ms"] = _median(lambda: be._device_run(xd), n, timer)
            row["run_tensor_ms"] = _median(lambda: be.run_tensor(x), n, timer)
            row["backend_run_ms"] = _median(lambda: be.run(x_np), n, timer)
            row["network_fps"] = round(1000 / row["network_ms"], 1)
            if device.startswith("cuda"):
                row["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20)
            log(f"network {v}: {row}")
            be.close()
        except Exception as exc:  # noqa: BLE001
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            log(f"network {v}: FAILED {row['error']}")


def device_colour_step(rec: dict, device: str, h: int, w: int, n: int) -> None:
    import torch

    from hdrlift.engine import device_colour as dc
    from hdrlift.engine.colour import ColourManager

    cm = ColourManager("ocio://studio-config-latest")
    timer = _timer(device)
    x = torch.rand(3, h, w, device=device)
    cin = dc.to_network(cm, "Gamma 2.4 Encoded Rec.709").to(device)
    cout = dc.from_network(cm, None, "ACEScg").to(device)
    rec["colour_in_ms"] = _median(lambda: cin(x).clamp_(0, 1), n, timer)
    rec["colour_out_half_ms"] = _median(lambda: cout(x).permute(1, 2, 0).half().contiguous(), n, timer)
    host = x.permute(1, 2, 0).contiguous().cpu().numpy()
    t = time.perf_counter()
    cm.to_network("Gamma 2.4 Encoded Rec.709")(host)
    cm.from_network(None, "ACEScg")(host)
    rec["host_ocio_in_plus_out_ms"] = round(1000 * (time.perf_counter() - t), 1)


def pipeline_step(rec: dict, clip: pathlib.Path, scratch: pathlib.Path, model: str, device: str,
                  variants: list[dict], workers: int) -> None:
    from hdrlift.engine.io.exr import read_exr
    from hdrlift.engine.pipeline import Pipeline, PipelineOptions

    rows = []
    first: dict[str, np.ndarray] = {}
    for v in variants:
        row = dict(v)
        rows.append(row)
        rec["variants"] = rows
        out = scratch / f"exr-{v['name']}"
        try:
            opts = {k: val for k, val in v.items() if k != "name"}
            p = Pipeline(PipelineOptions(model=model, device=device, backend="torch", encode_workers=workers,
                                         queue_size=max(4, workers), **opts))
            t = time.perf_counter()
            p.convert(clip, scratch / "warmup", start=1, end=2, overwrite=True)
            row["warmup_s"] = round(time.perf_counter() - t, 1)
            report = p.convert(clip, out, overwrite=True)
            row.update(frames=report.frames, seconds=round(report.seconds, 2), fps=round(report.fps, 2),
                       where=report.where, busy_ms_per_frame={k: round(1000 * s / max(1, report.frames), 1)
                                                              for k, s in report.timings.items()},
                       encode_workers=workers)
            px = read_exr(report.written[0]).pixels
            first[v["name"]] = px
            if "today" in first and v["name"] != "today":
                ref = first["today"].astype(np.float64)
                steps = np.abs(px - ref) / (2.0 ** -10 * np.maximum(np.abs(ref), 2.0 ** -14))
                row["max_half_steps_vs_today"] = round(float(steps.max()), 3)
            log(f"pipeline {v['name']}: {report.fps:.2f} frames/s ({report.where})")
        except Exception as exc:  # noqa: BLE001
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            row["traceback"] = traceback.format_exc(limit=6)
            log(f"pipeline {v['name']}: FAILED {row['error']}")
        finally:
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(scratch / "warmup", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=pathlib.Path, required=True, help="results.json goes here")
    ap.add_argument("--size", default="3840x2160")
    ap.add_argument("--frames", type=int, default=48, help="frames of the clip (the pipeline converts them all)")
    ap.add_argument("--timed", type=int, default=20, help="timed calls per network / colour variant")
    ap.add_argument("--model", default="hdrcnn-lite")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                    help="torch.compile variants (auto: on CUDA only)")
    ap.add_argument("--workers", type=int, default=8, help="EXR writer threads of the pipeline runs")
    ap.add_argument("--budget-s", type=float, default=420.0, help="start no step after this many seconds")
    ap.add_argument("--scratch", type=pathlib.Path, help="where the clip and the EXRs go (default: a temporary folder)")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    run = Run(args.out, args.budget_s)
    run.data["args"] = {k: str(v) for k, v in vars(args).items()}
    cuda = args.device.startswith("cuda")
    compile_on = args.compile == "on" or (args.compile == "auto" and cuda)
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="bench-gpu-4k-", dir=args.scratch))
    try:
        with run.step("env") as rec:
            if rec is not None:
                rec.update(environment())
                if cuda and not rec["cuda_available"]:
                    raise SystemExit("bench_gpu_4k: CUDA is not available (use --device cpu for a dry run)")
        clip = scratch / "clip.mp4"
        with run.step("clip") as rec:
            if rec is not None:
                from hdrlift.engine.sample import write_sample

                write_sample(clip, width=w, height=h, frames=args.frames)
                rec.update(path=str(clip), bytes=clip.stat().st_size, size=f"{w}x{h}", frames=args.frames)
        precisions = ["fp32", "fp16"] if cuda else ["fp32"]
        net_variants = [{"precision": p} for p in precisions]
        if compile_on:
            net_variants.append({"precision": precisions[-1], "compile": True})
        with run.step("network") as rec:
            if rec is not None:
                network_step(rec, args.model, args.device, h, w, net_variants, args.timed)
        with run.step("device_colour") as rec:
            if rec is not None:
                device_colour_step(rec, args.device, h, w, args.timed)
        with run.step("decode") as rec:
            if rec is not None:
                from bench_exr_write import time_decode

                rec["rows"] = time_decode(clip, min(args.frames, 24))
        with run.step("exr") as rec:
            if rec is not None:
                from bench_exr_write import COMPRESSIONS, scene_frame, time_pool, time_writes

                linear = scene_frame(w, h)
                pixels = {"float16": linear.astype(np.float16)}
                rec["writes"] = time_writes(scratch, pixels, COMPRESSIONS, 3)
                pools = sorted({1, 2, 4, args.workers, 2 * args.workers} if cuda else {1, 2})
                rec["pool"] = time_pool(scratch, pixels["float16"], "zip", pools, 3)
                rec["pool"] += time_pool(scratch, pixels["float16"], "dwaa", pools, 3)
        prec = precisions[-1]
        variants = [{"name": "today", "precision": prec, "device_colour": False},
                    {"name": "device", "precision": prec, "device_colour": True}]
        if compile_on:
            variants.append({"name": "device+compile", "precision": prec, "device_colour": True, "compile": True})
        if cuda:
            variants.append({"name": "device, dwaa", "precision": prec, "device_colour": True, "compression": "dwaa"})
        with run.step("pipeline") as rec:
            if rec is not None:
                pipeline_step(rec, clip, scratch, args.model, args.device, variants, args.workers)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        run.save()
    failed = [k for k, v in run.data["steps"].items() if "error" in v]
    log(f"results in {run.path}; {'failed steps: ' + ', '.join(failed) if failed else 'every step ran'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
