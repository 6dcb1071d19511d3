"""Benchmark (not a test): how far above display white the models put clipped highlights, against
the truth, by how bright the truth is; and how bright the training data's clipped pixels are.

Inside the clipped channels of the val views (the trainer's validation set: 2 views of 192 px per
val panorama, 3 % and 10 % clipped, sRGB camera), the truth is binned by its level in units of
display white (1-1.5, 1.5-2, 2-4, 4-16, 16-256, >= 256) and each model's median log2(prediction /
truth) is printed per bin (0 = right; -4 = four stops too dark). A model that "saturates about a
stop above white" reads near 0 in the first bins and falls by about a stop per stop of truth after.
``--train-stats`` also prints the share of the training patches' clipped pixels in each bin (the
trainer's camera, ``--clip-range``).

    python bench/bench_highlight_levels.py hdrcnn-lite expandnet inverse-crf \\
        hdrcnn-lite@old=runs/old/hdrcnn-lite-827f13c.safetensors [--train-stats]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

BINS = (1.0, 1.5, 2.0, 4.0, 16.0, 256.0, np.inf)


def bin_names() -> list[str]:
    return [f"{a:g}-{b:g}" if np.isfinite(b) else f">= {a:g}" for a, b in zip(BINS[:-1], BINS[1:])]


def model_levels(name: str, weights: str | None, items: list[dict]) -> list[float]:
    from hdrlift.engine.models.loading import load_model

    model = load_model(name.split("@", 1)[0], weights=weights)
    acc: list[list[np.ndarray]] = [[] for _ in BINS[:-1]]
    for it in items:
        x = torch.from_numpy(np.ascontiguousarray(it["ldr"].transpose(2, 0, 1)))[None]
        with torch.no_grad():
            pred = model(x)[0].float().numpy().transpose(1, 2, 0)
        clipped = it["ldr"] >= 0.99
        truth, p = it["hdr"][clipped], pred[clipped]
        for k in range(len(BINS) - 1):
            sel = (truth >= BINS[k]) & (truth < BINS[k + 1])
            if sel.any():
                acc[k].append(np.log2(np.maximum(p[sel], 1e-6) / truth[sel]))
    return [float(np.median(np.concatenate(a))) if a else float("nan") for a in acc]


def train_shares(samples: int, clip_range: tuple[float, float], seed: int = 5) -> tuple[list[float], float]:
    """The share of the training patches' clipped channels per truth bin, and the share of them
    lying above 3x their patch's 99th percentile: there ``tanh(x / p99)``, the NTIRE normalisation
    inside PSNR-mu and inside the ``psnr`` objective (:mod:`hdrlift.training.objectives`), has under
    1 % of its slope at 0 (sech^2(3) = 0.0099), so that objective barely sees how bright they are."""
    from hdrlift.training.data import PatchDataset, open_hdr

    ds = PatchDataset(open_hdr(None, "train"), size=128, seed=seed, clip_range=clip_range)
    counts = np.zeros(len(BINS) - 1)
    blind = total = 0
    for _ in range(samples):
        ldr, ref = ds.sample()
        clipped = ldr >= 0.99
        counts += np.histogram(ref[clipped], BINS)[0]
        blind += int((ref[clipped] > 3.0 * np.percentile(ref, 99)).sum())
        total += int(clipped.sum())
    return list(counts / max(1.0, counts.sum())), blind / max(1, total)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="NAME or NAME@LABEL=WEIGHTS")
    ap.add_argument("--train-stats", action="store_true", help="also the training patches' clipped pixels per bin")
    ap.add_argument("--samples", type=int, default=600, help="training patches for --train-stats (default 600)")
    ap.add_argument("--clip-range", default="0.01,0.12", help="training camera's clipped fraction (default 0.01,0.12)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| | " + " | ".join(bin_names()) + " |")
    print("|---|" + "---:|" * (len(BINS) - 1))
    if args.train_stats:
        lo, hi = (float(v) for v in args.clip_range.split(","))
        shares, blind = train_shares(args.samples, (lo, hi))
        print(f"| share of the training patches' clipped channels (clip {lo:g}-{hi:g}) | "
              + " | ".join(f"{s * 100:.1f} %" for s in shares) + " |")
        print(f"\n{blind * 100:.1f} % of those clipped channels lie above 3x their patch's 99th percentile "
              "(where the tanh of PSNR-mu has under 1 % of its slope)\n")
    if args.models:
        from hdrlift.training.data import open_hdr, validation_set

        items = validation_set(open_hdr(None, "val"), views=2, size=192)
        for spec in args.models:
            label, _, weights = spec.partition("=")
            levels = model_levels(label, weights or None, items)
            print(f"| `{label}`: median log2(prediction / truth) | " + " | ".join(f"{v:+.2f}" for v in levels) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
