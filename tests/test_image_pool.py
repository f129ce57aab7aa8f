"""The image pool's reference semantics (Shrivastava et al. 2017; the CycleGAN reference's ImagePool)."""

from __future__ import annotations

import torch

from training.cyclegan import ImagePool


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


def test_pool_keeps_the_batch_shape() -> None:
    """A fixed-shape batch out, whatever the pool holds: a captured graph is reused every step."""
    pool = ImagePool(pool_size=3, seed=1)
    for k in range(10):
        assert pool.query(torch.full((4, 3, 8, 8), float(k))).shape == (4, 3, 8, 8)


def test_pool_is_seeded_and_state_round_trips() -> None:
    a, b = ImagePool(2, seed=7), ImagePool(2, seed=7)
    for k in range(20):
        assert torch.equal(a.query(_images(2, 2 * k)), b.query(_images(2, 2 * k)))
    c = ImagePool(2, seed=99)
    c.load_state_dict(a.state_dict())
    for k in range(20, 40):
        assert torch.equal(a.query(_images(2, 2 * k)), c.query(_images(2, 2 * k)))


def test_pool_state_of_format_version_1_still_loads() -> None:
    """Version-1 checkpoints stored a torch.Generator state: it loads and the pool goes on, seeded by it."""
    old = {"pool_size": 2, "images": [torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)],
           "rng": torch.Generator().manual_seed(3).get_state()}
    a, b = ImagePool(2, seed=0), ImagePool(2, seed=1)
    a.load_state_dict(old)
    b.load_state_dict(old)
    assert [im.item() for im in a.images] == [0.0, 1.0]
    assert all(torch.equal(a.query(_images(1, k)), b.query(_images(1, k))) for k in range(10, 30))


def test_pool_size_zero_passes_through() -> None:
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(ImagePool(0).query(x), x)
