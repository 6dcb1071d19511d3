"""Benchmark (not a test): our ExpandNet and HDRUNet against the authors' own inference code,
side by side on the same frames, the same weights and the same machine.

    nice -n 15 .venv/bin/python bench/bench_authors.py [--size 1920x1080] [--frames 3] [--warmup 1]
        [--models expandnet,hdrunet] [--layers routine,network] [--scratch /tmp/hdrlift-authors]
        [--expandnet-repo PATH] [--hdrunet-repo PATH] [--backend torch] [--threads N]

The authors' code is never part of this repository. It is set up in a scratch folder outside it
(``--scratch``, default ``/tmp/hdrlift-authors``): ``git clone`` from GitHub
(dmarnerides/hdr-expandnet, chxy95/HDRUNet), or, offline, ``--expandnet-repo`` /
``--hdrunet-repo`` naming an existing checkout (copied) or a git directory / bare mirror
(exported with ``git archive``; blobs a partial mirror lacks are skipped and reported). A
folder set up by an earlier run is reused. None of their images are used: the frames are the
project's own synthetic scene (``hdrlift.engine.sample``), panned and encoded to 8-bit sRGB.

Per model, two layers, each "ours" against "theirs":

* ``routine`` -- what each side does per frame, from a decoded 8-bit frame in memory to the HDR
  frame in memory (file reading and writing left out on both sides).
  Ours: ``Pipeline.process`` (code values to the network domain, the registry model through the
  ``--backend`` back end, HDR and reconstruction mask, conversion to the output space).
  Theirs, ExpandNet (README: ``python expand.py ldr_input.jpg``): the body of ``expand.py``'s
  image loop with the options of its own argument parser -- ``preprocess`` (float32 and min-max
  ``map_range``), ``cv2torch``, ``ExpandNet.predict`` (256-pixel patches, 20-pixel overlap, the
  default ``--patch_size``), ``torch2cv``, ``map_range`` to [0, 1]; ``weights.pth`` from the repo.
  Theirs, HDRUNet (README: ``python test.py -opt options/test/test_HDRUNet.yml``): the options of
  that file written as a dict (``gpu_ids`` none: CPU), ``models.create_model`` (their
  ``GenerationModel``, ``DataParallel`` wrapper included), their ``LQ_Dataset.__getitem__`` (with
  ``cv2.imread`` answered from memory), the batch of one the DataLoader would make
  (``default_collate``), ``feed_data``, ``test``, ``get_current_visuals`` and
  ``utils.util.tensor2numpy``; their ``pretrained_model.pth`` when the checkout has it, else
  their own random initialisation.
* ``network`` -- the bare modules on the same 1 x 3 x H x W tensor: our ``forward_normalised`` /
  ``forward_encoded`` (the paper's output, before our mapping to scene-linear) against their
  ``forward``. With the same weights loaded into both (their state dict mapped onto our module
  names, strict), the max abs difference of these outputs checks that ours is the same network.

Runs are interleaved -- every round runs ours and theirs for each layer back to back, the order
reversed on every other round (A B, B A, ...) -- so machine load falls on both alike; the first
``--warmup`` rounds are not counted. Times are medians over the timed rounds. CPU, float32,
``torch.inference_mode``, torch threads = all usable cores (``--threads``). Modules their code
imports but never calls on this path (OpenCV, PyYAML, SciPy) are stubbed when not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import types

import numpy as np
import torch

REPOS = {
    "expandnet": {"slug": "dmarnerides/hdr-expandnet", "dir": "hdr-expandnet", "marker": "model.py",
                  "weights": "weights.pth"},
    "hdrunet": {"slug": "chxy95/HDRUNet", "dir": "HDRUNet", "marker": "codes/models/modules/UNet_arch.py",
                "weights": "pretrained_models/pretrained_model.pth"},
}
SOURCE_NOTE = ".hdrlift-source.json"  # provenance of an exported/cloned folder, written by this script
OURS_CORE = {"expandnet": "forward_normalised", "hdrunet": "forward_encoded"}
MULTIPLE = {"expandnet": 1, "hdrunet": 4}  # their HDRUNet needs H, W divisible by 4 (no padding)


# --------------------------------------------------------------------------- setting up their code
def _git(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], check=True, **kw)


def _git_dir_of(src: pathlib.Path) -> pathlib.Path | None:
    """``src`` as a git directory (bare mirror or a ``.git`` folder), or None."""
    for cand in (src, src / ".git"):
        if (cand / "HEAD").is_file() and (cand / "objects").is_dir():
            return cand
    return None


def export_git_dir(git_dir: pathlib.Path, dest: pathlib.Path) -> dict:
    """``git archive HEAD`` of every blob the object store actually holds into ``dest``."""
    listing = _git(f"--git-dir={git_dir}", "ls-tree", "-r", "-z", "HEAD", capture_output=True).stdout
    entries = []
    for rec in listing.split(b"\0"):
        if not rec:
            continue
        meta, path = rec.split(b"\t", 1)
        mode, kind, sha = meta.split()
        if kind == b"blob":
            entries.append((sha.decode(), path.decode()))
    check = _git(f"--git-dir={git_dir}", "cat-file", "--batch-check",
                 input="".join(f"{sha}\n" for sha, _ in entries).encode(), capture_output=True).stdout.decode()
    present, missing = [], []
    for (sha, path), line in zip(entries, check.splitlines()):
        (missing if line.endswith("missing") else present).append(path)
    tar = _git("--literal-pathspecs", f"--git-dir={git_dir}", "archive", "--format=tar", "HEAD", "--", *present,
               capture_output=True).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        try:
            tf.extractall(dest, filter="data")
        except TypeError:  # Python without extraction filters
            tf.extractall(dest)
    commit = _git(f"--git-dir={git_dir}", "rev-parse", "HEAD", capture_output=True, text=True).stdout.strip()
    return {"how": f"git archive of {git_dir}", "commit": commit, "missing": missing}


def setup_repo(name: str, source: str | None, scratch: pathlib.Path) -> tuple[pathlib.Path, dict]:
    spec = REPOS[name]
    dest = scratch / spec["dir"]
    note = dest / SOURCE_NOTE
    if source:
        src = pathlib.Path(source).expanduser().resolve()
        if dest.exists():
            shutil.rmtree(dest)  # a folder this script made in the scratch area
        if (src / spec["marker"]).is_file():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".git"))
            commit = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                                    text=True).stdout.strip() or "unknown"
            info = {"how": f"copy of checkout {src}", "commit": commit, "missing": []}
        elif (git_dir := _git_dir_of(src)) is not None:
            info = export_git_dir(git_dir, dest)
        else:
            raise SystemExit(f"--{name}-repo {src}: neither a checkout (no {spec['marker']}) nor a git directory")
        note.write_text(json.dumps(info))
    elif (dest / spec["marker"]).is_file():
        info = json.loads(note.read_text()) if note.is_file() else {"how": "existing folder", "commit": "unknown",
                                                                     "missing": []}
        info["how"] = f"reused {dest} ({info['how']})"
    else:
        url = f"https://github.com/{spec['slug']}.git"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            _git("clone", "--quiet", "--depth", "1", url, str(dest), capture_output=True, text=True)
        except (subprocess.CalledProcessError, OSError) as exc:
            err = getattr(exc, "stderr", "") or str(exc)
            raise SystemExit(f"cannot clone {url} ({err.strip()}); give --{name}-repo PATH "
                             "(a checkout or a git mirror)") from None
        commit = _git("-C", str(dest), "rev-parse", "HEAD", capture_output=True, text=True).stdout.strip()
        info = {"how": f"git clone {url}", "commit": commit, "missing": []}
        note.write_text(json.dumps(info))
    if not (dest / spec["marker"]).is_file():
        raise SystemExit(f"{dest}: {spec['marker']} missing; not the {spec['slug']} code?")
    return dest, info


class _Absent:
    """Stand-in for an attribute of a module that is not installed: fine to import, fails if used."""

    def __init__(self, qualname: str):
        self._qualname = qualname

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Absent(f"{self._qualname}.{attr}")

    def __call__(self, *a, **k):
        raise RuntimeError(f"{self._qualname} is not available: its package is not installed "
                           "(stubbed by bench_authors.py)")


def _stub_module(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)

    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Absent(f"{name}.{attr}")

    mod.__getattr__ = __getattr__
    return mod


@contextlib.contextmanager
def authors_imports(root: pathlib.Path, optional: tuple[str, ...]):
    """Put ``root`` first on ``sys.path`` and stub the ``optional`` modules that are not
    installed; afterwards drop ``root`` and the modules imported from it (their generic
    top-level names -- ``model``, ``util``, ``models``, ``data`` -- must not leak)."""
    before = set(sys.modules)
    stubbed = []
    for name in optional:
        top = name.split(".")[0]
        installed = top not in stubbed and importlib.util.find_spec(top) is not None
        if not installed:
            sys.modules[name] = _stub_module(name)
            stubbed.append(name)
            if "." in name:
                setattr(sys.modules[top], name.split(".", 1)[1], sys.modules[name])
    sys.path.insert(0, str(root))
    try:
        yield stubbed
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if name in stubbed or file.startswith(str(root)):
                del sys.modules[name]


def _loadable(path: pathlib.Path) -> str | None:
    """None if ``path`` looks like a real checkpoint, else why not."""
    if not path.is_file():
        return "not in the checkout"
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file"
    return None


# --------------------------------------------------------------------------- weight mapping
def map_expandnet(theirs: dict) -> dict:
    top = {"local_net": "local", "mid_net": "dilated", "glob_net": "glob", "end_net": "fuse"}
    out = {}
    for k, v in theirs.items():
        head, rest = k.split(".", 1)
        out[f"{top[head]}.{rest}"] = v
    return out


def map_hdrunet(theirs: dict) -> dict:
    top = {"cond_first": "cond_trunk", "CondNet1": "cond_full", "CondNet2": "cond_half",
           "CondNet3": "cond_quarter", "mask_est": "weighting", "conv_first": "head", "SFT_layer1": "head_sft",
           "HR_conv1": "head_conv", "down_conv1": "down1", "down_conv2": "down2", "recon_trunk1": "enc_blocks",
           "recon_trunk2": "mid_blocks", "recon_trunk3": "dec_blocks", "up_conv1": "up1", "up_conv2": "up2",
           "SFT_layer2": "tail_sft", "HR_conv2": "tail_conv", "conv_last": "tail"}
    sft = {"SFT_scale_conv0": "scale.0", "SFT_scale_conv1": "scale.2", "SFT_shift_conv0": "shift.0",
           "SFT_shift_conv1": "shift.2"}
    out = {}
    for k, v in theirs.items():
        parts = k.split(".")
        parts[0] = top[parts[0]]
        if parts[0] in ("up1", "up2") and parts[1] == "0":
            parts[1] = "conv"
        parts = [sft.get(p, p) for p in parts]
        out[".".join(parts)] = v
    return out


MAPPERS = {"expandnet": map_expandnet, "hdrunet": map_hdrunet}


def ours_weights(name: str, their_net: torch.nn.Module, folder: pathlib.Path, seed: int) -> tuple[pathlib.Path, str | None]:
    """Our network with their weights (``(path, None)``), or, when the layouts do not match, with
    our own seeded random initialisation (``(path, reason)``). Saved as safetensors for the
    Pipeline."""
    from safetensors.torch import save_file

    from hdrlift.engine.models import get_info

    ours = get_info(name).factory()
    reason = None
    try:
        mapped = MAPPERS[name](their_net.state_dict())
        mine = ours.state_dict()
        if set(mapped) != set(mine):
            raise ValueError(f"key sets differ: {sorted(set(mapped) ^ set(mine))[:4]}")
        bad = [k for k in mine if mine[k].shape != mapped[k].shape]
        if bad:
            raise ValueError(f"shapes differ at {bad[:4]}")
        ours.load_state_dict(mapped, strict=True)
    except (KeyError, ValueError, RuntimeError) as exc:
        reason = f"their state dict does not map onto ours ({exc})"
        torch.manual_seed(seed)
        ours = get_info(name).factory()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{'authors' if reason is None else 'random'}.safetensors"
    save_file({k: v.contiguous() for k, v in ours.state_dict().items()}, str(path))
    return path, reason


# --------------------------------------------------------------------------- their routines
class _MemoryImread:
    """``cv2`` for their dataset code: ``imread`` answers from decoded frames in memory."""

    IMREAD_UNCHANGED = -1

    def __init__(self, frames: dict, fallback):
        self._frames = frames
        self._fallback = fallback

    def imread(self, path, flags=None):
        return self._frames[str(path)]

    def __getattr__(self, attr):
        return getattr(self._fallback, attr)


def theirs_expandnet(root: pathlib.Path, seed: int):
    """Their ExpandNet and per-frame routine; returns (routine(bgr_u8), module, weights note)."""
    with authors_imports(root, ("cv2",)) as stubbed:
        import expand  # their expand.py (imports model.py, util.py, smooth.py)

        argv = sys.argv
        try:  # their own argument parser, so every option keeps its default
            sys.argv = ["expand.py", str(root / "frame.png"), "--use_gpu", "False",
                        "--use_weights", str(root / REPOS["expandnet"]["weights"])]
            opt = expand.get_args()
        finally:
            sys.argv = argv
        why = _loadable(pathlib.Path(opt.use_weights))
        if why is None:
            net = expand.load_pretrained(opt)
            note = "their weights.pth (trained)"
        else:
            torch.manual_seed(seed)
            net = expand.ExpandNet().eval()
            note = f"random init, seed {seed} (weights.pth {why})"

    def routine(bgr_u8: np.ndarray) -> np.ndarray:
        # expand.py create_images, per image, without imread / imwrite / tone mapping
        ldr_input = expand.preprocess(bgr_u8, opt)
        t_input = expand.cv2torch(ldr_input)
        return expand.map_range(expand.torch2cv(net.predict(t_input, opt.patch_size).cpu()), 0, 1)

    return routine, net, note, f"patch_size {opt.patch_size}", stubbed


def theirs_hdrunet(root: pathlib.Path, seed: int, frames_bgr: list[np.ndarray], scratch: pathlib.Path):
    """Their HDRUNet test path; returns (routine(i), module, weights note)."""
    codes = root / "codes"
    wpath = root / REPOS["hdrunet"]["weights"]
    why = _loadable(wpath)
    # codes/options/test/test_HDRUNet.yml, as options.parse(is_train=False) + dict_to_nonedict leave it
    opt = {
        "name": "HDRUNet_tanh_l1_bs_16_ps_160", "model": "condition", "distortion": "sr", "scale": 1,
        "gpu_ids": None, "is_train": False, "dist": False, "train": None,
        "network_G": {"which_model_G": "HDRUNet", "in_nc": 3, "out_nc": 3, "nf": 64, "act_type": "relu", "scale": 1},
        "path": {"pretrain_model_G": str(wpath) if why is None else None, "strict_load": True},
    }
    folder = scratch / f"frames-{frames_bgr[0].shape[1]}x{frames_bgr[0].shape[0]}"
    if folder.exists():
        shutil.rmtree(folder)  # names left by an earlier run with more frames would be listed too
    folder.mkdir(parents=True)
    keys = []
    for i in range(len(frames_bgr)):
        p = folder / f"{i:04d}.png"
        p.touch()  # an empty name for their folder listing; imread is answered from memory
        keys.append(str(p))
    dataset_opt = {"name": "bench", "mode": "LQ_condition", "dataroot_LQ": str(folder), "condition": "image",
                   "phase": "test", "scale": 1, "data_type": "img", "dataroot_GT": None}
    with authors_imports(codes, ("cv2", "yaml", "scipy", "scipy.ndimage")) as stubbed:
        import data.util as data_util
        import utils.util as their_util
        from data.LQ_condition_dataset import LQ_Dataset
        from models import create_model

        torch.manual_seed(seed)
        model = create_model(opt)
        with contextlib.redirect_stdout(io.StringIO()):
            dataset = LQ_Dataset(dataset_opt)
    data_util.cv2 = _MemoryImread(dict(zip(keys, frames_bgr)), data_util.cv2)
    if [str(p) for p in dataset.paths_LQ] != keys:
        raise RuntimeError("their dataset listed other files than the frames")
    note = "their pretrained_model.pth (trained)" if why is None else \
        f"random init, their initialisation, seed {seed} (pretrained_model.pth {why})"
    net = model.netG.module if hasattr(model.netG, "module") else model.netG

    def routine(i: int) -> np.ndarray:
        # test.py, per image, without the DataLoader worker and save_img_with_ratio
        batch = torch.utils.data.default_collate([dataset[i]])
        model.feed_data(batch, need_GT=False)
        model.test()
        visuals = model.get_current_visuals(need_GT=False)
        return their_util.tensor2numpy(visuals["SR"])

    return routine, net, note, "test_HDRUNet.yml options", stubbed


# --------------------------------------------------------------------------- frames and timing
def make_frames(width: int, height: int, n: int) -> list[np.ndarray]:
    """``n`` 8-bit sRGB RGB frames panned across the project's synthetic scene."""
    from hdrlift.engine.sample import make_scene, render_frames, srgb_encode

    scene = make_scene(width=max(int(width * 3.75), width + 2), height=max(int(height * 1.11), height))
    return [np.ascontiguousarray((srgb_encode(lin) * 255.0 + 0.5).astype(np.uint8))
            for lin in render_frames(scene, width, height, n)]


def interleaved(pairs: list[tuple[str, callable]], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Run every callable once per round (order reversed on odd rounds); seconds per timed run."""
    times = {label: [] for label, _ in pairs}
    for r in range(warmup + rounds):
        order = pairs if r % 2 == 0 else pairs[::-1]
        for label, fn in order:
            t = time.perf_counter()
            with torch.inference_mode():
                fn(r)
            dt = time.perf_counter() - t
            if r >= warmup:
                times[label].append(dt)
        print(f"  round {r + 1}/{warmup + rounds}{' (warm-up)' if r < warmup else ''}: "
              + ", ".join(f"{lab} {times[lab][-1] * 1e3:.0f} ms" if r >= warmup else lab for lab, _ in order),
              file=sys.stderr, flush=True)
    return times


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="expandnet,hdrunet", help="comma list of expandnet, hdrunet")
    ap.add_argument("--layers", default="routine,network", help="comma list of routine, network")
    ap.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT (default 1920x1080)")
    ap.add_argument("--frames", type=int, default=3, help="timed rounds (one frame each; default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    ap.add_argument("--threads", type=int, default=usable_cores(), help="torch threads (default: all usable cores)")
    ap.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "auto"),
                    help="our back end for the routine layer (default torch)")
    ap.add_argument("--scratch", default="/tmp/hdrlift-authors", help="where their code is set up")
    ap.add_argument("--expandnet-repo", metavar="PATH", help="checkout or git mirror of dmarnerides/hdr-expandnet")
    ap.add_argument("--hdrunet-repo", metavar="PATH", help="checkout or git mirror of chxy95/HDRUNet")
    ap.add_argument("--seed", type=int, default=0, help="for random weights where no trained ones exist")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    layers = [s.strip() for s in args.layers.split(",") if s.strip()]
    if not models or any(m not in REPOS for m in models):
        ap.error(f"--models: choose from {', '.join(REPOS)}")
    if not layers or any(s not in ("routine", "network") for s in layers):
        ap.error("--layers: choose from routine, network")
    if args.frames < 1 or args.warmup < 0:
        ap.error("--frames must be >= 1 and --warmup >= 0")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        ap.error("--size must be WIDTHxHEIGHT")
    scratch = pathlib.Path(args.scratch).expanduser().resolve()
    repo_root = pathlib.Path(__file__).resolve().parent.parent
    if scratch == repo_root or repo_root in scratch.parents:
        ap.error("--scratch must lie outside the repository (their code is never put in it)")

    notes = []
    mult = max(MULTIPLE[m] for m in models)
    if width % mult or height % mult:
        width, height = width - width % mult, height - height % mult
        notes.append(f"frames cropped to {width}x{height}: their HDRUNet needs sides divisible by {mult}")

    sources = {"expandnet": args.expandnet_repo, "hdrunet": args.hdrunet_repo}
    roots = {name: setup_repo(name, sources[name], scratch) for name in models}  # fail early, before the frames

    torch.set_num_threads(args.threads)
    from hdrlift.engine import __version__
    from hdrlift.engine.pipeline import Pipeline

    print(f"preparing {args.frames} frames of {width}x{height} ...", file=sys.stderr, flush=True)
    rgb = make_frames(width, height, max(args.frames, 1))
    n = len(rgb)
    bgr = [np.ascontiguousarray(f[:, :, ::-1]) for f in rgb]  # what cv2.imread gives their code
    tensors = [torch.from_numpy(f).permute(2, 0, 1)[None].float().div(255.0).contiguous() for f in rgb]

    rows, details, provenance = [], [], []
    for name in models:
        root, info = roots[name]
        missing = f"; listed but absent there: {', '.join(info['missing'])}" if info["missing"] else ""
        if name == "expandnet":
            routine, their_net, wnote, how, stubbed = theirs_expandnet(root, args.seed)
            their_routine = lambda r, _f=routine: _f(bgr[r % n])  # noqa: E731
            their_forward = lambda x, _m=their_net: _m(x)  # noqa: E731
        else:
            routine, their_net, wnote, how, stubbed = theirs_hdrunet(root, args.seed, bgr, scratch)
            their_routine = lambda r, _f=routine: _f(r % n)  # noqa: E731
            their_forward = lambda x, _m=their_net: _m((x, x))  # noqa: E731
        their_net.eval()
        stub_note = f"; stubbed (not installed, not called): {', '.join(stubbed)}" if stubbed else ""
        provenance.append(f"{name}: {REPOS[name]['slug']} @ {info['commit'][:12]} ({info['how']}{missing}); "
                          f"{how}{stub_note}")

        wfile, map_fail = ours_weights(name, their_net, scratch / "weights", args.seed)
        pipe = Pipeline(model=name, weights=str(wfile), backend=args.backend, device="cpu", precision="fp32")
        ours_net = pipe.model.net.eval()
        ours_core = getattr(ours_net, OURS_CORE[name])

        diff = "n/a"
        if map_fail:
            notes.append(f"{name}: {map_fail}; ours ran with its own random weights, no output comparison")
            wnote += "; ours: own random init"
        else:
            wnote += "; ours: the same, mapped"
            with torch.inference_mode():
                a, b = ours_core(tensors[0]), their_forward(tensors[0])
            d = (a - b).abs().max().item()
            diff = f"{d:.2e}{' (bit-identical)' if d == 0 else ''}, outputs up to {b.abs().max().item():.3g}"

        pairs = []
        if "routine" in layers:
            pairs += [("ours routine", lambda r: pipe.process(rgb[r % n].astype(np.float32) / np.float32(255.0))),
                      ("theirs routine", their_routine)]
        if "network" in layers:
            pairs += [("ours network", lambda r: ours_core(tensors[r % n])),
                      ("theirs network", lambda r: their_forward(tensors[r % n]))]
        print(f"{name}: {len(pairs)} variants x ({args.warmup} warm-up + {args.frames} timed) rounds",
              file=sys.stderr, flush=True)
        times = interleaved(pairs, args.frames, args.warmup)
        for layer in layers:
            o = float(np.median(times[f"ours {layer}"])) * 1e3
            t = float(np.median(times[f"theirs {layer}"])) * 1e3
            rows.append((name, layer, o, t, o / t, diff if layer == "network" else "-", wnote))
        for label, ts in times.items():
            ms = np.asarray(ts) * 1e3
            details.append((name, label, ms.min(), float(np.median(ms)), ms.max(), len(ms)))

    cmd = shlex.join(["python", os.path.relpath(__file__), *(sys.argv[1:] if argv is None else argv)])
    print(f"## Ours vs the authors' code, {width}x{height}, CPU fp32\n")
    print(f"- machine: {cpu_name()}, {usable_cores()} usable cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, numpy {np.__version__}, "
          f"Python {platform.python_version()}, hdrlift {__version__}")
    print(f"- {args.frames} timed rounds after {args.warmup} warm-up, interleaved (A B, B A, ...), median ms/frame; "
          f"our back end: {args.backend}")
    for p in provenance:
        print(f"- {p}")
    for note in notes:
        print(f"- {note}")
    print()
    print("| model | layer | ours ms/frame | theirs ms/frame | ours / theirs | network max abs diff | weights |")
    print("|---|---|---:|---:|---:|---|---|")
    for name, layer, o, t, ratio, diff, wnote in rows:
        print(f"| {name} | {layer} | {o:.1f} | {t:.1f} | {ratio:.2f} | {diff} | {wnote} |")
    print()
    print("| model | variant | min ms | median ms | max ms | runs |")
    print("|---|---|---:|---:|---:|---:|")
    for name, label, lo, med, hi, k in details:
        print(f"| {name} | {label} | {lo:.1f} | {med:.1f} | {hi:.1f} | {k} |")
    print()
    print("routine: each side's per-frame path from a decoded 8-bit frame to the HDR frame in memory (ours: "
          "Pipeline.process; theirs: as their README runs it, file I/O left out). network: the bare modules "
          "on the same tensor; the max abs diff compares their forward with ours (same weights).")
    print(f"\nCommand: {cmd}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
