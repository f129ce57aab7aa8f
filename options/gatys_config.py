"""The Gatys baseline's config tree, loaded like the training config (YAML + ``key.sub=value``).

    cfg = load_gatys_config("experiments/gatys.yaml", ["optim.steps=500", "vgg.pooling=avg"])

Lists (layer names, their weights, style blend weights) are comma-separated strings, since the
shared loader takes scalars only: ``loss.style_layers=relu1_1,relu2_1``.

Loss weights depend on the input scaling of the VGG weights in use (see :mod:`models.vgg`):

===========================  ================  ===============  ==========================
weights (vgg.weights)        input convention  content_weight   style_weight
===========================  ================  ===============  ==========================
imagenet (torchvision)       [0,1], mean/std   1                1e6  (PyTorch tutorial)
vgg19-d01eb7cb.pth (Caffe)   BGR 0..255 - mean 5                100  (neural-style)
random (tests, offline demo) as torchvision    1                1e6
===========================  ================  ===============  ==========================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from models.gatys import GatysParams
from models.style_losses import LossWeights
from models.vgg import LAYER_NAMES
from options.config import ConfigError, check, load_config


@dataclass
class GatysVGGConfig:
    weights: str = "imagenet"  # imagenet (torch cache / download) | random (tests) | path to a .pth file
    preprocess: Literal["auto", "torchvision", "caffe"] = "auto"  # auto: caffe for vgg19-d01eb7cb / *caffe* files
    pooling: Literal["max", "avg"] = "max"  # avg: the paper's suggestion; seed 002's best with a scheduler
    download: bool = True  # may fetch the imagenet file into the torch cache
    random_if_unavailable: bool = False  # offline demo only: random weights, labelled as such, if imagenet is missing


@dataclass
class GatysLossConfig:
    content_layers: str = "relu4_2"
    content_layer_weights: str = ""  # comma-separated, one per content layer; empty = equal
    style_layers: str = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1"
    style_layer_weights: str = ""  # one per style layer; empty = equal
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
    style_blend: str = ""  # comma-separated weights, one per style image; empty = equal


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


# ---------------------------------------------------------------------------------------------


def _floats(text: str, key: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise ConfigError(f"{key}: expected comma-separated numbers, got {text!r}") from e


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _layer_weights(layers_key: str, layers: str, weights_key: str, weights: str) -> dict[str, float]:
    names = _names(layers)
    if not names:
        raise ConfigError(f"{layers_key}: needs at least one layer; valid: {', '.join(LAYER_NAMES)}")
    bad = [n for n in names if n not in LAYER_NAMES]
    if bad:
        raise ConfigError(f"{layers_key}: unknown layer(s) {', '.join(bad)}; valid: {', '.join(LAYER_NAMES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{layers_key}: a layer is listed twice: {layers}")
    values = _floats(weights, weights_key) or [1.0] * len(names)
    if len(values) != len(names):
        raise ConfigError(f"{weights_key}: {len(values)} weights for {len(names)} layers in {layers_key}")
    if any(v < 0 for v in values) or sum(values) <= 0:
        raise ConfigError(f"{weights_key}: weights must be >= 0 with a positive sum, got {weights}")
    return dict(zip(names, values))


def validate_gatys(cfg: GatysConfig) -> None:
    """Ranges and cross-key rules; raises :class:`ConfigError` naming the key."""
    check(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device) is not None, "device",
           f"expected auto, cpu, cuda, cuda:N or mps, got {cfg.device!r}")
    check(cfg.seed >= 0, "seed", "must be >= 0")
    check(cfg.batch_size >= 1, "batch_size", "must be >= 1")
    check(cfg.log_every >= 1, "log_every", "must be >= 1")
    v = cfg.vgg
    check(v.weights in ("imagenet", "random") or bool(v.weights.strip()), "vgg.weights",
           "expected imagenet, random or a path to a .pth file")
    if v.weights not in ("imagenet", "random"):
        check(Path(v.weights).expanduser().is_file(), "vgg.weights",
               f"file {v.weights} not found (use imagenet, random, or a path to a VGG-19 state_dict)")
    loss_weights(cfg)  # layer names and per-layer weights
    lo = cfg.loss
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
    check(im.size == 0 or im.size >= 16, "image.size", "must be 0 (keep the input size) or >= 16")
    check(im.style_scale > 0, "image.style_scale", "must be > 0")
    check(im.scales >= 1, "image.scales", "must be >= 1")
    check(im.scale_factor > 1, "image.scale_factor", "must be > 1")
    blend = _floats(im.style_blend, "image.style_blend")
    check(all(b >= 0 for b in blend) and (not blend or sum(blend) > 0), "image.style_blend",
           "weights must be >= 0 with a positive sum")


def loss_weights(cfg: GatysConfig) -> LossWeights:
    lo = cfg.loss
    return LossWeights(
        content=lo.content_weight, style=lo.style_weight, tv=lo.tv_weight,
        content_layers=_layer_weights("loss.content_layers", lo.content_layers,
                                      "loss.content_layer_weights", lo.content_layer_weights),
        style_layers=_layer_weights("loss.style_layers", lo.style_layers,
                                    "loss.style_layer_weights", lo.style_layer_weights),
    )


def style_blend(cfg: GatysConfig, n_styles: int) -> list[float] | None:
    """The blend weights for ``n_styles`` style images (None = equal); checks the count."""
    blend = _floats(cfg.image.style_blend, "image.style_blend")
    if not blend:
        return None
    if len(blend) != n_styles:
        raise ConfigError(f"image.style_blend: {len(blend)} weights for {n_styles} style image(s)")
    return blend


def gatys_params(cfg: GatysConfig) -> GatysParams:
    """Config -> the explicit arguments of :func:`models.gatys.stylize`."""
    o, im = cfg.optim, cfg.image
    lr = o.lr or (1.0 if o.optimizer == "lbfgs" else 0.02)
    return GatysParams(
        weights=loss_weights(cfg), optimizer=o.optimizer, steps=o.steps, lr=lr, lbfgs_history=o.lbfgs_history,
        scheduler=o.scheduler, sched_step=o.sched_step, sched_gamma=o.sched_gamma,
        sched_patience=o.sched_patience, init=o.init, noise_ratio=o.noise_ratio,
        preserve_color=im.preserve_color, style_scale=im.style_scale, scales=im.scales,
        scale_factor=im.scale_factor, log_every=cfg.log_every, seed=cfg.seed,
    )


def load_gatys_config(path: str | Path | None = None, overrides: list[str] | None = None) -> GatysConfig:
    """YAML file (or defaults) + ``key.sub=value`` overrides -> a validated :class:`GatysConfig`."""
    return load_config(path, overrides, schema=GatysConfig, validator=validate_gatys)
