"""Translating images and folders with a trained CycleGAN generator (what ``test.py`` runs).

A generator comes from any of:

* a run folder (``runs/<name>``): its newest readable ``checkpoints/step_*.pt``;
* one of our full training checkpoints: ``nets["G_A"]`` (A -> B) or ``nets["G_B"]`` (B -> A);
* the public reference's plain generator state_dict (``latest_net_G_A.pth``, ``style_monet.pth``,
  ``horse2zebra.pth`` ...), or a folder holding ``latest_net_G_A.pth`` / ``latest_net_G_B.pth``.
  The architecture (ngf, residual blocks, norm, dropout, up-sampling, channels) is read off the
  keys and shapes, so the same file loads whatever options it was trained with.

Every file is read with ``weights_only=True``. Images keep their size: the generator needs
sides that are multiples of 4, so each batch is padded reflectively and the output cropped
back, instead of the reference's fixed 256 x 256 resize.

Public API: :func:`load_generator`, :func:`translate_image`, :func:`translate_batch`,
:func:`translate_folder` (-> :class:`TranslateSummary`), :func:`infer_architecture`,
:func:`write_gallery`, :func:`resolve_device`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import itertools
import os
import re
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import nn
from tqdm import tqdm

from data.image_io import BadImageError, list_images, load_rgb, to_8bit_rgb
from data.unaligned import to_model_range, to_uint8
from models.networks import ResnetGenerator
from options.config import ModelConfig
from utils.checkpoint import CheckpointError, check_format, latest_checkpoint, list_checkpoints, load_file
from utils.device import autocast_context, resolve_device  # noqa: F401 (re-exported)

Direction = Literal["AtoB", "BtoA"]
AmpMode = Literal["off", "bf16", "fp16"]
AlphaMode = Literal["keep", "drop"]

# --format value -> (PIL format, file suffix); "same" keeps each input's own suffix.
OUTPUT_FORMATS: dict[str, tuple[str, str]] = {
    "png": ("PNG", ".png"),
    "jpg": ("JPEG", ".jpg"),
    "webp": ("WEBP", ".webp"),
    "bmp": ("BMP", ".bmp"),
    "tif": ("TIFF", ".tif"),
}
_SUFFIX_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                  ".tiff": "TIFF", ".ppm": "PPM", ".pgm": "PPM"}
_NO_ALPHA_FORMATS = ("JPEG", "BMP", "PPM")
_BROWSER_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")

_GEN_NAME: dict[str, str] = {"AtoB": "G_A", "BtoA": "G_B"}
# What the reference's checkpoints/<name>/ folder holds (latest_net_G.pth: its test-only models).
_REF_FILES: dict[str, tuple[str, ...]] = {"AtoB": ("latest_net_G_A.pth", "latest_net_G.pth"),
                                          "BtoA": ("latest_net_G_B.pth", "latest_net_G.pth")}
_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")
_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.weight$")
_TOP_WEIGHT = re.compile(r"^model\.(\d+)\.(?:conv\.)?weight$")
_STEP_NAME = re.compile(r"step_(\d+)\.pt$")
_MIN_SIDE = 8  # two stride-2 convs leave side/4; the residual blocks' reflection pad needs >= 2 there


class TranslateError(Exception):
    """An error that stops a translation run (bad input path, bad option); the message says what to do."""


# ---------------------------------------------------------------------------------------------
# Loading generators


@dataclass(frozen=True)
class GeneratorArch:
    """The :class:`ResnetGenerator` constructor arguments a state_dict was made with."""

    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    n_blocks: int = 9
    norm: str = "instance"
    dropout: bool = False
    upsample: str = "transpose"

    def describe(self) -> str:
        return (f"ResNet generator ngf={self.ngf}, n_blocks={self.n_blocks}, norm={self.norm}, "
                f"dropout={self.dropout}, upsample={self.upsample}, channels {self.input_nc}->{self.output_nc}")

    def build(self) -> ResnetGenerator:
        return ResnetGenerator(self.input_nc, self.output_nc, self.ngf, self.n_blocks, self.norm,  # type: ignore[arg-type]
                               self.dropout, self.upsample)  # type: ignore[arg-type]


def _shape(t: Any) -> str:
    return "x".join(map(str, t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def _found_keys(sd: dict[str, Any], n: int = 6) -> str:
    keys = list(sd)
    shown = ", ".join(f"{k} ({_shape(sd[k])})" for k in keys[:n])
    return f"{len(keys)} keys: {shown}" + (", ..." if len(keys) > n else "")


def infer_architecture(state_dict: dict[str, torch.Tensor], source: str | Path = "state_dict") -> GeneratorArch:
    """Read a reference-layout generator's architecture off its keys and tensor shapes.

    ``model.1.weight`` is the first 7x7 conv ``(ngf, input_nc, 7, 7)``; each residual block is
    a ``model.N.conv_block.*`` group; norm layers with an affine weight mean BatchNorm, none at
    all (first down-sampling conv at ``model.3``) mean norm "none"; a block whose second conv
    sits one index later holds a Dropout; ``model.N.conv.weight`` means resize-conv up-sampling.
    Raises :class:`CheckpointError` naming what was expected and what was found, with a
    specific message for discriminators and U-Net generators.
    """
    sd = state_dict
    if any(k.startswith("model.model.") for k in sd):
        raise CheckpointError(
            f"{source}: this is a U-Net generator (the reference's --netG unet_256/unet_128, keys model.model.*); "
            f"this project has only the ResNet generator (keys like model.1.weight, model.10.conv_block.1.weight)"
        )
    w0 = sd.get("model.0.weight")
    if isinstance(w0, torch.Tensor) and w0.ndim == 4:
        # A generator's model.0 is a ReflectionPad2d (no weights); a PatchGAN starts with a 4x4 conv.
        raise CheckpointError(
            f"{source}: this is a discriminator, not a generator (model.0 is a {w0.shape[-2]}x{w0.shape[-1]} conv "
            f"with {w0.shape[0]} filters, the PatchGAN layout of D_A / D_B / latest_net_D_A.pth); "
            f"translate with a generator file (G_A / G_B, latest_net_G_A.pth, style_monet.pth)"
        )
    w1 = sd.get("model.1.weight")
    if not isinstance(w1, torch.Tensor) or w1.ndim != 4 or w1.shape[-1] != 7:
        found = f"model.1.weight of shape {_shape(w1)}" if w1 is not None else _found_keys(sd)
        raise CheckpointError(
            f"{source}: not a CycleGAN ResNet generator state_dict: expected keys like model.1.weight "
            f"(a 7x7 conv, ngf x input_nc x 7 x 7) and model.10.conv_block.1.weight; found {found}"
        )
    ngf, input_nc = int(w1.shape[0]), int(w1.shape[1])

    if "model.3.weight" in sd:  # no norm layers: the first down-sampling conv moves up to index 3
        norm = "none"
    elif isinstance(sd.get("model.2.weight"), torch.Tensor):  # affine norm weight: BatchNorm
        norm = "batch"
    else:  # InstanceNorm(affine=False): no tensors, or only stale running stats from old PyTorch
        norm = "instance"

    block_convs: dict[int, list[int]] = {}
    for key in sd:
        if (m := _BLOCK_KEY.match(key)) and sd[key].ndim == 4:
            block_convs.setdefault(int(m.group(1)), []).append(int(m.group(2)))
    blocks = sorted(block_convs)
    if blocks and blocks != list(range(blocks[0], blocks[0] + len(blocks))):
        raise CheckpointError(f"{source}: residual blocks at non-consecutive indices {blocks}; not a ResNet generator")
    dropout = False
    if blocks:
        second = max(block_convs[blocks[0]])
        # pad, conv, [norm], ReLU, [Dropout], pad, conv: the second conv is at 5 (4 without norm), +1 with dropout
        dropout = second == (5 if norm != "none" else 4) + 1

    top = {int(m.group(1)): sd[k] for k in sd if (m := _TOP_WEIGHT.match(k)) and sd[k].ndim == 4}
    output_nc = int(top[max(top)].shape[0])
    upsample = "resize_conv" if any(re.match(r"^model\.\d+\.conv\.weight$", k) for k in sd) else "transpose"
    return GeneratorArch(input_nc, output_nc, ngf, len(blocks), norm, dropout, upsample)


def _normalise_keys(sd: dict[str, Any]) -> dict[str, Any]:
    """Drop wrapper prefixes: ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile)."""
    out = {}
    for key, value in sd.items():
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap_state_dict(obj: dict[str, Any], path: Path, direction: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """A bare state_dict, or one wrapped in ``{"G_A", "G_B", ...}``, ``{"nets": {...}}`` or ``{"state_dict": ...}``."""
    if _is_state_dict(obj):
        return _normalise_keys(obj), None
    name = _GEN_NAME[direction]
    nets = obj["nets"] if isinstance(obj.get("nets"), dict) else obj  # our "nets" dict, saved on its own or not
    if _is_state_dict(nets.get(name)):
        return _normalise_keys(nets[name]), name
    if _is_state_dict(obj.get("state_dict")):
        return _normalise_keys(obj["state_dict"]), None
    raise CheckpointError(
        f"{path}: expected a generator state_dict (tensors under keys like model.1.weight) or one of this "
        f"project's checkpoints ('format': 'cyclegan-checkpoint'); found a dict with "
        f"{_found_keys(obj)}"
    )


def _load_weights(net: nn.Module, sd: dict[str, torch.Tensor], path: Path, what: str, arch: GeneratorArch,
                  hint: str = "") -> list[str]:
    """Strict load with a readable error; returns the ignored InstanceNorm running-stat keys.

    Checkpoints from PyTorch < 0.4 hold running_mean / running_var for InstanceNorm layers,
    which are stat-free now; the reference drops them (``__patch_instance_norm_state_dict``).
    """
    sd = dict(sd)
    ignored = []
    for name, module in net.named_modules():
        if isinstance(module, nn.InstanceNorm2d) and not module.track_running_stats:
            for stat in _NORM_STATS:
                if sd.pop(f"{name}.{stat}", None) is not None:
                    ignored.append(f"{name}.{stat}")
    expected = net.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [f"{k} is {_shape(sd[k])} in the file, {_shape(v)} in the model"
                  for k, v in expected.items() if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (("shape mismatches", mismatched), ("missing keys", missing),
                             ("unexpected keys", unexpected)):
            if items:
                parts.append(f"{label} ({len(items)}): " + "; ".join(items[:4]) + ("; ..." if len(items) > 4 else ""))
        raise CheckpointError(
            f"{path}: {what} does not fit the expected {arch.describe()} "
            f"({len(expected)} tensors); found {len(sd)} tensors. " + ". ".join(parts) + (f". {hint}" if hint else "")
        )
    net.load_state_dict(sd, strict=True)
    return ignored


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """:func:`load_file` after a look at the first bytes, so a text or image file is named as such.

    torch.save writes a zip archive (``PK``) or, before PyTorch 1.6, a pickle (protocol byte
    ``0x80``); anything else would only surface as a confusing unpickling error.
    """
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(4)
        if not head:
            raise CheckpointError(f"{path} is empty (0 bytes), not a checkpoint")
        if not (head.startswith(b"PK") or head.startswith(b"\x80")):
            raise CheckpointError(f"{path} is not a PyTorch checkpoint: expected a torch.save file (a zip archive "
                                  f"or a pickle), found a file starting with {head!r}")
    return load_file(path)


def _step_of(ckpt: dict[str, Any], path: Path) -> int | None:
    counters = ckpt.get("counters")
    if isinstance(counters, dict) and isinstance(counters.get("step"), int):
        return counters["step"]
    m = _STEP_NAME.search(path.name)
    return int(m.group(1)) if m else None


def load_generator(
    checkpoint: str | Path,
    direction: str = "AtoB",
    ngf: int | None = None,
    n_blocks: int | None = None,
    device: str | torch.device = "cpu",
) -> tuple[ResnetGenerator, dict[str, Any]]:
    """Build the generator for ``direction`` from a run folder, a checkpoint or a reference state_dict.

    Args:
        checkpoint: a run folder (newest readable checkpoint), one of our full checkpoints, a
            plain generator state_dict in the reference's layout, or a reference checkpoint
            folder holding ``latest_net_G_A.pth`` / ``latest_net_G_B.pth``.
        direction: ``"AtoB"`` uses G_A, ``"BtoA"`` G_B. A single-generator file translates the
            way it was trained, whatever ``direction`` says (noted in the returned dict).
        ngf, n_blocks: force these instead of what the config / keys say (a mismatch with the
            file is then a clear error).
        device: where the returned network lives (``"auto"`` picks CUDA when present).

    Returns:
        The generator in eval mode, input ``(N, input_nc, H, W)`` in [-1, 1], and a dict:
        ``source`` ("run", "checkpoint" or "state_dict"), ``path`` (the file read), ``net``
        ("G_A" / "G_B" / None), ``direction``, ``step`` (int or None), ``arch`` (constructor
        arguments), ``ignored_keys`` (InstanceNorm running stats dropped), ``note``.

    Raises:
        CheckpointError: missing, truncated or non-checkpoint file, pickled objects, a
            discriminator, or a state_dict of another architecture; the message says what was
            expected and what was found.
    """
    if direction not in _GEN_NAME:
        raise ValueError(f"direction must be AtoB or BtoA, got {direction!r}")
    dev = resolve_device(device)  # a bad device fails before a large file is read
    path = Path(checkpoint)
    source = "checkpoint"
    if path.is_dir():
        if list_checkpoints(path):
            file, obj = latest_checkpoint(path)  # skips (and warns about) unreadable newer files
            source = "run"
        else:
            ref = next((path / n for n in _REF_FILES[direction] if (path / n).is_file()), None)
            if ref is None:
                raise CheckpointError(
                    f"{path} is a folder with neither checkpoints/step_*.pt (a run folder) nor "
                    f"{' or '.join(_REF_FILES[direction])} (a reference checkpoint folder)"
                )
            file, obj = ref, _read_checkpoint(ref)
    else:
        file, obj = path, _read_checkpoint(path)

    note = ""
    step = None
    if "format" in obj:
        check_format(obj, file)
        net_name: str | None = _GEN_NAME[direction]
        nets = obj.get("nets")
        if not isinstance(nets, dict) or not _is_state_dict(nets.get(net_name)):
            raise CheckpointError(f"{file}: checkpoint has no generator nets[{net_name!r}] (found nets: "
                                  f"{sorted(nets) if isinstance(nets, dict) else type(nets).__name__})")
        sd = _normalise_keys(nets[net_name])
        model_cfg = {**dataclasses.asdict(ModelConfig()), **(obj.get("config") or {}).get("model", {})}
        # G_B maps the B side back to A, so its channel counts are G_A's swapped (as the trainer builds it).
        in_nc, out_nc = model_cfg["input_nc"], model_cfg["output_nc"]
        if net_name == "G_B":
            in_nc, out_nc = out_nc, in_nc
        arch = GeneratorArch(in_nc, out_nc, model_cfg["ngf"], model_cfg["n_blocks"], model_cfg["norm"],
                             model_cfg["dropout"], model_cfg["upsample"])
        step = _step_of(obj, file)
        what = f"nets[{net_name!r}]"
    else:
        sd, net_name = _unwrap_state_dict(obj, file, direction)
        source = "state_dict"
        arch = infer_architecture(sd, file)
        what = "the generator state_dict"
        if net_name is None:
            note = "single generator file: it translates in the direction it was trained, whatever --direction says"

    forced = {k: v for k, v in (("ngf", ngf), ("n_blocks", n_blocks)) if v is not None}
    hint = ""
    if forced:
        arch = dataclasses.replace(arch, **forced)
        with contextlib.suppress(CheckpointError):
            hint = f"The file looks like a {infer_architecture(sd, file).describe()}: drop --ngf / --n-blocks"
    try:
        net = arch.build()
    except ValueError as e:
        raise CheckpointError(f"{file}: cannot build the generator ({e})") from e
    ignored = _load_weights(net, sd, file, what, arch, hint)
    net.eval().requires_grad_(False)
    net.to(dev)
    info = {"source": source, "path": str(file), "net": net_name, "direction": direction, "step": step,
            "arch": dataclasses.asdict(arch), "ignored_keys": ignored, "note": note}
    return net, info


def describe_loaded(info: dict[str, Any]) -> str:
    """One line for logs: what was loaded from where."""
    net = f"{info['net']} ({'A->B' if info['net'] == 'G_A' else 'B->A'})" if info["net"] else "generator"
    step = f", step {info['step']}" if info["step"] is not None else ""
    extra = f"; ignored {len(info['ignored_keys'])} InstanceNorm running-stat keys" if info["ignored_keys"] else ""
    arch = GeneratorArch(**info["arch"]).describe()
    return f"loaded {net} from {info['path']} ({info['source']}{step}): {arch}{extra}"


# ---------------------------------------------------------------------------------------------
# Devices and precision


# ---------------------------------------------------------------------------------------------
# Tensors


def padded_size(height: int, width: int) -> tuple[int, int]:
    """The size a ``height x width`` image is padded to: multiples of 4, at least 8."""
    return max(_MIN_SIDE, -(-height // 4) * 4), max(_MIN_SIDE, -(-width // 4) * 4)


def _pad(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = padded_size(h, w)
    top, left = (ph - h) // 2, (pw - w) // 2  # split the padding so both borders see the same context
    pads = (left, pw - w - left, top, ph - h - top)
    if pads == (0, 0, 0, 0):
        return x, 0, 0
    # Reflection needs each pad smaller than the side; only images under ~8 px fall back to edge copies.
    mode = "reflect" if max(pads[:2]) < w and max(pads[2:]) < h else "replicate"
    return F.pad(x, pads, mode=mode), top, left


def _device_of(generator: nn.Module) -> torch.device:
    return next(itertools.chain(generator.parameters(), generator.buffers()), torch.empty(0)).device


def _in_channels(generator: nn.Module) -> int:
    for module in generator.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise TypeError("generator has no Conv2d layer")


@torch.inference_mode()
def translate_batch(generator: nn.Module, images: torch.Tensor, device: str | torch.device | None = None,
                    amp: str = "off") -> torch.Tensor:
    """Translate a batch of equal-size images of any size.

    Args:
        generator: in eval mode, on ``device`` (None: wherever its parameters are).
        images: uint8 ``(N, input_nc, H, W)`` in [0, 255] (on any device), any H, W >= 1.

    Returns:
        uint8 ``(N, output_nc, H, W)`` on the CPU: the batch is padded reflectively to
        multiples of 4 (at least 8), translated, and cropped back to H x W.
    """
    device = _device_of(generator) if device is None else resolve_device(device)
    ctx = autocast_context(device, amp)
    x = to_model_range(images.to(device, non_blocking=True))  # uint8 crosses the bus: 4x less than float
    h, w = x.shape[-2:]
    x, top, left = _pad(x)
    with ctx:
        y = generator(x)
    return to_uint8(y[..., top:top + h, left:left + w]).cpu()


# ---------------------------------------------------------------------------------------------
# Images


def working_size(size: tuple[int, int], load_size: int | None = None, max_size: int | None = None) -> tuple[int, int]:
    """The ``(width, height)`` an image is translated at (the output is resized back to ``size``).

    ``load_size``: scale so the shorter side is ``load_size`` (e.g. the 256 a model was trained
    at). ``max_size``: then, if the longer side is still above ``max_size``, scale it down to
    that (memory cap for huge images). Neither: the image's own size.
    """
    w, h = size
    scale = load_size / min(w, h) if load_size else 1.0
    if max_size and max(w, h) * scale > max_size:
        scale = max_size / max(w, h)
    if scale == 1.0:
        return size
    return max(1, round(w * scale)), max(1, round(h * scale))


def split_alpha(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)
                ) -> tuple[Image.Image, Image.Image | None]:
    """Any-mode image -> (8-bit RGB composited on ``background``, alpha channel or None).

    None when the image has no transparency or is fully opaque.
    """
    alpha = None
    if "A" in img.getbands() or "transparency" in img.info:
        with contextlib.suppress(ValueError, OSError):  # exotic modes without an RGBA conversion: no alpha
            a = img.convert("RGBA").getchannel("A")
            alpha = None if a.getextrema() == (255, 255) else a
    return to_8bit_rgb(img, background), alpha


def read_image(path: str | Path, alpha: str = "keep", background: tuple[int, int, int] = (255, 255, 255)
               ) -> tuple[Image.Image, Image.Image | None]:
    """Decode a file (EXIF orientation applied) -> (8-bit RGB, alpha or None). Raises BadImageError."""
    rgb = load_rgb(path, background)
    if alpha == "drop":
        return rgb, None
    with Image.open(path) as img:  # second decode only for files that declare transparency
        if not ("A" in img.getbands() or "transparency" in img.info):
            return rgb, None
        img.load()
        return rgb, split_alpha(ImageOps.exif_transpose(img), background)[1]


def _to_input(rgb: Image.Image, nc: int, work: tuple[int, int]) -> torch.Tensor:
    """RGB PIL -> uint8 (nc, h, w) at the working size."""
    if work != rgb.size:
        rgb = rgb.resize(work, Image.Resampling.BICUBIC)
    if nc == 1:
        rgb = rgb.convert("L")
    elif nc != 3:
        raise TranslateError(f"the generator takes {nc} input channels; only 1 (grey) or 3 (RGB) can come from images")
    arr = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1).copy()).permute(2, 0, 1)


def _to_output(y: torch.Tensor, size: tuple[int, int], alpha: Image.Image | None) -> Image.Image:
    """uint8 (C, h, w) -> PIL at ``size`` (bicubic if it was translated at another size), alpha re-attached."""
    arr = y.permute(1, 2, 0).numpy()
    if arr.shape[2] not in (1, 3):
        raise TranslateError(f"the generator gives {arr.shape[2]} channels; only 1 or 3 can be saved as an image")
    img = Image.fromarray(np.ascontiguousarray(arr[:, :, 0] if arr.shape[2] == 1 else arr))  # uint8: L or RGB
    if img.size != size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    if alpha is not None:
        img.putalpha(alpha)  # RGB -> RGBA, L -> LA
    return img


def translate_image(generator: nn.Module, img: Image.Image, device: str | torch.device | None = None, amp: str = "off",
                    *, alpha: str = "keep", load_size: int | None = None, max_size: int | None = None,
                    background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Translate one PIL image of any mode and size; the result has ``img.size``.

    The image is converted to 8-bit RGB (transparency composited on ``background``), mapped to
    [-1, 1], translated, and returned as RGB (L for a 1-channel generator); with
    ``alpha="keep"`` an input's alpha channel is put back (RGBA / LA). EXIF orientation is
    not applied here (:func:`read_image` does that for files). ``device`` None: the
    generator's own device.
    """
    rgb, a = split_alpha(img, background)
    if alpha == "drop":
        a = None
    x = _to_input(rgb, _in_channels(generator), working_size(rgb.size, load_size, max_size))
    y = translate_batch(generator, x.unsqueeze(0), device, amp)[0]
    return _to_output(y, rgb.size, a)


# ---------------------------------------------------------------------------------------------
# Folders


@dataclass
class TranslateSummary:
    """What :func:`translate_folder` did.

    ``pairs``: (input, output) for every image whose output now exists (translated now or
    skipped because it was already there), in input order. ``failed``: (input, reason).
    """

    translated: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    images_per_s: float = 0.0
    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    output: Path | None = None

    def line(self) -> str:
        return (f"translated {self.translated}, skipped {self.skipped} (already there), failed {len(self.failed)} "
                f"in {self.seconds:.1f} s ({self.images_per_s:.2f} images/s) -> {self.output}")


@dataclass
class _Item:
    index: int
    src: Path
    dst: Path
    x: torch.Tensor | None = None  # uint8 (C, h, w) at the working size
    size: tuple[int, int] = (0, 0)  # the input's (width, height), EXIF orientation applied
    alpha: Image.Image | None = None
    error: str = ""


def plan_outputs(input: str | Path, output: str | Path, recursive: bool = False, fmt: str = "png"
                 ) -> list[tuple[Path, Path]]:
    """(input file, output file) for every image: same relative path and name, suffix by ``fmt``.

    Inputs whose names would collide (``a.jpg`` and ``a.png`` -> ``a.png``) keep their old
    suffix in the name (``a.jpg.png``, ``a.png.png``). Files under ``output`` are not inputs,
    so an output folder inside the input folder is not translated again on the next run.
    """
    src, out = Path(input), Path(output)
    if fmt != "same" and fmt not in OUTPUT_FORMATS:
        raise TranslateError(f"unknown output format {fmt!r}; valid: same, {', '.join(OUTPUT_FORMATS)}")
    if src.is_file():
        root, files = src.parent, [src]
    elif src.is_dir():
        root = src
        out_resolved = out.resolve()
        files = [p for p in list_images(src, recursive) if not p.resolve().is_relative_to(out_resolved)]
    else:
        raise TranslateError(f"input {src} does not exist (give a folder of images or one image file)")

    def name(rel: Path, keep_suffix: bool) -> Path:
        if fmt == "same":
            return rel
        suffix = OUTPUT_FORMATS[fmt][1]
        return rel.with_name(rel.name + suffix) if keep_suffix else rel.with_suffix(suffix)

    rels = [f.relative_to(root) for f in files]
    counts: dict[Path, int] = {}
    for rel in rels:
        counts[name(rel, False)] = counts.get(name(rel, False), 0) + 1
    plan = [(f, out / name(rel, counts[name(rel, False)] > 1)) for f, rel in zip(files, rels, strict=True)]
    for f, dst in plan:
        if dst.resolve() == f.resolve():
            raise TranslateError(f"output {dst} would overwrite its input; choose another --output or --format")
    return plan


def _prefetch(pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Iterable[Any], depth: int) -> Iterator[Any]:
    """``map(fn, items)`` on the pool with at most ``depth`` in flight (bounded memory), in order."""
    it = iter(items)
    queue: deque[Future] = deque(pool.submit(fn, item) for item in itertools.islice(it, depth))
    while queue:
        fut = queue.popleft()
        for item in itertools.islice(it, 1):
            queue.append(pool.submit(fn, item))
        yield fut.result()


def _save(img: Image.Image, dst: Path, quality: int) -> None:
    """Write via a temp file + rename: an interrupted run never leaves a half file that a rerun would skip."""
    fmt = _SUFFIX_FORMAT.get(dst.suffix.lower(), "PNG")
    if fmt in _NO_ALPHA_FORMATS and img.mode in ("RGBA", "LA"):
        img = img.convert(img.mode[:-1])
    params: dict[str, Any] = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        img.save(tmp, format=fmt, **params)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and ("out of memory" in str(e) or "can't allocate memory" in str(e)))


def translate_folder(
    generator: nn.Module,
    input: str | Path,
    output: str | Path,
    *,
    device: str | torch.device | None = None,
    amp: str = "off",
    recursive: bool = False,
    batch_size: int = 4,
    fmt: str = "png",
    quality: int = 95,
    overwrite: bool = False,
    alpha: str = "keep",
    load_size: int | None = None,
    max_size: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
    workers: int = 2,
    progress: bool = True,
    gallery: bool = False,
    gallery_title: str = "CycleGAN translations",
) -> TranslateSummary:
    """Translate every image of a folder (or one image file) into ``output``.

    Each output keeps its input's relative path and name (suffix from ``fmt``: png, jpg, webp,
    bmp, tif or same) and its exact size. Images of equal working size are batched
    (``batch_size``); decoding and encoding run on ``workers`` threads while the generator runs.
    Existing outputs are skipped unless ``overwrite``. An unreadable file (empty, truncated,
    not an image) or one too large for memory is recorded in ``failed`` with the reason and the
    run goes on. ``gallery`` writes ``output/index.html`` (input | output per row).

    Raises:
        TranslateError: the input does not exist, an output would overwrite its input, or a
            bad option. ValueError: an unusable device / amp combination.
    """
    if batch_size < 1:
        raise TranslateError(f"batch size must be >= 1, got {batch_size}")
    if alpha not in ("keep", "drop"):
        raise TranslateError(f"alpha must be keep or drop, got {alpha!r}")
    for name, value in (("load size", load_size), ("max size", max_size)):
        if value is not None and value < 1:
            raise TranslateError(f"{name} must be >= 1, got {value}")
    device = _device_of(generator) if device is None else resolve_device(device)
    autocast_context(device, amp)  # bad amp / device pairs fail before any work
    nc = _in_channels(generator)
    out_root = Path(output)
    plan = plan_outputs(input, out_root, recursive, fmt)

    t0 = time.perf_counter()
    summary = TranslateSummary(output=out_root)
    done: dict[int, tuple[Path, Path]] = {}
    todo: list[_Item] = []
    for i, (src, dst) in enumerate(plan):
        if dst.exists() and not overwrite:
            summary.skipped += 1
            done[i] = (src, dst)
        else:
            todo.append(_Item(i, src, dst))
    bar = tqdm(total=len(plan), unit="img", disable=not progress, dynamic_ncols=True)
    bar.update(summary.skipped)

    def load(item: _Item) -> _Item:
        try:
            rgb, item.alpha = read_image(item.src, alpha, background)
            item.size = rgb.size
            item.x = _to_input(rgb, nc, working_size(rgb.size, load_size, max_size))
        except BadImageError as e:
            item.error = e.reason
        except (MemoryError, Image.DecompressionBombError) as e:
            item.error = f"too large to load ({e}); use --max-size"
        return item

    def fail(item: _Item, reason: str) -> None:
        summary.failed.append((str(item.src), reason))
        bar.update(1)

    def finish(item: _Item, y: torch.Tensor) -> None:
        _save(_to_output(y, item.size, item.alpha), item.dst, quality)

    saves: deque[tuple[_Item, Future]] = deque()

    def reap(limit: int) -> None:
        while saves and (len(saves) > limit or saves[0][1].done()):
            item, fut = saves.popleft()
            try:
                fut.result()
            except OSError as e:
                fail(item, f"cannot write {item.dst}: {e.strerror or e}")
                continue
            summary.translated += 1
            done[item.index] = (item.src, item.dst)
            bar.update(1)

    def run(batch: list[_Item], pool: ThreadPoolExecutor) -> None:
        try:
            ys = translate_batch(generator, torch.stack([it.x for it in batch]), device, amp)
        except Exception as e:
            if not _is_oom(e):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) > 1:  # maybe only the batch is too big: retry one by one
                for item in batch:
                    run([item], pool)
                return
            w, h = batch[0].x.shape[-1], batch[0].x.shape[-2]
            fail(batch[0], f"out of memory translating {w}x{h}; use --max-size (e.g. 1024) or a smaller --batch-size")
            return
        for item, y in zip(batch, ys, strict=True):
            item.x = None  # free the input while the save is queued
            saves.append((item, pool.submit(finish, item, y)))
        reap(limit=4 * batch_size + workers)

    max_pending = 4 * batch_size
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        buckets: dict[tuple[int, ...], list[_Item]] = {}
        for item in _prefetch(pool, load, todo, depth=2 * batch_size + workers):
            if item.error:
                fail(item, item.error)
                continue
            key = tuple(item.x.shape)
            buckets.setdefault(key, []).append(item)
            if len(buckets[key]) >= batch_size:
                run(buckets.pop(key), pool)
            elif sum(map(len, buckets.values())) > max_pending:
                # Many different sizes: flush the fullest bucket rather than hold every image in memory.
                run(buckets.pop(max(buckets, key=lambda k: len(buckets[k]))), pool)
        for key in list(buckets):
            run(buckets.pop(key), pool)
        reap(limit=0)
    bar.close()

    summary.pairs = [done[i] for i in sorted(done)]
    summary.seconds = time.perf_counter() - t0
    summary.images_per_s = summary.translated / summary.seconds if summary.seconds > 0 else 0.0
    if gallery:
        write_gallery(out_root, summary.pairs, summary.failed, title=gallery_title)
    return summary


# ---------------------------------------------------------------------------------------------
# Gallery


def _href(target: Path, base: Path) -> str:
    return urllib.parse.quote(Path(os.path.relpath(target.resolve(), base.resolve())).as_posix())


def write_gallery(output: str | Path, pairs: list[tuple[Path, Path]], failed: list[tuple[str, str]] | None = None,
                  title: str = "CycleGAN translations", background: tuple[int, int, int] = (255, 255, 255)) -> Path:
    """Write ``output/index.html``: one row per (input, output) pair, input | output, links relative.

    Inputs a browser cannot show (TIFF, PPM, 16-bit ...) get an 8-bit PNG copy under
    ``output/_gallery_inputs/``. Images load lazily, so thousands of rows stay usable.
    """
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    copies = out / "_gallery_inputs"
    rows = []
    for n, (src, dst) in enumerate(pairs, 1):
        shown = src
        if src.suffix.lower() not in _BROWSER_SUFFIXES:
            shown = copies / dst.relative_to(out).with_suffix(".png")
            if not shown.exists():
                try:
                    _save(load_rgb(src, background), shown, 95)
                except (BadImageError, OSError):
                    shown = src
        s, d = _href(shown, out), _href(dst, out)
        rows.append(
            f'<tr><td class="n">{n}</td><td>{html.escape(str(dst.relative_to(out)))}</td>'
            f'<td><a href="{s}"><img loading="lazy" src="{s}" alt="input"></a></td>'
            f'<td><a href="{d}"><img loading="lazy" src="{d}" alt="output"></a></td></tr>'
        )
    fails = "".join(f"<li>{html.escape(p)}: {html.escape(r)}</li>" for p, r in failed or [])
    page = (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>' + html.escape(title) + "</title>\n<style>"
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:4px 8px;vertical-align:middle;text-align:left}"
        "img{max-width:384px;max-height:384px;display:block}.n{color:#888}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{len(pairs)} images</p>\n"
        "<table><tr><th>#</th><th>name</th><th>input</th><th>output</th></tr>\n" + "\n".join(rows) + "\n</table>\n"
        + (f"<h2>Failed ({len(failed or [])})</h2><ul>{fails}</ul>\n" if fails else "")
        + "</body></html>\n"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
