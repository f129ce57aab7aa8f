"""A run folder belongs to one live trainer, and a fresh run never reuses one that holds a run.

* **Lock.** The trainer (rank 0) holds an exclusive ``flock`` on ``<run>/.lock`` for its whole
  life. The operating system releases it when the process ends, however it ends (SIGKILL
  included), so a dead run never leaves a stale lock; a second trainer on the same folder
  stops at once, naming the holder's PID.
* **Fresh runs.** A run that is not a resume refuses a folder that already holds a run
  (checkpoints, TensorBoard events or a ``config.yaml``) and says how to resume it or choose
  another name; ``--overwrite`` starts afresh and deletes those files (only them).
* **Resumes into another folder** (a checkpoint copied from elsewhere continued with
  ``--output``, or a config naming another run) follow the fresh-run rule: a folder holding a
  different run is never taken over, so its config and checkpoints are never replaced or pruned.
* **Unwritable places** (read-only, a file in the way, a full disk, a name too long) and a
  folder equal to or inside the run's own dataset (``data.root``) are a one-line error before
  any work is done.
* **Nothing left behind.** A run that stops before writing anything (a missing dataset, a bad
  setting found after the folder was made) removes its lock file and the folders it made.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from utils.checkpoint import CKPT_DIR, list_checkpoints, run_folder_of
from utils.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock is skipped (documented)
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
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
        ``inputs``: the folders the run reads, by config key (the run folder may not be in one)."""
        self.path = Path(path)
        self.resume, self.overwrite, self.enabled = str(resume), overwrite, enabled
        self.inputs = {k: Path(v) for k, v in (inputs or {}).items() if str(v)}
        self._lock_fd: int | None = None
        self._made: list[Path] = []  # folders open() created, deepest first
        self._made_lock = False

    def open(self) -> RunFolder:
        if not self.enabled:
            return self
        here = self.path.resolve()
        for key, folder in self.inputs.items():
            if here == folder.resolve() or here.is_relative_to(folder.resolve()):
                raise RunFolderError(f"the run folder {self.path} is inside {key}={folder}: a run never writes among "
                                     f"the images it reads; choose another log.root= or --output")
        missing = [p for p in [self.path, *self.path.parents] if not p.exists()]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot create the run folder {self.path}: {_describe_os_error(e)}; "
                                 f"choose another log.root= or name=") from e
        if not self.path.is_dir():
            raise RunFolderError(f"{self.path} is a file, not a folder; choose another log.root= or name=")
        self._made = missing
        self._lock()
        try:
            config = self.path / RUN_FILES[0]
            if config.is_dir():
                raise RunFolderError(f"{config} is a folder where the run writes its config file; move it away or "
                                     f"choose another name=")
            if not self._continues_itself():
                self._check_fresh()
            self._check_writable()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._lock_fd is None:
            return
        lock = self.path / LOCK_NAME
        try:
            if self._made_lock and [p.name for p in self.path.iterdir()] == [LOCK_NAME]:
                lock.unlink()  # while still holding it: no other trainer can be locking this inode now
                for folder in self._made:
                    folder.rmdir()  # only empty ones: a folder someone else filled meanwhile stays
        except OSError:
            pass
        os.close(self._lock_fd)  # releases the flock
        self._lock_fd = None

    def __enter__(self) -> RunFolder:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------------

    def _lock(self) -> None:
        if fcntl is None:
            return
        path = self.path / LOCK_NAME
        existed = path.exists()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunFolderError(f"cannot write in the run folder {self.path}: {_describe_os_error(e)}; "
                                 f"choose another log.root= or name=") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderError(f"the run folder {self.path} is in use by another trainer (PID {holder}); wait "
                                 f"for it to finish or stop it, or choose another name=") from e
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd, self._made_lock = fd, not existed

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
                    else "the logs of an earlier run")
            whose = f"another run than {self.resume}" if self.resume else "a run"
            raise RunFolderError(
                f"{self.path} already holds {whose} ({what}). Resume it with `python train.py --resume {self.path}`, "
                f"choose another name= (or --output), or pass --overwrite to start afresh (deletes its checkpoints "
                f"and logs)")
        strays = [p for p in [*checkpoints, *events, *config] if p.is_dir() or p.is_symlink()]
        if strays:  # --overwrite deletes the run's own files, never a folder or a link someone put there
            raise RunFolderError(f"{strays[0]} is a {'link' if strays[0].is_symlink() else 'folder'} where a run "
                                 f"keeps a file; move it away (--overwrite deletes only the run's files)")
        for p in [*checkpoints, *events, *config]:
            p.unlink(missing_ok=True)
        for tmp in (self.path / CKPT_DIR).glob(".step_*.tmp") if (self.path / CKPT_DIR).is_dir() else []:
            tmp.unlink(missing_ok=True)
        for folder in (tb, self.path / "samples"):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

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
