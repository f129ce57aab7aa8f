"""Training curves for the report: read a run's TensorBoard events, plot them to a PNG.

For every training run whose weights one of the report's methods uses, the report shows that
run's validation metrics against the step (``val/cycle_l1``, ``val/fid_A``, ``val/kid_A`` ... when
logged) and its training losses (``loss/*``), read with TensorBoard's own event reader and drawn
with matplotlib (no display needed). One picture per run, whatever number of methods share it
(WCT and AdaIN use one decoder run), with at most three panels a row, so it is shown at its own
size (about 1200 px wide) and its labels stay legible.

What cannot be read is said, never silently dropped: an ``events.out.tfevents.*`` entry that is a
folder (its neighbours are still read), an unreadable file, and a corrupt or truncated events file
(TensorBoard's reader stops at the first bad record, so the curves end there) each give a note
that the report prints under its curves.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

EVENTS_PREFIX = "events.out.tfevents."
COLUMNS_PER_ROW = 3  # panels per row of a curve picture: 3 x 4 in x 100 dpi = 1200 px wide


@dataclass
class Scalars:
    """A run's scalars (tag -> [(step, value)], steps ascending) and what could not be read."""

    values: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class _Capture(logging.Handler):
    """TensorBoard's reader reports a bad record only as a debug log line ("Truncated record in
    FILE (... failed event crc32 check)") and stops reading that file: keep those lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Truncated record in "):
            self.lines.append(message)


def _problem_of(line: str, tb: Path) -> str:
    """A note for one of TensorBoard's "Truncated record in FILE (why)" lines."""
    body = line[len("Truncated record in "):]
    path, _, why = body.partition(" (")
    name = Path(path).name
    if "crc32" in why:
        return (f"{tb / name} is corrupt (a record fails its crc32 check): its curves stop at the last good record; "
                f"the rest of that file is not shown")
    return (f"{tb / name} ends in a truncated record (the writer stopped mid-write?): its curves stop at the last "
            f"complete record")


def read_run_scalars(run_dir: Path) -> Scalars:
    """Every scalar of a run's ``tb/`` events, and the problems met reading them."""
    tb = run_dir / "tb"
    result = Scalars()
    if not tb.is_dir():
        return result
    try:
        entries = sorted(tb.iterdir())
    except OSError as e:
        result.problems.append(f"cannot list {tb}: {e.strerror or e}; no curves for {run_dir}")
        return result
    events = [p for p in entries if p.name.startswith(EVENTS_PREFIX)]
    good = []
    for p in events:
        if p.is_dir():
            result.problems.append(f"{p} is a folder, not an events file: not read (move it away); the curves come "
                                   f"from the other events files")
        elif not os.access(p, os.R_OK):
            result.problems.append(f"{p} cannot be read (permission denied): its curves are missing")
        else:
            good.append(p)
    if not good:
        return result
    tb_logger = logging.getLogger("tensorboard")
    capture = _Capture()
    saved = (tb_logger.level, tb_logger.propagate)
    tb_logger.addHandler(capture)
    tb_logger.setLevel(logging.DEBUG)
    tb_logger.propagate = False  # a resumed run's purged steps are expected: no log noise
    try:
        with tempfile.TemporaryDirectory(prefix="report-tb-") as tmp:
            folder = str(tb)
            if len(good) != len(events):
                # Only the readable events files, in one folder (TensorBoard reads a folder as one run).
                for p in good:
                    os.symlink(p.resolve(), Path(tmp) / p.name)
                folder = tmp
            acc = EventAccumulator(folder, size_guidance={"scalars": 0})
            acc.Reload()
            result.values = {tag: sorted((e.step, e.value) for e in acc.Scalars(tag))
                             for tag in acc.Tags().get("scalars", [])}
    except OSError as e:
        result.problems.append(f"cannot read the events in {tb}: {e.strerror or e}; no curves for {run_dir}")
    finally:
        tb_logger.removeHandler(capture)
        tb_logger.setLevel(saved[0])
        tb_logger.propagate = saved[1]
    result.problems += [_problem_of(line, tb) for line in dict.fromkeys(capture.lines)]
    return result


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run's ``tb/`` events: tag -> [(step, value)], steps ascending."""
    return read_run_scalars(run_dir).values


def plot_curves(scalars: dict[str, list[tuple[int, float]]], path: Path, title: str) -> Path | None:
    """Validation metrics (one panel each) and training losses (one panel) into ``path``, at most
    :data:`COLUMNS_PER_ROW` panels a row; None if nothing to plot."""
    val = {t: v for t, v in scalars.items() if t.startswith("val/") and v}
    loss = {t: v for t, v in scalars.items() if t.startswith("loss/") and v}
    panels: list[tuple[str, dict[str, Any]]] = [(t, {t: v}) for t, v in sorted(val.items())]
    if loss:
        panels.append(("training losses", loss))
    if not panels:
        return None
    cols = min(COLUMNS_PER_ROW, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4.0 * cols, 3.3 * rows + 0.4))  # matplotlib's object API: no pyplot, no display
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (name, series) in zip(axes.flat, panels):
        for tag, points in sorted(series.items()):
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3, label=tag.split("/", 1)[1])
        ax.set_title(name, fontsize=12)
        ax.set_xlabel("step", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=9)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


@dataclass
class Curves:
    """The report's curve pictures: (caption, PNG) per training run, and the reading problems."""

    pictures: list[tuple[str, Path]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_curves(runs: list[Any], folder: Path) -> Curves:
    """One picture per training run that a method of ``runs`` came from (methods sharing a run,
    as WCT and AdaIN, share its picture), titled with every method that uses it."""
    by_run: dict[Path, list[Any]] = {}
    for run in runs:
        run_dir = getattr(run, "run_dir", None)
        if run_dir is not None:
            by_run.setdefault(Path(run_dir), []).append(run)
    out = Curves()
    for run_dir, users in by_run.items():
        scalars = read_run_scalars(run_dir)
        out.notes += scalars.problems
        names = ", ".join(r.short for r in users)
        png = plot_curves(scalars.values, folder / f"{users[0].slug}.png", f"{names}: {run_dir}")
        if png is not None:
            out.pictures.append((f"{names} ({run_dir})", png))
    return out
