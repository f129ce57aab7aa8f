"""An unusable training domain or validation split is a one-line error, also when DataLoader
workers read it. (Single bad images are skipped and counted: tests/test_data.py.)"""

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


def _bad_files(folder: Path, prefix: str = "") -> set[str]:
    """Empty, truncated and not-an-image files named like images (plus a text file that is ignored)."""
    (folder / f"{prefix}zero_bytes.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(buf, "JPEG")
    (folder / f"{prefix}truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / f"{prefix}text_named.jpg").write_text("this is not a JPEG\n" * 20)
    (folder / "notes.txt").write_text("not an image, not listed\n")
    return {str(folder / f"{prefix}{n}") for n in ("zero_bytes.jpg", "truncated.jpg", "text_named.jpg")}


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


def test_a_batch_larger_than_the_data_is_an_error_not_an_empty_run(tiny_dataset: Path, tmp_path: Path,
                                                                  capsys) -> None:
    """drop_last (fixed shapes) with fewer images than one batch would train 0 steps and exit 0."""
    rc = train.main([f"data.root={tiny_dataset}", f"log.root={tmp_path / 'runs'}", *TINY, "data.batch_size=16"])
    err = capsys.readouterr().err
    assert rc == 2 and "data.batch_size=16 x 1 process(es) is more than the 6 training images" in err
