"""``hdr-merge``: merge an exposure bracket (JPEG/PNG/TIFF...) into one scene-linear OpenEXR.

    hdr-merge bracket_*.jpg out.exr                 # exposure times from EXIF ExposureTime
    hdr-merge a.jpg b.jpg c.jpg out.exr --ev -2,0,2 # or exposure values, one per image
    hdr-merge ... --method robertson|debevec|kalantari|wu|ahdrnet

Steps:

1. read every image with OpenImageIO (code values; the first three channels; grey is repeated);
   exposure times from the EXIF ``ExposureTime`` attribute, or ``t = 2^EV`` from ``--ev``;
2. sort by exposure time; the middle image is the reference;
3. align hand-held brackets to the reference with **median threshold bitmaps** (Ward 2003, "Fast,
   robust image registration for compositing high dynamic range photographs from hand-held
   exposures", J. Graphics Tools 8(2)): grey ``(54 R + 183 G + 19 B) / 256``, bitmap ``grey > median``,
   exclusion bitmap ``|grey - median| > 4/255``, an image pyramid of ``log2(max_shift)`` levels, at
   each level the best of the 9 one-pixel offsets around twice the coarser level's shift, scored
   by the count of ``(b1 XOR b2) AND e1 AND e2``. Translation only; the shifted-in border repeats
   the edge pixels;
4. merge: ``debevec`` / ``robertson`` recover the camera curve from the bracket and merge
   (:mod:`hdrlift.engine.models.bracket_merge`), then scale per channel so that the reference's
   well-exposed pixels equal the inverse sRGB curve of their code values (the project's output
   convention, docs/CONTRACTS.md); ``kalantari`` / ``wu`` / ``ahdrnet`` run the fusion networks on
   3-image brackets (they need trained weights, ``--weights FILE``);
5. write an OpenEXR (half float unless ``--float``) atomically with
   :func:`hdrlift.engine.io.exr.write_exr`.

Errors print one line, ``hdr-merge: error: ...``, exit 2 (input), 3 (output), 4 (model).
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys

import numpy as np

from hdrlift.engine.convert import prepare_dir
from hdrlift.engine.entrypoint import run_cli
from hdrlift.engine.errors import InputError, OutputError

PROG = "hdr-merge"
METHODS = ("debevec", "robertson", "kalantari", "wu", "ahdrnet")
CLASSICAL = ("debevec", "robertson")
MTB_TOLERANCE = 4.0 / 255.0


# --------------------------------------------------------------------------- MTB alignment (Ward 2003)
def mtb_grey(rgb: np.ndarray) -> np.ndarray:
    """Ward's grey ``(54 R + 183 G + 19 B) / 256`` of an ``H x W x 3`` image (any range)."""
    rgb = np.asarray(rgb, np.float64)
    if rgb.ndim == 2:
        return rgb
    return (54.0 * rgb[..., 0] + 183.0 * rgb[..., 1] + 19.0 * rgb[..., 2]) / 256.0


def mtb_bitmaps(grey: np.ndarray, tolerance: float = MTB_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Threshold bitmap ``grey > median`` and exclusion bitmap ``|grey - median| > tolerance``."""
    med = float(np.median(grey))
    return grey > med, np.abs(grey - med) > tolerance


def _shrink(grey: np.ndarray) -> np.ndarray:
    h, w = (grey.shape[0] // 2) * 2, (grey.shape[1] // 2) * 2
    g = grey[:h, :w]
    return 0.25 * (g[0::2, 0::2] + g[1::2, 0::2] + g[0::2, 1::2] + g[1::2, 1::2])


def shift_bitmap(b: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``out[y, x] = b[y - dy, x - dx]``, zero (False) where that falls outside."""
    out = np.zeros_like(b)
    h, w = b.shape
    if abs(dx) >= w or abs(dy) >= h:
        return out
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = b[ys, xs]
    return out


def mtb_shift(ref: np.ndarray, img: np.ndarray, max_shift: int = 64,
              tolerance: float = MTB_TOLERANCE) -> tuple[int, int]:
    """``(dx, dy)`` such that ``shift(img, dx, dy)`` lines up with ``ref`` (grey or RGB arrays of the
    same size), searched over ``|dx|, |dy| < 2^levels`` with ``levels = ceil(log2(max_shift))``."""
    g1, g2 = mtb_grey(ref), mtb_grey(img)
    if g1.shape != g2.shape:
        raise InputError(f"cannot align images of different sizes {g1.shape} and {g2.shape}")
    levels = max(0, int(math.ceil(math.log2(max(1, max_shift)))))
    while levels > 0 and min(g1.shape) >> levels < 8:
        levels -= 1
    pyr = [(g1, g2)]
    for _ in range(levels):
        a, b = pyr[-1]
        pyr.append((_shrink(a), _shrink(b)))
    dx = dy = 0
    for a, b in reversed(pyr):
        dx, dy = 2 * dx, 2 * dy
        t1, e1 = mtb_bitmaps(a, tolerance)
        t2, e2 = mtb_bitmaps(b, tolerance)
        best = None
        for oy in (-1, 0, 1):
            for ox in (-1, 0, 1):
                sx, sy = dx + ox, dy + oy
                diff = (t1 ^ shift_bitmap(t2, sx, sy)) & e1 & shift_bitmap(e2, sx, sy)
                err = int(diff.sum())
                if best is None or err < best[0]:
                    best = (err, sx, sy)
        _, dx, dy = best
    return dx, dy


def shift_image(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``out[y, x] = img[y - dy, x - dx]``, the border repeating the nearest edge pixel."""
    h, w = img.shape[:2]
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    return img[ys][:, xs]


def align_stack(images: list[np.ndarray], ref: int, max_shift: int = 64) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Align every image to ``images[ref]`` by MTB; returns the shifted images and their shifts."""
    out, shifts = [], []
    for i, img in enumerate(images):
        if i == ref:
            out.append(img)
            shifts.append((0, 0))
            continue
        dx, dy = mtb_shift(images[ref], img, max_shift)
        out.append(shift_image(img, dx, dy))
        shifts.append((dx, dy))
    return out, shifts


# --------------------------------------------------------------------------- input
def read_bracket_image(path: str) -> tuple[np.ndarray, float | None]:
    """``(rgb code values H x W x 3 float32 in [0, 1], EXIF ExposureTime or None)``."""
    import OpenImageIO as oiio

    if not os.path.exists(path):
        raise InputError(f"input file not found: {path}")
    buf = oiio.ImageBuf(path)
    spec = buf.spec()
    if buf.has_error or spec.width <= 0:
        raise InputError(f"cannot read image {path}: {buf.geterror().strip() or 'unknown format'}")
    px = buf.get_pixels(oiio.FLOAT)
    if px is None or buf.has_error:
        raise InputError(f"cannot read pixels of {path}: {buf.geterror().strip()}")
    px = np.asarray(px, np.float32).reshape(spec.height, spec.width, spec.nchannels)
    if spec.nchannels >= 3:
        rgb = px[..., :3]
    else:
        rgb = np.repeat(px[..., :1], 3, axis=2)
    if not np.all(np.isfinite(rgb)):
        raise InputError(f"{path} has NaN or infinite pixels")
    t = None
    for name in ("ExposureTime", "Exif:ExposureTime", "exif:ExposureTime"):
        v = spec.getattribute(name)
        if v is not None:
            try:
                t = float(v)
            except (TypeError, ValueError):
                t = None
            if t is not None and t > 0 and math.isfinite(t):
                break
            t = None
    return np.ascontiguousarray(np.clip(rgb, 0.0, 1.0)), t


def _parse_ev(text: str) -> list[float]:
    try:
        evs = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ev takes comma-separated numbers, got {text!r}") from None
    if not evs or not all(math.isfinite(v) for v in evs):
        raise argparse.ArgumentTypeError(f"--ev takes comma-separated numbers, got {text!r}")
    return evs


def load_bracket(paths: list[str], evs: list[float] | None = None):
    """Read and validate a bracket; returns ``(images, times, paths)`` sorted by exposure time."""
    if len(paths) < 2:
        raise InputError(f"a bracket needs at least two images, got {len(paths)} ({', '.join(paths) or 'none'})")
    images, times = [], []
    for p in paths:
        rgb, t = read_bracket_image(p)
        images.append(rgb)
        times.append(t)
    h, w = images[0].shape[:2]
    for p, img in zip(paths[1:], images[1:]):
        if img.shape[:2] != (h, w):
            raise InputError(f"image sizes differ: {paths[0]} is {w}x{h} but {p} is {img.shape[1]}x{img.shape[0]}")
    if evs is not None:
        if len(evs) != len(paths):
            raise InputError(f"--ev gives {len(evs)} exposure values for {len(paths)} images")
        times = [2.0 ** e for e in evs]
    else:
        missing = [p for p, t in zip(paths, times) if t is None]
        if missing:
            raise InputError(f"no exposure information (EXIF ExposureTime) in {missing[0]}; pass --ev, e.g. --ev -2,0,2")
    if len(set(round(math.log2(t), 6) for t in times)) != len(times):
        raise InputError(f"exposure times must all differ, got {', '.join(f'{t:g}' for t in times)}")
    order = sorted(range(len(paths)), key=lambda i: times[i])
    return [images[i] for i in order], [float(times[i]) for i in order], [paths[i] for i in order]


# --------------------------------------------------------------------------- merge
def merge_images(images: list[np.ndarray], times: list[float], method: str = "debevec", weights=None,
                 device: str = "cpu", shifts: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Merge an aligned bracket sorted by time; returns ``H x W x 3`` float32 linear Rec.709 scaled
    to the middle (reference) image. ``shifts`` (from :func:`align_stack`): the camera curve is then
    estimated only where every frame has real pixels (not the repeated borders)."""
    from hdrlift.engine.models.bracket_merge import merge_classical, scale_to_reference

    ref = len(images) // 2
    if method in CLASSICAL:
        stack = np.stack(images)
        curve_stack = None
        if shifts:
            h, w = stack.shape[1:3]
            x0 = max([0] + [dx for dx, _ in shifts])
            x1 = w + min([0] + [dx for dx, _ in shifts])
            y0 = max([0] + [dy for _, dy in shifts])
            y1 = h + min([0] + [dy for _, dy in shifts])
            if x1 - x0 >= 8 and y1 - y0 >= 8:
                curve_stack = stack[:, y0:y1, x0:x1]
        radiance, _ = merge_classical(stack, times, method, curve_stack=curve_stack)
        return scale_to_reference(radiance, images[ref])
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    import torch

    from hdrlift.engine.models.bracket_networks import load_fusion_model

    model = load_fusion_model(method, device=device, weights=weights)
    need = getattr(model.info, "images", 3)
    if len(images) != need:
        raise InputError(f"method {method!r} merges exactly {need} images, got {len(images)}")
    ldr = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).unsqueeze(0).to(device)
    t = torch.tensor([times], dtype=torch.float32, device=device)
    with torch.no_grad():
        hdr = model(ldr, t)[0].permute(1, 2, 0).float().cpu().numpy()
    return np.ascontiguousarray(hdr, dtype=np.float32)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG, usage=f"{PROG} [options] IMAGE IMAGE [IMAGE ...] OUTPUT.exr",
        description="Merge an exposure bracket into one scene-linear Rec.709 OpenEXR (camera curve "
                    "recovery, hand-held alignment, classical or learnt merge).",
        epilog="exit status: 0 done, 2 bad input, 3 output cannot be written, 4 model.")
    ap.add_argument("paths", nargs="*", help="bracket images, then the output .exr")
    ap.add_argument("--ev", type=_parse_ev, default=None,
                    help="exposure values in stops, one per image in the order given (e.g. -2,0,2); "
                         "default: EXIF ExposureTime")
    ap.add_argument("--method", choices=METHODS, default="debevec", help="merge method (default debevec)")
    ap.add_argument("--weights", default=None, help="safetensors weights for a network method")
    ap.add_argument("--no-align", action="store_true", help="skip median-threshold-bitmap alignment")
    ap.add_argument("--max-shift", type=int, default=64, help="largest alignment shift searched, pixels (64)")
    ap.add_argument("--float", action="store_true", help="write 32-bit float instead of half")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    ap.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 1):  # "--ev -2,0,2": a value that starts with "-" is not an option here
        if argv[i] == "--ev":
            argv[i:i + 2] = [f"--ev={argv[i + 1]}"]
            break
    args = ap.parse_args(argv)
    return run_cli(PROG, lambda: _merge(args))


def _merge(args: argparse.Namespace) -> int:
    if len(args.paths) < 2:
        raise InputError("give the bracket images and then the output .exr")
    *inputs, output = args.paths
    if not output.lower().endswith(".exr"):
        raise OutputError(f"output must be an .exr file, got {output!r}")
    if os.path.exists(output) and not args.overwrite:
        raise OutputError(f"{output} exists; pass --overwrite to replace it")
    prepare_dir(pathlib.Path(output).parent)  # as hdr-image does: the output's folder is made
    images, times, order = load_bracket(inputs, args.ev)
    ref = len(images) // 2
    shifts = [(0, 0)] * len(images)
    if not args.no_align:
        images, shifts = align_stack(images, ref, max(1, args.max_shift))
    hdr = merge_images(images, times, args.method, args.weights, shifts=shifts)
    from hdrlift.engine.io.exr import write_exr

    attrs = {
        "hdrlift:merge_method": args.method,
        "hdrlift:exposure_times": ",".join(f"{t:g}" for t in times),
        "hdrlift:reference": os.path.basename(order[ref]),
        "hdrlift:alignment": ";".join(f"{dx},{dy}" for dx, dy in shifts),
    }
    write_exr(output, hdr, half=not args.float, attributes=attrs)
    if not args.quiet:
        print(f"{PROG}: {len(images)} exposures ({', '.join(f'{t:g}s' for t in times)}), reference "
              f"{os.path.basename(order[ref])}, shifts {shifts} -> {output} (peak {float(hdr.max()):.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
