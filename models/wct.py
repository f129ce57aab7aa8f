"""Universal style transfer: VGG-19 encoders, per-level decoders, multi-level stylisation, decoder losses.

Li, Fang, Yang, Wang, Lu, Yang 2017, "Universal Style Transfer via Feature Transforms" (WCT) and
Huang & Belongie 2017, "Arbitrary Style Transfer in Real-time with Adaptive Instance
Normalization" (AdaIN) share everything here; the feature transforms themselves are in
:mod:`models.feature_transforms`.

* Encoders: the project's frozen VGG-19 (:class:`models.vgg.VGG19Features`, built with the
  levels below among its layers) truncated at relu1_1 ... relu5_1. :func:`encode` runs it only
  as deep as the level asked for; :func:`encode_levels` collects several levels in one pass.
* Decoders (:class:`Decoder`): one per level, mirroring the encoder up to that layer as Li et
  al.'s (and AdaIN's relu4_1 decoder): 3x3 convolutions with reflection padding + ReLU, nearest
  x2 up-sampling where the encoder pools, a final 3x3 convolution to RGB. Output is RGB in
  [0, 1] *space* but is not clamped inside the network (the reconstruction loss sees the raw
  values); :func:`stylize` clamps its result, other callers clamp for images.
* :func:`stylize`: coarse to fine (relu5_1 first, then relu4_1, ... relu1_1: the order Li et
  al. found better than fine to coarse), each level encoding the previous level's decoded
  image, transforming its features (wct | whiten | adain) and decoding them. AdaIN is the
  single level ``levels=("relu4_1",), transform="adain"`` with its own relu4_1 decoder.
* :func:`decoder_losses`: Li et al. section 3.1, pixel + lambda * feature reconstruction.

Checkpoint parameter names (stable): :func:`build_decoders` returns an ``nn.ModuleDict`` keyed by
level, and each decoder's layers live in ``body`` and are named after the encoder layer they
mirror, e.g. for relu2_1: ``relu2_1.body.conv2_1.{weight,bias}`` (128 -> 64 channels),
``relu2_1.body.up1`` (mirrors pool1, no parameters), ``relu2_1.body.conv1_2.*`` (64 -> 64),
``relu2_1.body.conv1_1.*`` (64 -> 3, no ReLU). Held as ``decoders`` by a model, the keys read
``decoders.relu2_1.body.conv2_1.weight``.

Images are float (N, 3, H, W) RGB in [0, 1]; features (N, C, H, W).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from data.image_io import pad_to_multiple
from models.feature_transforms import (
    DEFAULT_EPS,
    DEFAULT_RANK_TOL,
    FeatureStats,
    adain,
    feature_stats,
    wct,
    whiten_only,
)
from models.terms import Terms
from models.vgg import LAYER_NAMES, VGG19Features

Transform = Literal["wct", "whiten", "adain"]
TRANSFORMS: tuple[str, ...] = ("wct", "whiten", "adain")
LEVELS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
"""Encoder levels, fine to coarse; :func:`stylize` applies them in reverse (coarse to fine)."""
ADAIN_LEVEL = "relu4_1"

_BLOCK_WIDTH = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}  # VGG-19 channels per block (models.vgg)


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; valid: {', '.join(LEVELS)}")


def level_channels(level: str) -> int:
    """Channels of the encoder's features at ``level`` (relu1_1: 64 ... relu5_1: 512)."""
    _check_level(level)
    return _BLOCK_WIDTH[int(level[4])]


def level_scale(level: str) -> int:
    """Down-sampling factor of ``level`` (relu1_1: 1, relu2_1: 2, ... relu5_1: 16)."""
    _check_level(level)
    return 2 ** (int(level[4]) - 1)


def coarse_to_fine(levels: Sequence[str]) -> list[str]:
    """Distinct levels ordered deepest first, the order :func:`stylize` applies them in."""
    for level in levels:
        _check_level(level)
    if not levels:
        raise ValueError(f"no levels given; valid: {', '.join(LEVELS)}")
    return sorted(set(levels), key=LEVELS.index, reverse=True)


# ---------------------------------------------------------------------------------------------
# Encoders


def encode_levels(encoder: VGG19Features, images: torch.Tensor, levels: Sequence[str]) -> dict[str, torch.Tensor]:
    """Features of ``images`` (N, 3, H, W) in [0, 1] at each of ``levels``, in one pass that stops
    at the deepest of them. The encoder must have been built at least that deep."""
    wanted = set(levels)
    missing = [name for name in wanted if name not in encoder.names]
    if missing:
        raise ValueError(f"the encoder stops at {encoder.names[-1]}; build it with layers including {missing}")
    return encoder(images, levels)


def encode(encoder: VGG19Features, images: torch.Tensor, level: str) -> torch.Tensor:
    """Features (N, C_level, H / s, W / s) of ``images`` (N, 3, H, W) in [0, 1], s = :func:`level_scale`."""
    return encode_levels(encoder, images, [level])[level]


# ---------------------------------------------------------------------------------------------
# Decoders


class ReflectConv3x3(nn.Conv2d):
    """3x3 convolution after a 1-pixel reflection padding (replication on a 1-pixel-wide map,
    where reflection is undefined: a relu5_1 map of a 16 px image is 1x1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = "reflect" if min(x.shape[-2:]) > 1 else "replicate"
        return super().forward(F.pad(x, (1, 1, 1, 1), mode=mode))


def _encoder_in_channels(conv: str) -> int:
    block, index = int(conv[4]), int(conv[6])
    if index > 1:
        return _BLOCK_WIDTH[block]
    return 3 if block == 1 else _BLOCK_WIDTH[block - 1]


class Decoder(nn.Module):
    """Inverts the VGG-19 encoder truncated at ``level`` (Li et al. section 3.1).

    Args:
        level: relu1_1 ... relu5_1.
        width: multiplies every inner channel count (1 = Li et al.'s decoders; e.g. 0.125 for
            tiny test decoders). Input channels stay the encoder's, output is 3.

    ``forward(f)``: (N, C_level, h, w) -> (N, 3, h * s, w * s), s = :func:`level_scale`, RGB in
    [0, 1] space, not clamped. Parameter names: see the module docstring.
    """

    def __init__(self, level: str, width: float = 1.0) -> None:
        super().__init__()
        _check_level(level)
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        self.level = level
        self.width = width
        self.scale = level_scale(level)
        self.in_channels = level_channels(level)
        last = LAYER_NAMES.index("conv" + level[4:])
        mirrored = [name for name in LAYER_NAMES[: last + 1] if not name.startswith("relu")]
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        ch = self.in_channels
        for name in reversed(mirrored):
            if name.startswith("pool"):
                modules["up" + name[4:]] = nn.Upsample(scale_factor=2, mode="nearest")
            elif name == "conv1_1":
                modules[name] = ReflectConv3x3(ch, 3)  # to RGB: no ReLU
            else:
                out = max(1, round(_encoder_in_channels(name) * width))
                modules[name] = ReflectConv3x3(ch, out)
                modules["relu" + name[4:]] = nn.ReLU()
                ch = out
        self.body = nn.Sequential(modules)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features)


def build_decoders(levels: Sequence[str] = LEVELS, width: float = 1.0) -> nn.ModuleDict:
    """One :class:`Decoder` per level, keyed by level name (``decoders[level]``)."""
    return nn.ModuleDict({level: Decoder(level, width) for level in sorted(set(levels), key=LEVELS.index)})


# ---------------------------------------------------------------------------------------------
# Padding


# ---------------------------------------------------------------------------------------------
# Style features and stylisation


@dataclass
class StyleFeatures:
    """Per level, the :class:`FeatureStats` of each style image (mean, std, colouring matrix),
    computed once and reused for every batch of content images."""

    stats: dict[str, list[FeatureStats]]

    @property
    def n_styles(self) -> int:
        return len(next(iter(self.stats.values()))) if self.stats else 0

    @classmethod
    @torch.no_grad()
    def from_images(cls, encoder: VGG19Features, styles: Sequence[torch.Tensor], levels: Sequence[str] = LEVELS,
                    rank_tol: float = DEFAULT_RANK_TOL) -> StyleFeatures:
        """Encode each style image, (1, 3, H_k, W_k) in [0, 1], at ``levels``.

        A style smaller than 16 px on a side is reflection-padded to 16, so that relu5_1 has at
        least one sample; larger ones are used as they are (padding would bias the statistics).
        """
        if not styles:
            raise ValueError("at least one style image is needed")
        levels = coarse_to_fine(levels)
        stats: dict[str, list[FeatureStats]] = {level: [] for level in levels}
        for k, style in enumerate(styles):
            if style.dim() != 4 or style.shape[:2] != (1, 3):
                raise ValueError(f"style image {k} must be (1, 3, H, W), got shape {tuple(style.shape)}")
            style, _, _ = pad_to_multiple(style, 1, 16)
            feats = encode_levels(encoder, style, levels)
            for level in levels:
                stats[level].append(feature_stats(feats[level], rank_tol))
        return cls(stats)


def _per_level(value: object, level: str, what: str) -> object:
    if isinstance(value, Mapping):
        if level not in value:
            raise ValueError(f"{what} has no entry for {level} (has {', '.join(value)})")
        return value[level]
    return value


@torch.no_grad()
def stylize(encoder: VGG19Features, decoders: Mapping[str, nn.Module], content: torch.Tensor,
            styles: Sequence[torch.Tensor] | StyleFeatures | None = None,
            style_weights: Sequence[float] | None = None,
            alpha: float | Mapping[str, float] = 1.0, levels: Sequence[str] = LEVELS,
            transform: Transform | Mapping[str, Transform] = "wct",
            eps: float = DEFAULT_EPS, rank_tol: float = DEFAULT_RANK_TOL) -> torch.Tensor:
    """Multi-level universal style transfer, coarse to fine (Li et al.'s multi-level stylisation).

    Args:
        encoder: VGG-19 features built at least as deep as the deepest level.
        decoders: level -> decoder (e.g. :func:`build_decoders`), one for each level used.
        content: (N, 3, H, W) in [0, 1], any H, W (reflection-padded to a multiple of the
            deepest level's scale inside, cropped back after).
        styles: style images, each (1, 3, H_k, W_k) in [0, 1], or their precomputed
            :class:`StyleFeatures` (build once for a folder of content images); unused when
            every level whitens only.
        style_weights: blend of several styles (normalised to sum 1); None = equal.
        alpha: stylisation strength, one value or one per level.
        levels: any subset of :data:`LEVELS`; always applied coarse to fine.
        transform: ``wct``, ``whiten`` (style removed) or ``adain``; one value or one per level.
        eps, rank_tol: numerical guards of the transforms (:mod:`models.feature_transforms`).

    Returns:
        (N, 3, H, W) in [0, 1] (clamped), the dtype of the decoders' output.
    """
    if content.dim() != 4 or content.shape[1] != 3:
        raise ValueError(f"content must be (N, 3, H, W), got shape {tuple(content.shape)}")
    order = coarse_to_fine(levels)
    kinds = {level: _per_level(transform, level, "transform") for level in order}
    bad = {level: kind for level, kind in kinds.items() if kind not in TRANSFORMS}
    if bad:
        raise ValueError(f"unknown transform {bad}; valid: {', '.join(TRANSFORMS)}")
    missing = [level for level in order if level not in decoders]
    if missing:
        raise ValueError(f"no decoder for {', '.join(missing)}")
    style_feats: StyleFeatures | None = None
    if any(kind != "whiten" for kind in kinds.values()):
        if styles is None or (not isinstance(styles, StyleFeatures) and len(styles) == 0):
            raise ValueError(f"transform {transform} needs at least one style image")
        style_feats = styles if isinstance(styles, StyleFeatures) else StyleFeatures.from_images(
            encoder, styles, order, rank_tol)
        lacking = [level for level in order if kinds[level] != "whiten" and level not in style_feats.stats]
        if lacking:
            raise ValueError(f"the style features lack level(s) {', '.join(lacking)}")
    h, w = content.shape[-2:]
    scale = max(level_scale(level) for level in order)
    x, top, left = pad_to_multiple(content, scale, scale)
    for level in order:
        fc = encode(encoder, x, level)
        a = float(_per_level(alpha, level, "alpha"))  # type: ignore[arg-type]
        if kinds[level] == "whiten":
            f = whiten_only(fc, a, eps, rank_tol)
        elif kinds[level] == "wct":
            f = wct(fc, style_feats.stats[level], a, style_weights, eps, rank_tol)
        else:
            f = adain(fc, style_feats.stats[level], a, style_weights, eps)
        x = decoders[level](f)
    return x[..., top:top + h, left:left + w].clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Decoder training


@dataclass
class DecoderLosses(Terms):
    """Li et al. eq. 1 terms for one batch at one level (fp32 scalars); ``total`` is their sum."""

    pixel: torch.Tensor  # ||I_o - I_i||^2
    feature: torch.Tensor  # lambda ||Phi(I_o) - Phi(I_i)||^2


def decoder_losses(encoder: VGG19Features, output: torch.Tensor, images: torch.Tensor, target: torch.Tensor,
                   level: str, feature_weight: float = 1.0) -> DecoderLosses:
    """Reconstruction losses that train the decoder of ``level`` (Li et al. section 3.1)::

        L = ||I_o - I_i||^2 + lambda ||Phi(I_o) - Phi(I_i)||^2,   I_o = decoder(Phi(I_i)),

    Phi the frozen encoder at ``level``, lambda = ``feature_weight`` (1 in the paper), both
    terms mean squared errors (per element), taken in float32 whatever the autocast dtype. The
    feature term's scale follows the VGG weights' input convention (:mod:`models.vgg`).

    Args:
        output: the decoder's reconstruction ``I_o = D(target)``, (N, 3, H, W), with grad.
        images: the inputs ``I_i``, (N, 3, H, W) in [0, 1], H and W multiples of :func:`level_scale`.
        target: ``Phi(I_i)`` at ``level`` (no grad; the trainer encodes every level in one pass).
    """
    scale = level_scale(level)
    if images.shape[-2] % scale or images.shape[-1] % scale:
        raise ValueError(f"{level} decoder training needs H and W multiples of {scale}, got {tuple(images.shape)}")
    pixel = F.mse_loss(output.float(), images.float())
    feature = F.mse_loss(encode(encoder, output, level).float(), target.float())
    return DecoderLosses(pixel=pixel, feature=feature_weight * feature)
