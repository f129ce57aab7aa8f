"""A frozen VGG-19 feature extractor with the paper's layer names, and its weight loading.

Layers are named as in Gatys et al. and Simonyan & Zisserman: ``conv1_1, relu1_1, conv1_2,
relu1_2, pool1, conv2_1, ... relu5_4, pool5`` (block b, layer l of the block). The network is
truncated after the deepest layer a loss uses, so a ``relu4_2`` content loss and
``relu1_1 .. relu5_1`` style losses never run ``conv5_2`` and beyond.

The extractor takes RGB images in [0, 1] and applies the input convention of its weights
itself, so callers never see it:

* ``torchvision``: ImageNet mean/std normalisation of RGB in [0, 1] (torchvision's
  ``VGG19_Weights.IMAGENET1K_V1``, downloaded once into the torch cache).
* ``caffe``: the original Caffe VGG-19 converted to PyTorch (``vgg19-d01eb7cb.pth``, used by
  neural-style / neural-style-pt): BGR channel order, values in 0..255, ImageNet mean subtracted
  and no division by a std.

Feature magnitudes differ by about two orders between the two conventions, hence so do the
loss weights that balance content and style (see ``experiments/gatys.yaml``).
"""

from __future__ import annotations

import re
import socket
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

Pooling = Literal["max", "avg"]
Preprocess = Literal["auto", "torchvision", "caffe"]

# Convolutions per block, as in VGG-19 ("configuration E" of Simonyan & Zisserman).
_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))

IMAGENET_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"  # VGG19_Weights.IMAGENET1K_V1
IMAGENET_FILE = "vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # on 0..255, the values the Caffe model was trained with
DOWNLOAD_TIMEOUT_S = 20.0  # an offline machine fails name resolution at once; a firewalled one must not hang


def _layer_names() -> list[str]:
    names = []
    for b, (_, n_conv) in enumerate(_BLOCKS, start=1):
        for i in range(1, n_conv + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names


LAYER_NAMES: tuple[str, ...] = tuple(_layer_names())
"""All 37 layer names in order; index i is ``torchvision.models.vgg19().features[i]``."""


class VGGWeightsUnavailable(RuntimeError):
    """No usable VGG-19 weights; the message says where the file was expected and how to give one."""


class InputNorm(nn.Module):
    """RGB [0, 1] -> the input convention of the weights (see the module docstring)."""

    def __init__(self, convention: Literal["torchvision", "caffe"]) -> None:
        super().__init__()
        self.convention = convention
        if convention == "torchvision":
            mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        else:
            mean, std = torch.tensor(CAFFE_MEAN_BGR) / 255.0, torch.full((3,), 1.0 / 255.0)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.convention == "caffe":
            x = x.flip(1)  # RGB -> BGR
        return (x - self.mean) / self.std


class VGG19Features(nn.Module):
    """VGG-19 convolutional layers up to the deepest of ``layers``, frozen, in eval mode.

    Args:
        layers: names of the layers whose activations :meth:`forward` returns.
        pooling: ``max`` (the trained network) or ``avg`` (Gatys et al. suggest it for
            smoother images; a student project report found it best with an lr scheduler).
        convention: input convention of the weights that will be loaded.

    ``forward(x)``: x (N, 3, H, W) RGB in [0, 1] -> {layer name: (N, C_l, H_l, W_l)}.
    Parameters are named ``body.<layer>.weight``; :func:`load_vgg19` maps torchvision's
    ``features.<i>.*`` keys and Caffe conversions' ``conv1_1.*`` keys onto them.
    """

    def __init__(self, layers: list[str] | tuple[str, ...], pooling: Pooling = "max",
                 convention: Literal["torchvision", "caffe"] = "torchvision") -> None:
        super().__init__()
        unknown = [name for name in layers if name not in LAYER_NAMES]
        if unknown or not layers:
            raise ValueError(f"unknown VGG-19 layer(s) {unknown or layers}; valid: {', '.join(LAYER_NAMES)}")
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be max or avg, got {pooling!r}")
        self.layers = tuple(dict.fromkeys(layers))
        self.pooling = pooling
        last = max(LAYER_NAMES.index(name) for name in self.layers)
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        in_ch = 3
        for name in LAYER_NAMES[: last + 1]:
            if name.startswith("conv"):
                out_ch = _BLOCKS[int(name[4]) - 1][0]
                modules[name] = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)
                in_ch = out_ch
            elif name.startswith("relu"):
                # Not in-place: a conv output requested as a feature must survive its ReLU.
                modules[name] = nn.ReLU(inplace=False)
            else:
                modules[name] = nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2)
        self.norm = InputNorm(convention)
        self.body = nn.Sequential(modules)
        self.requires_grad_(False)
        self.eval()

    @property
    def names(self) -> list[str]:
        """Names of the layers actually built (the truncated network), in order."""
        return list(self.body._modules)

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # frozen: there is no batch norm or dropout, but stay explicit

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        wanted = set(self.layers)
        out: dict[str, torch.Tensor] = {}
        h = self.norm(x)
        for name, module in self.body.named_children():
            h = module(h)
            if name in wanted:
                out[name] = h
        return out


# ---------------------------------------------------------------------------------------------
# Weights


@dataclass
class VGGInfo:
    """Where the extractor's weights came from, for logs and report labels."""

    source: str  # "imagenet", "random" or the file path
    convention: str  # "torchvision" or "caffe"
    pretrained: bool
    note: str = ""  # e.g. why random weights are in use

    @property
    def label(self) -> str:
        if self.pretrained:
            return f"VGG-19 {self.source} ({self.convention} input)"
        return "random-weight VGG" + (f" ({self.note})" if self.note else "")


def imagenet_cache_path() -> Path:
    """Where torchvision keeps (and looks for) the ImageNet VGG-19 weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE


def _offline_help(expected: Path) -> str:
    return (
        f"Copy {IMAGENET_FILE} (from {IMAGENET_URL}) to {expected}, or pass a local weights file with "
        f"--vgg-weights PATH (config key vgg.weights=PATH; the Caffe-converted vgg19-d01eb7cb.pth also works)."
    )


def _download(url: str, dst: Path, hash_prefix: str | None) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(url, str(dst), hash_prefix=hash_prefix, progress=True)
    finally:
        socket.setdefaulttimeout(old)


def _convert_state_dict(sd: dict[str, torch.Tensor], path: str) -> dict[str, torch.Tensor]:
    """torchvision (``features.<i>.weight``, ``<i>.weight``) or named (``conv1_1.weight``) keys
    -> ``body.<name>.weight``; classifier weights are dropped."""
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    out = {}
    indexed = re.compile(r"^(?:module\.)?(?:features\.)?(\d+)\.(weight|bias)$")
    named = re.compile(r"^(?:module\.)?(?:features\.|body\.)?(conv\d_\d)\.(weight|bias)$")
    for key, value in sd.items():
        if m := indexed.match(key):
            idx = int(m.group(1))
            if idx < len(LAYER_NAMES) and LAYER_NAMES[idx].startswith("conv"):
                out[f"body.{LAYER_NAMES[idx]}.{m.group(2)}"] = value
        elif m := named.match(key):
            out[f"body.{m.group(1)}.{m.group(2)}"] = value
    if not out:
        sample = ", ".join(list(sd)[:5])
        raise VGGWeightsUnavailable(
            f"{path} holds no VGG-19 convolution weights (expected keys like features.0.weight or conv1_1.weight, "
            f"found {sample} ...)"
        )
    return out


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, pickled modules ...
        raise VGGWeightsUnavailable(f"cannot read VGG-19 weights {path}: {str(e).splitlines()[0]}") from e
    if not isinstance(obj, dict):
        raise VGGWeightsUnavailable(f"{path} holds a {type(obj).__name__}, expected a state_dict")
    return obj


def resolve_convention(weights: str, preprocess: Preprocess) -> Literal["torchvision", "caffe"]:
    """``auto``: caffe for the known Caffe conversions (file name has ``caffe`` or ``d01eb7cb``),
    torchvision otherwise. Set it explicitly for other Caffe-converted files."""
    if preprocess != "auto":
        return preprocess
    name = Path(weights).name.lower()
    return "caffe" if ("caffe" in name or "d01eb7cb" in name) else "torchvision"


def load_vgg19(layers: list[str] | tuple[str, ...], pooling: Pooling = "max", weights: str = "imagenet",
               preprocess: Preprocess = "auto", allow_download: bool = True,
               random_if_unavailable: bool = False, seed: int = 0) -> tuple[VGG19Features, VGGInfo]:
    """Build the truncated extractor and load its weights.

    Args:
        weights: ``imagenet`` (torchvision's file: the torch cache, else a download),
            ``random`` (tests and timing only) or a path to a state_dict file.
        preprocess: input convention of the weights; ``auto`` as :func:`resolve_convention`.
        allow_download: if False, ``imagenet`` only looks in the cache.
        random_if_unavailable: instead of raising when ``imagenet`` weights cannot be had, use
            random weights and say so in the returned :class:`VGGInfo` (the offline demo).
        seed: seeds the random initialisation, so random-weight runs are reproducible.

    Raises:
        VGGWeightsUnavailable: the weights are missing or unreadable; the message names the
            expected cache path and the ``--vgg-weights`` / ``vgg.weights`` option.
    """
    if weights == "random":
        return _random(layers, pooling, seed), VGGInfo("random", "torchvision", False, "explicitly requested")
    if weights == "imagenet":
        path = imagenet_cache_path()
        if not path.is_file():
            reason = ""
            if allow_download:
                try:
                    _download(IMAGENET_URL, path, hash_prefix="dcbb9e9d")
                except Exception as e:  # URLError, timeouts, hash mismatch, disk errors
                    reason = f"the download from {IMAGENET_URL} failed ({e})"
            else:
                reason = "downloads are disabled"
            if not path.is_file():
                if random_if_unavailable:
                    note = "no pretrained weights available"
                    return _random(layers, pooling, seed), VGGInfo("random", "torchvision", False, note)
                raise VGGWeightsUnavailable(f"no ImageNet VGG-19 weights at {path} and {reason}. {_offline_help(path)}")
        convention: Literal["torchvision", "caffe"] = "torchvision"
        source = "imagenet"
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise VGGWeightsUnavailable(
                f"VGG-19 weights file {path} does not exist. Use vgg.weights=imagenet (torch cache "
                f"{imagenet_cache_path()}), a path to an existing .pth file, or random (tests only)."
            )
        convention = resolve_convention(weights, preprocess)
        source = str(path)
    net = VGG19Features(layers, pooling, convention)
    state = _convert_state_dict(_read_weights(path), str(path))
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise VGGWeightsUnavailable(f"{path} lacks VGG-19 weights for {', '.join(missing[:6])}")
    bad = [k for k in own if state[k].shape != own[k].shape]
    if bad:
        raise VGGWeightsUnavailable(f"{path}: shape mismatch for {bad[0]}: file {tuple(state[bad[0]].shape)}, "
                                    f"VGG-19 {tuple(own[bad[0]].shape)}; is it a VGG-19 (not VGG-16) file?")
    net.load_state_dict({k: state[k] for k in own})
    return net, VGGInfo(source, convention, True)


def _random(layers: list[str] | tuple[str, ...], pooling: Pooling, seed: int) -> VGG19Features:
    """Kaiming-initialised weights (torchvision's VGG init): activations keep their scale with depth.
    Seeded without touching the global RNG, so a random-weight run is reproducible."""
    net = VGG19Features(layers, pooling, "torchvision")
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            with torch.no_grad():
                m.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=gen)
                m.bias.zero_()
    return net
