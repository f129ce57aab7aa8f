"""Decoder training for universal style transfer (Li et al. 2017 section 3.1; AdaIN's relu4_1
decoder of Huang & Belongie 2017 is the same thing at one level).

Per iteration, on a batch of content images in [0, 1]:

1. one forward of the frozen VGG-19 encoder, up to the deepest level, gives every level's
   features Phi_l(I) (no gradient);
2. each level's decoder reconstructs the image from them, I_l = D_l(Phi_l(I));
3. the loss is sum_l ||I_l - I||^2 + lambda ||Phi_l(I_l) - Phi_l(I)||^2 (Li et al. eq. 1 per
   level, mean squared errors, lambda = ``loss.feature_weight``).

**One optimiser for all decoders.** The levels share no parameters, so the gradient of the
summed loss with respect to a decoder's weights is exactly that of its own level's loss, and
Adam is element-wise: one Adam over every decoder takes the very steps that one Adam per level
would, with one backward, one fused optimiser kernel, one GradScaler update and one schedule per
step. The price: a step whose loss is not finite at one level is skipped for all levels (it is
counted and reported; a healthy run has none).

Validation (every epoch, ``data.val_images`` held-out images, centre crops): the mean pixel MSE
of each level's reconstruction and their mean, ``pixel``, the plateau metric. TensorBoard shows
input | reconstruction per level. Checkpoints hold every level in ``nets["decoders"]`` (an
``nn.ModuleDict`` keyed by level, see :mod:`models.wct` for the parameter names) and the
encoder's identity in the config's ``vgg.resolved``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from data.folder import ImageFolderDataset, content_images
from data.image_io import uint8_to_unit
from data.transforms import Transform, split_train_val
from methods.base import MethodError
from methods.wct import load_encoder
from models.wct import LEVELS, build_decoders, decoder_losses, encode_levels
from options.wct import WCTConfig
from training import distributed as dist
from training.distributed import EpochSampler
from training.trainer import Trainer, TrainingError


class DecoderBank(nn.Module):
    """Every level's decoder behind one forward (what DDP wraps): {level: features} -> {level: image}."""

    def __init__(self, decoders: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.decoders = nn.ModuleDict(decoders)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {level: self.decoders[level](f) for level, f in features.items()}


class WCTTrainer(Trainer):
    method = "wct"
    cfg: WCTConfig
    progress_keys = ("total",)
    image_range = (0.0, 1.0)
    to_input = staticmethod(uint8_to_unit)

    # ------------------------------------------------------------------------------- building

    def build_data(self) -> tuple[Dataset, EpochSampler]:
        cfg, d = self.cfg, self.cfg.data
        root = Path(d.root)
        if d.demo:
            self.make_demo(root.parent)  # root is a folder of the demo set, e.g. datasets/demo/trainB
        train, val = split_train_val(content_images(root), d.val_images, d.max_images, root)
        self.n_train = len(train)
        # Held-out images are few: decoded once (centre crops), kept as uint8, sharded across ranks.
        val_tf = Transform("scale_shortside_and_crop", d.load_size, d.crop_size, flip=False, train=False)
        self.val_images = self.held_out(val, val_tf, root)
        crop = Transform("scale_shortside_and_crop", d.load_size, d.crop_size, d.flip, train=True)
        dataset = ImageFolderDataset(train, crop, seed=cfg.seed)
        return dataset, self.shuffled(dataset)

    def build_networks(self) -> None:
        cfg, t = self.cfg, self.cfg.train
        self.levels = sorted(cfg.model.levels, key=LEVELS.index)
        try:
            encoder, self.vgg_info = load_encoder(cfg, self.levels)
        except MethodError as e:
            raise TrainingError(str(e)) from e
        # The identity of the encoder goes into the stored config: inference and resume rebuild it.
        cfg.vgg.resolved = cfg.vgg.weights if self.vgg_info.pretrained else "random"
        self.encoder = encoder.to(self.device)
        if not self.vgg_info.pretrained and self.is_main:
            print(f"WARNING: the encoder is a {self.vgg_info.label}: the decoders learn to invert a random network, "
                  f"which tests the pipeline but stylizes poorly. For real results put the ImageNet VGG-19 weights "
                  f"in the torch cache (see docs/methods.md, WCT and AdaIN) and train a new run.", file=sys.stderr)
        self.decoders = build_decoders(self.levels, cfg.model.width).to(self.device)
        if t.channels_last:
            self.encoder.to(memory_format=torch.channels_last)
            self.decoders.to(memory_format=torch.channels_last)
        compiled = self.compile(*(self.decoders[level] for level in self.levels))
        self.bank = self.ddp(DecoderBank(dict(zip(self.levels, compiled))))
        self._last: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None

    def networks(self) -> dict[str, nn.Module]:
        return {"decoders": self.decoders}

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], float]]:
        return {"decoders": (list(self.decoders.parameters()), self.cfg.optim.lr)}

    def describe(self) -> str:
        n_params = sum(p.numel() for p in self.decoders.parameters())
        d = self.cfg.data
        val = f"val {d.val_images} held out" if d.val_images else "no held-out validation images"
        return (f"train images {self.n_train} | {val} | decoders {', '.join(self.levels)} width "
                f"{self.cfg.model.width:g}: {n_params / 1e6:.2f} M params | encoder {self.vgg_info.label}")

    # ------------------------------------------------------------------------------- steps

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One iteration on a batch of uint8 images; returns detached device scalars."""
        images = self.to_device(batch["image"])
        fw = self.cfg.loss.feature_weight
        with self.autocast():
            with torch.no_grad():
                targets = encode_levels(self.encoder, images, self.levels)
            outputs = self.bank(targets)
            losses = {level: decoder_losses(self.encoder, outputs[level], images, targets[level], level, fw)
                      for level in self.levels}
        total = torch.stack([lo.total for lo in losses.values()]).sum()
        ok = self.update("decoders", total)
        self.note_finite(ok)
        logs: dict[str, torch.Tensor] = {"total": total.detach(), "nonfinite": (~ok).float()}
        for level, lo in losses.items():
            logs[f"pixel_{level}"] = lo.pixel.detach()
            logs[f"feature_{level}"] = lo.feature.detach()
        self._last = (images, {level: out.detach() for level, out in outputs.items()})
        return logs

    # ------------------------------------------------------------------------------- validation

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean pixel MSE of each level's reconstruction of the held-out images (``pixel_<level>``)
        and their mean over levels (``pixel``, the plateau metric), over all ranks' shards."""
        if not self.cfg.data.val_images:
            return {}
        n = len(self.levels)
        sums = torch.zeros(n + 1, device=self.device, dtype=torch.float64)  # per-level error sums, image count
        bs = self.cfg.data.batch_size
        self.decoders.eval()
        try:
            for i in range(0, len(self.val_images), bs):
                x = self.to_device(torch.stack(self.val_images[i : i + bs]))
                with self.autocast():
                    feats = encode_levels(self.encoder, x, self.levels)
                    for k, level in enumerate(self.levels):
                        rec = self.decoders[level](feats[level]).float()
                        sums[k] += (rec - x).pow(2).mean(dim=(1, 2, 3)).double().sum()
                sums[n] += x.shape[0]
        finally:
            self.decoders.train()
        sums = dist.all_reduce_sum(sums).tolist()
        if sums[n] == 0:
            raise TrainingError("no validation image could be read on any process; set data.val_images=0")
        metrics = {f"pixel_{level}": sums[k] / sums[n] for k, level in enumerate(self.levels)}
        metrics["pixel"] = sum(metrics.values()) / n
        return metrics

    def plateau_value(self) -> float | None:
        return self.metrics.get("pixel")

    def image_rows(self) -> dict[str, list[torch.Tensor]] | None:
        """input | reconstruction from relu1_1 ... relu5_1 (the levels trained), in [0, 1]."""
        if self._last is None:
            return None
        images, outputs = self._last
        return {"reconstruction": [images, *(outputs[level].float().clamp(0, 1) for level in self.levels)]}
