"""Settings of the Gatys baseline (Gatys, Ecker, Bethge 2015): ``stylize.py --config``, or a
report entry's ``config:``. Loaded like every config (YAML + ``key.sub=value``); lists are YAML
lists: ``loss.style_layers=[relu1_1,relu2_1]``.

The content and style terms are the SUMS of their layers' losses (each a mean of squares, Gram
matrices normalised by C*H*W), as in neural-style-pt and the PyTorch neural-style tutorial, so
their weights mean the same here. Good weights depend on the input scaling of the VGG weights in
use (see :mod:`models.vgg`):

===========================  ================  ===============  ==================================
weights (vgg.weights)        input convention  content_weight   style_weight (5 style layers)
===========================  ================  ===============  ==================================
imagenet (torchvision)       [0,1], mean/std   1                2e5 (default); 1e6 the tutorial's
vgg19-d01eb7cb.pth (Caffe)   BGR 0..255 - mean 5                100 (neural-style-pt)
random (tests, offline demo) as torchvision    1                2e5
===========================  ================  ===============  ==================================

The default 2e5 is the former default 1e6, which averaged the 5 style layers (1e6 / 5): the
results are the same as before. A config written for the averaging convention converts by
dividing style_weight by the number of style layers (and content_weight by the number of
content layers, when there are several); explicit per-layer weights are no longer normalised
to sum to 1, so divide them by their sum as well. Presets: ``experiments/gatys_tutorial.yaml``,
``experiments/gatys_neural_style_pt.yaml``.

Layer names are checked against VGG-19's when the method is built (``methods/gatys.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from options.common import check_device
from options.config import check, load


@dataclass
class GatysVGGConfig:
    # imagenet (torch cache / download) | caffe (Gatys only, not scoring: the Caffe VGG-19
    # vgg19-d01eb7cb.pth of neural-style in the torch cache's checkpoints folder, never downloaded)
    # | random (tests) | a path to a .pth file
    weights: str = "imagenet"
    preprocess: Literal["auto", "torchvision", "caffe"] = "auto"  # auto: caffe for vgg19-d01eb7cb / *caffe* files
    pooling: Literal["max", "avg"] = "max"  # avg: the paper's suggestion; a student report's best with a scheduler
    download: bool = True  # may fetch the imagenet file into the torch cache
    random_if_unavailable: bool = False  # offline demo only: random weights, labelled as such, if imagenet is missing


@dataclass
class GatysLossConfig:
    content_layers: list[str] = field(default_factory=lambda: ["relu4_2"])
    content_layer_weights: list[float] = field(default_factory=list)  # one per content layer; empty = equal
    style_layers: list[str] = field(default_factory=lambda: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"])
    style_layer_weights: list[float] = field(default_factory=list)  # one per style layer; empty = equal
    content_weight: float = 1.0  # alpha
    style_weight: float = 2e5  # beta, on the SUM of the style layers' losses (table above)
    tv_weight: float = 0.0  # neural-style-pt: 1e-3 with tv_norm l1_sum
    # squared_mean: mean of squared neighbour differences on [0, 1] pixels (size independent);
    # l1_sum: sum of absolute differences on 0..255 pixels, neural-style-pt's TV term
    tv_norm: Literal["squared_mean", "l1_sum"] = "squared_mean"


@dataclass
class GatysOptimConfig:
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    steps: int = 300  # per scale level
    lr: float = 0.0  # 0 = the optimiser's default: 1.0 for L-BFGS, 0.02 for Adam (pixels in [0, 1])
    lbfgs_history: int = 100
    scheduler: Literal["none", "step", "plateau", "cosine"] = "plateau"  # Adam only
    sched_step: int = 100  # step: multiply the lr by sched_gamma every sched_step steps
    sched_gamma: float = 0.5  # step and plateau factor
    sched_patience: int = 20  # plateau: steps without improvement before lowering the lr
    # content (the PyTorch tutorial) | noise (uniform in [0, 1]) | noisy_content | mean_noise (the
    # VGG input mean plus Gaussian noise: neural-style-pt's init random)
    init: Literal["content", "noise", "noisy_content", "mean_noise"] = "content"
    noise_ratio: float = 0.5  # noisy_content: (1 - r) * content + r * noise
    noise_std: float = 1e-3  # mean_noise: noise std in the VGG's input units (neural-style-pt: 0.001)
    # when pixels are clamped to [0, 1]: end (the result only, neural-style-pt) | each_eval (before
    # every loss evaluation, the PyTorch tutorial) | auto (end for lbfgs, each_eval for adam)
    clamp: Literal["auto", "end", "each_eval"] = "auto"


@dataclass
class GatysImageConfig:
    size: int = 512  # longer side of the optimised image (0 = keep each content image's size)
    style_scale: float = 1.0  # style images resized to style_scale * the content's longer side
    preserve_color: bool = False  # luminance-only transfer: output keeps the content's colours
    scales: int = 1  # coarse-to-fine levels (1 = single scale)
    scale_factor: float = 2.0  # size ratio between levels
    style_blend: list[float] = field(default_factory=list)  # one weight per style image; empty = equal


@dataclass
class GatysConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    batch_size: int = 1  # same-size content images optimised together
    progress: bool = True
    log_every: int = 10  # steps between logged losses
    vgg: GatysVGGConfig = field(default_factory=GatysVGGConfig)
    loss: GatysLossConfig = field(default_factory=GatysLossConfig)
    optim: GatysOptimConfig = field(default_factory=GatysOptimConfig)
    image: GatysImageConfig = field(default_factory=GatysImageConfig)

    def validate(self) -> None:
        """Ranges and cross-key rules; raises :class:`options.config.ConfigError` naming the key."""
        cfg = self
        check_device(cfg.device)
        check(cfg.seed >= 0, "seed", "must be >= 0")
        check(cfg.batch_size >= 1, "batch_size", "must be >= 1")
        check(cfg.log_every >= 1, "log_every", "must be >= 1")
        v = cfg.vgg
        check(bool(v.weights.strip()), "vgg.weights", "expected imagenet, caffe, random or a path to a .pth file")
        if v.weights not in ("imagenet", "caffe", "random"):
            check(Path(v.weights).expanduser().is_file(), "vgg.weights",
                  f"file {v.weights} not found (use imagenet, caffe, random, or a path to a VGG-19 state_dict)")
        lo = cfg.loss
        _check_layers("loss.content_layers", lo.content_layers, "loss.content_layer_weights", lo.content_layer_weights)
        _check_layers("loss.style_layers", lo.style_layers, "loss.style_layer_weights", lo.style_layer_weights)
        for key in ("content_weight", "style_weight", "tv_weight"):
            check(getattr(lo, key) >= 0, f"loss.{key}", "must be >= 0")
        check(lo.content_weight + lo.style_weight > 0, "loss.style_weight", "content and style weight are both 0")
        o = cfg.optim
        check(o.steps >= 1, "optim.steps", "must be >= 1")
        check(o.lr >= 0, "optim.lr", "must be >= 0 (0 = the optimiser's default)")
        check(o.lbfgs_history >= 1, "optim.lbfgs_history", "must be >= 1")
        check(o.sched_step >= 1, "optim.sched_step", "must be >= 1")
        check(0 < o.sched_gamma <= 1, "optim.sched_gamma", "must be in (0, 1]")
        check(o.sched_patience >= 0, "optim.sched_patience", "must be >= 0")
        check(0 <= o.noise_ratio <= 1, "optim.noise_ratio", "must be in [0, 1]")
        check(o.noise_std > 0, "optim.noise_std", "must be > 0")
        im = cfg.image
        check(im.size == 0 or 16 <= im.size <= 8192, "image.size", "must be 0 (keep the input size) or in [16, 8192]")
        check(im.style_scale > 0, "image.style_scale", "must be > 0")
        check(im.scales >= 1, "image.scales", "must be >= 1")
        check(im.scale_factor > 1, "image.scale_factor", "must be > 1")
        check(all(b >= 0 for b in im.style_blend) and (not im.style_blend or sum(im.style_blend) > 0),
              "image.style_blend", "weights must be >= 0 with a positive sum")


def _check_layers(layers_key: str, layers: list[str], weights_key: str, weights: list[float]) -> None:
    check(bool(layers), layers_key, "needs at least one layer, e.g. [relu4_2]")
    check(len(set(layers)) == len(layers), layers_key, f"a layer is listed twice: {layers}")
    if weights:
        check(len(weights) == len(layers), weights_key, f"{len(weights)} weights for {len(layers)} layers in "
              f"{layers_key}")
        check(all(w >= 0 for w in weights) and sum(weights) > 0, weights_key,
              f"weights must be >= 0 with a positive sum, got {weights}")


def load_gatys_config(path: str | Path | None = None, overrides: list[str] | None = None) -> GatysConfig:
    """YAML file (or defaults) + ``key.sub=value`` overrides -> a validated :class:`GatysConfig`."""
    return load(GatysConfig, path, overrides or [])
