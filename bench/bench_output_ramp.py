"""Benchmark (not a test): HDR-CNN's output ramp (Eq. 17's ``tau``) on the val views.

The blend starts at code value ``tau`` (0.95, the paper's), so channels between ``tau`` and the
clip, which the camera recorded exactly, are mixed with the network's expansion too. This scores
given weights with other ``tau`` values on the ``hdrlift-eval`` protocol (4 views of 256 px per val
panorama, 3 % and 10 % clipped, seed 2024): per case and clip fraction, the mean PSNR-mu / PU21
next to the inverse curve's, the worst image against it and how many images fall more than 0.5 dB
below it (PSNR-mu / PU21).

    python bench/bench_output_ramp.py --tau 0.95,0.98 [--weights FILE] [--cases views,saturated]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tau", default="0.95,0.98")
    ap.add_argument("--weights", help="hdrcnn-lite weights (default: the shipped ones)")
    ap.add_argument("--cases", default="views,saturated")
    args = ap.parse_args()
    from hdrlift.engine.models.loading import load_model
    from hdrlift.training import metrics as M
    from hdrlift.training.data import open_hdr, validation_set

    cases = tuple(args.cases.split(","))
    items = validation_set(open_hdr(None, "val"), views=4, size=256, seed=2024, cases=cases)

    def scores(model) -> list[tuple[float, float]]:
        out = []
        for it in items:
            x = torch.from_numpy(np.ascontiguousarray(it["ldr"].transpose(2, 0, 1)))[None]
            with torch.no_grad():
                p = model(x)[0].numpy().transpose(1, 2, 0)
            s = M.score(p, it["hdr"], it["ldr"])
            out.append((s["psnr_mu"], s["pu21_psnr"]))
        return out

    base = scores(load_model("inverse-crf"))
    print("| tau | case | clip | PSNR-mu / PU21 | inverse-crf | worst image | images below -0.5 dB |")
    print("|---:|---|---:|---|---|---|---|")
    for tau in (float(t) for t in args.tau.split(",")):
        model = load_model("hdrcnn-lite", weights=args.weights)
        for mod in model.modules():
            if hasattr(mod, "tau"):
                mod.tau = tau
        r = scores(model)
        for case in cases:
            for clip in sorted({it["clip_fraction"] for it in items}):
                idx = [i for i, it in enumerate(items) if it["case"] == case and it["clip_fraction"] == clip]
                dm = [r[i][0] - base[i][0] for i in idx]
                dp = [r[i][1] - base[i][1] for i in idx]
                print(f"| {tau:g} | {case} | {clip * 100:g} % | {np.mean([r[i][0] for i in idx]):.2f} / "
                      f"{np.mean([r[i][1] for i in idx]):.2f} | {np.mean([base[i][0] for i in idx]):.2f} / "
                      f"{np.mean([base[i][1] for i in idx]):.2f} | {min(dm):+.2f} / {min(dp):+.2f} | "
                      f"{sum(d < -0.5 for d in dm)} / {sum(d < -0.5 for d in dp)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
