"""Universal style transfer (Li et al. 2017, WCT) and AdaIN (Huang & Belongie 2017): the decoder
training config (``train.py --config experiments/wct_decoders.yaml``) and the inference settings
``test.py`` takes as trailing ``key=value`` arguments.

Training (Li et al. section 3.1): a frozen VGG-19 encoder truncated at each of ``model.levels``
and one decoder per level trained to invert it, pixel + ``loss.feature_weight`` x feature
reconstruction. Defaults follow the public reference trainers (eridgd/WCT-TF, which follows
Huang & Belongie's AdaIN trainer): shorter side 512, random 256 crops of MS-COCO, batch 8,
Adam lr 1e-4, feature weight 1, about 160k iterations (8 + 8 epochs of COCO train2014 here,
the last 8 with a linear lr decay instead of the references' inverse-time decay).

The encoder's identity is part of the run: the trainer writes the weights it actually loaded
into ``vgg.resolved`` (``imagenet``, ``random`` or a file path) before the config is stored, and
inference and resume rebuild exactly that encoder (:func:`encoder_weights`), never a fallback.

No torch imports here (``--help`` and ``--dry-run`` stay fast).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from options.common import (
    ImageDataConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    validate_image_data,
    validate_optim,
    validate_run,
    validate_train,
)
from options.config import check

LEVELS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
"""The encoder levels, fine to coarse (the same as :data:`models.wct.LEVELS`; options import no models)."""
CROP_MULTIPLE = 16  # relu5_1 is 1/16 of the image: every level's decoder must give back the crop's size


@dataclass
class EncoderConfig:
    """The frozen VGG-19 encoder, max pooling as trained. ``arch`` says which VGG-19 the decoders
    invert: torchvision's (:mod:`models.vgg`: zero padding, ImageNet mean / std inside) or the
    normalised one of Li et al.'s and Huang & Belongie's releases (:mod:`models.normalised_vgg`:
    a 1x1 input conv, reflection padding; ``weights`` is then its file, ``vgg_normalised.pth`` or
    a ``.t7``). Decoders trained on one are refused with the other at test time."""

    arch: Literal["torchvision", "normalised"] = "torchvision"
    weights: str = "imagenet"  # imagenet (torch cache / download) | random (tests, offline demo) | a .pth path
    preprocess: Literal["auto", "torchvision", "caffe"] = "auto"  # auto: caffe for vgg19-d01eb7cb / *caffe* files
    download: bool = True  # may fetch the imagenet file into the torch cache
    random_if_unavailable: bool = False  # offline demo: a random-weight VGG if imagenet is missing (named so)
    resolved: str = ""  # written by the trainer: the weights it loaded (imagenet | random | path); do not set


@dataclass
class WCTModelConfig:
    levels: list[str] = field(default_factory=lambda: list(LEVELS))  # decoders to train (any of relu1_1 ... relu5_1)
    width: float = 1.0  # inner channel multiplier (1 = Li et al.'s decoders; 0.25 for a quick CPU demo)


@dataclass
class WCTLossConfig:
    feature_weight: float = 1.0  # lambda of Li et al. eq. 1: pixel + lambda * feature reconstruction


@dataclass
class WCTOptimConfig(OptimConfig):
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    n_epochs: int = 8
    n_epochs_decay: int = 8


def _data_defaults() -> ImageDataConfig:
    return ImageDataConfig(load_size=512, crop_size=256, batch_size=8)


@dataclass
class WCTConfig(RunConfig):
    method: Literal["wct"] = "wct"
    name: str = "wct"
    data: ImageDataConfig = field(default_factory=_data_defaults)
    vgg: EncoderConfig = field(default_factory=EncoderConfig)
    model: WCTModelConfig = field(default_factory=WCTModelConfig)
    loss: WCTLossConfig = field(default_factory=WCTLossConfig)
    optim: WCTOptimConfig = field(default_factory=WCTOptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # Key prefixes a resumed run may not change: they would not describe the checkpoint's networks or state.
    RESUME_FROZEN: ClassVar[tuple[str, ...]] = ("method", "model.", "vgg.arch", "vgg.weights", "vgg.preprocess",
                                                "vgg.resolved")

    def validate(self) -> None:
        """Ranges and cross-key rules; raises :class:`options.config.ConfigError` naming the key."""
        cfg = self
        validate_run(cfg)
        d, v, m = cfg.data, cfg.vgg, cfg.model
        validate_image_data(d, CROP_MULTIPLE)
        check(bool(v.weights), "vgg.weights", "must be imagenet, random or a path to a VGG-19 .pth file")
        check(v.resolved in ("", "imagenet", "random") or v.resolved == v.weights, "vgg.resolved",
              "is written by the trainer (the weights it loaded); leave it out of configs")
        if v.arch == "normalised":
            check(v.weights not in ("imagenet", "random"), "vgg.weights",
                  "vgg.arch=normalised reads the release's normalised VGG-19 file: give its path "
                  "(vgg_normalised.pth, or vgg_normalised_conv5_1.t7)")
        _check_levels(m.levels, "model.levels", allow_empty=False)
        check(0 < m.width <= 4, "model.width", f"must be in (0, 4], got {m.width}")
        check(cfg.loss.feature_weight >= 0, "loss.feature_weight", f"must be >= 0, got {cfg.loss.feature_weight}")
        validate_optim(cfg.optim)
        if cfg.optim.lr_policy == "plateau":
            check(d.val_images > 0, "optim.lr_policy",
                  "plateau steps on the held-out pixel reconstruction loss, so data.val_images must be > 0")
        validate_train(cfg.train)
        check(not cfg.train.grad_checkpoint, "train.grad_checkpoint",
              "is for the CycleGAN generator's residual blocks; decoders have none (set it false)")


def _check_levels(levels: list[str], key: str, allow_empty: bool) -> None:
    bad = [name for name in levels if name not in LEVELS]
    check(not bad, key, f"unknown level(s) {', '.join(bad)}; valid: {', '.join(LEVELS)}")
    check(len(set(levels)) == len(levels), key, f"lists a level twice: {levels}")
    check(allow_empty or bool(levels), key, f"needs at least one level; valid: {', '.join(LEVELS)}")


def encoder_weights(v: EncoderConfig) -> tuple[str, bool]:
    """(weights to load, whether a random fallback is allowed) for a run's encoder.

    A run that has trained records what it loaded in ``vgg.resolved``: that and nothing else is
    rebuilt (a run trained on the random fallback gets the same seeded random VGG; one trained on
    ImageNet weights fails loudly where they are missing). A fresh run loads what it asks for.
    """
    if v.resolved:
        return v.resolved, False
    return v.weights, v.random_if_unavailable


# ---------------------------------------------------------------------------------------------
# Inference settings (test.py key=value, or a report entry's settings / config)


@dataclass
class WCTSettings:
    """``test.py --checkpoint runs/wct ... levels=[relu4_1,relu3_1] transform=whiten``."""

    levels: list[str] = field(default_factory=list)  # empty = every level the run has decoders for
    transform: Literal["wct", "whiten"] = "wct"  # whiten: whitening only (removes style; no style image needed)
    eps: float = 1e-5  # added to the content covariance's eigenvalues before whitening
    rank_tol: float = 1e-5  # eigenvalues <= rank_tol * largest are dropped (relative rank cut)
    style_max_size: int = 512  # a style image's longer side is scaled down to this if above (0 = never)
    encoder: str = ""  # the encoder's weights file; "" = the one the decoders were trained on (run or release)

    def validate(self) -> None:
        s = self
        _check_levels(s.levels, "levels", allow_empty=True)
        check(s.eps >= 0, "eps", f"must be >= 0, got {s.eps}")
        check(0 <= s.rank_tol < 1, "rank_tol", f"must be in [0, 1), got {s.rank_tol}")
        check(0 <= s.style_max_size <= 8192, "style_max_size", f"must be in [0, 8192] (0 = never scaled), "
              f"got {s.style_max_size}")


@dataclass
class AdaINSettings:
    """``test.py --method adain ... eps=1e-5 style_max_size=512``."""

    eps: float = 1e-5  # added to the content variance (Huang & Belongie's value)
    style_max_size: int = 512  # a style image's longer side is scaled down to this if above (0 = never)
    encoder: str = ""  # the encoder's weights file; "" = the one the decoders were trained on (run or release)

    def validate(self) -> None:
        s = self
        check(s.eps >= 0, "eps", f"must be >= 0, got {s.eps}")
        check(0 <= s.style_max_size <= 8192, "style_max_size", f"must be in [0, 8192] (0 = never scaled), "
              f"got {s.style_max_size}")
