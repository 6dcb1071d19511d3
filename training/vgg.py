"""VGG19 feature extractor for the perceptual losses of the papers followed here.

Used by Moriwaki et al. 2018 (§3.2 Eq. 6: ``pool5`` of VGG19 on log images), Santos et
al. 2020 (§3.2 Eq. 8 and 11-12: ``pool1``, ``pool2``, ``pool3`` on mu-law images) and
SingleHDR (Qiu's survey, §7.1: the perceptual term ``L_p`` of the hallucination loss).

Layer layout (Simonyan & Zisserman 2015, configuration "E"): five blocks of 3x3 convolutions
(padding 1, each followed by a ReLU) with 64, 64 | 128, 128 | 256 x 4 | 512 x 4 | 512 x 4
channels, a 2x2 max pool (stride 2) closing every block. The modules sit in one
``nn.Sequential`` called ``features`` with the index of every conv, ReLU and pool in the order
above (conv1_1 = 0, relu1_1 = 1, ..., pool5 = 36), so a state dict whose keys are
``features.<index>.weight`` / ``.bias`` (the layout of the ImageNet checkpoint
``vgg19-dcbb9e9d.pth`` distributed for torchvision) loads as is. The classifier is not built.

Weights are never downloaded: they load from

1. the ``weights`` argument, else
2. ``$HDRLIFT_VGG19``, else
3. torch's hub cache, ``<torch.hub.get_dir()>/checkpoints/vgg19-dcbb9e9d.pth``
   (``~/.cache/torch/hub/checkpoints/`` by default),

as ``.safetensors`` or as a torch ``.pth`` read with ``torch.load(weights_only=True)`` (tensors
only, no pickled code). When none exists, :class:`VGG19Features` raises a one-line
:class:`~hdrlift.engine.errors.ModelError` saying where to put the file. Tests and plumbing
checks use ``VGG19Features(pretrained=False)`` (random weights).

Input: ``(N, 3, H, W)`` RGB, nominally in [0, 1]; it is standardised with the ImageNet mean and
standard deviation the network was trained with (``normalize=False`` skips this).
"""

from __future__ import annotations

import os
import pathlib

import torch
from torch import nn

from hdrlift.engine.errors import ModelError

CHECKPOINT_NAME = "vgg19-dcbb9e9d.pth"
ENV_VAR = "HDRLIFT_VGG19"
# configuration "E": channels per conv, "M" = 2x2 max pool
CONFIG_E = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
            512, 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> list[str]:
    names: list[str] = []
    block, conv = 1, 1
    for item in CONFIG_E:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


LAYER_NAMES = tuple(_layer_names())
LAYER_INDEX = {n: i for i, n in enumerate(LAYER_NAMES)}


def default_weights_path() -> pathlib.Path | None:
    """The first existing file of ``$HDRLIFT_VGG19`` and the torch hub cache, else None."""
    env = os.environ.get(ENV_VAR)
    if env:
        return pathlib.Path(env)
    hub = pathlib.Path(torch.hub.get_dir()) / "checkpoints" / CHECKPOINT_NAME
    return hub if hub.is_file() else None


def _read_state(path: pathlib.Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"VGG19 weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except ModelError:
        raise
    except Exception as exc:  # truncated file, not a checkpoint, pickled code refused
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot read VGG19 weights {path}: {first}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"VGG19 weights {path} do not hold a state dict")
    return state


class VGG19Features(nn.Module):
    """The convolutional part of VGG19 (module docstring); frozen, eval mode.

    ``forward(x, layers)`` returns ``{name: activation}`` for the requested layer names
    (``conv1_1`` ... ``relu5_4``, ``pool1`` ... ``pool5``), running only as deep as needed.
    """

    def __init__(self, pretrained: bool = True, weights: str | os.PathLike | None = None,
                 normalize: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in CONFIG_E:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(item)
        self.features = nn.Sequential(*layers)
        self.normalize = bool(normalize)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if pretrained or weights is not None:
            path = pathlib.Path(weights) if weights is not None else default_weights_path()
            if path is None:
                raise ModelError(
                    f"perceptual losses need ImageNet VGG19 weights: put {CHECKPOINT_NAME} in "
                    f"{pathlib.Path(torch.hub.get_dir()) / 'checkpoints'} or set ${ENV_VAR} to the file")
            self.load_weights(path)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def load_weights(self, path: str | os.PathLike) -> None:
        path = pathlib.Path(path)
        state = _read_state(path)
        feats = {k: v for k, v in state.items() if k.startswith("features.")}
        if not feats:
            raise ModelError(f"VGG19 weights {path} have no 'features.*' tensors")
        try:
            self.load_state_dict(feats, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"VGG19 weights {path} do not match the VGG19 layout: "
                             f"{str(exc).strip().splitlines()[0]}") from None

    def train(self, mode: bool = True) -> "VGG19Features":  # always frozen
        return super().train(False)

    def forward(self, x: torch.Tensor, layers: tuple[str, ...] | list[str] = ("pool5",)) -> dict[str, torch.Tensor]:
        unknown = [n for n in layers if n not in LAYER_INDEX]
        if unknown:
            raise ValueError(f"unknown VGG19 layer(s) {unknown}; known: {', '.join(LAYER_NAMES)}")
        wanted = {LAYER_INDEX[n]: n for n in layers}
        last = max(wanted)
        h = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype) if self.normalize else x
        out: dict[str, torch.Tensor] = {}
        for i, mod in enumerate(self.features):
            h = mod(h)
            if i in wanted:
                out[wanted[i]] = h
            if i == last:
                break
        return out


_CACHE: dict[str, VGG19Features] = {}


def shared_vgg(device: str | torch.device = "cpu") -> VGG19Features:
    """One pretrained extractor per device (raises the one-line error when weights are absent)."""
    key = str(torch.device(device))
    if key not in _CACHE:
        _CACHE[key] = VGG19Features(pretrained=True).to(device)
    return _CACHE[key]


__all__ = ["VGG19Features", "LAYER_NAMES", "default_weights_path", "shared_vgg", "CHECKPOINT_NAME", "ENV_VAR"]
