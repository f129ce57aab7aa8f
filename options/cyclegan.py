"""The CycleGAN training config (Zhu et al. 2017): data, networks, losses, optimiser, schedule.

Defaults are the paper's and its public reference code's; ``experiments/monet.yaml`` spells
them out. The experiment knobs of a student project report on CycleGAN for Monet (Meurisse,
Schoffeniels, Vermeylen 2020: several D steps per G step, D weight clipping, dataset subsets,
capped batches per epoch) are keys here, off by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from options.common import (
    OptimConfig,
    RunConfig,
    TrainConfig,
    validate_optim,
    validate_run,
    validate_train,
)
from options.config import ConfigError, check


@dataclass
class DataConfig:
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
class ModelConfig:
    input_nc: int = 3  # channels of domain A images
    output_nc: int = 3  # channels of domain B images
    ngf: int = 64  # generator width (first layer's filters)
    ndf: int = 64  # discriminator width
    n_blocks: int = 9  # residual blocks of the generator (9 at 256 px, 6 at 128 px)
    n_layers_D: int = 3  # PatchGAN depth: 3 = 70x70 patches
    norm: Literal["instance", "batch", "none"] = "instance"  # instance norm, no affine, no running stats
    init: Literal["normal", "xavier", "kaiming", "orthogonal"] = "normal"  # conv weight init; biases 0
    init_gain: float = 0.02  # std of the normal init (gain of the others)
    dropout: bool = False  # dropout 0.5 in the residual blocks (off for CycleGAN)
    upsample: Literal["transpose", "resize_conv"] = "transpose"  # resize_conv: nearest x2 + conv, no checkerboards


@dataclass
class LossConfig:
    gan_mode: Literal["lsgan", "vanilla"] = "lsgan"  # LSGAN (MSE to 1 / 0) or vanilla (BCE with logits)
    lambda_A: float = 10.0  # cycle A -> B -> A
    lambda_B: float = 10.0  # cycle B -> A -> B
    lambda_identity: float = 0.5  # relative to lambda_A / lambda_B, as in the reference


@dataclass
class CycleGANOptimConfig(OptimConfig):
    lr_D: float = 0.0  # discriminators; 0 = same as lr
    plateau_metric: Literal["cycle_l1", "fid", "kid"] = "cycle_l1"  # fid / kid: mean of both directions


@dataclass
class CycleGANTrainConfig(TrainConfig):
    pool_size: int = 50  # generated images kept per domain for D (0 = off)
    d_steps_per_g: int = 1  # discriminator updates per generator update (the student report tried 5)
    d_clip: float = 0.0  # clamp D weights to [-c, c] after each D step (0 = off; the student report: 0.01)


@dataclass
class EvalConfig:
    """FID and KID during training: G_A(testA) against testB and G_B(testB) against testA."""

    every_epochs: int = 0  # 0 = off
    max_images: int = 0  # test images per domain (0 = all)
    batch_size: int = 16
    amp: Literal["off", "auto", "bf16", "fp16"] = "bf16"  # the generators' precision; Inception runs in fp32
    inception_weights: str = ""  # local file; "" = the torch cache (see docs/report.md, Weights)
    download: bool = False  # may fetch the Inception weights into the torch cache
    kid_subsets: int = 100


@dataclass
class CycleGANConfig(RunConfig):
    method: Literal["cyclegan"] = "cyclegan"
    name: str = "cyclegan"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: CycleGANOptimConfig = field(default_factory=CycleGANOptimConfig)
    train: CycleGANTrainConfig = field(default_factory=CycleGANTrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # Key prefixes a resumed run may not change: they would not describe the checkpoint's networks or state.
    RESUME_FROZEN: ClassVar[tuple[str, ...]] = ("method", "model.", "train.pool_size")

    def validate(self) -> None:
        """Ranges and cross-key rules; raises :class:`ConfigError` naming the key."""
        cfg = self
        validate_run(cfg)
        d, m, o, t, e = cfg.data, cfg.model, cfg.optim, cfg.train, cfg.eval
        validate_unaligned_data(d, lambda crop: discriminator_output_side(crop, m.n_layers_D), m.n_layers_D)

        for key, top in (("input_nc", 16), ("output_nc", 16), ("ngf", 1024), ("ndf", 1024), ("n_layers_D", 8)):
            value = getattr(m, key)
            check(1 <= value <= top, f"model.{key}", f"must be in [1, {top}], got {value}")
        check(0 <= m.n_blocks <= 64, "model.n_blocks", f"must be in [0, 64], got {m.n_blocks}")
        check(m.init_gain > 0, "model.init_gain", "must be > 0")

        for key in ("lambda_A", "lambda_B", "lambda_identity"):
            check(getattr(cfg.loss, key) >= 0, f"loss.{key}", "must be >= 0")
        if cfg.loss.lambda_identity > 0:
            check(m.input_nc == m.output_nc, "loss.lambda_identity",
                  "identity loss needs model.input_nc == model.output_nc; set loss.lambda_identity=0")

        validate_optim(o)
        check(o.lr_D >= 0, "optim.lr_D", f"must be >= 0 (0 = same as optim.lr), got {o.lr_D}")
        if o.lr_policy == "plateau":
            if o.plateau_metric == "cycle_l1":
                check(d.val_images > 0, "optim.lr_policy",
                      "plateau on cycle_l1 steps on held-out images, so data.val_images must be > 0 "
                      "(or set optim.plateau_metric=fid or kid with eval.every_epochs=1)")
            else:
                check(e.every_epochs == 1, "optim.plateau_metric",
                      f"{o.plateau_metric} is computed every eval.every_epochs epochs; plateau needs it every epoch "
                      f"(eval.every_epochs=1)")

        validate_train(t)
        check(0 <= t.pool_size <= 10000, "train.pool_size", "must be in [0, 10000]")
        check(t.d_steps_per_g >= 1, "train.d_steps_per_g", "must be >= 1")
        check(t.d_clip >= 0, "train.d_clip", "must be >= 0 (0 = off)")

        check(e.every_epochs >= 0, "eval.every_epochs", "must be >= 0 (0 = off)")
        check(e.max_images >= 0, "eval.max_images", "must be >= 0 (0 = all)")
        check(e.batch_size >= 1, "eval.batch_size", "must be >= 1")
        check(e.kid_subsets >= 1, "eval.kid_subsets", "must be >= 1")


def validate_unaligned_data(d: DataConfig, patch_side: Callable[[int], int], n_layers_D: int) -> None:
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
class CycleGANTestSettings:
    """Inference settings (``test.py`` overrides): force the architecture instead of reading it."""

    ngf: int = 0  # 0 = read from the checkpoint
    n_blocks: int = 0  # 0 = read from the checkpoint

    def validate(self) -> None:
        s = self
        check(0 <= s.ngf <= 1024, "ngf", "must be in [0, 1024] (0 = from the checkpoint)")
        check(0 <= s.n_blocks <= 64, "n_blocks", "must be in [0, 64] (0 = from the checkpoint)")
