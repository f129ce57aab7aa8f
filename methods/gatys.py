"""Gatys et al. (2015) as a method: optimisation per batch of same-size content images.

The VGG-19 extractor and the style images are loaded once when the method is built; each call
optimises a batch (``batch_size`` images of one size at most) and returns the results at the
working size (longer side ``image.size``; 0 keeps each input's size).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from data.image_io import load_style_images, longer_side_to, uint8_to_unit, unit_to_uint8
from methods.base import Method, MethodError
from models.gatys import GatysParams, stylize
from models.style_losses import LossWeights
from models.vgg import LAYER_NAMES, VGG19Features, VGGInfo, VGGWeightsUnavailable, load_vgg19
from options.config import ConfigError, load
from options.gatys import GatysConfig
from options.methods import MethodOptions


def loss_weights(cfg: GatysConfig) -> LossWeights:
    """The config's layers and weights; unknown VGG-19 layer names are a config error."""
    lo = cfg.loss
    for key, layers in (("loss.content_layers", lo.content_layers), ("loss.style_layers", lo.style_layers)):
        bad = [n for n in layers if n not in LAYER_NAMES]
        if bad:
            raise ConfigError(f"{key}: unknown VGG-19 layer(s) {', '.join(bad)}; valid: {', '.join(LAYER_NAMES)}")
    # Layers summed, per-layer weights as given: the convention of neural-style-pt and the
    # PyTorch tutorial (options/gatys.py), whose weights then mean the same here.
    return LossWeights(
        content=lo.content_weight, style=lo.style_weight, tv=lo.tv_weight,
        content_layers=dict(zip(lo.content_layers, lo.content_layer_weights or [1.0] * len(lo.content_layers))),
        style_layers=dict(zip(lo.style_layers, lo.style_layer_weights or [1.0] * len(lo.style_layers))),
        layer_reduction="sum", tv_norm=lo.tv_norm)


def gatys_params(cfg: GatysConfig) -> GatysParams:
    """Config -> the explicit arguments of :func:`models.gatys.stylize`."""
    o, im = cfg.optim, cfg.image
    return GatysParams(
        weights=loss_weights(cfg), optimizer=o.optimizer, steps=o.steps,
        lr=o.lr or (1.0 if o.optimizer == "lbfgs" else 0.02), lbfgs_history=o.lbfgs_history, scheduler=o.scheduler,
        sched_step=o.sched_step, sched_gamma=o.sched_gamma, sched_patience=o.sched_patience, init=o.init,
        noise_ratio=o.noise_ratio, noise_std=o.noise_std, clamp=o.clamp, preserve_color=im.preserve_color,
        style_scale=im.style_scale, scales=im.scales,
        scale_factor=im.scale_factor, log_every=cfg.log_every, seed=cfg.seed)


CAFFE_VGG19_FILE = "vgg19-d01eb7cb.pth"  # the Caffe VGG-19 converted for PyTorch, as neural-style-pt uses it


def caffe_vgg19_path() -> Path:
    """Where ``vgg.weights=caffe`` looks: the torch cache's checkpoints folder, beside torchvision's file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / CAFFE_VGG19_FILE


def build_extractor(cfg: GatysConfig, device: torch.device) -> tuple[VGG19Features, VGGInfo]:
    """The frozen VGG-19 the config asks for, truncated after the deepest loss layer, on ``device``."""
    v = cfg.vgg
    weights, preprocess = v.weights, v.preprocess
    if weights == "caffe":
        path = caffe_vgg19_path()
        if not path.is_file():
            raise VGGWeightsUnavailable(
                f"vgg.weights=caffe: no {CAFFE_VGG19_FILE} at {path} (it is never downloaded). Put the Caffe "
                f"VGG-19 of neural-style / neural-style-pt there, or give its path: vgg.weights=PATH "
                f"(stylize.py --vgg-weights PATH)")
        weights, preprocess = str(path), ("caffe" if preprocess == "auto" else preprocess)
    net, info = load_vgg19(loss_weights(cfg).layers, v.pooling, weights, preprocess, allow_download=v.download,
                           random_if_unavailable=v.random_if_unavailable, seed=cfg.seed)
    return net.to(device), info


class GatysMethod(Method):
    key = "gatys"
    takes_style = True
    needs_checkpoint = False

    def __init__(self, cfg: GatysConfig, styles: list[Path], blend: list[float] | None,
                 extractor: tuple[VGG19Features, VGGInfo], opts: MethodOptions, device: torch.device,
                 config_file: Path | None) -> None:
        super().__init__(device, "off", opts.label)
        self.cfg, self.styles, self.blend = cfg, styles, blend
        self.net, self.vgg = extractor
        self.params = gatys_params(cfg)
        self.style_images = [s.to(device) for s in load_style_images(styles)]
        self.config_file = config_file
        self._losses: dict[str, list[float]] | None = None

    @classmethod
    def build(cls, opts: MethodOptions, file: Any, device: torch.device,
              extractor: tuple[VGG19Features, VGGInfo] | None = None) -> GatysMethod:
        cfg = load(GatysConfig, opts.config or None, opts.settings)
        if opts.preserve_color:
            cfg.image.preserve_color = True
        if not opts.style:
            raise MethodError("Gatys needs at least one style image (--style, or style: in the report config)")
        blend = list(opts.style_weights or cfg.image.style_blend) or None
        if blend is not None and len(blend) != len(opts.style):
            raise MethodError(f"{len(blend)} style weights for {len(opts.style)} style image(s)")
        extractor = extractor or build_extractor(cfg, device)
        return cls(cfg, [Path(s) for s in opts.style], blend, extractor, opts, device,
                   Path(opts.config) if opts.config else None)

    def default_name(self) -> str:
        return "Gatys" if self.vgg.pretrained else f"Gatys [{self.vgg.label}]"

    def settings(self) -> dict[str, Any]:
        c, p = self.cfg, self.params
        return {"optimizer": c.optim.optimizer, "steps": p.steps, "scales": p.scales, "pooling": c.vgg.pooling,
                "content_weight": c.loss.content_weight, "style_weight": c.loss.style_weight,
                "tv_weight": c.loss.tv_weight, "size": c.image.size, "preserve_color": c.image.preserve_color,
                "styles": [str(s) for s in self.styles], "style_blend": self.blend, "vgg": self.vgg.label,
                "seed": c.seed}

    def describe(self) -> str:
        p = self.params
        return (f"Gatys: {self.cfg.optim.optimizer} x {p.steps}{f' x {p.scales} scales' if p.scales > 1 else ''}, "
                f"{self.cfg.vgg.pooling} pooling, alpha {self.cfg.loss.content_weight:g}, "
                f"beta {self.cfg.loss.style_weight:g} (style layers summed), {len(self.styles)} style image(s), "
                f"{self.vgg.label}")

    def fingerprint(self) -> dict[str, Any]:
        """Also the whole resolved config: :meth:`settings` is the report's short summary and leaves
        out keys that change the images (layers and their weights, lr, init, style_scale, batch size
        (L-BFGS optimises a batch as one vector) ...). Only logging and the device name are left out."""
        config = dataclasses.asdict(self.cfg)
        for key in ("progress", "log_every", "device"):
            config.pop(key)
        return {**super().fingerprint(), "config": config}

    def input_files(self) -> list[Path]:
        files = list(self.styles)
        if self.vgg.pretrained and Path(self.vgg.source).is_file():
            files.append(Path(self.vgg.source))
        return files

    def working_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return longer_side_to(size, self.cfg.image.size)

    def too_small(self, size: tuple[int, int]) -> str | None:
        need = self.net.min_side
        if min(size) >= need:
            return None
        deepest = self.net.names[-1]
        return (f"{size[0]}x{size[1]} px is smaller than the {need} px per side VGG-19 needs up to {deepest}; "
                f"enlarge it with image.size={max(need, self.cfg.image.size)} or more")

    @property
    def keeps_size(self) -> bool:
        return False  # the result is the optimised image, at image.size

    @property
    def max_batch(self) -> int | None:
        return self.cfg.batch_size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        content = uint8_to_unit(images.to(self.device))
        result = stylize(self.net, content, self.style_images, self.params, self.blend, progress=self.cfg.progress)
        self._losses = {k: getattr(result.losses, k).detach().cpu().tolist() for k in ("total", "content", "style",
                                                                                         "tv")}
        return unit_to_uint8(result.images).cpu()

    def last_losses(self) -> dict[str, list[float]] | None:
        return self._losses
