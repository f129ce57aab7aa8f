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
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from data.image_io import pad_to_multiple, to_model_range, to_uint8
from models.color import grey, preserve_color
from utils.checkpoint import CheckpointError, load_strict
from utils.device import autocast_context, resolve_amp
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


class Method(ABC):
    """Base of every method; see the module docstring for the contract."""

    key = ""  # registry name: cyclegan, gatys, johnson, wct, adain
    takes_style = False  # True: style images are an input at test time
    needs_checkpoint = True  # False: nothing to load (an optimisation method)

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
