"""Universal style transfer as methods: WCT (Li et al. 2017) and AdaIN (Huang & Belongie 2017)
with the decoders of one ``wct`` training run, or those the authors released
(:mod:`methods.wct_files`), and any style image.

* The encoder is rebuilt from the run's stored config (:func:`options.wct.encoder_weights`): the
  VGG-19 weights its decoders were trained to invert (``vgg.arch``: torchvision's or the
  releases' normalised VGG-19), a random-weight VGG only if the run used one, and then the
  method's name says so. A released set brings its own encoder. ``encoder=PATH`` gives the
  encoder's file elsewhere; one of the other VGG-19 layout is refused.
* Style images are read, scaled down to ``style_max_size`` if larger, and encoded once when the
  method is built (:class:`models.wct.StyleFeatures`); several are blended with ``--style-weights``.
* WCT: multi-level, coarse to fine, over ``levels`` (default: every level the run has), with
  ``transform`` wct or whiten. AdaIN: the relu4_1 decoder alone; a run without one is refused.
* ``--alpha`` blends stylised and content features at every level; ``--preserve-color`` keeps
  the content's chroma (:mod:`models.color`). Any image size (reflection-padded inside).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data.image_io import load_style_images, uint8_to_unit, unit_to_uint8
from methods.base import Method, MethodError, WeightsFile
from methods.wct_files import (
    PublishedWeights,
    adain_set,
    file_convs,
    find_published,
    is_adain_decoder,
    load_published,
    read_normalised_encoder,
)
from models.color import preserve_color
from models.style_losses import resize_longer
from models.vgg import VGGInfo, VGGWeightsUnavailable, load_vgg19
from models.wct import ADAIN_LEVEL, LEVELS, StyleFeatures, build_decoders, coarse_to_fine, stylize
from options.config import ConfigError, build, load
from options.methods import MethodOptions
from options.wct import (
    AdaINSettings,
    WCTConfig,
    WCTSettings,
    encoder_weights,
)
from utils.checkpoint import CheckpointError, is_state_dict, load_strict, strip_prefixes
from utils.device import autocast_context


@dataclass
class LoadedDecoders:
    decoders: nn.ModuleDict  # level -> models.wct.Decoder; eval mode, no gradients, on the CPU
    levels: list[str]  # the levels it has decoders for, fine to coarse
    width: float  # the decoders' channel multiplier (model.width)
    config: dict[str, Any]  # the run's resolved config: the encoder it inverts is under "vgg"
    released: PublishedWeights | None = None  # a released set: its decoders and its encoder


def wct_decoders(file: WeightsFile) -> LoadedDecoders:
    """The decoders of one of our ``wct`` training runs (``nets["decoders"]``, keys like
    ``relu4_1.body.conv4_1.weight``), built at the run's ``model.width`` and loaded strictly."""
    if file.kind != "training" or file.method != "wct":
        found = f"a {file.method} training checkpoint" if file.kind == "training" else f"a {file.kind} file"
        raise CheckpointError(f"{file.path}: WCT and AdaIN need a decoder run (method: wct) or a released set "
                              f"(docs/methods.md), found {found}; train decoders with "
                              f"`python train.py --config experiments/wct_demo.yaml`")
    nets = file.obj.get("nets")
    sd = nets.get("decoders") if isinstance(nets, dict) else None
    if not is_state_dict(sd):
        raise CheckpointError(f"{file.path}: checkpoint has no decoders nets['decoders'] (found nets: "
                              f"{sorted(nets) if isinstance(nets, dict) else type(nets).__name__})")
    sd = strip_prefixes(sd)
    prefixes = {key.split(".", 1)[0] for key in sd}
    unknown = sorted(prefixes - set(LEVELS))
    if unknown:
        raise CheckpointError(f"{file.path}: nets['decoders'] has entries for {', '.join(unknown)}, which are not "
                              f"levels ({', '.join(LEVELS)})")
    levels = sorted(prefixes, key=LEVELS.index)
    config = file.config or {}
    width = float((config.get("model") or {}).get("width", 1.0))
    try:
        net = build_decoders(levels, width)
    except ValueError as e:
        raise CheckpointError(f"{file.path}: cannot build the decoders ({e})") from e
    load_strict(net, sd, file.path, "nets['decoders']", f"decoders for {', '.join(levels)} at width {width:g}")
    net.eval().requires_grad_(False)
    return LoadedDecoders(net, levels, width, config)


def load_encoder(cfg: WCTConfig, levels: list[str], weights_file: str = "") -> tuple[nn.Module, VGGInfo]:
    """The frozen VGG-19 a run's decoders invert (:func:`options.wct.encoder_weights`; ``weights_file``:
    the same network's weights from another file), built up to the deepest of ``levels``; a missing
    weights file is a :class:`MethodError` saying what to do."""
    v = cfg.vgg
    weights, fallback = encoder_weights(v)
    if weights_file:
        weights, fallback = weights_file, False
    if v.arch == "normalised":
        return read_normalised_encoder(weights, levels)
    if weights not in ("imagenet", "random") and _is_normalised_file(weights):
        raise MethodError(f"{weights} is the releases' normalised VGG-19 (a 1x1 input conv first), but these "
                          f"decoders were trained on torchvision's VGG-19 (vgg.arch=torchvision): give that encoder")
    try:
        net, info = load_vgg19(levels, "max", weights, v.preprocess, allow_download=v.download,
                               random_if_unavailable=fallback, seed=cfg.seed)
    except VGGWeightsUnavailable as e:
        what = f"this run was trained with vgg.resolved={v.resolved}; " if v.resolved else ""
        raise MethodError(f"vgg.weights={v.weights}: {what}{e}") from e
    if v.resolved == "random" and v.weights != "random":
        info = replace(info, note="the run's fallback: no pretrained weights when it trained")
    return net, info


def run_config(file: WeightsFile) -> WCTConfig:
    """The decoder run's stored config, as the schema reads it."""
    try:
        return build(WCTConfig, file.config)
    except ConfigError as e:
        raise MethodError(f"{file.path}: the run's stored config does not read as a wct config ({e})") from e


def _is_normalised_file(path: str) -> bool:
    """True when the weights file's first convolution is the releases' 1x1 input conv."""
    if not Path(path).is_file():
        return False
    try:
        convs = file_convs(Path(path))
    except CheckpointError:
        return False
    return tuple(convs[0][1].shape) == (3, 3, 1, 1)


def run_encoder(cfg: WCTConfig, levels: list[str], device: torch.device,
                weights_file: str = "") -> tuple[nn.Module, VGGInfo]:
    """The VGG-19 the run's decoders invert, built up to the deepest of ``levels``, on ``device``."""
    try:
        net, info = load_encoder(cfg, levels, weights_file)
    except MethodError as e:
        raise MethodError(f"the decoders' encoder cannot be rebuilt: {e}") from e
    return net.to(device), info


class UniversalStyleMethod(Method):
    """What WCT and AdaIN share: a run's decoders and encoder, precomputed style features."""

    takes_style = True
    title = ""

    def __init__(self, opts: MethodOptions, file: WeightsFile, loaded: LoadedDecoders, levels: list[str],
                 transform: str, eps: float, rank_tol: float, style_max_size: int, device: torch.device,
                 encoder_file: str = "") -> None:
        super().__init__(device, opts.amp, opts.label)
        autocast_context(device, opts.amp)  # a bad amp / device pair fails before any work
        self.file, self.loaded = file, loaded
        self.levels, self.transform = coarse_to_fine(levels), transform
        self.eps, self.rank_tol, self.style_max_size = eps, rank_tol, style_max_size
        self.alpha, self.preserve_color = opts.alpha, opts.preserve_color
        self.styles = [Path(s) for s in opts.style]
        self.style_weights = list(opts.style_weights) or None
        self.config_file = Path(opts.config) if opts.config else None
        if loaded.released is not None:
            self.encoder, self.vgg = loaded.released.encoder.to(device), loaded.released.info
        else:
            self.encoder, self.vgg = run_encoder(run_config(file), self.levels, device, encoder_file)
        self.decoders = loaded.decoders.to(device)
        self.style_features = self._style_features()

    def _style_features(self) -> StyleFeatures | None:
        if self.transform == "whiten":
            return None  # whitening only: the style is removed, not replaced
        if not self.styles:
            raise MethodError(f"{self.title} needs at least one style image (--style, or style: in the report config)")
        if self.style_weights is not None and len(self.style_weights) != len(self.styles):
            raise MethodError(f"{len(self.style_weights)} style weights for {len(self.styles)} style image(s)")
        for path in self.styles:
            if "=" in path.name and not path.exists():  # argparse gives --style every later word
                raise MethodError(f"style image {path} does not exist; a key=value setting written after --style "
                                  f"is read as a style image: put settings before --style")
        images = load_style_images(self.styles)
        cap = self.style_max_size
        images = [resize_longer(s, cap) if cap and max(s.shape[-2:]) > cap else s for s in images]
        return StyleFeatures.from_images(self.encoder, [s.to(self.device) for s in images], self.levels,
                                         self.rank_tol)

    def default_name(self) -> str:
        return self.title if self.vgg.pretrained else f"{self.title} [random-weight VGG]"

    def settings(self) -> dict[str, Any]:
        return {"checkpoint": str(self.file.path), "step": self.file.step, "levels": self.levels,
                "transform": self.transform, "alpha": self.alpha, "styles": [str(s) for s in self.styles],
                "style_weights": self.style_weights, "style_max_size": self.style_max_size, "eps": self.eps,
                "rank_tol": self.rank_tol, "preserve_color": self.preserve_color, "encoder": self.vgg.label,
                "decoder_width": self.loaded.width}

    def describe(self) -> str:
        step = f", step {self.file.step}" if self.file.step is not None else ""
        styles = f"{len(self.styles)} style image(s)" if self.style_features is not None else "no style"
        return (f"{self.title}: decoders {', '.join(self.levels)} (width {self.loaded.width:g}) from {self.file.path} "
                f"({self.file.source}{step}), {self.transform}, alpha {self.alpha:g}, {styles}, encoder "
                f"{self.vgg.label}")

    def input_files(self) -> list[Path]:
        released = self.loaded.released
        files = [*(released.files if released is not None else [Path(self.file.path)]), *self.styles]
        if self.config_file is not None:
            files.append(self.config_file)
        if self.vgg.pretrained and Path(self.vgg.source).is_file() and Path(self.vgg.source) not in files:
            files.append(Path(self.vgg.source))
        return files

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W), any H and W -> uint8 (N, 3, H, W) on the CPU."""
        x = uint8_to_unit(images.to(self.device, non_blocking=True))
        with autocast_context(self.device, self.amp):
            y = stylize(self.encoder, self.decoders, x, self.style_features, self.style_weights, self.alpha,
                        self.levels, self.transform, self.eps, self.rank_tol)  # type: ignore[arg-type]
        y = y.float()
        if self.preserve_color:
            y = preserve_color(y, x)
        return unit_to_uint8(y).cpu()


def _decoders_of(file: WeightsFile | None, what: str, levels: list[str], encoder_file: str) -> LoadedDecoders:
    """The decoders ``file`` holds (``levels``: which a released set's to build; empty = all)."""
    if file is None:
        raise MethodError(f"{what} needs --checkpoint: a decoder run (train one with "
                          f"`python train.py --config experiments/wct_demo.yaml`), or a released weights set")
    if file.kind in ("released", "adain-decoder"):
        found = file.obj if file.kind == "released" else adain_set(file.path)
        levels = levels or sorted(found.decoders, key=LEVELS.index)
        released = load_published(found, levels, encoder_file)
        return LoadedDecoders(released.decoders, released.levels, 1.0, {}, released)
    return wct_decoders(file)


class WCTMethod(UniversalStyleMethod):
    """Whitening and colouring transform, multi-level coarse to fine (Li et al. 2017)."""

    key = "wct"
    title = "WCT"

    @classmethod
    def build(cls, opts: MethodOptions, file: WeightsFile | None, device: torch.device) -> WCTMethod:
        s = load(WCTSettings, opts.config or None, opts.settings)
        loaded = _decoders_of(file, "WCT", list(s.levels), s.encoder)
        levels = list(s.levels) or list(loaded.levels)
        missing = [level for level in levels if level not in loaded.levels]
        if missing:
            raise MethodError(f"levels: {file.path} has no decoder for {', '.join(missing)} (it has "
                              f"{', '.join(loaded.levels)}); choose among those")
        return cls(opts, file, loaded, levels, s.transform, s.eps, s.rank_tol, s.style_max_size, device, s.encoder)

    @classmethod
    def recognise_path(cls, path: Path) -> Any:
        return find_published(path, "wct")


class AdaINMethod(UniversalStyleMethod):
    """Adaptive instance normalisation at relu4_1 with its own decoder (Huang & Belongie 2017)."""

    key = "adain"
    title = "AdaIN"

    @classmethod
    def build(cls, opts: MethodOptions, file: WeightsFile | None, device: torch.device) -> AdaINMethod:
        s = load(AdaINSettings, opts.config or None, opts.settings)
        released = file is not None and file.kind in ("released", "adain-decoder")
        loaded = _decoders_of(file, "AdaIN", [ADAIN_LEVEL] if released else [], s.encoder)
        if ADAIN_LEVEL not in loaded.levels:
            raise MethodError(f"AdaIN needs a {ADAIN_LEVEL} decoder; {file.path} has decoders for "
                              f"{', '.join(loaded.levels)} only: train one with model.levels including {ADAIN_LEVEL} "
                              f"(e.g. python train.py --config experiments/wct_demo.yaml)")
        return cls(opts, file, loaded, [ADAIN_LEVEL], "adain", s.eps, 0.0, s.style_max_size, device, s.encoder)

    @classmethod
    def recognise(cls, obj: Any) -> str:
        return "adain-decoder" if is_adain_decoder(obj) else ""

    @classmethod
    def recognise_path(cls, path: Path) -> Any:
        """pytorch-AdaIN's pair, or a WCT release with a relu4_1 decoder (AdaIN runs on it as on a run's)."""
        found = find_published(path, "adain") or find_published(path, "wct")
        return found if found is not None and ADAIN_LEVEL in found.decoders else None

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        del out["rank_tol"]
        return out
