"""The report's training curves (evaluation/curves.py): one legible picture per run, and events that
cannot be read said so instead of dropped (issue 22 item 3, issue 23 item 16)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from evaluation.curves import read_run_scalars, run_curves


def _events(run_dir: Path, steps: int = 5, tags: tuple[str, ...] = ("val/a", "val/b", "val/c", "val/d", "val/e",
                                                                    "loss/x", "loss/y")) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(run_dir / "tb"))
    for step in range(steps):
        for i, tag in enumerate(tags):
            w.add_scalar(tag, float(step + i), step)
    w.close()
    (path,) = (run_dir / "tb").glob("events.out.tfevents.*")
    return path


def _run(slug: str, short: str, run_dir: Path | None) -> SimpleNamespace:
    return SimpleNamespace(slug=slug, short=short, run_dir=run_dir)


def test_methods_sharing_a_run_share_one_picture_of_at_most_three_panels_a_row(tmp_path):
    _events(tmp_path / "wct_demo")  # 5 validation metrics + the losses: 6 panels
    curves = run_curves([_run("wct", "WCT", tmp_path / "wct_demo"), _run("adain", "AdaIN", tmp_path / "wct_demo"),
                         _run("gatys", "Gatys", None)], tmp_path / "curves")
    assert [caption for caption, _ in curves.pictures] == [f"WCT, AdaIN ({tmp_path / 'wct_demo'})"]
    assert sorted(p.name for p in (tmp_path / "curves").iterdir()) == ["wct.png"]
    width, height = Image.open(curves.pictures[0][1]).size
    assert width == 1200 and height == round((3.3 * 2 + 0.4) * 100)  # 3 panels x 2 rows at 100 dpi
    assert curves.notes == []


def test_a_folder_named_like_an_events_file_is_named_and_the_rest_still_read(tmp_path):
    _events(tmp_path / "run")
    bad = tmp_path / "run" / "tb" / "events.out.tfevents.1700000000.host.1.0"
    bad.mkdir()
    scalars = read_run_scalars(tmp_path / "run")
    assert [v for _, v in scalars.values["val/a"]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert scalars.problems == [f"{bad} is a folder, not an events file: not read (move it away); the curves come "
                                f"from the other events files"]


@pytest.mark.parametrize("damage, words", [("flip", "is corrupt (a record fails its crc32 check)"),
                                           ("truncate", "ends in a truncated record")])
def test_a_damaged_events_file_is_said_in_the_notes(tmp_path, damage, words):
    path = _events(tmp_path / "run", steps=20)
    blob = bytearray(path.read_bytes())
    if damage == "flip":
        middle = len(blob) // 2
        blob[middle:middle + 8] = bytes(b ^ 0xFF for b in blob[middle:middle + 8])
    else:
        blob = blob[:-7]
    path.write_bytes(bytes(blob))
    scalars = read_run_scalars(tmp_path / "run")
    assert sum(map(len, scalars.values.values())) < 20 * 7  # TensorBoard's reader stops at the bad record ...
    assert scalars.problems == [f"{path} {words}" + scalars.problems[0].split(words, 1)[1]]  # ... and it is said
    curves = run_curves([_run("cyclegan", "CycleGAN", tmp_path / "run")], tmp_path / "curves")
    assert curves.notes == scalars.problems and len(curves.pictures) == 1
