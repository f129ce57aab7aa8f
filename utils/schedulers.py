"""Learning-rate policies, stepped once per epoch.

linear: the reference's rule, lr * (1 - max(0, e + 1 - n_epochs) / (n_epochs_decay + 1))
after epoch e (0-based): constant for ``n_epochs`` epochs, then linear decay towards 0.
step: x gamma every ``step_epochs`` (StepLR). cosine: from lr to ``min_lr`` over all epochs.
``e`` counts scheduler steps, i.e. epochs completed.
plateau: ``ReduceLROnPlateau`` on the validation metric (lower is better). The reference
steps it on a value that is never updated; here the trainer always passes the metric.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau


def linear_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """Multiplier of the initial lr after ``epoch`` (0-based) scheduler steps."""
    return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)


def build_scheduler(
    optimizer: Optimizer,
    policy: str,
    n_epochs: int,
    n_epochs_decay: int,
    step_epochs: int = 50,
    step_gamma: float = 0.1,
    plateau_factor: float = 0.2,
    plateau_patience: int = 5,
    plateau_threshold: float = 0.01,
    min_lr: float = 0.0,
) -> LRScheduler | ReduceLROnPlateau:
    if policy == "linear":
        return LambdaLR(optimizer, lambda e: linear_factor(e, n_epochs, n_epochs_decay))
    if policy == "step":
        return LambdaLR(optimizer, lambda e: step_gamma ** (e // step_epochs))
    if policy == "cosine":
        total = max(1, n_epochs + n_epochs_decay)
        base = optimizer.param_groups[0]["lr"]
        floor = min_lr / base if base > 0 else 0.0

        def cosine(e: int) -> float:
            t = min(e, total) / total
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

        return LambdaLR(optimizer, cosine)
    if policy == "plateau":
        return ReduceLROnPlateau(
            optimizer, mode="min", factor=plateau_factor, patience=plateau_patience,
            threshold=plateau_threshold, min_lr=min_lr,
        )
    raise ValueError(f"unknown lr policy {policy!r}; valid: linear, step, cosine, plateau")


def step_scheduler(scheduler: LRScheduler | ReduceLROnPlateau, metric: float | None) -> None:
    """End-of-epoch step; plateau needs a real metric and refuses to run without one."""
    if isinstance(scheduler, ReduceLROnPlateau):
        if metric is None or not math.isfinite(metric):
            raise ValueError(f"plateau scheduling needs a finite validation metric, got {metric!r}")
        scheduler.step(metric)
    else:
        scheduler.step()
