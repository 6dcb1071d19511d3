"""A sample clip made by the project itself: no downloaded media.

A procedurally generated HDR scene (sky with a sun, street lamps, lit windows, textured walls
and ground) is panned across by a virtual camera, exposed for the mid-tones so that the sky,
the sun and the lamps clip, and encoded to 8-bit H.264 (sRGB transfer, Rec.709 primaries and
matrix, limited range) with PyAV. ``hdrlift-make-sample out.mp4`` writes it; ``--truth DIR``
also writes the scene-linear ground truth of every frame as EXR, for checking reconstructions.
"""

from __future__ import annotations

import argparse
import os
import pathlib
from fractions import Fraction

import numpy as np

from hdrlift.engine.colour_maths import linear_to_srgb
from hdrlift.engine.convert import prepare_dir
from hdrlift.engine.entrypoint import run_cli
from hdrlift.engine.errors import InputError


def _value_noise(rng: np.random.Generator, h: int, w: int, cells: int, octaves: int = 4) -> np.ndarray:
    """Smooth fractal noise in [0, 1]: bilinear-upsampled random grids summed over octaves."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = cells * (2 ** o)
        grid = rng.random((n + 1, int(n * w / h) + 2)).astype(np.float32)
        ys = np.linspace(0, n, h, dtype=np.float32)
        xs = np.linspace(0, grid.shape[1] - 1.001, w, dtype=np.float32)
        y0, x0 = ys.astype(int).clip(0, n - 1), xs.astype(int)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        g = grid
        v = (g[y0][:, x0] * (1 - fy) * (1 - fx) + g[y0 + 1][:, x0] * fy * (1 - fx)
             + g[y0][:, x0 + 1] * (1 - fy) * fx + g[y0 + 1][:, x0 + 1] * fy * fx)
        out += amp * v
        total += amp
        amp *= 0.5
    return out / total


def make_scene(width: int = 2400, height: int = 400, seed: int = 7) -> np.ndarray:
    """Scene-linear Rec.709 radiance, H x W x 3 float32 (mid-grey surfaces about 0.18)."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    horizon = 0.55
    img = np.zeros((h, w, 3), np.float32)

    # sky: bright near the horizon, deeper blue above, with soft clouds
    t = np.clip(y / horizon, 0, 1)
    sky = np.stack([0.18 + 0.35 * t, 0.30 + 0.35 * t, 0.60 + 0.25 * t], -1) * np.ones((1, w, 1), np.float32)
    clouds = _value_noise(rng, h, w, 3)
    sky *= (0.7 + 2.2 * clouds[..., None] ** 3)
    # the sun with its glow
    sx, sy = 0.62, 0.18
    d = np.sqrt(((x - sx) * w / h) ** 2 + (y - sy) ** 2)
    sun = 6000.0 * (d < 0.025) + 60.0 * np.exp(-d / 0.04) + 6.0 * np.exp(-d / 0.15)
    sky += (sun[..., None] * np.array([1.0, 0.93, 0.8], np.float32)).astype(np.float32)
    img[:] = sky

    # ground: textured paving lit by the sky
    ground = y >= horizon
    tex = _value_noise(rng, h, w, 24, 5)
    albedo = 0.10 + 0.25 * tex
    img = np.where(ground[..., None], (albedo * 1.6)[..., None] * np.array([1.0, 0.95, 0.85], np.float32), img)

    # buildings: textured walls with lit windows
    wall_tex = _value_noise(rng, h, w, 12, 4)
    n_bld = 7
    for i in range(n_bld):
        x0 = int(w * (i + 0.1 * rng.random()) / n_bld)
        x1 = x0 + int(w / n_bld * (0.55 + 0.3 * rng.random()))
        top = int(h * (0.15 + 0.3 * rng.random()))
        bot = int(h * horizon)
        colour = np.array([0.9, 0.75, 0.6], np.float32) * (0.6 + 0.4 * rng.random())
        region = img[top:bot, x0:x1]
        region[:] = (0.25 + 0.35 * wall_tex[top:bot, x0:x1])[..., None] * colour
        for wy in range(top + 12, bot - 20, 34):
            for wx in range(x0 + 10, x1 - 18, 30):
                lit = rng.random() < 0.45
                val = (8.0 + 25.0 * rng.random()) if lit else 0.05
                img[wy:wy + 16, wx:wx + 12] = np.array([1.0, 0.85, 0.6], np.float32) * val

    # street lamps: poles with very bright bulbs and halos
    for i in range(9):
        lx = (i + 0.5) / 9
        px = int(lx * w)
        pole_top = int(h * 0.42)
        img[pole_top:int(h * 0.8), px - 2:px + 2] = 0.04
        d = np.sqrt(((x - lx) * w / h) ** 2 + (y - pole_top / h) ** 2)
        lamp = 2500.0 * (d < 0.012) + 25.0 * np.exp(-d / 0.02)
        img += (lamp[..., None] * np.array([1.0, 0.8, 0.55], np.float32)).astype(np.float32)
    return np.ascontiguousarray(img.astype(np.float32))


def render_frames(scene: np.ndarray, width: int, height: int, frames: int):
    """Pan a ``width`` x ``height`` window across the scene; yields scene-linear frames."""
    sh, sw, _ = scene.shape
    ys = int((sh - height) * 0.5)
    for i in range(frames):
        x0 = int(round((sw - width) * i / max(1, frames - 1)))
        yield np.ascontiguousarray(scene[ys:ys + height, x0:x0 + width])


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1) of ``linear`` clipped to [0, 1], float32: the
    sample clip's code values."""
    return linear_to_srgb(np.clip(linear, 0.0, 1.0)).astype(np.float32)


def write_sample(path: str | os.PathLike, *, width: int = 640, height: int = 360, frames: int = 48,
                 fps: int = 24, exposure: float = 1.0, truth_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Write the sample clip (8-bit H.264, sRGB-tagged); returns its path. Atomic."""
    import av

    if width % 2 or height % 2:
        raise ValueError("width and height must be even for 4:2:0 H.264")
    out = pathlib.Path(path)
    prepare_dir(out.parent)
    if truth_dir is not None:
        prepare_dir(pathlib.Path(truth_dir))
    scene = make_scene(width=max(int(width * 3.75), width + 2), height=max(int(height * 1.11), height))
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}{out.suffix}")
    try:
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps))
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "16", "preset": "medium",
                              "x264-params": "colorprim=bt709:transfer=iec61966-2-1:colormatrix=bt709:range=tv"}
            stream.codec_context.color_range = 1  # MPEG / limited
            for i, lin in enumerate(render_frames(scene, width, height, frames)):
                code = srgb_encode(lin * exposure)
                rgb8 = (code * 255.0 + 0.5).astype(np.uint8)
                vf = av.VideoFrame.from_ndarray(rgb8, format="rgb24")
                vf = vf.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
                vf.pts = i
                for pkt in stream.encode(vf):
                    container.mux(pkt)
                if truth_dir is not None:
                    from hdrlift.engine.io.exr import write_exr

                    write_exr(pathlib.Path(truth_dir) / f"truth.{i + 1:04d}.exr", lin * exposure, half=False,
                              attributes={"hdrlift:colorspace": "Linear Rec.709 (sRGB)"})
            for pkt in stream.encode():
                container.mux(pkt)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hdrlift-make-sample", description=__doc__.split("\n\n")[0])
    ap.add_argument("output", help="the .mp4 to write")
    ap.add_argument("--size", default="640x360", help="WIDTHxHEIGHT, even numbers (default 640x360)")
    ap.add_argument("--frames", type=int, default=48, help="number of frames (default 48)")
    ap.add_argument("--fps", type=int, default=24)
    ap.add_argument("--truth", metavar="DIR", help="also write the scene-linear ground truth as EXRs")
    args = ap.parse_args(argv)

    def make() -> int:
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            raise InputError(f"--size must be WIDTHxHEIGHT, got {args.size!r}") from None
        try:
            path = write_sample(args.output, width=w, height=h, frames=args.frames, fps=args.fps,
                                truth_dir=args.truth)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        print(f"wrote {path} ({args.frames} frames, {args.size}, 8-bit H.264, sRGB transfer)")
        return 0
    return run_cli("hdrlift-make-sample", make)


if __name__ == "__main__":
    raise SystemExit(main())
