"""Settings of the Gatys baseline (Gatys, Ecker, Bethge 2015): ``stylize.py --config``, or a
report entry's ``config:``. Loaded like every config (YAML + ``key.sub=value``); lists are YAML
lists: ``loss.style_layers=[relu1_1,relu2_1]``.

Loss weights depend on the input scaling of the VGG weights in use (see :mod:`models.vgg`):

===========================  ================  ===============  ==========================
weights (vgg.weights)        input convention  content_weight   style_weight
===========================  ================  ===============  ==========================
imagenet (torchvision)       [0,1], mean/std   1                1e6  (PyTorch tutorial)
vgg19-d01eb7cb.pth (Caffe)   BGR 0..255 - mean 5                100  (neural-style)
random (tests, offline demo) as torchvision    1                1e6
===========================  ================  ===============  ==========================

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
    weights: str = "imagenet"  # imagenet (torch cache / download) | random (tests) | path to a .pth file
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
    style_weight: float = 1e6  # beta; 1e6 balances alpha = 1 for torchvision weights (table above)
    tv_weight: float = 0.0


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
    init: Literal["content", "noise", "noisy_content"] = "content"
    noise_ratio: float = 0.5  # noisy_content: (1 - r) * content + r * noise


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
        check(bool(v.weights.strip()), "vgg.weights", "expected imagenet, random or a path to a .pth file")
        if v.weights not in ("imagenet", "random"):
            check(Path(v.weights).expanduser().is_file(), "vgg.weights",
                  f"file {v.weights} not found (use imagenet, random, or a path to a VGG-19 state_dict)")
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
