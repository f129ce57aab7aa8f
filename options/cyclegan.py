"""The CycleGAN training config (Zhu et al. 2017): data, networks, losses, optimiser, schedule.

Defaults are the paper's and its public reference code's; ``experiments/monet.yaml`` spells
them out. The experiment knobs of a student project report on CycleGAN for Monet (Meurisse,
Schoffeniels, Vermeylen 2020: several D steps per G step, D weight clipping, dataset subsets,
capped batches per epoch) are keys here, off by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from options.common import (
    EvalConfig,
    GeneratorTestSettings,
    OptimConfig,
    RunConfig,
    TrainConfig,
    UnalignedDataConfig,
    discriminator_output_side,
    validate_optim,
    validate_run,
    validate_train,
    validate_unaligned_data,
)
from options.config import check


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
class CycleGANConfig(RunConfig):
    method: Literal["cyclegan"] = "cyclegan"
    name: str = "cyclegan"
    data: UnalignedDataConfig = field(default_factory=UnalignedDataConfig)
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


CycleGANTestSettings = GeneratorTestSettings  # test.py's overrides: ngf=, n_blocks=
