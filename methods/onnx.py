"""An exported ONNX graph (``export.py --format onnx``) as a method: ``test.py --checkpoint model.onnx``
runs a folder through onnxruntime, with every rule of a PyTorch method's run (batches of equal
size, output safety, ``--overwrite``, the gallery), so a user checks an export on their own images.

The graph's ``export`` metadata (:mod:`methods.export`) says what it takes: ``image`` in uint8 or
float, and for a multi-style Johnson network ``style_weights`` (``--style-weights``), for AdaIN one
``style`` image (``--style``, scaled to ``style_max_size`` as the PyTorch method scales it) and
``alpha`` (``--alpha``). ``--preserve-color`` is applied to the graph's output, as the methods do.
A graph without that metadata (not written by export.py) is refused: its inputs cannot be known.

Execution providers: ``--device cpu`` the CPU one; ``cuda`` (``cuda:N``) the CUDA one, which needs
the ``onnxruntime-gpu`` package; ``auto`` CUDA when both torch and onnxruntime see a GPU.
onnxruntime is imported when a graph is opened, not with this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from data.image_io import load_style_images, pad_to_multiple, unit_to_uint8
from methods.base import Method, MethodError, WeightsFile
from models.color import grey, preserve_color
from models.style_losses import resize_longer
from options.config import load
from options.methods import MethodOptions
from options.onnx import ONNXSettings

EXPORT_KEY = "export"  # the metadata key export.py writes
_NUMPY = {"uint8": np.uint8, "float32": np.float32}


def read_export_metadata(session: Any, path: Path) -> dict[str, Any]:
    """The ``export`` JSON of an onnxruntime session's model; MethodError when absent or unreadable."""
    props = session.get_modelmeta().custom_metadata_map
    text = props.get(EXPORT_KEY)
    if not text:
        raise MethodError(f"{path}: an ONNX graph without export.py's metadata (no '{EXPORT_KEY}' entry), so its "
                          f"inputs and value ranges are unknown; run it with onnxruntime directly, or export the "
                          f"model with `python export.py --format onnx`")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise MethodError(f"{path}: its '{EXPORT_KEY}' metadata is not JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != "cyclegan-export":
        raise MethodError(f"{path}: its '{EXPORT_KEY}' metadata is not export.py's (format "
                          f"{meta.get('format') if isinstance(meta, dict) else type(meta).__name__!r})")
    return meta


def providers_for(device: torch.device) -> list[Any]:
    """onnxruntime execution providers for ``device``; MethodError when CUDA is asked for and absent."""
    available = ort.get_available_providers()
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise MethodError(f"--device {device}: this onnxruntime has no CUDA execution provider (providers: "
                              f"{', '.join(available)}); install onnxruntime-gpu, or use --device cpu")
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    if device.type != "cpu":
        raise MethodError(f"--device {device}: onnxruntime runs here on cpu or cuda only")
    return ["CPUExecutionProvider"]


def open_session(path: str | Path, device: torch.device, threads: int = 0) -> Any:
    """An onnxruntime InferenceSession on ``device``'s provider; a bad file is a MethodError."""
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3  # errors only: no provider-placement chatter on stderr
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers_for(device))
    except MethodError:
        raise
    except Exception as e:  # onnxruntime raises its own Fail / InvalidGraph / InvalidProtobuf types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise MethodError(f"{path}: onnxruntime cannot load it ({first[:300]})") from e


class ONNXMethod(Method):
    key = "onnx"

    def __init__(self, session: Any, meta: dict[str, Any], file: WeightsFile, opts: MethodOptions,
                 settings: ONNXSettings, device: torch.device) -> None:
        super().__init__(device, "off", opts.label)
        self.session, self.meta, self.file, self.settings_ = session, meta, file, settings
        self.inputs = {s["name"]: s for s in meta.get("inputs", [])}
        self.image = meta["inputs"][0]
        self.uint8 = self.image["dtype"] == "uint8"
        self.channels = int(self.image["shape"][1])
        self.min_side = int(meta.get("min_side", 1))
        self.pad = (int(meta.get("pad_multiple", 1)), int(meta.get("pad_minimum", 1)))
        self.preserve_color = opts.preserve_color
        self.styles = [Path(s) for s in opts.style]
        self.alpha = opts.alpha
        self.feeds: dict[str, np.ndarray] = {}
        self.style_weights: list[float] | None = None
        self._prepare(opts)
        self.providers = session.get_providers()

    @classmethod
    def build(cls, opts: MethodOptions, file: WeightsFile | None, device: torch.device) -> ONNXMethod:
        if file is None or file.kind != "onnx":
            raise MethodError("onnx needs --checkpoint FILE.onnx (written by export.py --format onnx)")
        if opts.amp in ("bf16", "fp16"):
            raise MethodError(f"--amp {opts.amp}: an ONNX graph runs in the precision it was exported in (fp32); "
                              f"drop --amp")
        s = load(ONNXSettings, opts.config or None, opts.settings)
        session = open_session(file.path, device, s.threads)
        meta = read_export_metadata(session, file.path)
        if not meta.get("inputs") or meta["inputs"][0].get("name") != "image":
            raise MethodError(f"{file.path}: its metadata names no 'image' input")
        return cls(session, meta, file, opts, s, device)

    def _prepare(self, opts: MethodOptions) -> None:
        """The graph's inputs besides the image, from the options, checked once."""
        names = set(self.inputs) - {"image"}
        what = self.meta.get("method", "?")
        if "style" not in names and opts.style:
            raise MethodError(f"{self.file.path} (an exported {what} graph) takes no --style image")
        if "style_weights" in names:
            n = int(self.inputs["style_weights"]["shape"][0])
            w = list(opts.style_weights) or [1.0] + [0.0] * (n - 1)  # as the PyTorch method: style 1
            if len(w) != n:
                raise MethodError(f"--style-weights: {len(w)} weight(s) for a network of {n} styles; give {n}, e.g. "
                                  f"{' '.join(['1'] + ['0'] * (n - 1))} for the first style")
            self.style_weights = [x / sum(w) for x in w]
            self.feeds["style_weights"] = np.asarray(w, dtype=np.float32)
        elif opts.style_weights and "style" not in names:
            raise MethodError(f"{self.file.path} (an exported {what} graph) has no styles to blend: drop "
                              f"--style-weights")
        if "style" in names:
            if len(self.styles) != 1:
                raise MethodError(f"{self.file.path} (an exported AdaIN graph) takes exactly one --style image, got "
                                  f"{len(self.styles)} (blending several styles needs the PyTorch method: export "
                                  f"nothing, run the run folder)")
            if opts.style_weights:
                raise MethodError("--style-weights: the exported AdaIN graph takes one style image: drop them")

            style = load_style_images(self.styles)[0]
            cap = self.settings_.style_max_size
            if cap and max(style.shape[-2:]) > cap:
                style = resize_longer(style, cap)
            style, _, _ = pad_to_multiple(style, 1, 16)  # as models.wct.StyleFeatures pads a small style
            style = unit_to_uint8(style) if self.uint8 else style.float()
            self.feeds["style"] = style.numpy()
        if "alpha" in names:
            self.feeds["alpha"] = np.asarray(opts.alpha, dtype=np.float32)
        unknown = names - {"style_weights", "style", "alpha"}
        if unknown:
            raise MethodError(f"{self.file.path}: inputs {sorted(unknown)} are not ones this command can feed")

    # ------------------------------------------------------------------------------- description

    def default_name(self) -> str:
        return f"ONNX {self.meta.get('title', self.meta.get('method', '')).split(':')[0]}"

    def settings(self) -> dict[str, Any]:
        return {"checkpoint": str(self.file.path), "exported": self.meta.get("method"),
                "title": self.meta.get("title"), "source": self.meta.get("source"), "step": self.meta.get("step"),
                "image_type": self.image["dtype"], "opset": self.meta.get("opset"), "providers": self.providers,
                "styles": [str(s) for s in self.styles], "style_weights": self.style_weights,
                "alpha": self.alpha if "alpha" in self.feeds else None, "preserve_color": self.preserve_color}

    def describe(self) -> str:
        ins = "; ".join(f"{s['name']} {s['dtype']} {tuple(s['shape'])}" for s in self.meta["inputs"])
        return (f"loaded ONNX graph {self.file.path} ({self.meta.get('title', '?')}; exported from "
                f"{self.meta.get('source') or '?'}), opset {self.meta.get('opset', '?')}, onnxruntime "
                f"{self.providers[0]}: {ins}")

    def input_files(self) -> list[Path]:
        return [self.file.path, *self.styles]

    # ------------------------------------------------------------------------------- running

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> uint8 (N, C_out, H, W) on the CPU, through the graph."""
        x = images
        if self.channels == 1 and x.shape[1] == 3:
            x = grey(x)
        h, w = x.shape[-2:]
        top = left = 0
        if min(h, w) < self.min_side:
            # Below the graph's smallest side reflection cannot pad: pad here as the PyTorch methods do
            # (replicate), to sizes the graph then leaves alone.
            x, top, left = pad_to_multiple(x.float(), self.pad[0], max(self.pad[1], self.min_side))
            x = x.round().to(torch.uint8)
        feed = x.numpy() if self.uint8 else (x.float() / 255.0).numpy()
        out = self.session.run(None, {"image": np.ascontiguousarray(feed), **self.feeds})[0]
        y = torch.from_numpy(np.ascontiguousarray(out))[..., top:top + h, left:left + w]
        if self.preserve_color and y.shape[1] == 3 and images.shape[1] == 3:
            unit = y.float() / 255.0 if self.uint8 else y.float()
            return unit_to_uint8(preserve_color(unit, images.float() / 255.0))
        return y if self.uint8 else unit_to_uint8(y)
