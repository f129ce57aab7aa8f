"""The Johnson et al. 2016 training config (fast style transfer): content images, style image(s),
the frozen VGG loss network, the loss, the transformation network and Adam.

Defaults are the paper's (Johnson, Alahi, Fei-Fei 2016, "Perceptual Losses for Real-Time Style
Transfer and Super-Resolution") and PyTorch's ``examples/fast_neural_style``: VGG-16, content
``relu2_2``, style ``relu1_2 relu2_2 relu3_3 relu4_3``, 256 px crops, batch 4, Adam lr 1e-3,
2 epochs at a constant lr. ``experiments/johnson_monet.yaml`` spells them out.

Loss weights depend on the VGG weights' input scaling (see :mod:`models.vgg`); Gram matrices are
normalised by C*H*W as in the Gatys module and style layers are averaged, not summed:

===========================  ==============  ==============  ====================================
vgg.weights                  content_weight  style_weight    note
===========================  ==============  ==============  ====================================
imagenet (torchvision)       1e5             4e10            the examples' 1e5 / 1e10 over 4 layers
random (tests, offline demo) 1e5             4e10            pictures are not art; the loop is real
===========================  ==============  ==============  ====================================

Styles (``style``): one image; several images blended into one target (weighted Gram matrices,
the lecture's multi-style loss; ``style.weights``); or ``style.multi: true``: one network holding
every image as its own style by conditional instance norm (Dumoulin et al. 2017), blended at test
time with ``test.py --style-weights``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
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
from options.config import ConfigError, check

JOHNSON_CONTENT_LAYERS = ["relu2_2"]
JOHNSON_STYLE_LAYERS = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
_VGG_BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}  # convolutions per block (configs D and E)
DEMO_FOLDERS = ("trainA", "trainB", "testA", "testB")


def vgg_layer_names(arch: str) -> list[str]:
    """conv1_1, relu1_1, ..., pool5 of VGG-16 or VGG-19 (the names of :mod:`models.vgg`, which
    this module may not import; a test keeps the two equal)."""
    names = []
    for block, convs in enumerate(_VGG_BLOCKS[arch], start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


@dataclass
class StyleConfig:
    images: list[str] = field(default_factory=list)  # style image(s); at least one
    weights: list[float] = field(default_factory=list)  # one per image: ONE blended target (empty = equal)
    multi: bool = False  # conditional instance norm: each image is its own style of one network
    size: int = 512  # longer side the style images are resized to (0 = their own size, as the examples)


@dataclass
class JohnsonVGGConfig:
    arch: Literal["vgg16", "vgg19"] = "vgg16"  # vgg16: the paper's loss network; vgg19: the Gatys one
    weights: str = "imagenet"  # imagenet (torch cache / download) | random (tests) | path to a .pth file
    preprocess: Literal["auto", "torchvision", "caffe"] = "auto"  # auto: caffe for *caffe* / vgg16-00b39a1b files
    pooling: Literal["max", "avg"] = "max"
    download: bool = True  # may fetch the imagenet file into the torch cache
    random_if_unavailable: bool = False  # offline demo only: random weights, labelled as such, if imagenet is missing


@dataclass
class JohnsonLossConfig:
    content_weight: float = 1e5
    style_weight: float = 4e10  # the examples' 1e10 summed over 4 layers = 4e10 averaged (table above)
    tv_weight: float = 0.0  # the paper cross-validated 1e-6 .. 1e-4 on its own scaling; 0 as the examples
    content_layers: list[str] = field(default_factory=lambda: list(JOHNSON_CONTENT_LAYERS))
    style_layers: list[str] = field(default_factory=lambda: list(JOHNSON_STYLE_LAYERS))


@dataclass
class JohnsonModelConfig:
    channels: int = 32  # c9s1-32, d64, d128, R128 x n_blocks, u64, u32, c9s1-3
    n_blocks: int = 5
    upsample: Literal["nearest", "transpose"] = "nearest"  # resize-conv (the examples) or transposed conv (paper)
    output: Literal["tanh", "clamp"] = "tanh"  # scaled tanh (paper) or the raw output clamped at test time


@dataclass
class JohnsonOptimConfig(OptimConfig):
    lr: float = 1e-3
    beta1: float = 0.9
    n_epochs: int = 2  # two epochs of COCO's 80k images, as the paper
    n_epochs_decay: int = 0  # constant lr


@dataclass
class JohnsonConfig(RunConfig):
    method: Literal["johnson"] = "johnson"
    name: str = "johnson"
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    style: StyleConfig = field(default_factory=StyleConfig)
    vgg: JohnsonVGGConfig = field(default_factory=JohnsonVGGConfig)
    loss: JohnsonLossConfig = field(default_factory=JohnsonLossConfig)
    model: JohnsonModelConfig = field(default_factory=JohnsonModelConfig)
    optim: JohnsonOptimConfig = field(default_factory=JohnsonOptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def n_styles(self) -> int:
        """Styles the network holds: one per image with ``style.multi``, else one (maybe blended)."""
        return len(self.style.images) if self.style.multi else 1

    # Key prefixes a resumed run may not change: the network's shape, its styles and the loss network
    # that defines their targets (a new style is a new run).
    RESUME_FROZEN: ClassVar[tuple[str, ...]] = ("method", "model.", "style.", "vgg.")

    def validate(self) -> None:
        """Ranges and cross-key rules; raises :class:`ConfigError` naming the key."""
        cfg = self
        validate_run(cfg)
        d, s, v, lo, m = cfg.data, cfg.style, cfg.vgg, cfg.loss, cfg.model
        validate_image_data(d)
        if d.demo:
            check(Path(d.root).name in DEMO_FOLDERS, "data.root",
                  f"with data.demo=true it must be a folder of the demo dataset (e.g. datasets/demo/trainB, the demo's "
                  f"photos), got {d.root!r}")

        check(bool(s.images), "style.images", "list at least one style image, e.g. style.images=[painting.jpg]")
        if s.weights:
            check(not s.multi, "style.weights", "blends the images into ONE style target; with style.multi=true each "
                  "image is its own style (blend those at test time: test.py --style-weights)")
            check(len(s.weights) == len(s.images), "style.weights",
                  f"{len(s.weights)} weights for {len(s.images)} style image(s)")
            check(all(w >= 0 for w in s.weights) and sum(s.weights) > 0, "style.weights",
                  "weights must be >= 0 with a positive sum")
        if s.multi:
            check(2 <= len(s.images) <= 256, "style.multi",
                  f"needs 2 to 256 style.images (one style each), got {len(s.images)}")
        check(s.size == 0 or 16 <= s.size <= 8192, "style.size", f"must be 0 (own size) or in [16, 8192], got {s.size}")

        check(v.weights != "", "vgg.weights", "must be imagenet, random or a path to a .pth file")
        names = vgg_layer_names(v.arch)
        for key, layers in (("loss.content_layers", lo.content_layers), ("loss.style_layers", lo.style_layers)):
            check(bool(layers), key, "needs at least one layer")
            bad = [n for n in layers if n not in names]
            if bad:
                raise ConfigError(f"{key}: unknown {v.arch.upper()} layer(s) {', '.join(bad)}; "
                                  f"valid: {', '.join(names)}")
        for key in ("content_weight", "style_weight", "tv_weight"):
            check(getattr(lo, key) >= 0, f"loss.{key}", f"must be >= 0, got {getattr(lo, key)}")
        check(lo.content_weight + lo.style_weight > 0, "loss.style_weight", "content and style weights are both 0")

        check(1 <= m.channels <= 512, "model.channels", f"must be in [1, 512], got {m.channels}")
        check(0 <= m.n_blocks <= 64, "model.n_blocks", f"must be in [0, 64], got {m.n_blocks}")
        check(d.crop_size >= 8, "data.crop_size", f"must be >= 8 (the network down-samples twice), got {d.crop_size}")

        validate_optim(cfg.optim)
        if cfg.optim.lr_policy == "plateau":
            check(d.val_images > 0, "optim.lr_policy",
                  "plateau steps on the held-out loss, so data.val_images must be > 0")
        validate_train(cfg.train)
        check(not cfg.train.grad_checkpoint, "train.grad_checkpoint",
              "is not implemented for the Johnson network (its residual blocks run at 1/4 of the crop size); "
              "set it false and lower data.batch_size or data.crop_size if memory runs out")


@dataclass
class JohnsonTestSettings:
    """Inference settings (``test.py`` trailing ``key=value``).

    ``output_rounding``: how the network's [0, 255] float output becomes uint8 pixels. ``round``
    (the default) takes the nearest level; ``truncate`` drops the fraction, as the examples'
    ``utils.save_image`` does (``astype("uint8")`` of the clamped output), so that an examples'
    file (``candy``, ...) gives their saved pixels exactly, on inputs whose sides are multiples of
    4 (other sizes: the examples return the network's 4*ceil(H/4) x 4*ceil(W/4) output, this
    project pads by reflection and crops back to the input's size). Truncated pixels are up to one
    level darker, on about half the values: about 0.5 on average.
    """

    output: Literal["auto", "tanh", "clamp"] = "auto"  # auto: our runs' config; foreign files clamp (the examples)
    output_rounding: Literal["round", "truncate"] = "round"  # uint8 pixels: nearest level, or floor (the examples)

    def validate(self) -> None:
        """Nothing beyond the types (a Literal's choices are checked when loading)."""
