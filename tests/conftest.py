"""Shared fixtures: the tiny demo dataset, THE tiny CycleGAN config, THE tiny feature network.

Tiny means ngf 8, one residual block, 32 px images: the real code paths at a size that runs in
a fraction of a second on 2 CPU cores. Nothing here downloads anything.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from data.demo import DemoSpec, make_demo_dataset  # noqa: E402
from options.common import load_training_config  # noqa: E402
from options.cyclegan import CycleGANConfig  # noqa: E402

# The one tiny CycleGAN: 8 + 8 demo images (2 held out per domain), 32 px crops, 2 epochs of 6 steps.
TINY = [
    "device=cpu", "data.load_size=36", "data.crop_size=32", "data.num_workers=0", "data.val_images=2",
    "model.ngf=8", "model.ndf=8", "model.n_blocks=1", "model.n_layers_D=2",
    "optim.n_epochs=1", "optim.n_epochs_decay=1", "log.progress=false", "log.scalars_every=2",
    "log.images_every=4", "train.pool_size=4",
]
BATCHES_PER_EPOCH = 6  # 8 images - 2 held out, batch size 1
# The one tiny Gatys: a random-weight VGG cut after relu2_2, 2 L-BFGS steps, images kept at their size.
GATYS_TINY = ["vgg.weights=random", "optim.steps=2", "image.size=0", "progress=false",
              "loss.content_layers=[relu2_2]", "loss.style_layers=[relu1_1,relu2_1]"]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from a second intra-op thread, and when the 2 CPU cores are shared
    (other jobs, a DataLoader worker) OpenMP barriers stall: a tiny training run took 13 s instead
    of 0.4 s under load. The subprocess tests set OMP_NUM_THREADS=1 for the same reason."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo dataset of 32-px images: 8 + 8 train, 2 paired test (made once per session)."""
    root = tmp_path_factory.mktemp("data") / "demo"
    return make_demo_dataset(root, DemoSpec(size=32, n_train_A=8, n_train_B=8, n_test=2))


@pytest.fixture
def tiny_config(tiny_dataset: Path, tmp_path: Path) -> Callable[..., CycleGANConfig]:
    """Factory: a validated tiny CycleGAN config writing under tmp_path; extra overrides win."""

    def make(*overrides: str) -> CycleGANConfig:
        base = [f"data.root={tiny_dataset}", f"log.root={tmp_path / 'runs'}", "name=tiny", *TINY]
        return load_training_config(None, [*base, *overrides])

    return make


@pytest.fixture
def make_trainer() -> Iterator[Callable]:
    """Factory: build a trainer for a config; every one built is closed (run folder unlocked) at teardown."""
    from training import build_trainer

    built = []

    def make(cfg, **kwargs):
        trainer = build_trainer(cfg, **kwargs)
        built.append(trainer)
        return trainer

    yield make
    for trainer in built:
        trainer.close()


class TinyFeatures(nn.Module):
    """uint8 (B, 3, H, W) -> (B, 16): a fixed random conv and global pooling; stands in for Inception."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 3, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.3)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x.float() / 127.5 - 1.0)).mean(dim=(2, 3))


@pytest.fixture
def tiny_features() -> TinyFeatures:
    return TinyFeatures()
