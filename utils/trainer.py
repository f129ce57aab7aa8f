"""CycleGAN training loop. The trainer owns every piece of mutable state.

Per iteration (Zhu et al. 2017, section 4 and the reference's ``optimize_parameters``):
1. G phase: the discriminators are frozen; G_A and G_B are updated together on
   GAN + cycle + identity losses (one Adam for both).
2. D phase: D_A and D_B are updated together on real images vs pooled fakes (one Adam).
With ``train.d_steps_per_g = n`` the G phase runs every n-th iteration only.

Everything needed to continue exactly is checkpointed: networks, optimisers, schedulers,
AMP scaler, image pools, counters, RNG states and the resolved config.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.demo import DemoSpec, make_demo_dataset
from data.image_io import BadImageError, load_rgb
from data.unaligned import (
    DatasetError,
    EpochSampler,
    Transform,
    UnalignedDataset,
    image_folder,
    pil_to_uint8,
    split_train_val,
    to_model_range,
)
from models.cyclegan import DiscriminatorPair, GeneratorPair, Translations, build_discriminator, build_generator
from models.losses import discriminator_loss, generator_losses
from options.config import Config, config_to_dict, save_config
from utils import distributed as dist
from utils.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    checkpoint_path,
    prune_checkpoints,
    resolve_checkpoint,
    save_atomic,
)
from utils.device import autocast_context, resolve_device
from utils.image_pool import ImagePool
from utils.schedulers import build_scheduler, step_scheduler
from utils.tb import Logger


class TrainingError(Exception):
    """Training cannot go on; the message says why and where the last good checkpoint is."""


@dataclass
class TrainResult:
    epoch: int
    step: int
    stopped_early: bool
    last_checkpoint: Path | None
    val_metric: float | None


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


class CompiledOrEager(nn.Module):
    """``torch.compile(net)`` that falls back to eager for good if its first call fails.

    torch.compile is lazy: a missing C compiler or an unsupported op only shows at the first
    call, so that call is guarded; later calls are not (a real error must surface). The
    compiled callable is kept outside the module tree, so parameters are registered once
    (under ``net.``) and DDP sees each parameter once. ``warned`` is shared between the
    wrappers of one trainer, so a failing platform gives one warning, not four.
    """

    def __init__(self, net: nn.Module, compiled: Any, warned: dict[str, bool]) -> None:
        super().__init__()
        self.net = net
        self._compiled = [compiled]  # a list: not an attribute nn.Module would register
        self._checked = False
        self._warned = warned

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
            if not self._warned.get("done"):
                self._warned["done"] = True
                first = (str(e).strip().splitlines() or [""])[0][:300]
                warnings.warn(f"train.compile=true but torch.compile failed here ({type(e).__name__}: {first}); "
                              f"running eager", stacklevel=2)
            return self.net(*args, **kwargs)
        self._checked = True
        return out


class Trainer:
    """Builds data, networks and optimisers from a :class:`Config`, then :meth:`fit` trains."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        try:
            self.device = resolve_device(cfg.device, dist.local_rank())
            autocast_context(self.device, cfg.train.amp)  # fp16 on CPU fails here, before any work
        except ValueError as e:
            raise TrainingError(f"device={cfg.device!r}, train.amp={cfg.train.amp!r}: {e}") from e
        dist.init(self.device.type)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.rank, self.world = dist.rank(), dist.world_size()
        self.is_main = dist.is_main()
        self._seed_everything()
        self.run_dir = cfg.run_dir

        self._build_data()
        self._build_networks()
        self._build_optimisation()

        self.epoch = 0  # epochs completed
        self.batch_in_epoch = 0  # batches of the current epoch already done (mid-epoch resume)
        self.step = 0  # iterations done
        self.nonfinite_total = 0
        self.nonfinite_streak = 0
        self.skipped_images: set[str] = set()
        self.val_metric: float | None = None
        self.last_checkpoint: Path | None = None
        self._stop_requested = False
        self._window: dict[str, list[float]] = defaultdict(list)

        if cfg.resume:
            self.load(cfg.resume)
        self._note_skipped(self._val_skipped)
        self.logger = Logger(self.run_dir, enabled=self.is_main, purge_step=self.step if cfg.resume else None)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")

    # ------------------------------------------------------------------------------- building

    def _seed_everything(self) -> None:
        cfg = self.cfg
        seed = cfg.seed + self.rank
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=self.device.type == "cuda")
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def _build_data(self) -> None:
        cfg, d = self.cfg, self.cfg.data
        root = Path(d.root)
        if d.demo:
            if self.is_main:
                make_demo_dataset(root, DemoSpec(seed=d.demo_seed))
            dist.barrier()
        if not root.is_dir():
            raise DatasetError(
                f"dataset folder {root} does not exist. Expected the monet2photo layout: "
                f"{root}/trainA {root}/trainB {root}/testA {root}/testB. Download it with\n"
                f"    python -m data.download monet2photo --root {root.parent}\n"
                f"or train on the built-in demo dataset: --config experiments/quickstart.yaml"
            )
        for sub in ("testA", "testB"):
            if not (root / sub).is_dir():
                raise DatasetError(f"{root / sub} is missing: a dataset needs trainA/ trainB/ testA/ testB/")
        train_A, val_A = split_train_val(image_folder(root, "trainA"), d.val_images, d.subset_A, root / "trainA")
        train_B, val_B = split_train_val(image_folder(root, "trainB"), d.val_images, d.subset_B, root / "trainB")
        self.train_counts = (len(train_A), len(train_B))

        transform = Transform(d.preprocess, d.load_size, d.crop_size, d.flip, train=True)
        self.dataset = UnalignedDataset(train_A, train_B, transform, seed=cfg.seed)
        self.sampler = EpochSampler(self.dataset, self.world, self.rank, shuffle=True, seed=cfg.seed)
        workers = d.num_workers
        self.loader = DataLoader(
            self.dataset,
            batch_size=d.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=d.pin_memory and self.device.type == "cuda",
            persistent_workers=d.persistent_workers and workers > 0,
            prefetch_factor=d.prefetch_factor if workers > 0 else None,
            drop_last=False,
        )
        # Validation images are few: decode once, keep as uint8, shard across ranks.
        val_tf = Transform(d.preprocess, d.load_size, d.crop_size, flip=False, train=False)
        rng = np.random.default_rng(0)
        self._val_skipped: list[str] = []  # unreadable held-out images: warned about and counted like train ones

        def decode(paths: list[Path]) -> list[torch.Tensor]:
            out = []
            for p in paths:
                try:
                    out.append(pil_to_uint8(val_tf(load_rgb(p), rng)))
                except BadImageError as e:
                    self._val_skipped.append(f"{e.path}: {e.reason}")
            return out

        self.val_A = decode(val_A[self.rank :: self.world])
        self.val_B = decode(val_B[self.rank :: self.world])

    def _build_networks(self) -> None:
        m, t = self.cfg.model, self.cfg.train
        gen = dict(input_nc=m.input_nc, output_nc=m.output_nc, ngf=m.ngf, n_blocks=m.n_blocks, norm=m.norm,
                   dropout=m.dropout, upsample=m.upsample, init=m.init, init_gain=m.init_gain,
                   grad_checkpoint=t.grad_checkpoint)
        self.G_A = build_generator(**gen).to(self.device)
        self.G_B = build_generator(**{**gen, "input_nc": m.output_nc, "output_nc": m.input_nc}).to(self.device)
        self.D_A = build_discriminator(m.output_nc, m.ndf, m.n_layers_D, m.norm, m.init, m.init_gain).to(self.device)
        self.D_B = build_discriminator(m.input_nc, m.ndf, m.n_layers_D, m.norm, m.init, m.init_gain).to(self.device)
        self.nets: dict[str, nn.Module] = {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B}
        if t.channels_last:
            for net in self.nets.values():
                net.to(memory_format=torch.channels_last)
        self.gen_pair = GeneratorPair(*self._maybe_compile(self.G_A, self.G_B))
        self.disc_pair = DiscriminatorPair(*self._maybe_compile(self.D_A, self.D_B))
        # G phase scores fakes with the bare discriminators: D is frozen there, so DDP must not
        # expect gradients for it; the D phase goes through the DDP wrapper.
        self.disc_frozen = self.disc_pair
        if dist.is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.gen_pair = DDP(self.gen_pair, device_ids=ids, broadcast_buffers=False)
            self.disc_pair = DDP(self.disc_pair, device_ids=ids, broadcast_buffers=False)

    def _maybe_compile(self, *nets: nn.Module) -> list[nn.Module]:
        if not self.cfg.train.compile:
            return list(nets)
        try:
            compiled = [torch.compile(net) for net in nets]
        except Exception as e:  # platform without a working compiler: run eager
            warnings.warn(f"train.compile=true but torch.compile is unavailable here ({e}); running eager",
                          stacklevel=2)
            return list(nets)
        # The checkpointed modules stay the uncompiled self.nets (no `_orig_mod.` key prefix).
        warned: dict[str, bool] = self.__dict__.setdefault("_compile_warned", {})  # one warning per trainer
        return [CompiledOrEager(net, c, warned) for net, c in zip(nets, compiled)]

    def _build_optimisation(self) -> None:
        o, t = self.cfg.optim, self.cfg.train
        betas = (o.beta1, o.beta2)
        self.opt_G = torch.optim.Adam([*self.G_A.parameters(), *self.G_B.parameters()], lr=o.lr, betas=betas)
        d_params = [*self.D_A.parameters(), *self.D_B.parameters()]
        self.opt_D = torch.optim.Adam(d_params, lr=o.lr_D or o.lr, betas=betas)
        sched = dict(policy=o.lr_policy, n_epochs=o.n_epochs, n_epochs_decay=o.n_epochs_decay,
                     step_epochs=o.step_epochs, step_gamma=o.step_gamma, plateau_factor=o.plateau_factor,
                     plateau_patience=o.plateau_patience, plateau_threshold=o.plateau_threshold, min_lr=o.min_lr)
        self.sched_G = build_scheduler(self.opt_G, **sched)
        self.sched_D = build_scheduler(self.opt_D, **sched)
        self.amp = t.amp  # off | bf16 | fp16; validated against the device in __init__
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.amp == "fp16")
        seed = self.cfg.seed * 1000 + self.rank
        self.pool_A = ImagePool(t.pool_size, seed=seed * 2)  # fake A images, for D_B
        self.pool_B = ImagePool(t.pool_size, seed=seed * 2 + 1)  # fake B images, for D_A

    def _autocast(self):
        return autocast_context(self.device, self.amp)

    # ------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "config": config_to_dict(self.cfg),
            "nets": {name: net.state_dict() for name, net in self.nets.items()},
            "optim": {"G": self.opt_G.state_dict(), "D": self.opt_D.state_dict()},
            "sched": {"G": self.sched_G.state_dict(), "D": self.sched_D.state_dict()},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "pools": {"A": self.pool_A.state_dict(), "B": self.pool_B.state_dict()},
            "counters": {
                "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
                "nonfinite_total": self.nonfinite_total,
            },
            "val_metric": self.val_metric,
            "skipped_images": sorted(self.skipped_images),
            "rng": _rng_state(self.device),
        }

    def load(self, path: str | Path) -> None:
        ckpt_path, ckpt = resolve_checkpoint(path, map_location="cpu")
        for name, net in self.nets.items():
            try:
                net.load_state_dict(ckpt["nets"][name])
            except RuntimeError as e:
                raise CheckpointError(
                    f"{ckpt_path}: network {name} does not match the configured architecture "
                    f"(model.* keys differ from the run that wrote it): {str(e).splitlines()[0]}"
                ) from e
        self.opt_G.load_state_dict(ckpt["optim"]["G"])
        self.opt_D.load_state_dict(ckpt["optim"]["D"])
        self.sched_G.load_state_dict(ckpt["sched"]["G"])
        self.sched_D.load_state_dict(ckpt["sched"]["D"])
        if ckpt["scaler"] is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        self.pool_A.load_state_dict(ckpt["pools"]["A"], self.device)
        self.pool_B.load_state_dict(ckpt["pools"]["B"], self.device)
        c = ckpt["counters"]
        self.epoch, self.batch_in_epoch, self.step = c["epoch"], c["batch_in_epoch"], c["step"]
        self.nonfinite_total = c["nonfinite_total"]
        self.val_metric = ckpt["val_metric"]
        self.skipped_images = set(ckpt["skipped_images"])
        if self.rank == 0:
            _set_rng_state(ckpt["rng"], self.device)
        self.last_checkpoint = ckpt_path
        if self.is_main:
            print(f"resumed from {ckpt_path} (epoch {self.epoch}, step {self.step})", flush=True)

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
                prune_checkpoints(self.run_dir, self.cfg.checkpoint.keep)
                self.last_checkpoint = path
        dist.barrier()
        return path

    # ------------------------------------------------------------------------------- steps

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = to_model_range(x.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.train.channels_last else x

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """Every rank must take the same decision, or DDP would wait for the skipping rank."""
        bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=self.device)
        return dist.all_reduce_sum(bad).item() == 0

    def train_step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, float]:
        """One iteration on a batch; images ``(N, C, H, W)`` in [-1, 1]. Returns loss values."""
        logs: dict[str, float] = {}
        if self.step % self.cfg.train.d_steps_per_g == 0:
            tr, g_ok = self.generator_step(real_A, real_B, logs)
            fake_B, fake_A = tr.fake_B.detach(), tr.fake_A.detach()
        else:  # seed 002's n discriminator steps per generator step: fakes without a G update
            tr, g_ok = None, True
            with torch.no_grad(), self._autocast():
                fake_B = self.gen_pair_module.G_A(real_A)
                fake_A = self.gen_pair_module.G_B(real_B)
        d_ok = self.discriminator_step(real_A, real_B, fake_B, fake_A, logs, use_pool=g_ok)
        if (tr is not None and g_ok) or d_ok:
            # update() needs a scaler.step() since the last one (else it asserts); a step skipped
            # for a non-finite loss must leave the fp16 scale and growth tracker untouched.
            self.scaler.update()

        if g_ok and d_ok:
            self.nonfinite_streak = 0
        else:
            self.nonfinite_total += 1
            self.nonfinite_streak += 1
            logs["nonfinite"] = 1.0
        self._last_images = (real_A, real_B, tr)
        return logs

    def generator_step(self, real_A: torch.Tensor, real_B: torch.Tensor,
                       logs: dict[str, float]) -> tuple[Translations, bool]:
        """G phase: update G_A and G_B together; D is frozen so the G loss leaves no gradient in D.

        Returns the translations and whether the update was applied (False: non-finite loss).
        """
        lo = self.cfg.loss
        set_requires_grad(self.disc_frozen, False)
        with self._autocast():
            tr = self.gen_pair(real_A, real_B, identity=lo.lambda_identity > 0)
            pred_fake_B, pred_fake_A = self.disc_frozen(tr.fake_B, tr.fake_A)
        g = generator_losses(pred_fake_B, pred_fake_A, real_A, real_B, tr.rec_A, tr.rec_B, tr.idt_A, tr.idt_B,
                             lo.lambda_A, lo.lambda_B, lo.lambda_identity, lo.gan_mode)
        loss_G = g.total
        self.opt_G.zero_grad(set_to_none=True)
        ok = self._all_finite(loss_G)
        if ok:
            self.scaler.scale(loss_G).backward()
            self.scaler.step(self.opt_G)
        set_requires_grad(self.disc_frozen, True)
        logs.update({k: v.item() for k, v in g.as_dict().items()})
        logs["G_total"] = loss_G.item()
        return tr, ok

    def discriminator_step(self, real_A: torch.Tensor, real_B: torch.Tensor, fake_B: torch.Tensor,
                           fake_A: torch.Tensor, logs: dict[str, float], use_pool: bool = True) -> bool:
        """D phase: D_A on real B vs pooled fake B, D_B on real A vs pooled fake A, each
        0.5 * (real + fake). Returns whether the update was applied.

        ``use_pool=False`` (after a non-finite G step) keeps possibly non-finite fakes out of
        the image pools, where they would poison D for many later steps.
        """
        lo, clip = self.cfg.loss, self.cfg.train.d_clip
        fake_B_pool = self.pool_B.query(fake_B) if use_pool else fake_B
        fake_A_pool = self.pool_A.query(fake_A) if use_pool else fake_A
        with self._autocast():
            pred_real_B, pred_real_A = self.disc_pair(real_B, real_A)
            pred_fake_B, pred_fake_A = self.disc_pair(fake_B_pool, fake_A_pool)
        loss_D_A = discriminator_loss(pred_real_B, pred_fake_B, lo.gan_mode)
        loss_D_B = discriminator_loss(pred_real_A, pred_fake_A, lo.gan_mode)
        loss_D = loss_D_A + loss_D_B
        self.opt_D.zero_grad(set_to_none=True)
        ok = self._all_finite(loss_D)
        if ok:
            self.scaler.scale(loss_D).backward()
            self.scaler.step(self.opt_D)
            if clip > 0:  # WGAN-style weight clipping (seed 002's experiment)
                with torch.no_grad():
                    for p in self.opt_D.param_groups[0]["params"]:
                        p.clamp_(-clip, clip)
        logs.update({"D_A": loss_D_A.item(), "D_B": loss_D_B.item()})
        return ok

    @property
    def gen_pair_module(self) -> GeneratorPair:
        return self.gen_pair.module if isinstance(self.gen_pair, DDP) else self.gen_pair

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean cycle-consistency L1 on the held-out images: 0.5 * (|F(G(a)) - a| + |G(F(b)) - b|).

        Lower is better; averaged over all ranks' shards. None when data.val_images = 0.
        """
        if self.cfg.data.val_images == 0:
            return None
        pair = self.gen_pair_module
        for net in (self.G_A, self.G_B):
            net.eval()
        sums = torch.zeros(4, device=self.device, dtype=torch.float64)  # err_A, n_A, err_B, n_B
        for images, first, second, slot in ((self.val_A, pair.G_A, pair.G_B, 0), (self.val_B, pair.G_B, pair.G_A, 2)):
            for x in images:
                x = self._to_device(x.unsqueeze(0))
                with self._autocast():
                    rec = second(first(x))
                sums[slot] += (rec.float() - x).abs().mean().double()
                sums[slot + 1] += 1
        for net in (self.G_A, self.G_B):
            net.train()
        sums = dist.all_reduce_sum(sums)
        return float(0.5 * (sums[0] / sums[1].clamp(min=1) + sums[2] / sums[3].clamp(min=1)))

    # ------------------------------------------------------------------------------- loop

    def _batches(self) -> Iterator[dict[str, Any]]:
        d, t = self.cfg.data, self.cfg.train
        self.sampler.set_epoch(self.epoch, start=self.batch_in_epoch * d.batch_size)
        limit = t.max_batches_per_epoch or math.inf
        for batch in self.loader:
            if self.batch_in_epoch >= limit:
                break
            yield batch

    def batches_per_epoch(self) -> int:
        n = math.ceil(len(self.sampler.inner) / self.cfg.data.batch_size)
        return min(n, self.cfg.train.max_batches_per_epoch) if self.cfg.train.max_batches_per_epoch else n

    def _install_signal_handlers(self) -> dict[int, Any]:
        def request_stop(signum: int, frame: Any) -> None:
            if self._stop_requested:  # second signal: stop now
                raise KeyboardInterrupt
            self._stop_requested = True
            if self.is_main:
                print(f"\n{signal.Signals(signum).name} received: saving a checkpoint and exiting "
                      f"(send again to abort without saving)", file=sys.stderr, flush=True)

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, request_stop)
            except ValueError:  # not the main thread (e.g. called from a test runner thread)
                pass
        return previous

    def fit(self) -> TrainResult:
        cfg = self.cfg
        total_epochs = cfg.total_epochs
        previous = self._install_signal_handlers()
        stopped = False
        try:
            if self.is_main:
                self._print_header()
            while self.epoch < total_epochs:
                stopped = self._run_epoch(total_epochs)
                if stopped:
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.logger.close()
        return TrainResult(self.epoch, self.step, stopped, self.last_checkpoint, self.val_metric)

    def _print_header(self) -> None:
        cfg = self.cfg
        n_params = sum(p.numel() for p in self.G_A.parameters())
        print(f"run {self.run_dir} | device {self.device} x{self.world} | train images A {self.train_counts[0]} "
              f"B {self.train_counts[1]} | val {cfg.data.val_images} per domain | G {n_params / 1e6:.2f} M params | "
              f"epochs {self.epoch}/{cfg.total_epochs} | {self.batches_per_epoch()} batches/epoch", flush=True)

    def _run_epoch(self, total_epochs: int) -> bool:
        """Train one epoch (or its remainder); returns True when stopped by a signal."""
        cfg = self.cfg
        bar = tqdm(total=self.batches_per_epoch(), initial=self.batch_in_epoch,
                   disable=not (self.is_main and cfg.log.progress),
                   desc=f"epoch {self.epoch + 1}/{total_epochs}", dynamic_ncols=True, leave=True)
        t0, seen = time.perf_counter(), 0
        for batch in self._batches():
            self._note_skipped(batch["skipped"])
            real_A, real_B = self._to_device(batch["A"]), self._to_device(batch["B"])
            logs = self.train_step(real_A, real_B)
            self.step += 1
            self.batch_in_epoch += 1
            seen += real_A.shape[0] * self.world
            for k, v in logs.items():
                self._window[k].append(v)
            if logs.get("nonfinite") and self.is_main:
                tqdm.write(f"WARNING: non-finite loss (NaN/Inf) at step {self.step}: update skipped "
                           f"({self.nonfinite_streak} in a row, {self.nonfinite_total} in total; the run stops "
                           f"after train.max_nonfinite={cfg.train.max_nonfinite} in a row)", file=sys.stderr)
            if self.nonfinite_streak >= cfg.train.max_nonfinite:
                last = self.last_checkpoint or "none written yet (the run started with non-finite losses)"
                raise TrainingError(
                    f"{self.nonfinite_streak} consecutive non-finite losses (NaN/Inf) at step {self.step}; "
                    f"updates were skipped and the run is stopped. Last good checkpoint: {last}. "
                    f"Try a lower optim.lr or train.amp=off."
                )
            if self.is_main:
                bar.update(1)
                bar.set_postfix({k: f"{logs[k]:.3f}" for k in ("G_A", "G_B", "cycle_A", "cycle_B", "D_A", "D_B")
                                 if k in logs}, refresh=False)
            if self.step % cfg.log.scalars_every == 0:
                self._log_scalars(seen / max(time.perf_counter() - t0, 1e-9))
            if cfg.log.images_every and self.step % cfg.log.images_every == 0:
                self._log_images()
            if cfg.checkpoint.every_steps and self.step % cfg.checkpoint.every_steps == 0:
                self.save()
            if dist.broadcast_flag(self._stop_requested, self.device):
                bar.close()
                self._save_final()
                if self.is_main:
                    print(f"stopped at epoch {self.epoch} batch {self.batch_in_epoch} (step {self.step}); "
                          f"resume with: python train.py --resume {self.run_dir}", flush=True)
                return True
        bar.close()
        self._end_epoch()
        return False

    def _end_epoch(self) -> None:
        cfg = self.cfg
        self.val_metric = self.validate()
        step_scheduler(self.sched_G, self.val_metric)
        step_scheduler(self.sched_D, self.val_metric)
        self.epoch += 1
        self.batch_in_epoch = 0
        self.logger.scalars(self.step, {
            "lr/G": self.opt_G.param_groups[0]["lr"], "lr/D": self.opt_D.param_groups[0]["lr"], "epoch": self.epoch,
            **({"val/cycle_l1": self.val_metric} if self.val_metric is not None else {}),
        })
        if self.is_main:
            val = f"val cycle L1 {self.val_metric:.4f} | " if self.val_metric is not None else ""
            health = "".join([f" | skipped images {len(self.skipped_images)}" if self.skipped_images else "",
                              f" | non-finite steps {self.nonfinite_total}" if self.nonfinite_total else ""])
            print(f"epoch {self.epoch}/{cfg.total_epochs} done | {val}lr G {self.opt_G.param_groups[0]['lr']:.2e} | "
                  f"step {self.step}{health}", flush=True)
        last = self.epoch == cfg.total_epochs
        every = cfg.checkpoint.every_epochs
        if last:
            self._save_final()
        elif every and self.epoch % every == 0:
            self.save()

    def _save_final(self) -> None:
        """A checkpoint the process is about to exit on: its failure must not pass silently."""
        if self.save() is None:
            raise TrainingError(
                f"could not write the final checkpoint at step {self.step} (see the warning above); "
                f"the work since the last good checkpoint ({self.last_checkpoint}) is lost when this process exits"
            )

    def _note_skipped(self, skipped: list[str]) -> None:
        for entry in skipped:
            for line in filter(None, entry.split("\n")):
                if line not in self.skipped_images:
                    self.skipped_images.add(line)
                    if self.is_main:
                        tqdm.write(f"WARNING: skipped unreadable image {line}", file=sys.stderr)

    def _log_scalars(self, images_per_s: float) -> None:
        # Mean over the window's finite values: one skipped NaN step must not blank the curve
        # (it is counted in health/nonfinite_total instead).
        values = {}
        for key, seen in self._window.items():
            finite = [v for v in seen if math.isfinite(v)]
            if key != "nonfinite" and finite:
                values[f"loss/{key}"] = sum(finite) / len(finite)
        values["perf/images_per_s"] = images_per_s
        values["health/nonfinite_total"] = self.nonfinite_total
        values["health/skipped_images"] = len(self.skipped_images)
        self._window.clear()
        self.logger.scalars(self.step, values)

    def _log_images(self) -> None:
        real_A, real_B, tr = self._last_images
        if tr is None:
            return
        rows = {
            "A_to_B": [real_A, tr.fake_B, tr.rec_A] + ([tr.idt_B] if tr.idt_B is not None else []),
            "B_to_A": [real_B, tr.fake_A, tr.rec_B] + ([tr.idt_A] if tr.idt_A is not None else []),
        }
        self.logger.image_rows(self.step, rows)
