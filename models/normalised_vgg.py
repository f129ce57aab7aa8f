"""The normalised VGG-19 of the universal-style-transfer releases, and reading their weights files.

Li et al. 2017 ("Universal Style Transfer via Feature Transforms") and Huang & Belongie 2017
("Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization") both ship a VGG-19
whose weights were rescaled so that every layer's mean activation is one (the "normalised" VGG of
Gatys et al.'s texture work), in this layout:

* a leading 1x1 convolution (3 -> 3) that takes RGB in [0, 1] to the Caffe network's input (BGR,
  0..255, ImageNet mean subtracted): the image convention is baked into the weights;
* every 3x3 convolution after a 1-pixel **reflection** padding (torchvision's VGG pads with zeros);
* 2x2 max pooling: Huang & Belongie's network rounds odd sides up (``ceil_mode``), Li et al.'s
  down; :func:`models.wct.stylize` pads images to multiples of 16, where the two agree.

:class:`NormalisedVGG19` keeps the releases' module indices (``body.0`` the 1x1 conv, ``body.2``
conv1_1, ``body.9`` conv2_1 ... ``body.42`` conv5_1), so Huang & Belongie's ``vgg_normalised.pth``
(as converted to PyTorch by pytorch-AdaIN) loads key for key, and offers the interface of
:class:`models.vgg.VGGFeatures` that :mod:`models.wct` uses (``names``, ``forward(x, layers)``).

The weights files come in three layouts, all read here by their convolutions in order
(:func:`conv_weights`): a ``state_dict`` of an ``nn.Sequential`` (``0.weight``, ``2.weight`` ...:
pytorch-AdaIN's encoder and decoder), one with named blocks (``preprocess_weight``,
``seq.conv1_1.weight`` ...: PytorchWCT's conversions) and Torch7 ``.t7`` files (Li et al.'s
``vgg_normalised_conv{k}_1.t7`` and ``feature_invertor_conv{k}_1.t7``), read with the
``torchfile`` package, which parses the format and runs no code. :func:`assign_convs` copies
such a list into a network, shape by shape, with an error naming the expected layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchfile
from torch import nn

from models.vgg import LAYER_NAMES, run_to_deepest

_WIDTH = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}


class ReflectPad1(nn.Module):
    """1-pixel reflection padding, replication on a map 1 pixel wide (where reflection is
    undefined: relu5_1's input for a 16 px image), as :class:`models.wct.ReflectConv3x3` does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (1, 1, 1, 1), mode="reflect" if min(x.shape[-2:]) > 1 else "replicate")


class NormalisedVGG19(nn.Module):
    """The releases' normalised VGG-19 up to ``relu5_1`` (or the deepest of ``layers``).

    ``forward(x, layers)``: x (N, 3, H, W) RGB in [0, 1] -> {layer name: features}, stopping at the
    deepest layer asked for. Layer names are :data:`models.vgg.LAYER_NAMES`'s (``relu4_1`` ...),
    plus ``preprocess`` (the 1x1 conv) and ``pad*`` (the paddings).
    """

    def __init__(self, layers: Sequence[str] = ("relu5_1",), ceil_mode: bool = False) -> None:
        super().__init__()
        names = ["preprocess"]
        modules: list[nn.Module] = [nn.Conv2d(3, 3, kernel_size=1)]
        deepest = max(LAYER_NAMES.index(layer) for layer in layers)
        if deepest > LAYER_NAMES.index("relu5_1"):
            raise ValueError(f"the released normalised VGG-19 encoders stop at relu5_1; asked for {list(layers)}")
        in_ch = 3
        for name in LAYER_NAMES[: deepest + 1]:
            if name.startswith("conv"):
                out_ch = _WIDTH[int(name[4])]
                names += [f"pad{name[4:]}", name]
                modules += [ReflectPad1(), nn.Conv2d(in_ch, out_ch, kernel_size=3)]
                in_ch = out_ch
            elif name.startswith("relu"):
                names.append(name)
                modules.append(nn.ReLU())
            else:
                names.append(name)
                modules.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_mode))
        self.layers = tuple(layers)
        self.ceil_mode = ceil_mode
        self.names = names
        self.body = nn.Sequential(*modules)
        self.requires_grad_(False)
        self.eval()

    @property
    def min_side(self) -> int:
        """The smallest input side whose deepest features exist (each pooling halves it)."""
        return 2 ** sum(name.startswith("pool") for name in self.names)

    def train(self, mode: bool = True) -> NormalisedVGG19:
        return super().train(False)  # frozen

    def forward(self, x: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = set(self.layers if layers is None else layers)
        missing = wanted - set(self.names)
        if missing:
            raise ValueError(f"the encoder stops at {self.names[-1]}; it has no {sorted(missing)}")
        return run_to_deepest(zip(self.names, self.body, strict=True), x, wanted)


# ---------------------------------------------------------------------------------------------
# Weights files


class LayoutError(ValueError):
    """A weights file is not in the layout expected; the message says what was expected."""


Conv = tuple[str, torch.Tensor, torch.Tensor]  # (where in the file, weight, bias)


def read_t7(path: str | Path) -> Any:
    """A Torch7 ``.t7`` file's object (``torchfile``: a parser, no code runs); raises
    :class:`LayoutError` when the file is not one."""
    try:
        return torchfile.load(str(path))
    except Exception as e:  # torchfile raises struct / value / its own errors on foreign bytes
        raise LayoutError(f"{path} is not a readable Torch7 file ({type(e).__name__}: {e})") from e


def _t7_convs(obj: Any) -> list[Conv]:
    modules = getattr(obj, "modules", None)
    if not isinstance(modules, list):
        kind = obj.torch_typename() if hasattr(obj, "torch_typename") else type(obj).__name__
        raise LayoutError(f"a Torch7 nn.Sequential was expected, found {kind!r}")
    convs = []
    for i, m in enumerate(modules):
        typename = m.torch_typename() if hasattr(m, "torch_typename") else b""
        if typename == b"nn.SpatialConvolution":
            weight = torch.from_numpy(np.ascontiguousarray(m.weight, dtype=np.float32))
            bias = torch.from_numpy(np.ascontiguousarray(m.bias, dtype=np.float32))
            k_h, k_w = int(m.kH), int(m.kW)
            n_in, n_out = int(m.nInputPlane), int(m.nOutputPlane)
            convs.append((f"modules[{i}]", weight.reshape(n_out, n_in, k_h, k_w), bias.reshape(n_out)))
    return convs


def t7_pooling_ceil(obj: Any) -> bool | None:
    """Whether the ``.t7`` network's max poolings round up (``:ceil()``); None without poolings."""
    for m in getattr(obj, "modules", None) or []:
        if hasattr(m, "torch_typename") and m.torch_typename() == b"nn.SpatialMaxPooling":
            return bool(m.ceil_mode)
    return None


def _state_dict_convs(sd: dict[str, Any]) -> list[Conv]:
    convs = []
    for key, value in sd.items():
        if not (isinstance(value, torch.Tensor) and value.dim() == 4):
            continue
        for w_suffix, b_suffix in ((".weight", ".bias"), ("_weight", "_bias")):
            if key.endswith(w_suffix):
                bias_key = key[: -len(w_suffix)] + b_suffix
                bias = sd.get(bias_key)
                if not isinstance(bias, torch.Tensor):
                    raise LayoutError(f"{key} has no {bias_key} beside it")
                convs.append((key, value.float(), bias.float()))
                break
    return convs


def conv_weights(obj: Any) -> list[Conv]:
    """The convolutions of a weights file in forward order: a ``state_dict`` (its key order, which
    ``torch.save`` keeps) or a Torch7 ``nn.Sequential`` (its module order)."""
    if isinstance(obj, dict):
        return _state_dict_convs(obj)
    return _t7_convs(obj)


def assign_convs(net: nn.Module, convs: Sequence[Conv], what: str, source: str | Path,
                 allow_extra: bool = False) -> None:
    """Copy ``convs`` into ``net``'s ``nn.Conv2d`` layers in order, checking every shape; with
    ``allow_extra`` the file may hold more layers after them (a deeper encoder)."""
    targets = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    expected = ", ".join("x".join(map(str, m.weight.shape)) for m in targets)
    if len(convs) < len(targets) or (len(convs) > len(targets) and not allow_extra):
        raise LayoutError(f"{source}: expected {what} with {len(targets)} convolutions ({expected}); the file has "
                          f"{len(convs)}")
    for k, (m, (where, weight, bias)) in enumerate(zip(targets, convs, strict=False)):
        if tuple(weight.shape) != tuple(m.weight.shape) or tuple(bias.shape) != tuple(m.bias.shape):
            raise LayoutError(f"{source}: expected {what}; convolution {k + 1} ({where}) is "
                              f"{'x'.join(map(str, weight.shape))}, expected {'x'.join(map(str, m.weight.shape))} "
                              f"(the layout is {expected})")
        with torch.no_grad():
            m.weight.copy_(weight)
            m.bias.copy_(bias)


def normalised_encoder(convs: Sequence[Conv], layers: Sequence[str], ceil_mode: bool,
                       source: str | Path) -> NormalisedVGG19:
    """A :class:`NormalisedVGG19` up to the deepest of ``layers`` with a file's convolutions
    (the file may go deeper: pytorch-AdaIN's holds all of VGG-19)."""
    net = NormalisedVGG19(layers, ceil_mode)
    assign_convs(net, convs, "the normalised VGG-19 (a 1x1 conv 3x3x1x1 first, then VGG-19's 3x3 convs)", source,
                 allow_extra=True)
    return net
