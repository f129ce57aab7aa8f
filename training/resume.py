"""What a resumed run restores from its checkpoint, and what it takes from today's config; seeding
and the RNG state a checkpoint carries, so a resumed run draws what it would have.

From the checkpoint: the networks, Adam's moments and step counts, the AMP scaler, the method's
own state (e.g. image pools), counters, metrics, RNG states. From the config: every ``optim.*``
hyper-parameter (lr, betas, the schedule), applied from the first resumed step: the schedulers
are rebuilt and placed at the run's progress (:func:`training.schedulers.place_at`). Keys that
would no longer describe the checkpoint's networks (the architecture, the method) are refused.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from methods import training_schema
from options.common import RunConfig, load_training_config, refused_resume_changes
from options.config import ConfigError, build, changed_keys, parse_override, to_dict
from training.schedulers import build_scheduler, place_at
from utils.checkpoint import CheckpointError, TrainingCheckpoint, read_training_checkpoint, run_folder_of

IGNORED = ("resume", "name", "log.root")  # where the run lives, not what it does


def resumed_config(resume: str | Path, overrides: list[str], output: str | Path | None = None) -> RunConfig:
    """``train.py --resume RUN`` without ``--config``: the checkpoint's stored config + overrides.

    The run continues in the folder the checkpoint sits in (``RUN/checkpoints/step_*.pt``), or in
    ``output`` when given; the folder names stored in the file (``log.root``, ``name``) are data
    of where it was trained, never a place to write. A loose checkpoint file needs ``output``.
    """
    ckpt = read_training_checkpoint(resume)
    for override in overrides:
        key, value = parse_override(override)
        if key == "method" and value != ckpt.method:
            raise CheckpointError(f"method={value}: {ckpt.path} is a {ckpt.method} run and the method cannot change "
                                  f"on resume; start a new run with --config instead")
    run = Path(output) if output else run_folder_of(ckpt.path)
    if run is None:
        raise CheckpointError(f"{ckpt.path} is not inside a run folder (RUN/{'checkpoints'}/step_*.pt): say which "
                              f"folder to continue in with --output DIR (a new folder, or the run it came from)")
    base = {**ckpt.config, "method": ckpt.method, "name": run.name}
    base["log"] = {**(ckpt.config.get("log") or {}), "root": run.parent.as_posix() or "."}
    return load_training_config(None, overrides, base=base)


def resume(trainer: Any, path: str | Path) -> list[str]:
    """Restore ``trainer`` from the checkpoint at ``path`` (a run folder or a file); returns the
    config keys that differ from the stored ones."""
    ckpt = read_training_checkpoint(path)
    if ckpt.method != trainer.method:
        raise CheckpointError(f"{ckpt.path} is a {ckpt.method} run; this config trains {trainer.method}")
    try:  # the stored config with today's defaults filled in (older releases stored fewer keys)
        stored = to_dict(build(training_schema(trainer.method), {**ckpt.config, "method": ckpt.method}))
    except ConfigError:
        stored = ckpt.config
    changed = [k for k in changed_keys(stored, to_dict(trainer.cfg)) if k not in IGNORED]
    refused = refused_resume_changes(trainer.method, changed)
    if refused:
        raise CheckpointError(f"{ckpt.path}: {', '.join(refused)} cannot change when resuming (the checkpoint's "
                              f"networks and state were made with the stored values); start a new run instead")
    for name, net in trainer.nets.items():
        try:
            net.load_state_dict(ckpt.nets[name])
        except (KeyError, RuntimeError) as e:
            raise CheckpointError(f"{ckpt.path}: network {name} does not match the configured architecture: "
                                  f"{str(e).splitlines()[0]}") from e
    for name, opt in trainer.optimizers.items():
        opt.load_state_dict(ckpt.optim[name])
        _keep_implementation(opt, trainer.fused)
    _restore_schedules(trainer, ckpt, [k for k in changed if k.startswith("optim.")])
    if ckpt.scaler is not None and trainer.scaler.is_enabled():
        trainer.scaler.load_state_dict(ckpt.scaler)
    try:
        trainer.load_extra_state(ckpt.extra)
    except ValueError as e:
        raise CheckpointError(f"{ckpt.path}: {e}") from e
    c = ckpt.counters
    trainer.epoch, trainer.batch_in_epoch, trainer.step = c["epoch"], c["batch_in_epoch"], c["step"]
    old_batch = int(stored.get("data", {}).get("batch_size", trainer.cfg.data.batch_size))
    new_batch = trainer.cfg.data.batch_size
    if trainer.batch_in_epoch and old_batch != new_batch:
        # The epoch's position is in images: with another batch size, continue from the batch that
        # holds the next image (up to new_batch - 1 images of this epoch are seen twice).
        seen = trainer.batch_in_epoch * old_batch
        trainer.batch_in_epoch = seen // new_batch
        if trainer.is_main:
            again = seen - trainer.batch_in_epoch * new_batch
            print(f"note: data.batch_size {old_batch} -> {new_batch} mid-epoch: {again} image(s) of epoch "
                  f"{trainer.epoch + 1} are seen twice", flush=True)
    trainer.nonfinite_total = int(c.get("nonfinite_total", 0))
    trainer.metrics = {k: v for k, v in ckpt.metrics.items() if v is not None}
    trainer.skipped_images = set(ckpt.skipped_images)
    if trainer.rank == 0:
        set_rng_state(ckpt.rng, trainer.device)
    trainer.last_checkpoint = ckpt.path
    return changed


def _keep_implementation(opt: torch.optim.Optimizer, fused: bool) -> None:
    """A loaded state_dict brings the saving run's Adam implementation (an earlier release or
    train.fused_adam=false saved ``fused: None``); this run's choice stands, and the fused kernel
    wants its step counts as float32 on the parameters' device."""
    for group in opt.param_groups:
        group["fused"], group["foreach"] = (True, None) if fused else (None, None)
        if fused:
            for p in group["params"]:
                state = opt.state.get(p, {})
                if torch.is_tensor(state.get("step")):
                    state["step"] = state["step"].to(device=p.device, dtype=torch.float32)


def _restore_schedules(trainer: Any, ckpt: TrainingCheckpoint, changed_optim: list[str]) -> None:
    """Hyper-parameters and schedules from the current config, placed at the run's progress;
    with no optim.* change, the saved scheduler states as they were."""
    o = trainer.cfg.optim
    groups = trainer.optimizer_groups()
    old = ckpt.config.get("optim", {})
    epochs = int(ckpt.counters.get("epoch", 0))
    for name, opt in trainer.optimizers.items():
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] = groups[name][1]
            group["betas"] = (o.beta1, o.beta2)
        saved = ckpt.sched.get(name)
        if not changed_optim and saved is not None:
            trainer.schedulers[name].load_state_dict(saved)
            if hasattr(trainer.schedulers[name], "lr_lambdas"):  # the lr of the epoch in progress
                place_at(trainer.schedulers[name], epochs)
            else:
                for group, lr in zip(opt.param_groups, saved.get("_last_lr", [])):
                    group["lr"] = lr
            continue
        trainer.schedulers[name] = build_scheduler(opt, o)
        old_base = old.get("lr_D") if name == "D" and old.get("lr_D") else old.get("lr")
        place_at(trainer.schedulers[name], epochs, saved, old.get("lr_policy"), old_base)


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    """Seed Python, NumPy and torch; pick deterministic kernels or the fast ones for ``device``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
