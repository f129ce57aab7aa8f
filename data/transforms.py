"""Pre-processing and held-out splits shared by every trainer's datasets.

:class:`Transform` is the reference's ``get_transform`` geometry (resize, crop, flip) on PIL
images; :func:`split_train_val` holds the last files of a folder out for validation and
:func:`load_validation_images` decodes them once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from data.image_io import BadImageError, load_rgb, pil_to_uint8
from utils.errors import DatasetError

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
