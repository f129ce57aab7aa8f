"""Learning-rate policies, stepped once per epoch.

linear: the reference's rule, lr * (1 - max(0, e + 1 - n_epochs) / (n_epochs_decay + 1))
after epoch e (0-based): constant for ``n_epochs`` epochs, then linear decay towards 0.
step: x gamma every ``step_epochs`` (StepLR). cosine: from lr to ``min_lr`` over all epochs.
``e`` counts scheduler steps, i.e. epochs completed.
plateau: ``ReduceLROnPlateau`` on a validation metric (lower is better). The reference
steps it on a value that is never updated; here the trainer always passes the metric.

A resumed run rebuilds its schedulers from the (possibly changed) config and places them at
the run's progress with :func:`place_at`, so a changed ``optim.*`` key applies from the first
resumed step.
"""

from __future__ import annotations

import math
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from options.common import OptimConfig

Scheduler = LRScheduler | ReduceLROnPlateau


def linear_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """Multiplier of the initial lr after ``epoch`` (0-based) scheduler steps."""
    return max(0.0, 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1))


def build_scheduler(optimizer: Optimizer, o: OptimConfig) -> Scheduler:
    """The policy ``o.lr_policy`` over ``optimizer``, starting at the optimiser's current lr."""
    if o.lr_policy == "linear":
        return LambdaLR(optimizer, lambda e: linear_factor(e, o.n_epochs, o.n_epochs_decay))
    if o.lr_policy == "step":
        return LambdaLR(optimizer, lambda e: o.step_gamma ** (e // o.step_epochs))
    if o.lr_policy == "cosine":
        total = max(1, o.n_epochs + o.n_epochs_decay)
        base = optimizer.param_groups[0]["lr"]
        floor = o.min_lr / base if base > 0 else 0.0

        def cosine(e: int) -> float:
            t = min(e, total) / total
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

        return LambdaLR(optimizer, cosine)
    if o.lr_policy == "plateau":
        return ReduceLROnPlateau(optimizer, mode="min", factor=o.plateau_factor, patience=o.plateau_patience,
                                 threshold=o.plateau_threshold, min_lr=o.min_lr)
    raise ValueError(f"unknown lr policy {o.lr_policy!r}; valid: linear, step, cosine, plateau")


def step_scheduler(scheduler: Scheduler, metric: float | None) -> None:
    """End-of-epoch step; plateau needs a real metric and refuses to run without one."""
    if isinstance(scheduler, ReduceLROnPlateau):
        if metric is None or not math.isfinite(metric):
            raise ValueError(f"plateau scheduling needs a finite validation metric, got {metric!r}")
        scheduler.step(metric)
    else:
        scheduler.step()


def place_at(scheduler: Scheduler, epochs_done: int, saved: dict[str, Any] | None = None,
             saved_policy: str | None = None, saved_base_lr: float | None = None) -> None:
    """Put a freshly built scheduler where a run that completed ``epochs_done`` epochs is.

    The scheduler must have been built on an optimiser whose lr is the new config's base lr.
    Epoch policies (linear, step, cosine) are functions of the epoch: the lr becomes
    base_lr * f(epochs_done) with the new base lr and f. Plateau keeps its history when the
    saved state is a plateau one: best value, epochs without improvement, and the number of
    reductions made so far, applied to the new base lr with the new factor.
    """
    optimizer = scheduler.optimizer
    if isinstance(scheduler, LambdaLR):
        scheduler.last_epoch = epochs_done
        for group, base, fn in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
            group["lr"] = base * fn(epochs_done)
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]  # what get_last_lr() reports
        return
    if saved is None or saved_policy != "plateau":
        return
    for key in ("best", "num_bad_epochs", "last_epoch", "cooldown_counter"):
        if key in saved:
            setattr(scheduler, key, saved[key])
    old_factor = float(saved.get("factor", scheduler.factor))
    for group, old_lr, min_lr in zip(optimizer.param_groups, saved.get("_last_lr") or [], scheduler.min_lrs):
        reductions = 0
        if saved_base_lr and 0 < old_lr < saved_base_lr and 0 < old_factor < 1:
            reductions = round(math.log(old_lr / saved_base_lr) / math.log(old_factor))
        group["lr"] = max(group["lr"] * scheduler.factor**reductions, min_lr)
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
