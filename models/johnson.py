"""Johnson, Alahi, Fei-Fei 2016, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution":
the transformation network, conditional instance norm for several styles, and the training loss.

The network is c9s1-32, d64, d128, 5 x R128, u64, u32, c9s1-3 (the paper's supplementary table):
reflection-padded convolutions, instance norm (Ulyanov et al. 2016) and ReLU, residual blocks
without a final ReLU. Module layout and parameter names are those of PyTorch's
``examples/fast_neural_style`` (``transformer_net.py``), so its pretrained candy / mosaic /
rain_princess / udnie files load after :func:`methods.johnson.strip_legacy_instance_norm`
(reading such files, and architecture inference, live in :mod:`methods.johnson`)::

    conv1.conv2d.{weight,bias}   in1.{weight,bias}   conv2 ... in3
    res1.conv1.conv2d.*  res1.in1.*  res1.conv2.conv2d.*  res1.in2.*   ... res5
    deconv1.conv2d.*  in4.*  deconv2.conv2d.*  in5.*  deconv3.conv2d.*

Image convention: input (N, 3, H, W) RGB float in [0, 255], no mean subtraction (the examples'
``ToTensor() * 255``); output (N, 3, H', W') in [0, 255]:

* ``output="tanh"`` (ours, the paper's "scaled tanh"): 127.5 * (tanh(y) + 1), always in range.
* ``output="clamp"`` (the examples' files): the last convolution's raw output, which those
  networks were trained with; clamped to [0, 255] in eval mode only, so training keeps gradients.

Sizes: two stride-2 convolutions and two x2 up-samplings give H' = 4 * ceil(H / 4) (same for W),
so H and W should be multiples of 4; the module does not pad. A caller with other sizes pads
(reflect) to a multiple of 4 and crops the output back, e.g. 34 px -> 36 px out. H, W >= 8.

Several styles (Dumoulin, Shlens, Kudlur 2017, "A Learned Representation for Artistic Style"):
with ``n_styles = S > 1`` every instance norm holds one scale and shift per style, weight/bias
of shape (S, C) under the same names, and ``forward(x, style_weights)`` blends them:
gamma = sum_s w_s gamma_s, beta = sum_s w_s beta_s (w: (S,) for the batch or (N, S) per image,
summing to 1; one-hot while training on style s, a convex mix for test-time interpolation).

Loss (:func:`johnson_losses`): the Gatys terms of :mod:`models.style_losses` through a frozen
VGG-16 (content relu2_2, style relu1_2, relu2_2, relu3_3, relu4_3), plus TV. With Gram matrices
normalised by C*H*W and the examples' ImageNet-normalised VGG input, the examples' weights
(content 1e5, style 1e10 summed over the 4 layers) are content 1e5, style 4e10 here, because
:class:`~models.style_losses.LossWeights` averages the layers (:func:`johnson_loss_weights`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.style_losses import LossWeights, content_loss, style_loss, tv_loss
from models.terms import Terms

Upsample = Literal["nearest", "transpose"]
Output = Literal["tanh", "clamp"]

CONTENT_LAYERS = ("relu2_2",)
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


class CondInstanceNorm2d(nn.Module):
    """Instance norm with a learned scale and shift, one per style (conditional instance norm).

    ``n_styles == 1``: exactly ``nn.InstanceNorm2d(channels, affine=True)`` (weight, bias: (C,)).
    ``n_styles > 1``: weight, bias (n_styles, C); ``forward(x, style_weights)`` with weights
    (n_styles,) or (N, n_styles) normalises x per image and channel, then applies the blended
    gamma = style_weights @ weight and beta = style_weights @ bias. x: (N, C, H, W).
    """

    def __init__(self, channels: int, n_styles: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        shape = (channels,) if n_styles == 1 else (n_styles, channels)
        self.n_styles, self.eps = n_styles, eps
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_styles == 1:
            return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
        if style_weights is None:
            raise ValueError(f"a {self.n_styles}-style instance norm needs style_weights")
        w = style_weights.to(self.weight.dtype)
        gamma, beta = w @ self.weight, w @ self.bias  # (C,) or (N, C)
        shape = (-1, x.shape[1], 1, 1)
        return F.instance_norm(x, eps=self.eps) * gamma.reshape(shape) + beta.reshape(shape)


class ConvLayer(nn.Module):
    """Reflection pad k // 2, then a k x k convolution with ``stride``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(x))


class UpsampleConvLayer(nn.Module):
    """x2 up-sampling: nearest up-sampling + reflection pad + k x k conv (resize-convolution,
    Odena et al. 2016, the examples' choice against checkerboard artefacts), or a transposed
    convolution with stride 2 (the paper's "fractionally strided" convolution, stride 1/2).

    Both keep the parameter name ``conv2d``; the weight is (out, in, k, k) for ``nearest`` and
    (in, out, k, k) for ``transpose``, which is how :func:`methods.johnson.infer_transformer_arch`
    tells them apart.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mode: Upsample = "nearest") -> None:
        super().__init__()
        self.mode = mode
        self.conv2d: nn.Module
        if mode == "nearest":
            self.upsample_layer = nn.Upsample(scale_factor=2, mode="nearest")
            self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
            self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, 1)
        elif mode == "transpose":
            # padding k//2 and output_padding 1: exactly twice the input size, as the nearest path.
            self.conv2d = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=2,
                                             padding=kernel_size // 2, output_padding=1)
        else:
            raise ValueError(f"upsample must be nearest or transpose, got {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return self.conv2d(self.reflection_pad(self.upsample_layer(x)))
        return self.conv2d(x)


class ResidualBlock(nn.Module):
    """conv3 - IN - ReLU - conv3 - IN, plus the identity (He et al. 2016). No ReLU after the sum:
    the block design of Gross & Wilber 2016 ("Training and investigating Residual Nets") that the
    paper's supplementary material and the examples use."""

    def __init__(self, channels: int, n_styles: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = CondInstanceNorm2d(channels, n_styles)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = CondInstanceNorm2d(channels, n_styles)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        out = self.relu(self.in1(self.conv1(x), style_weights))
        return x + self.in2(self.conv2(out), style_weights)


@dataclass(frozen=True)
class TransformerArch:
    """The constructor arguments of :class:`TransformerNet` (``TransformerNet(**asdict(arch))``)."""

    channels: int = 32
    n_blocks: int = 5
    n_styles: int = 1
    upsample: Upsample = "nearest"
    output: Output = "tanh"


class TransformerNet(nn.Module):
    """The image transformation network of Johnson et al. 2016 (module docstring: layout,
    image convention, sizes).

    Args:
        channels: base width c: c9s1-c, d2c, d4c, n_blocks x R4c, u2c, uc, c9s1-3 (paper: 32).
        n_blocks: residual blocks (paper: 5).
        n_styles: styles held by conditional instance norm; 1 = plain affine instance norm.
        upsample: ``nearest`` (resize-conv, the examples) or ``transpose`` (the paper).
        output: ``tanh`` (scaled tanh into [0, 255]) or ``clamp`` (the examples' files).

    ``forward(x, style_weights=None)``: x (N, 3, H, W) RGB in [0, 255] -> (N, 3, 4*ceil(H/4),
    4*ceil(W/4)) in [0, 255] (``clamp``: unbounded in training mode). ``style_weights`` (n_styles,)
    or (N, n_styles) summing to 1 is required when n_styles > 1 (:func:`one_hot_style_weights`).
    """

    def __init__(self, channels: int = 32, n_blocks: int = 5, n_styles: int = 1, upsample: Upsample = "nearest",
                 output: Output = "tanh") -> None:
        super().__init__()
        if channels < 1 or n_blocks < 0 or n_styles < 1:
            raise ValueError(f"need channels >= 1, n_blocks >= 0, n_styles >= 1; got {channels}, {n_blocks}, "
                             f"{n_styles}")
        if output not in ("tanh", "clamp"):
            raise ValueError(f"output must be tanh or clamp, got {output!r}")
        c, s = channels, n_styles
        self._arch = TransformerArch(channels, n_blocks, n_styles, upsample, output)
        self.conv1 = ConvLayer(3, c, kernel_size=9, stride=1)
        self.in1 = CondInstanceNorm2d(c, s)
        self.conv2 = ConvLayer(c, 2 * c, kernel_size=3, stride=2)
        self.in2 = CondInstanceNorm2d(2 * c, s)
        self.conv3 = ConvLayer(2 * c, 4 * c, kernel_size=3, stride=2)
        self.in3 = CondInstanceNorm2d(4 * c, s)
        # res1 .. resN are names the pretrained files fix; a variable depth cannot spell them out.
        for i in range(1, n_blocks + 1):
            self.add_module(f"res{i}", ResidualBlock(4 * c, s))
        self.deconv1 = UpsampleConvLayer(4 * c, 2 * c, kernel_size=3, mode=upsample)
        self.in4 = CondInstanceNorm2d(2 * c, s)
        self.deconv2 = UpsampleConvLayer(2 * c, c, kernel_size=3, mode=upsample)
        self.in5 = CondInstanceNorm2d(c, s)
        self.deconv3 = ConvLayer(c, 3, kernel_size=9, stride=1)
        self.relu = nn.ReLU()

    @property
    def arch(self) -> TransformerArch:
        return self._arch

    @classmethod
    def from_arch(cls, arch: TransformerArch) -> TransformerNet:
        return cls(arch.channels, arch.n_blocks, arch.n_styles, arch.upsample, arch.output)

    @property
    def residual_blocks(self) -> list[ResidualBlock]:
        return [m for m in self.children() if isinstance(m, ResidualBlock)]

    def _check_style_weights(self, style_weights: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        s = self._arch.n_styles
        if style_weights is None:
            if s > 1:
                raise ValueError(f"this network holds {s} styles: pass style_weights of shape ({s},) or (N, {s}) "
                                 f"summing to 1, e.g. one_hot_style_weights(k, {s})")
            return None
        shape = tuple(style_weights.shape)
        if shape not in ((s,), (batch, s)):
            raise ValueError(f"style_weights must have shape ({s},) or ({batch}, {s}), got {shape}")
        if s == 1:
            return None  # a single style: nothing to blend
        if not torch.compiler.is_compiling():  # a host sync; skipped inside compiled graphs
            sums = style_weights.detach().float().sum(-1)
            if not torch.allclose(sums, torch.ones_like(sums), atol=1e-3):
                raise ValueError(f"style_weights must sum to 1 (per image), got sums {sums.tolist()}")
        return style_weights

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        w = self._check_style_weights(style_weights, x.shape[0])
        y = self.relu(self.in1(self.conv1(x), w))
        y = self.relu(self.in2(self.conv2(y), w))
        y = self.relu(self.in3(self.conv3(y), w))
        for block in self.residual_blocks:
            y = block(y, w)
        y = self.relu(self.in4(self.deconv1(y), w))
        y = self.relu(self.in5(self.deconv2(y), w))
        y = self.deconv3(y)
        if self._arch.output == "tanh":
            return 127.5 * (torch.tanh(y) + 1.0)
        return y if self.training else y.clamp(0.0, 255.0)


def one_hot_style_weights(index: int | torch.Tensor, n_styles: int) -> torch.Tensor:
    """Style weights for training on one style: int k -> (n_styles,); (N,) indices -> (N, n_styles)."""
    idx = torch.as_tensor(index, dtype=torch.long)
    if idx.numel() and (idx.min() < 0 or idx.max() >= n_styles):
        raise ValueError(f"style index {idx.tolist()} out of range for {n_styles} styles")
    return F.one_hot(idx, n_styles).float()


# ---------------------------------------------------------------------------------------------
# Loss


@dataclass
class JohnsonLosses(Terms):
    """The weighted terms, means over the batch (0-d tensors); ``total`` is their sum."""

    content: torch.Tensor  # content_weight * L_content
    style: torch.Tensor  # style_weight * L_style
    tv: torch.Tensor  # tv_weight * L_tv


def johnson_loss_weights(content: float = 1e5, style: float = 4e10, tv: float = 0.0,
                         content_layers: Sequence[str] = CONTENT_LAYERS,
                         style_layers: Sequence[str] = STYLE_LAYERS) -> LossWeights:
    """The paper's layers, equal layer weights; default weights reproduce the examples' total
    loss for torchvision (ImageNet-normalised) VGG-16 weights (module docstring). The paper
    chose its TV weight in 1e-6 .. 1e-4 by cross-validation on its own scaling; 0 here, as the
    examples."""
    return LossWeights(content=content, style=style, tv=tv, content_layers={n: 1.0 for n in content_layers},
                       style_layers={n: 1.0 for n in style_layers})


def johnson_losses(extractor: nn.Module, output: torch.Tensor, content: torch.Tensor,
                   style_grams: Mapping[str, torch.Tensor], weights: LossWeights) -> JohnsonLosses:
    """The training loss of Johnson et al. 2016 (eqs. 2, 3, 5 via :mod:`models.style_losses`).

    Args:
        extractor: frozen VGG (:class:`models.vgg.VGGFeatures`) providing ``weights.layers``;
            takes RGB in [0, 1].
        output: the network's output (N, 3, H, W) in [0, 255], with grad.
        content: its input (N, 3, H, W) in [0, 255] (the content targets, no grad).
        style_grams: {layer: (1 or N, C, C)} from :func:`models.style_losses.style_grams` (style
            images in [0, 1]; one style, or several blended with weights); per-image styles
            (conditional instance norm) via :func:`stack_style_grams`.
        weights: :func:`johnson_loss_weights` (or any :class:`LossWeights`).
    """
    if output.shape != content.shape:
        raise ValueError(f"output {tuple(output.shape)} and content {tuple(content.shape)} differ in shape; "
                         f"pad inputs to a multiple of 4")
    out01 = output / 255.0
    feats = extractor(out01)
    with torch.no_grad():
        targets = extractor(content / 255.0)
    lc = content_loss(feats, targets, weights.content_layers).mean()
    ls = style_loss(feats, dict(style_grams), weights.style_layers).mean()
    ltv = tv_loss(out01.float()).mean() if weights.tv > 0 else torch.zeros_like(lc)
    return JohnsonLosses(weights.content * lc, weights.style * ls, weights.tv * ltv)


def stack_style_grams(per_style: Sequence[Mapping[str, torch.Tensor]],
                      style_index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image targets for conditional instance norm training: ``per_style[k][l]`` (1, C, C)
    for each style k and ``style_index`` (N,) -> {l: (N, C, C)}, image i getting its style's Grams."""
    return {name: torch.cat([g[name] for g in per_style])[style_index.to(per_style[0][name].device)]
            for name in per_style[0]}
