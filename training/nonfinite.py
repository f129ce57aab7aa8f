"""Skipping an optimiser step whose loss is not finite, without a host synchronisation.

This is the one module that relies on PyTorch internals, so it can be checked on every torch
release (``tests/test_nonfinite.py::test_the_installed_torch_honours_the_device_side_skip``):

* **Fused Adam** (``torch.optim.Adam(fused=True)``) reads an optional ``found_inf`` tensor off
  the optimiser (what :class:`torch.amp.GradScaler` sets on it) and leaves parameters, moments
  and the step count untouched where it is non-zero. Setting it to ``(~finite).float()`` skips a
  step on the device.
* **GradScaler** skips steps whose *gradients* overflow and backs its scale off. A non-finite
  *loss* is not an overflow of the scale: the scale and growth tracker are restored where the
  loss was not finite, on the device (they are GradScaler's private ``_scale`` /
  ``_growth_tracker``).

The unfused path (the reference's Adam, bit-identical to it) reads the flag once per update: on
a CPU there is no device to wait for, and ``backward(); step()`` reads as the reference does.

A finite loss can still have non-finite gradients (e.g. an L2 normalisation of an all-zero
vector: CUT's netF at a dead start); :func:`gradients_finite` adds them to the flag, on the device.
"""

from __future__ import annotations

import torch


def gradients_finite(opt: torch.optim.Optimizer) -> torch.Tensor:
    """A 0-d bool on the device: every gradient of ``opt``'s parameters is finite (one fused norm)."""
    grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return torch.ones((), dtype=torch.bool)
    return torch.isfinite(torch.nn.utils.get_total_norm(grads, foreach=True))


def fused_step_unless(opt: torch.optim.Optimizer, ok: torch.Tensor) -> None:
    """``opt.step()`` of a fused Adam, a no-op on the device where ``ok`` (a 0-d bool) is False."""
    opt.found_inf = (~ok).float()
    opt.step()


def scaled_step_unless(scaler: torch.amp.GradScaler, opt: torch.optim.Optimizer, loss: torch.Tensor,
                       ok: torch.Tensor, fused: bool) -> None:
    """Backward ``loss`` through ``scaler`` and step ``opt``; where ``ok`` is False the step is skipped
    (gradients of a non-finite loss are non-finite) and the scale is left as it was."""
    scale, growth = scaler._scale, scaler._growth_tracker  # noqa: SLF001
    before = (scale.clone(), growth.clone()) if scale is not None else None
    scaler.scale(loss).backward()
    if fused:
        opt.found_inf = None  # GradScaler sets its own (inf in the gradients)
    scaler.step(opt)
    scaler.update()
    if before is not None:  # a non-finite *loss* leaves the scale alone; overflowing gradients back it off
        scaler._scale.copy_(torch.where(ok, scaler._scale, before[0]))  # noqa: SLF001
        scaler._growth_tracker.copy_(torch.where(ok, scaler._growth_tracker, before[1]))  # noqa: SLF001
