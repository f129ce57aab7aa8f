"""The GAN networks of CycleGAN and CUT: the ResNet generator, the n-layer PatchGAN discriminator,
and their losses.

Both follow Zhu et al. 2017 (appendix 7.2) and keep the public reference's module layout, so
the parameter names match its checkpoints exactly (``model.1.weight``,
``model.10.conv_block.5.weight`` ...): a reference ``latest_net_G_A.pth`` or ``style_monet.pth``
loads into :class:`ResnetGenerator` with ``load_state_dict`` and no conversion. CUT (Park et al.
2020, :mod:`models.cut`) builds its anti-aliased generator from the same blocks, as its authors'
code does.

Beside them the adversarial and L1 terms (Zhu et al. 2017, eqs. 1-3 and section 7.1), which CUT's
objective uses too, as the reference keeps ``GANLoss`` beside its networks. How they combine into
the objectives is in :mod:`models.cyclegan` and :mod:`training.cut`. Every reduction runs in fp32
even under autocast, so bf16/fp16 training keeps exact loss values; targets are built to the
prediction's shape, as PatchGAN outputs a grid of logits.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

NormKind = Literal["instance", "batch", "none"]
InitKind = Literal["normal", "xavier", "kaiming", "orthogonal"]
UpsampleKind = Literal["transpose", "resize_conv"]


def norm_layer(kind: NormKind) -> type[nn.Module] | functools.partial | None:
    """Return a constructor ``f(num_features)`` for the normalisation layer, or None.

    Instance norm is the paper's choice: affine=False and no running statistics, so it has
    no parameters or buffers at all (matching the reference's state_dict keys).
    """
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "none":
        return None
    raise ValueError(f"unknown norm {kind!r}; valid: instance, batch, none")


def _norm_and_bias(kind: NormKind) -> tuple[list, bool]:
    """(factory list, conv bias flag). BatchNorm has its own shift, so convs before it drop bias."""
    make = norm_layer(kind)
    use_bias = kind != "batch"
    return ([make] if make is not None else []), use_bias


def _norm(factories: list, channels: int) -> list[nn.Module]:
    return [f(channels) for f in factories]


class ResnetBlock(nn.Module):
    """pad - conv3 - norm - ReLU - [dropout] - pad - conv3 - norm, plus the identity skip.

    ``conv_block`` indices (0 pad, 1 conv, 2 norm, 3 ReLU, 4 pad, 5 conv, 6 norm without
    dropout) are the reference's, hence its checkpoint keys.
    """

    def __init__(self, dim: int, norm: NormKind = "instance", use_dropout: bool = False) -> None:
        super().__init__()
        factories, use_bias = _norm_and_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=use_bias),
            *_norm(factories, dim),
            nn.ReLU(True),
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=use_bias),
            *_norm(factories, dim),
        ]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResizeConv(nn.Module):
    """Nearest x2 up-sampling then a reflection-padded 3x3 conv (Odena et al. 2016).

    A drop-in for the transposed conv that avoids its checkerboard artefacts.
    """

    def __init__(self, in_ch: int, out_ch: int, bias: bool) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(self.up(x)))


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d(2ngf), d(4ngf), n_blocks x R(4ngf), u(2ngf), u(ngf), c7s1-3, tanh.

    Input ``(N, input_nc, H, W)`` in [-1, 1]; output ``(N, output_nc, H, W)`` in [-1, 1].
    H and W must be multiples of 4 (two stride-2 down-samplings and two x2 up-samplings).

    Args:
        grad_checkpoint: recompute residual-block activations in the backward pass instead of
            storing them (less memory at high resolution, ~30% more compute). Only active in
            training mode with gradients enabled.
    """

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: NormKind = "instance",
        use_dropout: bool = False,
        upsample: UpsampleKind = "transpose",
        grad_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        factories, use_bias = _norm_and_bias(norm)
        self.grad_checkpoint = grad_checkpoint

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, bias=use_bias),
            *_norm(factories, ngf),
            nn.ReLU(True),
        ]
        n_down = 2
        for i in range(n_down):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                *_norm(factories, ngf * mult * 2),
                nn.ReLU(True),
            ]
        mult = 2**n_down
        layers += [ResnetBlock(ngf * mult, norm=norm, use_dropout=use_dropout) for _ in range(n_blocks)]
        for i in range(n_down):
            mult = 2 ** (n_down - i)
            if upsample == "transpose":
                up: nn.Module = nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=use_bias
                )
            elif upsample == "resize_conv":
                up = ResizeConv(ngf * mult, ngf * mult // 2, bias=use_bias)
            else:
                raise ValueError(f"unknown upsample {upsample!r}; valid: transpose, resize_conv")
            layers += [up, *_norm(factories, ngf * mult // 2), nn.ReLU(True)]
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, output_nc, kernel_size=7),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.grad_checkpoint and self.training and torch.is_grad_enabled()):
            return self.model(x)
        for layer in self.model:
            if isinstance(layer, ResnetBlock):
                x = checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
        return x


@dataclass(frozen=True)
class GeneratorArch:
    """The :class:`ResnetGenerator` constructor arguments a state_dict was made with."""

    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    n_blocks: int = 9
    norm: NormKind = "instance"
    dropout: bool = False
    upsample: UpsampleKind = "transpose"

    def describe(self) -> str:
        return (f"ResNet generator ngf={self.ngf}, n_blocks={self.n_blocks}, norm={self.norm}, "
                f"dropout={self.dropout}, upsample={self.upsample}, channels {self.input_nc}->{self.output_nc}")

    def build(self) -> ResnetGenerator:
        return ResnetGenerator(self.input_nc, self.output_nc, self.ngf, self.n_blocks, self.norm, self.dropout,
                               self.upsample)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: C64(s2, no norm) - C128(s2) - C256(s2) - C512(s1) - conv to 1 channel (s1).

    With ``n_layers=3`` each output logit sees a 70x70 input patch; 256x256 in -> 30x30 out.
    Outputs raw logits (no sigmoid): the GAN loss decides how to read them.
    Input ``(N, input_nc, H, W)`` in [-1, 1]; output ``(N, 1, H', W')``.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: NormKind = "instance") -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        factories, use_bias = _norm_and_bias(norm)
        kw, padw = 4, 1
        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=2, padding=padw, bias=use_bias),
                *_norm(factories, ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=1, padding=padw, bias=use_bias),
            *_norm(factories, ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, kernel_size=kw, stride=1, padding=padw),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(net: nn.Module, kind: InitKind = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise conv / linear weights as the reference does; biases to 0.

    ``normal``: N(0, gain); ``xavier``: xavier_normal(gain); ``kaiming``: kaiming_normal
    (fan_in); ``orthogonal``: orthogonal(gain). BatchNorm weights ~ N(1, gain), bias 0.
    """

    def init_fn(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if kind == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif kind == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=gain)
            else:
                raise ValueError(f"unknown init {kind!r}; valid: normal, xavier, kaiming, orthogonal")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    net.apply(init_fn)
    return net


GanMode = Literal["lsgan", "vanilla"]


def gan_loss(pred: torch.Tensor, target_is_real: bool, mode: GanMode = "lsgan") -> torch.Tensor:
    """Adversarial loss of discriminator logits ``pred`` (any shape) against a constant label.

    lsgan: mean((pred - t)^2) with t = 1 for real, 0 for fake (Mao et al. 2017; the paper's
    choice, section 4). vanilla: binary cross-entropy with logits (Goodfellow et al. 2014).
    """
    pred = pred.float()
    target = torch.full_like(pred, 1.0 if target_is_real else 0.0)
    if mode == "lsgan":
        return F.mse_loss(pred, target)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(pred, target)
    raise ValueError(f"unknown gan mode {mode!r}; valid: lsgan, vanilla")


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute error in fp32 (cycle and identity terms)."""
    return F.l1_loss(a.float(), b.float())


def discriminator_loss(pred_real: torch.Tensor, pred_fake: torch.Tensor, mode: GanMode = "lsgan") -> torch.Tensor:
    """0.5 * (loss(D(real), 1) + loss(D(fake), 0)): halved to slow D relative to G (sec. 7.1)."""
    return 0.5 * (gan_loss(pred_real, True, mode) + gan_loss(pred_fake, False, mode))
