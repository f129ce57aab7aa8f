"""The training loop every method shares. The trainer owns every piece of mutable state.

A method subclasses :class:`Trainer` and supplies its data, networks, optimiser groups and
one step's maths (``training/cyclegan.py`` is CycleGAN's); this class does the rest the same
way for all of them: device and processes, seeds, the run folder (lock, fresh-run rules),
Adam per group, LR schedules, the fp16 ``GradScaler``, counters, RNG states, TensorBoard,
checkpoints, resume, signals, non-finite steps, progress.

**No host synchronisation inside a step.** Loss values and finite flags stay on the device:
they are accumulated there and read once per ``log.scalars_every`` steps. A step whose loss
is not finite is skipped on the device (:mod:`training.nonfinite`: the fused Adam kernel's
``found_inf``), which leaves parameters and moments untouched; the skip is counted
and reported at the next read. ``train.fused_adam`` is ``auto``: fused on CUDA; elsewhere
PyTorch's default Adam (bit-identical to the public reference) runs and the flag is read once
per update (on a CPU there is no device to wait for).

Everything needed to continue exactly is checkpointed (see :mod:`utils.checkpoint`).

The steps every method shares are here too, so a subclass shows only its maths: the demo
dataset (:meth:`make_demo`), held-out images and their error (:meth:`held_out`), the sampler
(:meth:`shuffled`), DDP wrapping (:meth:`ddp`), ``torch.compile`` with an eager fallback
(:meth:`compile`), moving a uint8 batch to the device in the networks' range and memory format
(:meth:`to_device`).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from data.demo import DemoSpec, make_demo_dataset
from data.image_io import to_model_range
from data.transforms import Transform, load_validation_images
from options.common import RunConfig
from options.config import save, to_dict
from training import distributed as dist
from training.distributed import EpochSampler, StopRequests, ignore_stop_signals
from training.logger import Logger, LossWindow
from training.nonfinite import fused_step_unless, gradients_finite, scaled_step_unless
from training.resume import resume, rng_state, seed_everything
from training.run_dir import RunFolder
from training.schedulers import Scheduler, build_scheduler, step_scheduler
from utils.checkpoint import CheckpointError, checkpoint_path, prune_checkpoints, save_atomic, training_state
from utils.device import DeviceError, autocast_context, resolve_amp, resolve_device, warn_once
from utils.errors import DatasetError, UserError


class TrainingError(UserError):
    """Training cannot go on; the message says why and where the last good checkpoint is."""


@dataclass
class TrainResult:
    epoch: int
    step: int
    stopped_early: bool
    last_checkpoint: Path | None
    metrics: dict[str, float] = field(default_factory=dict)


def _duration(seconds: float) -> str:
    """``41.2 s``, ``12 min 5 s``, ``3 h 02 min``: an epoch's wall time (training, validation, FID)."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


# ----------------------------------------------------------------- torch.compile, guarded
# torch.compile is lazy: a missing C compiler or an unsupported op only shows at the first call,
# so that call is guarded and falls back to eager; later calls are not (a real error must
# surface). One warning per trainer, however many networks fall back.


class CompileFallback:
    """Shared by the wrappers of one trainer: warn once, not once per network."""

    def __init__(self) -> None:
        self.warned = False

    def warn(self, error: BaseException, what: str = "torch.compile failed here") -> None:
        if not self.warned:
            self.warned = True
            first = (str(error).strip().splitlines() or [""])[0][:300]
            warnings.warn(f"train.compile is on but {what} ({type(error).__name__}: {first}); running eager",
                          stacklevel=3)


class CompiledOrEager(nn.Module):
    """``compiled(net)`` that falls back to eager for good if its first call fails.

    The compiled callable is kept outside the module tree, so parameters are registered once
    (under ``net.``) and DDP sees each parameter once; checkpoints are written from the bare
    networks, so keys never get an ``_orig_mod.`` prefix.
    """

    def __init__(self, net: nn.Module, compiled: Any, fallback: CompileFallback) -> None:
        super().__init__()
        self.net = net
        self._compiled = [compiled]  # a list: not an attribute nn.Module would register
        self._checked = False
        self._fallback = fallback

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        compiled = self._compiled[0]
        if compiled is None:
            return self.net(*args, **kwargs)
        if self._checked:
            return compiled(*args, **kwargs)
        try:
            out = compiled(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - any compiler failure: run eager instead
            self._compiled[0] = None
            self._fallback.warn(e)
            return self.net(*args, **kwargs)
        self._checked = True
        return out


def maybe_compile(nets: list[nn.Module], mode: str, fallback: CompileFallback) -> list[nn.Module]:
    """``nets`` compiled with ``mode`` (default | reduce-overhead | max-autotune), or unchanged for off."""
    if mode == "off":
        return list(nets)
    try:
        compiled = [torch.compile(net, mode=mode) for net in nets]
    except Exception as e:  # noqa: BLE001 - platform without a working compiler
        fallback.warn(e, "torch.compile is unavailable here")
        return list(nets)
    return [CompiledOrEager(net, c, fallback) for net, c in zip(nets, compiled, strict=True)]


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


class Trainer:
    """Build from a config, then :meth:`fit`. Subclasses implement the ``build_*`` methods,
    :meth:`train_step` and optionally :meth:`validate`, :meth:`image_rows`, :meth:`extra_state`."""

    method = ""  # the config's ``method`` value this trainer serves
    # The folders under data.root the run reads images from (CycleGAN: trainA/ ... testB/); empty: all
    # of data.root (read recursively). A fresh run folder may not lie in one.
    image_folders: tuple[str, ...] = ()

    def __init__(self, cfg: RunConfig, overwrite: bool = False) -> None:
        self.cfg = cfg
        try:
            self.device = resolve_device(cfg.device, dist.local_rank())
            # auto -> what this device runs fast; the config (config.yaml, every checkpoint) stores the
            # choice, so a resume runs what ran, and the start line says it.
            self.amp_choice = resolve_amp(cfg.train.amp, self.device)
            autocast_context(self.device, self.amp_choice.mode)  # fp16 on CPU fails here, before any work
        except DeviceError as e:
            raise TrainingError(f"device={cfg.device!r}, train.amp={cfg.train.amp!r}: {e}") from e
        cfg.train.amp = self.amp_choice.mode
        dist.init(self.device.type)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.rank, self.world, self.is_main = dist.rank(), dist.world_size(), dist.is_main()
        if self.is_main and self.amp_choice.warning:
            warn_once(self.amp_choice.warning.replace("use amp auto or off", "use train.amp=auto or off"))
        seed_everything(cfg.seed + self.rank, cfg.deterministic, self.device)
        self.run_dir = cfg.run_dir
        root = Path(cfg.data.root)
        reads = ({f"data.root/{sub}": root / sub for sub in self.image_folders} if self.image_folders
                 else {"data.root": root})
        self.folder = RunFolder(self.run_dir, resume=cfg.resume, overwrite=overwrite, enabled=self.is_main,
                                inputs=reads)
        self.folder.open()
        try:
            self._setup()
        except BaseException:
            self.folder.close()
            raise

    def _setup(self) -> None:
        cfg = self.cfg
        self.epoch = 0  # epochs completed
        self.batch_in_epoch = 0  # batches of the current epoch already done (mid-epoch resume)
        self.step = 0  # iterations done
        self.skipped_images: set[str] = set()
        self.metrics: dict[str, float] = {}
        self.last_checkpoint: Path | None = None
        self.compile_fallback = CompileFallback()
        self.dataset, self.sampler = self.build_data()
        self.loader = self.make_loader(self.dataset, self.sampler)
        if self.batches_per_epoch() == 0:
            raise DatasetError(
                f"data.batch_size={cfg.data.batch_size} x {self.world} process(es) is more than the "
                f"{len(self.sampler.inner)} training images each process gets: no full batch to train on; "
                f"lower data.batch_size")
        self.build_networks()
        self.nets: dict[str, nn.Module] = self.networks()
        self._build_optimisation()
        self.nonfinite_total = 0  # as of the last window read; the live count is self.window's
        if cfg.resume:
            self.load(cfg.resume)
        self.window = LossWindow(self.device, self.nonfinite_total)
        self.folder.clear_previous()  # --overwrite: the earlier run goes only now that this one can start
        self.logger = Logger(self.run_dir, enabled=self.is_main, purge_step=self.step if cfg.resume else None)
        if self.is_main:
            save(cfg, self.run_dir / "config.yaml")

    # ------------------------------------------------------------------------------- subclass API

    def build_data(self) -> tuple[Dataset, EpochSampler]:
        """The training set and its sampler (:meth:`shuffled`); held-out images and anything else
        the data needs (an evaluator) are set up here too."""
        raise NotImplementedError

    def build_networks(self) -> None:
        raise NotImplementedError

    def networks(self) -> dict[str, nn.Module]:
        """The networks a checkpoint holds, by name (bare modules, never compiled wrappers)."""
        raise NotImplementedError

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], float]]:
        """Optimiser name -> (parameters, lr). One Adam each, with the config's betas."""
        raise NotImplementedError

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One iteration; returns detached device scalars to log (a ``nonfinite`` 0/1 entry counts skips)."""
        raise NotImplementedError

    def validate(self) -> dict[str, float]:
        """End-of-epoch metrics (lower is better for the plateau metric); empty for none."""
        return {}

    def plateau_value(self) -> float | None:
        """The value the plateau policy steps on."""
        return None

    def image_rows(self) -> dict[str, list[torch.Tensor]] | None:
        """Rows of images ``(N, 3, H, W)`` in :attr:`image_range` to show in TensorBoard, or None."""
        return None

    def extra_state(self) -> dict[str, Any]:
        """Method state besides networks and optimisers (e.g. CycleGAN's image pools)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def describe(self) -> str:
        """The header line's method part (image counts, parameters)."""
        return ""

    # ------------------------------------------------------------------------------- shared steps

    to_input = staticmethod(to_model_range)  # uint8 -> the networks' input range (image_range)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A uint8 batch (N, 3, H, W) -> the device, in the networks' range (:attr:`to_input`) and
        memory format (``train.channels_last``); uint8 crosses the bus, 4x less than float."""
        x = self.to_input(x.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.train.channels_last else x

    def make_demo(self, folder: Path, spec: DemoSpec | None = None) -> None:
        """``data.demo=true``: rank 0 writes the built-in demo dataset into ``folder`` (kept when it is
        already there; refused in a folder of someone's images, :func:`data.demo.make_demo_dataset`);
        every rank waits for it."""
        if self.is_main:
            make_demo_dataset(folder, spec)
        dist.barrier()

    def shuffled(self, dataset: Dataset) -> EpochSampler:
        """This rank's shuffled share of ``dataset``, the same order on every resume."""
        return EpochSampler(dataset, self.world, self.rank, shuffle=True, seed=self.cfg.seed)

    def held_out(self, paths: list[Path], transform: Transform, folder: Path) -> list[torch.Tensor]:
        """This rank's shard of the held-out images ``paths`` (of ``folder``), decoded once and kept as
        uint8; unreadable ones are warned about and counted, none readable at all is an error."""
        images, skipped = load_validation_images(paths[self.rank :: self.world], transform)
        self.note_skipped(skipped)
        if paths and not images and self.world == 1:
            raise DatasetError(f"none of the {len(paths)} held-out validation images of {folder} can be read "
                               f"({skipped[0]}); replace them or set data.val_images=0")
        return images

    def fid_evaluator(self, root: Path, own_metric: str) -> Any:
        """FID / KID of the test sets every ``eval.every_epochs`` epochs (None when 0), for the
        translation trainers (their ``eval`` section). A plateau schedule on fid / kid without the
        Inception weights is an error; ``own_metric`` is the trainer's other plateau metric."""
        cfg = self.cfg
        evaluator = None
        if cfg.eval.every_epochs:
            from evaluation.during_training import TrainingEvaluator  # torchmetrics: only when it is on

            evaluator = TrainingEvaluator(root, cfg.eval, cfg.data.crop_size, self.device,
                                          log=print if self.is_main else None)
        o = cfg.optim
        if (o.lr_policy == "plateau" and o.plateau_metric != own_metric and self.is_main
                and not (evaluator is not None and evaluator.available)):
            raise TrainingError(f"optim.plateau_metric={o.plateau_metric}: the plateau schedule steps on FID/KID, "
                                f"which cannot be computed here (see the note above); give the Inception weights "
                                f"(eval.inception_weights=PATH) or use optim.plateau_metric={own_metric}")
        return evaluator

    def ddp(self, module: nn.Module) -> nn.Module:
        """``module`` behind DistributedDataParallel when this is a multi-process run, else itself."""
        if not dist.is_distributed():
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(module, device_ids=ids, broadcast_buffers=False)

    # ------------------------------------------------------------------------------- helpers

    def autocast(self):
        return autocast_context(self.device, self.cfg.train.amp)

    def compile(self, *nets: nn.Module) -> list[nn.Module]:
        return maybe_compile(list(nets), self.cfg.train.compile, self.compile_fallback)

    def make_loader(self, dataset: Any, sampler: EpochSampler) -> DataLoader:
        d = self.cfg.data
        workers = d.num_workers
        return DataLoader(
            dataset, batch_size=d.batch_size, sampler=sampler, num_workers=workers,
            pin_memory=d.pin_memory and self.device.type == "cuda",
            persistent_workers=d.persistent_workers and workers > 0,
            prefetch_factor=d.prefetch_factor if workers > 0 else None,
            drop_last=d.batch_size > 1,  # fixed shapes: a captured graph is reused every step
            worker_init_fn=ignore_stop_signals if workers > 0 else None,
        )

    def update(self, name: str, loss: torch.Tensor) -> torch.Tensor:
        """Backward ``loss`` and step optimiser ``name`` unless the loss is not finite on any rank.

        Returns the finite flag (a device bool). Gradients are computed in every case, so DDP's
        all-reduce happens on every rank; the step is masked on the device.
        """
        opt = self.optimizers[name]
        ok = dist.all_ranks_true(torch.isfinite(loss.detach()))
        opt.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():
            scaled_step_unless(self.scaler, opt, loss, ok, self.fused)
        else:
            loss.backward()
            ok = ok & gradients_finite(opt)  # gradients are all-reduced by DDP: the same on every rank
            if self.fused:
                fused_step_unless(opt, ok)
            elif bool(ok):  # the reference's Adam: one host read per update, the price of the unfused optimiser
                opt.step()
        return ok

    def note_finite(self, ok: torch.Tensor) -> None:
        """Count a step's finite flag (a device bool): non-finite total and streak, on the device."""
        self.window.note_finite(ok)

    def note_skipped(self, skipped: list[str] | str) -> None:
        """Warn once per unreadable image (entries may hold several lines) and count it."""
        entries = [skipped] if isinstance(skipped, str) else skipped
        for line in filter(None, (ln for e in entries for ln in e.split("\n"))):
            if line not in self.skipped_images:
                self.skipped_images.add(line)
                if self.is_main:
                    tqdm.write(f"WARNING: skipped unreadable image {line}", file=sys.stderr)

    # ------------------------------------------------------------------------------- optimisation

    def _build_optimisation(self) -> None:
        o, t = self.cfg.optim, self.cfg.train
        fused = getattr(t, "fused_adam", "auto")
        self.fused = (self.device.type == "cuda") if fused == "auto" else fused == "on"
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        for name, (params, lr) in self.optimizer_groups().items():
            self.optimizers[name] = torch.optim.Adam(params, lr=lr, betas=(o.beta1, o.beta2),
                                                     fused=True if self.fused else None)
        self.schedulers: dict[str, Scheduler] = {n: build_scheduler(opt, o) for n, opt in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.amp == "fp16")

    # ------------------------------------------------------------------------------- state

    def counters(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
                "nonfinite_total": int(self.window.nonfinite_total.item())}

    def state_dict(self) -> dict[str, Any]:
        return training_state(
            self.method, to_dict(self.cfg), self.nets, {n: o.state_dict() for n, o in self.optimizers.items()},
            {n: s.state_dict() for n, s in self.schedulers.items()},
            self.scaler.state_dict() if self.scaler.is_enabled() else None, self.counters(), dict(self.metrics),
            sorted(self.skipped_images), rng_state(self.device), self.extra_state())

    def load(self, path: str | Path) -> None:
        """Resume from a run folder or checkpoint file (see :mod:`training.resume`)."""
        changed = resume(self, path)
        if self.is_main:
            note = f"; changed: {', '.join(changed)}" if changed else ""
            print(f"resumed from {self.last_checkpoint} (epoch {self.epoch}, step {self.step}){note}", flush=True)

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0); a failed write is reported and training state kept."""
        path = checkpoint_path(self.run_dir, self.step)
        if self.is_main:
            try:
                save_atomic(self.state_dict(), path)
            except CheckpointError as e:
                print(f"WARNING: {e}; the previous checkpoint {self.last_checkpoint} is intact", file=sys.stderr)
                path = None
            else:
                prune_checkpoints(self.run_dir, self.cfg.checkpoint.keep, self.step)
                self.last_checkpoint = path
        dist.barrier()
        return path

    def _save_final(self) -> None:
        """A checkpoint the process is about to exit on: its failure must not pass silently."""
        if self.save() is None and self.is_main:
            raise TrainingError(
                f"could not write the final checkpoint at step {self.step} (see the warning above); the work since "
                f"the last good checkpoint ({self.last_checkpoint}) is lost when this process exits")

    # ------------------------------------------------------------------------------- loop

    def batches_per_epoch(self) -> int:
        n = len(self.sampler.inner) // self.cfg.data.batch_size if self.cfg.data.batch_size > 1 \
            else len(self.sampler.inner)
        limit = self.cfg.train.max_batches_per_epoch
        return min(n, limit) if limit else n

    def _batches(self) -> Iterator[dict[str, Any]]:
        self.sampler.set_epoch(self.epoch, start=self.batch_in_epoch * self.cfg.data.batch_size)
        limit = self.batches_per_epoch()
        for batch in self.loader:
            if self.batch_in_epoch >= limit:
                break
            yield batch

    def fit(self) -> TrainResult:
        total = self.cfg.total_epochs
        stopped = False
        try:
            with StopRequests(announce=self.is_main) as stop:
                self.stop = stop
                if self.is_main:
                    print(self._header(), flush=True)
                while self.epoch < total and not stopped:
                    stopped = self._run_epoch(total)
        finally:
            self.logger.close()
            self.folder.close()
        return TrainResult(self.epoch, self.step, stopped, self.last_checkpoint, dict(self.metrics))

    def close(self) -> None:
        """Release the run folder (lock, TensorBoard writer) without training; :meth:`fit` does it itself."""
        self.logger.close()
        self.folder.close()

    def __del__(self) -> None:
        folder = self.__dict__.get("folder")
        if folder is not None:
            folder.close()

    def _header(self) -> str:
        return (f"run {self.run_dir} | {self.method} | device {self.device} x{self.world} | "
                f"{self.amp_choice.describe()} | {self.describe()} | epochs {self.epoch}/{self.cfg.total_epochs} | "
                f"{self.batches_per_epoch()} batches/epoch")

    def _run_epoch(self, total_epochs: int) -> bool:
        """Train one epoch (or its remainder); returns True when stopped by a signal."""
        cfg = self.cfg
        self._epoch_t0 = time.perf_counter()
        # disable=None: no bar when stderr is not a terminal (a log file gets no \r and escape codes)
        bar = tqdm(total=self.batches_per_epoch(), initial=self.batch_in_epoch,
                   disable=None if (self.is_main and cfg.log.progress) else True,
                   desc=f"epoch {self.epoch + 1}/{total_epochs}", dynamic_ncols=True, leave=True)
        stop_check = max(1, min(cfg.log.scalars_every, 10))
        try:
            for batch in self._batches():
                if batch.get("skipped"):
                    self.note_skipped(batch["skipped"])
                logs = self.train_step(batch)
                self.step += 1
                self.batch_in_epoch += 1
                self.window.add(logs, self.batch_size_of(batch) * self.world)
                bar.update(1)
                if self.step % cfg.log.scalars_every == 0:
                    self._flush_scalars(bar)
                if cfg.log.images_every and self.step % cfg.log.images_every == 0:
                    rows = self.image_rows()
                    if rows:
                        self.logger.image_rows(self.step, rows, self.image_range)
                if cfg.checkpoint.every_steps and self.step % cfg.checkpoint.every_steps == 0:
                    self.save()
                if self.step % stop_check == 0 and dist.any_rank(self.stop.requested, self.device):
                    bar.close()
                    self._flush_scalars(None)
                    self._save_final()
                    if self.is_main:
                        # 1-based, as the progress bar ("epoch 2/5"): self.epoch counts the finished ones
                        print(f"stopped at epoch {self.epoch + 1}/{total_epochs} batch {self.batch_in_epoch}/"
                              f"{self.batches_per_epoch()} (step {self.step}); resume with: python train.py "
                              f"--resume {self.run_dir}", flush=True)
                    return True
        finally:
            bar.close()
        self._flush_scalars(None)
        self._end_epoch()
        return False

    @staticmethod
    def batch_size_of(batch: dict[str, Any]) -> int:
        first = next(v for v in batch.values() if isinstance(v, torch.Tensor))
        return int(first.shape[0])

    def _flush_scalars(self, bar: tqdm | None) -> None:
        """Read the window (the one host read of it): log means, report skips, stop after too many."""
        read = self.window.read()
        new_bad = read.nonfinite_total - self.nonfinite_total
        self.nonfinite_total = read.nonfinite_total
        values = {f"loss/{k}": v for k, v in read.means.items() if k != "nonfinite"}
        if values:
            self.logger.scalars(self.step, {**values, "perf/images_per_s": read.images_per_s,
                                            "health/nonfinite_total": read.nonfinite_total,
                                            "health/skipped_images": len(self.skipped_images)})
        if bar is not None:
            bar.set_postfix({k: f"{v:.3f}" for k, v in read.means.items() if k in self.progress_keys}, refresh=False)
        if new_bad and self.is_main:
            tqdm.write(f"WARNING: {new_bad} non-finite loss(es) (NaN/Inf) up to step {self.step}: those updates were "
                       f"skipped ({read.nonfinite_total} in total; the run stops after train.max_nonfinite="
                       f"{self.cfg.train.max_nonfinite} in a row)", file=sys.stderr)
        if read.worst_streak >= self.cfg.train.max_nonfinite:
            last = self.last_checkpoint or "none written yet (the run started with non-finite losses)"
            raise TrainingError(
                f"{read.worst_streak} consecutive non-finite losses (NaN/Inf) by step {self.step}; updates were "
                f"skipped and the run is stopped. Last good checkpoint: {last}. Try a lower optim.lr or "
                f"train.amp=off.")

    progress_keys: tuple[str, ...] = ()  # losses shown in the progress bar
    image_range: tuple[float, float] = (-1.0, 1.0)  # value range of image_rows()

    def _end_epoch(self) -> None:
        cfg = self.cfg
        fresh = self.validate()  # this epoch's; FID every few epochs is not re-logged in between
        self.metrics.update(fresh)
        value = self.plateau_value()
        for sched in self.schedulers.values():
            step_scheduler(sched, value)
        self.epoch += 1
        self.batch_in_epoch = 0
        lrs = {f"lr/{n}": o.param_groups[0]["lr"] for n, o in self.optimizers.items()}
        self.logger.scalars(self.step, {**lrs, "epoch": self.epoch,
                                        **{f"val/{k}": v for k, v in fresh.items() if math.isfinite(v)}})
        if self.is_main:
            vals = "".join(f"val {k} {v:.4f} | " for k, v in fresh.items() if not k.startswith("images_"))
            health = "".join([f" | skipped images {len(self.skipped_images)}" if self.skipped_images else "",
                              f" | non-finite steps {self.nonfinite_total}" if self.nonfinite_total else ""])
            lr = next(iter(self.optimizers.values())).param_groups[0]["lr"]
            took = time.perf_counter() - getattr(self, "_epoch_t0", time.perf_counter())
            print(f"epoch {self.epoch}/{cfg.total_epochs} done | {vals}lr {lr:.2e} | step {self.step}{health} | "
                  f"{_duration(took)}", flush=True)
        if self.epoch == cfg.total_epochs:
            self._save_final()
        elif cfg.checkpoint.every_epochs and self.epoch % cfg.checkpoint.every_epochs == 0:
            self.save()
