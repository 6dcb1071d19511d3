"""Ship a trained run: copy its weights into the engine and write the model card.

    python -m hdrlift.training.card --model hdrcnn-lite --run runs/hdrcnn-lite-cpu \\
        --stage runs/hdrcnn-lite-stage1-logl1 --eval docs/eval-hdrcnn-lite.json

Writes ``engine/models/weights/<model>.safetensors`` (the run's ``best.safetensors``, atomically)
and ``engine/models/weights/<model>.md``: data, recipe per stage (config, iterations, wall
time), hardware, and the validation table from ``hdrlift-eval --json`` next to the classical
operators. The card is regenerated, never edited by hand, so it cannot drift from the run.

A run made by ``training/gpu_session.sh`` holds ``env.json`` (the GPU, torch, the data pack): the
card then names that hardware and the packed data instead of this project's CPU machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import platform
import shutil
import sys

import torch

from hdrlift.engine.atomic import atomic_write_text, replacing

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parent.parent / "engine" / "models" / "weights"


def _stage_summary(run: pathlib.Path) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    steps, elapsed, val = 0, 0.0, None
    for line in (run / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        steps = max(steps, int(rec.get("step", 0)))
        elapsed = max(elapsed, float(rec.get("elapsed_s", 0.0)))
        if "val" in rec:
            val = rec["val"]
    if (run / "done.json").is_file():  # a finished stage: its last step may fall between log lines
        steps = max(steps, int(json.loads((run / "done.json").read_text()).get("step", 0)))
    from safetensors import safe_open

    best_step = None
    if (run / "best.safetensors").is_file():
        with safe_open(str(run / "best.safetensors"), "pt") as fh:
            best_step = (fh.metadata() or {}).get("step")
    if (run / "last.safetensors").is_file():  # written at the very end, also between log lines
        with safe_open(str(run / "last.safetensors"), "pt") as fh:
            steps = max(steps, int((fh.metadata() or {}).get("step", 0)))
    return {"run": str(run), "config": cfg, "steps": steps, "minutes": elapsed / 60.0, "last_val": val,
            "best_step": best_step}


def _stage_env(run: pathlib.Path) -> dict | None:
    """``env.json`` of a run made by ``training/gpu_session.py`` (in the run or, for a stage of a
    staged run, its parent); None for a run made on this project's CPU machine."""
    for folder in (run, run.parent):
        f = folder / "env.json"
        if f.is_file():
            return json.loads(f.read_text())
    return None


def _where(env: dict | None) -> str:
    return f"GPU ({env.get('gpu') or '?'})" if env else "CPU (2 cores)"


# what each network does to well-exposed pixels (the card's "Intended use and limits")
_KEEPS = {
    "hdrcnn-lite": ("Well-exposed pixels are returned exactly as the inverse sRGB curve (HDR-CNN Eq. 16, alpha = 0);",
                    "  only pixels above code value 0.95 are changed."),
    "expandnet": ("ExpandNet predicts every pixel (no blending with the input): well-exposed pixels come",
                  "  close to, not exactly at, the inverse sRGB curve."),
    "hdrunet": ("HDRUNet predicts every pixel through its weighting network (Eq. 2): well-exposed pixels",
                "  change little but are not kept exactly."),
}


def _hardware_lines(envs: list[dict | None]) -> list[str]:
    """``envs``: each stage's ``env.json`` (None: a stage run on this project's CPU machine)."""
    gpus = [e for e in envs if e is not None]
    if gpus and len(gpus) < len(envs):
        gpu = gpus[0]
        return ["* **Hardware**: the stages marked CPU on this project's CPU machine (2 cores, no GPU,",
                f"  torch {torch.__version__}); those marked GPU on a GPU machine lent to a later session",
                f"  ({gpu.get('gpu') or '?'}, {gpu.get('cpu_count', '?')} CPU cores, torch {gpu.get('torch', '?')};"
                " `training/gpu_session.sh`), starting from the CPU stages' weights."]
    if not gpus:
        return ["* **Hardware**: this project's CPU machine, 2 cores, no GPU (no GPU was lent to the session that",
                f"  trained them), torch {torch.__version__}, {platform.machine()}."]
    env = gpus[-1]
    gpu = env.get("gpu") or "no GPU"
    return [f"* **Hardware**: a GPU machine lent to the session ({gpu}, {env.get('cpu_count', '?')} CPU cores),",
            f"  torch {env.get('torch', '?')}, {env.get('machine', '?')}; `training/gpu_session.sh`."]


def _data_lines(env: dict | None, cfgs: list[dict]) -> list[str]:
    pack = (env or {}).get("pack") or {}
    packed = [str(c.get("data") or "").endswith(".npz") for c in cfgs]
    head = "* **Data**: the 40 `train` panoramas of `../shared/data/hdri` (CC0, Poly Haven, 1024x512),"
    if all(packed):
        return [head, f"  downsized to {pack.get('size', '?')} px wide (area average, float16) by `training/pack_data.py`,"]
    if any(packed):
        return [head, f"  (the GPU stages: downsized to {pack.get('size', '?')} px wide by `training/pack_data.py`),"]
    return [head]


def _table(ev: dict, metrics=("psnr_mu", "pu21_psnr", "psnr_l", "clipped_stops")) -> str:
    rows = ev["overall"] if "overall" in ev else ev
    head = "| model | " + " | ".join(metrics) + " |"
    sep = "|---|" + "---:|" * len(metrics)
    lines = [head, sep]
    for name, vals in rows.items():
        lines.append(f"| `{name}` | " + " | ".join(f"{vals.get(m, float('nan')):.3f}" for m in metrics) + " |")
    return "\n".join(lines)


def _verdict(model: str, ev: dict, metrics=(("psnr_mu", 1), ("pu21_psnr", 1), ("clipped_stops", -1))) -> list[str]:
    """One line per metric: this model against the best classical operator in the table."""
    from hdrlift.engine.models import get_info

    rows = ev["overall"] if "overall" in ev else ev
    classical = [n for n in rows if n != model and get_info(n).kind == "classical"]
    if model not in rows or not classical:
        return []
    out = ["Against the best classical operator of the table, per metric:", ""]
    for m, sign in metrics:
        best = max(classical, key=lambda n: sign * rows[n][m])
        diff = rows[model][m] - rows[best][m]
        verdict = "better" if sign * diff > 0 else "worse"
        out.append(f"* `{m}`: {verdict} than `{best}` by {abs(diff):.3f}")
    return out + [""]


def _minutes(stages: list[dict], envs: list[dict | None]) -> str:
    cpu = sum(st["minutes"] for st, e in zip(stages, envs) if e is None)
    gpu = sum(st["minutes"] for st, e in zip(stages, envs) if e is not None)
    parts = ([f"{cpu:.0f} minutes on a 2-core CPU"] if cpu else []) + ([f"{gpu:.0f} minutes on one GPU"] if gpu else [])
    return " then ".join(parts)


def write_card(model: str, runs: list[pathlib.Path], ev: dict | None, eval_cmd: str | None,
               weights: pathlib.Path) -> str:
    stages = [_stage_summary(r) for r in runs]
    envs = [_stage_env(r) for r in runs]
    env = next((e for e in reversed(envs) if e is not None), None)  # the last GPU stage's
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    lines = [
        f"# Model card: `{model}`",
        "",
        f"Weights: `{weights.name}` (safetensors, {weights.stat().st_size / 1e6:.1f} MB, sha256 `{digest[:16]}...`).",
        "Generated by `python -m hdrlift.training.card`; do not edit by hand.",
        "",
        "## How they were made",
        "",
        *_hardware_lines(envs),
        *_data_lines(env, [st["config"] for st in stages]),
        "  random perspective views (yaw, pitch -20..35 degrees, 50-90 degree field of view), flips,",
        "  rotations, channel swaps, median-luminance normalisation; LDR input from `training/camera.py`:",
        "  exposure so that 1-12 % of pixels clip, sRGB curve, 8-bit quantisation.",
        "* **Validation**: the 6 `val` panoramas, never trained on.",
        "",
        "| stage | run | where | loss | iterations run (planned) | weights taken at | patch x batch | lr | wall time (min) |",
        "|---|---|---|---|---:|---:|---|---:|---:|",
    ]
    for i, st in enumerate(stages, 1):
        c = st["config"]
        # the next stage started from this one's last (EMA) weights, or from its best (a shipped copy)
        nxt = str(stages[i]["config"].get("init_from") or "") if i < len(stages) else ""
        best = st["best_step"] and (i == len(stages) or not nxt.endswith("last.safetensors"))
        taken = f"best val, step {st['best_step']}" if best else "last (EMA)"
        loss = c.get("loss_resolved") or c["loss"]  # the trainer records what "auto" resolved to
        lines.append(f"| {i} | `{pathlib.Path(st['run']).name}` | {_where(envs[i - 1])} | `{loss}` | "
                     f"{st['steps']} ({c['iterations']}) | {taken} | {c['patch']} x {c['batch']} | {c['lr']:g} | "
                     f"{st['minutes']:.1f} |")
    lines += ["", "Configs: each run folder's `config.json` (" + ", ".join(f"`{pathlib.Path(st['run']).name}`" for st in stages)
              + "); the recipes they were made from are in `training/configs/`.", ""]
    if ev is not None:
        lines += ["## Validation (val split) next to the classical operators", ""]
        if eval_cmd:
            lines += ["```sh", eval_cmd, "```", ""]
        lines += [_table(ev), "",
                  "PSNR values in dB (higher is better); `clipped_stops` is the mean |log2| luminance error",
                  "inside the clipped region (lower is better). Definitions: `docs/training.md`.", ""]
        lines += _verdict(model, ev)
    lines += ["## Intended use and limits", "",
              "* Input: SDR code values (sRGB/BT.1886 after OCIO), 8-10 bit, clipped highlights.",
              *(("* " + _KEEPS[model][0], _KEEPS[model][1]) if model in _KEEPS else ()),
              "* Trained on 40 panoramas for " + _minutes(stages, envs) + ", far less than the paper's",
              "  schedule: judge it by the table above, not by the paper's figures.",
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--run", required=True, help="the run whose best.safetensors ships")
    ap.add_argument("--stage", action="append", default=[], help="earlier stages (in order) of the recipe")
    ap.add_argument("--eval", help="hdrlift-eval --json output to put in the card")
    ap.add_argument("--eval-cmd", help="the command that produced --eval")
    args = ap.parse_args(argv)
    run = pathlib.Path(args.run)
    src = run / "best.safetensors"
    if not src.is_file():
        print(f"card: error: {src} not found", file=sys.stderr)
        return 2
    stages = [pathlib.Path(s) for s in args.stage] + [run]
    missing = [str(f) for st in stages for f in (st / "config.json", st / "log.jsonl") if not f.is_file()]
    if args.eval and not pathlib.Path(args.eval).is_file():
        missing.append(args.eval)
    if missing:  # check everything before the weights are replaced, so a failure changes nothing
        print(f"card: error: not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    ev = json.loads(pathlib.Path(args.eval).read_text()) if args.eval else None
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    dst = WEIGHTS_DIR / f"{args.model}.safetensors"
    with replacing(dst) as tmp:
        shutil.copyfile(src, tmp)
    text = write_card(args.model, stages, ev, args.eval_cmd, dst)
    atomic_write_text(WEIGHTS_DIR / f"{args.model}.md", text)
    print(f"wrote {dst} and {dst.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
