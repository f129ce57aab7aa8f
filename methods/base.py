"""The one interface every translation / style-transfer method implements.

A :class:`Method` turns a batch of content images into outputs of the same size::

    method = load_method(MethodOptions(checkpoint="runs/monet", direction="BtoA"), device="cuda")
    out = method(images)          # uint8 (N, 3, H, W) on the CPU -> uint8 (N, 3, H, W) on the CPU

Style images, for the methods that take them at test time (Gatys, WCT, AdaIN), are given when
the method is built, so their features are computed once. A method also says its name, its
settings and its device (the report prints them), how it sizes its work (:meth:`working_size`),
and a fingerprint of every input that shapes its outputs (:meth:`fingerprint`, so the report
reuses outputs only when nothing changed).

``test.py`` and ``stylize.py`` run a method over folders with :func:`utils.translate.run_folder`;
the report runs every method through that same function, so its seconds per image are what
users get.

From ``--checkpoint`` to a built method (:func:`open_weights`, :func:`load_method`): it may be a
run folder (its newest good checkpoint), one of our checkpoint files, a folder of the CycleGAN
reference's (``latest_net_G_A.pth`` ...), the name of a downloaded pretrained model
(``style_monet``, ``candy``), any foreign weights file a method of the table recognises
(:meth:`Method.recognise`: the file's keys say whose it is), a safetensors file
(:func:`utils.checkpoint.load_file` reads it as a torch file), or an ONNX graph written by
``export.py`` (``*.onnx``: kind and method ``onnx``, run by :mod:`methods.onnx`). A method's
own file builds it from the weights (``build``), so this module imports none of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from data.catalogue import find_pretrained, pretrained_path
from data.image_io import pad_to_multiple, to_model_range, to_uint8
from methods import METHODS, inference_class
from models.color import grey, preserve_color
from options.methods import MethodOptions, validate_method_options
from utils.checkpoint import (
    FORMAT,
    CheckpointError,
    check_format,
    found_keys,
    list_checkpoints,
    load_file,
    load_strict,
    read_training_checkpoint,
)
from utils.device import autocast_context, resolve_amp, resolve_device
from utils.errors import UserError


class MethodError(UserError):
    """A method cannot be built or run with these options; the message says what to change."""


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """Identity of a file's content for output reuse: path, size, mtime and a hash of its first
    and last MiB (cheap for 100 MB checkpoints, and any rewrite changes it)."""
    path = Path(path)
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 1 << 20:  # and the last MiB (overlapping the first for files under 2 MiB)
            f.seek(max(1 << 20, st.st_size - (1 << 20)))
            h.update(f.read())
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_ends": h.hexdigest()}


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


class Method(ABC):
    """Base of every method; see the module docstring for the contract."""

    key = ""  # its name in the method table: cyclegan, cut, gatys, johnson, wct, adain, onnx
    takes_style = False  # True: style images are an input at test time
    needs_checkpoint = True  # False: nothing to load (an optimisation method)

    @classmethod
    def build(cls, opts: MethodOptions, file: WeightsFile | None, device: torch.device) -> Method:
        """The method ``opts`` describe, from ``file`` (what ``--checkpoint`` pointed at, already read
        by :func:`open_weights`; None when the method needs none), on ``device``. Every method of the
        table implements it (:func:`load_method` calls it); a method built directly need not."""
        raise NotImplementedError(f"{cls.__name__}.build: a method of the table builds itself from its options")

    def __init__(self, device: torch.device, amp: str = "off", label: str = "") -> None:
        self.device = device
        # auto -> bf16 or off for this device (utils.device.resolve_amp): what runs, and what the
        # fingerprint records, is the resolved mode; amp_choice says why (test.py prints it).
        self.amp_choice = resolve_amp(amp, device)
        self.amp = self.amp_choice.mode
        self._label = label

    @property
    def name(self) -> str:
        """The report's label for this method (row and column title)."""
        return self._label or self.default_name()

    @abstractmethod
    def default_name(self) -> str: ...

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """What shapes the outputs besides the images, as plain values (the report prints them)."""

    @abstractmethod
    def describe(self) -> str:
        """One line: what was loaded from where, for logs."""

    @abstractmethod
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) in [0, 255], any H and W -> uint8 (N, 3, H, W) on the CPU."""

    def working_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The (width, height) this method works at for an input of ``size`` (default: as is)."""
        return size

    def too_small(self, size: tuple[int, int]) -> str | None:
        """Why an input of working ``size`` (width, height) cannot be processed, or None (default: any size)."""
        return None

    @property
    def keeps_size(self) -> bool:
        """True: outputs are resized back to the input's size when the method worked at another."""
        return True

    @property
    def max_batch(self) -> int | None:
        """The largest batch the method takes at once (None: the caller's batch size)."""
        return None

    def input_files(self) -> list[Path]:
        """Every file the outputs depend on (checkpoint, style images, settings file)."""
        return []

    def fingerprint(self) -> dict[str, Any]:
        """Everything that shapes the outputs: settings, amp, and each input file's fingerprint."""
        return {"method": self.key, "settings": self.settings(), "amp": self.amp,
                "files": [file_fingerprint(p) for p in self.input_files()]}

    @classmethod
    def recognise(cls, obj: Any) -> str:
        """The kind of foreign weights file ``obj`` (a loaded torch file) is, if this method reads it
        (e.g. ``"cyclegan-generator"``), else ``""``. Our own checkpoints say their method themselves."""
        return ""

    @classmethod
    def recognise_path(cls, path: Path) -> Any:
        """A released weights set this method reads by its files' names (a folder, or a file of one
        that ``torch.load`` cannot read, such as a Torch7 ``.t7``), described; else None."""
        return None

    def last_losses(self) -> dict[str, float] | None:
        """Per-batch losses of an optimisation method's last call (Gatys), else None."""
        return None


def build_generator_from(arch: Any, sd: dict[str, torch.Tensor], path: Path, what: str,
                         infer: Callable[[dict[str, torch.Tensor], Path], Any],
                         forced: dict[str, int]) -> tuple[torch.nn.Module, Any, list[str]]:
    """A generator file's network: ``arch`` (read off the file or its run) with the ``forced``
    overrides (``ngf=``, ``n_blocks=``), built, loaded strictly from ``sd``, in eval mode without
    gradients -> (net, arch, ignored legacy keys). When forcing makes the load fail, the error says
    what the file looks like (``infer``)."""
    hint = ""
    if forced:
        arch = dataclasses.replace(arch, **forced)
        try:
            hint = f"The file looks like a {infer(sd, path).describe()}: drop ngf= / n_blocks= (--ngf / --n-blocks)"
        except CheckpointError:
            pass
    try:
        net = arch.build()
    except ValueError as e:
        raise CheckpointError(f"{path}: cannot build the generator ({e})") from e
    ignored = load_strict(net, sd, path, what, arch.describe(), hint)
    net.eval().requires_grad_(False)
    return net, arch, ignored


class GeneratorMethod(Method):
    """A method that is one image-to-image generator in [-1, 1] (CycleGAN's, CUT's): subclasses set
    ``self.generator``, ``self.input_nc`` and ``self.preserve_color``."""

    generator: torch.nn.Module
    input_nc: int
    preserve_color: bool

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> uint8 (N, C', H, W): padded to multiples of 4 (at least 8), translated,
        cropped back. A 1-channel generator gets the luminance; uint8 crosses the bus (4x less than float)."""
        x = images.to(self.device, non_blocking=True)
        if self.input_nc == 1 and x.shape[1] == 3:
            x = grey(x)
        h, w = x.shape[-2:]
        x, top, left = pad_to_multiple(to_model_range(x), 4, 8)
        with autocast_context(self.device, self.amp):
            y = self.generator(x)
        y = y[..., top:top + h, left:left + w].float()
        if self.preserve_color and y.shape[1] == 3 and images.shape[1] == 3:
            content = images.to(self.device).float() / 255.0
            y = preserve_color((y + 1) / 2, content) * 2 - 1
        return to_uint8(y).cpu()


# ------------------------------------------------------------------ from --checkpoint to a method

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
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; give a run folder, a checkpoint or weights file, or "
                              f"a downloaded model's name (`python -m data.download --list` names them)")
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
