"""Download the public CycleGAN datasets and pretrained models by name.

examples:
  python -m data.download --list                  # every name, with what it is
  python -m data.download monet2photo             # dataset -> datasets/monet2photo/{trainA,trainB,testA,testB}
  python -m data.download style_monet             # -> checkpoints/style_monet_pretrained/latest_net_G.pth
  python -m data.download monet2photo_pretrained  # a model whose name is also a dataset's takes _pretrained
  python -m data.download fast_neural_style       # candy, mosaic, ... .pth -> checkpoints/fast_neural_style/
  python -m data.download cut_pretrained          # the CUT / FastCUT authors' six generators (one archive)
  python -m data.download horse2zebra_cut_pretrained   # the same archive; -> checkpoints/<name>/latest_net_G.pth
  python -m data.download horse2zebra --output /data --url http://mirror/horse2zebra.zip

Sources: the public CycleGAN reference (Zhu et al. 2017, junyanz/pytorch-CycleGAN-and-pix2pix:
datasets/download_cyclegan_dataset.sh, scripts/download_cyclegan_model.sh; same servers, same
folder layout, so `python test.py --checkpoint checkpoints/style_monet_pretrained` works as with
the reference), PyTorch's examples/fast_neural_style (download_saved_models.py: one zip of
four Johnson et al. 2016 transformer networks) and the CUT authors' pretrained_models.tar (Park et
al. 2020, taesungp/contrastive-unpaired-translation: checkpoints/<name>/latest_net_G.pth for
horse2zebra, cat2dog and cityscapes, CUT and FastCUT).

command-line convention (the same for every command in this project):
  --output DIR   where results go (default: datasets/ for datasets, checkpoints/ for models);
                 --root is an old spelling of it
  --url URL      fetch from this address instead (a mirror); with --url any plain name is taken
                 as a dataset zip
  --overwrite    the only way an existing copy is replaced; the new copy is complete before
                 the old one is removed
  exit codes     0 done, 1 nothing done (already there), 2 error (one line on stderr: "error: ..."),
                 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (nothing kept in any case)

Every file is streamed to a temp file beside its destination (with a per-request timeout),
checked, and renamed into place: a failed or interrupted download leaves nothing behind, no
partial file, no temp file, no folder it had to create. Zips with absolute or ../ paths are refused.
This module imports no torch, so --help answers at once; fetch_file serves every weight download.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import hashlib
import http.client
import os
import re
import shutil
import signal
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from data.catalogue import (
    ALIASES,
    CUT_MODELS,
    DATASETS,
    FAST_NEURAL_STYLES,
    GENERATORS,
    NAMES,
    Entry,
    listing,
)
from utils.files import missing_folders, remove_empty_folders

LAYOUT = ("trainA", "trainB", "testA", "testB")
TEST_ONLY = {"ae_photos"}  # photos to try the style_* generators on: a test split only, so testA/ or testB/ will do
DEFAULT_OUTPUT = {"dataset": "datasets", "generator": "checkpoints", "bundle": "checkpoints", "tar": "checkpoints",
                  "files": "checkpoints"}
_MIRROR = "try again, or pass --url for a mirror"
MAX_TIMEOUT = 24 * 3600.0
DEADLINE = 12 * 3600.0  # a whole download: the largest dataset at a slow 100 KiB/s fits
MIN_RATE = 1024.0  # bytes/s averaged over STALL_WINDOW: below it the server is only trickling
STALL_WINDOW = 60.0
# Zip limits, checked on the declared sizes before extracting (zipfile then stops a member at its
# declared size, with a CRC error). These hold for any zip, a --url of the user's own included; a
# named download also has its expected size (data.catalogue). Dataset images are JPEGs that barely
# compress, so a high ratio means a zip bomb.
MAX_UNZIPPED = 32 * 2**30
MAX_RATIO = 50.0
MAX_MEMBER = 2**30  # one image (or one network of a bundle); the reference's are well under 10 MB
NAME_MAX = 255  # bytes per path component on common file systems


class DownloadError(Exception):
    """A download that failed and left nothing behind; the message is one line: what, and what to do."""


class Fetched(NamedTuple):
    path: Path
    done: bool  # False: it was already there and nothing was fetched


# --- one file ---------------------------------------------------------------------------------------------------


def _make_dirs(folder: Path, created: list[Path]) -> None:
    """mkdir -p that appends each folder it creates to ``created`` (outermost first), so a failure can remove them
    (each as the folder it names: ``new/..`` is never removed, see :func:`utils.files.missing_folders`)."""
    for p in reversed(missing_folders(folder)):
        p.mkdir()
        created.append(p)


def _remove_dirs(created: list[Path]) -> None:
    remove_empty_folders(created[::-1])  # only empty ones: never anything someone else put there meanwhile


def _describe(e: BaseException, url: str, dst: Path, timeout: float, local: bool) -> str:
    if local or (isinstance(e, OSError) and e.errno in {errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT}):
        return f"cannot save {url} as {dst}: {e}; free some space or choose another --output"
    if isinstance(e, urllib.error.HTTPError):
        return f"cannot download {url}: HTTP {e.code} {e.reason}; {_MIRROR}"
    if isinstance(e, urllib.error.URLError):
        e = e.reason if isinstance(e.reason, BaseException) else OSError(str(e.reason))
    if isinstance(e, TimeoutError):
        return f"cannot download {url}: no answer within {timeout:g} s; {_MIRROR}"
    if isinstance(e, http.client.IncompleteRead):
        return f"cannot download {url}: the connection closed early (truncated); {_MIRROR}"
    return f"cannot download {url}: {e}; {_MIRROR}"


def check_timeout(timeout: float, what: str = "--timeout") -> float:
    """A timeout must be a finite number of seconds above 0 (0 would make every socket non-blocking)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT:
        raise DownloadError(f"{what} must be a number of seconds in (0, {MAX_TIMEOUT:g}], got {timeout!r}")
    return float(timeout)


def fetch_file(url: str, dst: str | Path, *, timeout: float = 60.0, sha256_prefix: str | None = None,
               progress: bool = True, check: Callable[[Path], None] | None = None,
               deadline: float = DEADLINE, min_rate: float = MIN_RATE, stall_window: float = STALL_WINDOW) -> Path:
    """Download ``url`` to ``dst`` atomically; returns ``dst``.

    Streams into a temp file in dst's folder, compares the SHA-256 with ``sha256_prefix`` (hex, any
    length) when given, runs ``check(temp_path)`` (raise DownloadError to refuse the file), then
    renames onto ``dst`` (replacing an existing file only at that last step). ``timeout`` (seconds)
    bounds the connection and each read of this request alone; the process-wide socket default is
    never touched. Any failure (network, timeout, HTTP error, truncation, hash mismatch, full disk,
    Ctrl-C) removes the temp file and the folders this call created, and raises DownloadError (one
    line naming the URL); KeyboardInterrupt is re-raised after the cleanup.

    A server that answers but trickles never holds the command forever: the whole download must
    end within ``deadline`` seconds, and every ``stall_window`` seconds at least ``min_rate``
    bytes/s must have arrived (each read returns what is there, so the check runs between bytes).
    """
    timeout = check_timeout(timeout)
    deadline = check_timeout(deadline, "the download deadline")
    dst = Path(dst)
    created: list[Path] = []
    tmp: Path | None = None
    local = True  # until the request goes out, an OSError is about the destination, not the network
    try:
        _make_dirs(dst.parent, created)
        fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
        tmp = Path(name)
        local = False
        digest = hashlib.sha256()
        done = total = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            if progress:
                print(f"downloading {url}", file=sys.stderr, flush=True)
            start = window_start = time.monotonic()
            window_bytes = 0
            while chunk := response.read1(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                window_bytes += len(chunk)
                now = time.monotonic()
                if now - start > deadline:
                    raise DownloadError(f"cannot download {url}: not finished after {deadline:g} s ({done} bytes "
                                        f"so far); {_MIRROR}")
                if now - window_start >= stall_window:
                    if window_bytes < min_rate * (now - window_start):
                        raise DownloadError(f"cannot download {url}: stalled ({window_bytes} bytes in the last "
                                            f"{now - window_start:.0f} s, below {min_rate:g} bytes/s); {_MIRROR}")
                    window_start, window_bytes = now, 0
                if progress and total and sys.stderr.isatty():
                    print(f"\r  {done / 2**20:.1f} / {total / 2**20:.1f} MiB", end="", file=sys.stderr, flush=True)
            out.flush()
            os.fsync(out.fileno())
        if progress and total and sys.stderr.isatty():
            print(file=sys.stderr)
        if total and done != total:
            raise DownloadError(f"cannot download {url}: got {done} of {total} bytes (truncated); {_MIRROR}")
        if sha256_prefix and not digest.hexdigest().startswith(sha256_prefix.lower()):
            raise DownloadError(f"{url}: SHA-256 {digest.hexdigest()[:16]}... is not the expected "
                                f"{sha256_prefix.lower()}...: the file is damaged or changed upstream; {_MIRROR}")
        if check is not None:
            check(tmp)
        local = True
        os.replace(tmp, dst)
        tmp = None
        return dst
    except BaseException as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        _remove_dirs(created)
        if isinstance(e, (DownloadError, KeyboardInterrupt)):
            raise
        if isinstance(e, (OSError, http.client.HTTPException, ValueError)):  # ValueError: a malformed URL
            raise DownloadError(_describe(e, url, dst, timeout, local)) from e
        raise


def _torch_file(url: str) -> Callable[[Path], None]:
    def check(path: Path) -> None:  # torch.save writes a zip (PyTorch >= 1.6) or a pickle (older): catches HTML pages
        with path.open("rb") as f:
            head = f.read(4)
        if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
            raise DownloadError(f"{url} did not return a PyTorch weights file; {_MIRROR}")
    return check


def _zip_file(url: str) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        if not zipfile.is_zipfile(path):
            raise DownloadError(f"{url} did not return a zip file; {_MIRROR}")
    return check


def _check_members(zf: zipfile.ZipFile, url: str, zip_size: int = 0, free: int | None = None,
                   expected: int = 0) -> None:
    """Refuse, before extracting anything, a zip that could do harm or that extraction would fail on
    halfway: names landing outside the extraction folder (absolute, drive letters, ..), symbolic
    links, a name that is both a file and a folder, a name too long for the file system, encrypted
    members or compression methods Python cannot read, a member declaring more than
    :data:`MAX_MEMBER`, and a declared total past :data:`MAX_UNZIPPED`, :data:`MAX_RATIO` times the
    zip, the named download's expected size (``expected``, 0 = none) or the free space (``free``)."""
    files: set[str] = set()
    dirs: set[str] = set()
    total = 0
    for info in zf.infolist():
        member = info.filename
        parts = member.replace("\\", "/").split("/")
        if member.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", member) or ".." in parts:
            raise DownloadError(f"{url}: unsafe path {member!r} in the zip; refusing to extract it")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DownloadError(f"{url}: {member!r} in the zip is a symbolic link; refusing to extract it")
        if any(len(p.encode("utf-8", "surrogateescape")) > NAME_MAX for p in parts):
            raise DownloadError(f"{url}: a name in the zip is longer than {NAME_MAX} bytes ({member[:60]!r}...); "
                                f"it cannot be extracted here; {_MIRROR}")
        if info.flag_bits & 0x1:
            raise DownloadError(f"{url}: {member!r} in the zip is encrypted; this is not a dataset zip; {_MIRROR}")
        if info.compress_type not in _ZIP_METHODS:
            raise DownloadError(f"{url}: {member!r} uses zip compression method {info.compress_type}, which cannot "
                                f"be read here; {_MIRROR}")
        clean = [p for p in parts if p not in ("", ".")]
        for i in range(1, len(clean)):
            dirs.add("/".join(clean[:i]))
        if clean and not info.is_dir():
            files.add("/".join(clean))
        elif clean:
            dirs.add("/".join(clean))
        if info.file_size > MAX_MEMBER:
            raise DownloadError(f"{url}: {member!r} in the zip declares {info.file_size / 2**30:.1f} GiB, more than "
                                f"any image or network ({MAX_MEMBER / 2**30:.0f} GiB); refusing to extract it")
        total += info.file_size
    clash = sorted(files & dirs)
    if clash:
        raise DownloadError(f"{url}: {clash[0]!r} is both a file and a folder in the zip; {_MIRROR}")
    if total > MAX_UNZIPPED or (zip_size and total > MAX_RATIO * zip_size and total > 64 * 2**20):
        raise DownloadError(f"{url}: the zip declares {total / 2**30:.1f} GiB of content from {zip_size / 2**20:.1f} "
                            f"MiB (a zip bomb?); refusing to extract it")
    if expected and total > expected:
        raise DownloadError(f"{url}: the zip declares {total / 2**30:.1f} GiB of content, more than this download "
                            f"can hold ({expected / 2**30:.2f} GiB): not the expected file; {_MIRROR}")
    if free is not None and total > free:
        raise DownloadError(f"the zip from {url} unpacks to {total / 2**20:.0f} MiB but only {free / 2**20:.0f} MiB "
                            f"are free; free some space or choose another --output")


_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


# --- names ------------------------------------------------------------------------------------------------------


def resolve(name: str, url: str | None = None) -> tuple[str, Entry]:
    """The table key and entry for ``name``; with ``url`` an unknown plain name is a dataset at that address."""
    key = ALIASES.get(name, name)
    if key in NAMES:
        entry = NAMES[key]
        return key, entry._replace(url=url) if url else entry
    if url is not None and re.fullmatch(r"[A-Za-z0-9_.-]+", name) and name not in (".", ".."):
        return name, Entry("dataset", url, name, "dataset from --url")
    close = difflib.get_close_matches(name, [*NAMES, *ALIASES], n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DownloadError(f"unknown name {name!r}{hint}; valid: {', '.join(NAMES)} (see --list, or pass --url)")


# --- the three kinds --------------------------------------------------------------------------------------------


def _complete(folder: Path, name: str) -> bool:
    if name in TEST_ONLY:
        return any((folder / sub).is_dir() for sub in ("testA", "testB"))
    return all((folder / sub).is_dir() for sub in LAYOUT)


def _dataset(name: str, entry: Entry, root: Path, overwrite: bool, timeout: float, progress: bool) -> Fetched:
    target = root / entry.dest
    if _complete(target, name) and not overwrite:
        return Fetched(target, False)
    if target.exists() and not overwrite:
        raise DownloadError(f"{target} exists but is not a complete dataset ({'/ '.join(LAYOUT)}/); "
                            "pass --overwrite to replace it or choose another --output")
    with _staged_zip(name, entry, root, timeout, progress) as (tmp, zf, created):
        extract = tmp / "x"
        zf.extractall(extract)
        zf.close()
        (tmp / f"{name}.zip").unlink()  # before the swap: the disk holds the dataset once, not twice
        # Zips hold either name/trainA/... or trainA/... at the top.
        candidates = [extract / name, extract] + [p for p in extract.iterdir() if p.is_dir()]
        src = next((c for c in candidates if _complete(c, name)), None)
        if src is None:
            raise DownloadError(f"{entry.url}: the zip does not contain {'/ '.join(LAYOUT)}/; {_MIRROR}")
        _swap_in(src, target, tmp / "old")
        created.clear()
    return Fetched(target, True)


@contextmanager
def _staging(name: str, root: Path) -> Iterator[tuple[Path, list[Path]]]:
    """A temp folder under ``root`` for a download in progress: yields (temp folder, the folders
    made for it). On exit the temp folder goes, and so do those folders unless the body cleared
    the list (it moved its result into them)."""
    created: list[Path] = []
    tmp = None
    try:
        _make_dirs(root, created)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.", suffix=".part"))
        yield tmp, created
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        _remove_dirs(created)


@contextmanager
def _staged_zip(name: str, entry: Entry, root: Path, timeout: float,
                progress: bool) -> Iterator[tuple[Path, zipfile.ZipFile, list[Path]]]:
    """Fetch ``entry``'s zip into a :func:`_staging` folder and open it (members checked): yields
    (temp folder, zip, the folders made for it), cleaned up as :func:`_staging` says."""
    with _staging(name, root) as (tmp, created):
        zip_path = fetch_file(entry.url, tmp / f"{name}.zip", timeout=timeout, progress=progress,
                              check=_zip_file(entry.url))
        with zipfile.ZipFile(zip_path) as zf:
            # Extraction happens beside the zip: the content must fit in what is free now.
            _check_members(zf, entry.url, zip_path.stat().st_size, shutil.disk_usage(tmp).free, entry.max_bytes)
            yield tmp, zf, created


def _files(name: str, entry: Entry, root: Path, overwrite: bool, timeout: float, progress: bool) -> Fetched:
    """Several files into the folder ``root/dest``: each fetched beside it and checked, then renamed in."""
    target = root / entry.dest
    wanted = [(url, f) for url, f in entry.files if overwrite or not (target / f).exists()]
    if not wanted:  # files already there are kept: the user may have put them there
        return Fetched(target, False)
    with _staging(name, root) as (tmp, created):
        for url, f in wanted:
            fetch_file(url, tmp / f, timeout=timeout, progress=progress, check=_nonempty(url))
        _make_dirs(target, created)
        for _, f in wanted:  # each rename is atomic
            os.replace(tmp / f, target / f)
        created.clear()
    return Fetched(target, True)


def _nonempty(url: str) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        with open(path, "rb") as f:
            head = f.read(64)
        if len(head) < 64 or head[:1] == b"<":  # an empty file or an HTML error page
            raise DownloadError(f"{url}: not a weights file (an error page?); {_MIRROR}")
    return check


def _swap_in(new: Path, target: Path, aside: Path) -> None:
    """Put folder ``new`` at ``target``; an old ``target`` goes to ``aside`` first and comes back if the move fails."""
    if target.exists():
        os.replace(target, aside)
    try:
        os.replace(new, target)
    except BaseException:
        if aside.exists():
            os.replace(aside, target)
        raise


def _generator(entry: Entry, root: Path, overwrite: bool, timeout: float, progress: bool) -> Fetched:
    target = root / entry.dest
    if target.exists() and not overwrite:
        return Fetched(target, False)
    return Fetched(fetch_file(entry.url, target, timeout=timeout, progress=progress, check=_torch_file(entry.url)),
                   True)


def _bundle(name: str, entry: Entry, root: Path, overwrite: bool, timeout: float, progress: bool) -> Fetched:
    target = root / entry.dest
    wanted = [s for s in FAST_NEURAL_STYLES if overwrite or not (target / f"{s}.pth").exists()]
    if not wanted:  # files already there are kept: the user may have put them there
        return Fetched(target, False)
    with _staged_zip(name, entry, root, timeout, progress) as (tmp, zf, created):
        # saved_models/<style>.pth in the examples' zip; matched by file name so a flat mirror works too.
        members = {Path(m).name: m for m in zf.namelist() if not m.endswith("/")}
        missing = [s for s in wanted if f"{s}.pth" not in members]
        if missing:
            raise DownloadError(f"{entry.url}: the zip lacks {', '.join(s + '.pth' for s in missing)}; {_MIRROR}")
        for s in wanted:
            with zf.open(members[f"{s}.pth"]) as src, open(tmp / f"{s}.pth", "wb") as out:
                shutil.copyfileobj(src, out)
            _torch_file(entry.url)(tmp / f"{s}.pth")
        _make_dirs(target, created)
        for s in wanted:  # each rename is atomic: an old file is replaced by a complete new one
            os.replace(tmp / f"{s}.pth", target / f"{s}.pth")
        created.clear()
    return Fetched(target, True)


def _cut_tar(name: str, entry: Entry, root: Path, overwrite: bool, timeout: float, progress: bool) -> Fetched:
    """The authors' one tar of every CUT / FastCUT generator: each ``<name>/latest_net_G.pth`` member
    (under ``checkpoints/`` in theirs) goes to ``root/<name>/latest_net_G.pth``; files already there
    are kept unless ``overwrite``; nothing else of the archive is extracted."""
    wanted = [m for m in CUT_MODELS if overwrite or not (root / m / "latest_net_G.pth").exists()]
    if not wanted:
        return Fetched(root, False)
    with _staging(name, root) as (tmp, created):
        tar_path = fetch_file(entry.url, tmp / "pretrained_models.tar", timeout=timeout, progress=progress,
                              check=_tar_file(entry.url))
        with tarfile.open(tar_path) as tf:
            members = {}
            for m in tf.getmembers():
                parts = Path(m.name).parts
                if len(parts) >= 2 and parts[-1] == "latest_net_G.pth" and parts[-2] in wanted:
                    if not m.isreg() or m.size > 2**30:
                        raise DownloadError(f"{entry.url}: member {m.name} is not a plain weights file; {_MIRROR}")
                    members[parts[-2]] = m
            missing = [w for w in wanted if w not in members]
            if missing:
                raise DownloadError(f"{entry.url}: the archive lacks {', '.join(missing)}; {_MIRROR}")
            for model in wanted:
                src = tf.extractfile(members[model])
                with src, open(tmp / f"{model}.pth", "wb") as out:
                    shutil.copyfileobj(src, out)
                _torch_file(entry.url)(tmp / f"{model}.pth")
        tar_path.unlink()
        for model in wanted:  # each rename is atomic: an old file is replaced by a complete new one
            _make_dirs(root / model, created)
            os.replace(tmp / f"{model}.pth", root / model / "latest_net_G.pth")
        created.clear()
    return Fetched(root, True)


def _tar_file(url: str) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        if not tarfile.is_tarfile(path):
            raise DownloadError(f"{url} did not return a tar archive; {_MIRROR}")
    return check


def download(name: str, output: str | Path | None = None, *, url: str | None = None, overwrite: bool = False,
             timeout: float = 60.0, progress: bool = True) -> Fetched:
    """Fetch ``name`` (a dataset, a CycleGAN generator or the fast_neural_style bundle) under ``output``.

    ``output`` defaults to DEFAULT_OUTPUT[kind]. An existing complete copy is kept (``done`` False)
    unless ``overwrite``. Raises DownloadError (nothing left behind) on any failure.
    """
    key, entry = resolve(name, url)
    root = Path(output if output is not None else DEFAULT_OUTPUT[entry.kind])
    if entry.kind == "files" and url is not None:
        raise DownloadError(f"{key} is several files ({', '.join(f for _, f in entry.files)}); --url names one "
                            f"address: fetch them yourself into {root / entry.dest}/")
    if entry.kind == "files" and entry.url is None:
        names = ", ".join(f for _, f in entry.files)
        raise DownloadError(f"{key} has no public address this command knows: get {names} from the authors' release "
                            f"and put them in {root / entry.dest}/ (then --checkpoint {root / entry.dest})")
    if entry.url is None:
        raise DownloadError(f"{key} is not on the reference's server (license): get it from its owners, pass --url")
    try:
        if entry.kind == "files":
            return _files(key, entry, root, overwrite, timeout, progress)
        if entry.kind == "dataset":
            return _dataset(key, entry, root, overwrite, timeout, progress)
        if entry.kind == "generator":
            return _generator(entry, root, overwrite, timeout, progress)
        if entry.kind == "tar":
            return _cut_tar(key, entry, root, overwrite, timeout, progress)
        return _bundle(key, entry, root, overwrite, timeout, progress)
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{entry.url}: damaged zip ({e}); {_MIRROR}") from e
    except tarfile.TarError as e:
        raise DownloadError(f"{entry.url}: damaged tar archive ({e}); {_MIRROR}") from e
    except OSError as e:  # local: read-only or full --output, a file where a folder should be
        raise DownloadError(f"cannot write under {root}: {e}; free some space or choose another --output") from e


def download_dataset(name: str, root: str | Path = "datasets", url: str | None = None, timeout: float = 60.0,
                     overwrite: bool = False) -> Path:
    """Fetch dataset ``name`` into ``root/name`` and return that folder (kept when already complete)."""
    return download(name, root, url=url, overwrite=overwrite, timeout=timeout).path


# --- command line -----------------------------------------------------------------------------------------------


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:  # "(default: None/False)" says nothing
        return action.help if action.default in (None, False) else super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, as every error of the project
        self.exit(2, f"error: {message} (see --help)\n")


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that every clean-up on the way out runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP (a closed terminal, a scheduler) interrupt it like
    Ctrl-C: the hidden ``.NAME.*.part`` files and folders are removed instead of left behind."""
    def handler(signum: int, frame: object) -> None:
        raise _Terminated(signum)

    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    try:
        old = {n: signal.signal(getattr(signal, n), handler) for n in names}
    except ValueError:  # not the main thread: leave the handlers alone
        yield
        return
    try:
        yield
    finally:
        for n, h in old.items():
            signal.signal(getattr(signal, n), h)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m data.download", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("name", nargs="?", help="a dataset or model name (see --list)")
    parser.add_argument("--output", default=argparse.SUPPRESS, metavar="DIR",
                        help="parent folder (default: datasets for datasets, checkpoints for models)")
    parser.add_argument("--root", dest="output", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old name
    parser.add_argument("--url", help="download from this address instead (a mirror)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing copy")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="seconds to wait for each answer of the server (the whole download must also end "
                             f"within {DEADLINE / 3600:g} h and never trickle below {MIN_RATE:g} bytes/s for "
                             f"{STALL_WINDOW:g} s)")
    parser.add_argument("--list", action="store_true", help="print every name with what it is, and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(listing())
        return 0
    if args.name is None:
        parser.error("give a dataset or model name (--list shows them)")
    try:
        check_timeout(args.timeout)
    except DownloadError as e:
        parser.error(str(e))
    try:
        with _signals_interrupt():
            got = download(args.name, getattr(args, "output", None), url=args.url, overwrite=args.overwrite,
                           timeout=args.timeout)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: every temp file and folder was removed on the way out
        print("interrupted; nothing was kept", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    if not got.done:
        print(f"{got.path} is already there; nothing to do (--overwrite replaces it)")
        return 1
    shared = args.name in DATASETS and args.name in GENERATORS
    note = f" (its pretrained generator: python -m data.download {args.name}_pretrained)" if shared else ""
    print(f"{args.name} ready in {got.path}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
