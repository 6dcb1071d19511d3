"""``hdrlift-eval``: score registered models on HDR images, next to each other.

    hdrlift-eval --models hdrcnn-lite,inverse-crf,landis,akyuz            # the val split
    hdrlift-eval --models hdrcnn-lite /shows/ref_hdr --json ev.json --markdown ev.md

Protocol (one fixed, seeded set for every model, so rows are comparable):

1. every HDR image of the folder or pack (``../shared/data/hdri``'s ``val`` split by default) gives
   ``--views`` perspective views (``--size`` pixels square; a non-panorama is cropped) normalised
   to median luminance 0.18;
2. each view is photographed by ``training/camera.py``'s sRGB camera (8 bits, no noise) at an
   exposure that clips ``--clip`` of its pixels (3 % and 10 % by default);
3. each model reconstructs the HDR image from that LDR picture; the prediction is scaled by the
   least-squares log-domain factor that maps its well-exposed pixels onto the reference
   (single-image reconstruction cannot know absolute exposure);
4. metrics (``training/metrics.py``): PSNR-mu (NTIRE 2021: both images divided by the
   reference's 99th percentile, tanh-bounded, mu-law with mu = 5000), PSNR-L, PU21-PSNR,
   mean |log2| error inside the clipped region in stops (``clipped_stops``), the strength of a
   fixed-pattern (up-sampling) grid inside large clipped regions (``grid_stops``, NaN where the
   clipped region is too small; ``--clip 0.25 --size 384`` makes it count), Reinhard-tone-mapped
   PSNR/SSIM (Moriwaki Table 1) and range-wise PSNR/SSIM over the exposure stack EV -4..+1
   (Moriwaki Tables 2-3); ColorVideoVDP JOD with ``--cvvdp`` (``cvvdp_jod``: the ``cvvdp``
   package, HDR display model ``standard_hdr_linear``, display white at 100 cd/m^2; ``make
   eval-cvvdp`` sets up the environment it needs).

Scores are averaged over images per clip fraction and over everything ("overall"). Output: a
markdown table on stdout (and ``--markdown FILE``), all numbers as JSON with ``--json FILE``.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np
import torch

from hdrlift.engine.atomic import atomic_write_text
from hdrlift.engine.entrypoint import run_cli
from hdrlift.engine.errors import InputError, ModelError, OutputError
from hdrlift.training import metrics as M

HEADLINE = ("psnr_mu", "pu21_psnr", "psnr_l", "clipped_stops", "grid_stops", "cvvdp_jod", "reinhard_psnr",
            "reinhard_ssim", "stack_psnr", "stack_ssim")
LOWER_IS_BETTER = {"clipped_stops", "grid_stops"}
DECIMALS = {"grid_stops": 4}  # 3 otherwise


def _cvvdp_metric():
    """A ColorVideoVDP metric object for an HDR display (``cvvdp``); InputError saying why not."""
    try:
        import pycvvdp  # type: ignore
    except Exception as exc:  # noqa: BLE001 - cvvdp imports torchvision, which fails in many ways
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"--cvvdp needs the cvvdp package and a torchvision that loads beside this torch "
                         f"({why}); `make eval-cvvdp` sets up such an environment") from None
    return pycvvdp.cvvdp(display_name="standard_hdr_linear", quiet=True)


def _jod(metric, pred: np.ndarray, ref: np.ndarray) -> float:
    # Absolute luminance: display white (1.0) shown at 100 cd/m^2, as PU21 assumes.
    p = torch.from_numpy(np.ascontiguousarray(pred * M.DISPLAY_WHITE_NITS, np.float32))
    r = torch.from_numpy(np.ascontiguousarray(ref * M.DISPLAY_WHITE_NITS, np.float32))
    q, _ = metric.predict(p, r, dim_order="HWC")
    return float(q)


def build_items(folder: str | None, split: str | None, views: int, size: int, clips: tuple[float, ...],
                seed: int) -> list[dict]:
    from hdrlift.training.data import open_hdr, validation_set

    try:
        hf = open_hdr(folder, split=split)
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(str(exc)) from None
    return validation_set(hf, clip_fractions=clips, views=views, size=size, seed=seed)


@torch.no_grad()
def run_model(name: str, items: list[dict], weights: str | None = None, device: str = "cpu",
              cvvdp=None, stack: bool = True) -> list[dict]:
    """Scores of model ``name`` on every item: one dict per item (name, clip_fraction, metrics)."""
    from hdrlift.engine.models.loading import load_model

    model = load_model(name, device=device, weights=weights)
    if model.info.kind == "fusion":
        raise ModelError(f"model {name!r} merges exposure brackets; hdrlift-eval scores single-image models")
    rows = []
    for it in items:
        x = torch.from_numpy(np.ascontiguousarray(it["ldr"].transpose(2, 0, 1))[None]).to(device)
        pred = model(x)[0].float().cpu().numpy().transpose(1, 2, 0)
        if not np.isfinite(pred).all():
            raise ModelError(f"model {name!r} produced non-finite values on {it['name']}")
        if stack:
            s = M.full_score(pred, it["hdr"], it["ldr"])
        else:
            s = M.score(pred, it["hdr"], it["ldr"])
        if cvvdp is not None:
            s["cvvdp_jod"] = _jod(cvvdp, pred * np.float32(s["scale"]), it["hdr"])
        rows.append({"name": it["name"], "clip_fraction": it["clip_fraction"], **s})
    return rows


def _mean(rows: list[dict]) -> dict[str, float]:
    keys = [k for k in rows[0] if k not in ("name", "clip_fraction")]
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if isinstance(r.get(k), float) and math.isfinite(r[k])]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    return out


def summarise(per_model: dict[str, list[dict]], clips: tuple[float, ...]) -> dict:
    overall = {m: _mean(rows) for m, rows in per_model.items()}
    by_clip = {f"{c:g}": {m: _mean([r for r in rows if r["clip_fraction"] == c]) for m, rows in per_model.items()}
               for c in clips}
    return {"overall": overall, "by_clip": by_clip}


def markdown(summary: dict, metrics=HEADLINE) -> str:
    def table(rows: dict[str, dict[str, float]]) -> list[str]:
        cols = [m for m in metrics if any(m in v for v in rows.values())]
        best = {}
        for m in cols:
            vals = [v[m] for v in rows.values() if math.isfinite(v.get(m, float("nan")))]
            if vals:
                best[m] = min(vals) if m in LOWER_IS_BETTER else max(vals)
        out = ["| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for name, v in rows.items():
            cells = []
            for m in cols:
                x = v.get(m, float("nan"))
                txt = f"{x:.{DECIMALS.get(m, 3)}f}" if math.isfinite(x) else "n/a"
                cells.append(f"**{txt}**" if m in best and x == best[m] else txt)
            out.append(f"| `{name}` | " + " | ".join(cells) + " |")
        return out

    lines = ["### All clip fractions", ""] + table(summary["overall"])
    for c, rows in summary["by_clip"].items():
        lines += ["", f"### {float(c) * 100:g} % of pixels clipped", ""] + table(rows)
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="hdrlift-eval",
        description="Score registered models on HDR images: synthesised LDR inputs at fixed clipped fractions, "
                    "scale aligned on well-exposed pixels, PSNR-mu / PSNR-L / PU21-PSNR / clipped-region error "
                    "in stops / Reinhard and exposure-stack PSNR+SSIM.")
    ap.add_argument("folder", nargs="?", help="folder of HDR images (.exr/.hdr) or a pack (.npz, "
                                              "training/pack_data.py); default ../shared/data/hdri "
                                              "(or $HDRLIFT_DATA)")
    ap.add_argument("--models", required=True, help="comma-separated registered model names")
    ap.add_argument("--weights", action="append", default=[], metavar="MODEL=FILE",
                    help="weights for a model instead of the shipped ones (repeatable)")
    ap.add_argument("--split", default="val", help="MANIFEST.csv split to use (default val; 'all' = every image)")
    ap.add_argument("--views", type=int, default=4, help="perspective views per image (default 4)")
    ap.add_argument("--size", type=int, default=256, help="view size in pixels (default 256)")
    ap.add_argument("--clip", default="0.03,0.10", help="clipped-pixel fractions (default 0.03,0.10)")
    ap.add_argument("--seed", type=int, default=2024, help="seed of views and cameras (default 2024)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-stack", action="store_true", help="skip the Reinhard and exposure-stack metrics")
    ap.add_argument("--cvvdp", action="store_true", help="also ColorVideoVDP JOD (needs the cvvdp package)")
    ap.add_argument("--json", type=pathlib.Path, help="write every number (overall, per clip, per image)")
    ap.add_argument("--markdown", type=pathlib.Path, help="write the tables")
    ap.add_argument("--video", action="append", default=[], metavar="CLIP",
                    help="instead of the HDR images: the warping error (Lai et al. 2018; flicker) of each model "
                         "on this SDR clip, beside the input's own (repeatable; needs opencv-python-headless)")
    ap.add_argument("--video-frames", type=int, default=None, metavar="N", help="the first N frames of each clip")
    ap.add_argument("-q", "--quiet", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("hdrlift-eval", lambda: _evaluate(args))


def _evaluate(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise ModelError("--models is empty")
    weights = {}
    for w in args.weights:
        if "=" not in w:
            raise ModelError(f"--weights takes MODEL=FILE, got {w!r}")
        k, v = w.split("=", 1)
        weights[k] = v
    if args.video:
        return _evaluate_video(args, models, weights)
    try:
        clips = tuple(float(c) for c in args.clip.split(","))
    except ValueError:
        raise InputError(f"--clip takes comma-separated fractions, got {args.clip!r}") from None
    if not all(0.0 < c < 1.0 for c in clips) or args.views < 1 or args.size < 16:
        raise InputError("--clip fractions must lie in (0, 1), --views >= 1 and --size >= 16")
    cvvdp = None
    if args.cvvdp:
        cvvdp = _cvvdp_metric()
    split = None if args.split == "all" else args.split
    t0 = time.perf_counter()
    items = build_items(args.folder, split, args.views, args.size, clips, args.seed)
    per_model = {}
    for m in models:
        t = time.perf_counter()
        per_model[m] = run_model(m, items, weights.get(m), args.device, cvvdp, stack=not args.no_stack)
        if not args.quiet:
            print(f"{m}: {len(items)} images in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    summary = summarise(per_model, clips)
    summary["protocol"] = {"folder": str(args.folder or "default"), "split": args.split, "views": args.views,
                           "size": args.size, "clip_fractions": list(clips), "seed": args.seed,
                           "images": len(items) // len(clips), "items": len(items),
                           "cvvdp": bool(cvvdp), "seconds": round(time.perf_counter() - t0, 1)}
    summary["per_image"] = per_model
    text = markdown(summary)
    print(text)
    try:
        if args.json:
            atomic_write_text(args.json, json.dumps(summary, indent=1, allow_nan=True) + "\n")
        if args.markdown:
            atomic_write_text(args.markdown, text)
    except OSError as exc:
        raise OutputError(f"cannot write results: {exc.strerror or exc}") from None
    return 0


def _evaluate_video(args: argparse.Namespace, models: list[str], weights: dict[str, str]) -> int:
    from hdrlift.training import temporal as T

    table = T.video_table(args.video, models, device=args.device, weights=weights, max_frames=args.video_frames)
    text = T.video_markdown(table)
    print(text)
    try:
        if args.json:
            atomic_write_text(args.json, json.dumps(table, indent=1, allow_nan=True) + "\n")
        if args.markdown:
            atomic_write_text(args.markdown, text)
    except OSError as exc:
        raise OutputError(f"cannot write results: {exc.strerror or exc}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
