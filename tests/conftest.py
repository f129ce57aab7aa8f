"""Shared fixtures: a tiny demo dataset and tiny training configs (ngf 8, 1 block, 32 px)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from data.demo import DemoSpec, make_demo_dataset  # noqa: E402
from options.config import Config, load_config  # noqa: E402

TINY = [
    "data.load_size=36", "data.crop_size=32", "data.num_workers=0", "data.val_images=2",
    "model.ngf=8", "model.ndf=8", "model.n_blocks=1", "model.n_layers_D=2",
    "optim.n_epochs=1", "optim.n_epochs_decay=1", "log.progress=false", "log.scalars_every=2",
    "log.images_every=4", "train.pool_size=4",
]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo dataset of 32-px images: 8 + 8 train, 2 paired test (made once per session)."""
    root = tmp_path_factory.mktemp("data") / "demo"
    return make_demo_dataset(root, DemoSpec(size=32, n_train_A=8, n_train_B=8, n_test=2))


@pytest.fixture
def tiny_config(tiny_dataset: Path, tmp_path: Path):
    """Factory: a validated tiny Config writing under tmp_path; extra overrides win."""

    def make(*overrides: str) -> Config:
        base = [f"data.root={tiny_dataset}", f"log.root={tmp_path / 'runs'}", "name=tiny", *TINY]
        return load_config(None, [*base, *overrides])

    return make
