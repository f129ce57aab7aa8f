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
``output_rounding=truncate`` floors the output to uint8 as the examples' ``save_image`` does
(default ``round``: the nearest level).

The readers of both kinds of file (:func:`johnson_transformer`, architecture inference) live
here too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from data.image_io import pad_to_multiple, unit_to_uint8
from methods.base import Method, MethodError, WeightsFile
from models.color import preserve_color
from models.johnson import Output, TransformerArch, TransformerNet, one_hot_style_weights
from options.config import load
from options.johnson import JohnsonTestSettings
from options.methods import MethodOptions
from utils.checkpoint import CheckpointError, is_state_dict, load_strict, strip_prefixes
from utils.device import autocast_context

_LEGACY_NORM_KEY = re.compile(r"(?:^|\.)in\d+\.(?:running_mean|running_var|num_batches_tracked)$")


def strip_legacy_instance_norm(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Drop a TransformerNet's instance-norm running statistics: -> (clean copy, dropped keys in order).

    The examples' pretrained files were saved before PyTorch 0.4, when InstanceNorm2d kept
    ``running_mean`` / ``running_var`` that it never used at test time; today's
    ``load_state_dict`` rejects them (pytorch/examples issue #367; the examples' ``stylize``
    deletes keys matching ``in\\d+\\.running_(mean|var)$``, as this does, plus
    ``num_batches_tracked``). The input is not modified.
    """
    dropped = [key for key in state_dict if _LEGACY_NORM_KEY.search(key)]
    gone = set(dropped)
    return {k: v for k, v in state_dict.items() if k not in gone}, dropped


def _is_johnson_transformer(sd: dict[str, torch.Tensor]) -> bool:
    w = sd.get("conv1.conv2d.weight")
    return isinstance(w, torch.Tensor) and w.ndim == 4 and tuple(w.shape[1:]) == (3, 9, 9)


def _not_transformer(source: str | Path, what: str, found: str, keys: list[str]) -> CheckpointError:
    sample = ", ".join(keys[:4])
    hint = ""
    if keys and all(k.startswith("module.") for k in keys):
        hint = " (keys start with 'module.': strip that DataParallel prefix first)"
    elif any(k.startswith("model.") for k in keys):
        hint = " (keys like model.1.weight are a CycleGAN ResnetGenerator's)"
    return CheckpointError(f"{source}: not a Johnson TransformerNet state_dict (pytorch/examples fast_neural_style "
                           f"layout): expected {what}, found {found}; keys: {sample} ... ({len(keys)} keys){hint}")


def infer_transformer_arch(state_dict: dict[str, torch.Tensor], *, output: Output,
                           source: str | Path = "state_dict") -> TransformerArch:
    """Read channels, n_blocks, n_styles and the up-sampling kind off a TransformerNet state_dict.

    ``output`` (tanh / clamp) leaves no trace in the weights: the caller says which (``clamp``
    for the examples' files). Legacy running-statistics keys are ignored here (strip them with
    :func:`strip_legacy_instance_norm` before loading). A nearest (resize-conv) up-sampling
    weight is (out, in, 3, 3), a transposed one (in, out, 3, 3): that is how the two differ.

    Raises:
        CheckpointError: not a TransformerNet layout; names the expected and found keys or shapes.
    """
    sd, _ = strip_legacy_instance_norm(state_dict)
    keys = list(sd)
    w = sd.get("conv1.conv2d.weight")
    if w is None or w.dim() != 4 or tuple(w.shape[1:]) != (3, 9, 9):
        raise _not_transformer(source, "conv1.conv2d.weight of shape (C, 3, 9, 9)",
                               "no such key" if w is None else f"shape {tuple(w.shape)}", keys)
    c = int(w.shape[0])
    blocks = sorted({int(m.group(1)) for k in keys if (m := re.match(r"res(\d+)\.", k))})
    if blocks != list(range(1, len(blocks) + 1)):
        raise _not_transformer(source, "residual blocks res1 .. resN without gaps", f"res{blocks}", keys)
    norm = sd.get("in1.weight")
    if norm is None or tuple(norm.shape[-1:]) != (c,) or norm.dim() not in (1, 2) or tuple(norm.shape) == (1, c):
        raise _not_transformer(source, f"in1.weight of shape ({c},) or (n_styles > 1, {c})",
                               "no such key" if norm is None else f"shape {tuple(norm.shape)}", keys)
    n_styles = 1 if norm.dim() == 1 else int(norm.shape[0])
    up = sd.get("deconv1.conv2d.weight")
    shape = None if up is None else tuple(up.shape)
    if shape not in ((2 * c, 4 * c, 3, 3), (4 * c, 2 * c, 3, 3)):
        raise _not_transformer(source, f"deconv1.conv2d.weight of shape ({2 * c}, {4 * c}, 3, 3) (nearest) or "
                               f"({4 * c}, {2 * c}, 3, 3) (transpose)",
                               "no such key" if shape is None else f"shape {shape}", keys)
    arch = TransformerArch(c, len(blocks), n_styles, "nearest" if shape == (2 * c, 4 * c, 3, 3) else "transpose",
                           output)
    with torch.device("meta"):  # shapes only, no memory
        own = TransformerNet.from_arch(arch).state_dict()
    missing, unexpected = [k for k in own if k not in sd], [k for k in sd if k not in own]
    if missing or unexpected:
        raise _not_transformer(source, f"the keys of {arch}", f"missing {missing[:4]}, unexpected {unexpected[:4]}",
                               keys)
    bad = [k for k in own if tuple(own[k].shape) != tuple(sd[k].shape)]
    if bad:
        raise _not_transformer(source, f"{bad[0]} of shape {tuple(own[bad[0]].shape)} for {arch}",
                               f"{tuple(sd[bad[0]].shape)}", keys)
    return arch


def describe_transformer(arch: TransformerArch) -> str:
    """One line, e.g. ``TransformerNet c32, 5 blocks, nearest up-sampling, tanh output, 3 styles``."""
    styles = f", {arch.n_styles} styles" if arch.n_styles > 1 else ""
    return (f"TransformerNet c{arch.channels}, {arch.n_blocks} blocks, {arch.upsample} up-sampling, "
            f"{arch.output} output{styles}")


def johnson_transformer(file: WeightsFile, output: Output | None = None
                        ) -> tuple[TransformerNet, TransformerArch, list[str]]:
    """The transformation network of one of our Johnson runs / checkpoints (``nets["transformer"]``,
    output convention from its config) or of a fast_neural_style file (output ``clamp``, legacy
    InstanceNorm running statistics dropped) -> (net in eval mode without gradients on the CPU,
    its architecture, the ignored legacy keys). ``output`` overrides the convention."""
    obj = file.obj
    if file.kind == "training":
        if file.method != "johnson":
            raise CheckpointError(f"{file.path} is a {file.method} checkpoint, not a Johnson network; use "
                                  f"--method auto (or {file.method})")
        nets = obj.get("nets")
        sd = nets.get("transformer") if isinstance(nets, dict) else None
        if not is_state_dict(sd):
            raise CheckpointError(f"{file.path}: checkpoint has no nets['transformer'] (found nets: "
                                  f"{sorted(nets) if isinstance(nets, dict) else type(nets).__name__})")
        model = (obj.get("config") or {}).get("model") or {}
        out = output or model.get("output", "tanh")
        what = "nets['transformer']"
    elif file.kind == "johnson-transformer":
        sd = obj["state_dict"] if isinstance(obj, dict) and is_state_dict(obj.get("state_dict")) else obj
        out, what = output or "clamp", "the TransformerNet state_dict"
    else:
        found = f"a {file.method} file ({file.kind})" if file.method else f"a {file.kind} file"
        raise CheckpointError(f"{file.path}: expected a Johnson network (one of our johnson runs, or a "
                              f"fast_neural_style .pth such as candy.pth), found {found}")
    sd = strip_prefixes(sd)
    arch = infer_transformer_arch(sd, output=out, source=file.path)
    clean, ignored = strip_legacy_instance_norm(sd)
    net = TransformerNet.from_arch(arch)
    load_strict(net, clean, file.path, what, describe_transformer(arch))
    net.eval().requires_grad_(False)
    return net, arch, ignored


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
                 style_weights: torch.Tensor | None, opts: MethodOptions, device: torch.device,
                 output_rounding: str = "round") -> None:
        super().__init__(device, opts.amp, opts.label)
        self.net, self.arch, self.ignored, self.file = net.to(device), arch, ignored, file
        self.style_weights = None if style_weights is None else style_weights.to(device)
        self.preserve_color = opts.preserve_color
        self.output_rounding = output_rounding

    @classmethod
    def build(cls, opts: MethodOptions, file: WeightsFile | None, device: torch.device) -> JohnsonMethod:
        if file is None:
            raise MethodError("johnson needs --checkpoint (a johnson run folder, one of its checkpoints, or a "
                              "fast_neural_style file such as candy)")
        if opts.style:
            raise MethodError("a Johnson network learned its style(s) in training and takes no --style image; "
                              "use --method wct, adain or gatys for a new style image")
        s = load(JohnsonTestSettings, opts.config or None, opts.settings)
        autocast_context(device, opts.amp)  # a bad amp / device pair fails before any work
        net, arch, ignored = johnson_transformer(file, None if s.output == "auto" else s.output)
        weights = blend_weights(arch, list(opts.style_weights), file.path)
        return cls(net, arch, ignored, file, weights, opts, device, s.output_rounding)

    @classmethod
    def recognise(cls, obj: Any) -> str:
        sd = obj.get("state_dict") if isinstance(obj, dict) and is_state_dict(obj.get("state_dict")) else obj
        return "johnson-transformer" if is_state_dict(sd) and _is_johnson_transformer(strip_prefixes(sd)) else ""

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
                "styles": self.styles, "style_weights": w, "preserve_color": self.preserve_color,
                "output_rounding": self.output_rounding}

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
        (at least 8), stylized, cropped back, rounded (or truncated: ``output_rounding``) to uint8;
        uint8 crosses the bus (4x less than float)."""
        x = images.to(self.device, non_blocking=True)
        h, w = x.shape[-2:]
        x, top, left = pad_to_multiple(x.float(), 4, 8)
        with autocast_context(self.device, self.amp):
            y = self.net(x, self.style_weights)
        y = y[..., top : top + h, left : left + w].float()
        if self.output_rounding == "truncate":
            # Floored in the network's own [0, 255] units: a /255 * 255 round trip could land a hair
            # under an integer and lose a level that the examples' astype("uint8") keeps.
            if self.preserve_color:
                y = preserve_color(y.div_(255.0).clamp_(0.0, 1.0), images.to(self.device).float() / 255.0).mul_(255.0)
            return y.clamp_(0.0, 255.0).floor_().to(torch.uint8).cpu()
        y = y.div_(255.0).clamp_(0.0, 1.0)
        if self.preserve_color:
            y = preserve_color(y, images.to(self.device).float() / 255.0)
        return unit_to_uint8(y).cpu()
