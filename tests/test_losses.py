"""CycleGAN's objectives against hand-computed values (models/gan_networks.py, models/cyclegan.py)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from models.cyclegan import CycleWeights, DiscriminatorLosses, DiscriminatorPair, GeneratorLosses, Translations
from models.gan_networks import discriminator_loss, gan_loss


def test_lsgan_by_hand() -> None:
    pred = torch.tensor([[0.5, 1.5], [-1.0, 0.0]])
    # real: mean((p - 1)^2) = (0.25 + 0.25 + 4 + 1) / 4
    assert gan_loss(pred, True, "lsgan").item() == pytest.approx(5.5 / 4)
    # fake: mean(p^2) = (0.25 + 2.25 + 1 + 0) / 4
    assert gan_loss(pred, False, "lsgan").item() == pytest.approx(3.5 / 4)


def test_vanilla_by_hand() -> None:
    pred = torch.tensor([0.0, 2.0])
    real = (math.log(2) + math.log(1 + math.exp(-2))) / 2  # -log(sigmoid(p))
    fake = (math.log(2) + math.log(1 + math.exp(2))) / 2  # -log(1 - sigmoid(p))
    assert gan_loss(pred, True, "vanilla").item() == pytest.approx(real, rel=1e-6)
    assert gan_loss(pred, False, "vanilla").item() == pytest.approx(fake, rel=1e-6)


def test_discriminator_loss_is_halved_sum() -> None:
    real, fake = torch.tensor([0.5]), torch.tensor([0.25])
    # 0.5 * ((0.5 - 1)^2 + 0.25^2) = 0.5 * (0.25 + 0.0625)
    assert discriminator_loss(real, fake).item() == pytest.approx(0.15625)


def _translations(identity: bool = True) -> Translations:
    full = lambda v: torch.full((1, 1, 2, 2), v)  # noqa: E731
    return Translations(fake_B=full(0.0), rec_A=full(0.1), fake_A=full(0.0), rec_B=full(0.8),
                        idt_A=full(0.5) if identity else None, idt_B=full(-0.25) if identity else None)


def test_generator_losses_by_hand() -> None:
    real_A, real_B = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    pred_fake_B = torch.full((1, 1, 3, 3), 0.5)  # (0.5 - 1)^2 = 0.25
    pred_fake_A = torch.zeros(1, 1, 3, 3)  # (0 - 1)^2 = 1
    g = GeneratorLosses.compute(_translations(), pred_fake_B, pred_fake_A, real_A, real_B,
                                CycleWeights(lambda_A=10, lambda_B=5, lambda_identity=0.5))
    assert g.G_A.item() == pytest.approx(0.25)
    assert g.G_B.item() == pytest.approx(1.0)
    assert g.cycle_A.item() == pytest.approx(0.1 * 10)  # |G_B(G_A(A)) - A| = 0.1
    assert g.cycle_B.item() == pytest.approx(0.2 * 5)  # |G_A(G_B(B)) - B| = 0.2
    assert g.idt_A.item() == pytest.approx(0.5 * 5 * 0.5)  # |G_A(B) - B| weighted by lambda_B * lambda_identity
    assert g.idt_B.item() == pytest.approx(0.25 * 10 * 0.5)  # |G_B(A) - A| weighted by lambda_A * lambda_identity
    assert g.total.item() == pytest.approx(0.25 + 1 + 1 + 1 + 1.25 + 1.25)
    # The logged names are the dataclass's fields: adding a term is one edit.
    assert list(g.as_dict()) == [f.name for f in dataclasses.fields(GeneratorLosses)]
    assert list(g.as_dict()) == ["G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B"]


def test_identity_off_is_zero_and_needs_no_identity_images() -> None:
    x = torch.zeros(1, 1, 2, 2)
    g = GeneratorLosses.compute(_translations(identity=False), x, x, x, x, CycleWeights(lambda_identity=0.0))
    assert g.idt_A.item() == 0 and g.idt_B.item() == 0
    with pytest.raises(ValueError, match="identity images"):
        GeneratorLosses.compute(_translations(identity=False), x, x, x, x, CycleWeights(lambda_identity=0.5))


def test_discriminator_losses_by_hand() -> None:
    class Const(torch.nn.Module):  # a "discriminator" answering a constant logit map
        def __init__(self, real: float, fake: float) -> None:
            super().__init__()
            self.real, self.fake = real, fake

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # real images are ones here, fakes zeros
            return torch.full((x.shape[0], 1, 2, 2), self.real if x.mean() > 0.5 else self.fake)

    D = DiscriminatorPair(Const(0.5, 0.25), Const(1.0, 1.0))
    ones, zeros = torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    d = DiscriminatorLosses.compute(D, real_A=ones, real_B=ones, fake_A=zeros, fake_B=zeros, gan_mode="lsgan")
    assert d.D_A.item() == pytest.approx(0.5 * (0.25 + 0.0625))
    assert d.D_B.item() == pytest.approx(0.5 * (0.0 + 1.0))
    assert d.total.item() == pytest.approx(0.15625 + 0.5)


def test_losses_are_fp32_under_bf16_inputs() -> None:
    pred = torch.randn(2, 1, 4, 4).bfloat16()
    assert gan_loss(pred, True).dtype == torch.float32
