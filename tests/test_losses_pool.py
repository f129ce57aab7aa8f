"""Losses against hand-computed values; the image pool's reference semantics."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses import discriminator_loss, gan_loss, generator_losses
from utils.image_pool import ImagePool


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


def test_generator_losses_by_hand() -> None:
    real_A = torch.zeros(1, 1, 2, 2)
    real_B = torch.ones(1, 1, 2, 2)
    rec_A = torch.full((1, 1, 2, 2), 0.1)  # |0.1 - 0| = 0.1
    rec_B = torch.full((1, 1, 2, 2), 0.8)  # |0.8 - 1| = 0.2
    idt_A = torch.full((1, 1, 2, 2), 0.5)  # G_A(B) vs B: 0.5
    idt_B = torch.full((1, 1, 2, 2), -0.25)  # G_B(A) vs A: 0.25
    pred_fake_B = torch.full((1, 1, 3, 3), 0.5)  # (0.5 - 1)^2 = 0.25
    pred_fake_A = torch.zeros(1, 1, 3, 3)  # 1
    g = generator_losses(pred_fake_B, pred_fake_A, real_A, real_B, rec_A, rec_B, idt_A, idt_B,
                         lambda_A=10, lambda_B=5, lambda_identity=0.5)
    assert g.G_A.item() == pytest.approx(0.25)
    assert g.G_B.item() == pytest.approx(1.0)
    assert g.cycle_A.item() == pytest.approx(0.1 * 10)
    assert g.cycle_B.item() == pytest.approx(0.2 * 5)
    assert g.idt_A.item() == pytest.approx(0.5 * 5 * 0.5)  # weighted by lambda_B * lambda_identity
    assert g.idt_B.item() == pytest.approx(0.25 * 10 * 0.5)  # weighted by lambda_A * lambda_identity
    assert g.total.item() == pytest.approx(0.25 + 1 + 1 + 1 + 1.25 + 1.25)
    assert set(g.as_dict()) == {"G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B"}


def test_identity_off_is_zero() -> None:
    x = torch.zeros(1, 3, 4, 4)
    g = generator_losses(x, x, x, x, x, x, None, None, lambda_identity=0.0)
    assert g.idt_A.item() == 0 and g.idt_B.item() == 0


def test_losses_are_fp32_under_bf16_inputs() -> None:
    pred = torch.randn(2, 1, 4, 4).bfloat16()
    assert gan_loss(pred, True).dtype == torch.float32


def _images(n: int, start: int) -> torch.Tensor:
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1, 1)


def test_pool_fills_then_returns_new_images() -> None:
    pool = ImagePool(pool_size=3, seed=0)
    out = pool.query(_images(3, 0))
    assert out.flatten().tolist() == [0, 1, 2]
    assert [im.item() for im in pool.images] == [0, 1, 2]


def test_pool_probabilities_and_swap_semantics() -> None:
    pool = ImagePool(pool_size=4, seed=123)
    pool.query(_images(4, 0))
    n, returned_new = 4000, 0
    for k in range(n):
        new_value = 1000 + k
        before = [im.item() for im in pool.images]
        out = pool.query(_images(1, new_value)).item()
        after = [im.item() for im in pool.images]
        if out == new_value:  # returned as is: pool unchanged
            returned_new += 1
            assert after == before
        else:  # an old image comes back and the new one takes its slot
            slot = before.index(out)
            assert after[slot] == new_value and after[:slot] + after[slot + 1:] == before[:slot] + before[slot + 1:]
    # p = 0.5; 4000 draws: 3 sigma is ~ 0.024.
    assert abs(returned_new / n - 0.5) < 0.03


def test_pool_is_seeded_and_state_round_trips() -> None:
    a, b = ImagePool(2, seed=7), ImagePool(2, seed=7)
    for k in range(20):
        assert torch.equal(a.query(_images(2, 2 * k)), b.query(_images(2, 2 * k)))
    c = ImagePool(2, seed=99)
    c.load_state_dict(a.state_dict())
    for k in range(20, 40):
        assert torch.equal(a.query(_images(2, 2 * k)), c.query(_images(2, 2 * k)))


def test_pool_size_zero_passes_through() -> None:
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(ImagePool(0).query(x), x)
