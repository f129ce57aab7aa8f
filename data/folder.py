"""One folder of images (a content set, COCO-like) for the style-transfer trainers (Johnson, WCT).

A sample is ``{"image": uint8 (3, H, W), "skipped": str}``: images stay 8-bit until they reach
the device. Randomness (crop, flip) comes from a generator seeded by ``(seed, epoch, index)``,
so a sample does not depend on worker count: a run resumed mid-epoch sees the same data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from data.image_io import BadImageError, list_images, load_rgb, pil_to_uint8
from data.transforms import Transform
from utils.errors import DatasetError


def content_images(folder: str | Path, what: str = "data.root") -> list[Path]:
    """The images of ``folder`` (recursively); a clear error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{what}: {folder} is not a folder of images (for the offline demo use "
                           f"datasets/demo/trainB, the demo's photos: `python -m data.demo`)")
    files = list_images(folder)
    if not files:
        raise DatasetError(f"{what}: {folder} contains no images (looked for .jpg .jpeg .png .bmp .tif .webp ...)")
    return files


class ImageFolderDataset(Dataset):
    """Images of one folder through a :class:`Transform`; a corrupt file is replaced by the next
    readable one and named in the sample's ``skipped`` field."""

    def __init__(self, files: list[Path], transform: Transform, seed: int = 0) -> None:
        if not files:
            raise DatasetError("the content set has no images")
        self.files, self.transform, self.seed = files, transform, seed
        self._bad: set[str] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, epoch, index])
        skipped: list[str] = []
        for k in range(len(self.files)):
            path = self.files[(index + k) % len(self.files)]
            if str(path) in self._bad:
                continue
            try:
                return {"image": pil_to_uint8(self.transform(load_rgb(path), rng)), "skipped": "\n".join(skipped)}
            except BadImageError as e:
                self._bad.add(str(path))
                skipped.append(f"{e.path}: {e.reason}")
        raise DatasetError(f"no readable image left in {self.files[0].parent}: every file failed to decode")
