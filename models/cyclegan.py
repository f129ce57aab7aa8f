"""The CycleGAN model: its four networks, the generator pass, and one step's objectives.

Naming follows the paper (Zhu et al. 2017): G_A: A -> B (G), G_B: B -> A (F), D_A judges
domain B, D_B judges domain A. Per iteration the trainer (``training/cyclegan.py``) minimises
:class:`GeneratorLosses` with D frozen, then :class:`DiscriminatorLosses`.

To add a loss term: add a field to :class:`GeneratorLosses` and its expression in
:meth:`GeneratorLosses.compute`; it is summed into the total and logged under the field's name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.gan_networks import (
    GanMode,
    InitKind,
    NLayerDiscriminator,
    NormKind,
    ResnetGenerator,
    UpsampleKind,
    discriminator_loss,
    gan_loss,
    init_weights,
    l1,
)
from models.terms import Terms


def build_generator(input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9,
                    norm: NormKind = "instance", dropout: bool = False, upsample: UpsampleKind = "transpose",
                    init: InitKind = "normal", init_gain: float = 0.02,
                    grad_checkpoint: bool = False) -> ResnetGenerator:
    net = ResnetGenerator(input_nc, output_nc, ngf, n_blocks, norm, dropout, upsample, grad_checkpoint)
    return init_weights(net, init, init_gain)


def build_discriminator(input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: NormKind = "instance",
                        init: InitKind = "normal", init_gain: float = 0.02) -> NLayerDiscriminator:
    return init_weights(NLayerDiscriminator(input_nc, ndf, n_layers, norm), init, init_gain)


@dataclass
class Translations:
    """Images produced in one generator pass, all ``(N, C, H, W)`` in [-1, 1]."""

    fake_B: torch.Tensor  # G_A(A)
    rec_A: torch.Tensor  # G_B(G_A(A))
    fake_A: torch.Tensor  # G_B(B)
    rec_B: torch.Tensor  # G_A(G_B(B))
    idt_A: torch.Tensor | None  # G_A(B)
    idt_B: torch.Tensor | None  # G_B(A)


class GeneratorPair(nn.Module):
    """Both generators as one module, so one DDP wrapper syncs both in one backward."""

    def __init__(self, G_A: nn.Module, G_B: nn.Module) -> None:
        super().__init__()
        self.G_A, self.G_B = G_A, G_B

    def forward(self, real_A: torch.Tensor, real_B: torch.Tensor, identity: bool = True) -> Translations:
        fake_B = self.G_A(real_A)
        fake_A = self.G_B(real_B)
        return Translations(
            fake_B=fake_B,
            rec_A=self.G_B(fake_B),
            fake_A=fake_A,
            rec_B=self.G_A(fake_A),
            idt_A=self.G_A(real_B) if identity else None,
            idt_B=self.G_B(real_A) if identity else None,
        )


class DiscriminatorPair(nn.Module):
    """Both discriminators as one module: returns (D_A(images of B), D_B(images of A))."""

    def __init__(self, D_A: nn.Module, D_B: nn.Module) -> None:
        super().__init__()
        self.D_A, self.D_B = D_A, D_B

    def forward(self, images_B: torch.Tensor, images_A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.D_A(images_B), self.D_B(images_A)


@dataclass(frozen=True)
class CycleWeights:
    """The loss weights of the objective (``loss.*`` in the config)."""

    lambda_A: float = 10.0  # cycle A -> B -> A
    lambda_B: float = 10.0  # cycle B -> A -> B
    lambda_identity: float = 0.5  # relative to the cycle weights, as in the reference
    gan_mode: GanMode = "lsgan"


@dataclass
class GeneratorLosses(Terms):
    """The generator objective's terms, fp32 scalars (eqs. 1-3 and the identity loss of section 5.2)."""

    G_A: torch.Tensor  # adversarial: D_A(G_A(A)) should say "real"
    G_B: torch.Tensor  # D_B(G_B(B)) likewise
    cycle_A: torch.Tensor  # lambda_A * |G_B(G_A(A)) - A|_1
    cycle_B: torch.Tensor  # lambda_B * |G_A(G_B(B)) - B|_1
    idt_A: torch.Tensor  # lambda_identity * lambda_B * |G_A(B) - B|_1
    idt_B: torch.Tensor  # lambda_identity * lambda_A * |G_B(A) - A|_1

    @classmethod
    def compute(cls, tr: Translations, pred_fake_B: torch.Tensor, pred_fake_A: torch.Tensor,
                real_A: torch.Tensor, real_B: torch.Tensor, w: CycleWeights) -> GeneratorLosses:
        """``pred_fake_B`` = D_A(G_A(A)), ``pred_fake_A`` = D_B(G_B(B)) (logits); images in [-1, 1]."""
        zero = real_A.new_zeros((), dtype=torch.float32)
        identity = w.lambda_identity > 0
        if identity and (tr.idt_A is None or tr.idt_B is None):
            raise ValueError("identity images are needed when lambda_identity > 0")
        return cls(
            G_A=gan_loss(pred_fake_B, True, w.gan_mode),
            G_B=gan_loss(pred_fake_A, True, w.gan_mode),
            cycle_A=l1(tr.rec_A, real_A) * w.lambda_A,
            cycle_B=l1(tr.rec_B, real_B) * w.lambda_B,
            idt_A=l1(tr.idt_A, real_B) * w.lambda_B * w.lambda_identity if identity else zero,
            idt_B=l1(tr.idt_B, real_A) * w.lambda_A * w.lambda_identity if identity else zero,
        )


@dataclass
class DiscriminatorLosses(Terms):
    """Each 0.5 * (loss(D(real), 1) + loss(D(fake), 0)) on pooled fakes (section 7.1)."""

    D_A: torch.Tensor  # real B vs fake B
    D_B: torch.Tensor  # real A vs fake A

    @classmethod
    def compute(cls, D: DiscriminatorPair, real_A: torch.Tensor, real_B: torch.Tensor, fake_A: torch.Tensor,
                fake_B: torch.Tensor, gan_mode: GanMode) -> DiscriminatorLosses:
        pred_real_B, pred_real_A = D(real_B, real_A)
        pred_fake_B, pred_fake_A = D(fake_B, fake_A)
        return cls(D_A=discriminator_loss(pred_real_B, pred_fake_B, gan_mode),
                   D_B=discriminator_loss(pred_real_A, pred_fake_A, gan_mode))
