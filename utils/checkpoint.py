"""Our checkpoint files: atomic writes, safe loads, the training-checkpoint format, pruning.

1. **Files**: atomic writes (temp file + fsync + rename), safe loads (``weights_only=True``, or
   safetensors, which unpickles nothing; first bytes sniffed so a text, image, ONNX or
   TorchScript file is named as such), a run's checkpoint folder.
2. **Our training checkpoints** (format version 2; version 1 files of earlier releases still
   load)::

       {"format": "cyclegan-checkpoint", "version": 2, "method": "cyclegan" | "johnson" | "wct",
        "config": {...resolved config...}, "nets": {name: state_dict}, "optim": {name: ...},
        "sched": {name: ...}, "scaler": {...} | None, "counters": {"epoch", "batch_in_epoch",
        "step", "nonfinite_total"}, "metrics": {name: value}, "skipped_images": [...],
        "rng": {...}, "extra": {...method state, e.g. CycleGAN's image pools...}}

   (The format keeps the name of the project's first method.) Files live in
   ``<run>/checkpoints/step_00001234.pt``; the newest ``checkpoint.keep`` are kept.
3. **State-dict helpers** every method's reader uses: wrapper prefixes, strict loads with a
   readable error. Reading each method's files (ours for inference, and foreign ones such as
   the CycleGAN reference's generators) lives beside that method in ``methods/``; resolving
   ``--checkpoint`` in :mod:`methods.base`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

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
    """Load one weights file safely; clear errors for bad files.

    * torch.save files (a zip archive ``PK`` or, before PyTorch 1.6, a pickle ``0x80``) load with
      ``weights_only=True``; a TorchScript archive is named as such, not unpickled.
    * safetensors files (an 8-byte header length, then a JSON header) load without any pickle:
      one written by ``export.py`` for a method whose reader needs the run's config (its metadata
      says ``format: cyclegan-checkpoint``) reads back as one of our checkpoints holding that one
      net and marked ``"exported"`` (:func:`safetensors_checkpoint`); any other one as its plain
      ``{name: tensor}`` dict, so a state_dict converted to safetensors is read like the ``.pth``.

    Anything else is named for what it is rather than failing in the unpickler.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(9)
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes), not a checkpoint")
    if _is_safetensors(head, path):
        return load_safetensors(path, map_location)
    if not (head.startswith(b"PK") or head.startswith(b"\x80")):
        if path.suffix.lower() == ".onnx":
            raise CheckpointError(f"{path} is an ONNX graph (export.py --format onnx): test.py --checkpoint runs it; "
                                  f"it holds no PyTorch weights to load here")
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: expected a torch.save file (a zip archive, "
                              f"a pickle) or a safetensors file, found a file starting with {head[:4]!r}")
    if head.startswith(b"PK") and _is_torchscript(path):
        raise CheckpointError(f"{path} is a TorchScript module (export.py --format torchscript writes these), not a "
                              f"state_dict: load it with torch.jit.load; here give a checkpoint, a weights file "
                              f"(.pth, .safetensors) or an .onnx export")
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


def is_safetensors_file(path: str | Path) -> bool:
    """True when ``path`` is in the safetensors layout (what :func:`load_file` reads without torch.load)."""
    with open(path, "rb") as f:
        return _is_safetensors(f.read(9), Path(path))


def _is_safetensors(head: bytes, path: Path) -> bool:
    """An 8-byte little-endian header length that fits the file, then ``{``: the safetensors layout."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n <= path.stat().st_size - 8


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/__torch__" in n for n in names)


def load_safetensors(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """A safetensors file -> its ``{name: tensor}`` dict, or (export.py's checkpoint metadata) one of
    our checkpoints holding that one net; see :func:`load_file`."""
    device = str(map_location) if not isinstance(map_location, str) else map_location
    try:
        with safe_open(str(path), framework="pt", device=device) as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    except Exception as e:  # safetensors raises SafetensorError (and OSError) for damaged files
        text = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {text}") from e
    if meta.get("format") == FORMAT:
        return safetensors_checkpoint(tensors, meta, path)
    return tensors


def safetensors_checkpoint(tensors: dict[str, torch.Tensor], meta: dict[str, str], path: str | Path
                           ) -> dict[str, Any]:
    """One net and export.py's metadata (``method``, ``net``, ``config`` and ``counters`` as JSON) ->
    a checkpoint dict the readers of our checkpoints take; ``"exported"`` marks it inference-only."""
    try:
        config = json.loads(meta.get("config") or "{}")
        counters = json.loads(meta.get("counters") or "{}")
        version = int(meta.get("version", VERSION))
        exported = json.loads(meta["export"]) if meta.get("export") else {}
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: its safetensors metadata is damaged ({e})") from e
    if not meta.get("method") or not meta.get("net") or not isinstance(config, dict):
        raise CheckpointError(f"{path}: safetensors metadata says format {FORMAT} but lacks method / net / config")
    return {"format": FORMAT, "version": version, "method": meta["method"], "config": config,
            "nets": {meta["net"]: tensors}, "counters": counters if isinstance(counters, dict) else {},
            "extra": {}, "exported": exported or True}


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
    if ckpt.get("exported"):
        raise CheckpointError(f"{path} is an exported weights file (export.py: the networks for inference, no "
                              f"optimiser or counters); test.py --checkpoint reads it, but a run resumes only from "
                              f"its checkpoints/step_*.pt")
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
# 3. State-dict helpers


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


def shape_of(t: Any) -> str:
    return "x".join(map(str, t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def found_keys(sd: dict[str, Any], n: int = 6) -> str:
    keys = list(sd)
    shown = ", ".join(f"{k} ({shape_of(sd[k])})" for k in keys[:n])
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
    mismatched = [f"{k} is {shape_of(sd[k])} in the file, {shape_of(v)} in the model"
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
