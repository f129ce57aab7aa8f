"""Bad images in a training set: skipped once each, warned about, counted; an unusable domain or
validation split is a one-line error, also when DataLoader workers read it."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from PIL import Image

import train
from data.image_io import list_images
from utils.checkpoint import read_training_checkpoint


def _bad_files(folder: Path, prefix: str = "") -> set[str]:
    """Empty, truncated and not-an-image files named like images (plus a text file that is ignored)."""
    (folder / f"{prefix}zero_bytes.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(buf, "JPEG")
    (folder / f"{prefix}truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / f"{prefix}text_named.jpg").write_text("this is not a JPEG\n" * 20)
    (folder / "notes.txt").write_text("not an image, not listed\n")
    return {str(folder / f"{prefix}{n}") for n in ("zero_bytes.jpg", "truncated.jpg", "text_named.jpg")}


def test_training_skips_bad_images_once_each_and_counts_them(tiny_dataset: Path, tmp_path: Path, make_trainer,
                                                             capsys) -> None:
    from options.training import load_training_config

    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    bad = _bad_files(root / "trainA")
    (root / "trainA" / "zz_truncated_val.jpg").write_bytes((root / "trainA" / "truncated.jpg").read_bytes())
    shutil.copy(root / "trainA" / "0000.png", root / "trainA" / "zzz_good.png")
    bad.add(str(root / "trainA" / "zz_truncated_val.jpg"))  # sorted next to last: one of the 2 held-out images
    cfg = load_training_config(None, [f"data.root={root}", f"log.root={tmp_path / 'runs'}", "name=r", *TINY,
                                      "optim.n_epochs_decay=0", "log.scalars_every=1"])
    t = make_trainer(cfg)
    logged: list[dict[str, float]] = []
    real = t.logger.scalars
    t.logger.scalars = lambda step, values: (logged.append(dict(values)), real(step, values))[1]
    result = t.fit()
    out = capsys.readouterr()
    n_train_A = len(list_images(root / "trainA")) - 2
    assert result.step == n_train_A  # every A image (good or bad) is visited once, none stops the run
    assert {line.split(": ")[0] for line in t.skipped_images} == bad
    warned = [line for line in out.err.splitlines() if line.startswith("WARNING: skipped unreadable image")]
    assert len(warned) == len(bad) and all(sum(p + ":" in w for w in warned) == 1 for p in bad)
    assert max(v.get("health/skipped_images", 0) for v in logged) == len(bad)
    assert f"skipped images {len(bad)}" in out.out
    assert read_training_checkpoint(result.last_checkpoint).skipped_images == sorted(t.skipped_images)


@pytest.mark.parametrize("workers", [0, 1])
def test_an_all_corrupt_domain_is_one_line_exit_2(tiny_dataset: Path, tmp_path: Path, capsys, workers: int) -> None:
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    for p in list_images(root / "trainB"):
        p.write_bytes(b"garbage")
    rc = train.main([f"data.root={root}", f"log.root={tmp_path / 'runs'}", *TINY, "data.val_images=0",
                     f"data.num_workers={workers}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: no readable image left in {root / 'trainB'}") and "Traceback" not in err


def test_unreadable_validation_images_are_an_error_not_a_perfect_score(tiny_dataset: Path, tmp_path: Path,
                                                                       capsys) -> None:
    """All held-out images unreadable: the old code reported "val cycle L1 0.0000" and the plateau
    scheduler took it as a perfect score."""
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    for p in list_images(root / "trainA")[-2:]:  # the 2 held out
        p.write_bytes(b"")
    rc = train.main([f"data.root={root}", f"log.root={tmp_path / 'runs'}", *TINY, "optim.lr_policy=plateau"])
    err = capsys.readouterr().err
    assert rc == 2 and "held-out validation images" in err and "data.val_images=0" in err
