"""CycleGAN training (Zhu et al. 2017, section 4; the reference's ``optimize_parameters``).

Per iteration:

1. G phase: the discriminators are frozen; G_A and G_B are updated together on the GAN +
   cycle + identity losses (:class:`models.cyclegan.GeneratorLosses`; one Adam for both).
2. D phase: D_A and D_B are updated together on real images vs pooled fakes, each
   0.5 * (real + fake) (:class:`models.cyclegan.DiscriminatorLosses`; one Adam for both).

With ``train.d_steps_per_g = n`` the G phase runs every n-th iteration only. A G step whose
loss is not finite is skipped on the device, and its fakes are replaced by the last finite
ones before they reach the image pools, so a NaN never enters the pools (no host read).

The image pool (:class:`ImagePool`; Shrivastava et al. 2017, CycleGAN section 4): the
discriminators are updated on a mix of the newest fakes and older ones, which reduces model
oscillation. Its semantics are the public reference's ``ImagePool.query``, including its use of
Python's ``random`` for the choices (here a private, seeded ``random.Random``), so the pool never
reads a value back from the device: no host synchronisation in the training step.

Validation: the mean cycle L1 on held-out images after every epoch (``data.val_images``), and
FID / KID of both directions on the test sets every ``eval.every_epochs`` epochs
(:mod:`evaluation.during_training`); either can drive the plateau schedule.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import Dataset

from data.demo import DemoSpec
from data.transforms import Transform, split_train_val
from data.unaligned import LAYOUT, UnalignedDataset, check_dataset_root, image_folder
from models.cyclegan import (
    CycleWeights,
    DiscriminatorLosses,
    DiscriminatorPair,
    GeneratorLosses,
    GeneratorPair,
    Translations,
    build_discriminator,
    build_generator,
)
from options.cyclegan import CycleGANConfig
from training import distributed as dist
from training.distributed import EpochSampler
from training.trainer import Trainer, TrainingError, set_requires_grad


class CycleGANTrainer(Trainer):
    method = "cyclegan"
    cfg: CycleGANConfig
    progress_keys = ("G_A", "G_B", "cycle_A", "cycle_B", "D_A", "D_B")
    image_folders = LAYOUT

    # ------------------------------------------------------------------------------- building

    def build_data(self) -> tuple[Dataset, EpochSampler]:
        cfg, d = self.cfg, self.cfg.data
        root = Path(d.root)
        if d.demo:
            self.make_demo(root, DemoSpec(seed=d.demo_seed))
        check_dataset_root(root, "experiments/quickstart.yaml")
        train_A, val_A = split_train_val(image_folder(root, "trainA"), d.val_images, d.subset_A, root / "trainA")
        train_B, val_B = split_train_val(image_folder(root, "trainB"), d.val_images, d.subset_B, root / "trainB")
        self.train_counts = (len(train_A), len(train_B))
        val_tf = Transform(d.preprocess, d.load_size, d.crop_size, flip=False, train=False)
        self.val_A = self.held_out(val_A, val_tf, root / "trainA")
        self.val_B = self.held_out(val_B, val_tf, root / "trainB")
        self.evaluator = self.fid_evaluator(root, "cycle_l1")
        dataset = UnalignedDataset(train_A, train_B, Transform(d.preprocess, d.load_size, d.crop_size, d.flip),
                                   seed=cfg.seed)
        return dataset, self.shuffled(dataset)

    def build_networks(self) -> None:
        m, t = self.cfg.model, self.cfg.train
        gen = dict(input_nc=m.input_nc, output_nc=m.output_nc, ngf=m.ngf, n_blocks=m.n_blocks, norm=m.norm,
                   dropout=m.dropout, upsample=m.upsample, init=m.init, init_gain=m.init_gain,
                   grad_checkpoint=t.grad_checkpoint)
        self.G_A = build_generator(**gen).to(self.device)
        self.G_B = build_generator(**{**gen, "input_nc": m.output_nc, "output_nc": m.input_nc}).to(self.device)
        self.D_A = build_discriminator(m.output_nc, m.ndf, m.n_layers_D, m.norm, m.init, m.init_gain).to(self.device)
        self.D_B = build_discriminator(m.input_nc, m.ndf, m.n_layers_D, m.norm, m.init, m.init_gain).to(self.device)
        if t.channels_last:
            for net in (self.G_A, self.G_B, self.D_A, self.D_B):
                net.to(memory_format=torch.channels_last)
        self.gen_pair: nn.Module = GeneratorPair(*self.compile(self.G_A, self.G_B))
        self.disc_pair: nn.Module = DiscriminatorPair(*self.compile(self.D_A, self.D_B))
        # The G phase scores fakes with the bare discriminators: D is frozen there, so DDP must not
        # expect gradients for it; the D phase goes through the DDP wrapper.
        self.disc_frozen = self.disc_pair
        self.gen_pair, self.disc_pair = self.ddp(self.gen_pair), self.ddp(self.disc_pair)
        lo, t = self.cfg.loss, self.cfg.train
        self.weights = CycleWeights(lo.lambda_A, lo.lambda_B, lo.lambda_identity, lo.gan_mode)
        seed = self.cfg.seed * 1000 + self.rank
        self.pool_A = ImagePool(t.pool_size, seed=seed * 2)  # fake A images, for D_B
        self.pool_B = ImagePool(t.pool_size, seed=seed * 2 + 1)  # fake B images, for D_A
        self._last_fakes: tuple[torch.Tensor, torch.Tensor] | None = None
        self._last_images: tuple[torch.Tensor, torch.Tensor, Translations | None] | None = None

    def networks(self) -> dict[str, nn.Module]:
        return {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B}

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], float]]:
        o = self.cfg.optim
        return {"G": ([*self.G_A.parameters(), *self.G_B.parameters()], o.lr),
                "D": ([*self.D_A.parameters(), *self.D_B.parameters()], o.lr_D or o.lr)}

    @property
    def opt_G(self) -> torch.optim.Optimizer:
        return self.optimizers["G"]

    @property
    def opt_D(self) -> torch.optim.Optimizer:
        return self.optimizers["D"]

    @property
    def gen_pair_module(self) -> GeneratorPair:
        return self.gen_pair.module if isinstance(self.gen_pair, DDP) else self.gen_pair

    def describe(self) -> str:
        n_params = sum(p.numel() for p in self.G_A.parameters())
        d = self.cfg.data
        val = f"val {d.val_images} per domain held out" if d.val_images else "no held-out validation images"
        a, b = self.train_counts
        return f"train images A {a} B {b} | {val} | G {n_params / 1e6:.2f} M params"

    # ------------------------------------------------------------------------------- steps

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One iteration on a batch of uint8 images; returns detached device scalars."""
        real_A, real_B = self.to_device(batch["A"]), self.to_device(batch["B"])
        logs: dict[str, torch.Tensor] = {}
        tr: Translations | None = None
        if self.step % self.cfg.train.d_steps_per_g == 0:
            tr, g = self.generator_step(real_A, real_B)
            g_ok = self.update("G", g.total)
            logs.update({k: v.detach() for k, v in g.as_dict().items()})
            logs["G_total"] = g.total.detach()
            fake_B, fake_A = self._finite_fakes(tr.fake_B.detach(), tr.fake_A.detach(), g_ok)
        else:  # several discriminator steps per generator step: fakes without a G update
            g_ok = torch.ones((), dtype=torch.bool, device=self.device)
            with torch.no_grad(), self.autocast():
                fake_B, fake_A = self.gen_pair_module.G_A(real_A), self.gen_pair_module.G_B(real_B)
        d = self.discriminator_step(real_A, real_B, fake_B, fake_A)
        d_ok = self.update("D", d.total)
        if self.cfg.train.d_clip > 0:  # WGAN-style weight clipping (an experiment of the student report)
            with torch.no_grad():
                for p in self.opt_D.param_groups[0]["params"]:
                    p.clamp_(-self.cfg.train.d_clip, self.cfg.train.d_clip)
        logs.update({k: v.detach() for k, v in d.as_dict().items()})
        ok = g_ok & d_ok
        self.note_finite(ok)
        logs["nonfinite"] = (~ok).float()
        self._last_images = (real_A, real_B, tr)
        return logs

    def generator_step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> tuple[Translations, GeneratorLosses]:
        """G phase forward: translations and the generator losses, with D frozen (no gradient reaches D)."""
        set_requires_grad(self.disc_frozen, False)
        try:
            with self.autocast():
                tr = self.gen_pair(real_A, real_B, identity=self.weights.lambda_identity > 0)
                pred_fake_B, pred_fake_A = self.disc_frozen(tr.fake_B, tr.fake_A)
            return tr, GeneratorLosses.compute(tr, pred_fake_B, pred_fake_A, real_A, real_B, self.weights)
        finally:
            set_requires_grad(self.disc_frozen, True)

    def discriminator_step(self, real_A: torch.Tensor, real_B: torch.Tensor, fake_B: torch.Tensor,
                           fake_A: torch.Tensor) -> DiscriminatorLosses:
        """D phase forward: D_A on real B vs pooled fake B, D_B on real A vs pooled fake A."""
        fake_B_pool, fake_A_pool = self.pool_B.query(fake_B), self.pool_A.query(fake_A)
        with self.autocast():
            return DiscriminatorLosses.compute(self.disc_pair, real_A, real_B, fake_A_pool, fake_B_pool,
                                               self.weights.gan_mode)

    def _finite_fakes(self, fake_B: torch.Tensor, fake_A: torch.Tensor,
                      ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """After a non-finite G step its fakes are replaced by the last finite ones (zeros before
        any), so the pools never store a NaN; decided on the device."""
        last = self._last_fakes
        if last is None or last[0].shape != fake_B.shape or last[1].shape != fake_A.shape:
            last = (torch.zeros_like(fake_B), torch.zeros_like(fake_A))
        fake_B, fake_A = torch.where(ok, fake_B, last[0]), torch.where(ok, fake_A, last[1])
        self._last_fakes = (fake_B, fake_A)
        return fake_B, fake_A

    # ------------------------------------------------------------------------------- validation

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean cycle-consistency L1 on the held-out images, 0.5 * (|F(G(a)) - a| + |G(F(b)) - b|),
        averaged over all ranks' shards (batched); FID/KID of both directions every
        ``eval.every_epochs`` epochs."""
        metrics: dict[str, float] = {}
        pair = self.gen_pair_module
        self.G_A.eval()
        self.G_B.eval()
        try:
            if self.cfg.data.val_images:
                sums = torch.zeros(4, device=self.device, dtype=torch.float64)  # err_A, n_A, err_B, n_B
                bs = self.cfg.eval.batch_size
                for images, first, second, slot in ((self.val_A, pair.G_A, pair.G_B, 0),
                                                     (self.val_B, pair.G_B, pair.G_A, 2)):
                    for i in range(0, len(images), bs):
                        chunk = images[i : i + bs]
                        if len({tuple(x.shape) for x in chunk}) > 1:  # preprocess none: sizes differ
                            batches = [x.unsqueeze(0) for x in chunk]
                        else:
                            batches = [torch.stack(chunk)]
                        for x in batches:
                            x = self.to_device(x)
                            with self.autocast():
                                rec = second(first(x))
                            sums[slot] += (rec.float() - x).abs().mean(dim=(1, 2, 3)).double().sum()
                            sums[slot + 1] += x.shape[0]
                sums = dist.all_reduce_sum(sums).tolist()
                if sums[1] == 0 or sums[3] == 0:
                    raise TrainingError("no validation image could be read on any process; set data.val_images=0")
                metrics["cycle_l1"] = 0.5 * (sums[0] / sums[1] + sums[2] / sums[3])
            if self.evaluator is not None and (self.epoch + 1) % self.cfg.eval.every_epochs == 0:
                metrics.update(self.evaluator.evaluate(pair.G_A, pair.G_B))
        finally:
            self.G_A.train()
            self.G_B.train()
        return metrics

    def plateau_value(self) -> float | None:
        key = self.cfg.optim.plateau_metric
        if key == "cycle_l1":
            return self.metrics.get("cycle_l1")
        a, b = self.metrics.get(f"{key}_A"), self.metrics.get(f"{key}_B")
        return None if a is None or b is None else 0.5 * (a + b)

    def image_rows(self) -> dict[str, list[torch.Tensor]] | None:
        if self._last_images is None or self._last_images[2] is None:
            return None
        real_A, real_B, tr = self._last_images
        return {
            "A_to_B": [real_A, tr.fake_B, tr.rec_A] + ([tr.idt_B] if tr.idt_B is not None else []),
            "B_to_A": [real_B, tr.fake_A, tr.rec_B] + ([tr.idt_A] if tr.idt_A is not None else []),
        }

    # ------------------------------------------------------------------------------- state

    def extra_state(self) -> dict[str, Any]:
        return {"pools": {"A": self.pool_A.state_dict(), "B": self.pool_B.state_dict()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.pool_A.load_state_dict(state["pools"]["A"], self.device)
        self.pool_B.load_state_dict(state["pools"]["B"], self.device)


class ImagePool:
    """Stores up to ``pool_size`` images; :meth:`query` returns a batch of the same shape.

    For each incoming image: while the pool is not full it is stored and returned. Once full,
    with probability 0.5 the image is returned as is; otherwise a uniformly chosen stored
    image is returned and replaced by the incoming one. ``pool_size=0`` disables the pool.
    Its whole state (images + RNG) is checkpointed.
    """

    def __init__(self, pool_size: int = 50, seed: int = 0) -> None:
        self.pool_size = pool_size
        self.images: list[torch.Tensor] = []  # each (1, C, H, W), on the training device
        self.rng = random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """images: ``(N, C, H, W)``; returns ``(N, C, H, W)``, detached."""
        images = images.detach()
        if self.pool_size == 0:
            return images
        out = []
        for image in images.split(1):
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                idx = self.rng.randint(0, self.pool_size - 1)
                out.append(self.images[idx])  # handed out, then replaced: no copy needed
                self.images[idx] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        return {"pool_size": self.pool_size, "images": [im.cpu() for im in self.images],
                "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        if state["pool_size"] != self.pool_size:
            raise ValueError(f"the checkpoint's image pool holds up to {state['pool_size']} images, the config asks "
                             f"for {self.pool_size} (train.pool_size cannot change on resume)")
        self.images = [im.to(device) for im in state["images"]]
        rng = state["rng"]
        if isinstance(rng, torch.Tensor):
            # Checkpoints of format version 1 drew from a torch.Generator; continue from a seed
            # derived from its state, so such a run resumes (its pool choices are new ones).
            self.rng = random.Random(int.from_bytes(hashlib.sha256(rng.numpy().tobytes()).digest()[:8], "little"))
        else:
            self.rng.setstate(_as_tuple(rng))


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
