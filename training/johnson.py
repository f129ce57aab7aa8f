"""Johnson et al. 2016 fast style transfer training: one feed-forward network per style (or
several styles in one, by conditional instance norm).

Per iteration: a batch of content crops x (uint8 -> [0, 255]), y = T(x), and one Adam step on

    L = content_weight * L_content(VGG(y), VGG(x)) + style_weight * L_style(G(VGG(y)), A) + tv_weight * L_tv(y)

through a frozen VGG (:func:`models.johnson.johnson_losses`; VGG-16 and the paper's layers by
default). The style targets A (Gram matrices) are computed once, when the trainer is built:

* one style image: its Grams;
* several images, ``style.multi: false``: ONE target, their Grams blended with ``style.weights``
  (the lecture's multi-style loss: sum_i b_i ||G_i - G(y)||^2 has the same minimiser as
  ||sum_i b_i G_i - G(y)||^2 for weights summing to 1);
* ``style.multi: true``: one target per image and a network with one instance-norm scale and
  shift per style (Dumoulin et al. 2017). Each training image's style **cycles**: image ``i`` of
  the content set takes style ``(i + epoch) mod S`` in that epoch, so every epoch trains each
  style on 1/S of the images (shuffled into mixed batches), every image meets every style over S
  epochs, and the choice depends on nothing but (index, epoch): resume and DDP see the same.

Validation (``data.val_images``): the weighted loss on held-out images (centre crops; image k
with style k mod S), every epoch; ``val/loss`` can drive the plateau schedule. Every logged term
(``loss/content``, ``val/style`` ...) is weighted, so the terms add up to the total. TensorBoard
shows content | stylized (one column per style for a multi-style network) every
``log.images_every`` steps.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from data.folder import ImageFolderDataset, content_images
from data.image_io import load_style_images
from data.transforms import Transform, split_train_val
from models.johnson import (
    TransformerNet,
    johnson_loss_weights,
    johnson_losses,
    one_hot_style_weights,
    stack_style_grams,
)
from models.style_losses import style_grams
from models.vgg import VGGWeightsUnavailable, load_vgg
from options.johnson import JohnsonConfig
from training import distributed as dist
from training.distributed import EpochSampler
from training.trainer import Trainer, TrainingError


class StyledImages(Dataset):
    """Adds ``"style"``: image ``index`` takes style ``(index + epoch) mod n_styles`` (module docstring)."""

    def __init__(self, inner: ImageFolderDataset, n_styles: int) -> None:
        self.inner, self.n_styles = inner, n_styles

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        return {**self.inner[key], "style": (index + epoch) % self.n_styles}


class JohnsonTrainer(Trainer):
    method = "johnson"
    cfg: JohnsonConfig
    progress_keys = ("total", "content", "style")
    image_range = (0.0, 255.0)
    to_input = staticmethod(torch.Tensor.float)  # the network takes [0, 255]

    # ------------------------------------------------------------------------------- building

    def build_data(self) -> tuple[Dataset, EpochSampler]:
        cfg, d = self.cfg, self.cfg.data
        root = Path(d.root)
        if d.demo:
            self.make_demo(root.parent)  # root is a folder of the demo set, e.g. datasets/demo/trainB
        train, val = split_train_val(content_images(root), d.val_images, d.max_images, root)
        # A bad style file fails here, before the networks are built.
        self.style_images = load_style_images(cfg.style.images, cfg.style.size, "style.images")
        self.n_train = len(train)
        # Few images: decoded once (centre crops), sharded across ranks; image k keeps style k mod S.
        self.val_index = list(range(len(val)))[self.rank :: self.world]
        centre = Transform("scale_shortside_and_crop", d.load_size, d.crop_size, False, train=False)
        self.val = self.held_out(val, centre, root)
        crop = Transform("scale_shortside_and_crop", d.load_size, d.crop_size, d.flip, train=True)
        images = ImageFolderDataset(train, crop, seed=cfg.seed)
        dataset: Dataset = StyledImages(images, cfg.n_styles) if cfg.style.multi else images
        return dataset, self.shuffled(dataset)

    def build_networks(self) -> None:
        cfg, m, lo, t = self.cfg, self.cfg.model, self.cfg.loss, self.cfg.train
        self.net = TransformerNet(m.channels, m.n_blocks, cfg.n_styles, m.upsample, m.output).to(self.device)
        self.weights = johnson_loss_weights(lo.content_weight, lo.style_weight, lo.tv_weight, lo.content_layers,
                                            lo.style_layers)
        v = cfg.vgg
        try:
            vgg, self.vgg_info = load_vgg(v.arch, self.weights.layers, v.pooling, v.weights, v.preprocess,
                                          allow_download=v.download, random_if_unavailable=v.random_if_unavailable,
                                          seed=cfg.seed)
        except VGGWeightsUnavailable as e:
            raise TrainingError(f"vgg.weights: {e}") from e
        self.vgg = vgg.to(self.device)
        if not self.vgg_info.pretrained and self.is_main:
            print(f"WARNING: the loss network is a {self.vgg_info.label}: the loop and the numbers are real, the "
                  f"pictures are not art (put {v.arch} ImageNet weights in the torch cache for real results)",
                  file=sys.stderr, flush=True)
        if t.channels_last:
            self.net.to(memory_format=torch.channels_last)
            self.vgg.to(memory_format=torch.channels_last)
        self.style_targets = self._style_targets()
        (compiled,) = self.compile(self.net)
        self.forward_net = self.ddp(compiled)
        self._last_batch: torch.Tensor | None = None

    def _style_targets(self) -> list[dict[str, torch.Tensor]]:
        """Gram targets, once per run, in fp32: one dict per style of the network ({layer: (1, C, C)})."""
        s = self.cfg.style
        images = [x.to(self.device) for x in self.style_images]
        layers = list(self.weights.style_layers)
        if s.multi:
            return [style_grams(self.vgg, [x], None, layers) for x in images]
        return [style_grams(self.vgg, images, s.weights or None, layers)]

    def networks(self) -> dict[str, nn.Module]:
        return {"transformer": self.net}

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], float]]:
        return {"transformer": (list(self.net.parameters()), self.cfg.optim.lr)}

    def describe(self) -> str:
        s, d = self.cfg.style, self.cfg.data
        if s.multi:
            styles = f"{len(s.images)} styles (conditional instance norm)"
        elif len(s.images) > 1:
            styles = f"{len(s.images)} style images blended into one target"
        else:
            styles = f"style {Path(s.images[0]).name}"
        val = f"val {d.val_images} held out" if d.val_images else "no held-out images"
        n_params = sum(p.numel() for p in self.net.parameters())
        return (f"content images {self.n_train} | {val} | {styles} | loss network {self.vgg_info.label} | "
                f"transformer {n_params / 1e6:.2f} M params")

    # ------------------------------------------------------------------------------- steps

    def _targets(self, styles: torch.Tensor | None) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """(style weights for the network, Gram targets) of a batch; ``styles`` (N,) indices or None."""
        if styles is None:
            return None, self.style_targets[0]
        styles = styles.to(self.device)
        return one_hot_style_weights(styles, self.cfg.n_styles).to(self.device), \
            stack_style_grams(self.style_targets, styles)

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = self.to_device(batch["image"])
        w, grams = self._targets(batch.get("style"))
        with self.autocast():
            y = self.forward_net(x, w)
            losses = johnson_losses(self.vgg, y, x, grams, self.weights)
        ok = self.update("transformer", losses.total)
        self.note_finite(ok)
        self._last_batch = batch["image"][:1]
        return {"total": losses.total.detach(), **{k: v.detach() for k, v in losses.as_dict().items()},
                "nonfinite": (~ok).float()}

    # ------------------------------------------------------------------------------- validation

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Held-out weighted loss and its weighted content / style terms, averaged over images and ranks."""
        if not self.cfg.data.val_images:
            return {}
        sums = torch.zeros(4, device=self.device, dtype=torch.float64)  # total, content, style, images
        bs = self.cfg.data.batch_size
        self.net.eval()
        try:
            for i in range(0, len(self.val), bs):
                x = self.to_device(torch.stack(self.val[i : i + bs]))
                idx = torch.tensor(self.val_index[i : i + bs]) % self.cfg.n_styles
                w, grams = self._targets(idx if self.cfg.style.multi else None)
                with self.autocast():
                    losses = johnson_losses(self.vgg, self.net(x, w).float(), x, grams, self.weights)
                n = x.shape[0]
                sums += torch.stack([losses.total * n, losses.content * n, losses.style * n,
                                     torch.tensor(float(n), device=self.device)]).double()
        finally:
            self.net.train()
        total, content, style, n = dist.all_reduce_sum(sums).tolist()
        if n == 0:
            raise TrainingError("no validation image could be read on any process; set data.val_images=0")
        return {"loss": total / n, "content": content / n, "style": style / n}

    def plateau_value(self) -> float | None:
        return self.metrics.get("loss")

    @torch.no_grad()
    def image_rows(self) -> dict[str, list[torch.Tensor]] | None:
        """content | stylized (a multi-style network: one column per style, at most 8), on the first
        held-out image (the same picture every time), else on the last training batch's first image."""
        source = self.val[0].unsqueeze(0) if self.val else self._last_batch
        if source is None:
            return None
        x = self.to_device(source)
        n = self.cfg.n_styles
        weights = [one_hot_style_weights(k, n).to(self.device) for k in range(min(n, 8))] if n > 1 else [None]
        self.net.eval()
        try:
            with self.autocast():
                outs = [self.net(x, w).float() for w in weights]
        finally:
            self.net.train()
        return {"stylized": [x, *outs]}

    # ------------------------------------------------------------------------------- state

    def extra_state(self) -> dict[str, Any]:
        return {"vgg": self.vgg_info.label}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        before = state.get("vgg")
        if before is not None and before != self.vgg_info.label:
            raise ValueError(f"the run was trained with the loss network {before}, this process has "
                             f"{self.vgg_info.label}; resume where that network is available, or start a new run")
