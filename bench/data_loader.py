"""Section ``data``: the CycleGAN training loader's pairs/s against what the training step consumes.

The loader is the trainer's own (``trainer.loader`` over ``trainer.sampler``, built from
``data.*``: workers, pinned memory, persistent workers, prefetch) on 256 px JPEGs, monet2photo's
format, made from scikit-image's bundled photos. Each batch is then moved to the device and
scaled as the training step does (``trainer.to_device``). Worker start-up is paid once per run
and not counted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.tables import print_table
from bench.timing import sync
from bench.workspace import Workspace


@dataclass
class DataSpec:
    crop: int = 256
    batch: int = 1
    workers: list[int] = field(default_factory=lambda: [0, 1, 2])
    images: int = 64  # per training folder
    seconds: float = 5.0  # timed per worker count


def default_workers(device: torch.device) -> list[int]:
    cpus = os.cpu_count() or 1
    counts = {0, 1, min(2, cpus)} | ({min(4, cpus), min(8, cpus)} if device.type == "cuda" else set())
    return sorted(counts)


def make_jpeg_dataset(root: Path, n: int, size: int = 256) -> Path:
    """monet2photo-like folders: ``n`` size x size JPEGs (quality 90) per training domain, two per test one."""
    from data.demo import PHOTO_SOURCES, source_photo

    if (root / "trainB").is_dir():
        return root
    rng = np.random.default_rng(0)
    photos = [source_photo(name) for name in PHOTO_SOURCES[:4]]
    for sub in ("trainA", "trainB", "testA", "testB"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n if sub.startswith("train") else 2):
            src = photos[i % len(photos)]
            h, w = src.shape[:2]
            s = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
            top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            crop = Image.fromarray(src[top : top + s, left : left + s]).resize((size, size), Image.Resampling.BICUBIC)
            crop.save(root / sub / f"{i:04d}.jpg", quality=90)
    return root


def loader_rate(trainer: Any, seconds: float) -> float:
    """Pairs per second the trainer's loader delivers, moved to the device as the step does."""
    epoch = 0
    trainer.sampler.set_epoch(epoch)
    it = iter(trainer.loader)
    next(it)  # worker start-up: paid once per run
    seen, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        try:
            batch = next(it)
        except StopIteration:
            epoch += 1
            trainer.sampler.set_epoch(epoch)
            it = iter(trainer.loader)
            continue
        trainer.to_device(batch["A"])
        trainer.to_device(batch["B"])
        seen += batch["A"].shape[0]
    sync(trainer.device)
    rate = seen / (time.perf_counter() - start)
    del it
    return rate


def run(spec: DataSpec, ws: Workspace, step_images_per_s: float | None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """``step_images_per_s``: the fastest training step of this run (the ``train`` section), if measured."""
    root = make_jpeg_dataset(ws.root / "jpeg256", spec.images)
    load = max(spec.crop, round(spec.crop * 286 / 256) // 2 * 2)  # the paper's 286 -> 256, scaled
    rows = []
    for workers in spec.workers:
        cfg = ws.cyclegan_config(spec.crop, spec.batch, ngf=8, ndf=8, n_blocks=1, extra=[
            f"data.root={root}", f"data.load_size={load}", f"data.num_workers={workers}"])
        trainer = ws.trainer(cfg)
        try:
            rate = loader_rate(trainer, spec.seconds)
        finally:
            trainer.close()
        row = {"workers": workers, "pairs_per_s": rate,
               "x_step_need": rate / step_images_per_s if step_images_per_s else None}
        rows.append(row)
        log(f"  data {workers} workers: {rate:.1f} pairs/s")
    result = {"crop": spec.crop, "load_size": load, "batch": spec.batch, "rows": rows,
              "fastest_step_images_per_s": step_images_per_s}
    need = f"{step_images_per_s:.2f}" if step_images_per_s else "n/a (train section not run)"
    print_table(f"data loader: 256 px JPEGs -> resize {load} -> random crop {spec.crop}, batch {spec.batch}, uint8 "
                f"until the device; the fastest training step consumes {need} pairs/s", rows,
                [("workers", "workers", ""), ("pairs_per_s", "pairs/s", ".1f"),
                 ("x_step_need", "x the step's need", ".1f")])
    return result
