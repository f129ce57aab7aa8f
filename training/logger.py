"""TensorBoard logging through the real SummaryWriter; a no-op on ranks other than 0."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid


class Logger:
    """Scalars and image grids under ``<run_dir>/tb``.

    ``purge_step``: on resume, events TensorBoard holds beyond this step (written after the
    checkpoint by the interrupted run) are discarded, so curves do not double back.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, purge_step: int | None = None) -> None:
        self.writer = None
        if enabled:
            self.writer = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def image_rows(self, step: int, rows: dict[str, list[torch.Tensor]],
                   value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        """Each row: images ``(N, 3, H, W)`` in ``value_range``; the first of each batch is shown
        (CycleGAN: real | translated | reconstructed | identity, one grid per direction)."""
        if self.writer is None:
            return
        for name, images in rows.items():
            tiles = [im[:1].detach().float().cpu() for im in images]
            grid = make_grid(torch.cat(tiles, 0), nrow=len(tiles), normalize=True, value_range=value_range)
            self.writer.add_image(f"images/{name}", grid, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
