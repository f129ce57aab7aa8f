"""What each feed-forward method exports: one graph module that takes what users have (images of
any size and batch, uint8 or float) and gives back images in the same convention, its input and
output signature, and the weights a safetensors file holds.

* :class:`GeneratorGraph` (CycleGAN, CUT / FastCUT): ``image`` -> ``output``; the generator's
  [-1, 1] range, the reflection padding to multiples of 4 (at least 8 px) and the crop back are
  inside the graph, exactly as :class:`methods.base.GeneratorMethod` does them.
* :class:`JohnsonGraph`: ``image`` (+ ``style_weights`` (S,) for a multi-style network,
  normalised to sum 1 inside) -> ``output``.
* :class:`AdaINGraph`: ``image``, ``style`` (one style image, any size) and ``alpha`` (a 0-d
  float) -> ``output``: the VGG-19 encoder to relu4_1, AdaIN (in float64, as
  :func:`models.feature_transforms.adain`), the relu4_1 decoder. WCT has no graph: its whitening
  needs an eigendecomposition, which ONNX has no operator for (safetensors only).

Images: ``uint8`` graphs take and return uint8 (N, C, H, W) in [0, 255]; ``float`` graphs float32
(N, C, H, W) in [0, 1]. A graph's padding is computed from the input's shape, so the exported
file takes any height and width at least :attr:`ExportPlan.min_side`.

:func:`plan_export` builds the PyTorch method the way ``test.py`` does (:func:`methods.base.load_method`)
and wraps its networks, so an export and the method it is checked against are one object.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from data.image_io import load_style_images
from methods import METHODS, inference_class
from methods.base import Method, MethodError, open_weights
from methods.johnson import describe_transformer
from models.color import grey
from models.style_losses import resize_longer
from models.wct import ADAIN_LEVEL
from options.methods import MethodOptions, validate_method_options
from utils.checkpoint import FORMAT, VERSION
from utils.device import resolve_device

EXPORT_FORMAT = "cyclegan-export"  # the "format" field of every export's metadata
EXPORT_VERSION = 1
IMAGE_TYPES = ("uint8", "float")
EXPORTABLE = ("cyclegan", "cut", "johnson", "adain", "wct")  # WCT: safetensors only
_GENERATOR_PADDING = "reflection to multiples of 4 (at least 8 px) inside the graph, cropped back"
GRAPH_FREE = {"wct": "WCT's whitening and colouring need an eigendecomposition of each image's feature covariance, "
                     "which ONNX has no operator for (and a traced TorchScript graph would fix the rank cut and the "
                     "sample count at the traced size)"}


# ---------------------------------------------------------------------------------------------
# Padding computed from the traced shape


def _at_least(n: Any, minimum: int) -> Any:
    """max(n, minimum) written with abs(), so a traced size stays a graph value (Python's max would
    compare once at trace time and bake the branch in)."""
    return (n + minimum + abs(n - minimum)) // 2


def graph_pad(x: torch.Tensor, multiple: int, minimum: int) -> tuple[torch.Tensor, Any, Any]:
    """Reflection-pad (N, C, H, W) to multiples of ``multiple``, at least ``minimum`` per side, the
    padding split as :func:`data.image_io.pad_to_multiple` splits it -> (padded, top, left).

    Unlike that function it has no replicate fallback (a shape-dependent branch): reflection needs
    each side's padding below the side, which holds for sides >= the plan's ``min_side``."""
    h, w = x.shape[-2], x.shape[-1]
    ph = _at_least((h + multiple - 1) // multiple * multiple, minimum)
    pw = _at_least((w + multiple - 1) // multiple * multiple, minimum)
    top, left = (ph - h) // 2, (pw - w) // 2
    return F.pad(x, (left, pw - w - left, top, ph - h - top), mode="reflect"), top, left


def _unit_out(y: torch.Tensor, uint8: bool) -> torch.Tensor:
    """float [0, 1] (any values) -> the graph's output convention."""
    y = y.clamp(0.0, 1.0)
    return (y * 255.0).round().to(torch.uint8) if uint8 else y


def _unit_in(x: torch.Tensor, uint8: bool) -> torch.Tensor:
    return x.float() / 255.0 if uint8 else x.float()


# ---------------------------------------------------------------------------------------------
# Graphs


class GeneratorGraph(nn.Module):
    """A [-1, 1] image-to-image generator (CycleGAN's, CUT's) as users call it:
    ``image`` (N, C_in, H, W) -> ``output`` (N, C_out, H, W), uint8 [0, 255] or float [0, 1]."""

    def __init__(self, generator: nn.Module, uint8: bool) -> None:
        super().__init__()
        self.generator, self.uint8 = generator, uint8

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2], image.shape[-1]
        x = image.float() / 127.5 - 1.0 if self.uint8 else image.float() * 2.0 - 1.0
        x, top, left = graph_pad(x, 4, 8)
        y = self.generator(x)[:, :, top:top + h, left:left + w]
        y = y.clamp(-1.0, 1.0)
        return ((y + 1.0) * 127.5).round().to(torch.uint8) if self.uint8 else (y + 1.0) / 2.0


class JohnsonGraph(nn.Module):
    """A Johnson transformation network: ``image`` (N, 3, H, W) [+ ``style_weights`` (S,), any
    non-negative weights, normalised inside] -> ``output`` (N, 3, H, W)."""

    def __init__(self, net: nn.Module, uint8: bool, n_styles: int) -> None:
        super().__init__()
        self.net, self.uint8, self.n_styles = net, uint8, n_styles

    def forward(self, image: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        h, w = image.shape[-2], image.shape[-1]
        x = image.float() if self.uint8 else image.float() * 255.0  # the network's [0, 255]
        x, top, left = graph_pad(x, 4, 8)
        weights = None if style_weights is None else style_weights.float() / style_weights.float().sum()
        y = self.net(x, weights)[:, :, top:top + h, left:left + w]
        return _unit_out(y / 255.0, self.uint8)


def adain_features(fc: torch.Tensor, fs: torch.Tensor, alpha: torch.Tensor, eps: float) -> torch.Tensor:
    """AdaIN with the alpha blend, in float64 (:func:`models.feature_transforms.adain` for one style):
    content (N, C, h, w), style (1 or N, C, h', w') features -> (N, C, h, w) in fc's dtype."""
    f = fc.flatten(2).double()
    centred = f - f.mean(-1, keepdim=True)
    normalised = centred / (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    s = fs.flatten(2).double()
    s_mean = s.mean(-1, keepdim=True)
    s_std = (s - s_mean).pow(2).mean(-1, keepdim=True).sqrt()
    a = alpha.double()
    out = a * (normalised * s_std + s_mean) + (1.0 - a) * f
    return out.reshape(fc.shape).to(fc.dtype)


class AdaINGraph(nn.Module):
    """AdaIN at relu4_1 in one graph: ``image`` (N, 3, H, W), ``style`` (1, 3, H_s, W_s) and ``alpha``
    (0-d float, 1 = fully stylised) -> ``output`` (N, 3, H, W)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, level: str, eps: float, uint8: bool) -> None:
        super().__init__()
        self.encoder, self.decoder, self.level, self.eps, self.uint8 = encoder, decoder, level, eps, uint8

    def forward(self, image: torch.Tensor, style: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2], image.shape[-1]
        x, top, left = graph_pad(_unit_in(image, self.uint8), 8, 8)  # relu4_1 halves three times
        s, _, _ = graph_pad(_unit_in(style, self.uint8), 1, 16)  # as models.wct.StyleFeatures pads a small style
        fc = self.encoder(x, [self.level])[self.level]
        fs = self.encoder(s, [self.level])[self.level]
        y = self.decoder(adain_features(fc, fs, alpha, self.eps))[:, :, top:top + h, left:left + w]
        return _unit_out(y, self.uint8)


# ---------------------------------------------------------------------------------------------
# Signatures and plans


@dataclass
class TensorSpec:
    """One input or output of an exported graph: name, dtype, shape (ints and axis names), range."""

    name: str
    dtype: str  # "uint8" | "float32"
    shape: list[int | str]
    range: list[float] | None
    doc: str = ""

    def line(self) -> str:
        shape = "(" + ", ".join(map(str, self.shape)) + ")"
        rng = f" in [{self.range[0]:g}, {self.range[1]:g}]" if self.range else ""
        return f"{self.name}: {self.dtype} {shape}{rng}" + (f" - {self.doc}" if self.doc else "")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": self.shape, "range": self.range, "doc": self.doc}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(str(d["name"]), str(d["dtype"]), list(d["shape"]), d.get("range"), str(d.get("doc", "")))


def _image_spec(name: str, channels: int, image_type: str, doc: str = "") -> TensorSpec:
    if image_type == "uint8":
        return TensorSpec(name, "uint8", ["N", channels, "H", "W"], [0, 255], doc)
    return TensorSpec(name, "float32", ["N", channels, "H", "W"], [0, 1], doc)


@dataclass
class ExportPlan:
    """Everything an export needs: the built PyTorch method (the reference the file is checked
    against), the graph around its networks (None for WCT), the signature, the safetensors content."""

    method: Method
    key: str  # cyclegan | cut | johnson | adain | wct
    title: str  # one line: what is exported
    image_type: str  # uint8 | float
    graph: nn.Module | None
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    min_side: int  # the smallest height / width the graph takes
    pad: tuple[int, int]  # (multiple, minimum) the graph pads an image's sides to
    padding: str  # how the graph pads, in words
    info: dict[str, Any]  # source, step, arch, direction ... (plain values)
    weights: dict[str, torch.Tensor]  # what a safetensors export holds
    weights_meta: dict[str, str]  # its metadata besides "export"
    weights_doc: str  # what those tensors are, in words
    extra_inputs: Callable[[int], dict[str, torch.Tensor]] = field(default=lambda n: {})  # verification inputs
    style_file: Path | None = None  # the style image the method (and the verification) uses
    _tmp: Any = None  # keeps a generated style image's folder alive

    def __post_init__(self) -> None:
        if self.graph is not None:  # a fresh wrapper is in training mode: BatchNorm would use batch statistics
            self.graph.eval().requires_grad_(False)

    def example(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The graph's positional inputs for a uint8 batch (N, 3, H, W): converted to the graph's
        image type, plus the plan's other inputs, in signature order."""
        x = images
        if self.inputs[0].shape[1] == 1 and x.shape[1] == 3:
            x = grey(x)
        if self.image_type == "float":
            x = x.float() / 255.0
        extra = self.extra_inputs(x.shape[0])
        return (x, *(extra[s.name] for s in self.inputs[1:]))

    def metadata(self, file_format: str, **more: Any) -> dict[str, Any]:
        """The export's description, as written into the file (JSON under the key ``export``)."""
        return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "method": self.key, "title": self.title,
                "file_format": file_format, "image_type": self.image_type,
                "inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs],
                "min_side": self.min_side, "pad_multiple": self.pad[0], "pad_minimum": self.pad[1],
                "padding": self.padding, **self.info, "torch": torch.__version__, **more}

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _generated_style(folder: Path) -> Path:
    """A deterministic 67 x 53 colour picture (smooth gradients + stripes + noise): the style image
    the verification of an AdaIN / WCT export uses when the user gives none."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:53, 0:67].astype(np.float32)
    img = np.stack([127 + 120 * np.sin(xx / 6.0), 127 + 120 * np.cos(yy / 5.0), (xx + yy) * 2.1], -1)
    img = np.clip(img + rng.normal(0, 18, img.shape), 0, 255).astype(np.uint8)
    path = folder / "style.png"
    Image.fromarray(img).save(path)
    return path


def plan_export(opts: MethodOptions, device: Any, image_type: str = "uint8", file: Any = None) -> ExportPlan:
    """Build the method ``opts`` describe (on ``device``) as :func:`methods.base.load_method`
    does, and what exporting it means. ``file``: ``opts.checkpoint`` already opened
    (:func:`methods.base.open_weights`), else it is opened here.

    AdaIN and WCT are built with a style image: ``opts.style`` if given, else a generated one (the
    graph takes the style as an input; the method's style is only what the export is checked against).

    Raises:
        MethodError, CheckpointError: an optimisation method (Gatys), an exported file, bad options.
    """
    if image_type not in IMAGE_TYPES:
        raise MethodError(f"--input-type {image_type}: valid: {', '.join(IMAGE_TYPES)}")
    _check_exportable(opts.method)
    validate_method_options(opts)
    dev = resolve_device(device)
    if not opts.checkpoint:
        raise MethodError(f"{opts.method} needs --checkpoint (a run folder, a weights file or a downloaded model's "
                          f"name)")
    if file is None:
        file = open_weights(opts.checkpoint, opts.direction, "" if opts.method == "auto" else opts.method)
    name = file.method if opts.method == "auto" else opts.method
    if file.kind == "onnx":
        raise MethodError(f"{file.path} is already an exported ONNX graph; export from the run folder or weights "
                          f"file it was made from (test.py --checkpoint {file.path} runs it)")
    _check_exportable(name)
    tmp = None
    if name in ("wct", "adain") and not opts.style:
        tmp = tempfile.TemporaryDirectory(prefix="export-style-")
        opts = replace(opts, style=[str(_generated_style(Path(tmp.name)))])
    try:
        method = inference_class(name).build(opts, file, dev)
        plan = _plan(method, opts, image_type)
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    plan._tmp = tmp
    plan.style_file = Path(opts.style[0]) if opts.style else None
    return plan


def _check_exportable(name: str) -> None:
    if name in METHODS and name not in EXPORTABLE:
        what = ("an optimisation per image (no network to export)" if not METHODS[name].folders
                else "not a method with a network to export")
        raise MethodError(f"{name} is {what}; export one of the feed-forward methods: {', '.join(EXPORTABLE)}")


def _source_info(method: Method) -> dict[str, Any]:
    file = getattr(method, "file", None)
    # Styles, style weights and alpha are the graph's inputs: the method's values were only the check's.
    settings = {k: v for k, v in method.settings().items() if k not in ("styles", "style_weights", "alpha")}
    return {"source": str(file.path) if file is not None else "", "source_kind": file.kind if file else "",
            "step": file.step if file is not None else None, "settings": _json_safe(settings)}


def _plan(method: Method, opts: MethodOptions, image_type: str) -> ExportPlan:
    uint8 = image_type == "uint8"
    _check_exportable(method.key)
    info = _source_info(method)
    if method.key in ("cyclegan", "cut"):
        return _generator_plan(method, info, image_type, uint8)
    if method.key == "johnson":
        return _johnson_plan(method, info, image_type, uint8)
    return _universal_plan(method, opts, info, image_type, uint8)


def _generator_plan(method: Any, info: dict[str, Any], image_type: str, uint8: bool) -> ExportPlan:
    arch = method.loaded.arch
    if method.key == "cyclegan":
        net = method.loaded.name
        what = f"{net} ({'A->B' if net == 'G_A' else 'B->A'})" if net else "generator (as trained)"
        title = f"CycleGAN {what}: {arch.describe()}"
        info.update(net=net, direction=method.direction if net else "as trained")
    else:
        ran = {"AtoB": "A->B", "BtoA": "B->A"}.get(method.loaded.direction, "as trained")
        title = f"{'FastCUT' if method.loaded.mode == 'fastcut' else 'CUT'} generator G ({ran}): {arch.describe()}"
        info.update(net="G", mode=method.loaded.mode, direction=method.loaded.direction or "as trained")
    info["arch"] = arch.describe()
    doc_in = "grey (luminance) images" if arch.input_nc == 1 else "RGB images"
    sd = {k: v.detach().cpu().contiguous() for k, v in method.generator.state_dict().items()}
    return ExportPlan(
        method, method.key, title, image_type, GeneratorGraph(method.generator, uint8),
        [_image_spec("image", arch.input_nc, image_type, doc_in)],
        [_image_spec("output", arch.output_nc, image_type, "translated images, the input's size")],
        min_side=4, pad=(4, 8), padding=_GENERATOR_PADDING,
        info=info, weights=sd, weights_meta={},
        weights_doc=f"the generator's state_dict in the public reference's layout (model.1.weight ...): "
                    f"{arch.describe()}; takes (N, {arch.input_nc}, H, W) in [-1, 1], H and W multiples of 4, "
                    f"returns [-1, 1]")


def _johnson_plan(method: Any, info: dict[str, Any], image_type: str, uint8: bool) -> ExportPlan:
    if method.settings().get("output_rounding") == "truncate":
        raise MethodError("output_rounding=truncate: the exported graph rounds to uint8 (or returns floats with "
                          "--input-type float, which you can truncate yourself); export without it")
    arch, s = method.arch, method.arch.n_styles
    inputs = [_image_spec("image", 3, image_type, "RGB content images")]
    if s > 1:
        inputs.append(TensorSpec("style_weights", "float32", [s], None,
                                 f"blend of the network's {s} styles (>= 0, positive sum; normalised inside; "
                                 f"one-hot = one style)"))
    weights = method.style_weights
    blend = (torch.ones(s) if weights is None else weights.detach().cpu().float()) if s > 1 else None

    def extra(n: int) -> dict[str, torch.Tensor]:
        return {} if blend is None else {"style_weights": blend.to(method.device)}

    info.update(arch=describe_transformer(arch), n_styles=s, output_convention=arch.output)
    sd = {k: v.detach().cpu().contiguous() for k, v in method.net.state_dict().items()}
    file = method.file
    config = file.config if file.kind == "training" else {"model": {"output": arch.output}}
    return ExportPlan(
        method, "johnson", f"Johnson network: {describe_transformer(arch)}", image_type,
        JohnsonGraph(method.net, uint8, s), inputs,
        [_image_spec("output", 3, image_type, "stylised images, the input's size")],
        min_side=4, pad=(4, 8), padding=_GENERATOR_PADDING,
        info=info, weights=sd, weights_meta=_checkpoint_meta("johnson", "transformer", config, file.step),
        weights_doc=f"nets['transformer'] of a johnson checkpoint (fast_neural_style parameter names): "
                    f"{describe_transformer(arch)}; takes (N, 3, H, W) in [0, 255]" +
                    (f" and style weights ({s},) summing to 1" if s > 1 else ""),
        extra_inputs=extra)


def _universal_plan(method: Any, opts: MethodOptions, info: dict[str, Any], image_type: str, uint8: bool
                    ) -> ExportPlan:
    file = method.file
    levels = list(method.levels)
    sd = {k: v.detach().cpu().contiguous() for k, v in method.decoders.state_dict().items()
          if k.split(".", 1)[0] in levels}
    info.update(levels=levels, encoder=method.vgg.label, decoder_width=method.loaded.width)
    meta = _checkpoint_meta("wct", "decoders", file.config, file.step)
    doc = (f"nets['decoders'] of a wct run, the decoders for {', '.join(levels)} (keys like "
           f"relu4_1.body.conv4_1.weight) at width {method.loaded.width:g}; the run's config (its encoder: "
           f"{method.vgg.label}) is in the metadata, the VGG-19 encoder itself is not in the file")
    if method.key == "wct":
        return ExportPlan(method, "wct", f"WCT decoders {', '.join(levels)}", image_type, None, [], [],
                          min_side=0, pad=(1, 1), padding="", info=info, weights=sd, weights_meta=meta, weights_doc=doc)
    if len(method.styles) != 1:
        raise MethodError(f"the AdaIN graph takes one style image; give one --style (got {len(method.styles)})")

    style = load_style_images([method.styles[0]])[0]
    cap = method.style_max_size
    if cap and max(style.shape[-2:]) > cap:
        style = resize_longer(style, cap)
    style_in = (style * 255.0).round().to(torch.uint8) if uint8 else style
    alpha = torch.tensor(float(opts.alpha), dtype=torch.float32)

    def extra(n: int) -> dict[str, torch.Tensor]:
        return {"style": style_in.to(method.device), "alpha": alpha.to(method.device)}

    graph = AdaINGraph(method.encoder, method.decoders[ADAIN_LEVEL], ADAIN_LEVEL, float(method.eps), uint8)
    style_spec = TensorSpec("style", "uint8" if uint8 else "float32", [1, 3, "H_style", "W_style"],
                            [0, 255] if uint8 else [0, 1],
                            "one RGB style image at the size it should be used (test.py scales it to "
                            f"style_max_size {cap} first)")
    alpha_spec = TensorSpec("alpha", "float32", [], [0, 1], "1 = fully stylised, 0 = the content's features")
    info.update(eps=float(method.eps))
    return ExportPlan(
        method, "adain", f"AdaIN (relu4_1): encoder {method.vgg.label}, decoder width {method.loaded.width:g}",
        image_type, graph, [_image_spec("image", 3, image_type, "RGB content images"), style_spec, alpha_spec],
        [_image_spec("output", 3, image_type, "stylised images, the input's size")],
        min_side=9, pad=(8, 8),
        padding="content: reflection to multiples of 8 (at least 8 px); style: to at least 16 px; inside the graph, "
                "cropped back",
        info=info, weights=sd, weights_meta=meta, weights_doc=doc, extra_inputs=extra)


def _checkpoint_meta(method: str, net: str, config: dict[str, Any], step: int | None) -> dict[str, str]:
    """safetensors metadata that makes the file read back as one of our checkpoints with one net
    (:func:`utils.checkpoint.load_file`): the run's config is what its reader needs besides weights."""
    return {"format": FORMAT, "version": str(VERSION), "method": method, "net": net,
            "config": json.dumps(_json_safe(config or {})),
            "counters": json.dumps({"step": step} if step is not None else {})}
