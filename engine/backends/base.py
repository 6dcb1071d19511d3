"""One interface for every inference back end (torch, onnxruntime, TensorRT).

A :class:`Backend` runs one registered model on a batch of frames in the network domain
(docs/CONTRACTS.md): ``run(x)`` takes ``x`` as a numpy ``(N, 3, H, W)`` float32 array of display
code values and returns ``(hdr, mask)``: ``hdr`` ``(N, 3, H, W)`` float32 scene-linear Rec.709 and
``mask`` ``(N, 1, H, W)`` float32 in ``[0, 1]``. Any ``H`` and ``W`` are accepted; the model's
``multiple_of`` padding happens inside the exported graphs (:class:`InferenceWrapper`), so the
torch module, the ONNX file, the TensorRT plan and the TorchScript file all compute the same thing.

This module is the interface and what every back end shares (the wrapper the exports trace,
the cache keys); :mod:`hdrlift.engine.backends.selection` builds and picks back ends, and
:mod:`hdrlift.engine.backends.exporters` writes the graphs they run.
"""

from __future__ import annotations

import abc
import hashlib
import importlib.util
import logging
import os
import pathlib
import re

import numpy as np
import torch
from torch import nn

from hdrlift.engine.errors import InputError, ModelError
from hdrlift.engine.models.loading import LoadedModel
from hdrlift.engine.models.registry import get_info

log = logging.getLogger("hdrlift.backends")

KINDS = ("auto", "torch", "onnxruntime", "tensorrt")
DEVICES = ("cpu", "cuda", "auto")
PRECISIONS = ("fp32", "fp16", "bf16")
EXPORT_FORMAT_VERSION = "1"  # bump when InferenceWrapper changes: invalidates cached exports
INPUT_NAME = "ldr"
OUTPUT_NAMES = ("hdr", "mask")


# --------------------------------------------------------------------------- shared helpers
def default_cache_dir() -> pathlib.Path:
    """``$HDRLIFT_CACHE``, else ``$XDG_CACHE_HOME/hdrlift``, else ``~/.cache/hdrlift``."""
    env = os.environ.get("HDRLIFT_CACHE")
    if env:
        return pathlib.Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "hdrlift"


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """``device`` checked (cpu, cuda, cuda:N, auto) and ``auto`` resolved; ModelError, one line,
    for an unknown name or a CUDA device torch cannot see (a CPU build of torch, no GPU)."""
    if device not in DEVICES and not re.fullmatch(r"cuda:\d+", str(device)):
        raise ModelError(f"unknown device {device!r}; choose one of cpu, cuda, cuda:N, auto")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda") and not cuda_available():
        raise ModelError(f"device {device!r} requested but torch sees no CUDA GPU (torch {torch.__version__}"
                         f"{'' if torch.version.cuda else ', a CPU build'}); use --device cpu")
    if device.startswith("cuda:") and int(device.split(":")[1]) >= torch.cuda.device_count():
        raise ModelError(f"device {device!r}: torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def tensorrt_importable() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def weights_hash(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of the model's state dict: names, dtypes, shapes and bytes.

    Covers shipped weights, user ``--weights`` and random initialisations alike, so a cache
    entry can never serve an export made from other weights.
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        flat = t.reshape(-1)  # 0-dim buffers (BatchNorm counters) cannot be viewed as bytes
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def export_key(model: LoadedModel, *, opset: int = 17, fp16: bool = False) -> str:
    """The cache key of an exported graph: model name, version, weights hash, opset, precision."""
    info = model.info
    prec = "fp16" if fp16 else "fp32"
    return f"{info.name}-v{info.version}-{weights_hash(model)}-op{opset}-{prec}-x{EXPORT_FORMAT_VERSION}"


def wrap_module(name: str, net: nn.Module) -> LoadedModel:
    """A :class:`LoadedModel` around a network built elsewhere (e.g. ``get_info(name).factory()``
    with random initialisation, or a checkpoint in training), eval mode, no gradients. Every back
    end accepts it in place of a model name."""
    model = LoadedModel(get_info(name), net).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class InferenceWrapper(nn.Module):
    """``x -> (hdr, mask)`` for any ``H, W``: pads to the model's ``multiple_of`` (reflection, at the
    bottom and right, as ``LoadedModel``), runs the network once, crops both outputs.

    Classical operators compute ``hdr`` and ``mask`` in one pass (``expand``); a network may offer
    ``reconstruction_mask_from(x, hdr)`` to derive the mask from the output it already has,
    otherwise ``reconstruction_mask(x)`` is called. Written without data-dependent Python branches
    so that the ONNX/TorchScript tracer keeps ``H`` and ``W`` dynamic. Inputs smaller than the
    padding (``pad >= size``) cannot be reflected; :meth:`Backend.run` replicates those up to the
    multiple first, as ``LoadedModel`` does.
    """

    def __init__(self, model: LoadedModel, outputs: str = "both"):
        super().__init__()
        self.net = model.net
        self.multiple = int(model.info.multiple_of)
        self.outputs = outputs  # "both" or "hdr" (TorchScript for Nuke)
        self.fused = hasattr(self.net, "expand")
        self.mask_from = hasattr(self.net, "reconstruction_mask_from")
        self.has_mask = hasattr(self.net, "reconstruction_mask")

    def forward(self, x: torch.Tensor):
        h, w = x.shape[-2], x.shape[-1]
        m = self.multiple
        if m > 1:
            ph = (m - h % m) % m
            pw = (m - w % m) % m
            xp = nn.functional.pad(x, (0, pw, 0, ph), mode="reflect")
        else:
            xp = x
        if self.fused:
            hdr, mask = self.net.expand(xp)
        else:
            hdr = self.net(xp)
            if self.outputs == "hdr":
                mask = hdr[:, :1]
            elif self.mask_from:
                mask = self.net.reconstruction_mask_from(xp, hdr)
            elif self.has_mask:
                mask = self.net.reconstruction_mask(xp)
            else:
                mask = torch.zeros_like(xp[:, :1])
        hdr = hdr[:, :, :h, :w]
        if self.outputs == "hdr":
            return hdr
        return hdr, mask[:, :, :h, :w]


# --------------------------------------------------------------------------- the interface
class Backend(abc.ABC):
    """Runs one model. Subclasses implement :meth:`_run` on inputs whose size reflection-padding
    can handle; :meth:`run` validates, handles tiny inputs and returns float32 numpy arrays."""

    name: str = "backend"

    def __init__(self, model: LoadedModel, device: str, precision: str):
        self.model = model
        self.info = model.info
        self.model_name = model.info.name
        self.multiple_of = int(model.info.multiple_of)
        self.device = device
        self.precision = precision
        self.requested_precision = precision  # create_backend sets what the caller asked for
        # largest (H, W) one call accepts (TensorRT profiles); None = any size
        self.max_hw: tuple[int, int] | None = None
        self.max_batch: int | None = None

    @abc.abstractmethod
    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x`` (N, 3, H, W) float32 C-contiguous -> (hdr, mask), both float32."""

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x`` (N, 3, H, W) float32 code values -> ``(hdr (N,3,H,W), mask (N,1,H,W))`` float32."""
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"back end input must be N x 3 x H x W, got shape {tuple(x.shape)}")
        if min(x.shape) < 1:
            raise InputError(f"back end input is empty: shape {tuple(x.shape)}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        n, _, h, w = x.shape
        m = self.multiple_of
        ph, pw = (-h) % m, (-w) % m
        if (ph or pw) and not (ph < h and pw < w):
            # too small to reflect: replicate up to the multiple (LoadedModel's rule)
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
        hdr, mask = self._run(x)
        return (np.ascontiguousarray(hdr[:, :, :h, :w], dtype=np.float32),
                np.ascontiguousarray(mask[:, :, :h, :w], dtype=np.float32))

    def run_tensor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The device path's call (``Pipeline`` with ``device_colour``): ``x`` (N, 3, H, W) float32
        code values, a tensor on this back end's device -> ``(hdr, mask)`` float32 tensors on the
        same device, computed as :meth:`run` computes them. This default goes through :meth:`run`
        on the host; back ends that run on torch tensors (torch, TensorRT) keep the frames on
        the device and queue the work on the current CUDA stream without waiting for it."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"back end input must be N x 3 x H x W, got shape {tuple(x.shape)}")
        hdr, mask = self.run(x.detach().float().cpu().numpy())
        return torch.from_numpy(hdr).to(x.device), torch.from_numpy(mask).to(x.device)

    def _pad_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`run`'s rule for inputs too small to reflect, on a tensor: replicate them up to
        the model's multiple (``LoadedModel``'s rule)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"back end input must be N x 3 x H x W, got shape {tuple(x.shape)}")
        if min(x.shape) < 1:
            raise InputError(f"back end input is empty: shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = self.multiple_of
        ph, pw = (-h) % m, (-w) % m
        if (ph or pw) and not (ph < h and pw < w):
            x = nn.functional.pad(x.float(), (0, pw, 0, ph), mode="replicate")
        return x

    def describe(self) -> dict:
        """What runs where: for logs, ``--verbose`` and the server's info call."""
        return {
            "backend": self.name,
            "model": self.model_name,
            "model_version": self.info.version,
            "device": self.device,
            "precision": self.precision,
            "multiple_of": self.multiple_of,
            **({"precision_requested": self.requested_precision}
               if self.requested_precision != self.precision else {}),
        }

    def close(self) -> None:
        """Release sessions/engines (optional)."""

    def __repr__(self) -> str:
        d = self.describe()
        return f"<{type(self).__name__} {d['model']} on {d['device']} {d['precision']}>"
