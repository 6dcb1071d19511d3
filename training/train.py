"""``hdrlift-train``: train or fine-tune a registered network on HDR images.

    hdrlift-train --model hdrcnn-lite --config training/configs/hdrcnn-lite-cpu.json --out runs/hdrcnn-lite

A run folder holds ``config.json`` (the resolved configuration), ``log.jsonl`` (one JSON line
per logged step and per validation), ``checkpoint.pt`` (model, EMA, optimiser, step and every
random state: a killed run continues exactly with ``--resume``), ``best.safetensors`` (the EMA
weights with the best validation score) and ``last.safetensors``. TensorBoard scalars go to
``tb/`` when the ``tensorboard`` package is installed.

The checkpoint is a torch pickle written by this trainer for itself; it is loaded with
``weights_only=True`` and never from a user. Shipped weights are safetensors only.

Recipes (loss per model family, the papers' own):

* ``hdrcnn``, ``hdrcnn-lite``: Eilertsen Eq. 19 (``eilertsen_log``) or Eq. 22 (``eilertsen_ir``)
  on the log prediction.
* ``psnr`` (:mod:`hdrlift.training.objectives`): per-image PSNR in the evaluation's own
  domains, for fine-tuning a model to the evaluation protocol.
* any other network: ``log_l1`` on its linear output (L1 of ``log(H + eps)``), until its paper's
  loss is wired in its config (``"loss": NAME`` from ``training.losses``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import pathlib
import random
import sys
import time
from typing import Any

import numpy as np
import torch

from hdrlift.engine.errors import HdrliftError, InputError
from hdrlift.training import losses as L


@dataclasses.dataclass
class TrainConfig:
    model: str = "hdrcnn-lite"
    data: str | None = None  # HDR folder; None = ../shared/data/hdri (or $HDRLIFT_DATA)
    train_split: str | None = "train"
    val_split: str | None = "val"
    patch: int = 128
    batch: int = 8
    iterations: int = 2000
    lr: float = 2e-4
    lr_min: float = 1e-5
    weight_decay: float = 0.0
    warmup: int = 100
    grad_clip: float = 1.0
    ema: float = 0.999
    loss: str = "auto"
    clip_range: tuple[float, float] = (0.01, 0.12)
    curves: str = "srgb"
    noise: bool = False
    compression: bool = False
    seed: int = 0
    threads: int = 0  # 0 = torch default
    log_every: int = 25
    val_every: int = 500
    val_views: int = 2
    val_size: int = 192
    checkpoint_every: int = 250
    time_limit_min: float = 0.0  # stop (with a checkpoint) after this many minutes; 0 = none
    amp: bool = True  # CUDA only
    init_from: str | None = None  # safetensors weights to start from (fine-tuning)
    select: str = "psnr_mu+pu21_psnr"  # validation score that picks best.safetensors ("+"-joined metrics)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "TrainConfig":
        try:
            raw = json.loads(pathlib.Path(path).read_text())
        except FileNotFoundError:
            raise InputError(f"config {path} not found") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"config {path} is not valid JSON: {exc}") from None
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names - {"comment"})
        if unknown:
            raise InputError(f"config {path}: unknown keys {', '.join(unknown)}")
        raw.pop("comment", None)
        if "clip_range" in raw:
            raw["clip_range"] = tuple(raw["clip_range"])
        return cls(**raw)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_network(name: str) -> torch.nn.Module:
    from hdrlift.engine.models import get_info

    info = get_info(name)
    if not info.needs_weights:
        raise InputError(f"model {name!r} is a classical operator; there is nothing to train")
    return info.factory()


#: each model's own paper loss where it is a single function of (prediction, target, input)
AUTO_LOSS = {"hdrcnn": "eilertsen_log", "hdrcnn-lite": "eilertsen_log"}


def compute_loss(net: torch.nn.Module, name: str, ldr: torch.Tensor, hdr: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "auto":
        loss = AUTO_LOSS.get(name, "log_l1")
    if loss in ("eilertsen_log", "eilertsen_ir"):
        y = net.forward_log(ldr)
        fn = L.eilertsen_log if loss == "eilertsen_log" else L.eilertsen_ir
        return fn(y, hdr, ldr, tau=getattr(net, "tau", 0.95))
    pred = net(ldr)
    if loss == "log_l1":
        return (torch.log(pred.clamp(min=0.0) + L.LOG_EPS) - torch.log(hdr + L.LOG_EPS)).abs().mean()
    if loss == "psnr":
        from hdrlift.training.objectives import psnr_objective

        return psnr_objective(pred, hdr)
    fn = getattr(L, loss, None)
    if fn is None:
        raise InputError(f"unknown loss {loss!r}")
    return fn(pred, hdr)


class EMA:
    """Exponential moving average of the parameters (and a copy of buffers)."""

    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(net).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow.parameters(), net.parameters()):
            s.mul_(d).add_(p.detach(), alpha=1 - d)
        for s, b in zip(self.shadow.buffers(), net.buffers()):
            s.copy_(b)


def lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.iterations - cfg.warmup)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(1.0, t)))


def save_safetensors(net: torch.nn.Module, path: pathlib.Path, meta: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(state, str(tmp), metadata=meta or {})
    os.replace(tmp, path)


@torch.no_grad()
def validate(net: torch.nn.Module, items: list[dict], device: torch.device) -> dict[str, float]:
    from hdrlift.training.metrics import score

    net.eval()
    acc: dict[str, list[float]] = {}
    for it in items:
        x = torch.from_numpy(it["ldr"].transpose(2, 0, 1)[None].copy()).to(device)
        pred = net(x)[0].float().cpu().numpy().transpose(1, 2, 0)
        for k, v in score(pred, it["hdr"], it["ldr"]).items():
            if not math.isnan(v):
                acc.setdefault(k, []).append(v)
    return {k: float(np.mean(v)) for k, v in acc.items()}


class Logger:
    def __init__(self, folder: pathlib.Path):
        self.fh = open(folder / "log.jsonl", "a", buffering=1)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

            self.tb = SummaryWriter(str(folder / "tb"))
        except Exception:
            self.tb = None

    def log(self, record: dict[str, Any]) -> None:
        self.fh.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, record.get("step", 0))

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()


def train(cfg: TrainConfig, out: pathlib.Path, resume: bool = False, device: str = "auto",
          progress: bool = True) -> dict[str, Any]:
    from hdrlift.training.data import HdrFolder, PatchDataset, validation_set

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not resume:
        raise InputError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))

    seed_everything(cfg.seed)
    net = build_network(cfg.model)
    if cfg.init_from:
        from hdrlift.engine.models.registry import load_state

        load_state(net, cfg.init_from, cfg.model)
    net = net.to(dev)
    ema = EMA(net, cfg.ema)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    try:
        train_set = PatchDataset(HdrFolder(cfg.data, cfg.train_split), size=cfg.patch, seed=cfg.seed,
                                 clip_range=cfg.clip_range, curves=cfg.curves, noise=cfg.noise,
                                 compression=cfg.compression)
        val_items = validation_set(HdrFolder(cfg.data, cfg.val_split), views=cfg.val_views,
                                   size=cfg.val_size) if cfg.val_split else []
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None

    step = 0
    best = -float("inf")
    elapsed_before = 0.0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=dev, weights_only=False)
        net.load_state_dict(state["net"])
        ema.shadow.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        scaler.load_state_dict(state["scaler"])
        step = state["step"]
        best = state["best"]
        elapsed_before = state.get("elapsed", 0.0)
        train_set.rng.bit_generator.state = state["data_rng"]
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["np_rng"])
        random.setstate(state["py_rng"])

    logger = Logger(out)
    t0 = time.time()

    def save_checkpoint() -> None:
        state = {
            "net": net.state_dict(), "ema": ema.shadow.state_dict(), "opt": opt.state_dict(),
            "scaler": scaler.state_dict(), "step": step, "best": best,
            "elapsed": elapsed_before + time.time() - t0,
            "data_rng": train_set.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "np_rng": np.random.get_state(), "py_rng": random.getstate(),
        }
        tmp = out / f".checkpoint.pt.tmp-{os.getpid()}"
        torch.save(state, tmp)
        os.replace(tmp, ckpt_path)

    meta = {"model": cfg.model, "config": json.dumps(dataclasses.asdict(cfg))}
    running = None
    last_loss = float("nan")
    try:
        while step < cfg.iterations:
            net.train()
            ldr_np, hdr_np = train_set.batch(cfg.batch)
            ldr = torch.from_numpy(ldr_np).to(dev)
            hdr = torch.from_numpy(hdr_np).to(dev)
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, step)
            with torch.autocast(dev.type, enabled=use_amp):
                loss = compute_loss(net, cfg.model, ldr, hdr, cfg.loss)
            if not torch.isfinite(loss):
                raise HdrliftError(f"loss became {loss.item()} at step {step}; lower lr or check the data")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            gnorm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            ema.update(net, step)
            step += 1
            last_loss = float(loss.item())
            running = last_loss if running is None else 0.95 * running + 0.05 * last_loss
            elapsed = elapsed_before + time.time() - t0
            if step % cfg.log_every == 0 or step == 1:
                logger.log({"step": step, "loss": last_loss, "loss_smooth": running, "grad_norm": float(gnorm),
                            "lr": lr_at(cfg, step - 1), "elapsed_s": round(elapsed, 1)})
                if progress:
                    print(f"step {step}/{cfg.iterations} loss {running:.5f} lr {lr_at(cfg, step - 1):.2e} "
                          f"{elapsed / 60:.1f} min", file=sys.stderr, flush=True)
            if val_items and (step % cfg.val_every == 0 or step == cfg.iterations):
                metrics = validate(ema.shadow, val_items, dev)
                logger.log({"step": step, "val": metrics, "elapsed_s": round(elapsed, 1)})
                if progress:
                    print(f"  val {json.dumps({k: round(v, 3) for k, v in metrics.items()})}", file=sys.stderr, flush=True)
                sel = sum(metrics.get(k, -1e9) for k in cfg.select.split("+"))
                if sel > best:
                    best = sel
                    save_safetensors(ema.shadow, out / "best.safetensors",
                                     {**meta, "step": str(step), "val": json.dumps(metrics)})
            if step % cfg.checkpoint_every == 0:
                save_checkpoint()
            if cfg.time_limit_min and elapsed > cfg.time_limit_min * 60:
                if progress:
                    print(f"time limit {cfg.time_limit_min} min reached at step {step}", file=sys.stderr)
                break
    finally:
        save_checkpoint()
        save_safetensors(ema.shadow, out / "last.safetensors", {**meta, "step": str(step)})
        logger.close()
    return {"step": step, "best_score": best, "loss": last_loss}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hdrlift-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Config keys: " + ", ".join(f.name for f in dataclasses.fields(TrainConfig)))
    p.add_argument("--model", help="registered network to train (overrides the config)")
    p.add_argument("--config", help="JSON config (see training/configs/)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, weights)")
    p.add_argument("--data", help="HDR folder (default ../shared/data/hdri or $HDRLIFT_DATA)")
    p.add_argument("--iterations", type=int)
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def _sigterm(signum, frame):  # a farm scheduler's SIGTERM: stop like Ctrl-C, checkpoint saved
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import signal

    signal.signal(signal.SIGTERM, _sigterm)
    try:
        cfg = TrainConfig.from_file(args.config) if args.config else TrainConfig()
        if args.model:
            cfg.model = args.model
        if args.data:
            cfg.data = args.data
        if args.iterations:
            cfg.iterations = args.iterations
        res = train(cfg, pathlib.Path(args.out), resume=args.resume, device=args.device, progress=not args.quiet)
        print(json.dumps(res))
        return 0
    except HdrliftError as exc:
        print(f"hdrlift-train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hdrlift-train: interrupted; checkpoint saved, continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
