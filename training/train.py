"""``hdrlift-train``: train or fine-tune a registered network on HDR images.

    hdrlift-train --model hdrcnn-lite --config training/configs/hdrcnn-lite-cpu.json --out runs/hdrcnn-lite

A run folder holds ``config.json`` (the resolved configuration), ``log.jsonl`` (one JSON line
per logged step and per validation), ``checkpoint.pt`` (model, EMA, optimiser, step, every
random state and, with ``"gan": true``, the discriminator and its optimiser: a stopped run
continues bit for bit with ``--resume``), ``best.safetensors`` (the EMA weights with the best
validation score) and ``last.safetensors``. TensorBoard scalars go to ``tb/`` when the
``tensorboard`` package is installed. A first SIGINT/SIGTERM stops the run at the end of the
current step with a checkpoint; a second one stops at once.

The checkpoint is a torch pickle written by this trainer for itself, loaded with
``weights_only=True`` (tensors, numbers and strings; see :func:`load_checkpoint`). Shipped
weights are safetensors only.

Losses (``"loss"``; ``"auto"`` picks the model's own paper loss, :data:`AUTO_LOSS`; the full list
is :func:`loss_names`; docs/training.md gives each one's equation):

* ``eilertsen_log`` / ``eilertsen_ir``: HDR-CNN Eq. 19 / Eq. 20-22 on the log prediction.
* ``log_l1``: L1 of ``log(H + 1/255)`` on the linear output (any network).
* ``psnr`` (:mod:`hdrlift.training.objectives`): per-image PSNR in the evaluation's domains;
  ``psnr_gain``: the same as a gain over the inverse camera curve with a hinge on images that gain
  less than 0.5 dB; ``clipped_log_l1`` / ``clipped_log_l2``: log error on the clipped channels, per image.
* every name of :data:`hdrlift.training.losses.RECIPES` (Moriwaki, Santos, HDRUNet, Kalantari /
  AHDRNet mu-law, Kim, SingleHDR joint).
* SingleHDR's per-stage losses (:data:`TRAINER_RECIPES`): ``singlehdr_deq``, ``singlehdr_lin``,
  ``singlehdr_hal``, ``singlehdr_hal_p`` — for the staged recipe "each network alone, then joint".
* with ``"gan": true`` (Moriwaki et al. 2018 §4: generator and discriminator "updated
  alternatively"): ``moriwaki_hybrid`` (Eq. 1: ``L_Rec + alpha L_GAN + beta L_VGG``) or
  ``moriwaki_rec_gan`` (Eq. 1 without the VGG term); any other loss gets ``+ alpha L_GAN``.

``"stages"``: a list of partial configurations trained one after another in ``out/NN-name/``,
each initialised from the previous stage's ``last.safetensors`` (Santos: inpainting
pre-training, then HDR fine-tuning; SingleHDR: each sub-network, then the joint loss).
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
import re
import shutil
import signal
import sys
import threading
import time
from typing import Any, Callable

import numpy as np
import torch

from hdrlift.engine.atomic import replacing
from hdrlift.engine.entrypoint import run_cli
from hdrlift.engine.errors import HdrliftError, InputError
from hdrlift.training import losses as L

SAMPLINGS = ("random", "santos", "highlights")
PRETRAINS = (None, "inpainting")
CURVES = ("srgb", "gamma", "random")


@dataclasses.dataclass
class TrainConfig:
    model: str = "hdrcnn-lite"
    data: str | None = None  # HDR folder or pack (.npz); None = ../shared/data/hdri (or $HDRLIFT_DATA)
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
    # lower "iterations" once the step rate is measured so the cosine schedule ends inside time_limit_min
    fit_time: bool = False
    val_count: int = 0  # with fit_time: about this many validations over the fitted run (0 = val_every)
    workers: int = 0  # processes drawing training batches (0 = in the training process)
    amp: bool = True  # CUDA only
    amp_dtype: str = "float16"  # "float16" (with a gradient scaler) or "bfloat16" (float32's range, no scaler)
    init_from: str | None = None  # safetensors weights to start from (fine-tuning)
    # with init_from: load only the tensors whose name and shape match (a changed layer starts
    # fresh, e.g. the resize-convolution decoder from deconvolution weights); False = strict
    init_partial: bool = False
    # keyword arguments of an objective of training/objectives.py (psnr_gain: margin_db, hinge, clipped_l1)
    loss_params: dict | None = None
    select: str = "psnr_mu+pu21_psnr"  # validation score that picks best.safetensors ("+"-joined metrics, "2*worst_mu")
    val_cases: tuple[str, ...] = ("views",)  # validation cases (training/val_cases.py)
    # Moriwaki et al. 2018 (§4): alternate discriminator and generator updates
    gan: bool = False
    d_lr: float | None = None  # discriminator learning rate; None = the generator's schedule
    # Santos et al. 2020: patch sampling (§3.4, Algorithm 1) and inpainting pre-training (§3.3)
    patch_sampling: str = "random"  # "random", "santos" or "highlights"
    santos_threshold: float = 0.85  # Algorithm 1 / §3.4 threshold of a textured patch
    sampling_tries: int = 8  # candidates per sample with "santos" (and half the samples with "highlights") sampling
    pretrain: str | None = None  # None or "inpainting"
    mask_coverage: tuple[float, float] = (0.01, 0.6)  # fraction of each patch hidden when pretraining
    recolour: float = 0.0  # probability that a training view's highlights take a random saturated colour
    # staged recipes: partial configs run one after another, each from the previous stage's weights
    stages: list[dict[str, Any]] | None = None

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "config") -> "TrainConfig":
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object")
        raw = dict(raw)
        unknown = sorted(set(raw) - cls.field_names() - {"comment"})
        if unknown:
            raise InputError(f"{where}: unknown keys {', '.join(unknown)}")
        raw.pop("comment", None)
        for key in ("clip_range", "mask_coverage", "val_cases"):
            if key in raw and raw[key] is not None:
                raw[key] = tuple(raw[key])
        cfg = cls(**raw)
        cfg.check(where)
        return cfg

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "TrainConfig":
        try:
            raw = json.loads(pathlib.Path(path).read_text())
        except FileNotFoundError:
            raise InputError(f"config {path} not found") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"config {path} is not valid JSON: {exc}") from None
        return cls.from_dict(raw, f"config {path}")

    def check(self, where: str = "config") -> None:
        """Value checks that do not need the model or the data (one-line :class:`InputError`)."""
        if self.patch_sampling not in SAMPLINGS:
            raise InputError(f"{where}: patch_sampling must be one of {', '.join(SAMPLINGS)}, "
                             f"got {self.patch_sampling!r}")
        if self.pretrain not in PRETRAINS:
            raise InputError(f"{where}: pretrain must be null or \"inpainting\", got {self.pretrain!r}")
        if self.curves not in CURVES:
            raise InputError(f"{where}: curves must be one of {', '.join(CURVES)}, got {self.curves!r}")
        lo, hi = self.mask_coverage
        if not 0.0 <= lo <= hi < 1.0:
            raise InputError(f"{where}: mask_coverage must be [lo, hi] with 0 <= lo <= hi < 1, "
                             f"got {list(self.mask_coverage)}")
        if self.iterations < 0 or self.batch < 1 or self.patch < 8:
            raise InputError(f"{where}: iterations >= 0, batch >= 1 and patch >= 8 are required")
        if self.workers < 0 or self.val_count < 0 or self.val_every < 1 or self.checkpoint_every < 1:
            raise InputError(f"{where}: workers >= 0, val_count >= 0, val_every >= 1 and checkpoint_every >= 1 "
                             f"are required")
        if self.amp_dtype not in ("float16", "bfloat16"):
            raise InputError(f"{where}: amp_dtype must be \"float16\" or \"bfloat16\", got {self.amp_dtype!r}")
        from hdrlift.training.val_cases import CASES

        if not self.val_cases or any(c not in CASES for c in self.val_cases):
            raise InputError(f"{where}: val_cases must be a non-empty list of {', '.join(CASES)}, "
                             f"got {list(self.val_cases)}")
        try:
            select_terms(self.select)
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
        if not 0.0 <= self.recolour <= 1.0:
            raise InputError(f"{where}: recolour must be a probability in [0, 1], got {self.recolour}")
        if self.loss_params is not None:
            import inspect

            from hdrlift.training import objectives

            fn = getattr(objectives, self.loss, None) if self.loss in OBJECTIVE_LOSSES else None
            if fn is None:
                raise InputError(f"{where}: loss_params apply to the losses {', '.join(OBJECTIVE_LOSSES)}, "
                                 f"not {self.loss!r}")
            allowed = set(list(inspect.signature(fn).parameters)[3:])
            bad = sorted(k for k, v in self.loss_params.items()
                         if k not in allowed or isinstance(v, bool) or not isinstance(v, (int, float)))
            if bad:
                raise InputError(f"{where}: loss_params of {self.loss} take numbers for {', '.join(sorted(allowed))}; "
                                 f"refused: {', '.join(bad)}")
        if self.fit_time and not self.time_limit_min > 0:
            raise InputError(f"{where}: fit_time needs time_limit_min > 0")
        if self.stages is not None:
            if not isinstance(self.stages, list) or not self.stages:
                raise InputError(f"{where}: stages must be a non-empty list of partial configs")
            stage_configs(self, where)  # validates every stage


def stage_configs(cfg: TrainConfig, where: str = "config") -> list[tuple[str, TrainConfig]]:
    """``[(folder name, full config)]`` of a staged recipe: each stage is the base configuration
    (without ``stages``) updated with the stage's keys. A stage may carry ``"name"`` (its folder
    is ``NN-name``) and ``"comment"``; it may not change the model, nest stages, or (after the
    first) set ``init_from``: it starts from the previous stage's ``last.safetensors``."""
    base = dataclasses.asdict(cfg)
    base["stages"] = None
    out: list[tuple[str, TrainConfig]] = []
    for i, st in enumerate(cfg.stages or []):
        w = f"{where}: stage {i + 1}"
        if not isinstance(st, dict):
            raise InputError(f"{w}: expected a JSON object")
        st = dict(st)
        name = str(st.pop("name", "") or f"stage{i + 1}")
        st.pop("comment", None)
        if "stages" in st:
            raise InputError(f"{w}: stages cannot be nested")
        if "model" in st and st["model"] != cfg.model:
            raise InputError(f"{w}: every stage trains the same model ({cfg.model}); set \"model\" at the top level")
        if i > 0 and st.get("init_from"):
            raise InputError(f"{w}: init_from is set by the previous stage (only the first stage may set it)")
        unknown = sorted(set(st) - TrainConfig.field_names())
        if unknown:
            raise InputError(f"{w}: unknown keys {', '.join(unknown)}")
        merged = {**base, **st}
        folder = f"{i + 1:02d}-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or f"stage{i + 1}")
        out.append((folder, TrainConfig.from_dict(merged, w)))
    return out


#: ``fit_time``: steps skipped before the step rate is measured (start-up, cuDNN autotuning,
#: worker start), the shortest measuring window, and the share of the remaining time planned
FIT_SKIP_STEPS = 10
FIT_WINDOW_S = (15.0, 0.08)  # max(15 s, 8 % of time_limit_min)
FIT_MARGIN = 0.95


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def trainable_info(name: str):
    """The registry entry of a model ``hdrlift-train`` can train (a single-image network), else a
    one-line error: classical operators have nothing to train, and the fusion networks
    (Kalantari, Wu, AHDRNet) need exposure brackets, which this trainer does not synthesise."""
    from hdrlift.engine.models import get_info

    info = get_info(name)
    if not info.needs_weights:
        raise InputError(f"model {name!r} is a classical operator; there is nothing to train")
    if info.kind == "fusion":
        raise InputError(f"model {name!r} fuses exposure brackets (hdr-merge); hdrlift-train trains "
                         f"single-image networks only and has no bracket data for it")
    return info


def build_network(name: str) -> torch.nn.Module:
    return trainable_info(name).factory()


# ------------------------------------------------------------------------------------------
# Losses
# ------------------------------------------------------------------------------------------

#: each model's own paper loss (``"loss": "auto"``); see :func:`resolve_loss` for the
#: VGG and GAN variants
AUTO_LOSS = {
    "hdrcnn": "eilertsen_log",  # Eilertsen et al. 2017, Qiu's survey §6.1 Eq. 19
    "hdrcnn-lite": "eilertsen_log",
    "moriwaki": "moriwaki_rec",  # Moriwaki et al. 2018 Eq. 2-3 (Eq. 1 with "gan": true)
    "santos": "santos",  # Santos et al. 2020 Eq. 5-12 (santos_rec, Eq. 6, without VGG19 weights)
    "hdrunet": "tanh_l1",  # Chen et al. 2021 Eq. 3
    "kim": "kim",  # Kim et al. 2021 Eq. 4 + Eq. 7
    "singlehdr": "singlehdr",  # Liu et al. 2020, Qiu's survey Eq. 24
    "expandnet": "log_l1",  # ExpandNet's own L1 + cosine loss is not among the papers followed here
}
#: ``"auto"`` with ``"gan": true``
AUTO_LOSS_GAN = {"moriwaki": "moriwaki_hybrid"}
#: ``"auto"`` falls back to these when the ImageNet VGG19 weights are absent
NO_VGG_FALLBACK = {"santos": "santos_rec", "moriwaki_hybrid": "moriwaki_rec_gan"}
#: losses that need the ImageNet VGG19 weights
VGG_LOSSES = ("santos", "moriwaki_rec_vgg", "moriwaki_hybrid", "singlehdr_p", "singlehdr_hal_p")
#: losses that need the discriminator ("gan": true)
GAN_LOSSES = ("moriwaki_hybrid", "moriwaki_rec_gan")
OBJECTIVE_LOSSES = ("clipped_log_l1", "clipped_log_l2", "psnr_gain")  # training/objectives.py, take loss_params
BUILTIN_LOSSES = ("eilertsen_log", "eilertsen_ir", "log_l1", "clipped_log_l1", "clipped_log_l2", "psnr", "psnr_gain")


def _singlehdr_code(hdr: torch.Tensor) -> torch.Tensor:
    """The un-quantised LDR ``I_n`` of the sRGB camera: ``srgb(clip(H, 0, 1))``."""
    from hdrlift.engine.colour_maths import linear_to_srgb

    return linear_to_srgb(hdr.clamp(0.0, 1.0))


def _singlehdr_deq_stage(net, ldr, hdr):
    """SingleHDR Dequantization-Net alone: ``L_deq = ||I + tanh(U(I)) - I_n||^2`` (Qiu's survey §7.1)."""
    deq = ldr + torch.tanh(net.dequantize(ldr))
    return L.singlehdr_deq(deq, _singlehdr_code(hdr))


def _singlehdr_lin_stage(net, ldr, hdr):
    """SingleHDR Linearization-Net alone on its ideal input ``I_n``: ``w_lin L_lin + w_crf L_crf``
    with Eq. 24's weights (10, 1) (the survey gives no separate ``lambda_crf``)."""
    from hdrlift.engine.models.filters import apply_curve

    code = _singlehdr_code(hdr)
    curve = net.linearize.curve(net.linearize.weights(code))
    lin = apply_curve(code.float(), curve)
    target_curve = L.srgb_inverse_crf(curve.shape[1], curve.device).unsqueeze(0).expand_as(curve)
    w = L.SINGLEHDR_WEIGHTS
    return w["lin"] * L.singlehdr_lin(lin, hdr.clamp(0.0, 1.0)) + w["crf"] * L.singlehdr_crf(curve, target_curve)


def _singlehdr_hal_stage(net, ldr, hdr, vgg=None):
    """SingleHDR Hallucination-Net alone on its ideal input ``I_c = clip(H, 0, 1)``:
    ``H_hat = I_c + alpha C(I_c)``, ``w_hal L_hal + w_p L_p + w_tv L_tv(log H_hat)`` (§7.1; Eq. 24 weights)."""
    from hdrlift.engine.models.masks import channel_alpha

    lin = hdr.clamp(0.0, 1.0)
    # C = ReLU(...) >= 0 as in SingleHDR.stages, written as clamp(min=0): the same values, but a
    # gradient of 1 at exactly 0. The Hallucination-Net's head starts at zero ("do-nothing"
    # start), where ReLU's gradient of 0 would leave the whole sub-network without any gradient.
    # alpha per channel, as SingleHDR.stages (the survey's formula, no maximum over channels).
    pred = lin + channel_alpha(lin, net.gamma) * net.hallucinate(lin).clamp(min=0.0)
    w = L.SINGLEHDR_WEIGHTS
    loss = w["hal"] * L.singlehdr_hal(pred, hdr) + w["tv"] * L.total_variation(L.log_image(pred))
    if vgg is not None:
        loss = loss + w["p"] * L.singlehdr_perceptual(pred, hdr, vgg)
    return loss


def _vgg(device: torch.device):
    from hdrlift.training import vgg

    return vgg.shared_vgg(device)


#: the trainer's own recipes, ``fn(net, ldr, hdr)`` like :data:`hdrlift.training.losses.RECIPES`
TRAINER_RECIPES: dict[str, Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "singlehdr_deq": _singlehdr_deq_stage,
    "singlehdr_lin": _singlehdr_lin_stage,
    "singlehdr_hal": _singlehdr_hal_stage,
    "singlehdr_hal_p": lambda net, ldr, hdr: _singlehdr_hal_stage(net, ldr, hdr, _vgg(ldr.device)),
}
#: recipes that only run on one model family
RECIPE_MODELS = {"kim": ("kim",), "singlehdr": ("singlehdr",), "singlehdr_p": ("singlehdr",),
                 **{k: ("singlehdr",) for k in TRAINER_RECIPES},
                 # Eq. 19-22 weigh HDR-CNN's log output (forward_log); Moriwaki's generator has one too
                 "eilertsen_log": ("hdrcnn", "hdrcnn-lite", "moriwaki"),
                 "eilertsen_ir": ("hdrcnn", "hdrcnn-lite", "moriwaki")}


def loss_names() -> list[str]:
    """Every valid value of the ``"loss"`` key."""
    return ["auto", *sorted(set(BUILTIN_LOSSES) | set(L.RECIPES) | set(TRAINER_RECIPES) | set(GAN_LOSSES))]


def vgg_weights_available() -> bool:
    from hdrlift.training import vgg

    p = vgg.default_weights_path()
    return p is not None and pathlib.Path(p).is_file()


def resolve_loss(model: str, loss: str = "auto", gan: bool = False) -> str:
    """The loss a run uses: ``"auto"`` -> :data:`AUTO_LOSS` (with ``gan``: :data:`AUTO_LOSS_GAN`;
    without VGG19 weights: :data:`NO_VGG_FALLBACK`); a one-line :class:`InputError` for an unknown
    name, a GAN loss without ``gan``, or a recipe for another model family."""
    if loss == "auto":
        loss = (AUTO_LOSS_GAN.get(model) if gan else None) or AUTO_LOSS.get(model, "log_l1")
        if loss in NO_VGG_FALLBACK and not vgg_weights_available():
            loss = NO_VGG_FALLBACK[loss]
    if loss not in loss_names():
        raise InputError(f"unknown loss {loss!r}; valid: {', '.join(loss_names())}")
    if loss in GAN_LOSSES and not gan:
        raise InputError(f"loss {loss!r} needs the discriminator: set \"gan\": true")
    fam = RECIPE_MODELS.get(loss)
    if fam is not None and model not in fam:
        raise InputError(f"loss {loss!r} runs only on model {' or '.join(fam)}, not {model!r}")
    return loss


def compute_loss(net: torch.nn.Module, name: str, ldr: torch.Tensor, hdr: torch.Tensor, loss: str,
                 params: dict | None = None) -> torch.Tensor:
    """The (non-adversarial) loss ``loss`` of network ``net`` (model ``name``) on one batch;
    ``params``: keyword arguments of an objective (``"loss_params"``)."""
    if loss == "auto":
        loss = resolve_loss(name, loss)
    if loss in ("eilertsen_log", "eilertsen_ir"):
        y = net.forward_log(ldr)
        fn = L.eilertsen_log if loss == "eilertsen_log" else L.eilertsen_ir
        return fn(y, hdr, ldr, tau=getattr(net, "tau", 0.95))
    if loss == "log_l1":
        pred = net(ldr)
        return (torch.log(pred.clamp(min=0.0) + L.LOG_EPS) - torch.log(hdr + L.LOG_EPS)).abs().mean()
    if loss == "psnr":
        from hdrlift.training.objectives import psnr_objective

        return psnr_objective(net(ldr), hdr)
    if loss in OBJECTIVE_LOSSES:
        from hdrlift.training import objectives

        return getattr(objectives, loss)(net(ldr), hdr, ldr, **(params or {}))
    fn = TRAINER_RECIPES.get(loss) or L.RECIPES.get(loss)
    if fn is not None:
        return fn(net, ldr, hdr)
    if loss in GAN_LOSSES:
        raise InputError(f"loss {loss!r} needs the discriminator: set \"gan\": true")
    raise InputError(f"unknown loss {loss!r}; valid: {', '.join(loss_names())}")


def log_prediction(net: torch.nn.Module, ldr: torch.Tensor) -> torch.Tensor:
    """``log(H + 1/255)`` of the prediction: the discriminator's input (Moriwaki Eq. 4-5).
    ``forward_log`` where the network has it (Moriwaki's generator, HDR-CNN), else the log of
    the linear output."""
    fn = getattr(net, "forward_log", None)
    return fn(ldr) if fn is not None else L.log_image(net(ldr))


def generator_loss(net: torch.nn.Module, name: str, ldr: torch.Tensor, hdr: torch.Tensor, loss: str,
                   y: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's loss with the adversarial term: Moriwaki Eq. 1 for ``moriwaki_hybrid``
    (``L_Rec + alpha L_GAN + beta L_VGG``) and ``moriwaki_rec_gan`` (without ``L_VGG``), on the log
    prediction ``y`` that the discriminator saw; any other loss plus ``alpha L_GAN`` (Eq. 4,
    ``alpha = 1e-3``)."""
    if loss == "moriwaki_hybrid":
        return L.moriwaki_hybrid(y, hdr, ldr, fake_logits, vgg=_vgg(ldr.device))
    if loss == "moriwaki_rec_gan":
        return L.moriwaki_hybrid(y, hdr, ldr, fake_logits, vgg=None)
    return compute_loss(net, name, ldr, hdr, loss) + L.MORIWAKI_ALPHA * L.moriwaki_gan(fake_logits)


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------

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
    with replacing(path) as tmp:
        save_file(state, str(tmp), metadata=meta or {})


def _pad_forward(net: torch.nn.Module, x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``net(x)`` with ``x`` padded to ``multiple`` (as the registry's LoadedModel does), cropped back."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
    return net(x)[..., :h, :w]


PREVIEWS = 3  # validation images shown in TensorBoard


def preview_image(ldr: np.ndarray, pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """One TensorBoard preview, ``H x 3W x 3`` in [0, 1]: the LDR input as the camera saw it,
    then the prediction and the reference tone mapped with the *reference's* Reinhard curve
    (``metrics.reinhard``), so the two HDR panels are directly comparable."""
    from hdrlift.training.metrics import reinhard, reinhard_params

    lbar, white = reinhard_params(ref)
    panels = [np.clip(ldr, 0.0, 1.0), reinhard(pred, lbar, white), reinhard(ref, lbar, white)]
    return np.concatenate([np.asarray(p, np.float32) for p in panels], axis=1)


def load_partial(net: torch.nn.Module, path: str | os.PathLike) -> tuple[int, list[str]]:
    """Load the tensors of a safetensors file whose names and shapes match ``net``'s (``init_partial``);
    returns how many were loaded and the names of ``net``'s tensors that keep their initial values.
    The layout of ``net`` is not adapted to the file (unlike :func:`loading.load_state`)."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise InputError(f"init_from: weights file not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt or truncated file
        raise InputError(f"init_from: cannot read weights {path}: {exc}") from None
    own = net.state_dict()
    take = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not take:
        raise InputError(f"init_from: no tensor of {path} matches the model (init_partial)")
    net.load_state_dict(take, strict=False)
    return len(take), sorted(k for k in own if k not in take)


def select_terms(select: str) -> list[tuple[float, str]]:
    """``"select"`` parsed: ``+``-joined metric names, each optionally weighted
    (``"psnr_mu+pu21_psnr+2*worst_mu"``), as ``[(weight, metric)]``; ``ValueError`` on a bad term."""
    terms = []
    for term in select.split("+"):
        w, _, name = term.strip().rpartition("*")
        try:
            weight = float(w or 1.0)
        except ValueError:
            raise ValueError(f"select terms are METRIC or WEIGHT*METRIC, got {term!r}") from None
        if not name:
            raise ValueError(f"select has an empty term: {select!r}")
        terms.append((weight, name))
    return terms


def select_score(select: str, metrics: dict[str, float]) -> float:
    """The validation score of ``"select"`` (:func:`select_terms`); a missing metric counts -1e9."""
    return sum(w * metrics.get(name, -1e9) for w, name in select_terms(select))


def baseline_scores(items: list[dict]) -> list[dict[str, float]]:
    """``metrics.score`` of the plain inverse camera curve (``inverse-crf``) on every item: what the
    worst-case validation columns compare with."""
    from hdrlift.engine.colour_maths import srgb_to_linear
    from hdrlift.training.metrics import score

    return [score(srgb_to_linear(it["ldr"]).astype(np.float32), it["hdr"], it["ldr"]) for it in items]


@torch.no_grad()
def validate(net: torch.nn.Module, items: list[dict], device: torch.device, multiple: int = 1,
             previews: list | None = None, baseline: list[dict[str, float]] | None = None) -> dict[str, float]:
    """Mean ``metrics.score`` over ``items``; with ``previews`` (a list), the first
    :data:`PREVIEWS` items' :func:`preview_image` are appended to it. With ``baseline``
    (:func:`baseline_scores` of the same items) also ``worst_mu`` / ``worst_pu21``: the lowest,
    over the items, of PSNR-mu / PU21-PSNR minus the inverse curve's (as ``hdrlift-eval``)."""
    from hdrlift.training.metrics import score

    net.eval()
    acc: dict[str, list[float]] = {}
    worst = {"worst_mu": math.inf, "worst_pu21": math.inf}
    for i, it in enumerate(items):
        x = torch.from_numpy(it["ldr"].transpose(2, 0, 1)[None].copy()).to(device)
        pred = _pad_forward(net, x, multiple)[0].float().cpu().numpy().transpose(1, 2, 0)
        s = score(pred, it["hdr"], it["ldr"])
        for k, v in s.items():
            if not math.isnan(v):
                acc.setdefault(k, []).append(v)
        if baseline is not None:
            worst["worst_mu"] = min(worst["worst_mu"], s["psnr_mu"] - baseline[i]["psnr_mu"])
            worst["worst_pu21"] = min(worst["worst_pu21"], s["pu21_psnr"] - baseline[i]["pu21_psnr"])
        if previews is not None and i < PREVIEWS:
            previews.append(preview_image(it["ldr"], pred, it["hdr"]))
    out = {k: float(np.mean(v)) for k, v in acc.items()}
    if baseline is not None and items:
        out.update({k: float(v) for k, v in worst.items()})
    return out


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
                elif isinstance(v, dict):
                    for kk, vv in v.items():
                        if isinstance(vv, (int, float)):
                            self.tb.add_scalar(f"{k}/{kk}", vv, record.get("step", 0))

    def images(self, step: int, previews: list) -> None:
        """Tone-mapped validation previews (input | prediction | reference) to TensorBoard."""
        if self.tb is not None:
            for i, img in enumerate(previews):
                self.tb.add_image(f"val/preview_{i}", img, step, dataformats="HWC")

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()


class GracefulStop:
    """SIGINT/SIGTERM while training (main thread only): the first asks the loop to stop after
    the current step (a clean, exactly resumable checkpoint); the second raises KeyboardInterrupt."""

    def __init__(self, progress: bool = True):
        self.requested = False
        self.progress = progress
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.progress:
            print(f"hdrlift-train: {signal.Signals(signum).name}: stopping after this step "
                  "(send it again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


def _rng_states(train_set) -> dict[str, Any]:
    npst = np.random.get_state()
    return {"data_rng": train_set.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            # numpy's MT19937 key as a list: the checkpoint loads with weights_only=True
            "np_rng": (npst[0], [int(v) for v in npst[1]], int(npst[2]), int(npst[3]), float(npst[4])),
            "py_rng": random.getstate()}


def _set_rng_states(train_set, state: dict[str, Any]) -> None:
    train_set.rng.bit_generator.state = state["data_rng"]
    torch.set_rng_state(state["torch_rng"])
    name, key, pos, has_gauss, cached = state["np_rng"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, cached))
    py = state["py_rng"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def load_checkpoint(path: pathlib.Path, device: torch.device) -> dict[str, Any]:
    """Read a ``checkpoint.pt`` with ``weights_only=True``. Checkpoints of earlier versions of this
    trainer hold numpy's random state as an array; numpy's array reconstruction is allowed for
    them (still no arbitrary code)."""
    core = getattr(np, "_core", None) or np.core
    allowed = [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location=device, weights_only=True)


def train(cfg: TrainConfig, out: pathlib.Path, resume: bool = False, device: str = "auto",
          progress: bool = True, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train ``cfg`` into the run folder ``out`` (a staged recipe when ``cfg.stages`` is set).

    ``on_step(step)`` is called after every completed step. Returns ``{"step", "best_score", "loss",
    "loss_name", "stopped"}`` (``stopped``: ``"iterations"``, ``"time_limit"`` or ``"signal"``;
    a staged run adds ``"stages"``, the result of each stage run).
    """
    cfg.check()
    out = pathlib.Path(out)
    if cfg.stages:
        return train_stages(cfg, out, resume=resume, device=device, progress=progress, on_step=on_step)
    return _train_one(cfg, out, resume=resume, device=device, progress=progress, on_step=on_step)


def train_stages(cfg: TrainConfig, out: pathlib.Path, resume: bool = False, device: str = "auto",
                 progress: bool = True, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run the stages of ``cfg`` one after another (:func:`stage_configs`), stage ``i`` in
    ``out/NN-name/`` starting from stage ``i - 1``'s ``last.safetensors``. A stage is done when it
    reached its iterations or its time limit (``done.json``); a stage stopped by a signal ends the
    run, and ``resume`` continues it exactly. The last stage's weights are copied to ``out/``."""
    stages = stage_configs(cfg)
    out.mkdir(parents=True, exist_ok=True)
    if not resume and any((out / f / "checkpoint.pt").exists() for f, _ in stages):
        raise InputError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    results: list[dict[str, Any]] = []
    prev: pathlib.Path | None = None
    res: dict[str, Any] = {}
    for i, (folder, scfg) in enumerate(stages):
        sub = out / folder
        if prev is not None:
            scfg.init_from = str(prev / "last.safetensors")
        done = sub / "done.json"
        if done.exists():
            res = json.loads(done.read_text())
        else:
            if progress:
                print(f"stage {i + 1}/{len(stages)}: {folder} (loss {scfg.loss}, {scfg.iterations} iterations)",
                      file=sys.stderr, flush=True)
            res = _train_one(scfg, sub, resume=resume and (sub / "checkpoint.pt").exists(), device=device,
                             progress=progress, on_step=on_step)
            if res["stopped"] == "signal":
                results.append({"stage": folder, **res})
                return {**res, "stages": results}
            done.write_text(json.dumps(res))
        results.append({"stage": folder, **res})
        prev = sub
    assert prev is not None
    for name in ("last.safetensors", "best.safetensors"):
        src = prev / name
        if src.exists():
            with replacing(out / name) as tmp:
                shutil.copyfile(src, tmp)
    return {**res, "stages": results}


def _train_one(cfg: TrainConfig, out: pathlib.Path, resume: bool = False, device: str = "auto",
               progress: bool = True, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    from hdrlift.training.data import ParallelPatches, PatchDataset, open_hdr, validation_set

    cfg = copy.deepcopy(cfg)  # fit_time changes iterations (and val_every) of this run only
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch and validation sizes
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    multiple = trainable_info(cfg.model).multiple_of
    loss_name = resolve_loss(cfg.model, cfg.loss, cfg.gan)
    if cfg.patch % multiple:
        raise InputError(f"patch {cfg.patch} is not a multiple of {multiple}, which model {cfg.model!r} needs")
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not resume:
        raise InputError(f"{out} already holds a run; pass --resume to continue it or choose another --out")

    counts: dict[str, int] = {}

    def write_config() -> None:
        extra = {"data_counts": counts} if counts else {}
        (out / "config.json").write_text(json.dumps({**dataclasses.asdict(cfg), "loss_resolved": loss_name, **extra},
                                                    indent=2))

    write_config()

    seed_everything(cfg.seed)
    net = build_network(cfg.model)
    if cfg.init_from and cfg.init_partial:
        loaded, fresh = load_partial(net, cfg.init_from)
        if progress:
            print(f"init_from {cfg.init_from}: {loaded} tensors loaded, {len(fresh)} start fresh"
                  + (f" ({', '.join(fresh[:4])}{', ...' if len(fresh) > 4 else ''})" if fresh else ""),
                  file=sys.stderr, flush=True)
    elif cfg.init_from:
        from hdrlift.engine.models.loading import load_state

        load_state(net, cfg.init_from, cfg.model)
    net = net.to(dev)
    ema = EMA(net, cfg.ema)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and dev.type == "cuda"
    amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    disc = opt_d = scaler_d = None
    if cfg.gan:
        from hdrlift.training.discriminator import MoriwakiDiscriminator

        disc = MoriwakiDiscriminator().to(dev)
        # Moriwaki §4: ADAM for both players (default betas)
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.d_lr or cfg.lr)
        scaler_d = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    if loss_name in VGG_LOSSES:
        _vgg(dev)  # a missing VGG19 file stops here with its one-line message, not at step 1
    try:
        train_set = PatchDataset(open_hdr(cfg.data, cfg.train_split), size=cfg.patch, seed=cfg.seed,
                                 clip_range=cfg.clip_range, curves=cfg.curves, noise=cfg.noise,
                                 compression=cfg.compression, sampling=cfg.patch_sampling,
                                 threshold=cfg.santos_threshold, tries=cfg.sampling_tries,
                                 pretrain=cfg.pretrain, mask_coverage=cfg.mask_coverage, recolour=cfg.recolour)
        val_items = validation_set(open_hdr(cfg.data, cfg.val_split), views=cfg.val_views,
                                   size=cfg.val_size, cases=cfg.val_cases) if cfg.val_split else []
    except (FileNotFoundError, OSError) as exc:  # a missing folder or an unreadable pack
        raise InputError(str(exc)) from None
    except ValueError as exc:  # an unknown validation case
        raise InputError(str(exc)) from None
    val_base = baseline_scores(val_items)
    # how many images each split held (the model card reports them)
    counts.update(train=len(train_set.folder),
                  val=len({it["name"].split("#", 1)[0] for it in val_items}))
    write_config()

    def d_lr(step: int) -> float:
        return lr_at(cfg, step) * ((cfg.d_lr / cfg.lr) if cfg.d_lr and cfg.lr else 1.0)

    step = 0
    best = -float("inf")
    elapsed_before = 0.0
    fit_pending = cfg.fit_time
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, dev)
        net.load_state_dict(state["net"])
        ema.shadow.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        scaler.load_state_dict(state["scaler"])
        if disc is not None:
            if "disc" not in state:
                raise InputError(f"{ckpt_path} was written without \"gan\": true; it cannot resume a GAN run")
            disc.load_state_dict(state["disc"])
            opt_d.load_state_dict(state["opt_d"])
            scaler_d.load_state_dict(state["scaler_d"])
        step = state["step"]
        best = state["best"]
        elapsed_before = state.get("elapsed", 0.0)
        _set_rng_states(train_set, state)
        if cfg.fit_time and "fitted" in state:
            fit_pending = not state["fitted"]
            cfg.iterations, cfg.val_every = int(state["iterations"]), int(state["val_every"])
            write_config()

    logger = Logger(out)
    batches = None
    if cfg.workers:
        # batch i drawn from rng (seed, i) in worker processes: a resumed run goes on at batch `step`
        batches = ParallelPatches(train_set, cfg.batch, cfg.workers, cfg.seed, start=step,
                                  pin_memory=dev.type == "cuda")
    fit_mark: tuple[int, float] | None = None
    start_step = step
    t0 = time.time()
    # RNG states at the start of the current step, and whether any weight changed since:
    # a hard stop (exception) in a pristine step still writes an exact checkpoint
    snap = _rng_states(train_set)
    pristine = True

    def save_checkpoint(rng: dict[str, Any]) -> None:
        state = {
            "net": net.state_dict(), "ema": ema.shadow.state_dict(), "opt": opt.state_dict(),
            "scaler": scaler.state_dict(), "step": step, "best": best,
            "elapsed": elapsed_before + time.time() - t0, **rng,
        }
        if cfg.fit_time:
            state.update(fitted=not fit_pending, iterations=cfg.iterations, val_every=cfg.val_every)
        if disc is not None:
            state.update(disc=disc.state_dict(), opt_d=opt_d.state_dict(), scaler_d=scaler_d.state_dict())
        with replacing(ckpt_path) as tmp:
            torch.save(state, tmp)

    meta = {"model": cfg.model, "config": json.dumps(dataclasses.asdict(cfg)), "loss": loss_name}
    running = None
    last_loss = float("nan")
    stopped = "iterations"
    clean_exit = False
    try:
        with GracefulStop(progress) as stop:
            while step < cfg.iterations:
                snap = _rng_states(train_set)
                pristine = True
                net.train()
                if batches is not None:
                    ldr, hdr = (t.to(dev, non_blocking=True) for t in next(batches))
                else:
                    ldr_np, hdr_np = train_set.batch(cfg.batch)
                    ldr = torch.from_numpy(ldr_np).to(dev)
                    hdr = torch.from_numpy(hdr_np).to(dev)
                for g in opt.param_groups:
                    g["lr"] = lr_at(cfg, step)
                loss_d = None
                if disc is None:
                    with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                        loss = compute_loss(net, cfg.model, ldr, hdr, loss_name, cfg.loss_params)
                else:
                    # Moriwaki §4: the discriminator (Eq. 5) and the generator (Eq. 1) updated alternately
                    for g in opt_d.param_groups:
                        g["lr"] = d_lr(step)
                    disc.train()
                    disc.requires_grad_(True)
                    with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                        y = log_prediction(net, ldr)
                        loss_d = L.moriwaki_d(disc(y.detach()), disc(L.log_image(hdr)))
                    if not torch.isfinite(loss_d):
                        raise HdrliftError(f"discriminator loss became {loss_d.item()} at step {step}; lower d_lr")
                    opt_d.zero_grad(set_to_none=True)
                    scaler_d.scale(loss_d).backward()
                    pristine = False
                    scaler_d.step(opt_d)
                    scaler_d.update()
                    disc.requires_grad_(False)
                    with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                        loss = generator_loss(net, cfg.model, ldr, hdr, loss_name, y, disc(y))
                if not torch.isfinite(loss):
                    raise HdrliftError(f"loss became {loss.item()} at step {step}; lower lr or check the data")
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                gnorm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                pristine = False
                scaler.step(opt)
                scaler.update()
                ema.update(net, step)
                step += 1
                snap = _rng_states(train_set)
                pristine = True
                last_loss = float(loss.item())
                running = last_loss if running is None else 0.95 * running + 0.05 * last_loss
                elapsed = elapsed_before + time.time() - t0
                if fit_pending and step - start_step >= FIT_SKIP_STEPS:
                    now = time.time()
                    if fit_mark is None:
                        fit_mark = (step, now)
                    elif (now - fit_mark[1] >= max(FIT_WINDOW_S[0], FIT_WINDOW_S[1] * cfg.time_limit_min * 60)
                          and step - fit_mark[0] >= FIT_SKIP_STEPS):
                        fit_pending = False
                        rate = (step - fit_mark[0]) / (now - fit_mark[1])
                        left = FIT_MARGIN * cfg.time_limit_min * 60 - elapsed
                        fitted = max(step + 1, step + int(rate * left))
                        rec = {"step": step, "fit_steps_per_s": round(rate, 3), "fit_planned": cfg.iterations}
                        if fitted < cfg.iterations:
                            cfg.iterations = fitted
                            if cfg.val_count:
                                cfg.val_every = max(1, math.ceil(fitted / cfg.val_count))
                            write_config()
                            meta["config"] = json.dumps(dataclasses.asdict(cfg))
                        rec.update(fit_iterations=cfg.iterations, val_every=cfg.val_every)
                        logger.log(rec)
                        if progress:
                            print(f"fit_time: {rate:.2f} steps/s, {cfg.iterations} iterations fit "
                                  f"{cfg.time_limit_min:g} min (validation every {cfg.val_every})",
                                  file=sys.stderr, flush=True)
                if step % cfg.log_every == 0 or step == 1:
                    rec = {"step": step, "loss": last_loss, "loss_smooth": running, "grad_norm": float(gnorm),
                           "lr": lr_at(cfg, step - 1), "elapsed_s": round(elapsed, 1)}
                    if loss_d is not None:
                        rec["loss_d"] = float(loss_d.item())
                    logger.log(rec)
                    if progress:
                        print(f"step {step}/{cfg.iterations} loss {running:.5f} lr {lr_at(cfg, step - 1):.2e} "
                              f"{elapsed / 60:.1f} min", file=sys.stderr, flush=True)
                if val_items and (step % cfg.val_every == 0 or step == cfg.iterations):
                    previews: list = [] if logger.tb is not None else None
                    metrics = validate(ema.shadow, val_items, dev, multiple, previews, val_base)
                    logger.log({"step": step, "val": metrics, "elapsed_s": round(elapsed, 1)})
                    logger.images(step, previews or [])
                    if progress:
                        print(f"  val {json.dumps({k: round(v, 3) for k, v in metrics.items()})}", file=sys.stderr, flush=True)
                    sel = select_score(cfg.select, metrics)
                    if sel > best:
                        best = sel
                        save_safetensors(ema.shadow, out / "best.safetensors",
                                         {**meta, "step": str(step), "val": json.dumps(metrics)})
                if step % cfg.checkpoint_every == 0:
                    save_checkpoint(snap)
                if on_step is not None:
                    on_step(step)
                if stop.requested and step < cfg.iterations:
                    stopped = "signal"
                    if progress:
                        print(f"stopped at step {step}; continue with --resume", file=sys.stderr)
                    break
                if cfg.time_limit_min and elapsed > cfg.time_limit_min * 60 and step < cfg.iterations:
                    stopped = "time_limit"
                    if progress:
                        print(f"time limit {cfg.time_limit_min} min reached at step {step}", file=sys.stderr)
                    break
        clean_exit = True
    finally:
        if clean_exit or pristine:
            save_checkpoint(snap)
        elif progress:
            print("hdrlift-train: stopped inside a step; the last periodic checkpoint is kept", file=sys.stderr)
        save_safetensors(ema.shadow, out / "last.safetensors", {**meta, "step": str(step)})
        logger.close()
        if batches is not None:
            batches.close()
    return {"step": step, "best_score": best, "loss": last_loss, "loss_name": loss_name, "stopped": stopped}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hdrlift-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Config keys: " + ", ".join(f.name for f in dataclasses.fields(TrainConfig))
                                + ".\nLosses: " + ", ".join(loss_names()) + ".\nSee docs/training.md.")
    p.add_argument("--model", help="registered network to train (overrides the config)")
    p.add_argument("--config", help="JSON config (see training/configs/)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, weights)")
    p.add_argument("--data", help="HDR folder or pack .npz (default ../shared/data/hdri or $HDRLIFT_DATA)")
    p.add_argument("--iterations", type=int)
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("hdrlift-train", lambda: _train(args),
                   interrupted="hdrlift-train: interrupted; the last checkpoint is kept, continue with --resume")


def _train(args: argparse.Namespace) -> int:
    cfg = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    if args.model:
        cfg.model = args.model
    if args.data:
        cfg.data = args.data
    if args.iterations:
        cfg.iterations = args.iterations
    res = train(cfg, pathlib.Path(args.out), resume=args.resume, device=args.device, progress=not args.quiet)
    print(json.dumps(res))
    if res.get("stopped") == "signal":
        print("hdrlift-train: interrupted; checkpoint saved, continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
