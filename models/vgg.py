"""Frozen VGG-19 and VGG-16 feature extractors with the papers' layer names, and their weight loading.

Layers are named as in Gatys et al. and Simonyan & Zisserman: ``conv1_1, relu1_1, conv1_2,
relu1_2, pool1, conv2_1, ... relu5_4, pool5`` (block b, layer l of the block). The network is
truncated after the deepest layer a loss uses, so a ``relu4_2`` content loss and
``relu1_1 .. relu5_1`` style losses never run ``conv5_2`` and beyond.

VGG-19 ("configuration E", 2-2-4-4-4 convolutions per block) is the Gatys et al. 2015 loss
network; VGG-16 ("configuration D", 2-2-3-3-3, names up to ``relu5_3``) is the one of Johnson,
Alahi, Fei-Fei 2016 (content ``relu2_2``, style ``relu1_2, relu2_2, relu3_3, relu4_3``). One
class, :class:`VGGFeatures`, builds either; :class:`VGG19Features`, :data:`LAYER_NAMES` and
:func:`load_vgg19` are the VGG-19 names the Gatys code uses.

The extractor takes RGB images in [0, 1] and applies the input convention of its weights
itself, so callers never see it:

* ``torchvision``: ImageNet mean/std normalisation of RGB in [0, 1] (torchvision's
  ``VGG19_Weights.IMAGENET1K_V1`` / ``VGG16_Weights.IMAGENET1K_V1``, downloaded once into the
  torch cache).
* ``caffe``: the original Caffe VGG-19 / VGG-16 converted to PyTorch (``vgg19-d01eb7cb.pth`` /
  ``vgg16-00b39a1b.pth``, used by neural-style / neural-style-pt): BGR channel order, values in
  0..255, ImageNet mean subtracted and no division by a std.

Feature magnitudes differ by about two orders between the two conventions, hence so do the
loss weights that balance content and style (see ``experiments/gatys.yaml``).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import torch
from torch import nn

from data.download import fetch_file
from utils.checkpoint import CheckpointError, load_file
from utils.errors import UserError

Pooling = Literal["max", "avg"]
Preprocess = Literal["auto", "torchvision", "caffe"]
Arch = Literal["vgg19", "vgg16"]

# (channels, convolutions) per block: configurations E (VGG-19) and D (VGG-16) of Simonyan & Zisserman.
_ARCH_BLOCKS: dict[str, tuple[tuple[int, int], ...]] = {
    "vgg19": ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4)),
    "vgg16": ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
}
_BLOCKS = _ARCH_BLOCKS["vgg19"]

IMAGENET_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"  # VGG19_Weights.IMAGENET1K_V1
IMAGENET_FILE = "vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # on 0..255, the values the Caffe model was trained with
DOWNLOAD_TIMEOUT_S = 20.0  # an offline machine fails name resolution at once; a firewalled one must not hang


@dataclass(frozen=True)
class _ArchFiles:
    file: str  # torchvision's ImageNet weights, as named in the torch cache
    url: str
    hash_prefix: str
    caffe_file: str  # the Caffe conversion that also works offline


_FILES = {
    "vgg19": _ArchFiles(IMAGENET_FILE, IMAGENET_URL, "dcbb9e9d", "vgg19-d01eb7cb.pth"),
    # VGG16_Weights.IMAGENET1K_V1
    "vgg16": _ArchFiles("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
                        "397923af", "vgg16-00b39a1b.pth"),
}


def _check_arch(arch: str) -> None:
    if arch not in _ARCH_BLOCKS:
        raise ValueError(f"unknown VGG arch {arch!r}; valid: {', '.join(_ARCH_BLOCKS)}")


def _title(arch: str) -> str:
    return f"VGG-{arch[3:]}"


def _layer_names(blocks: tuple[tuple[int, int], ...] = _BLOCKS) -> list[str]:
    names = []
    for b, (_, n_conv) in enumerate(blocks, start=1):
        for i in range(1, n_conv + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names


LAYER_NAMES: tuple[str, ...] = tuple(_layer_names())
"""All 37 VGG-19 layer names in order; index i is ``torchvision.models.vgg19().features[i]``."""

VGG16_LAYER_NAMES: tuple[str, ...] = tuple(_layer_names(_ARCH_BLOCKS["vgg16"]))
"""All 31 VGG-16 layer names in order; index i is ``torchvision.models.vgg16().features[i]``."""


def layer_names(arch: Arch = "vgg19") -> tuple[str, ...]:
    """All layer names of ``arch`` in order (:data:`LAYER_NAMES` or :data:`VGG16_LAYER_NAMES`)."""
    _check_arch(arch)
    return LAYER_NAMES if arch == "vgg19" else VGG16_LAYER_NAMES


class VGGWeightsUnavailable(UserError, RuntimeError):
    """No usable VGG weights; the message says where the file was expected and how to give one
    (a :class:`UserError`: every command prints it as one line and exits 2)."""


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


class VGGFeatures(nn.Module):
    """VGG-19 or VGG-16 convolutional layers up to the deepest of ``layers``, frozen, in eval mode.

    Args:
        layers: names of the layers whose activations :meth:`forward` returns.
        pooling: ``max`` (the trained network) or ``avg`` (Gatys et al. suggest it for
            smoother images; a student project report found it best with an lr scheduler).
        convention: input convention of the weights that will be loaded.
        arch: ``vgg19`` (layer names :data:`LAYER_NAMES`) or ``vgg16`` (:data:`VGG16_LAYER_NAMES`).

    ``forward(x)``: x (N, 3, H, W) RGB in [0, 1] -> {layer name: (N, C_l, H_l, W_l)}.
    Parameters are named ``body.<layer>.weight``; :func:`load_vgg` maps torchvision's
    ``features.<i>.*`` keys and Caffe conversions' ``conv1_1.*`` keys onto them.
    """

    def __init__(self, layers: list[str] | tuple[str, ...], pooling: Pooling = "max",
                 convention: Literal["torchvision", "caffe"] = "torchvision", arch: Arch = "vgg19") -> None:
        super().__init__()
        all_names = layer_names(arch)
        unknown = [name for name in layers if name not in all_names]
        if unknown or not layers:
            raise ValueError(f"unknown {_title(arch)} layer(s) {unknown or layers}; valid: {', '.join(all_names)}")
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be max or avg, got {pooling!r}")
        self.arch = arch
        self.layers = tuple(dict.fromkeys(layers))
        self.pooling = pooling
        last = max(all_names.index(name) for name in self.layers)
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        in_ch = 3
        for name in all_names[: last + 1]:
            if name.startswith("conv"):
                out_ch = _ARCH_BLOCKS[arch][int(name[4]) - 1][0]
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

    @property
    def min_side(self) -> int:
        """The smallest input side (px) whose deepest requested features exist: each 2x2 pooling
        before them halves the side (rounding down), and one of 1 px cannot be pooled again."""
        return 2 ** sum(name.startswith("pool") for name in self.names)

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False)  # frozen: there is no batch norm or dropout, but stay explicit

    def forward(self, x: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """{layer: features} for ``layers`` (default: the ones it was built for), in one pass that
        stops at the deepest of them; each must be among :attr:`names`."""
        wanted = set(self.layers if layers is None else layers)
        return run_to_deepest(self.body.named_children(), self.norm(x), wanted)


def run_to_deepest(named: Iterable[tuple[str, nn.Module]], x: torch.Tensor,
                   wanted: set[str]) -> dict[str, torch.Tensor]:
    """Run ``named`` layers in order on ``x``, keep the outputs of ``wanted``, stop after the last of them."""
    out: dict[str, torch.Tensor] = {}
    h = x
    for name, module in named:
        h = module(h)
        if name in wanted:
            out[name] = h
            if len(out) == len(wanted):
                break
    return out


class VGG19Features(VGGFeatures):
    """:class:`VGGFeatures` with ``arch="vgg19"``: the Gatys extractor's name and signature."""

    def __init__(self, layers: list[str] | tuple[str, ...], pooling: Pooling = "max",
                 convention: Literal["torchvision", "caffe"] = "torchvision") -> None:
        super().__init__(layers, pooling, convention, "vgg19")


def _build(arch: Arch, layers: list[str] | tuple[str, ...], pooling: Pooling,
           convention: Literal["torchvision", "caffe"]) -> VGGFeatures:
    # VGG-19 stays a VGG19Features, so isinstance checks written for the Gatys code keep holding.
    if arch == "vgg19":
        return VGG19Features(layers, pooling, convention)
    return VGGFeatures(layers, pooling, convention, arch)


# ---------------------------------------------------------------------------------------------
# Weights


@dataclass
class VGGInfo:
    """Where the extractor's weights came from, for logs and report labels."""

    source: str  # "imagenet", "random" or the file path
    convention: str  # "torchvision" or "caffe"
    pretrained: bool
    note: str = ""  # e.g. why random weights are in use
    arch: str = "vgg19"

    @property
    def label(self) -> str:
        if self.pretrained:
            return f"{_title(self.arch)} {self.source} ({self.convention} input)"
        return "random-weight VGG" + (f" ({self.note})" if self.note else "")


def imagenet_cache_path(arch: Arch = "vgg19") -> Path:
    """Where torchvision keeps (and looks for) the ImageNet VGG-19 (or VGG-16) weights."""
    _check_arch(arch)
    return Path(torch.hub.get_dir()) / "checkpoints" / _FILES[arch].file


def _offline_help(expected: Path, arch: Arch = "vgg19") -> str:
    f = _FILES[arch]
    return (
        f"Copy {f.file} (from {f.url}) to {expected}, or pass a local weights file with "
        f"--vgg-weights PATH (config key vgg.weights=PATH; the Caffe-converted {f.caffe_file} also works)."
    )


def _download(url: str, dst: Path, hash_prefix: str | None) -> None:
    """Fetch a weights file into the torch cache (one shared downloader: atomic, a per-request timeout)."""
    fetch_file(url, dst, timeout=DOWNLOAD_TIMEOUT_S, sha256_prefix=hash_prefix)


def _convert_state_dict(sd: dict[str, torch.Tensor], path: str, arch: Arch = "vgg19") -> dict[str, torch.Tensor]:
    """torchvision (``features.<i>.weight``, ``<i>.weight``) or named (``conv1_1.weight``) keys
    -> ``body.<name>.weight``; classifier weights are dropped."""
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    names = layer_names(arch)
    out = {}
    indexed = re.compile(r"^(?:module\.)?(?:features\.)?(\d+)\.(weight|bias)$")
    named = re.compile(r"^(?:module\.)?(?:features\.|body\.)?(conv\d_\d)\.(weight|bias)$")
    for key, value in sd.items():
        if m := indexed.match(key):
            idx = int(m.group(1))
            if idx < len(names) and names[idx].startswith("conv"):
                out[f"body.{names[idx]}.{m.group(2)}"] = value
        elif m := named.match(key):
            out[f"body.{m.group(1)}.{m.group(2)}"] = value
    if not out:
        sample = ", ".join(list(sd)[:5])
        raise VGGWeightsUnavailable(
            f"{path} holds no {_title(arch)} convolution weights (expected keys like features.0.weight or "
            f"conv1_1.weight, found {sample} ...)"
        )
    return out


def _read_weights(path: Path, arch: Arch = "vgg19") -> dict[str, torch.Tensor]:
    try:  # a torch file (weights only, never unpickling code) or a safetensors file
        obj = load_file(path)
    except CheckpointError as e:  # corrupt, truncated, pickled modules ...
        raise VGGWeightsUnavailable(f"cannot read {_title(arch)} weights {path}: {str(e).splitlines()[0]}") from e
    if not isinstance(obj, dict):
        raise VGGWeightsUnavailable(f"{path} holds a {type(obj).__name__}, expected a state_dict")
    return obj


def resolve_convention(weights: str, preprocess: Preprocess) -> Literal["torchvision", "caffe"]:
    """``auto``: caffe for the known Caffe conversions (file name has ``caffe``, ``d01eb7cb`` (VGG-19)
    or ``00b39a1b`` (VGG-16)), torchvision otherwise. Set it explicitly for other Caffe-converted files."""
    if preprocess != "auto":
        return preprocess
    name = Path(weights).name.lower()
    return "caffe" if ("caffe" in name or "d01eb7cb" in name or "00b39a1b" in name) else "torchvision"


def load_vgg19(layers: list[str] | tuple[str, ...], pooling: Pooling = "max", weights: str = "imagenet",
               preprocess: Preprocess = "auto", allow_download: bool = True,
               random_if_unavailable: bool = False, seed: int = 0) -> tuple[VGG19Features, VGGInfo]:
    """:func:`load_vgg` for VGG-19 (the Gatys loss network); returns a :class:`VGG19Features`."""
    net, info = load_vgg("vgg19", layers, pooling, weights, preprocess, allow_download, random_if_unavailable, seed)
    return cast(VGG19Features, net), info  # _build makes every VGG-19 a VGG19Features


def load_vgg(arch: Arch, layers: list[str] | tuple[str, ...], pooling: Pooling = "max", weights: str = "imagenet",
             preprocess: Preprocess = "auto", allow_download: bool = True,
             random_if_unavailable: bool = False, seed: int = 0) -> tuple[VGGFeatures, VGGInfo]:
    """Build the truncated ``arch`` extractor (``vgg19`` or ``vgg16``) and load its weights.

    Args:
        weights: ``imagenet`` (torchvision's file, ``vgg19-dcbb9e9d.pth`` or ``vgg16-397923af.pth``:
            the torch cache, else a download), ``random`` (tests and timing only) or a path to a
            state_dict file.
        preprocess: input convention of the weights; ``auto`` as :func:`resolve_convention`.
        allow_download: if False, ``imagenet`` only looks in the cache.
        random_if_unavailable: instead of raising when ``imagenet`` weights cannot be had, use
            random weights and say so in the returned :class:`VGGInfo` (the offline demo).
        seed: seeds the random initialisation, so random-weight runs are reproducible.

    Raises:
        VGGWeightsUnavailable: the weights are missing or unreadable; the message names the
            expected cache path and the ``--vgg-weights`` / ``vgg.weights`` option.
        ValueError: unknown ``arch`` or layer name.
    """
    _check_arch(arch)
    title, files = _title(arch), _FILES[arch]
    if weights == "random":
        return _random(layers, pooling, seed, arch), VGGInfo("random", "torchvision", False, "explicitly requested",
                                                             arch)
    if weights == "imagenet":
        path = imagenet_cache_path(arch)
        if not path.is_file():
            reason = ""
            if allow_download:
                try:
                    _download(files.url, path, hash_prefix=files.hash_prefix)
                except Exception as e:  # URLError, timeouts, hash mismatch, disk errors
                    why = str(e).split("; try again", 1)[0]  # the download tool's --url hint is not ours
                    reason = f"the download from {files.url} failed ({why})"
            else:
                reason = "downloads are disabled"
            if not path.is_file():
                if random_if_unavailable:
                    note = "no pretrained weights available"
                    return _random(layers, pooling, seed, arch), VGGInfo("random", "torchvision", False, note, arch)
                raise VGGWeightsUnavailable(
                    f"no ImageNet {title} weights at {path} and {reason}. {_offline_help(path, arch)}")
        convention: Literal["torchvision", "caffe"] = "torchvision"
        source = "imagenet"
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise VGGWeightsUnavailable(
                f"{title} weights file {path} does not exist. Use vgg.weights=imagenet (torch cache "
                f"{imagenet_cache_path(arch)}), a path to an existing .pth file, or random (tests only)."
            )
        convention = resolve_convention(weights, preprocess)
        source = str(path)
    net = _build(arch, layers, pooling, convention)
    state = _convert_state_dict(_read_weights(path, arch), str(path), arch)
    own = net.state_dict()
    other = _title("vgg16" if arch == "vgg19" else "vgg19")
    missing = [k for k in own if k not in state]
    if missing:
        raise VGGWeightsUnavailable(f"{path} lacks {title} weights for {', '.join(missing[:6])}"
                                    + (f"; is it a {title} (not {other}) file?" if arch == "vgg16" else ""))
    bad = [k for k in own if state[k].shape != own[k].shape]
    if bad:
        raise VGGWeightsUnavailable(f"{path}: shape mismatch for {bad[0]}: file {tuple(state[bad[0]].shape)}, "
                                    f"{title} {tuple(own[bad[0]].shape)}; is it a {title} (not {other}) file?")
    net.load_state_dict({k: state[k] for k in own})
    return net, VGGInfo(source, convention, True, arch=arch)


def _random(layers: list[str] | tuple[str, ...], pooling: Pooling, seed: int, arch: Arch = "vgg19") -> VGGFeatures:
    """Kaiming-initialised weights (torchvision's VGG init): activations keep their scale with depth.
    Seeded without touching the global RNG, so a random-weight run is reproducible."""
    net = _build(arch, layers, pooling, "torchvision")
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            with torch.no_grad():
                m.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=gen)
                m.bias.zero_()
    return net
