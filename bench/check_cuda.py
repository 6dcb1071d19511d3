"""CUDA correctness of every single-image network (run on a GPU machine; prints one JSON line per model).

    python bench/check_cuda.py [--out FILE]

For each ``kind == "network"`` model of the registry: random weights (seed 0), a batch of two
odd-sized frames (2x3x203x301, so padding and crop-back are exercised), CPU fp32 as the
reference, against

* CUDA fp32 with TF32 off (``rel_fp32``) and with PyTorch's default TF32 convolutions (``rel_tf32``);
* the engine's own path: ``create_backend(kind="torch", device="cuda", precision="fp16",
  cuda_graphs=True)`` (``rel_fp16``; a model with ``fp32_only`` runs in fp32 there, and
  ``precision`` says what ran).

Errors are max |a - b| / max |ref|. No av/OpenImageIO needed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from hdrlift.engine.backends.selection import create_backend
from hdrlift.engine.models.loading import LoadedModel
from hdrlift.engine.models.registry import available


def rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.float().cpu() - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("check_cuda: no CUDA device", file=sys.stderr)
        return 2
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 203, 301, generator=gen)
    x[:, :, 40:90, 60:160] = 1.0  # a clipped block, so highlight paths are used
    rows = []
    for info in available():
        if info.kind != "network":
            continue
        torch.manual_seed(0)
        cpu = LoadedModel(info, info.factory()).eval()
        row = {"model": info.name}
        try:
            with torch.no_grad():
                ref = cpu(x)
                gpu = LoadedModel(info, info.factory()).eval()
                gpu.load_state_dict(cpu.state_dict())
                gpu = gpu.cuda()
                for key, tf32 in (("rel_fp32", False), ("rel_tf32", True)):
                    torch.backends.cudnn.allow_tf32 = tf32
                    torch.backends.cuda.matmul.allow_tf32 = tf32
                    y = gpu(x.cuda())
                    row[key] = rel(y, ref)
                    row["finite_" + key[4:]] = bool(torch.isfinite(y).all())
                torch.backends.cudnn.allow_tf32 = True
                row["shape_ok"] = list(y.shape) == list(ref.shape)
            be = create_backend(cpu, kind="torch", device="cuda", precision="fp16", cuda_graphs=True)
            row["precision"] = be.precision
            hdr, mask = be.run(x.numpy())
            hdr, mask = be.run(x.numpy())  # the second call replays the captured graph
            row["rel_fp16"] = rel(torch.from_numpy(hdr), ref)
            row["finite_fp16"] = bool(np.isfinite(hdr).all() and np.isfinite(mask).all())
            t = time.perf_counter()
            be.run(x.numpy())
            row["fp16_ms_incl_copies"] = round((time.perf_counter() - t) * 1e3, 1)
        except Exception as exc:  # report and go on: one model's failure must not hide the rest
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"torch": torch.__version__, "gpu": torch.cuda.get_device_name(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
