"""A training run's config: the sections methods share, and the schema its ``method`` key picks.

A run's root config subclasses :class:`RunConfig` and adds its own sections; the optimiser,
logging and checkpoint sections and their checks are written once here, as are the sections two
methods share (two unaligned domains and FID during training: CycleGAN and CUT; one image
folder: Johnson and WCT). :func:`load_training_config` picks the schema from the method table
(:data:`methods.METHODS`) by the config's ``method`` key; a config without the key is CycleGAN's
(every config and checkpoint written before the key existed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from methods import TRAINABLE, training_schema
from options.config import ConfigError, apply_override, build, check, parse_override, read_yaml

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
MAX_SEED = 2**31 - 1  # numpy accepts < 2**32; rank offsets and derived pool seeds need headroom
MAX_NAME = 200  # a run folder name; file systems allow 255 bytes and checkpoints add no more


def check_device(device: str, key: str = "device") -> None:
    check(DEVICE_PATTERN.fullmatch(device) is not None, key,
          f"expected auto, cpu, cuda, cuda:N or mps, got {device!r}")


@dataclass
class OptimConfig:
    """Adam and an epoch-based learning-rate schedule (see :mod:`training.schedulers`)."""

    lr: float = 2e-4  # Adam's learning rate
    beta1: float = 0.5  # Adam's betas (the reference's 0.5, 0.999)
    beta2: float = 0.999
    lr_policy: Literal["linear", "step", "cosine", "plateau"] = "linear"  # stepped once per epoch
    n_epochs: int = 100  # epochs at the initial lr (linear policy); the run lasts n_epochs + n_epochs_decay
    n_epochs_decay: int = 100  # epochs of linear decay afterwards
    step_epochs: int = 50  # step policy: multiply by step_gamma every step_epochs
    step_gamma: float = 0.1
    plateau_factor: float = 0.2  # plateau: lr x factor after patience epochs without improvement
    plateau_patience: int = 5  # plateau: epochs without improvement tolerated
    plateau_threshold: float = 0.01  # plateau: relative improvement that counts
    min_lr: float = 0.0  # cosine floor and plateau floor


@dataclass
class TrainConfig:
    """Loop and speed options."""

    max_batches_per_epoch: int = 0  # 0 = the whole epoch (a student report on CycleGAN used 20)
    # autocast precision: auto = bf16 where the device has it natively (CUDA >= 8.0, a CPU with AVX-512 bf16
    # or AMX), else fp32 (utils/device.py); the run stores what auto chose. fp16 (CUDA) with a GradScaler
    amp: Literal["off", "auto", "bf16", "fp16"] = "off"
    channels_last: bool = False  # NHWC memory layout (tensor cores on GPUs)
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = "off"  # true = default
    grad_checkpoint: bool = False  # recompute residual blocks in backward (high resolution)
    max_nonfinite: int = 20  # stop after this many consecutive non-finite losses
    # Adam's fused kernel: the update and the skip of a non-finite step stay on the device, no host
    # read. off: PyTorch's default Adam (bit-identical to the public reference), one host read of the
    # finite flag per update (free on a CPU). auto: on with CUDA, off elsewhere.
    fused_adam: Literal["auto", "on", "off"] = "auto"


@dataclass
class LogConfig:
    root: str = "runs"  # the run folder is root/name
    scalars_every: int = 50  # optimisation steps
    images_every: int = 500  # TensorBoard images every N steps (0 = off)
    progress: bool = True  # a progress bar per epoch


@dataclass
class CheckpointConfig:
    every_epochs: int = 1  # a checkpoint every N epochs (0 = only at the end)
    every_steps: int = 0  # 0 = only at epoch ends
    keep: int = 3  # newest checkpoints kept on disk


@dataclass
class ImageDataConfig:
    """One folder of training images (a content set, COCO-like): Johnson networks and WCT decoders."""

    root: str = "datasets/demo/trainB"  # a folder of images (recursively); the demo's photos offline
    demo: bool = False  # generate the built-in demo dataset first (root must lie inside datasets/demo)
    load_size: int = 286  # shorter side resized to this, then a random crop
    crop_size: int = 256  # training crops (square)
    flip: bool = True  # random horizontal flip
    max_images: int = 0  # use only the first N images (0 = all)
    val_images: int = 0  # the last N images are held out for the validation loss (0 = none)
    batch_size: int = 4  # per process
    num_workers: int = 4  # DataLoader worker processes
    pin_memory: bool = True  # page-locked batches (CUDA)
    persistent_workers: bool = True  # workers kept across epochs
    prefetch_factor: int = 2  # batches prepared ahead per worker


def validate_image_data(d: ImageDataConfig, multiple: int = 4) -> None:
    check(bool(d.root), "data.root", "must name a folder of images")
    check(0 < d.load_size <= 16384, "data.load_size", f"must be in [1, 16384], got {d.load_size}")
    check(0 < d.crop_size <= d.load_size, "data.crop_size", f"must be in [1, data.load_size={d.load_size}]")
    check(d.crop_size % multiple == 0, "data.crop_size", f"must be a multiple of {multiple}, got {d.crop_size}")
    check(d.max_images >= 0, "data.max_images", "must be >= 0 (0 = all)")
    check(d.val_images >= 0, "data.val_images", "must be >= 0")
    check(1 <= d.batch_size <= 4096, "data.batch_size", "must be in [1, 4096]")
    check(d.num_workers >= 0, "data.num_workers", "must be >= 0")
    check(d.prefetch_factor >= 1, "data.prefetch_factor", "must be >= 1")


@dataclass
class UnalignedDataConfig:
    """Two unaligned image domains (CycleGAN, CUT)."""

    root: str = "datasets/demo"  # folder with trainA/ trainB/ testA/ testB/
    demo: bool = False  # generate the built-in demo dataset into `root` (a new or empty folder, or one it made)
    demo_seed: int = 0  # the demo dataset's seed
    preprocess: Literal["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "scale_shortside_and_crop",
                        "none"] = "resize_and_crop"  # the reference's options (see data/unaligned.py)
    load_size: int = 286  # images resized to this (resize_and_crop), then cropped
    crop_size: int = 256  # training crops (square)
    flip: bool = True  # random horizontal flip
    batch_size: int = 1  # per process (the paper: 1)
    num_workers: int = 4  # DataLoader worker processes
    pin_memory: bool = True  # page-locked batches (CUDA)
    persistent_workers: bool = True  # workers kept across epochs
    prefetch_factor: int = 2  # batches prepared ahead per worker
    subset_A: int = 0  # use only the first N images of trainA (0 = all); the student report used 120
    subset_B: int = 0  # ... of trainB; the student report used 750
    val_images: int = 0  # images per domain held out of train* for the validation metric (0 = train on all)


@dataclass
class EvalConfig:
    """FID and KID during training (CycleGAN, CUT): G_A(testA) against testB and G_B(testB) against testA."""

    every_epochs: int = 0  # 0 = off
    max_images: int = 0  # test images per domain (0 = all)
    batch_size: int = 16
    amp: Literal["off", "auto", "bf16", "fp16"] = "bf16"  # the generators' precision; Inception runs in fp32
    inception_weights: str = ""  # local file; "" = the torch cache (see docs/report.md, Weights)
    download: bool = False  # may fetch the Inception weights into the torch cache
    kid_subsets: int = 100


def validate_unaligned_data(d: UnalignedDataConfig, patch_side: Callable[[int], int], n_layers_D: int) -> None:
    """The ``data`` section's rules for a trainer of two unaligned domains (CycleGAN, CUT);
    ``patch_side(crop)`` is the side of the discriminator's logit map for a crop."""
    check(d.demo_seed >= 0, "data.demo_seed", "must be >= 0")
    check(0 < d.load_size <= 16384, "data.load_size", f"must be in [1, 16384], got {d.load_size}")
    check(0 < d.crop_size <= 8192, "data.crop_size", f"must be in [1, 8192], got {d.crop_size}")
    check(d.crop_size % 4 == 0, "data.crop_size",
          f"must be a multiple of 4 (the generator down-samples twice), got {d.crop_size}")
    if d.preprocess in ("resize_and_crop", "scale_width_and_crop", "scale_shortside_and_crop"):
        check(d.crop_size <= d.load_size, "data.crop_size",
              f"{d.crop_size} is larger than data.load_size {d.load_size}; the crop must fit in the resized image")
    if "crop" in d.preprocess and patch_side(d.crop_size) < 1:
        need = next(c for c in range(4, 8193, 4) if patch_side(c) >= 1)
        raise ConfigError(f"data.crop_size: {d.crop_size} px is too small for a PatchGAN with "
                          f"model.n_layers_D={n_layers_D} (its last layers would see less than 2x2 pixels); "
                          f"use data.crop_size >= {need} or fewer model.n_layers_D")
    check(1 <= d.batch_size <= 4096, "data.batch_size", "must be in [1, 4096]")
    if d.batch_size > 1 and d.preprocess in ("none", "scale_width"):
        raise ConfigError(f"data.batch_size: {d.batch_size} needs images of one size, but data.preprocess="
                          f"{d.preprocess} keeps each image's own size; use resize_and_crop, crop or "
                          f"scale_width_and_crop, or data.batch_size=1")
    check(d.num_workers >= 0, "data.num_workers", "must be >= 0")
    check(d.prefetch_factor >= 1, "data.prefetch_factor", "must be >= 1")
    check(d.subset_A >= 0, "data.subset_A", "must be >= 0 (0 = all images)")
    check(d.subset_B >= 0, "data.subset_B", "must be >= 0 (0 = all images)")
    check(d.val_images >= 0, "data.val_images", "must be >= 0")


def discriminator_output_side(crop: int, n_layers: int) -> int:
    """Side of the PatchGAN's logit map for a ``crop`` x ``crop`` input (k4 p1 convs: stride 2
    halves the side, stride 1 takes one off). 256 px and 3 layers -> 30."""
    side = crop
    for _ in range(n_layers):
        side //= 2
    return side - 2


@dataclass
class GeneratorTestSettings:
    """Inference settings of a ResNet generator (CycleGAN, CUT; ``test.py`` overrides): force the
    architecture instead of reading it."""

    ngf: int = 0  # 0 = read from the checkpoint
    n_blocks: int = 0  # 0 = read from the checkpoint

    def validate(self) -> None:
        s = self
        check(0 <= s.ngf <= 1024, "ngf", "must be in [0, 1024] (0 = from the checkpoint)")
        check(0 <= s.n_blocks <= 64, "n_blocks", "must be in [0, 64] (0 = from the checkpoint)")


@dataclass
class RunConfig:
    """Keys of every run. ``method`` picks the schema (:func:`load_training_config`)."""

    method: str = "cyclegan"  # which trainer and schema: a trainable method of the table (methods/__init__.py)
    name: str = "run"  # the run folder's name under log.root
    seed: int = 0  # rank r uses seed + r
    deterministic: bool = False  # bit-reproducible kernels (slower); resume equality relies on it
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    resume: str = ""  # run folder or checkpoint file to continue from
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.log.root) / self.name

    @property
    def total_epochs(self) -> int:
        optim = getattr(self, "optim", None)
        return optim.n_epochs + optim.n_epochs_decay if optim is not None else 1


def validate_run(cfg: RunConfig) -> None:
    check(bool(cfg.name) and "/" not in cfg.name and "\\" not in cfg.name and cfg.name not in (".", ".."), "name",
          f"must be a plain folder name, got {cfg.name!r}")
    check(len(cfg.name.encode()) <= MAX_NAME, "name", f"is {len(cfg.name.encode())} bytes long; keep it under "
          f"{MAX_NAME} (it becomes a folder name)")
    check_device(cfg.device)
    check(0 <= cfg.seed <= MAX_SEED, "seed", f"must be in [0, {MAX_SEED}], got {cfg.seed}")
    lo, ck = cfg.log, cfg.checkpoint
    check(bool(lo.root), "log.root", "must name a folder")
    check(lo.scalars_every >= 1, "log.scalars_every", "must be >= 1")
    check(lo.images_every >= 0, "log.images_every", "must be >= 0 (0 = off)")
    check(ck.every_epochs >= 0, "checkpoint.every_epochs", "must be >= 0")
    check(ck.every_steps >= 0, "checkpoint.every_steps", "must be >= 0")
    check(ck.keep >= 1, "checkpoint.keep", "must be >= 1")


def validate_optim(o: OptimConfig) -> None:
    check(o.lr > 0, "optim.lr", f"must be > 0, got {o.lr}")
    check(0 <= o.beta1 < 1, "optim.beta1", "must be in [0, 1)")
    check(0 <= o.beta2 < 1, "optim.beta2", "must be in [0, 1)")
    check(o.n_epochs >= 0, "optim.n_epochs", "must be >= 0")
    check(o.n_epochs_decay >= 0, "optim.n_epochs_decay", "must be >= 0")
    check(o.n_epochs + o.n_epochs_decay >= 1, "optim.n_epochs", "n_epochs + n_epochs_decay must be >= 1")
    check(o.step_epochs >= 1, "optim.step_epochs", "must be >= 1")
    check(0 < o.step_gamma <= 1, "optim.step_gamma", "must be in (0, 1]")
    check(0 < o.plateau_factor < 1, "optim.plateau_factor", "must be in (0, 1)")
    check(o.plateau_patience >= 0, "optim.plateau_patience", "must be >= 0")
    check(o.plateau_threshold >= 0, "optim.plateau_threshold", "must be >= 0")
    check(o.min_lr >= 0, "optim.min_lr", "must be >= 0")


def validate_train(t: TrainConfig) -> None:
    check(t.max_batches_per_epoch >= 0, "train.max_batches_per_epoch", "must be >= 0 (0 = whole epoch)")
    check(t.max_nonfinite >= 1, "train.max_nonfinite", "must be >= 1")


def _method_of(data: dict[str, Any], overrides: Iterable[str]) -> str:
    method = data.get("method", "cyclegan")
    for override in overrides:
        key, value = parse_override(override)
        if key == "method":
            method = value
    if not isinstance(method, str):
        raise ConfigError(f"method: expected a name, got {method!r}; valid: {', '.join(TRAINABLE)}")
    return method


def load_training_config(path: str | Path | None = None, overrides: Iterable[str] = (),
                         base: dict[str, Any] | None = None) -> RunConfig:
    """A YAML file (or ``base``, e.g. a checkpoint's stored config, or the defaults) + overrides
    -> the validated config of the method it names."""
    overrides = list(overrides)
    data = read_yaml(path) if path is not None else dict(base or {})
    schema = training_schema(_method_of(data, overrides))
    for override in overrides:
        apply_override(data, override, schema)
    cfg = build(schema, data)
    cfg.validate()
    return cfg


def refused_resume_changes(method: str, changed: Iterable[str]) -> list[str]:
    """The keys among ``changed`` that a resumed run of ``method`` may not change."""
    frozen = training_schema(method).RESUME_FROZEN
    return [k for k in changed if any(k == f or (f.endswith(".") and k.startswith(f)) for f in frozen)]
