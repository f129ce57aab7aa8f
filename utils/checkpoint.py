"""Checkpoint files: atomic writes, safe loads, finding the newest good one in a run folder.

A checkpoint is one ``torch.save``d dict of plain state_dicts and Python values (never a
pickled module), loadable with ``weights_only=True``::

    {"format": "cyclegan-checkpoint", "version": 1, "config": {...resolved config...},
     "nets": {"G_A", "G_B", "D_A", "D_B"}, "optim": {"G", "D"}, "sched": {"G", "D"},
     "scaler": {...} | None, "pools": {"A", "B"}, "counters": {...}, "rng": {...}}

Files live in ``<run>/checkpoints/step_00001234.pt``; the newest ``keep`` are kept.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

FORMAT = "cyclegan-checkpoint"
VERSION = 1
CKPT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")
_UMASK = os.umask(0o022)  # read the process umask (there is no getter) ...
os.umask(_UMASK)  # ... and put it back at once


class CheckpointError(Exception):
    """A checkpoint cannot be written or read; the message names the file and what to do."""


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

    A crash at any moment leaves either the old file or the new one, never half of one.
    A full disk or unwritable folder raises :class:`CheckpointError` and leaves any
    previous file at ``path`` untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint in {path.parent}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            hint = " (disk full: free space and resume)" if e.errno == errno.ENOSPC else ""
            raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}{hint}") from e
        raise


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


def load_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load one checkpoint file safely (``weights_only=True``); clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, zipfile errors...
        msg = str(e)
        text = msg.splitlines()[0] if msg else type(e).__name__
        # Every weights_only failure mentions "weights_only"; only a pickled object names a GLOBAL.
        # Anything else (e.g. "Unsupported operand 255") is a damaged file, not a hostile one.
        found = re.search(r"GLOBAL ([\w.]+)", msg)
        if found or "Unsupported global" in msg:
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"{path} contains pickled Python objects{what}, not plain state_dicts; refusing to load it "
                f"(weights_only=True). Re-save it as a state_dict from trusted code."
            ) from e
        if "WeightsUnpickler error:" in msg:
            detail = msg.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
            text = detail[0] if detail else text
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {text}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, expected a dict of state_dicts")
    return obj


def check_format(ckpt: dict[str, Any], path: str | Path) -> None:
    """Raise unless ``ckpt`` is a full training checkpoint of a version this code reads."""
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a full training checkpoint of this project (no 'format': {FORMAT!r}); "
            f"a bare generator state_dict can be used with test.py, not resumed"
        )
    version = ckpt.get("version")
    if version != VERSION:
        newer = isinstance(version, int) and version > VERSION
        raise CheckpointError(
            f"{path} has checkpoint format version {version}, this code reads version {VERSION}: "
            + ("update the code (git pull) to resume it" if newer
               else "it was written by an older, incompatible version")
        )


def load_training_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    ckpt = load_file(path, map_location)
    check_format(ckpt, path)
    return ckpt


def latest_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint of a run that loads; corrupt newer ones are named and skipped."""
    run_dir = Path(run_dir)
    candidates = list_checkpoints(run_dir)
    if not candidates:
        raise CheckpointError(f"no checkpoints in {run_dir / CKPT_DIR} (is {run_dir} a run folder?)")
    errors = []
    for path in reversed(candidates):
        try:
            return path, load_training_checkpoint(path, map_location)
        except CheckpointError as e:
            if "format version" in str(e):
                raise
            warnings.warn(f"skipping unreadable checkpoint: {e}", stacklevel=2)
            errors.append(str(e))
    raise CheckpointError(f"every checkpoint in {run_dir / CKPT_DIR} is unreadable:\n  " + "\n  ".join(errors))


def resolve_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]]:
    """A run folder -> its newest good checkpoint; a file -> that file (no fallback)."""
    path = Path(path)
    if path.is_dir():
        return latest_checkpoint(path, map_location)
    return path, load_training_checkpoint(path, map_location)


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (and stale temp files)."""
    for path in list_checkpoints(run_dir)[:-keep]:
        path.unlink(missing_ok=True)
    folder = Path(run_dir) / CKPT_DIR
    if folder.is_dir():
        for tmp in folder.glob(".step_*.tmp"):
            tmp.unlink(missing_ok=True)
