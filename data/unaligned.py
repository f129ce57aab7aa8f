"""Unaligned two-domain dataset (the reference's ``UnalignedDataset``).

A sample is ``{"A": uint8 (3, H, W), "B": uint8 (3, H, W), "skipped": str}``. Images stay
8-bit until they reach the device (the trainer scales them to [-1, 1]), so workers never
build full-size float tensors and pinned-memory copies are 4x smaller.

Randomness (which B goes with an A, crop offsets, flips) comes from a generator seeded by
``(seed, epoch, index)``, so a sample does not depend on worker count or on how many samples
came before it: a run resumed mid-epoch sees exactly the data it would have seen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from data.image_io import BadImageError, list_images, load_rgb, pil_to_uint8
from data.transforms import Transform
from utils.errors import DatasetError

LAYOUT = ("trainA", "trainB", "testA", "testB")  # the monet2photo layout: the folders a dataset holds


def check_dataset_root(root: Path, demo_config: str) -> None:
    """A two-domain dataset folder must exist with trainA/ trainB/ testA/ testB/ (the monet2photo
    layout); the error says how to get one, or which demo config trains without one."""
    if not root.is_dir():
        raise DatasetError(
            f"dataset folder {root} does not exist. Expected the monet2photo layout: {root}/trainA {root}/trainB "
            f"{root}/testA {root}/testB. Download it with `python -m data.download monet2photo --output "
            f"{root.parent}`, or train on the built-in demo dataset: --config {demo_config}")
    for sub in ("testA", "testB"):
        if not (root / sub).is_dir():
            raise DatasetError(f"{root / sub} is missing: a dataset needs trainA/ trainB/ testA/ testB/")


def image_folder(root: Path, name: str) -> list[Path]:
    """Images of ``root/name``; a clear error when it is missing or has none."""
    folder = root / name
    if not folder.is_dir():
        raise DatasetError(
            f"{folder} does not exist. A dataset folder needs trainA/ trainB/ testA/ testB/ "
            f"(monet2photo layout); download one with `python -m data.download monet2photo --root datasets`, "
            f"or use the built-in demo dataset (data.demo=true)."
        )
    files = list_images(folder)
    if not files:
        raise DatasetError(f"{folder} contains no images (looked for .jpg .jpeg .png .bmp .tif .webp ...)")
    return files


class UnalignedDataset(Dataset):
    """Pairs an A image with a random B image; length max(len A, len B).

    Index with ``(epoch, i)`` tuples (what :class:`EpochSampler` yields); a plain int means
    epoch 0. A corrupt file is replaced by the next readable one of its domain and named in
    the sample's ``skipped`` field, so the trainer can warn once and count it.
    """

    def __init__(self, files_A: list[Path], files_B: list[Path], transform: Transform, seed: int = 0,
                 random_B: bool = True) -> None:
        if not files_A or not files_B:
            raise DatasetError("both domains need at least one image")
        self.files_A, self.files_B = files_A, files_B
        self.transform = transform
        self.seed = seed
        self.random_B = random_B
        self._bad: set[str] = set()

    def __len__(self) -> int:
        return max(len(self.files_A), len(self.files_B))

    def _load(self, files: list[Path], idx: int, rng: np.random.Generator, skipped: list[str]) -> torch.Tensor:
        for k in range(len(files)):
            path = files[(idx + k) % len(files)]
            if str(path) in self._bad:
                continue
            try:
                return pil_to_uint8(self.transform(load_rgb(path), rng))
            except BadImageError as e:
                self._bad.add(str(path))
                skipped.append(f"{e.path}: {e.reason}")
        raise DatasetError(f"no readable image left in {files[0].parent}: every file failed to decode")

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, epoch, index])
        idx_A = index % len(self.files_A)
        idx_B = int(rng.integers(0, len(self.files_B))) if self.random_B else index % len(self.files_B)
        skipped: list[str] = []
        A = self._load(self.files_A, idx_A, rng, skipped)
        B = self._load(self.files_B, idx_B, rng, skipped)
        return {"A": A, "B": B, "skipped": "\n".join(skipped)}
