"""Builders for the four CycleGAN networks and the two pair modules the trainer drives.

Naming follows the paper: G_A: A -> B (G), G_B: B -> A (F), D_A judges domain B,
D_B judges domain A.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.networks import InitKind, NLayerDiscriminator, NormKind, ResnetGenerator, UpsampleKind, init_weights


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
