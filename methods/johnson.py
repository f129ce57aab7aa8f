"""Johnson et al. 2016 fast style transfer as a method: one forward pass of a trained
transformation network per batch.

Loads one of our Johnson runs / checkpoints, or a PyTorch ``examples/fast_neural_style`` file
(``candy.pth``, ``mosaic.pth``, ``rain_princess.pth``, ``udnie.pth``, downloaded with
``python -m data.download fast_neural_style``; their legacy InstanceNorm keys are dropped and their
raw output is clamped, as the examples' ``stylize`` does). Any image size: each batch is padded by
reflection to a multiple of 4 (at least 8 px) and the output cropped back.

A multi-style network (conditional instance norm, Dumoulin et al. 2017) blends its styles with
``--style-weights w_1 ... w_S`` (normalised to sum to 1; ``1 0 0`` is style 1, ``0.5 0.5 0`` half
way between styles 1 and 2: the lecture's 100/0 ... 0/100 interpolation); without weights it uses
its first style. ``--preserve-color`` keeps the content's chroma (luminance-only, YIQ).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from data.image_io import pad_to_multiple, unit_to_uint8
from methods.base import Method, MethodError
from models.color import preserve_color
from models.johnson import TransformerArch, TransformerNet, one_hot_style_weights
from options.config import load
from options.johnson import JohnsonTestSettings, validate_test_settings
from options.methods import MethodOptions
from utils.checkpoint import WeightsFile, describe_transformer, johnson_transformer
from utils.device import autocast_context


def blend_weights(arch: TransformerArch, weights: list[float], source: str | Path) -> torch.Tensor | None:
    """``--style-weights`` -> the network's (S,) style weights summing to 1 (None: a single-style
    network). Style 1 when no weights are given to a multi-style network."""
    s = arch.n_styles
    if s == 1:
        if weights:
            raise MethodError(f"{source} holds one style, so --style-weights has nothing to blend (a multi-style "
                              f"network is trained with style.multi=true; a blended single style with style.weights)")
        return None
    if not weights:
        return one_hot_style_weights(0, s)
    if len(weights) != s:
        raise MethodError(f"--style-weights: {len(weights)} weight(s) for a network of {s} styles; give {s}, e.g. "
                          f"{' '.join(['1'] + ['0'] * (s - 1))} for the first style")
    w = torch.tensor(weights, dtype=torch.float32)
    return w / w.sum()  # options ensure >= 0 with a positive sum


class JohnsonMethod(Method):
    key = "johnson"

    def __init__(self, net: TransformerNet, arch: TransformerArch, ignored: list[str], file: WeightsFile,
                 style_weights: torch.Tensor | None, opts: MethodOptions, device: torch.device) -> None:
        super().__init__(device, opts.amp, opts.label)
        self.net, self.arch, self.ignored, self.file = net.to(device), arch, ignored, file
        self.style_weights = None if style_weights is None else style_weights.to(device)
        self.preserve_color = opts.preserve_color

    @classmethod
    def build(cls, opts: MethodOptions, file: WeightsFile | None, device: torch.device) -> JohnsonMethod:
        if file is None:
            raise MethodError("johnson needs --checkpoint (a johnson run folder, one of its checkpoints, or a "
                              "fast_neural_style file such as candy)")
        if opts.style:
            raise MethodError("a Johnson network learned its style(s) in training and takes no --style image; "
                              "use --method wct, adain or gatys for a new style image")
        s = load(JohnsonTestSettings, opts.config or None, opts.settings, validate_test_settings)
        autocast_context(device, opts.amp)  # a bad amp / device pair fails before any work
        net, arch, ignored = johnson_transformer(file, None if s.output == "auto" else s.output)
        weights = blend_weights(arch, list(opts.style_weights), file.path)
        return cls(net, arch, ignored, file, weights, opts, device)

    # ------------------------------------------------------------------------------- description

    @property
    def styles(self) -> list[str]:
        """The style images the network was trained on (our runs), else []."""
        return [str(p) for p in ((self.file.config or {}).get("style") or {}).get("images", [])]

    def default_name(self) -> str:
        if self.file.kind == "training":
            vgg = str(self.file.extra.get("vgg", ""))
            trained = f" [trained with a {vgg}]" if vgg.startswith("random") else ""  # never silently
            return "Johnson" + (f" (step {self.file.step})" if self.file.step is not None else "") + trained
        return f"Johnson ({self.file.path.stem})"

    def settings(self) -> dict[str, Any]:
        w = None if self.style_weights is None else [round(float(v), 6) for v in self.style_weights.cpu()]
        return {"checkpoint": str(self.file.path), "step": self.file.step, "arch": describe_transformer(self.arch),
                "styles": self.styles, "style_weights": w, "preserve_color": self.preserve_color}

    def describe(self) -> str:
        step = f", step {self.file.step}" if self.file.step is not None else ""
        extra = f"; ignored {len(self.ignored)} legacy InstanceNorm running-stat keys" if self.ignored else ""
        blend = ""
        if self.style_weights is not None:
            blend = " | style weights " + " ".join(f"{float(v):.3g}" for v in self.style_weights.cpu())
        return (f"loaded Johnson network from {self.file.path} ({self.file.source}{step}): "
                f"{describe_transformer(self.arch)}{blend}{extra}")

    def input_files(self) -> list[Path]:
        return [self.file.path]

    # ------------------------------------------------------------------------------- running

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> uint8 (N, 3, H, W): [0, 255] floats padded (reflect) to multiples of 4
        (at least 8), stylized, cropped back; uint8 crosses the bus (4x less than float)."""
        x = images.to(self.device, non_blocking=True)
        h, w = x.shape[-2:]
        x, top, left = pad_to_multiple(x.float(), 4, 8)
        with autocast_context(self.device, self.amp):
            y = self.net(x, self.style_weights)
        y = y[..., top : top + h, left : left + w].float().div_(255.0).clamp_(0.0, 1.0)
        if self.preserve_color:
            y = preserve_color(y, images.to(self.device).float() / 255.0)
        return unit_to_uint8(y).cpu()
