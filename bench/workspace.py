"""What the benchmarks build in a temporary folder: image folders, configs, trainers and
checkpoints with random weights (speed does not depend on the weights' values).

Every checkpoint is written the way users get one: by a trainer's ``save()`` (CycleGAN, WCT
decoders), or in the layout of PyTorch's ``examples/fast_neural_style`` files (Johnson), and
read back through :func:`methods.base.load_method`.
"""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from data.demo import source_photo


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence what trainers and methods print while they are built (headers, random-VGG warnings)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def photo(name: str, size: int) -> torch.Tensor:
    """One of scikit-image's bundled photos (``astronaut``, ``chelsea`` ...), centre-cropped square
    and resized: uint8 (1, 3, size, size). Nothing is downloaded."""
    img = source_photo(name)
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    pil = Image.fromarray(img[top : top + s, left : left + s]).resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).unsqueeze(0).contiguous()


def save_png(image: torch.Tensor, path: Path) -> Path:
    """uint8 (1, 3, H, W) or (3, H, W) -> a PNG file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.reshape(-1, *image.shape[-2:]).permute(1, 2, 0).numpy()).save(path)
    return path


class Workspace:
    """A temporary folder of one bench run; ``device`` is where trainers and methods run."""

    def __init__(self, root: Path, device: torch.device) -> None:
        self.root, self.device = Path(root), device
        self._names = itertools.count()
        self._made: dict[tuple[Any, ...], Path] = {}  # checkpoints already written, by what they hold

    def _name(self, prefix: str) -> str:
        return f"{prefix}_{next(self._names)}"

    # ------------------------------------------------------------------------------- images

    def image_folder(self, name: str, count: int, size: int) -> Path:
        """``count`` PNG photos of ``size`` px in ``root/name`` (made once)."""
        folder = self.root / name
        if not folder.is_dir():
            sources = ("astronaut", "coffee", "chelsea", "rocket")
            for i in range(count):
                save_png(photo(sources[i % len(sources)], size), folder / f"{i:04d}.png")
        return folder

    def photo_file(self, name: str, size: int) -> Path:
        path = self.root / "photos" / f"{name}_{size}.png"
        return path if path.is_file() else save_png(photo(name, size), path)

    def cyclegan_dataset(self) -> Path:
        """The monet2photo layout with two 32 px images per folder: enough to build a trainer
        (the benchmarks feed it synthetic batches; the loader is never iterated)."""
        root = self.root / "cyclegan_data"
        for sub in ("trainA", "trainB", "testA", "testB"):
            self.image_folder(f"cyclegan_data/{sub}", 2, 32)
        return root

    # ------------------------------------------------------------------------------- CycleGAN

    def cyclegan_config(self, crop: int, batch: int, ngf: int = 64, ndf: int = 64, n_blocks: int = 9,
                        amp: str = "off", channels_last: bool = False, compile: str = "off",
                        grad_checkpoint: bool = False, fused_adam: bool = True, extra: list[str] | None = None) -> Any:
        """A validated CycleGAN config: the given networks and speed options, no validation
        images, no logging or checkpoints during the run, writing under the workspace."""
        from options.common import load_training_config

        overrides = [
            "method=cyclegan", f"name={self._name('cyclegan')}", f"device={self.device}",
            f"log.root={self.root / 'runs'}", "log.progress=false", "log.images_every=0",
            "log.scalars_every=1000000", "checkpoint.every_epochs=0",
            f"data.root={self.cyclegan_dataset()}", f"data.load_size={crop}", f"data.crop_size={crop}",
            f"data.batch_size={batch}", "data.num_workers=0", "data.val_images=0",
            f"model.ngf={ngf}", f"model.ndf={ndf}", f"model.n_blocks={n_blocks}",
            f"train.amp={amp}", f"train.channels_last={str(channels_last).lower()}", f"train.compile={compile}",
            f"train.grad_checkpoint={str(grad_checkpoint).lower()}", f"train.fused_adam={str(fused_adam).lower()}",
            *(extra or []),
        ]
        return load_training_config(None, overrides)

    def trainer(self, cfg: Any) -> Any:
        """``training.build_trainer(cfg)``, quietly. Close it (``trainer.close()``) when done."""
        from training import build_trainer

        with quiet():
            return build_trainer(cfg)

    def cyclegan_checkpoint(self, ngf: int = 64, n_blocks: int = 9) -> Path:
        """A CycleGAN run folder holding one checkpoint with random weights, written by ``save()``."""
        key = ("cyclegan", ngf, n_blocks)
        if key not in self._made:
            self._made[key] = self._saved(self.cyclegan_config(32, 1, ngf, ngf, n_blocks))
        return self._made[key]

    def _saved(self, cfg: Any) -> Path:
        trainer = self.trainer(cfg)
        try:
            trainer.save()
        finally:
            trainer.close()
        return trainer.run_dir

    # ------------------------------------------------------------------------------- style methods

    def johnson_file(self, channels: int = 32, n_blocks: int = 5) -> Path:
        """A Johnson network with random weights in the layout of PyTorch's fast_neural_style
        files (``candy.pth`` ...): a bare state_dict, read back as such by ``load_method``."""
        from models.johnson import TransformerNet

        path = self.root / "weights" / f"johnson_c{channels}_b{n_blocks}.pth"
        if not path.is_file():
            torch.manual_seed(0)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(TransformerNet(channels, n_blocks, output="clamp").state_dict(), path)
        return path

    def wct_checkpoint(self, width: float = 1.0, levels: tuple[str, ...] | None = None) -> Path:
        """A decoder run (every level of ``levels``, default all five) with a random-weight VGG-19
        encoder and random decoders, written by the decoder trainer's ``save()``."""
        from options.common import load_training_config

        key = ("wct", width, levels)
        if key in self._made:
            return self._made[key]
        level_list = f"[{','.join(levels)}]" if levels else "[relu1_1,relu2_1,relu3_1,relu4_1,relu5_1]"
        cfg = load_training_config(None, [
            "method=wct", f"name={self._name('wct')}", f"device={self.device}", f"log.root={self.root / 'runs'}",
            "log.progress=false", "log.images_every=0", f"data.root={self.image_folder('content', 2, 32)}",
            "data.load_size=32", "data.crop_size=32", "data.batch_size=1", "data.num_workers=0",
            "vgg.weights=random", f"model.width={width}", f"model.levels={level_list}",
        ])
        self._made[key] = self._saved(cfg)
        return self._made[key]
