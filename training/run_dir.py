"""A run folder belongs to one live trainer, and a fresh run never reuses one that holds a run.

* **Lock.** The trainer (rank 0) holds an exclusive ``flock`` on ``<run>/.lock`` for its whole
  life. The operating system releases it when the process ends, however it ends (SIGKILL
  included), so a dead run never leaves a stale lock; a second trainer on the same folder
  stops at once, naming the holder's PID.
* **Fresh runs.** A run that is not a resume refuses a folder that already holds a run
  (checkpoints, TensorBoard events or a ``config.yaml``) and says how to resume it or choose
  another name; ``--overwrite`` starts afresh and deletes those files (only them), but only once
  the new run's data and settings have passed their checks (:meth:`RunFolder.clear_previous`,
  called by the trainer), so a typo in ``data.root`` never costs the earlier run.
* **Resumes into another folder** (a checkpoint copied from elsewhere continued with
  ``--output``, or a config naming another run) follow the fresh-run rule: a folder holding a
  different run is never taken over, so its config and checkpoints are never replaced or pruned.
* **Unwritable places** (read-only, a file in the way, a full disk, a name too long) and a
  fresh run folder equal to or inside a folder the run reads its images from (``data.root`` or
  its ``trainA/`` ...) are a one-line error before any work is done.
* **Nothing left behind.** A run that stops before writing anything (a missing dataset, a bad
  setting found after the folder was made) removes its lock file and the folders it made, judged
  by the folders the path names, not its spelling (``runs/new/..`` made only ``runs/new``).
* **The lock file is ours.** A ``.lock`` that is a link, a folder or a file holding anything but a
  PID is refused and left untouched (:func:`utils.files.take_lock`).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from utils.checkpoint import CKPT_DIR, list_checkpoints, run_folder_of
from utils.errors import UserError
from utils.files import (
    LOCK_NAME,
    FolderInUseError,
    NotALockError,
    missing_folders,
    release_lock,
    remove_empty_folders,
    take_lock,
)

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock is skipped (documented)
    fcntl = None  # type: ignore[assignment]

RUN_FILES = ("config.yaml",)  # besides checkpoints/ and tb/


class RunFolderError(UserError):
    """The run folder cannot be used; the message says why and what to do."""


def _describe_os_error(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "the disk is full"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (read-only or not yours)"
    if e.errno == errno.ENAMETOOLONG:
        return "the name is too long for the file system"
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return "a file is in the way of the folder"
    return e.strerror or str(e)


class RunFolder:
    """``open()`` makes, checks and locks the folder; ``close()`` releases the lock."""

    def __init__(self, path: str | Path, *, resume: str | Path = "", overwrite: bool = False,
                 enabled: bool = True, inputs: dict[str, str | Path] | None = None) -> None:
        """``resume``: the run folder or checkpoint file the run continues from ("" for a fresh run);
        ``inputs``: the folders the run reads its images from, by config key (a fresh run folder
        may not be in one)."""
        self.path = Path(path)
        self.resume, self.overwrite, self.enabled = str(resume), overwrite, enabled
        self.inputs = {k: Path(v) for k, v in (inputs or {}).items() if str(v)}
        self._lock_fd: int | None = None
        self._made: list[Path] = []  # folders open() created, deepest first
        self._made_lock = False
        self._previous: list[Path] = []  # an earlier run's files --overwrite deletes (clear_previous)

    def open(self) -> RunFolder:
        if not self.enabled:
            return self
        here, itself = self.path.resolve(), self._continues_itself()
        for key, folder in self.inputs.items() if not itself else ():
            if here == folder.resolve() or here.is_relative_to(folder.resolve()):
                raise RunFolderError(f"the run folder {self.path} is inside {key}={folder}: its checkpoints and "
                                     f"samples would lie among the images the run reads; choose another log.root= "
                                     f"or --output")
        missing = missing_folders(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot create the run folder {self.path}: {_describe_os_error(e)}; "
                                 f"choose another log.root= or name=") from e
        if not self.path.is_dir():
            raise RunFolderError(f"{self.path} is a file, not a folder; choose another log.root= or name=")
        self._made = missing
        try:
            self._lock()
            config = self.path / RUN_FILES[0]
            if config.is_dir():
                raise RunFolderError(f"{config} is a folder where the run writes its config file; move it away or "
                                     f"choose another name=")
            if not itself:
                self._check_fresh()
            self._check_writable()
        except BaseException:
            self.close()
            raise
        return self

    def clear_previous(self) -> None:
        """``--overwrite``: delete the earlier run's files found by :meth:`open` (checkpoints, TensorBoard
        events, config.yaml; nothing else). The trainer calls it once its data and settings are checked,
        before it writes anything of its own."""
        if not self._previous:
            return
        for p in self._previous:
            p.unlink(missing_ok=True)
        self._previous = []
        for folder in (self.path / "tb", self.path / "samples"):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def close(self) -> None:
        if self._lock_fd is not None:
            # The lock file is ours when we created it or the folder it is in (a trainer that lost the
            # race to take a new folder's lock may have created the file).
            ours = self._made_lock or self.path.resolve() in self._made
            try:
                alone = ours and [p.name for p in self.path.iterdir()] == [LOCK_NAME]
            except OSError:
                alone = False
            # Removed while still held: a trainer that opened it meanwhile sees the inode change and retries.
            release_lock(self.path, self._lock_fd, remove=alone)
            self._lock_fd = None
            if not alone:
                self._made = []
        remove_empty_folders(self._made)
        self._made = []

    def __enter__(self) -> RunFolder:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------------

    def _lock(self) -> None:
        if fcntl is None:
            return
        try:
            self._lock_fd, self._made_lock = take_lock(self.path, "trainer")
        except FolderInUseError as e:
            raise RunFolderError(f"the run folder {self.path} is in use by another trainer (PID {e.holder}); wait "
                                 f"for it to finish or stop it, or choose another name=") from e
        except NotALockError as e:
            raise RunFolderError(f"{e}; or choose another name=") from e
        except OSError as e:
            raise RunFolderError(f"cannot write in the run folder {self.path}: {_describe_os_error(e)}; "
                                 f"choose another log.root= or name=") from e

    def _continues_itself(self) -> bool:
        """True when the run resumes from this very folder (or a checkpoint file inside it)."""
        if not self.resume:
            return False
        source = Path(self.resume)
        folder = source if source.is_dir() else run_folder_of(source)
        try:
            return folder is not None and folder.resolve() == self.path.resolve()
        except OSError:
            return False

    def _check_fresh(self) -> None:
        checkpoints = list_checkpoints(self.path)
        tb = self.path / "tb"
        events = list(tb.glob("events.out.tfevents.*")) if tb.is_dir() else []
        config = [self.path / n for n in RUN_FILES if (self.path / n).exists()]
        if not (checkpoints or events or config):
            return
        if not self.overwrite:
            what = (f"{len(checkpoints)} checkpoint(s), newest {checkpoints[-1].name}" if checkpoints
                    else "the TensorBoard logs of an earlier run" if events else f"a {RUN_FILES[0]}")
            whose = f"another run than {self.resume}" if self.resume else "a run"
            raise RunFolderError(
                f"{self.path} already holds {whose} ({what}). Resume it with `python train.py --resume {self.path}`, "
                f"choose another name= (or --output), or pass --overwrite to start afresh (deletes its checkpoints, "
                f"TensorBoard logs and {RUN_FILES[0]}, once the new run's data and settings are checked)")
        strays = [p for p in [*checkpoints, *events, *config] if p.is_dir() or p.is_symlink()]
        if strays:  # --overwrite deletes the run's own files, never a folder or a link someone put there
            raise RunFolderError(f"{strays[0]} is a {'link' if strays[0].is_symlink() else 'folder'} where a run "
                                 f"keeps a file; move it away (--overwrite deletes only the run's files)")
        ckpt = self.path / CKPT_DIR
        partial = list(ckpt.glob(".step_*.tmp")) if ckpt.is_dir() else []  # a killed save's
        self._previous = [*checkpoints, *events, *config, *partial]

    def _check_writable(self) -> None:
        """Write and remove a small probe file: a read-only or full folder fails here, not after hours."""
        probe = self.path / f".probe.{os.getpid()}"
        try:
            with open(probe, "wb") as f:
                f.write(b"0" * 4096)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise RunFolderError(f"cannot write in the run folder {self.path}: {_describe_os_error(e)}; "
                                 f"free space or choose another log.root=") from e
        finally:
            probe.unlink(missing_ok=True)
        free = shutil.disk_usage(self.path).free
        if free < 64 * 2**20:
            raise RunFolderError(f"only {free // 2**20} MiB free in {self.path}: a checkpoint may not fit; free space "
                                 f"or choose another log.root=")
