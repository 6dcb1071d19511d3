"""Pack an HDR folder into one ``.npz`` that travels next to the repository.

    python -m hdrlift.training.pack_data --out .data/hdri-pack.npz [--size 512] [--data DIR]

Reads every ``.exr``/``.hdr`` of the folder (default ``../shared/data/hdri`` or ``$HDRLIFT_DATA``)
with :func:`hdrlift.training.data.read_hdr` (OpenImageIO, on this machine), downsizes each image to
``--size`` pixels wide by area averaging (an image already that narrow is kept as it is; 2:1
panoramas stay exactly 2:1), and writes one compressed ``.npz``:

* ``img_00000``, ``img_00001``, ...: ``H x W x 3`` float16, the linear image divided by ``scale``;
* ``scale``: float32 per image, a power of two (1 unless the image's peak would overflow float16,
  65504: the sun of a panorama can reach ~9e4);
* ``names`` (file names), ``split`` (the ``MANIFEST.csv`` split of each file, ``""`` without one);
* ``meta``: JSON text (source folder, widths, the packer's version).

:class:`hdrlift.training.data.HdrPack` reads it back with numpy alone (``"data":
".data/hdri-pack.npz"`` in a training config, or the folder argument of ``hdrlift-eval``). The
shared panoramas at 512 x 256 make a 25 MiB pack. ``.data/`` is git-ignored: the pack is never
committed (it derives from the shared data, which stays outside the repository).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pathlib
import sys

import numpy as np

PACK_VERSION = 1
F16_MAX = 32768.0  # stored peak stays below this (float16's largest finite value is 65504)


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``n_out x n_in`` weights of the area average (box filter with fractional overlaps) that
    shrinks ``n_in`` samples to ``n_out``; each row sums to 1."""
    edges = np.linspace(0.0, float(n_in), n_out + 1)
    m = np.zeros((n_out, n_in), np.float64)
    for o in range(n_out):
        a, b = edges[o], edges[o + 1]
        for i in range(int(math.floor(a)), min(n_in, int(math.ceil(b)))):
            m[o, i] = max(0.0, min(b, i + 1.0) - max(a, float(i)))
        m[o] /= m[o].sum()
    return m


def area_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``H x W x C`` float image shrunk to ``height x width`` by area averaging (float64 sums)."""
    h, w, c = img.shape
    my, mx = area_matrix(h, height), area_matrix(w, width)
    rows = (my @ img.astype(np.float64).reshape(h, w * c)).reshape(height, w, c)
    out = np.einsum("pw,hwc->hpc", mx, rows, optimize=True)
    return np.ascontiguousarray(out.astype(np.float32))


def target_size(h: int, w: int, size: int) -> tuple[int, int]:
    """``(height, width)`` for a width of ``size`` (never enlarged); 2:1 panoramas stay 2:1."""
    if w <= size:
        return h, w
    if w == 2 * h:
        return size // 2, size
    return max(1, round(h * size / w)), size


def to_half(img: np.ndarray) -> tuple[np.ndarray, float]:
    """``(float16 image, scale)`` with ``img ~= half * scale``, ``scale`` a power of two."""
    peak = float(img.max()) if img.size else 0.0
    k = max(0, int(math.ceil(math.log2(peak / F16_MAX)))) if peak > F16_MAX else 0
    scale = float(2.0 ** k)
    return (img / np.float32(scale)).astype(np.float16), scale


def manifest_splits(folder: pathlib.Path) -> dict[str, str]:
    manifest = folder / "MANIFEST.csv"
    if not manifest.exists():
        return {}
    with open(manifest, newline="") as fh:
        return {r["file"]: r.get("split") or "" for r in csv.DictReader(fh)}


def pack(folder: pathlib.Path, out: pathlib.Path, size: int = 512, progress: bool = True) -> dict:
    """Write the pack of ``folder`` to ``out`` (atomically); returns its summary."""
    from hdrlift.training.data import HDR_SUFFIXES, read_hdr

    if not folder.is_dir():
        raise FileNotFoundError(f"HDR data folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in HDR_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no HDR images (.exr, .hdr) in {folder}")
    splits = manifest_splits(folder)
    arrays: dict[str, np.ndarray] = {}
    names, split_of, scales, sizes = [], [], [], []
    for i, f in enumerate(files):
        img = read_hdr(f)
        h, w = target_size(img.shape[0], img.shape[1], size)
        small = area_resize(img, w, h) if (h, w) != img.shape[:2] else img
        half, scale = to_half(small)
        arrays[f"img_{i:05d}"] = half
        names.append(f.name)
        split_of.append(splits.get(f.name, ""))
        scales.append(scale)
        sizes.append([img.shape[1], img.shape[0], w, h])
        if progress:
            print(f"{i + 1}/{len(files)} {f.name}: {img.shape[1]}x{img.shape[0]} -> {w}x{h}"
                  + (f" (scale {scale:g})" if scale != 1.0 else ""), file=sys.stderr, flush=True)
    meta = {"version": PACK_VERSION, "source": str(folder), "size": int(size), "resample": "area",
            "dtype": "float16", "sizes_wh_in_out": sizes}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, names=np.array(names), split=np.array(split_of),
                                scale=np.array(scales, np.float32), meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    counts: dict[str, int] = {}
    for s in split_of:
        counts[s or "(none)"] = counts.get(s or "(none)", 0) + 1
    return {"out": str(out), "images": len(files), "splits": counts, "bytes": out.stat().st_size,
            "size": size}


def main(argv: list[str] | None = None) -> int:
    from hdrlift.training.data import default_data_root

    ap = argparse.ArgumentParser(prog="python -m hdrlift.training.pack_data", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=pathlib.Path, help="the .npz to write (e.g. .data/hdri-pack.npz)")
    ap.add_argument("--size", type=int, default=512, help="width in pixels after downsizing (default 512)")
    ap.add_argument("--data", type=pathlib.Path, help="HDR folder (default ../shared/data/hdri or $HDRLIFT_DATA)")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.out.suffix != ".npz":
        print("pack_data: error: --out must end in .npz", file=sys.stderr)
        return 2
    if args.size < 16:
        print("pack_data: error: --size must be at least 16", file=sys.stderr)
        return 2
    try:
        res = pack(args.data or default_data_root(), args.out, args.size, progress=not args.quiet)
    except OSError as exc:  # FileNotFoundError included
        print(f"pack_data: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({**res, "mib": round(res["bytes"] / 2 ** 20, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
