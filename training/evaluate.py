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

What the averages hide (``docs/models.md``, "Shipped networks against the classical operators"):

5. **worst case against doing nothing** — ``worst_mu`` / ``worst_pu21``: the smallest, over the
   images of a table, of the model's PSNR-mu (PU21-PSNR) minus the plain inverse camera curve's on
   the same image (``inverse-crf`` is always run for it). A default must never fall far below
   doing nothing on any image, whatever its mean; ``--worst-report N`` lists the N worst images.
6. **cases** (``--cases``, :mod:`hdrlift.training.val_cases`): besides the plain ``views``, the same
   views with ``saturated`` coloured highlights (one channel clips, others are zero) and with small
   ``specular`` glints, each in its own tables (the Reinhard and stack metrics only on ``views``).
7. **the demo clip against its truth** (``--demo-frames``, on by default where PyAV, OpenImageIO and
   OpenColorIO import; where they do not, the default skips it and says so on stderr and in the JSON,
   ``"demo_clip": {"skipped": reason}``, while an explicit ``--demo-frames N`` is refused):
   ``hdrlift-make-sample`` with ``--truth`` (640x360, 48 frames, exposed for the mid-tones: its sun,
   lamps and windows clip), every model through the engine's pipeline as ``hdr-video`` runs it, on
   evenly spaced frames; over the pixels clipped in the input (brightest code value >= 0.99): the
   median of output / truth luminance (``ratio_median``, 1 = right on average, the inverse curve
   reads 0.59, docs/models.md), the medians of output and truth, and their 99th percentiles (the sun's and
   lamps' cores). No scale alignment: the clip's exposure puts both in the same units.

A model may be given a label, ``--models hdrcnn-lite,hdrcnn-lite@v1 --weights
hdrcnn-lite@v1=old.safetensors``: the row ``hdrcnn-lite@v1`` is the registered ``hdrcnn-lite``
with those weights (old and new weights side by side).
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

HEADLINE = ("psnr_mu", "pu21_psnr", "worst_mu", "worst_pu21", "psnr_l", "clipped_stops", "grid_stops", "cvvdp_jod",
            "reinhard_psnr", "reinhard_ssim", "stack_psnr", "stack_ssim")
LOWER_IS_BETTER = {"clipped_stops", "grid_stops"}
DECIMALS = {"grid_stops": 4}  # 3 otherwise
BASELINE = "inverse-crf"  # what the worst-case columns compare with
WORST = {"worst_mu": "psnr_mu", "worst_pu21": "pu21_psnr"}
DEMO_SIZE = (640, 360)  # the clip of `make demo`
DEMO_FRAMES = 48


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
                seed: int, cases: tuple[str, ...] = ("views",)) -> list[dict]:
    from hdrlift.training.data import open_hdr, validation_set

    try:
        hf = open_hdr(folder, split=split)
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(str(exc)) from None
    return validation_set(hf, clip_fractions=clips, views=views, size=size, seed=seed, cases=cases)


def registered_name(label: str) -> str:
    """The registry name of a row label (``hdrcnn-lite@v1`` -> ``hdrcnn-lite``)."""
    return label.split("@", 1)[0]


@torch.no_grad()
def run_model(name: str, items: list[dict], weights: str | None = None, device: str = "cpu",
              cvvdp=None, stack: bool = True) -> list[dict]:
    """Scores of model ``name`` on every item: one dict per item (name, clip_fraction, metrics)."""
    from hdrlift.engine.models.loading import load_model

    model = load_model(registered_name(name), device=device, weights=weights)
    if model.info.kind == "fusion":
        raise ModelError(f"model {name!r} merges exposure brackets; hdrlift-eval scores single-image models")
    rows = []
    for it in items:
        x = torch.from_numpy(np.ascontiguousarray(it["ldr"].transpose(2, 0, 1))[None]).to(device)
        pred = model(x)[0].float().cpu().numpy().transpose(1, 2, 0)
        if not np.isfinite(pred).all():
            raise ModelError(f"model {name!r} produced non-finite values on {it['name']}")
        case = it.get("case", "views")
        if stack and case == "views":
            s = M.full_score(pred, it["hdr"], it["ldr"])
        else:
            s = M.score(pred, it["hdr"], it["ldr"])
        if cvvdp is not None and case == "views":
            s["cvvdp_jod"] = _jod(cvvdp, pred * np.float32(s["scale"]), it["hdr"])
        rows.append({"name": it["name"], "case": case, "clip_fraction": it["clip_fraction"], **s})
    return rows


def _key(r: dict) -> tuple:
    return r["name"], r["clip_fraction"]


def demo_frames(count: int, total: int = DEMO_FRAMES) -> list[int]:
    """``count`` evenly spaced frame numbers (1-based) of a ``total``-frame clip."""
    count = max(1, min(int(count), total))
    return sorted({1 + round(i * (total - 1) / max(1, count - 1)) for i in range(count)}) if count > 1 else [total // 2]


def demo_libraries_missing() -> str | None:
    """Why the demo clip cannot run here (the import that failed), or None where it can."""
    try:
        from hdrlift.engine.io.exr import read_exr  # noqa: F401
        from hdrlift.engine.io.video import VideoReader  # noqa: F401
        from hdrlift.engine.pipeline import Pipeline  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


def demo_clip(models: list[str], weights: dict[str, str], count: int, device: str = "cpu",
              quiet: bool = True) -> dict:
    """Each model on the demo clip against its truth (module docstring, item 7): the clip and its
    scene-linear frames from :func:`hdrlift.engine.sample.write_sample` (what ``hdrlift-make-sample
    --truth`` writes), decoded with the engine's ``VideoReader`` and reconstructed by the engine's
    ``Pipeline`` (torch back end, fp32), as ``hdr-video`` does. Statistics over the pixels clipped in
    the input, pooled over the frames."""
    import tempfile

    missing = demo_libraries_missing()
    if missing:
        raise InputError(f"the demo-clip check needs PyAV, OpenImageIO and OpenColorIO ({missing}); "
                         "pass --demo-frames 0 to skip it")
    from hdrlift.engine.io.exr import read_exr
    from hdrlift.engine.io.video import VideoReader
    from hdrlift.engine.pipeline import Pipeline, PipelineOptions
    from hdrlift.engine.sample import write_sample
    from hdrlift.engine.colour_maths import luminance

    w, h = DEMO_SIZE
    wanted = demo_frames(count)
    with tempfile.TemporaryDirectory(prefix="hdrlift-demo-") as tmp:
        clip = write_sample(pathlib.Path(tmp) / "sample.mp4", width=w, height=h, frames=DEMO_FRAMES, truth_dir=tmp)
        with VideoReader(clip) as reader:
            frames = {f.number: f.rgb for f in reader.frames() if f.number in wanted}
        truth = {n: read_exr(pathlib.Path(tmp) / f"truth.{n:04d}.exr").pixels[..., :3] for n in wanted}
    masks = {n: M.clipped_mask(frames[n]) for n in wanted}
    # well exposed (every code value in 0.05..0.9): where any model must equal the truth (units check)
    exposed = {n: (frames[n].max(-1) < 0.9) & (frames[n].min(-1) > 0.05) for n in wanted}
    y_truth = np.concatenate([luminance(truth[n][masks[n]]) for n in wanted])
    y_truth_exp = np.concatenate([luminance(truth[n][exposed[n]]) for n in wanted])
    out: dict = {"protocol": {"size": f"{w}x{h}", "frames": ",".join(map(str, wanted)),
                              "clipped_pixels": int(y_truth.size)}, "models": {}}
    for name in models:
        t = time.perf_counter()
        pipe = Pipeline(PipelineOptions(model=registered_name(name), weights=weights.get(name), device=device,
                                        backend="torch", precision="fp32"))
        preds = {n: pipe.process(frames[n]).linear709 for n in wanted}
        y_out = np.concatenate([luminance(preds[n][masks[n]]) for n in wanted])
        y_out_exp = np.concatenate([luminance(preds[n][exposed[n]]) for n in wanted])
        ratio = np.maximum(y_out, 0.0) / np.maximum(y_truth, 1e-6)
        out["models"][name] = {"ratio_median": float(np.median(ratio)), "out_median": float(np.median(y_out)),
                               "truth_median": float(np.median(y_truth)), "out_p99": float(np.percentile(y_out, 99)),
                               "truth_p99": float(np.percentile(y_truth, 99)),
                               "exposed_ratio_median": float(np.median(np.maximum(y_out_exp, 0.0)
                                                                      / np.maximum(y_truth_exp, 1e-6)))}
        if not quiet:
            print(f"{name}: demo clip, {len(wanted)} frames in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return out


def _mean(rows: list[dict], baseline: list[dict] | None = None) -> dict[str, float]:
    """Mean of every metric over ``rows``; with ``baseline`` (the same images scored for
    :data:`BASELINE`), the worst-case columns: min over the images of (row - baseline)."""
    if not rows:
        return {}
    keys = [k for k in rows[0] if k not in ("name", "case", "clip_fraction")]
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if isinstance(r.get(k), float) and math.isfinite(r[k])]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    if baseline is not None:
        ref = {_key(r): r for r in baseline}
        for col, metric in WORST.items():
            diffs = [r[metric] - ref[_key(r)][metric] for r in rows
                     if _key(r) in ref and math.isfinite(r[metric]) and math.isfinite(ref[_key(r)][metric])]
            out[col] = float(min(diffs)) if diffs else float("nan")
    return out


def _tables(per_model: dict[str, list[dict]], baseline: list[dict] | None, clips: tuple[float, ...]) -> dict:
    def base(sel):
        return None if baseline is None else [r for r in baseline if sel(r)]

    overall = {m: _mean(rows, base(lambda r: True)) for m, rows in per_model.items()}
    by_clip = {f"{c:g}": {m: _mean([r for r in rows if r["clip_fraction"] == c], base(lambda r, c=c: r["clip_fraction"] == c))
                          for m, rows in per_model.items()}
               for c in clips}
    return {"overall": overall, "by_clip": by_clip}


def summarise(per_model: dict[str, list[dict]], clips: tuple[float, ...], baseline: list[dict] | None = None) -> dict:
    """``overall`` and ``by_clip`` on the plain views (the table of the docs and cards), and
    ``cases``: the same two for every case present (``views`` included)."""
    cases = []
    for rows in per_model.values():
        for r in rows:
            c = r.get("case", "views")
            if c not in cases:
                cases.append(c)

    def pick(rows, case):
        return [r for r in rows if r.get("case", "views") == case]

    out = {"cases": {}}
    for case in cases:
        out["cases"][case] = _tables({m: pick(rows, case) for m, rows in per_model.items()},
                                     None if baseline is None else pick(baseline, case), clips)
    main = out["cases"].get("views") or next(iter(out["cases"].values()))
    out["overall"], out["by_clip"] = main["overall"], main["by_clip"]
    return out


def worst_images(per_model: dict[str, list[dict]], baseline: list[dict], n: int) -> dict[str, list[dict]]:
    """The ``n`` images where each model is furthest below :data:`BASELINE` on PSNR-mu."""
    ref = {_key(r): r for r in baseline}
    out = {}
    for m, rows in per_model.items():
        d = [{"name": r["name"], "clip_fraction": r["clip_fraction"],
              "psnr_mu": r["psnr_mu"] - ref[_key(r)]["psnr_mu"], "pu21_psnr": r["pu21_psnr"] - ref[_key(r)]["pu21_psnr"]}
             for r in rows if _key(r) in ref]
        out[m] = sorted(d, key=lambda e: e["psnr_mu"])[:n]
    return out


CASE_TITLES = {"views": "", "saturated": "Saturated coloured highlights: ", "specular": "Small specular highlights: "}


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

    lines: list[str] = []
    cases = summary.get("cases") or {"views": {"overall": summary["overall"], "by_clip": summary["by_clip"]}}
    for case, tabs in cases.items():
        title = CASE_TITLES.get(case, f"{case}: ")
        if lines:
            lines.append("")
        lines += [f"### {title}all clip fractions", ""] + table(tabs["overall"])
        for c, rows in tabs["by_clip"].items():
            lines += ["", f"### {title}{float(c) * 100:g} % of pixels clipped", ""] + table(rows)
    if any(k in metrics for k in WORST):
        lines += ["", f"`worst_mu` / `worst_pu21`: the lowest, over the images of the table, of the model's PSNR-mu / "
                      f"PU21-PSNR minus `{BASELINE}`'s on the same image (dB; negative = below doing nothing there)."]
    demo = summary.get("demo_clip")
    if demo and "skipped" in demo:
        lines += ["", f"Demo clip against its truth: skipped, {demo['skipped']}."]
    elif demo:
        p = demo.get("protocol", {})
        lines += ["", f"### Demo clip against its truth (hdrlift-make-sample --truth, {p.get('size', '?')}, "
                      f"frames {p.get('frames', '?')}): clipped pixels", "",
                  f"{p.get('clipped_pixels', '?')} pixels clipped in the input (brightest code value >= 0.99); "
                  "luminance, no scale alignment.", "",
                  "| model | median output / truth | median output | median truth | 99th pct output | 99th pct truth "
                  "| well-exposed px: median output / truth |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, d in demo["models"].items():
            lines.append(f"| `{name}` | **{d['ratio_median']:.3f}** | {d['out_median']:.2f} | {d['truth_median']:.2f} | "
                         f"{d['out_p99']:.1f} | {d['truth_p99']:.1f} | {d['exposed_ratio_median']:.3f} |")
    worst = summary.get("worst_images")
    if worst:
        lines += ["", f"### The worst images against `{BASELINE}` (PSNR-mu, PU21 difference in dB)", ""]
        for name, rows in worst.items():
            cells = ", ".join(f"{r['name']} @ {r['clip_fraction'] * 100:g} %: {r['psnr_mu']:+.2f} / {r['pu21_psnr']:+.2f}"
                              for r in rows)
            lines.append(f"* `{name}`: {cells}")
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
    ap.add_argument("--cases", default="views,saturated,specular",
                    help="validation cases (default views,saturated,specular; see training/val_cases.py)")
    ap.add_argument("--demo-frames", type=int, default=None, metavar="N",
                    help="score the demo clip against its truth on N evenly spaced frames of 48 (default 12 "
                         "where PyAV, OpenImageIO and OpenColorIO import, else skipped with a note; 0 = skip)")
    ap.add_argument("--worst-report", type=int, default=3, metavar="N",
                    help="list the N images furthest below inverse-crf per model (default 3)")
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
    from hdrlift.training.val_cases import CASES

    cases = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    if not cases or any(c not in CASES for c in cases):
        raise InputError(f"--cases takes a comma-separated subset of {','.join(CASES)}, got {args.cases!r}")
    if args.demo_frames is None:
        missing = demo_libraries_missing()
        args.demo_frames = 0 if missing else 12
        demo_skipped = f"PyAV, OpenImageIO or OpenColorIO missing ({missing})" if missing else None
    else:
        demo_skipped = None
    if args.demo_frames < 0:
        raise InputError("--demo-frames must be >= 0")
    cvvdp = None
    if args.cvvdp:
        cvvdp = _cvvdp_metric()
    split = None if args.split == "all" else args.split
    t0 = time.perf_counter()
    items = build_items(args.folder, split, args.views, args.size, clips, args.seed, cases)
    per_model = {}
    baseline = None
    for m in models:
        t = time.perf_counter()
        per_model[m] = run_model(m, items, weights.get(m), args.device, cvvdp, stack=not args.no_stack)
        if m == BASELINE:
            baseline = per_model[m]
        if not args.quiet:
            print(f"{m}: {len(items)} images in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    if baseline is None:  # the worst-case columns need it, shown or not
        baseline = run_model(BASELINE, items, None, args.device, None, stack=False)
    summary = summarise(per_model, clips, baseline)
    if args.worst_report > 0:
        summary["worst_images"] = worst_images({m: r for m, r in per_model.items() if m != BASELINE},
                                               baseline, args.worst_report)
    if demo_skipped:
        print(f"hdrlift-eval: demo clip skipped: {demo_skipped}", file=sys.stderr)
        summary["demo_clip"] = {"skipped": demo_skipped}
    elif args.demo_frames:
        summary["demo_clip"] = demo_clip(models, weights, args.demo_frames, args.device, args.quiet)
    n_views = sum(1 for it in items if it["case"] == cases[0])
    summary["protocol"] = {"folder": str(args.folder or "default"), "split": args.split, "views": args.views,
                           "size": args.size, "clip_fractions": list(clips), "seed": args.seed,
                           "cases": list(cases), "images": n_views // len(clips), "items": len(items),
                           "cvvdp": bool(cvvdp), "demo_frames": args.demo_frames,
                           "seconds": round(time.perf_counter() - t0, 1)}
    summary["per_image"] = per_model
    return _write_results(args, summary, markdown(summary))


def _write_results(args: argparse.Namespace, data: dict, text: str) -> int:
    """Print the tables; write ``--json`` and ``--markdown`` atomically (one line on failure)."""
    print(text)
    try:
        if args.json:
            atomic_write_text(args.json, json.dumps(data, indent=1, allow_nan=True) + "\n")
        if args.markdown:
            atomic_write_text(args.markdown, text)
    except OSError as exc:
        raise OutputError(f"cannot write results: {exc.strerror or exc}") from None
    return 0


def _evaluate_video(args: argparse.Namespace, models: list[str], weights: dict[str, str]) -> int:
    from hdrlift.training import temporal as T

    table = T.video_table(args.video, models, device=args.device, weights=weights, max_frames=args.video_frames)
    return _write_results(args, table, T.video_markdown(table))


if __name__ == "__main__":
    sys.exit(main())
