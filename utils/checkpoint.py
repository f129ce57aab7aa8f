"""Every file of weights this project reads or writes, in one module.

Over 400 lines on purpose: one module knows every kind of file the project accepts, so no
format is ever written in two places. Sections:

1. **Files**: atomic writes (temp file + fsync + rename), safe loads (``weights_only=True``,
   first bytes sniffed so a text or image file is named as such), a run's checkpoint folder.
2. **Our training checkpoints** (format version 2; version 1 files of earlier releases still
   load)::

       {"format": "cyclegan-checkpoint", "version": 2, "method": "cyclegan" | "johnson" | "wct",
        "config": {...resolved config...}, "nets": {name: state_dict}, "optim": {name: ...},
        "sched": {name: ...}, "scaler": {...} | None, "counters": {"epoch", "batch_in_epoch",
        "step", "nonfinite_total"}, "metrics": {name: value}, "skipped_images": [...],
        "rng": {...}, "extra": {...method state, e.g. CycleGAN's image pools...}}

   (The format keeps the name of the project's first method.) Files live in
   ``<run>/checkpoints/step_00001234.pt``; the newest ``checkpoint.keep`` are kept.
3. **Weights for inference** (``test.py``, the report): a run folder, one of our checkpoints,
   a name of a downloaded pretrained model (``style_monet``, ``candy``), or a foreign file:
   the public CycleGAN reference's generator state_dicts (``latest_net_G_A.pth``,
   ``style_monet.pth``: the architecture is read off the keys), PyTorch's
   ``examples/fast_neural_style`` networks (``candy.pth`` ...: Johnson et al. 2016, legacy
   InstanceNorm keys dropped), and other methods' files registered through :func:`register_layout`.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import secrets
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.johnson import Output, TransformerArch, TransformerNet
from models.networks import GeneratorArch, ResnetGenerator
from utils.errors import UserError

FORMAT = "cyclegan-checkpoint"
VERSION = 2
READABLE_VERSIONS = (1, 2)
CKPT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(UserError):
    """A checkpoint cannot be written or read; the message names the file and what to do."""


# ---------------------------------------------------------------------------------------------
# 1. Files


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CKPT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint files of a run, oldest first (by step number)."""
    folder = Path(run_dir) / CKPT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename over ``path``.

    A crash at any moment leaves either the old file or the new one, never half of one. A full
    disk or unwritable folder raises :class:`CheckpointError`, removes the temp file and leaves
    any previous file at ``path`` untouched. The temp file is created with mode 0666 so the
    process umask gives it the usual permissions (mkstemp would make it 0600).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint in {path.parent}: {_os_reason(e)}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise CheckpointError(f"cannot write checkpoint {path}: {_os_reason(e)}") from e
        if isinstance(e, RuntimeError):
            # torch's zip writer reports a failed write (ENOSPC, EIO) as a RuntimeError
            # ("[enforce fail at inline_container.cc] ... unexpected pos"), not an OSError.
            free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
            why = "the disk is full: free space and resume" if free < 2**20 else f"write failed ({str(e)[:120]})"
            raise CheckpointError(f"cannot write checkpoint {path}: {why}") from e
        raise


def _os_reason(e: OSError) -> str:
    hint = " (disk full: free space and resume)" if e.errno == errno.ENOSPC else ""
    return f"{e.strerror or e}{hint}"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load one torch file safely (``weights_only=True``); clear errors for bad files.

    torch.save writes a zip archive (``PK``) or, before PyTorch 1.6, a pickle (protocol byte
    ``0x80``); anything else is named for what it is rather than failing in the unpickler.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes), not a checkpoint")
    if not (head.startswith(b"PK") or head.startswith(b"\x80")):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: expected a torch.save file (a zip archive "
                              f"or a pickle), found a file starting with {head!r}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, zipfile errors...
        msg = str(e)
        text = msg.splitlines()[0] if msg else type(e).__name__
        # Every weights_only failure mentions "weights_only"; only a pickled object names a GLOBAL.
        found = re.search(r"GLOBAL ([\w.]+)", msg)
        if found or "Unsupported global" in msg:
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"{path} contains pickled Python objects{what}, not plain state_dicts; refusing to load it "
                f"(weights_only=True). Re-save it as a state_dict from trusted code.") from e
        if "WeightsUnpickler error:" in msg:
            detail = msg.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
            text = detail[0] if detail else text
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {text}") from e


def prune_checkpoints(run_dir: str | Path, keep: int, current_step: int | None = None) -> None:
    """Delete all but the newest ``keep`` checkpoints up to ``current_step`` and stale temp files.

    Checkpoints of a later step than the run's own (a newer one that could not be read, skipped
    on resume) are left alone: they would otherwise outrank, and at once delete, every checkpoint
    the resumed run writes.

    Another process's temp file is left alone: only a live trainer writes into a run folder
    (see :mod:`training.run_dir`), so a foreign temp file is the remains of a killed one, and
    deleting it is harmless but never needed for correctness.
    """
    own = [p for p in list_checkpoints(run_dir)
           if current_step is None or int(_NAME.match(p.name).group(1)) <= current_step]
    for path in own[:-keep]:
        path.unlink(missing_ok=True)
    folder = Path(run_dir) / CKPT_DIR
    if folder.is_dir():
        for tmp in folder.glob(".step_*.tmp"):
            pid = tmp.name.split(".pt.", 1)[-1].split(".", 1)[0]
            if not pid.isdigit() or int(pid) == os.getpid() or not _alive(int(pid)):
                tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------
# 2. Our training checkpoints


def check_format(ckpt: Any, path: str | Path) -> None:
    """Raise unless ``ckpt`` is a full training checkpoint of a version this code reads."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a full training checkpoint of this project (no 'format': {FORMAT!r}); "
            f"a bare generator state_dict can be used with test.py, not resumed")
    version = ckpt.get("version")
    if version not in READABLE_VERSIONS:
        newer = isinstance(version, int) and version > VERSION
        raise CheckpointError(
            f"{path} has checkpoint format version {version}, this code reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}: "
            + ("update the code (git pull) to resume it" if newer
               else "it was written by an older, incompatible version"))


@dataclass
class TrainingCheckpoint:
    """A training checkpoint as the trainer reads it, whatever the format version it was written in."""

    path: Path
    method: str
    config: dict[str, Any]
    nets: dict[str, dict[str, torch.Tensor]]
    optim: dict[str, Any]
    sched: dict[str, Any]
    scaler: dict[str, Any] | None
    counters: dict[str, int]
    metrics: dict[str, float]
    skipped_images: list[str]
    rng: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION

    @property
    def step(self) -> int:
        return int(self.counters.get("step", 0))


def training_state(method: str, config: dict[str, Any], nets: dict[str, nn.Module], optim: dict[str, Any],
                   sched: dict[str, Any], scaler: dict[str, Any] | None, counters: dict[str, int],
                   metrics: dict[str, float], skipped_images: list[str], rng: dict[str, Any],
                   extra: dict[str, Any]) -> dict[str, Any]:
    """The dict :func:`save_atomic` writes for a training checkpoint (the one writer of the format)."""
    return {"format": FORMAT, "version": VERSION, "method": method, "config": config,
            "nets": {name: net.state_dict() for name, net in nets.items()}, "optim": optim, "sched": sched,
            "scaler": scaler, "counters": counters, "metrics": metrics, "skipped_images": skipped_images,
            "rng": rng, "extra": extra}


def _as_training(ckpt: dict[str, Any], path: Path) -> TrainingCheckpoint:
    check_format(ckpt, path)
    try:
        if ckpt["version"] == 1:  # CycleGAN only; pools at the top level; one validation value
            val = ckpt.get("val_metric")
            return TrainingCheckpoint(path, "cyclegan", ckpt["config"], ckpt["nets"], ckpt["optim"], ckpt["sched"],
                                      ckpt.get("scaler"), ckpt["counters"],
                                      {"cycle_l1": val} if val is not None else {}, ckpt.get("skipped_images", []),
                                      ckpt["rng"], {"pools": ckpt["pools"]}, 1)
        return TrainingCheckpoint(path, ckpt["method"], ckpt["config"], ckpt["nets"], ckpt["optim"], ckpt["sched"],
                                  ckpt.get("scaler"), ckpt["counters"], ckpt.get("metrics", {}),
                                  ckpt.get("skipped_images", []), ckpt["rng"], ckpt.get("extra", {}), 2)
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path} is a damaged training checkpoint (missing {e}); resume from an older one") from e


def read_training_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> TrainingCheckpoint:
    """A run folder -> its newest good checkpoint (corrupt newer ones are named and skipped);
    a file -> that file (no fallback)."""
    path = Path(path)
    if not path.is_dir():
        if not path.exists():
            raise CheckpointError(f"resume={path}: no such run folder or checkpoint file")
        return _as_training(load_file(path, map_location), path)
    candidates = list_checkpoints(path)
    if not candidates:
        raise CheckpointError(f"no checkpoints in {path / CKPT_DIR} (is {path} a run folder?)")
    errors = []
    for file in reversed(candidates):
        try:
            return _as_training(load_file(file, map_location), file)
        except CheckpointError as e:
            if "format version" in str(e):
                raise
            warnings.warn(f"skipping unreadable checkpoint: {e}", stacklevel=2)
            errors.append(str(e))
    raise CheckpointError(f"every checkpoint in {path / CKPT_DIR} is unreadable: " + "; ".join(errors))


def run_folder_of(checkpoint_file: Path) -> Path | None:
    """``runs/x/checkpoints/step_1.pt`` -> ``runs/x`` (None for a file outside a run folder)."""
    return checkpoint_file.parent.parent if checkpoint_file.parent.name == CKPT_DIR else None


# ---------------------------------------------------------------------------------------------
# 3. Weights for inference


@dataclass
class WeightsFile:
    """What ``--checkpoint`` pointed at, read: the file, its content and what kind it is.

    ``kind``: ``"training"`` (one of our checkpoints: ``method`` says whose), or a foreign
    layout named by :func:`sniff` (``"cyclegan-generator"``, ``"johnson-transformer"`` ...).
    """

    path: Path
    obj: Any
    kind: str
    method: str
    source: str  # "run" (newest checkpoint of a run folder), "checkpoint", "state_dict", "pretrained"
    step: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # a training checkpoint's method state


# Foreign layouts: (kind, method, predicate over a state_dict). Method modules add theirs.
_SNIFFERS: list[tuple[str, str, Any]] = []


def register_layout(kind: str, method: str, predicate: Any) -> None:
    """Teach :func:`sniff` a foreign file layout (called by the method module that reads it)."""
    if kind not in [k for k, _, _ in _SNIFFERS]:
        _SNIFFERS.append((kind, method, predicate))


def is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def strip_prefixes(sd: dict[str, Any]) -> dict[str, Any]:
    """Drop wrapper prefixes: ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile)."""
    out = {}
    for key, value in sd.items():
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def sniff(obj: Any) -> tuple[str, str]:
    """(kind, method) of a loaded file, or ("unknown", "")."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return "training", str(obj.get("method", "cyclegan"))
    sd = obj.get("state_dict") if isinstance(obj, dict) and is_state_dict(obj.get("state_dict")) else obj
    if is_state_dict(sd):
        sd = strip_prefixes(sd)
        for kind, method, predicate in [("cyclegan-generator", "cyclegan", _is_cyclegan_generator), *_SNIFFERS]:
            if predicate(sd):
                return kind, method
        if all(k.startswith("model.") for k in sd):
            # The reference's layout but not a ResNet generator (a PatchGAN, a U-Net): the CycleGAN
            # reader says exactly what it is and what to give instead.
            return "cyclegan-generator", "cyclegan"
    if isinstance(obj, dict) and isinstance(obj.get("nets"), dict):
        return "nets", "cyclegan"  # our "nets" dict saved on its own
    if isinstance(obj, dict) and any(is_state_dict(obj.get(k)) for k in ("G_A", "G_B")):
        return "nets", "cyclegan"
    return "unknown", ""


# A reference checkpoint folder holds these (latest_net_G.pth: its test-only models).
_REF_FILES: dict[str, tuple[str, ...]] = {"AtoB": ("latest_net_G_A.pth", "latest_net_G.pth"),
                                          "BtoA": ("latest_net_G_B.pth", "latest_net_G.pth")}


def open_weights(checkpoint: str | Path, direction: str = "AtoB") -> WeightsFile:
    """Resolve and read ``--checkpoint``: run folder, file, reference folder or pretrained name."""
    path = Path(checkpoint)
    source = "checkpoint"
    if not path.exists() and re.fullmatch(r"[\w.-]+", str(checkpoint)):
        from data.download import find_pretrained  # a name like style_monet or candy

        found = find_pretrained(str(checkpoint))
        if found is None:
            raise CheckpointError(f"--checkpoint {checkpoint}: no such file or folder, and no downloaded pretrained "
                                  f"model of that name (get one with `python -m data.download {checkpoint}`; "
                                  f"`python -m data.download --list` names them)")
        path, source = found, "pretrained"
    if path.is_dir():
        if list_checkpoints(path):
            ckpt = read_training_checkpoint(path)
            return WeightsFile(ckpt.path, {"format": FORMAT, "method": ckpt.method, "config": ckpt.config,
                                           "nets": ckpt.nets, "counters": ckpt.counters, "extra": ckpt.extra},
                               "training", ckpt.method, "run", ckpt.step, ckpt.config, ckpt.extra)
        ref = next((path / n for n in _REF_FILES.get(direction, ()) if (path / n).is_file()), None)
        if ref is None:
            raise CheckpointError(f"{path} is a folder with neither checkpoints/step_*.pt (a run folder) nor "
                                  f"{' or '.join(_REF_FILES.get(direction, ('latest_net_G.pth',)))} "
                                  f"(a reference checkpoint folder)")
        path = ref
    obj = load_file(path)
    kind, method = sniff(obj)
    if kind == "training":
        check_format(obj, path)
        counters = obj.get("counters") if isinstance(obj.get("counters"), dict) else {}
        step = counters.get("step") if isinstance(counters.get("step"), int) else None
        if step is None and (m := re.search(r"step_(\d+)\.pt$", path.name)):
            step = int(m.group(1))
        return WeightsFile(path, obj, kind, method, source, step, obj.get("config") or {}, obj.get("extra") or {})
    if kind == "unknown":
        shown = _found_keys(obj) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: not a checkpoint this project reads: expected one of our checkpoints "
                              f"('format': {FORMAT!r}), a CycleGAN generator state_dict (keys like model.1.weight), "
                              f"or another method's weights; found {shown}")
    return WeightsFile(path, obj, kind, method, "state_dict" if source == "checkpoint" else source)


def _shape(t: Any) -> str:
    return "x".join(map(str, t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def _found_keys(sd: dict[str, Any], n: int = 6) -> str:
    keys = list(sd)
    shown = ", ".join(f"{k} ({_shape(sd[k])})" for k in keys[:n])
    return f"{len(keys)} keys: {shown}" + (", ..." if len(keys) > n else "")


_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")


def load_strict(net: nn.Module, sd: dict[str, torch.Tensor], path: Path, what: str, expected: str,
                hint: str = "") -> list[str]:
    """Strict load with a readable error; returns the ignored InstanceNorm running-stat keys.

    Checkpoints from PyTorch < 0.4 hold running_mean / running_var for InstanceNorm layers,
    which are stat-free now; the CycleGAN reference drops them (``__patch_instance_norm_state_dict``)
    and so does the fast-neural-style example.
    """
    sd = dict(sd)
    ignored = []
    for name, module in net.named_modules():
        if isinstance(module, nn.InstanceNorm2d) and not module.track_running_stats:
            for stat in _NORM_STATS:
                if sd.pop(f"{name}.{stat}", None) is not None:
                    ignored.append(f"{name}.{stat}")
    own = net.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [f"{k} is {_shape(sd[k])} in the file, {_shape(v)} in the model"
                  for k, v in own.items() if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (("shape mismatches", mismatched), ("missing keys", missing),
                             ("unexpected keys", unexpected)):
            if items:
                parts.append(f"{label} ({len(items)}): " + "; ".join(items[:4]) + ("; ..." if len(items) > 4 else ""))
        raise CheckpointError(f"{path}: {what} does not fit the expected {expected} ({len(own)} tensors); found "
                              f"{len(sd)} tensors. " + ". ".join(parts) + (f". {hint}" if hint else ""))
    net.load_state_dict(sd, strict=True)
    return ignored


# --- CycleGAN generators: ours and the public reference's -------------------------------------

_GEN_NAME = {"AtoB": "G_A", "BtoA": "G_B"}
_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.weight$")
_TOP_WEIGHT = re.compile(r"^model\.(\d+)\.(?:conv\.)?weight$")


def _is_cyclegan_generator(sd: dict[str, torch.Tensor]) -> bool:
    w = sd.get("model.1.weight")
    return isinstance(w, torch.Tensor) and w.ndim == 4 and w.shape[-1] == 7


def infer_cyclegan_arch(sd: dict[str, torch.Tensor], source: str | Path = "state_dict") -> GeneratorArch:
    """Read a reference-layout generator's architecture off its keys and tensor shapes.

    ``model.1.weight`` is the first 7x7 conv ``(ngf, input_nc, 7, 7)``; each residual block is
    a ``model.N.conv_block.*`` group; norm layers with an affine weight mean BatchNorm, none at
    all (first down-sampling conv at ``model.3``) mean norm "none"; a block whose second conv
    sits one index later holds a Dropout; ``model.N.conv.weight`` means resize-conv up-sampling.
    """
    if any(k.startswith("model.model.") for k in sd):
        raise CheckpointError(
            f"{source}: this is a U-Net generator (the reference's --netG unet_256/unet_128, keys model.model.*); "
            f"this project has only the ResNet generator (keys like model.1.weight, model.10.conv_block.1.weight)")
    w0 = sd.get("model.0.weight")
    if isinstance(w0, torch.Tensor) and w0.ndim == 4:
        # A generator's model.0 is a ReflectionPad2d (no weights); a PatchGAN starts with a 4x4 conv.
        raise CheckpointError(
            f"{source}: this is a discriminator, not a generator (model.0 is a {w0.shape[-2]}x{w0.shape[-1]} conv "
            f"with {w0.shape[0]} filters, the PatchGAN layout of D_A / D_B / latest_net_D_A.pth); "
            f"translate with a generator file (G_A / G_B, latest_net_G_A.pth, style_monet.pth)")
    w1 = sd.get("model.1.weight")
    if not _is_cyclegan_generator(sd):
        found = f"model.1.weight of shape {_shape(w1)}" if w1 is not None else _found_keys(sd)
        raise CheckpointError(
            f"{source}: not a CycleGAN ResNet generator state_dict: expected keys like model.1.weight "
            f"(a 7x7 conv, ngf x input_nc x 7 x 7) and model.10.conv_block.1.weight; found {found}")
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
        # pad, conv, [norm], ReLU, [Dropout], pad, conv: the second conv is at 5 (4 without norm), +1 with dropout
        dropout = max(block_convs[blocks[0]]) == (5 if norm != "none" else 4) + 1
    top = {int(m.group(1)): sd[k] for k in sd if (m := _TOP_WEIGHT.match(k)) and sd[k].ndim == 4}
    output_nc = int(top[max(top)].shape[0])
    upsample = "resize_conv" if any(re.match(r"^model\.\d+\.conv\.weight$", k) for k in sd) else "transpose"
    return GeneratorArch(input_nc, output_nc, ngf, len(blocks), norm, dropout, upsample)  # type: ignore[arg-type]


def cyclegan_arch_from_config(model: dict[str, Any], net: str) -> GeneratorArch:
    """The architecture of ``net`` ("G_A" / "G_B") of a run from its ``model`` config section.
    G_B maps B back to A, so its channel counts are G_A's swapped (as the trainer builds it)."""
    from options.cyclegan import ModelConfig

    m = {**dataclasses.asdict(ModelConfig()), **(model or {})}
    in_nc, out_nc = (m["output_nc"], m["input_nc"]) if net == "G_B" else (m["input_nc"], m["output_nc"])
    return GeneratorArch(in_nc, out_nc, m["ngf"], m["n_blocks"], m["norm"], m["dropout"], m["upsample"])


@dataclass
class LoadedGenerator:
    net: ResnetGenerator  # eval mode, no gradients, on the CPU
    arch: GeneratorArch
    name: str | None  # "G_A" / "G_B", or None for a single-generator file
    ignored_keys: list[str]
    note: str = ""


def cyclegan_generator(file: WeightsFile, direction: str, ngf: int | None = None,
                       n_blocks: int | None = None) -> LoadedGenerator:
    """The generator for ``direction`` (AtoB: G_A, BtoA: G_B) from one of our checkpoints or a
    reference state_dict; ``ngf`` / ``n_blocks`` force values instead of the file's."""
    if direction not in _GEN_NAME:
        raise CheckpointError(f"direction must be AtoB or BtoA, got {direction!r}")
    obj, note = file.obj, ""
    name: str | None = _GEN_NAME[direction]
    if file.kind == "training":
        nets = obj.get("nets")
        if not isinstance(nets, dict) or not is_state_dict(nets.get(name)):
            raise CheckpointError(f"{file.path}: checkpoint has no generator nets[{name!r}] (found nets: "
                                  f"{sorted(nets) if isinstance(nets, dict) else type(nets).__name__})")
        sd = strip_prefixes(nets[name])
        arch = cyclegan_arch_from_config((obj.get("config") or {}).get("model", {}), name)
        what = f"nets[{name!r}]"
    elif file.kind == "nets":
        nets = obj["nets"] if isinstance(obj.get("nets"), dict) else obj
        if not is_state_dict(nets.get(name)):
            raise CheckpointError(f"{file.path}: no generator {name!r} in it (found {sorted(nets)})")
        sd = strip_prefixes(nets[name])
        arch, what = infer_cyclegan_arch(sd, file.path), f"{name}"
    else:
        sd = strip_prefixes(obj["state_dict"] if is_state_dict(obj.get("state_dict")) else obj)
        arch, what, name = infer_cyclegan_arch(sd, file.path), "the generator state_dict", None
        note = "single generator file: it translates in the direction it was trained, whatever --direction says"
    forced = {k: v for k, v in (("ngf", ngf), ("n_blocks", n_blocks)) if v is not None}
    hint = ""
    if forced:
        arch = dataclasses.replace(arch, **forced)
        try:
            hint = f"The file looks like a {infer_cyclegan_arch(sd, file.path).describe()}: drop --ngf / --n-blocks"
        except CheckpointError:
            pass
    try:
        net = arch.build()
    except ValueError as e:
        raise CheckpointError(f"{file.path}: cannot build the generator ({e})") from e
    ignored = load_strict(net, sd, file.path, what, arch.describe(), hint)
    net.eval().requires_grad_(False)
    return LoadedGenerator(net, arch, name, ignored, note)


# --- Johnson transformation networks: ours and PyTorch's examples/fast_neural_style -----------

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


register_layout("johnson-transformer", "johnson", _is_johnson_transformer)


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


# --- WCT / AdaIN decoders (universal style transfer runs) -------------------------------------


@dataclass
class LoadedDecoders:
    decoders: nn.ModuleDict  # level -> models.wct.Decoder; eval mode, no gradients, on the CPU
    levels: list[str]  # the levels it has decoders for, fine to coarse
    width: float  # the decoders' channel multiplier (model.width)
    config: dict[str, Any]  # the run's resolved config: the encoder it inverts is under "vgg"


def wct_decoders(file: WeightsFile) -> LoadedDecoders:
    """The decoders of one of our ``wct`` training runs (``nets["decoders"]``, keys like
    ``relu4_1.body.conv4_1.weight``), built at the run's ``model.width`` and loaded strictly."""
    from models.wct import LEVELS, build_decoders

    if file.kind != "training" or file.method != "wct":
        found = f"a {file.method} training checkpoint" if file.kind == "training" else f"a {file.kind} file"
        raise CheckpointError(f"{file.path}: WCT and AdaIN need a decoder run (method: wct), found {found}; train "
                              f"decoders with `python train.py --config experiments/wct_demo.yaml`")
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
