"""CycleGAN objectives (Zhu et al. 2017, eqs. 1-3 and section 7.1), written as functions.

Every reduction runs in fp32 even under autocast, so bf16/fp16 training keeps exact loss
values. Targets are built to the prediction's shape, as PatchGAN outputs a grid of logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

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


@dataclass
class GeneratorLosses:
    """The terms of the generator objective; ``total`` is what is back-propagated."""

    G_A: torch.Tensor
    G_B: torch.Tensor
    cycle_A: torch.Tensor
    cycle_B: torch.Tensor
    idt_A: torch.Tensor
    idt_B: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.G_A + self.G_B + self.cycle_A + self.cycle_B + self.idt_A + self.idt_B

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {
            "G_A": self.G_A,
            "G_B": self.G_B,
            "cycle_A": self.cycle_A,
            "cycle_B": self.cycle_B,
            "idt_A": self.idt_A,
            "idt_B": self.idt_B,
        }


def generator_losses(
    pred_fake_B: torch.Tensor,
    pred_fake_A: torch.Tensor,
    real_A: torch.Tensor,
    real_B: torch.Tensor,
    rec_A: torch.Tensor,
    rec_B: torch.Tensor,
    idt_A: torch.Tensor | None,
    idt_B: torch.Tensor | None,
    lambda_A: float = 10.0,
    lambda_B: float = 10.0,
    lambda_identity: float = 0.5,
    mode: GanMode = "lsgan",
) -> GeneratorLosses:
    """Full generator objective for one batch.

    Args:
        pred_fake_B: D_A(G_A(real_A)), logits. pred_fake_A: D_B(G_B(real_B)).
        rec_A: G_B(G_A(real_A)); rec_B: G_A(G_B(real_B)). Images in [-1, 1].
        idt_A: G_A(real_B), idt_B: G_B(real_A) (None when lambda_identity is 0).
        lambda_identity: identity weight *relative to* the cycle weight (the reference's
            convention): the identity term is lambda_identity * lambda_B * |G_A(B) - B|_1.
    """
    zero = real_A.new_zeros((), dtype=torch.float32)
    if lambda_identity > 0:
        assert idt_A is not None and idt_B is not None, "identity images are needed when lambda_identity > 0"
        loss_idt_A = l1(idt_A, real_B) * lambda_B * lambda_identity
        loss_idt_B = l1(idt_B, real_A) * lambda_A * lambda_identity
    else:
        loss_idt_A = loss_idt_B = zero
    return GeneratorLosses(
        G_A=gan_loss(pred_fake_B, True, mode),
        G_B=gan_loss(pred_fake_A, True, mode),
        cycle_A=l1(rec_A, real_A) * lambda_A,
        cycle_B=l1(rec_B, real_B) * lambda_B,
        idt_A=loss_idt_A,
        idt_B=loss_idt_B,
    )
