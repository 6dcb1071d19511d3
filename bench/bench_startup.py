"""Start-up time of the commands, timed from outside: the whole process, import to exit.

    python bench/bench_startup.py [--bin DIR ...] [--repeats 7] [--still PNG]

Each ``--bin`` is a folder of console scripts (a virtual environment's ``bin``; default this
Python's). Rows: ``hdr-video --version``, ``--help``, ``--list-models``, ``--list-colorspaces``
and ``hdr-image`` converting a still with ``inverse-crf`` (a model that needs no back-end
choice), median and best wall seconds of ``--repeats`` runs, side by side per folder so that the
ratios come from one run on one machine.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time


def _time(cmd: list[str], repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", action="append", default=[], help="folder of hdr-video / hdr-image (repeatable)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--still", help="a PNG to convert (default: a 256x256 made here)")
    args = ap.parse_args()
    bins = [pathlib.Path(b) for b in args.bin] or [pathlib.Path(sys.executable).parent]
    with tempfile.TemporaryDirectory() as tmp:
        still = args.still
        if still is None:
            import numpy as np
            import OpenImageIO as oiio

            still = os.path.join(tmp, "still.png")
            rng = np.random.default_rng(0)
            oiio.ImageBuf((rng.random((256, 256, 3)) * 255).astype(np.uint8)).write(still)
        rows = [("hdr-video --version", ["hdr-video", "--version"]),
                ("hdr-video --help", ["hdr-video", "--help"]),
                ("hdr-video --list-models", ["hdr-video", "--list-models"]),
                ("hdr-video --list-colorspaces", ["hdr-video", "--list-colorspaces"]),
                ("hdr-image still (inverse-crf)", ["hdr-image", still, os.path.join(tmp, "o.exr"), "--model",
                                                   "inverse-crf", "--overwrite", "-q"])]
        print("| command | " + " | ".join(f"{b.parent.name or b} median / best (s)" for b in bins) + " |")
        print("|---|" + "---|" * len(bins))
        for name, cmd in rows:
            cells = []
            for b in bins:
                med, best = _time([str(b / cmd[0]), *cmd[1:]], args.repeats)
                cells.append(f"{med:.2f} / {best:.2f}")
            print(f"| `{name}` | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
