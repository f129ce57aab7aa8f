"""From ``--checkpoint`` to a built method: resolve the path, read the file, tell whose it is.

``--checkpoint`` may be a run folder (its newest good checkpoint), one of our checkpoint files,
a folder of the CycleGAN reference's (``latest_net_G_A.pth`` ...), the name of a downloaded
pretrained model (``style_monet``, ``candy``), any foreign weights file a method of the
table recognises (:meth:`methods.base.Method.recognise`: the file's keys say whose it is), a
safetensors file (:func:`utils.checkpoint.load_file` reads it as a torch file), or an ONNX graph
written by ``export.py`` (``*.onnx``: kind and method ``onnx``, run by :mod:`methods.onnx`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.catalogue import find_pretrained, pretrained_path
from methods import METHODS, inference_class
from methods.base import Method, MethodError
from options.methods import MethodOptions, validate_method_options
from utils.checkpoint import (
    FORMAT,
    CheckpointError,
    check_format,
    found_keys,
    list_checkpoints,
    load_file,
    read_training_checkpoint,
)
from utils.device import resolve_device


@dataclass
class WeightsFile:
    """What ``--checkpoint`` pointed at, read: the file, its content and what kind it is.

    ``kind``: ``"training"`` (one of our checkpoints: ``method`` says whose), or a foreign
    layout named by the method that recognised it (``"cyclegan-generator"``,
    ``"johnson-transformer"`` ...).
    """

    path: Path
    obj: Any
    kind: str
    method: str
    source: str  # "run" (newest checkpoint of a run folder), "checkpoint", "state_dict", "pretrained",
    # "exported" (an export.py safetensors file), "onnx", "released" (a released weights set: obj describes it)
    step: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # a training checkpoint's method state


def sniff(obj: Any, first: str = "") -> tuple[str, str]:
    """(kind, method) of a loaded file, or ("unknown", ""). Each method of the table is asked in
    turn (``first`` before the others), so a file of one method never imports the rest."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return "training", str(obj.get("method", "cyclegan"))
    for name in sorted(METHODS, key=lambda n: n != first):
        kind = inference_class(name).recognise(obj)
        if kind:
            return kind, name
    return "unknown", ""


# A reference checkpoint folder holds these (latest_net_G.pth: its test-only models).
_REF_FILES: dict[str, tuple[str, ...]] = {"AtoB": ("latest_net_G_A.pth", "latest_net_G.pth"),
                                          "BtoA": ("latest_net_G_B.pth", "latest_net_G.pth")}


def _released(path: Path, method: str) -> WeightsFile | None:
    """A released weights set at ``path`` that a method of the table reads (``method`` asked first)."""
    for name in sorted(METHODS, key=lambda n: n != method):
        found = inference_class(name).recognise_path(path)
        if found is not None:
            return WeightsFile(path, found, "released", name, "released")
    return None


def open_weights(checkpoint: str | Path, direction: str = "AtoB", method: str = "") -> WeightsFile:
    """Resolve and read ``--checkpoint``: run folder, file, reference folder or pretrained name."""
    path = Path(checkpoint)
    source = "checkpoint"
    if not path.exists() and re.fullmatch(r"[\w.-]+", str(checkpoint)):
        found = find_pretrained(str(checkpoint))
        if found is None:
            expected = pretrained_path(str(checkpoint))
            where = (f"`python -m data.download {checkpoint}`, or offline put the file at {expected}" if expected
                     else "`python -m data.download NAME`; `python -m data.download --list` names them")
            raise CheckpointError(f"--checkpoint {checkpoint}: no such file or folder, and no downloaded pretrained "
                                  f"model of that name (get one with {where})")
        path, source = found, "pretrained"
    if path.is_dir():
        if list_checkpoints(path):
            ckpt = read_training_checkpoint(path)
            return WeightsFile(ckpt.path, {"format": FORMAT, "method": ckpt.method, "config": ckpt.config,
                                           "nets": ckpt.nets, "counters": ckpt.counters, "extra": ckpt.extra},
                               "training", ckpt.method, "run", ckpt.step, ckpt.config, ckpt.extra)
        ref = next((path / n for n in _REF_FILES.get(direction, ()) if (path / n).is_file()), None)
        if ref is None:
            released = _released(path, method)
            if released is not None:
                return released
            raise CheckpointError(f"{path} is a folder with neither checkpoints/step_*.pt (a run folder) nor "
                                  f"{' or '.join(_REF_FILES.get(direction, ('latest_net_G.pth',)))} "
                                  f"(a reference checkpoint folder), nor a released WCT / AdaIN weights set")
        path = ref
    if path.is_file() and (released := _released(path, method)) is not None:
        return released  # a file of a released set, by its name: the set
    if path.suffix.lower() == ".t7" and path.is_file():  # not named as a released set's file
        raise CheckpointError(f"{path}: a Torch7 file this project reads only as part of a released WCT / AdaIN set "
                              f"(vgg_normalised_conv{{k}}_1.t7 and feature_invertor_conv{{k}}_1.t7, or "
                              f"vgg_normalised.t7 and decoder.t7, in one folder)")
    if path.suffix.lower() == ".onnx":
        if method not in ("", "onnx"):
            raise CheckpointError(f"{path} is an exported ONNX graph, not {method} weights; run it with --method auto "
                                  f"(or onnx)")
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        return WeightsFile(path, None, "onnx", "onnx", "onnx")
    obj = load_file(path)
    kind, method = sniff(obj, method)
    if kind == "training":
        check_format(obj, path)
        counters = obj.get("counters") if isinstance(obj.get("counters"), dict) else {}
        step = counters.get("step") if isinstance(counters.get("step"), int) else None
        if step is None and (m := re.search(r"step_(\d+)\.pt$", path.name)):
            step = int(m.group(1))
        source = "exported" if obj.get("exported") else source  # export.py's safetensors: inference only
        return WeightsFile(path, obj, kind, method, source, step, obj.get("config") or {}, obj.get("extra") or {})
    if kind == "unknown":
        shown = found_keys(obj) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: not a checkpoint this project reads: expected one of our checkpoints "
                              f"('format': {FORMAT!r}), a CycleGAN generator state_dict (keys like model.1.weight), "
                              f"or another method's weights; found {shown}")
    return WeightsFile(path, obj, kind, method, "state_dict" if source == "checkpoint" else source)


def load_method(opts: MethodOptions, device: Any = "auto") -> Method:
    """Build the method ``opts`` describe on ``device`` (``auto``: CUDA when present).

    ``opts.method == "auto"`` reads the method off the checkpoint (our runs say which; foreign
    files are recognised by their keys).
    """
    validate_method_options(opts)
    dev = resolve_device(device)
    name, file = opts.method, None
    needs = name == "auto" or inference_class(name).needs_checkpoint
    if needs and not opts.checkpoint:
        raise MethodError(f"{name} needs --checkpoint (a run folder, a weights file or a downloaded model's name)")
    if needs:
        file = open_weights(opts.checkpoint, opts.direction, "" if name == "auto" else name)
        if name == "auto":
            name = file.method
    return inference_class(name).build(opts, file, dev)
