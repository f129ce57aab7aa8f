"""What a run reports: TensorBoard through the real SummaryWriter (a no-op on ranks other than 0),
and the losses of a window of steps, kept on the device and read once per window.

A training step hands over its losses as detached device scalars and its finite flag as a
device bool; nothing is read back until :meth:`LossWindow.read`, which the trainer calls every
``log.scalars_every`` steps: one host transfer for the whole window instead of a dozen per step
(each ``.item()`` is a device synchronisation on a GPU).

Means skip non-finite values, so one skipped NaN step does not blank a curve (it is counted in
the non-finite total instead). The streak of consecutive non-finite steps is tracked on the
device too; its worst value within the window decides whether the run stops.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter


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
        lo, hi = value_range
        for name, images in rows.items():
            row = torch.cat([im[0].detach().float().cpu() for im in images], dim=2)  # side by side
            self.writer.add_image(f"images/{name}", ((row.clamp(lo, hi) - lo) / (hi - lo)), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class WindowRead:
    means: dict[str, float]  # finite means per logged name
    nonfinite_total: int  # non-finite steps since the run began
    worst_streak: int  # the longest run of consecutive non-finite steps ending in this window
    images_per_s: float


class LossWindow:
    def __init__(self, device: torch.device, nonfinite_total: int = 0) -> None:
        self._zero = torch.zeros((), device=device)
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, torch.Tensor] = {}
        self.nonfinite_total = torch.full((), float(nonfinite_total), device=device)
        self.streak = torch.zeros((), device=device)
        self._worst = torch.zeros((), device=device)
        self._start, self._images = time.perf_counter(), 0

    def add(self, logs: dict[str, torch.Tensor], images: int = 0) -> None:
        for key, value in logs.items():
            value = value.detach().float()
            finite = torch.isfinite(value)
            if key not in self._sums:
                self._sums[key], self._counts[key] = torch.zeros_like(self._zero), torch.zeros_like(self._zero)
            self._sums[key] += torch.where(finite, value, self._zero)
            self._counts[key] += finite.float()
        self._images += images

    def note_finite(self, ok: torch.Tensor) -> None:
        """Count a step's finite flag (a device bool): non-finite total and streak."""
        bad = (~ok).float()
        self.nonfinite_total += bad
        self.streak = (self.streak + 1) * bad
        self._worst = torch.maximum(self._worst, self.streak)

    def read(self) -> WindowRead:
        """The one host read of the window; starts the next window."""
        keys = list(self._sums)
        packed = torch.stack([*(self._sums[k] for k in keys), *(self._counts[k] for k in keys),
                              self.nonfinite_total, self._worst]).tolist()
        n = len(keys)
        means = {k: packed[i] / packed[n + i] for i, k in enumerate(keys) if packed[n + i] > 0}
        seconds = max(time.perf_counter() - self._start, 1e-9)
        out = WindowRead(means, int(packed[2 * n]), int(packed[2 * n + 1]), self._images / seconds)
        self._sums.clear()
        self._counts.clear()
        self._worst.copy_(self.streak)  # a streak that goes on is still the worst of the next window so far
        self._start, self._images = time.perf_counter(), 0
        return out
