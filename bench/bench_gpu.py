"""Benchmark (not a test): ms/frame of networks on a CUDA GPU at 1080p and 4K, through the engine's
back ends, written as JSON (and a markdown table on stdout).

    python bench/bench_gpu.py --models hdrcnn-lite,hdrunet [--weights hdrunet=runs/x/best.safetensors]
        [--sizes 1080p,4k] [--frames 10] [--json bench.json] [--budget-s 120]

Per model and frame size, each variant is run twice to warm up, then ``--frames`` times:

* torch fp32 NCHW, torch fp32 channels_last, torch fp16 NCHW, torch fp16 channels_last, torch
  fp16 channels_last with CUDA graphs (the engine's ``TorchBackend`` options), then the last again with
  ``cudnn.benchmark`` on (the engine leaves it off; the variant is marked ``cudnn_benchmark``);
* onnxruntime fp32 and fp16 through ``CUDAExecutionProvider`` when the installed onnxruntime has
  it (else the JSON says it is missing); the ONNX export itself is always tried once per model.

``e2e_ms``: ``Backend.run`` on a numpy frame (upload, network, download, float32 numpy out): what
``hdr-video`` pays per frame. ``gpu_ms`` (torch only): the network alone on a frame already on the
GPU, timed with CUDA events. ``peak_mib``: ``torch.cuda.max_memory_allocated``. A variant that fails
(out of memory, an operator a back end lacks) is recorded with its error and the run goes on; once
``--budget-s`` is spent the remaining variants are recorded as skipped.

``--device cpu`` (for a dry run without a GPU): torch fp32 and onnxruntime's CPU provider only.
Networks without weights run with random initialisation (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

SIZES = {"1080p": (1080, 1920), "4k": (2160, 3840), "720p": (720, 1280)}


def parse_size(text: str) -> tuple[str, tuple[int, int]]:
    if text.lower() in SIZES:
        return text.lower(), SIZES[text.lower()]
    w, h = (int(v) for v in text.lower().split("x"))
    return f"{w}x{h}", (h, w)


def frame(h: int, w: int) -> np.ndarray:
    """A smooth test frame with clipped areas, ``1 x 3 x h x w`` float32 code values."""
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    f = np.stack([0.8 + 0.3 * np.sin(xx / 37 + yy / 53), 0.8 + 0.3 * np.cos(xx / 41) + 0 * yy,
                  0.85 + 0.2 * np.sin(yy / 29) + 0 * xx])
    return np.clip(f, 0, 1)[None].astype(np.float32)


def environment() -> dict:
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
           "torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_mib=round(p.total_memory / 2 ** 20), sm_count=p.multi_processor_count,
                   cudnn=torch.backends.cudnn.version())
    try:
        import onnxruntime as ort

        env.update(onnxruntime=ort.__version__, ort_providers=ort.get_available_providers())
    except ImportError:
        env.update(onnxruntime=None)
    return env


def model_for(name: str, weights: str | None):
    from hdrlift.engine.backends import wrap_module
    from hdrlift.engine.models import get_info, load_model

    info = get_info(name)
    if weights:
        return load_model(name, weights=weights), pathlib.Path(weights).name
    if info.runnable:
        return load_model(name), "shipped" if info.needs_weights else "-"
    torch.manual_seed(0)
    return wrap_module(name, info.factory()), "random init"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_e2e(be, x: np.ndarray, frames: int, device: str) -> list[float]:
    for _ in range(2):
        be.run(x)
    _sync(device)
    out = []
    for _ in range(frames):
        t = time.perf_counter()
        be.run(x)
        _sync(device)
        out.append(1000 * (time.perf_counter() - t))
    return out


def time_gpu(be, x: np.ndarray, frames: int) -> list[float]:
    """The torch back end's network alone on a frame already on the GPU (CUDA events)."""
    t = torch.from_numpy(x).to(be.device).to(be._dtype)
    if be.channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    call = (lambda: be._graph_run(t)) if be.cuda_graphs else (lambda: be._forward(t))
    for _ in range(2):
        call()
    torch.cuda.synchronize()
    out = []
    for _ in range(frames):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        call()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b))
    return out


def variants(device: str, ort_cuda: bool) -> list[dict]:
    if not device.startswith("cuda"):
        return [dict(backend="torch", precision="fp32"), dict(backend="onnxruntime", precision="fp32")]
    v = [dict(backend="torch", precision="fp32", channels_last=False),
         dict(backend="torch", precision="fp32", channels_last=True),
         dict(backend="torch", precision="fp16", channels_last=False),
         dict(backend="torch", precision="fp16", channels_last=True),
         dict(backend="torch", precision="fp16", channels_last=True, cuda_graphs=True),
         dict(backend="torch", precision="fp16", channels_last=True, cuda_graphs=True, cudnn_benchmark=True)]
    if ort_cuda:
        v += [dict(backend="onnxruntime", precision="fp32"), dict(backend="onnxruntime", precision="fp16")]
    return v


def onnx_check(model, cache: str) -> dict:
    """Export the model to ONNX once (fp32) and load it in onnxruntime (CPU provider)."""
    from hdrlift.engine.backends.exporters import export_onnx

    t = time.perf_counter()
    try:
        path = export_onnx(model, pathlib.Path(cache) / f"{model.info.name}-check.onnx")
        res = {"ok": True, "seconds": round(time.perf_counter() - t, 1), "bytes": path.stat().st_size}
        try:
            import onnxruntime as ort

            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            res["onnxruntime_loads"] = True
        except ImportError:
            res["onnxruntime_loads"] = None
        return res
    except Exception as exc:  # noqa: BLE001 - recorded, the bench goes on
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}


def run(models: list[str], weights: dict[str, str], sizes: list[str], frames: int, device: str,
        budget_s: float) -> dict:
    from hdrlift.engine.backends import create_backend

    env = environment()
    ort_cuda = "CUDAExecutionProvider" in (env.get("ort_providers") or [])
    if device.startswith("cuda") and not ort_cuda:
        env["ort_cuda_note"] = "onnxruntime has no CUDAExecutionProvider here (onnxruntime-gpu not installed)"
    t_start = time.perf_counter()
    results, exports = [], {}
    with tempfile.TemporaryDirectory() as cache:
        for name in models:
            model, wlabel = model_for(name, weights.get(name))
            exports[name] = onnx_check(model, cache)
            print(f"{name}: ONNX export {exports[name]}", file=sys.stderr, flush=True)
            for label, (h, w) in (parse_size(s) for s in sizes):
                x = frame(h, w)
                for v in variants(device, ort_cuda):
                    row = {"model": name, "weights": wlabel, "size": label, "width": w, "height": h, **v}
                    row.setdefault("channels_last", None)
                    row.setdefault("cuda_graphs", False)
                    row.setdefault("cudnn_benchmark", False)
                    if time.perf_counter() - t_start > budget_s:
                        results.append({**row, "skipped": "budget"})
                        continue
                    opts = {}
                    if v["backend"] == "torch" and device.startswith("cuda"):
                        opts = {"channels_last": v["channels_last"], "cuda_graphs": v.get("cuda_graphs", False)}
                    torch.backends.cudnn.benchmark = bool(v.get("cudnn_benchmark"))
                    be = None
                    try:
                        if device.startswith("cuda"):
                            torch.cuda.empty_cache()
                            torch.cuda.reset_peak_memory_stats()
                        be = create_backend(model, kind=v["backend"], device=device, precision=v["precision"],
                                            cache_dir=cache, **opts)
                        e2e = time_e2e(be, x, frames, device)
                        row.update(e2e_ms_best=round(min(e2e), 2), e2e_ms_median=round(statistics.median(e2e), 2))
                        if v["backend"] == "torch" and device.startswith("cuda"):
                            g = time_gpu(be, x, frames)
                            row.update(gpu_ms_best=round(min(g), 2), gpu_ms_median=round(statistics.median(g), 2))
                        if device.startswith("cuda"):
                            row["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20)
                    except Exception as exc:  # noqa: BLE001 - OOM, missing operator: recorded
                        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                    finally:
                        if be is not None:
                            be.close()
                        del be
                    results.append(row)
                    print(f"{name} {label} {v}: " + (row.get("error") or
                          f"e2e {row['e2e_ms_median']} ms" + (f", gpu {row['gpu_ms_median']} ms" if "gpu_ms_median" in row else "")),
                          file=sys.stderr, flush=True)
    torch.backends.cudnn.benchmark = False
    return {"env": env, "device": device, "frames": frames, "results": results, "onnx_export": exports,
            "seconds": round(time.perf_counter() - t_start, 1)}


def markdown(res: dict) -> str:
    lines = ["| model | weights | size | back end | precision | channels_last | CUDA graphs | cudnn.benchmark | "
             "e2e ms/frame | GPU ms/frame | peak MiB |", "|---|---|---|---|---|---|---|---|---:|---:|---:|"]
    for r in res["results"]:
        if "error" in r or "skipped" in r:
            e2e, gpu = (r.get("error") or f"skipped ({r['skipped']})"), "-"
        else:
            e2e, gpu = f"{r['e2e_ms_median']:.1f}", (f"{r['gpu_ms_median']:.1f}" if "gpu_ms_median" in r else "-")
        lines.append(f"| {r['model']} | {r['weights']} | {r['size']} | {r['backend']} | {r['precision']} | "
                     f"{r['channels_last']} | {r['cuda_graphs']} | {r['cudnn_benchmark']} | {e2e} | {gpu} | "
                     f"{r.get('peak_mib', '-')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True, help="comma-separated registered networks")
    ap.add_argument("--weights", action="append", default=[], metavar="MODEL=FILE")
    ap.add_argument("--sizes", default="1080p,4k", help="1080p, 4k, 720p or WxH, comma-separated")
    ap.add_argument("--frames", type=int, default=10, help="timed frames per variant (median and best kept)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget-s", type=float, default=180.0, help="start no variant after this many seconds")
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args(argv)
    weights = dict(w.split("=", 1) for w in args.weights)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: error: CUDA is not available (use --device cpu for a dry run)", file=sys.stderr)
        return 2
    res = run([m for m in args.models.split(",") if m], weights, [s for s in args.sizes.split(",") if s],
              args.frames, args.device, args.budget_s)
    print(markdown(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
