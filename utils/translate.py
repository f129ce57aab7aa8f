"""Running a method over a folder of images: what ``test.py``, ``stylize.py`` and the report do.

:func:`run_folder` decodes images on worker threads, batches images of equal working size,
runs the method (:mod:`methods.base`), and encodes the outputs on the threads while the next
batch runs. Each output keeps its input's relative path and name (suffix from ``--format``)
and, for methods that keep sizes, its exact size; alpha is put back with ``keep_alpha``.

Rules every command shares (nothing a user owns is lost):

* the output folder is never the input folder or inside it (nor, for one input file, that
  file's folder), and never an existing file (:func:`check_output_folder`);
* an output folder has one writer at a time: an exclusive ``flock`` on ``OUTPUT/.lock`` for the
  whole run (:func:`output_folder`);
* an existing output is skipped unless ``overwrite``; files are written through a temp name;
* every input gets a unique output name (``a.jpg`` and ``a.png`` -> ``a.jpg.png``, ``a.png.png``;
  a name still taken gets ``~2``, ``~3`` ...);
* an unreadable input (empty, truncated, not an image, a dangling link, too large) is reported
  with its reason and skipped; the rest are processed;
* an output folder that cannot be written (read-only, full disk) stops the run with one line.
"""

from __future__ import annotations

import errno
import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image
from tqdm import tqdm

from data.image_io import (
    BadImageError,
    list_images,
    output_suffix,
    pil_to_uint8,
    read_image,
    save_image,
    uint8_to_pil,
    working_size,
)
from utils.errors import UserError
from utils.files import folder_lock


class Method(Protocol):
    """What a folder run needs of a method (:class:`methods.base.Method` has it all)."""

    device: torch.device

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...
    def working_size(self, size: tuple[int, int]) -> tuple[int, int]: ...
    def too_small(self, size: tuple[int, int]) -> str | None: ...
    @property
    def keeps_size(self) -> bool: ...
    @property
    def max_batch(self) -> int | None: ...
    def last_losses(self) -> dict[str, float] | None: ...

MAX_PIXELS = 64_000_000  # a working size above this is refused per image (memory), with a hint
# Write errors that concern the whole output folder (the rest would fail alike) stop the run;
# any other (a name too long for the file system, ...) fails that one file.
FOLDER_ERRORS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT)


class TranslateError(UserError):
    """An error that stops a folder run (bad input path, unwritable output); says what to do."""


@dataclass
class FolderJob:
    """What to run over: every option of a folder run besides the method."""

    input: Path
    output: Path
    recursive: bool = False
    fmt: str = "png"  # png, jpg, webp, bmp, tif or same (each input's own)
    quality: int = 95
    overwrite: bool = False
    keep_alpha: bool = True
    load_size: int | None = None  # work at this shorter side
    max_size: int | None = None  # cap the longer side
    batch_size: int = 4
    workers: int = 2
    progress: bool = True
    files: list[Path] | None = None  # only these images of the input folder (the report's test set)
    on_progress: Callable[[int, int], None] | None = None  # (done, total) after each image (report.py's log)


@dataclass
class FolderSummary:
    """What :func:`run_folder` did. ``pairs``: (input, output) for every output that now exists, in
    input order; ``failed``: (input, reason). ``method_seconds``: time inside the method only."""

    output: Path
    translated: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    method_seconds: float = 0.0
    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    written: set[Path] = field(default_factory=set)  # the outputs of ``pairs`` this run wrote (the rest were there)
    losses: dict[str, dict[str, float]] = field(default_factory=dict)  # output name -> losses (Gatys)

    @property
    def images_per_s(self) -> float:
        return self.translated / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_per_image(self) -> float | None:
        return self.method_seconds / self.translated if self.translated else None

    def line(self) -> str:
        return (f"translated {self.translated}, skipped {self.skipped} (already there), failed {len(self.failed)} "
                f"in {self.seconds:.1f} s ({self.images_per_s:.2f} images/s) -> {self.output}")


# ---------------------------------------------------------------------------------------------
# Planning


def check_output_folder(output: Path, inputs: list[Path]) -> None:
    """The output may not be an input folder, inside one, or an existing file; for an input that is
    one file, its folder is an input folder too (the output may not be it: a ``--format`` or a
    name collision would replace the neighbours of the file). The one home of the rule: every
    command's output goes through here."""
    out = output.resolve()
    if output.exists() and not output.is_dir():
        raise TranslateError(f"--output {output} is a file; give a folder")
    for src in inputs:
        if src.is_dir():
            folder = src.resolve()
            if out == folder or out.is_relative_to(folder):
                where = "the input folder" if out == folder else "inside the input"
                raise TranslateError(f"--output {output} is {where} {src}: outputs would mix with (or replace) your "
                                     f"images; choose a folder outside it")
        elif src.exists() or src.is_symlink():  # one file (or a link to one): the folder(s) it lies in
            if out in (src.absolute().parent.resolve(), src.resolve().parent):
                raise TranslateError(f"--output {output} is the folder of the input {src}: outputs would mix with (or "
                                     f"replace) your images; choose a folder outside it")


def plan_outputs(input: Path, output: Path, recursive: bool = False, fmt: str = "png",
                 files: list[Path] | None = None) -> list[tuple[Path, Path]]:
    """(input file, output file) for every image (or each of ``files``, which lie under the input
    folder), with unique output names (see the module docstring)."""
    if input.is_file():
        check_output_folder(output, [input])
        root, files = input.parent, [input]
    elif input.is_dir():
        check_output_folder(output, [input])
        root, files = input, (list(files) if files is not None else list_images(input, recursive))
    else:
        raise TranslateError(f"input {input} does not exist (give a folder of images or one image file)")
    try:
        suffixes = [output_suffix(fmt, f.suffix) for f in files]
    except ValueError as e:
        raise TranslateError(str(e)) from e
    plan = [(f, output / n) for f, n in zip(files, _unique_names([f.relative_to(root) for f in files], suffixes))]
    for f, dst in plan:
        if dst.resolve() == f.resolve():
            raise TranslateError(f"output {dst} would overwrite its input; choose another --output or --format")
    return plan


def _unique_names(rels: list[Path], suffixes: list[str]) -> list[Path]:
    """Each input's output name: its own name with the new suffix ("primary"), unless another input
    has the same primary (``a.jpg``, ``a.png`` -> ``a.jpg.png``, ``a.png.png``). Primaries are given
    out first, so an input that keeps its primary keeps it when files are added beside it, and a
    rerun never mistakes another input's output for its own; a collision name that meets a primary
    (a literal ``a.jpg.png`` input) is numbered: ``a.jpg~2.png``."""
    primary = [rel.with_suffix(sfx) for rel, sfx in zip(rels, suffixes)]
    key = lambda p: str(p).lower()  # noqa: E731 - case-insensitive file systems
    counts: dict[str, int] = {}
    for name in primary:
        counts[key(name)] = counts.get(key(name), 0) + 1
    out: list[Path | None] = [name if counts[key(name)] == 1 else None for name in primary]
    taken = {key(name) for name in out if name is not None}
    for i, (rel, sfx) in enumerate(zip(rels, suffixes)):
        if out[i] is None:
            base = rel.with_name(rel.name + sfx)
            candidate, k = base, 2
            while key(candidate) in taken:
                candidate = base.with_name(f"{base.stem}~{k}{base.suffix}")
                k += 1
            taken.add(key(candidate))
            out[i] = candidate
    return [name for name in out if name is not None]


def _prefetch(pool: ThreadPoolExecutor, fn, items: list, depth: int) -> Iterator:
    """``map(fn, items)`` on the pool with at most ``depth`` in flight (bounded memory), in order."""
    it = iter(items)
    queue: deque[Future] = deque(pool.submit(fn, item) for item in itertools.islice(it, depth))
    while queue:
        fut = queue.popleft()
        for item in itertools.islice(it, 1):
            queue.append(pool.submit(fn, item))
        yield fut.result()


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and ("out of memory" in str(e) or "can't allocate memory" in str(e)))


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class _Item:
    index: int
    src: Path
    dst: Path
    x: torch.Tensor | None = None  # uint8 (3, h, w) at the working size
    size: tuple[int, int] = (0, 0)  # the input's (width, height), EXIF orientation applied
    alpha: Image.Image | None = None
    error: str = ""


class _FolderRun:
    """One :func:`run_folder` call: the pipeline's state and its steps."""

    def __init__(self, method: Method, job: FolderJob, plan: list[tuple[Path, Path]]) -> None:
        self.method, self.job = method, job
        self.summary = FolderSummary(output=job.output)
        self.done: dict[int, tuple[Path, Path]] = {}
        self.todo: list[_Item] = []
        failed_early = 0
        for i, (src, dst) in enumerate(plan):
            try:
                exists = dst.exists()
            except OSError as e:  # a name too long for the file system, ...: that file fails, not the run
                self.summary.failed.append((str(src), f"cannot write {dst}: {e.strerror or e}"))
                failed_early += 1
                continue
            if exists and not job.overwrite:
                self.summary.skipped += 1
                self.done[i] = (src, dst)
            else:
                self.todo.append(_Item(i, src, dst))
        # disable=None: no bar when stderr is not a terminal (a log file gets no \r and escape codes)
        self.bar = tqdm(total=len(plan), unit="img", disable=None if job.progress else True, dynamic_ncols=True)
        self.bar.update(self.summary.skipped + failed_early)
        self.total, self.finished = len(plan), self.summary.skipped + failed_early
        self.batch = max(1, min(job.batch_size, method.max_batch or job.batch_size))
        self.saves: deque[tuple[_Item, Future]] = deque()

    def load(self, item: _Item) -> _Item:
        try:
            rgb, item.alpha = read_image(item.src, keep_alpha=self.job.keep_alpha)
            item.size = rgb.size
            work = self.method.working_size(working_size(rgb.size, self.job.load_size, self.job.max_size))
            if work[0] * work[1] > MAX_PIXELS:
                raise BadImageError(item.src, f"{work[0]}x{work[1]} is too large to process; use --max-size "
                                              f"(e.g. 2048)")
            small = self.method.too_small(work)
            if small:
                raise BadImageError(item.src, small)
            item.x = pil_to_uint8(rgb if work == rgb.size else rgb.resize(work, Image.Resampling.BICUBIC))
        except BadImageError as e:
            item.error = e.reason
        except (MemoryError, Image.DecompressionBombError) as e:
            item.error = f"too large to load ({e}); use --max-size"
        return item

    def fail(self, item: _Item, reason: str) -> None:
        self.summary.failed.append((str(item.src), reason))
        self.advance()

    def advance(self) -> None:
        self.bar.update(1)
        self.finished += 1
        if self.job.on_progress is not None:
            self.job.on_progress(self.finished, self.total)

    def finish(self, item: _Item, y: torch.Tensor) -> None:
        img = uint8_to_pil(y)
        if self.method.keeps_size and img.size != item.size:
            img = img.resize(item.size, Image.Resampling.BICUBIC)
        if item.alpha is not None:
            alpha = item.alpha if item.alpha.size == img.size else item.alpha.resize(img.size, Image.Resampling.BICUBIC)
            img.putalpha(alpha)  # RGB -> RGBA, L -> LA
        save_image(img, item.dst, self.job.quality)

    def reap(self, limit: int) -> None:
        while self.saves and (len(self.saves) > limit or self.saves[0][1].done()):
            item, fut = self.saves.popleft()
            try:
                fut.result()
            except OSError as e:
                if e.errno in FOLDER_ERRORS:  # every later file would fail the same way: stop now
                    raise TranslateError(f"cannot write {item.dst}: {e.strerror or e} (read-only or full?); "
                                         f"{self.summary.translated} outputs were written before it") from e
                self.fail(item, f"cannot write {item.dst}: {e.strerror or e}")
                continue
            self.summary.translated += 1
            self.summary.written.add(item.dst)
            self.done[item.index] = (item.src, item.dst)
            self.advance()

    def run(self, batch: list[_Item], pool: ThreadPoolExecutor) -> None:
        x = torch.stack([it.x for it in batch])
        t0 = time.perf_counter()
        try:
            ys = self.method(x)
        except Exception as e:
            if not _is_oom(e):
                raise
            if self.method.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) > 1:  # maybe only the batch is too big: retry one by one
                for item in batch:
                    self.run([item], pool)
                return
            w, h = x.shape[-1], x.shape[-2]
            self.fail(batch[0], f"out of memory at {w}x{h}; use --max-size (e.g. 1024) or a smaller --batch-size")
            return
        self.summary.method_seconds += time.perf_counter() - t0
        losses = self.method.last_losses()
        for j, (item, y) in enumerate(zip(batch, ys, strict=True)):
            if losses:
                self.summary.losses[str(item.dst.relative_to(self.job.output))] = {k: v[j] for k, v in losses.items()}
            item.x = None  # free the input while the save is queued
            self.saves.append((item, pool.submit(self.finish, item, y)))
        self.reap(limit=4 * self.batch + self.job.workers)

    def execute(self) -> FolderSummary:
        t0 = time.perf_counter()
        max_pending = 4 * self.batch
        try:
            with ThreadPoolExecutor(max_workers=max(1, self.job.workers)) as pool:
                buckets: dict[tuple[int, ...], list[_Item]] = {}
                for item in _prefetch(pool, self.load, self.todo, depth=2 * self.batch + self.job.workers):
                    if item.error:
                        self.fail(item, item.error)
                        continue
                    key = tuple(item.x.shape)
                    buckets.setdefault(key, []).append(item)
                    if len(buckets[key]) >= self.batch:
                        self.run(buckets.pop(key), pool)
                    elif sum(map(len, buckets.values())) > max_pending:
                        # Many different sizes: run the fullest bucket rather than hold every image in memory.
                        self.run(buckets.pop(max(buckets, key=lambda k: len(buckets[k]))), pool)
                for key in list(buckets):
                    self.run(buckets.pop(key), pool)
                self.reap(limit=0)
        finally:
            self.bar.close()
        s = self.summary
        s.pairs = [self.done[i] for i in sorted(self.done)]
        s.seconds = time.perf_counter() - t0
        return s


def check_job(job: FolderJob) -> list[tuple[Path, Path]]:
    """Check the options and the output rules (:func:`check_output_folder`) without writing
    anything; returns the plan of :func:`plan_outputs`. Commands call it before loading a model,
    so a bad option or output is refused at once; :func:`output_folder` checks again.

    Raises:
        TranslateError: a bad option, the input does not exist, the output is unusable.
    """
    if job.batch_size < 1:
        raise TranslateError(f"batch size must be >= 1, got {job.batch_size}")
    if not 1 <= job.quality <= 100:
        raise TranslateError(f"--quality must be in [1, 100], got {job.quality}")
    for name, value in (("--load-size", job.load_size), ("--max-size", job.max_size)):
        if value is not None and not 1 <= value <= 16384:
            raise TranslateError(f"{name} must be in [1, 16384], got {value}")
    return plan_outputs(Path(job.input), Path(job.output), job.recursive, job.fmt, job.files)


@contextmanager
def output_folder(job: FolderJob) -> Iterator[list[tuple[Path, Path]]]:
    """Check the options and the output rules, make the output folder, and hold its lock while the
    block runs (one writer per output folder: a second run into it stops with exit 2 naming the
    holder's PID); yields the plan of :func:`plan_outputs`. A command wraps everything it writes
    there (outputs, gallery, records) in one such block; :func:`run_folder` enters it again.

    Raises:
        TranslateError: a bad option, the input does not exist, the output is unusable.
        FolderInUseError: another live process writes into the output folder.
    """
    plan = check_job(job)
    out = Path(job.output)
    with ExitStack() as stack:
        try:
            out.mkdir(parents=True, exist_ok=True)
            stack.enter_context(folder_lock(out, "writer of outputs (test.py, stylize.py or report.py)"))
            probe = out / f".probe.{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise TranslateError(f"cannot write into --output {job.output}: {e.strerror or e}") from e
        yield plan


def run_folder(method: Method, job: FolderJob) -> FolderSummary:
    """Run ``method`` over every image of ``job.input`` (a folder or one file) into ``job.output``,
    holding the output folder's lock (see :func:`output_folder`).

    Raises:
        TranslateError: the input does not exist, the output is unusable (inside the input, a
            file, read-only, full), or an option is bad.
        FolderInUseError: another live process writes into the output folder.
    """
    with output_folder(job) as plan:
        return _FolderRun(method, job, plan).execute()
