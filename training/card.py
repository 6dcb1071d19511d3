"""Ship a trained run: copy its weights into the engine and write the model card.

    python -m hdrlift.training.card --model hdrcnn-lite --run runs/hdrcnn-lite-cpu \\
        --stage runs/hdrcnn-lite-stage1-logl1 --eval docs/eval-hdrcnn-lite.json

Writes ``engine/models/weights/<model>.safetensors`` (the run's ``best.safetensors``, atomically)
and ``engine/models/weights/<model>.md``: data, recipe per stage (config, iterations, wall
time), hardware, and the validation table from ``hdrlift-eval --json`` next to the classical
operators. The card is regenerated, never edited by hand, so it cannot drift from the run.

A run made by ``training/gpu_session.sh`` holds ``env.json`` (the GPU, torch, the data pack): the
card then names that hardware and the packed data instead of this project's CPU machine.

    python -m hdrlift.training.card --model expandnet --refresh --eval docs/eval/val.json --eval-cmd "..."

``--prior-card CARD`` names the card of the weights the first stage started from (its
``init_from``), for stages whose run folders are gone (``git show REV:engine/models/weights/M.md``):
their rows of "How they were made" come first in the new table, marked as taken from that card,
and their minutes count in the total.

``--refresh`` rewrites the card of weights already shipped whose run folders are gone: the "How
they were made" section is kept as it was written (it is history), the validation and the limits
are regenerated from the new evaluation; the weights must still be the ones the card names
(its sha256), and are not touched.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
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


# what each network does to well-exposed pixels (the card's "Intended use and limits"): since the
# shared output stage (engine/models/masks.py, keep_unclipped) the same for every network
_KEEPS_ALL = ("Channel by channel, a channel that was not clipped (code value below the output stage's ramp,",
              "  0.95 or 0.96) is returned exactly as the inverse sRGB curve, a zero channel stays 0; only",
              "  clipped channels are expanded, never below their own linearised value (`masks.keep_unclipped`).")
_RAMP = {"santos": 0.96, "expandnet": 0.96}


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


def _train_count(cfgs: list[dict]) -> str:
    """How many ``train`` images the runs saw: the count the trainer recorded (``data_counts``),
    else ``"the"`` (runs made before it recorded one)."""
    counts = {int(c["data_counts"]["train"]) for c in cfgs if isinstance(c.get("data_counts"), dict)}
    return str(max(counts)) if counts else "the"


def _data_lines(env: dict | None, cfgs: list[dict]) -> list[str]:
    pack = (env or {}).get("pack") or {}
    packed = [str(c.get("data") or "").endswith(".npz") for c in cfgs]
    head = (f"* **Data**: {_train_count(cfgs)} `train` panoramas of `../shared/data/hdri` (CC0, listed with their "
            "sources in its `MANIFEST.csv`),")
    if all(packed):
        return [head, f"  downsized to {pack.get('size', '?')} px wide (area average, float16) by `training/pack_data.py`,"]
    if any(packed):
        return [head, f"  (the GPU stages: downsized to {pack.get('size', '?')} px wide by `training/pack_data.py`),"]
    return [head]


CARD_METRICS = ("psnr_mu", "pu21_psnr", "worst_mu", "worst_pu21", "psnr_l", "clipped_stops")


def _table(rows: dict, metrics=CARD_METRICS, model: str | None = None) -> str:
    metrics = tuple(m for m in metrics if any(m in v for v in rows.values()))
    head = "| model | " + " | ".join(metrics) + " |"
    sep = "|---|" + "---:|" * len(metrics)
    lines = [head, sep]
    for name, vals in rows.items():
        label = f"**`{name}`**" if name == model else f"`{name}`"
        lines.append(f"| {label} | " + " | ".join(f"{vals.get(m, float('nan')):.3f}" for m in metrics) + " |")
    return "\n".join(lines)


def _kind(name: str) -> str:
    from hdrlift.engine.models import get_info

    return get_info(name.split("@", 1)[0]).kind


def _verdict(model: str, rows: dict, metrics=(("psnr_mu", 1), ("pu21_psnr", 1), ("clipped_stops", -1))) -> list[str]:
    """One line per metric: this model against the best classical operator in the table."""
    classical = [n for n in rows if n != model and _kind(n) == "classical"]
    if model not in rows or not classical:
        return []
    out = []
    for m, sign in metrics:
        if m not in rows[model]:
            continue
        best = max(classical, key=lambda n: sign * rows[n][m])
        diff = rows[model][m] - rows[best][m]
        verdict = "better" if sign * diff > 0 else "worse"
        out.append(f"* `{m}`: {verdict} than `{best}` by {abs(diff):.3f}")
    if "worst_mu" in rows[model]:
        w = rows[model]["worst_mu"]
        out.append(f"* on its worst image, PSNR-mu {'above' if w >= 0 else 'below'} `inverse-crf` by {abs(w):.3f}"
                   + (" (the bar: never more than 0.5 below)" if w < -0.5 else ""))
    return out


def _validation_lines(model: str, ev: dict, eval_cmd: str | None) -> list[str]:
    proto = ev.get("protocol", {})
    lines = ["## Validation (val split) next to the classical operators", ""]
    if eval_cmd:
        lines += ["```sh", eval_cmd, "```", ""]
    if proto:
        n_views = proto.get("views") or 1
        lines += [f"The val split as it is now: {int(proto.get('images', 0)) // n_views} panoramas x {n_views} views of "
                  f"{proto.get('size', '?')} px, each exposed so that "
                  + " and ".join(f"{c * 100:g} %" for c in proto.get("clip_fractions", [])) + " of its pixels clip.", ""]
    lines += ["### All clip fractions", "", _table(ev["overall"], model=model), ""]
    for clip, rows in (ev.get("by_clip") or {}).items():
        lines += [f"### {float(clip) * 100:g} % of pixels clipped", "", _table(rows, model=model), ""]
    lines += ["PSNR values in dB (higher is better); `worst_mu` / `worst_pu21`: the lowest, over the val images, of",
              "PSNR-mu / PU21-PSNR minus `inverse-crf`'s on the same image; `clipped_stops` is the mean |log2|",
              "luminance error inside the clipped region (lower is better). Definitions: `docs/training.md`.", ""]
    for clip, rows in (ev.get("by_clip") or {"all": ev["overall"]}).items():
        v = _verdict(model, rows)
        if v:
            title = "all clip fractions" if clip == "all" else f"{float(clip) * 100:g} % clipped"
            lines += [f"Against the best classical operator of the table, {title}:", "", *v, ""]
    cases = ev.get("cases") or {}
    extra = [c for c in cases if c != "views"]
    if extra and model in cases[extra[0]]["overall"]:
        lines += ["### Saturated coloured highlights and small speculars (`training/val_cases.py`)", "",
                  "| case | clip | " + " | ".join(f"`{n}` {m}" for n in (model, "inverse-crf") for m in ("psnr_mu", "pu21_psnr"))
                  + f" | `{model}` worst_mu |", "|---|---|" + "---:|" * 5]
        for c in extra:
            for clip, rows in cases[c]["by_clip"].items():
                if model not in rows or "inverse-crf" not in rows:
                    continue
                a, b = rows[model], rows["inverse-crf"]
                lines.append(f"| {c} | {float(clip) * 100:g} % | {a['psnr_mu']:.3f} | {a['pu21_psnr']:.3f} | "
                             f"{b['psnr_mu']:.3f} | {b['pu21_psnr']:.3f} | {a.get('worst_mu', float('nan')):.3f} |")
        lines.append("")
    demo = (ev.get("demo_clip") or {}).get("models", {})
    if model in demo:
        d = demo[model]
        lines += ["### The demo clip against its truth", "",
                  f"`hdrlift-make-sample --truth` (640x360), frames {ev['demo_clip']['protocol']['frames']}, the pixels "
                  "clipped in the input: median output / truth luminance **" + f"{d['ratio_median']:.3f}**"
                  + (f" (`inverse-crf`: {demo['inverse-crf']['ratio_median']:.3f})" if "inverse-crf" in demo else "")
                  + f"; median output {d['out_median']:.2f} against {d['truth_median']:.2f} in the truth, 99th percentile "
                  f"{d['out_p99']:.1f} against {d['truth_p99']:.1f}.", ""]
    return lines


def _limits_lines(model: str, trained: list[str]) -> list[str]:
    keeps = [_KEEPS_ALL[0], _KEEPS_ALL[1].replace("0.95 or 0.96", f"{_RAMP.get(model, 0.95):g}"), _KEEPS_ALL[2]]
    return ["## Intended use and limits", "",
            "* Input: SDR code values (sRGB/BT.1886 after OCIO), 8-10 bit, clipped highlights.",
            "* " + keeps[0], *keeps[1:], *trained, ""]


def _minutes(stages: list[dict], envs: list[dict | None], prior: list[dict] = ()) -> str:
    cpu = sum(r["minutes"] for r in prior if "GPU" not in r["where"])
    cpu += sum(st["minutes"] for st, e in zip(stages, envs) if e is None)
    gpu = sum(r["minutes"] for r in prior if "GPU" in r["where"]) + sum(st["minutes"] for st, e in zip(stages, envs) if e is not None)
    parts = ([f"{cpu:.0f} minutes on a 2-core CPU"] if cpu else []) + ([f"{gpu:.0f} minutes on one GPU"] if gpu else [])
    return " then ".join(parts)


def prior_stages(text: str) -> list[dict]:
    """The rows of an earlier card's stage table: ``{"cells": [...], "minutes": float, "where": str}``
    (``ValueError`` when it has none)."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0].isdigit() and len(cells) == 9:
            rows.append({"cells": cells[1:], "minutes": float(cells[8]), "where": cells[2]})
    if not rows:
        raise ValueError("the prior card has no stage table")
    return rows


def write_card(model: str, runs: list[pathlib.Path], ev: dict | None, eval_cmd: str | None,
               weights: pathlib.Path, prior: tuple[str, list[dict]] | None = None) -> str:
    """``prior``: (the prior card's name, :func:`prior_stages` of it), see ``--prior-card``."""
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
        f"  exposure so that {_clip_text(stages)} of pixels clip, sRGB curve, 8-bit quantisation.",
        f"* **Validation**: {_val_count(stages)} `val` panoramas, never trained on (they pick the checkpoint).",
        "",
        "| stage | run | where | loss | iterations run (planned) | weights taken at | patch x batch | lr | wall time (min) |",
        "|---|---|---|---|---:|---:|---|---:|---:|",
    ]
    k = len(prior[1]) if prior else 0
    for i, row in enumerate(prior[1] if prior else [], 1):
        cells = list(row["cells"])
        cells[0] = f"{cells[0]} (from `{prior[0]}`)"
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    for i, st in enumerate(stages, 1):
        c = st["config"]
        # the next stage started from this one's last (EMA) weights, or from its best (a shipped copy)
        nxt = str(stages[i]["config"].get("init_from") or "") if i < len(stages) else ""
        best = st["best_step"] and (i == len(stages) or not nxt.endswith("last.safetensors"))
        taken = f"best val, step {st['best_step']}" if best else "last (EMA)"
        loss = c.get("loss_resolved") or c["loss"]  # the trainer records what "auto" resolved to
        lines.append(f"| {i + k} | `{pathlib.Path(st['run']).name}` | {_where(envs[i - 1])} | `{loss}` | "
                     f"{st['steps']} ({c['iterations']}) | {taken} | {c['patch']} x {c['batch']} | {c['lr']:g} | "
                     f"{st['minutes']:.1f} |")
    lines += ["", "Configs: each run folder's `config.json` (" + ", ".join(f"`{pathlib.Path(st['run']).name}`" for st in stages)
              + "); the recipes they were made from are in `training/configs/`."]
    if prior:
        lines += [f"Stages 1-{k} are the recipe of the weights stage {k + 1} started from "
                  f"(`{stages[0]['config'].get('init_from')}`), as their card `{prior[0]}` records it; their run "
                  "folders are gone. They saw the `train` split of their day."]
    lines.append("")
    if ev is not None:
        lines += _validation_lines(model, ev, eval_cmd)
    n = _train_count([st["config"] for st in stages])
    lines += _limits_lines(model, [f"* Trained on {n} panoramas for " + _minutes(stages, envs, prior[1] if prior else ()) + ", far less than the paper's",
                                   "  schedule: judge it by the tables above, not by the paper's figures."])
    return "\n".join(lines)


def _clip_text(stages: list[dict]) -> str:
    ranges = {tuple(st["config"].get("clip_range") or (0.01, 0.12)) for st in stages}
    lo = min(r[0] for r in ranges)
    hi = max(r[1] for r in ranges)
    return f"{lo * 100:g}-{hi * 100:g} %"


def _val_count(stages: list[dict]) -> str:
    counts = {int(st["config"]["data_counts"]["val"]) for st in stages
              if isinstance(st["config"].get("data_counts"), dict) and st["config"]["data_counts"].get("val")}
    return str(max(counts)) if counts else "the"


def refresh_card(model: str, old: str, ev: dict, eval_cmd: str | None, weights: pathlib.Path) -> str:
    """The card ``old`` with its validation and limits regenerated from ``ev`` (module docstring,
    ``--refresh``). ``ValueError`` when ``old`` does not describe ``weights``."""
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if f"sha256 `{digest[:16]}" not in old:
        raise ValueError(f"the card of {model} does not describe {weights.name} (sha256 {digest[:16]}...)")
    head, sep, _ = old.partition("## Validation")
    if not sep:
        head = old.partition("## Intended use and limits")[0]
    trained = []
    tail = old.partition("## Intended use and limits")[2].splitlines()
    for i, line in enumerate(tail):  # the "Trained on ..." bullet and its continuation lines
        if line.startswith("* Trained on"):
            trained.append(line)
            trained += [ln for ln in itertools.takewhile(lambda t: t.startswith("  "), tail[i + 1:])]
    head = head.rstrip() + "\n\n"
    note = ["(The validation line above is the split these weights were trained against; the tables below are on",
            "the val split as it is now.)", ""]
    return head + "\n".join(note + _validation_lines(model, ev, eval_cmd) + _limits_lines(model, trained))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--run", help="the run whose best.safetensors ships")
    ap.add_argument("--refresh", action="store_true",
                    help="regenerate the validation of a shipped card (no run needed; the weights stay)")
    ap.add_argument("--stage", action="append", default=[], help="earlier stages (in order) of the recipe")
    ap.add_argument("--eval", help="hdrlift-eval --json output to put in the card")
    ap.add_argument("--eval-cmd", help="the command that produced --eval")
    ap.add_argument("--prior-card", help="card of the weights the first stage started from (its run folders gone)")
    args = ap.parse_args(argv)
    if args.refresh:
        return _refresh(args)
    if not args.run:
        print("card: error: --run is required (or --refresh)", file=sys.stderr)
        return 2
    run = pathlib.Path(args.run)
    src = run / "best.safetensors"
    if not src.is_file():
        print(f"card: error: {src} not found", file=sys.stderr)
        return 2
    stages = [pathlib.Path(s) for s in args.stage] + [run]
    missing = [str(f) for st in stages for f in (st / "config.json", st / "log.jsonl") if not f.is_file()]
    if args.eval and not pathlib.Path(args.eval).is_file():
        missing.append(args.eval)
    if args.prior_card and not pathlib.Path(args.prior_card).is_file():
        missing.append(args.prior_card)
    if missing:  # check everything before the weights are replaced, so a failure changes nothing
        print(f"card: error: not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    prior = None
    if args.prior_card:
        try:
            prior = (pathlib.Path(args.prior_card).name, prior_stages(pathlib.Path(args.prior_card).read_text()))
        except ValueError as exc:
            print(f"card: error: {args.prior_card}: {exc}", file=sys.stderr)
            return 2
    ev = json.loads(pathlib.Path(args.eval).read_text()) if args.eval else None
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    dst = WEIGHTS_DIR / f"{args.model}.safetensors"
    with replacing(dst) as tmp:
        shutil.copyfile(src, tmp)
    text = write_card(args.model, stages, ev, args.eval_cmd, dst, prior)
    atomic_write_text(WEIGHTS_DIR / f"{args.model}.md", text)
    print(f"wrote {dst} and {dst.with_suffix('.md')}")
    return 0


def _refresh(args: argparse.Namespace) -> int:
    weights = WEIGHTS_DIR / f"{args.model}.safetensors"
    card_path = WEIGHTS_DIR / f"{args.model}.md"
    missing = [str(p) for p in (weights, card_path) if not p.is_file()]
    if not args.eval or not pathlib.Path(args.eval).is_file():
        missing.append(args.eval or "--eval")
    if missing:
        print(f"card: error: not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    ev = json.loads(pathlib.Path(args.eval).read_text())
    try:
        text = refresh_card(args.model, card_path.read_text(), ev, args.eval_cmd, weights)
    except ValueError as exc:
        print(f"card: error: {exc}", file=sys.stderr)
        return 2
    atomic_write_text(card_path, text)
    print(f"rewrote {card_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
