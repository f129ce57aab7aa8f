"""CUT / FastCUT training (Park, Efros, Zhang, Zhu 2020; the authors' ``CUTModel.optimize_parameters``).

Per iteration, on a batch of unaligned images a (domain A) and b (domain B):

1. forward: ``G(cat(a, b))`` when the identity term is on (one pass gives G(a) and the identity
   image G(b)), else ``G(a)``; with flip equivariance (FastCUT) the input is flipped left-right
   with probability 1/2 and the features flipped back before PatchNCE. The PatchNCE terms
   ``NCE(G(a), a)`` (and ``NCE(G(b), b)``) are computed here: they do not involve D.
2. D phase: D is updated first on 0.5 * (GAN(D(b), real) + GAN(D(G(a)), fake)), with G(a)
   detached (:class:`CUTDiscriminatorLosses`). No image pool (the authors' ``pool_size 0``).
3. G phase: G and netF together on ``lambda_GAN * GAN(D(G(a)), real) + lambda_NCE * NCE`` (the
   identity term averaged with the first, :class:`CUTGeneratorLosses`), scored by the updated D.

The authors keep one Adam for G and one for netF with the same settings; Adam is element-wise,
so the single optimiser ``G`` over both parameter sets takes exactly their steps.

netF's MLPs are created before the first batch from the generator's feature channels
(:func:`models.cut.nce_channels`) with a seed of the run, so a resumed run and every DDP rank
hold the same modules and initial weights before weights are loaded or DDP wraps them. Under
DDP the generator and netF run inside one module (:class:`CUTForward`), so each backward
follows exactly one forward of the wrapped module.

Validation: the mean NCE(G(a), a) over held-out A images (``data.val_images``, fixed patch
locations) every epoch, and FID / KID of G(testA) against testB every ``eval.every_epochs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import Dataset

from data.demo import DemoSpec
from data.transforms import Transform, split_train_val
from data.unaligned import LAYOUT, UnalignedDataset, check_dataset_root, image_folder
from models.cut import PatchSampleF, build_discriminator, build_generator, nce_channels, nce_loss
from models.gan_networks import discriminator_loss, gan_loss
from models.terms import Terms
from options.cut import CUTConfig
from training import distributed as dist
from training.distributed import EpochSampler
from training.trainer import Trainer, TrainingError, set_requires_grad


@dataclass
class CUTGeneratorLosses(Terms):
    """The G + F objective's weighted terms (fp32 scalars); ``total`` is the authors' ``loss_G``."""

    G_GAN: torch.Tensor  # lambda_GAN * GAN(D(G(a)), real)
    NCE: torch.Tensor  # lambda_NCE * NCE(G(a), a), halved when the identity term is on
    NCE_Y: torch.Tensor  # lambda_NCE * NCE(G(b), b) / 2 (0 without the identity term)


@dataclass
class CUTDiscriminatorLosses(Terms):
    D: torch.Tensor  # 0.5 * (GAN(D(b), real) + GAN(D(G(a)), fake))


class CUTForward(nn.Module):
    """G and netF behind one forward (what DDP wraps): images -> (G(a), G(b) or None, NCE, NCE_Y).

    NCE terms are the means over layers of the mean PatchNCE, not yet weighted."""

    def __init__(self, G: nn.Module, F: PatchSampleF, layers: list[int], num_patches: int, nce_T: float,
                 all_negatives: bool) -> None:
        super().__init__()
        self.G, self.F = G, F
        self.layers, self.num_patches, self.nce_T, self.all_negatives = layers, num_patches, nce_T, all_negatives

    def nce(self, src: torch.Tensor, tgt: torch.Tensor, flipped: bool) -> torch.Tensor:
        return nce_loss(self.G, self.F, src, tgt, self.layers, self.num_patches, self.nce_T, flipped,
                        self.all_negatives)

    def forward(self, real_A: torch.Tensor, real_B: torch.Tensor, identity: bool, flipped: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        real = torch.cat((real_A, real_B)) if identity else real_A
        if flipped:
            real = torch.flip(real, [3])
        fake = self.G(real)
        fake_B = fake[: real_A.shape[0]]
        idt_B = fake[real_A.shape[0]:] if identity else None
        nce = self.nce(real_A, fake_B, flipped)
        nce_y = self.nce(real_B, idt_B, flipped) if idt_B is not None else torch.zeros_like(nce)
        return fake_B, idt_B, nce, nce_y


class RealFake(nn.Module):
    """D on real and generated images in one forward (what DDP wraps): -> (D(real), D(fake))."""

    def __init__(self, D: nn.Module) -> None:
        super().__init__()
        self.D = D

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.D(real), self.D(fake)


class CUTTrainer(Trainer):
    method = "cut"
    cfg: CUTConfig
    progress_keys = ("G_GAN", "NCE", "NCE_Y", "D")
    image_folders = LAYOUT

    # ------------------------------------------------------------------------------- building

    def build_data(self) -> tuple[Dataset, EpochSampler]:
        cfg, d = self.cfg, self.cfg.data
        root = Path(d.root)
        if d.demo:
            self.make_demo(root, DemoSpec(seed=d.demo_seed))
        check_dataset_root(root, "experiments/cut_demo.yaml")
        # G maps its source domain (trainA, or trainB with direction BtoA) to the other: "A" below is
        # the source, as in the authors' code after their --direction swap.
        src, tgt = ("trainA", "trainB") if cfg.direction == "AtoB" else ("trainB", "trainA")
        subset = {"trainA": d.subset_A, "trainB": d.subset_B}
        train_A, val_A = split_train_val(image_folder(root, src), d.val_images, subset[src], root / src)
        train_B, _ = split_train_val(image_folder(root, tgt), d.val_images, subset[tgt], root / tgt)
        self.train_counts = (len(train_A), len(train_B))
        val_tf = Transform(d.preprocess, d.load_size, d.crop_size, flip=False, train=False)
        self.val_A = self.held_out(val_A, val_tf, root / src)
        self.evaluator = self.fid_evaluator(root, "nce")
        dataset = UnalignedDataset(train_A, train_B, Transform(d.preprocess, d.load_size, d.crop_size, d.flip),
                                   seed=cfg.seed)
        return dataset, self.shuffled(dataset)

    def build_networks(self) -> None:
        cfg, m, lo, t = self.cfg, self.cfg.model, self.cfg.loss, self.cfg.train
        self.G = build_generator(m.input_nc, m.output_nc, m.ngf, m.n_blocks, m.norm, m.dropout, m.antialias,
                                 m.antialias_up, m.init, m.init_gain, t.grad_checkpoint).to(self.device)
        self.D = build_discriminator(m.output_nc, m.ndf, m.n_layers_D, m.norm, m.antialias, m.init,
                                     m.init_gain).to(self.device)
        # netF before the first batch, the same on every rank: its own seed, not the global RNG.
        channels = nce_channels(lo.nce_layers, m.input_nc, m.ngf, m.n_blocks, m.antialias)
        self.F = PatchSampleF(m.netF_nc, m.init, m.init_gain).create(channels, seed=cfg.seed).to(self.device)
        if t.channels_last:
            for net in (self.G, self.D, self.F):
                net.to(memory_format=torch.channels_last)
        (G,) = self.compile(self.G)
        self.forward_pass: nn.Module = self.ddp(
            CUTForward(G, self.F, list(lo.nce_layers), lo.num_patches, lo.nce_T,
                       lo.nce_includes_all_negatives_from_minibatch))
        # The G phase scores G(a) with the bare D (frozen there, so DDP must not expect gradients for
        # it); the D phase goes through the DDP wrapper.
        (self.D_frozen,) = self.compile(self.D)
        self.D_pair = self.ddp(RealFake(self.D_frozen))
        self.identity = lo.nce_idt and lo.lambda_NCE > 0
        self._last_images: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "F": self.F, "D": self.D}

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], float]]:
        o = self.cfg.optim
        return {"G": ([*self.G.parameters(), *self.F.parameters()], o.lr),
                "D": (list(self.D.parameters()), getattr(o, "lr_D", 0) or o.lr)}

    @property
    def forward_module(self) -> CUTForward:
        return self.forward_pass.module if isinstance(self.forward_pass, DDP) else self.forward_pass

    def describe(self) -> str:
        n_params = sum(p.numel() for p in self.G.parameters())
        d, lo = self.cfg.data, self.cfg.loss
        a, b = self.train_counts
        val = f"val {d.val_images} A images held out" if d.val_images else "no held-out validation images"
        return (f"{self.cfg.mode} {self.cfg.direction} | train images source {a} target {b} | {val} | "
                f"G {n_params / 1e6:.2f} M params | "
                f"lambda_NCE {lo.lambda_NCE:g}{' + identity NCE' if self.identity else ''}"
                f"{' | flip equivariance' if lo.flip_equivariance else ''}")

    # ------------------------------------------------------------------------------- steps

    def _flipped(self) -> bool:
        """FastCUT's coin (the authors' ``np.random.random() < 0.5`` per iteration), from (seed, step,
        rank) so that a resumed run flips as the uninterrupted one would."""
        if not self.cfg.loss.flip_equivariance:
            return False
        return bool(np.random.default_rng([self.cfg.seed, self.step, self.rank]).random() < 0.5)

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """D first, then G and netF (the authors' order); returns detached device scalars."""
        lo = self.cfg.loss
        real_A, real_B = self.to_device(batch["A"]), self.to_device(batch["B"])
        with self.autocast():
            fake_B, idt_B, nce, nce_y = self.forward_pass(real_A, real_B, self.identity, self._flipped())
        with self.autocast():
            pred_real, pred_fake = self.D_pair(real_B, fake_B.detach())
        d = CUTDiscriminatorLosses(D=discriminator_loss(pred_real, pred_fake, lo.gan_mode))
        d_ok = self.update("D", d.total)
        set_requires_grad(self.D_frozen, False)
        try:
            with self.autocast():
                pred = self.D_frozen(fake_B)
            g = self.generator_losses(pred, nce, nce_y)
            g_ok = self.update("G", g.total)
        finally:
            set_requires_grad(self.D_frozen, True)
        ok = g_ok & d_ok
        self.note_finite(ok)
        self._last_images = (real_A, fake_B.detach(), None if idt_B is None else idt_B.detach())
        return {**{k: v.detach() for k, v in g.as_dict().items()}, "G_total": g.total.detach(),
                **{k: v.detach() for k, v in d.as_dict().items()}, "nonfinite": (~ok).float()}

    def generator_losses(self, pred_fake: torch.Tensor, nce: torch.Tensor, nce_y: torch.Tensor) -> CUTGeneratorLosses:
        """The authors' ``compute_G_loss`` from D's logits on G(a) and the unweighted NCE terms."""
        lo = self.cfg.loss
        half = 0.5 if self.identity else 1.0
        gan = gan_loss(pred_fake, True, lo.gan_mode) * lo.lambda_GAN if lo.lambda_GAN > 0 else torch.zeros_like(nce)
        return CUTGeneratorLosses(G_GAN=gan, NCE=nce * lo.lambda_NCE * half,
                                  NCE_Y=nce_y * lo.lambda_NCE * half if self.identity else torch.zeros_like(nce))

    # ------------------------------------------------------------------------------- validation

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean NCE(G(a), a) on the held-out A images (patch locations from a fixed generator, so
        epochs compare), over all ranks' shards; FID/KID of G(testA) vs testB every
        ``eval.every_epochs`` epochs."""
        metrics: dict[str, float] = {}
        fwd = self.forward_module
        self.G.eval()
        try:
            if self.cfg.data.val_images:
                sums = torch.zeros(2, device=self.device, dtype=torch.float64)
                gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
                for x in self.val_A:
                    a = self.to_device(x.unsqueeze(0))
                    with self.autocast():
                        loss = nce_loss(fwd.G, fwd.F, a, fwd.G(a), fwd.layers, fwd.num_patches, fwd.nce_T,
                                        generator=gen)
                    sums += torch.stack([loss.double(), torch.ones((), dtype=torch.float64, device=self.device)])
                total, n = dist.all_reduce_sum(sums).tolist()
                if n == 0:
                    raise TrainingError("no validation image could be read on any process; set data.val_images=0")
                metrics["nce"] = total / n
            if self.evaluator is not None and (self.epoch + 1) % self.cfg.eval.every_epochs == 0:
                pair = (fwd.G, None) if self.cfg.direction == "AtoB" else (None, fwd.G)
                metrics.update(self.evaluator.evaluate(*pair))
        finally:
            self.G.train()
        return metrics

    def plateau_value(self) -> float | None:
        key = self.cfg.optim.plateau_metric
        source = "A" if self.cfg.direction == "AtoB" else "B"
        return self.metrics.get("nce" if key == "nce" else f"{key}_{source}")

    def image_rows(self) -> dict[str, list[torch.Tensor]] | None:
        if self._last_images is None:
            return None
        real_A, fake_B, idt_B = self._last_images
        return {"A_to_B": [real_A, fake_B]} if idt_B is None else {"A_to_B": [real_A, fake_B], "identity_B": [idt_B]}
