"""The adversarial and L1 terms of CycleGAN (Zhu et al. 2017, eqs. 1-3 and section 7.1), which
CUT's objective (Park et al. 2020) uses too.

How they combine into the objectives is in :mod:`models.cyclegan` and :mod:`training.cut`.

Every reduction runs in fp32 even under autocast, so bf16/fp16 training keeps exact loss
values. Targets are built to the prediction's shape, as PatchGAN outputs a grid of logits.
"""

from __future__ import annotations

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
