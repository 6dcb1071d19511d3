"""HDR datasets: folders of EXR/HDR images, perspective crops from panoramas, augmentation.

* :class:`HdrFolder` lists the HDR files of a folder (``.exr``, ``.hdr``) and, when the folder
  has a ``MANIFEST.csv`` with a ``split`` column (as ``../shared/data/hdri`` does: 88 ``train``,
  14 ``val`` today), only those of the requested split. Images load through OpenImageIO as linear
  float32 RGB; non-finite values are zeroed, negatives clamped.
* :class:`HdrPack` reads the same images from one ``.npz`` written by
  :mod:`hdrlift.training.pack_data` (downsized, float16, names and split kept) with numpy alone:
  no OpenImageIO, so a copy of the repository can train where only torch and numpy exist (the
  lent GPU machine, docs/training.md). :func:`open_hdr` picks the one for a path.
* :func:`perspective_crop` renders a pinhole view (yaw, pitch, horizontal field of view) from
  an equirectangular panorama with bilinear sampling (the shared data's recipe: random yaw,
  pitch, 50-90 degree field of view).
* :func:`augment`: flips, 90 degree rotations, channel permutations.
* :class:`ParallelPatches`: the batches of a :class:`PatchDataset` drawn by worker processes,
  batch ``i`` from a generator seeded with ``(seed, i)`` (the same stream for any worker count).
* :class:`PatchDataset`: an endless stream of ``(ldr, hdr)`` training patches: a random
  view, median-luminance normalisation (Moriwaki §4), then the camera simulation of
  :mod:`hdrlift.training.camera`. Options from Santos et al. 2020
  (:mod:`hdrlift.training.santos_data`): ``sampling="santos"`` picks patches with textured
  saturated regions (§3.4, Algorithm 1), ``pretrain="inpainting"`` turns each patch into an
  inpainting example (§3.3: random streaks and holes, target the clipped linear scene).
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
from typing import Iterator

import numpy as np

from hdrlift.training import camera as cam

DEFAULT_HDRI = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "hdri"
HDR_SUFFIXES = (".exr", ".hdr")


def default_data_root() -> pathlib.Path:
    """``$HDRLIFT_DATA`` if set, else ``../shared/data/hdri`` next to the checkout."""
    env = os.environ.get("HDRLIFT_DATA")
    return pathlib.Path(env) if env else DEFAULT_HDRI


def read_hdr(path: str | os.PathLike) -> np.ndarray:
    """Read an HDR image (EXR, Radiance HDR...) as float32 linear RGB ``H x W x 3``."""
    import OpenImageIO as oiio

    buf = oiio.ImageBuf(str(path))
    if buf.has_error:
        raise OSError(f"cannot read {path}: {buf.geterror().strip()}")
    px = buf.get_pixels(oiio.FLOAT)
    if px is None or px.size == 0:
        raise OSError(f"cannot read {path}: {buf.geterror().strip() or 'no pixels'}")
    px = np.asarray(px, np.float32)
    if px.ndim == 2:
        px = px[..., None]
    if px.shape[-1] == 1:
        px = np.repeat(px, 3, axis=-1)
    px = px[..., :3]
    px = np.nan_to_num(px, nan=0.0, posinf=0.0, neginf=0.0)
    return np.ascontiguousarray(np.maximum(px, 0.0))


class HdrFolder:
    """The HDR images of a folder, optionally one split of its ``MANIFEST.csv``."""

    def __init__(self, root: str | os.PathLike | None = None, split: str | None = None):
        self.root = pathlib.Path(root) if root is not None else default_data_root()
        if not self.root.is_dir():
            raise FileNotFoundError(f"HDR data folder {self.root} does not exist")
        manifest = self.root / "MANIFEST.csv"
        files: list[pathlib.Path]
        if manifest.exists() and split is not None:
            with open(manifest, newline="") as fh:
                rows = list(csv.DictReader(fh))
            files = [self.root / r["file"] for r in rows if r.get("split") == split]
        else:
            files = sorted(p for p in self.root.iterdir() if p.suffix.lower() in HDR_SUFFIXES)
        self.files = [p for p in files if p.exists()]
        if not self.files:
            raise FileNotFoundError(f"no HDR images (.exr, .hdr) for split {split!r} in {self.root}")
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        if i not in self._cache:
            self._cache[i] = read_hdr(self.files[i])
        return self._cache[i]

    def names(self) -> list[str]:
        return [p.name for p in self.files]


class HdrPack:
    """The images of a pack written by :mod:`hdrlift.training.pack_data`, optionally one split.

    The interface of :class:`HdrFolder` (``len``, indexing, :meth:`names`; like a folder without
    ``MANIFEST.csv``, a pack without splits gives every image for every split); images come back as
    float32 linear RGB (the stored float16 times the image's power-of-two ``scale``). Only numpy
    reads the file (``allow_pickle=False``). Every image of the split is decoded at once, so
    worker processes forked later share them.
    """

    def __init__(self, path: str | os.PathLike, split: str | None = None):
        self.root = pathlib.Path(path)
        if not self.root.is_file():
            raise FileNotFoundError(f"HDR pack {self.root} does not exist (make it with python -m "
                                    f"hdrlift.training.pack_data)")
        try:
            with np.load(self.root, allow_pickle=False) as z:
                names = [str(n) for n in z["names"]]
                splits = [str(v) for v in z["split"]]
                scales = np.asarray(z["scale"], np.float32)
                self.meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
                # a pack of a folder without MANIFEST.csv has no splits: every image for every split
                keep = [i for i in range(len(names)) if split is None or not any(splits) or splits[i] == split]
                self._images = [np.ascontiguousarray(z[f"img_{i:05d}"].astype(np.float32) * scales[i])
                                for i in keep]
        except (KeyError, ValueError, OSError) as exc:
            raise OSError(f"cannot read HDR pack {self.root}: {exc}") from None
        self._names = [names[i] for i in keep]
        self.splits = [splits[i] for i in keep]
        if not self._images:
            raise FileNotFoundError(f"no HDR images for split {split!r} in {self.root}")

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, i: int) -> np.ndarray:
        return self._images[i]

    def names(self) -> list[str]:
        return list(self._names)


def open_hdr(root: str | os.PathLike | None = None, split: str | None = None) -> "HdrFolder | HdrPack":
    """:class:`HdrPack` for a ``.npz`` file, else :class:`HdrFolder` (``None``: the default root,
    ``$HDRLIFT_DATA`` or ``../shared/data/hdri``, which may itself be a pack)."""
    path = pathlib.Path(root) if root is not None else default_data_root()
    if path.suffix.lower() == ".npz":
        return HdrPack(path, split)
    return HdrFolder(path, split)


def is_panorama(img: np.ndarray) -> bool:
    h, w = img.shape[:2]
    return abs(w / h - 2.0) < 0.05


def perspective_crop(pano: np.ndarray, yaw: float, pitch: float, fov: float, size: int) -> np.ndarray:
    """Pinhole view of an equirectangular panorama.

    yaw, pitch and the horizontal field of view ``fov`` are in degrees; the result is
    ``size x size`` float32, bilinearly sampled (wrapping around in longitude).
    """
    h, w = pano.shape[:2]
    f = 0.5 * size / math.tan(math.radians(fov) / 2.0)
    u = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0)
    x, y = np.meshgrid(u, u)
    d = np.stack([x, -y, np.full_like(x, f)], axis=-1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    cp, sp = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    rx = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]], np.float32)  # pitch up
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], np.float32)
    d = d @ (ry @ rx).T
    lon = np.arctan2(d[..., 0], d[..., 2])
    lat = np.arcsin(np.clip(d[..., 1], -1.0, 1.0))
    px = (lon / (2 * math.pi) + 0.5) * w - 0.5
    py = (0.5 - lat / math.pi) * h - 0.5
    x0 = np.floor(px).astype(np.int64)
    y0 = np.floor(py).astype(np.int64)
    fx = (px - x0)[..., None].astype(np.float32)
    fy = (py - y0)[..., None].astype(np.float32)
    x1 = x0 + 1
    y1 = np.clip(y0 + 1, 0, h - 1)
    y0 = np.clip(y0, 0, h - 1)
    x0 %= w
    x1 %= w
    top = pano[y0, x0] * (1 - fx) + pano[y0, x1] * fx
    bot = pano[y1, x0] * (1 - fx) + pano[y1, x1] * fx
    return np.ascontiguousarray((top * (1 - fy) + bot * fy).astype(np.float32))


def random_view(img: np.ndarray, rng: np.random.Generator, size: int,
                fov_range: tuple[float, float] = (50.0, 90.0), pitch_range: tuple[float, float] = (-20.0, 35.0)) -> np.ndarray:
    """A random perspective view of a panorama, or a random crop of an ordinary photograph."""
    if is_panorama(img):
        return perspective_crop(img, float(rng.uniform(-180, 180)), float(rng.uniform(*pitch_range)),
                                float(rng.uniform(*fov_range)), size)
    h, w = img.shape[:2]
    if h < size or w < size:
        reps = (math.ceil(size / h), math.ceil(size / w), 1)
        img = np.tile(img, reps)
        h, w = img.shape[:2]
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return np.ascontiguousarray(img[y:y + size, x:x + size])


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flip, 90-degree rotation and channel permutation."""
    if rng.random() < 0.5:
        img = img[:, ::-1]
    k = int(rng.integers(0, 4)) if rng.random() < 0.25 else 0
    if k:
        img = np.rot90(img, k)
    if rng.random() < 0.2:
        img = img[..., rng.permutation(3)]
    return np.ascontiguousarray(img)


def normalise_median(hdr: np.ndarray, key: float = 0.18) -> np.ndarray:
    """Moriwaki §4: scale so that the median luminance is ``key``."""
    med = float(np.median(cam.luminance(hdr)))
    if med <= 1e-12:
        med = max(float(cam.luminance(hdr).mean()), 1e-12)
    return (hdr * np.float32(key / med)).astype(np.float32)


class PatchDataset:
    """Endless ``(ldr, hdr_reference)`` patches, CHW float32, from an :class:`HdrFolder`.

    ``ldr`` are code values in [0, 1]; ``hdr_reference`` is the scene in the engine's output
    units (1.0 = the LDR picture's white), so a perfect model maps ``ldr`` to it.

    ``sampling``: ``"random"`` (every drawn view is used) or ``"santos"`` (Santos et al. 2020
    §3.4, Algorithm 1: up to ``tries`` views are drawn and the first whose patch metric reaches
    ``threshold``, else the most textured, is used; :func:`hdrlift.training.santos_data.select_patch`).

    ``sampling="highlights"`` (ours): half of the samples are drawn as with ``"random"``; for the
    other half ``tries`` views are drawn and the one whose clipped channels lie furthest above
    display white in the reference (mean log2, :func:`highlight_headroom`) is used. In the panoramas
    most clipped pixels are barely above white (a bright sky, a lit wall: 60 % below 1.5x white at
    1-12 % clipped) and suns, lamps and speculars are rare, so the network sees few of the highlights
    whose level it should learn to recover (docs/training.md, "Highlight magnitude").

    ``pretrain="inpainting"`` (Santos §3.3): holes of random streaks and blobs covering a fraction
    drawn uniformly from ``mask_coverage`` are set to display white in ``ldr``, and the target is
    the clipped linear scene ``min(H, 1)`` (:mod:`hdrlift.training.santos_data`).
    """

    SAMPLINGS = ("random", "santos", "highlights")
    PRETRAINS = (None, "inpainting")

    def __init__(self, folder: HdrFolder, size: int = 128, seed: int = 0, clip_range=(0.01, 0.12),
                 curves: str = "srgb", noise: bool = False, compression: bool = False,
                 sampling: str = "random", threshold: float | None = None, tries: int | None = None,
                 pretrain: str | None = None, mask_coverage: tuple[float, float] | None = None,
                 recolour: float = 0.0):
        from hdrlift.training import santos_data as sd

        if sampling not in self.SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(self.SAMPLINGS)}, got {sampling!r}")
        if pretrain not in self.PRETRAINS:
            raise ValueError(f"pretrain must be None or 'inpainting', got {pretrain!r}")
        self.folder = folder
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.clip_range = clip_range
        self.curves = curves
        self.noise = noise
        self.compression = compression
        self.sampling = sampling
        self.threshold = sd.THRESHOLD if threshold is None else float(threshold)
        self.tries = sd.DEFAULT_TRIES if tries is None else int(tries)
        self.pretrain = pretrain
        if not 0.0 <= recolour <= 1.0:
            raise ValueError(f"recolour must be a probability in [0, 1], got {recolour}")
        self.recolour = float(recolour)
        self.mask_coverage = tuple(mask_coverage) if mask_coverage is not None else sd.DEFAULT_COVERAGE
        lo, hi = self.mask_coverage
        if not 0.0 <= lo <= hi < 1.0:
            raise ValueError(f"mask_coverage must be 0 <= lo <= hi < 1, got {self.mask_coverage}")

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        """One random view through a random camera: ``(ldr, hdr_reference)``, ``H x W x 3``."""
        rng = self.rng
        img = self.folder[int(rng.integers(len(self.folder)))]
        view = augment(random_view(img, rng, self.size), rng)
        if self.recolour and rng.random() < self.recolour:  # saturated coloured highlights
            from hdrlift.training.val_cases import random_tint, recolour

            view = recolour(view, random_tint(rng), float(rng.uniform(0.75, 0.97)), float(rng.uniform(0.3, 0.7)))
        view = normalise_median(view)
        camera = cam.random_camera(rng, clip_range=self.clip_range, curves=self.curves,
                                   noise=self.noise, compression=self.compression)
        ldr, ref, _ = camera(view, rng)
        return ldr, ref

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        from hdrlift.training import santos_data as sd

        if self.sampling == "santos":
            ldr, ref, _ = sd.select_patch(self.draw, self.tries, self.threshold)
        elif self.sampling == "highlights" and self.rng.random() < 0.5:
            cands = [self.draw() for _ in range(max(1, self.tries))]
            ldr, ref = max(cands, key=lambda c: highlight_headroom(*c))
        else:
            ldr, ref = self.draw()
        if self.pretrain == "inpainting":
            hole = sd.inpainting_mask(ldr.shape[0], ldr.shape[1], self.rng,
                                      float(self.rng.uniform(*self.mask_coverage)))
            ldr = sd.fill_holes(ldr, hole)
            ref = np.minimum(ref, np.float32(1.0))
        return ldr.transpose(2, 0, 1).copy(), ref.transpose(2, 0, 1).copy()

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.sample() for _ in range(n)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            yield self.sample()


def highlight_headroom(ldr: np.ndarray, ref: np.ndarray, clipped: float = 0.99) -> float:
    """Mean ``log2`` of the reference over the channels clipped in ``ldr`` (0 with none): how far
    above display white the highlights of a training sample lie."""
    m = ldr >= clipped
    if not m.any():
        return 0.0
    return float(np.mean(np.log2(np.maximum(ref[m], 1e-6))))


class _SeededBatches:
    """Map-style view of a :class:`PatchDataset`: item ``i`` is the batch drawn with the generator
    ``np.random.default_rng([seed, i])`` (so it does not depend on which process draws it)."""

    def __init__(self, dataset: "PatchDataset", batch: int, seed: int):
        self.dataset, self.batch, self.seed = dataset, int(batch), int(seed)

    def __getitem__(self, i: int):
        import torch

        self.dataset.rng = np.random.default_rng([self.seed, int(i)])
        ldr, hdr = self.dataset.batch(self.batch)
        return torch.from_numpy(ldr), torch.from_numpy(hdr)


def _worker_init(_worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)  # the patches are numpy work; one thread per worker process


class ParallelPatches:
    """Batches ``start, start + 1, ...`` of a :class:`PatchDataset` as ``(ldr, hdr)`` CPU tensors,
    drawn by ``workers`` processes (a torch ``DataLoader``; 0 = in this process).

    Batch ``i`` is drawn with ``np.random.default_rng([seed, i])``: the stream is the same for any
    number of workers, and a run resumed at step ``s`` continues it exactly with ``start=s``. (The
    sequential ``PatchDataset.batch`` stream of ``"workers": 0`` in the trainer is another one.)
    """

    def __init__(self, dataset: "PatchDataset", batch: int, workers: int, seed: int, start: int = 0,
                 pin_memory: bool = False, prefetch: int = 4):
        import itertools

        import torch

        self._loader = torch.utils.data.DataLoader(
            _SeededBatches(dataset, batch, seed), batch_size=None, sampler=itertools.count(int(start)),
            num_workers=int(workers), pin_memory=pin_memory, worker_init_fn=_worker_init if workers else None,
            prefetch_factor=int(prefetch) if workers else None, persistent_workers=False)
        self._it = iter(self._loader)

    def __iter__(self) -> "ParallelPatches":
        return self

    def __next__(self):
        return next(self._it)

    def close(self) -> None:
        """Stop the worker processes."""
        it, self._it = self._it, None
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def validation_set(folder: HdrFolder, clip_fractions=(0.03, 0.10), views: int = 4, size: int = 256,
                   seed: int = 1234, cases=("views",)) -> list[dict]:
    """A fixed, deterministic evaluation set: ``views`` perspective views per image, each
    exposed at every clip fraction with the sRGB camera (8 bits, no noise).

    ``cases`` (:mod:`hdrlift.training.val_cases`): ``"views"`` are the views themselves;
    ``"saturated"`` and ``"specular"`` the same views with saturated coloured highlights or small
    bright glints, each drawn from its own generator (``seed``, image, view, case), so adding a case
    leaves the others' items unchanged. Each item: ``name`` (``file#view`` plus the case's suffix),
    ``case``, ``clip_fraction``, ``ldr``, ``hdr``."""
    from hdrlift.training import val_cases

    unknown = [c for c in cases if c not in val_cases.CASES]
    if unknown:
        raise ValueError(f"unknown validation case {unknown[0]!r}; valid: {', '.join(val_cases.CASES)}")
    rng = np.random.default_rng(seed)
    items = []
    for i, name in enumerate(folder.names()):
        img = folder[i]
        for v in range(views):
            view = normalise_median(random_view(img, rng, size))
            for case in cases:
                crng = np.random.default_rng([seed, i, v, val_cases.CASES.index(case)])
                hdr, suffix = val_cases.variant(case, view, crng)
                for frac in clip_fractions:
                    ldr, ref, _ = cam.Camera(clip_fraction=frac)(hdr, rng)
                    items.append({"name": f"{name}#{v}{suffix}", "case": case, "clip_fraction": frac,
                                  "ldr": ldr, "hdr": ref})
    return items


__all__ = ["HdrFolder", "HdrPack", "open_hdr", "ParallelPatches", "PatchDataset", "perspective_crop", "highlight_headroom",
           "random_view", "augment", "read_hdr",
           "normalise_median", "validation_set", "default_data_root"]
