"""Training curves for the report: read a run's TensorBoard events, plot them to a PNG.

For every method whose weights come from one of our training runs, the report shows that run's
validation metrics against the step (``val/cycle_l1``, ``val/fid_A``, ``val/kid_A`` ... when
logged) and its training losses (``loss/*``), read with TensorBoard's own event reader and
drawn with matplotlib (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run's ``tb/`` events: tag -> [(step, value)], steps ascending."""
    import logging

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.ERROR)  # a resumed run's purged steps are expected
    tb = run_dir / "tb"
    if not tb.is_dir():
        return {}
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: sorted((e.step, e.value) for e in acc.Scalars(tag)) for tag in acc.Tags().get("scalars", [])}


def plot_curves(scalars: dict[str, list[tuple[int, float]]], path: Path, title: str) -> Path | None:
    """Validation metrics (one panel each) and training losses (one panel) into ``path``; None if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    val = {t: v for t, v in scalars.items() if t.startswith("val/") and v}
    loss = {t: v for t, v in scalars.items() if t.startswith("loss/") and v}
    panels: list[tuple[str, dict[str, Any]]] = [(t, {t: v}) for t, v in sorted(val.items())]
    if loss:
        panels.append(("training losses", loss))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (name, series) in zip(axes[0], panels):
        for tag, points in sorted(series.items()):
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3, label=tag.split("/", 1)[1])
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_curves(runs: list[Any], folder: Path) -> list[tuple[str, Path]]:
    """(title, PNG) for each method run that came from one of our training runs with logged scalars."""
    out = []
    for run in runs:
        run_dir = getattr(run, "run_dir", None)
        if run_dir is None:
            continue
        png = plot_curves(read_scalars(Path(run_dir)), folder / f"{run.slug}.png", f"{run.title}: {run_dir}")
        if png is not None:
            out.append((f"{run.title} ({run_dir})", png))
    return out
