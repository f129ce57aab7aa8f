"""Files a failure cannot spoil, and folders with one writer.

* :func:`write_text_atomic`: a small text file that a failure (a full disk, a kill) never leaves
  half written, nor destroys the previous version of: a temp file in the same folder, then an
  atomic rename; :func:`write_bytes_atomic` the same for bytes, with every byte counted and the
  size on disk checked (images: :func:`data.image_io.save_image` encodes, then calls it).
* :func:`folder_lock`: one live writer per output folder (``flock`` on ``FOLDER/.lock``, taken by
  :func:`take_lock`), as run folders have one live trainer.
* :func:`missing_folders`: what a ``mkdir -p`` would create, so a command that fails early
  removes only those."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from utils.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock is skipped
    fcntl = None  # type: ignore[assignment]


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; on failure the previous file is untouched, the
    temp file removed, and the OSError raised."""
    path = Path(path)
    tmp = path.with_name(f".{os.getpid()}.{path.name[:40]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes_atomic(dst: str | Path, blob: bytes | memoryview) -> None:
    """``dst`` gets exactly ``blob`` or stays as it was: temp file beside it, every byte written and
    counted, fsynced, size checked on disk, renamed. Raises OSError (``ENOSPC`` for a short write)."""
    dst = Path(dst)
    if len(blob) == 0:
        raise OSError(errno.EIO, f"refusing to write an empty file {dst}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{os.getpid()}.{threading.get_ident() % 10**6}.tmp")  # short: a long name still fits
    view = memoryview(blob).cast("B")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            done = 0
            while done < len(view):
                n = os.write(fd, view[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
            os.fsync(fd)
            if os.fstat(fd).st_size != len(view):  # a write that claimed more than reached the disk
                raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (short write: "
                                            f"{os.fstat(fd).st_size} of {len(view)} bytes)")
        finally:
            os.close(fd)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# One writer per folder

LOCK_NAME = ".lock"
_held: dict[str, list[int]] = {}  # resolved lock path -> [fd, depth]: re-entrant within one process
_held_guard = threading.Lock()


class FolderInUseError(UserError):
    """Another live process holds the folder's lock; ``holder`` is its PID (as it wrote it)."""

    def __init__(self, folder: Path, holder: str, what: str) -> None:
        super().__init__(f"{folder} is in use by another {what} (PID {holder}); wait for it to finish or stop it, "
                         f"or choose another folder")
        self.folder, self.holder = folder, holder


def missing_folders(path: str | Path) -> list[Path]:
    """The folders ``Path(path).mkdir(parents=True)`` would create, deepest first, as absolute paths
    with every ``..`` and link resolved: what a command that made them may remove again. Each
    spelling is judged by the folder it names (``out/new/..`` is ``out``, which exists: only
    ``out/new`` is new), never by its text."""
    found: list[Path] = []
    for p in [Path(path), *Path(path).parents]:
        real = p.resolve()
        if not real.exists() and real not in found:
            found.append(real)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)  # u/b/../c visits u before u/b


def remove_empty_folders(made: list[Path]) -> None:
    """Remove the folders a command made (``made``, deepest first, as :func:`missing_folders` lists
    them) while they are empty, stopping at the first that is not: a folder someone else filled
    meanwhile stays, and so do the folders above it."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            return


class NotALockError(UserError):
    """``FOLDER/.lock`` is something this project did not write: a link, a folder, or a file with
    other content. It is left as it is."""


def _open_lock(path: Path) -> tuple[int, bool]:
    """Open (creating it when absent) the lock file ``path`` without following a link;
    returns (fd, created)."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    while True:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | nofollow, 0o644), True
        except FileExistsError:
            pass
        try:
            fd = os.open(path, os.O_RDWR | nofollow)
        except FileNotFoundError:
            continue  # its holder removed it between the two opens: create it
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                kind = "link" if path.is_symlink() else "folder" if path.is_dir() else "special file"
                raise NotALockError(f"{path} is a {kind}, not a "
                                    f"lock file; move it away (the folder's lock is a file of that name)") from e
            raise
        return fd, False


def take_lock(folder: str | Path, what: str = "process") -> tuple[int, bool]:
    """Hold an exclusive ``flock`` on ``folder/.lock`` (created when absent); returns (fd, created).

    The operating system releases it when the process ends, however it ends (SIGKILL included), so no
    stale lock is left; a second process stops at once with :class:`FolderInUseError` naming the
    holder's PID. The file is never a link followed, a folder, or someone's file overwritten: those
    are a :class:`NotALockError`. A holder that removes the file while holding it (see
    :func:`release_lock`) makes a newcomer that had opened the old one retry on the current file.
    Raises OSError when the lock file cannot be created (read-only folder)."""
    path = Path(folder) / LOCK_NAME
    while True:
        fd, created = _open_lock(path)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise NotALockError(f"{path} is not a regular file, so not a lock file; move it away")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                raise FolderInUseError(Path(folder), holder, what) from e
            content = os.read(fd, 65)
            if not re.fullmatch(rb"\d{0,20}\n?", content):  # a lock file holds its last holder's PID, or nothing
                raise NotALockError(f"{path} is a file that is not a lock file (it holds something else than a "
                                    f"process ID); move it away: it is left untouched")
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
    except BaseException:
        os.close(fd)
        raise
    return fd, created


def release_lock(folder: str | Path, fd: int, remove: bool = True) -> None:
    """Release a lock :func:`take_lock` returned; ``remove``: unlink the file first, while it is still
    held (a newcomer that opened it sees the inode change and retries), so nothing of ours is left."""
    if remove:
        with contextlib.suppress(OSError):
            os.unlink(Path(folder) / LOCK_NAME)
    os.close(fd)  # releases the flock


@contextmanager
def folder_lock(folder: str | Path, what: str = "process") -> Iterator[None]:
    """Hold the folder's lock (:func:`take_lock`) while the block runs, and remove the lock file on
    release (not after a kill: then the next holder takes it over and removes it). Re-entrant
    within one process (a command that locks its output folder may call a helper that locks it
    again). The folder must exist."""
    path = Path(folder) / LOCK_NAME
    key = str(path.resolve())
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            entered = True
        else:
            entered = False
    if entered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key][1] -= 1
        return
    if fcntl is None:
        yield
        return
    fd, _ = take_lock(folder, what)
    with _held_guard:
        _held[key] = [fd, 1]
    try:
        yield
    finally:
        with _held_guard:
            del _held[key]
        release_lock(folder, fd)
