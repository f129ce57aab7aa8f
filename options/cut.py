"""The CUT / FastCUT training config (Park, Efros, Zhang, Zhu, ECCV 2020): data, networks, the
PatchNCE and GAN losses, optimiser, schedule.

Defaults are the authors' (taesungp/contrastive-unpaired-translation: ``options/base_options.py``,
``options/train_options.py``, ``models/cut_model.py``). ``mode`` is their ``--CUT_mode``: it fills
the keys a config leaves unset, exactly as their ``parser.set_defaults`` does, and a key that is
set always wins:

==========================  ========  ==========
key                         ``cut``   ``fastcut``
==========================  ========  ==========
``loss.lambda_NCE``         1         10
``loss.nce_idt``            true      false
``loss.flip_equivariance``  false     true
``optim.n_epochs``          200       150
``optim.n_epochs_decay``    200       50
==========================  ========  ==========

The resolved values are what the run folder's ``config.yaml``, every checkpoint and ``--dry-run``
hold. Data and evaluation sections are CycleGAN's (:mod:`options.cyclegan`): the same unaligned
trainA / trainB folders and preprocessing; no image pool (the authors set ``pool_size 0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

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
from options.config import ConfigError, check

Mode = Literal["cut", "fastcut"]

# What --CUT_mode sets (models/cut_model.py, modify_commandline_options); None in a section below = "from the mode".
MODE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "cut": {"loss": {"lambda_NCE": 1.0, "nce_idt": True, "flip_equivariance": False},
            "optim": {"n_epochs": 200, "n_epochs_decay": 200}},
    "fastcut": {"loss": {"lambda_NCE": 10.0, "nce_idt": False, "flip_equivariance": True},
                "optim": {"n_epochs": 150, "n_epochs_decay": 50}},
}


@dataclass
class CUTModelConfig:
    input_nc: int = 3  # channels of domain A images
    output_nc: int = 3  # channels of domain B images
    ngf: int = 64  # generator width (first layer's filters)
    ndf: int = 64  # discriminator width
    n_blocks: int = 9  # residual blocks of the generator (the authors' resnet_9blocks)
    n_layers_D: int = 3  # PatchGAN depth: 3 = the authors' basic 70x70-style PatchGAN
    norm: Literal["instance", "batch", "none"] = "instance"  # G and D (the authors' normG / normD); none keeps biases
    antialias: bool = True  # blur-pooled down-sampling in G and D (false = the authors' --no_antialias)
    antialias_up: bool = True  # blur up-sampling + conv in G (false = --no_antialias_up: transposed convs)
    dropout: bool = False  # dropout 0.5 in the residual blocks (the authors' --no_dropout default: off)
    init: Literal["normal", "xavier", "kaiming", "orthogonal"] = "xavier"  # G, D and F weights; biases 0
    init_gain: float = 0.02  # gain of the xavier / normal / orthogonal init
    netF_nc: int = 256  # units of netF's 2-layer MLP head (the authors' --netF_nc)


@dataclass
class CUTLossConfig:
    gan_mode: Literal["lsgan", "vanilla"] = "lsgan"  # LSGAN (MSE to 1 / 0) or vanilla (BCE with logits)
    lambda_GAN: float = 1.0  # weight of GAN(G(X))
    lambda_NCE: float = None  # weight of NCE(G(X), X); unset (null here): from mode, cut 1, fastcut 10
    nce_idt: bool = None  # add NCE(G(Y), Y), averaged with NCE(G(X), X); unset: from mode, cut true, fastcut false
    nce_layers: list[int] = field(default_factory=lambda: [0, 4, 8, 12, 16])  # generator layers compared (encoder)
    nce_T: float = 0.07  # temperature tau of PatchNCE
    num_patches: int = 256  # locations sampled per layer
    nce_includes_all_negatives_from_minibatch: bool = False  # negatives from every image of the batch (single-image)
    flip_equivariance: bool = None  # x-flip G's input at random, flip its features back; unset: fastcut only


@dataclass
class CUTOptimConfig(OptimConfig):
    n_epochs: int = None  # epochs at the initial lr; unset: from mode, cut 200, fastcut 150
    n_epochs_decay: int = None  # epochs of linear decay afterwards; unset: from mode, cut 200, fastcut 50
    plateau_metric: Literal["nce", "fid", "kid"] = "nce"  # nce: mean NCE(G(a), a) on data.val_images held-out A images


@dataclass
class CUTTrainConfig(TrainConfig):
    pool_size: int = 0  # CUT keeps no history of generated images (the authors' pool_size 0); must stay 0


@dataclass
class CUTEvalConfig(EvalConfig):
    """FID and KID during training: G(testA) against testB (CUT has one generator)."""


@dataclass
class CUTConfig(RunConfig):
    method: Literal["cut"] = "cut"
    mode: Mode = "cut"  # cut or fastcut: the authors' --CUT_mode, filling the loss / epoch keys left unset
    name: str = "cut"
    direction: Literal["AtoB", "BtoA"] = "AtoB"  # the authors' --direction: BtoA trains G: B -> A (trainB is its input)
    data: UnalignedDataConfig = field(default_factory=UnalignedDataConfig)
    model: CUTModelConfig = field(default_factory=CUTModelConfig)
    loss: CUTLossConfig = field(default_factory=CUTLossConfig)
    optim: CUTOptimConfig = field(default_factory=CUTOptimConfig)
    train: CUTTrainConfig = field(default_factory=CUTTrainConfig)
    eval: CUTEvalConfig = field(default_factory=CUTEvalConfig)

    # Key prefixes a resumed run may not change: they would not describe the checkpoint's networks or state
    # (nce_layers sets netF's MLPs; the stored config holds the values a mode filled in, so a new mode means nothing).
    RESUME_FROZEN: ClassVar[tuple[str, ...]] = ("method", "mode", "direction", "model.", "loss.nce_layers",
                                                "train.pool_size")

    def __post_init__(self) -> None:
        """Fill the keys left unset (None: no YAML file or override can give None) from ``mode``."""
        preset = MODE_DEFAULTS.get(self.mode, MODE_DEFAULTS["cut"])
        for section, values in preset.items():
            node = getattr(self, section)
            for key, value in values.items():
                if getattr(node, key) is None:
                    setattr(node, key, value)

    def validate(self) -> None:
        """Ranges and cross-key rules; raises :class:`ConfigError` naming the key."""
        validate_run(self)
        d, m, lo, o, t, e = self.data, self.model, self.loss, self.optim, self.train, self.eval
        validate_unaligned_data(d, lambda crop: cut_discriminator_output_side(crop, m.n_layers_D, m.antialias),
                                m.n_layers_D)

        for key, top in (("input_nc", 16), ("output_nc", 16), ("ngf", 1024), ("ndf", 1024), ("n_layers_D", 8),
                         ("netF_nc", 4096)):
            value = getattr(m, key)
            check(1 <= value <= top, f"model.{key}", f"must be in [1, {top}], got {value}")
        check(0 <= m.n_blocks <= 64, "model.n_blocks", f"must be in [0, 64], got {m.n_blocks}")
        check(m.init_gain > 0, "model.init_gain", "must be > 0")

        check(lo.lambda_GAN >= 0, "loss.lambda_GAN", "must be >= 0")
        check(lo.lambda_NCE >= 0, "loss.lambda_NCE", "must be >= 0")
        check(lo.nce_T > 0, "loss.nce_T", f"must be > 0, got {lo.nce_T}")
        check(1 <= lo.num_patches <= 65536, "loss.num_patches", f"must be in [1, 65536], got {lo.num_patches}")
        depth = encoder_depth(m.n_blocks, m.antialias)
        layers = lo.nce_layers
        check(bool(layers), "loss.nce_layers", "must name at least one generator layer, e.g. [0, 4, 8, 12, 16]")
        check(all(i >= 0 for i in layers), "loss.nce_layers", f"indices must be >= 0, got {layers}")
        check(all(b > a for a, b in zip(layers, layers[1:])), "loss.nce_layers",
              f"must be strictly increasing (the encoder is run up to the last one), got {layers}")
        if layers[-1] >= depth:
            fit = [i for i in layers if i < depth]
            raise ConfigError(f"loss.nce_layers: layer {layers[-1]} is beyond the generator's encoder (layers 0 .. "
                              f"{depth - 1} with model.n_blocks={m.n_blocks}, model.antialias="
                              f"{str(m.antialias).lower()}); use indices below {depth}"
                              + (f", e.g. {fit}" if fit else ""))
        if lo.nce_idt:
            check(m.input_nc == m.output_nc, "loss.nce_idt",
                  "the identity term NCE(G(Y), Y) feeds domain B images to G, so it needs model.input_nc == "
                  "model.output_nc; set loss.nce_idt=false")

        validate_optim(o)
        if o.lr_policy == "plateau":
            if o.plateau_metric == "nce":
                check(d.val_images > 0, "optim.lr_policy",
                      "plateau on nce steps on held-out images, so data.val_images must be > 0 "
                      "(or set optim.plateau_metric=fid or kid with eval.every_epochs=1)")
            else:
                check(e.every_epochs == 1, "optim.plateau_metric",
                      f"{o.plateau_metric} is computed every eval.every_epochs epochs; plateau needs it every epoch "
                      f"(eval.every_epochs=1)")

        validate_train(t)
        check(t.pool_size == 0, "train.pool_size",
              f"must be 0: CUT trains D on the current fakes only (the authors' pool_size 0), got {t.pool_size}")

        check(e.every_epochs >= 0, "eval.every_epochs", "must be >= 0 (0 = off)")
        check(e.max_images >= 0, "eval.max_images", "must be >= 0 (0 = all)")
        check(e.batch_size >= 1, "eval.batch_size", "must be >= 1")
        check(e.kid_subsets >= 1, "eval.kid_subsets", "must be >= 1")


def encoder_depth(n_blocks: int, antialias: bool = True) -> int:
    """Layers of the CUT generator's encoder (what ``loss.nce_layers`` may index): c7s1 block (4),
    two down-samplings (4 layers each with blur pooling, 3 without), the residual blocks.
    9 blocks, anti-aliased: 21 (indices 0 .. 20)."""
    return 4 + (4 if antialias else 3) * 2 + n_blocks


def cut_discriminator_output_side(crop: int, n_layers: int, antialias: bool = True) -> int:
    """Side of the CUT PatchGAN's logit map for a ``crop`` x ``crop`` input. Blur-pooled: each of the
    ``n_layers`` k4 s1 p1 convs takes one pixel off and its Downsample halves (rounding up); then two
    k4 s1 convs take one each. 256 px, 3 layers -> 30, as CycleGAN's."""
    if not antialias:
        return discriminator_output_side(crop, n_layers)
    side = crop
    for _ in range(n_layers):
        side = -(-(side - 1) // 2)
    return side - 2


CUTTestSettings = GeneratorTestSettings  # test.py's overrides: ngf=, n_blocks=
