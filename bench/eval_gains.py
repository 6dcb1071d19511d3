"""Summarise ``hdrlift-eval --json`` files as gains over the plain inverse camera curve.

Per model (first file wins when several hold it): the mean PSNR-mu / PU21 gain over
``inverse-crf`` on the same images at each clip fraction of the ``views`` case, the worst image
and how many images fall more than 0.5 dB below it, the ``saturated`` and ``specular`` cases, and
the demo clip's median ratio to its truth and 99th percentile. One markdown table on stdout.

    python bench/eval_gains.py runs/eval/cand1.json runs/eval/cand2.json
"""

from __future__ import annotations

import argparse
import json

BASELINE = "inverse-crf"


def gains(data: dict, model: str, case: str) -> dict:
    """Per-image differences (model - baseline) in one case of an evaluation JSON."""
    base = {(r["name"], r["clip_fraction"]): r for r in data["per_image"][BASELINE] if r["case"] == case}
    rows = [r for r in data["per_image"][model] if r["case"] == case]
    d = [(r["clip_fraction"], r["psnr_mu"] - base[(r["name"], r["clip_fraction"])]["psnr_mu"],
          r["pu21_psnr"] - base[(r["name"], r["clip_fraction"])]["pu21_psnr"]) for r in rows]
    clips = sorted({c for c, _, _ in d})
    mean = {c: tuple(sum(x[k] for x in d if x[0] == c) / sum(1 for x in d if x[0] == c) for k in (1, 2))
            for c in clips}
    return {"mean": mean, "all": (sum(x[1] for x in d) / len(d), sum(x[2] for x in d) / len(d)),
            "worst": (min(x[1] for x in d), min(x[2] for x in d)),
            "below": (sum(x[1] < -0.5 for x in d), sum(x[2] < -0.5 for x in d)), "n": len(d)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", nargs="+")
    args = ap.parse_args()
    seen: dict[str, tuple[dict, dict]] = {}
    for path in args.json:
        data = json.loads(open(path).read())
        for m in data["per_image"]:
            if m != BASELINE and m not in seen:
                seen[m] = (data, (data.get("demo_clip") or {}).get("models", {}).get(m, {}))
    print("| weights | views: gain PSNR-mu / PU21, 3 % | 10 % | worst image (mu / PU21) | images below -0.5 dB "
          "(mu / PU21) | saturated: mean gain (mu / PU21) | saturated worst mu | specular worst (mu / PU21) "
          "| demo clip: median ratio, 99th pct |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m, (data, demo) in seen.items():
        v, s, p = (gains(data, m, c) for c in ("views", "saturated", "specular"))
        lo, hi = sorted(v["mean"])[0], sorted(v["mean"])[-1]
        print(f"| `{m}` | {v['mean'][lo][0]:+.2f} / {v['mean'][lo][1]:+.2f} | {v['mean'][hi][0]:+.2f} / "
              f"{v['mean'][hi][1]:+.2f} | {v['worst'][0]:+.2f} / {v['worst'][1]:+.2f} | {v['below'][0]} / "
              f"{v['below'][1]} of {v['n']} | {s['all'][0]:+.2f} / {s['all'][1]:+.2f} | {s['worst'][0]:+.2f} | "
              f"{p['worst'][0]:+.2f} / {p['worst'][1]:+.2f} | {demo.get('ratio_median', float('nan')):.2f}, "
              f"{demo.get('out_p99', float('nan')):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
