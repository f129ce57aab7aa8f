"""Unaligned two-domain dataset (the reference's ``UnalignedDataset``), its transforms and splits.

A sample is ``{"A": uint8 (3, H, W), "B": uint8 (3, H, W), "skipped": str}``. Images stay
8-bit until they reach the device (the trainer scales them to [-1, 1]), so workers never
build full-size float tensors and pinned-memory copies are 4x smaller.

Randomness (which B goes with an A, crop offsets, flips) comes from a generator seeded by
``(seed, epoch, index)``, so a sample does not depend on worker count or on how many samples
came before it: a run resumed mid-epoch sees exactly the data it would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from data.errors import DatasetError  # noqa: F401 (re-exported: callers import it from here)
from data.image_io import BadImageError, list_images, load_rgb, pil_to_uint8

Preprocess = Literal["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "scale_shortside_and_crop",
                     "none"]


@dataclass(frozen=True)
class Transform:
    """Geometric pre-processing as in the reference's ``get_transform``.

    resize_and_crop: resize to load_size x load_size, random crop crop_size.
    crop: random crop crop_size from the original. scale_width: width to load_size, keep the
    aspect ratio. scale_width_and_crop: that, then a random crop. scale_shortside_and_crop: the
    shorter side to load_size, keep the aspect ratio, then a random crop (content sets of every
    aspect ratio, as COCO: Johnson's networks and the WCT decoders). none: keep the size. Every
    mode rounds the final size down to a multiple of 4 (the generator needs it).
    With ``train=False`` crops are central and nothing is flipped.
    """

    preprocess: Preprocess = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    train: bool = True

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        p, bicubic = self.preprocess, Image.Resampling.BICUBIC
        if p == "resize_and_crop":
            img = img.resize((self.load_size, self.load_size), bicubic)
        elif p in ("scale_width", "scale_width_and_crop"):
            w, h = img.size
            if w != self.load_size:
                target_h = max(int(round(self.load_size * h / w)), self.crop_size if "crop" in p else 1)
                img = img.resize((self.load_size, target_h), bicubic)
        elif p == "scale_shortside_and_crop":
            w, h = img.size
            s = self.load_size / min(w, h)
            size = (max(self.crop_size, round(w * s)), max(self.crop_size, round(h * s)))
            if size != (w, h):
                img = img.resize(size, bicubic)
        if "crop" in p:
            img = self._crop(img, rng)
        img = _multiple_of_4(img)
        if self.train and self.flip and rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img

    def _crop(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        c = self.crop_size
        w, h = img.size
        if w < c or h < c:  # only possible in "crop" mode on small images: upscale to fit
            s = c / min(w, h)
            img = img.resize((max(c, round(w * s)), max(c, round(h * s))), Image.Resampling.BICUBIC)
            w, h = img.size
        if self.train:
            x, y = int(rng.integers(0, w - c + 1)), int(rng.integers(0, h - c + 1))
        else:
            x, y = (w - c) // 2, (h - c) // 2
        return img.crop((x, y, x + c, y + c))


def _multiple_of_4(img: Image.Image) -> Image.Image:
    w, h = img.size
    nw, nh = max(4, w // 4 * 4), max(4, h // 4 * 4)
    return img if (nw, nh) == (w, h) else img.resize((nw, nh), Image.Resampling.BICUBIC)


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


def split_train_val(files: list[Path], val_images: int, subset: int, folder: Path) -> tuple[list[Path], list[Path]]:
    """Hold the last ``val_images`` files out for validation; keep the first ``subset`` of the rest."""
    if val_images >= len(files):
        raise DatasetError(
            f"{folder} has {len(files)} images, too few to hold out data.val_images={val_images} for validation "
            f"and still train; lower data.val_images"
        )
    train = files[: len(files) - val_images] if val_images else list(files)
    val = files[len(files) - val_images :] if val_images else []
    if subset:
        train = train[:subset]
    return train, val


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


def load_validation_images(paths: list[Path], transform: Transform) -> tuple[list[torch.Tensor], list[str]]:
    """Held-out images decoded once, centre-cropped, as uint8 (3, H, W); unreadable ones are returned
    as ``"<path>: <reason>"`` lines instead (warned about and counted like training images)."""
    rng = np.random.default_rng(0)
    images, skipped = [], []
    for p in paths:
        try:
            images.append(pil_to_uint8(transform(load_rgb(p), rng)))
        except BadImageError as e:
            skipped.append(f"{e.path}: {e.reason}")
    return images, skipped
