"""FID and KID during CycleGAN training (``eval.*`` keys), through the same library and weight
loading as the report (:mod:`evaluation.metrics`: torchmetrics over torch-fidelity's Inception).

Every ``eval.every_epochs`` epochs the trainer asks for

* ``fid_A``, ``kid_A``: G_A(testA) against the real testB images (the A -> B direction),
* ``fid_B``, ``kid_B``: G_B(testB) against the real testA images (B -> A),

logged to TensorBoard as ``val/fid_A`` ... with the image counts (``val/images_A``,
``val/images_B``), selectable as the plateau metric (``optim.plateau_metric=fid`` or ``kid``, the
mean of both directions). Test images are resized to the training crop (as the reference tests
at its training size), translated in batches under ``eval.amp`` (bf16 by default), and the real
sets' features are computed once, at start. Without Inception weights (offline) the trainer
prints one notice at start and the metric is off; training never stops for it. Under torchrun,
rank 0 evaluates and sends the values to every rank.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from data.image_io import BadImageError, list_images, load_rgb, pil_to_uint8, to_model_range, to_uint8
from evaluation.metrics import MetricUnavailable, extract_features, fid_kid, load_inception
from training import distributed as dist
from utils.device import autocast_context

KEYS = ("fid_A", "kid_A", "fid_B", "kid_B")


class TrainingEvaluator:
    """Holds the test images and the real sets' features; :meth:`evaluate` measures two generators."""

    def __init__(self, root: Path, eval_cfg: Any, size: int, device: torch.device,
                 log: Callable[[str], None] | None = print, feature_extractor: nn.Module | None = None) -> None:
        self.cfg, self.device, self.size = eval_cfg, device, size
        self.log = log or (lambda _: None)
        self.available = False
        self.images: dict[str, list[torch.Tensor]] = {}
        self.real_features: dict[str, torch.Tensor] = {}
        if not dist.is_main():
            return  # rank 0 evaluates and broadcasts
        try:
            self.extractor = feature_extractor or load_inception(eval_cfg.inception_weights or None,
                                                                 eval_cfg.download)
        except MetricUnavailable as e:
            self.log(f"note: FID/KID during training are off: {e}")
            return
        t0 = time.perf_counter()
        for domain in ("A", "B"):
            files = list_images(Path(root) / f"test{domain}")
            if eval_cfg.max_images:
                files = files[: eval_cfg.max_images]
            self.images[domain] = self._load(files)
            if len(self.images[domain]) < 2:
                self.log(f"note: FID/KID during training are off: {Path(root) / f'test{domain}'} has "
                         f"{len(self.images[domain])} readable image(s); at least 2 are needed")
                return
            self.real_features[domain] = extract_features(self.extractor, self.images[domain], device,
                                                          eval_cfg.batch_size)
        self.available = True
        self.log(f"FID/KID every {eval_cfg.every_epochs} epoch(s) on {len(self.images['A'])} testA and "
                 f"{len(self.images['B'])} testB images at {size} px (real features: "
                 f"{time.perf_counter() - t0:.1f} s)")

    def _load(self, files: list[Path]) -> list[torch.Tensor]:
        out = []
        for path in files:
            try:
                img = load_rgb(path)
            except BadImageError as e:
                self.log(f"WARNING: skipped unreadable test image {e}")
                continue
            out.append(pil_to_uint8(img.resize((self.size, self.size), Image.Resampling.BICUBIC)))
        return out

    @torch.no_grad()
    def _translate(self, generator: nn.Module, images: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i in range(0, len(images), self.cfg.batch_size):
            x = to_model_range(torch.stack(images[i : i + self.cfg.batch_size]).to(self.device))
            with autocast_context(self.device, self.cfg.amp):
                out += list(to_uint8(generator(x)).cpu())
        return out

    def evaluate(self, G_A: nn.Module, G_B: nn.Module | None) -> dict[str, float]:
        """FID / KID of both directions (``G_B`` None: A -> B only, a one-generator method such as
        CUT); empty when unavailable; the same values on every rank."""
        values = torch.full((len(KEYS) + 2,), float("nan"), dtype=torch.float64, device=self.device)
        if dist.is_main() and self.available:
            t0 = time.perf_counter()
            for slot, (domain, gen, target) in enumerate((("A", G_A, "B"), ("B", G_B, "A"))):
                if gen is None:
                    continue
                fakes = self._translate(gen, self.images[domain])
                fk = fid_kid(self.real_features[target], extract_features(self.extractor, fakes, self.device,
                                                                          self.cfg.batch_size),
                             kid_subsets=self.cfg.kid_subsets)
                values[2 * slot] = float("nan") if fk.fid is None else fk.fid
                values[2 * slot + 1] = float("nan") if fk.kid_mean is None else fk.kid_mean
            values[4], values[5] = len(self.images["A"]), len(self.images["B"])
            self.log(f"FID/KID: {time.perf_counter() - t0:.1f} s per evaluation")
        values = dist.broadcast_from_main(values)
        out = {k: float(v) for k, v in zip(KEYS, values.tolist()) if v == v}  # NaN: not computed
        if out:
            out["images_A"], out["images_B"] = float(values[4]), float(values[5])
        return out
