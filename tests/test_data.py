"""Data: transforms, the unaligned dataset, the single-folder dataset, the epoch sampler, and
training over a folder of bad and odd images (decoding itself: test_image_io.py; downloads:
test_download.py; the demo dataset: test_demo.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from image_corpus import BAD, make_corpus, truncated_jpeg
from PIL import Image

from data.folder import ImageFolderDataset, content_images
from data.image_io import list_images
from data.transforms import Transform, split_train_val
from data.unaligned import UnalignedDataset, image_folder
from training.distributed import EpochSampler
from utils.errors import DatasetError


def test_transform_modes() -> None:
    img = Image.new("RGB", (50, 30))
    rng = np.random.default_rng(0)
    assert Transform("resize_and_crop", 36, 32)(img, rng).size == (32, 32)
    assert Transform("crop", 36, 16)(img, rng).size == (16, 16)
    assert Transform("scale_width", 40, 40)(img, rng).size == (40, 24)
    assert Transform("scale_width_and_crop", 40, 20)(img, rng).size == (20, 20)
    assert Transform("none", 0, 0)(Image.new("RGB", (37, 53)), rng).size == (36, 52)


def test_eval_transform_is_deterministic_center_crop() -> None:
    arr = np.arange(40 * 40 * 3, dtype=np.uint8).reshape(40, 40, 3)
    img = Image.fromarray(arr)
    tf = Transform("crop", 40, 20, flip=True, train=False)
    out = np.asarray(tf(img, np.random.default_rng(1)))
    assert np.array_equal(out, arr[10:30, 10:30])


def _dataset(root: Path, **kw) -> UnalignedDataset:
    A, B = image_folder(root, "trainA"), image_folder(root, "trainB")
    return UnalignedDataset(A, B[:5], Transform("resize_and_crop", 36, 32), seed=3, **kw)


def test_unaligned_dataset_semantics(tiny_dataset: Path) -> None:
    ds = _dataset(tiny_dataset)
    assert len(ds) == 8  # max(8, 5)
    s = ds[(0, 2)]
    assert s["A"].dtype == torch.uint8 and s["A"].shape == (3, 32, 32) and s["skipped"] == ""
    assert torch.equal(ds[(4, 6)]["A"], ds[(4, 6)]["A"])  # same (epoch, index) -> same sample
    # A is index % len(A); B is drawn at random: over epochs, index 0 meets several B images.
    seen_B = {ds[(e, 0)]["B"].float().mean().item() for e in range(12)}
    assert len(seen_B) > 2


def test_corrupt_file_is_skipped_and_named(tiny_dataset: Path, tmp_path: Path) -> None:
    files = image_folder(tiny_dataset, "trainA")[:3]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    ds = UnalignedDataset([broken, *files], files, Transform("resize_and_crop", 36, 32))
    s = ds[(0, 0)]
    assert "broken.png" in s["skipped"] and s["A"].shape == (3, 32, 32)
    assert ds[(0, 0)]["skipped"] == ""  # remembered: one warning per file, not per epoch


def test_single_folder_dataset_skips_corrupt_files_once(tiny_dataset: Path, tmp_path: Path) -> None:
    files = content_images(tiny_dataset / "trainB")[:2]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(truncated_jpeg())
    ds = ImageFolderDataset([broken, *files], Transform("resize_and_crop", 36, 32), seed=1)
    s = ds[(0, 0)]
    assert s["skipped"].startswith(f"{broken}: cannot decode") and s["image"].dtype == torch.uint8
    assert s["image"].shape == (3, 32, 32)
    assert ds[(0, 0)]["skipped"] == ""  # remembered: one warning per file, not per epoch
    assert torch.equal(ds[(2, 1)]["image"], ds[(2, 1)]["image"])  # seeded by (epoch, index)
    with pytest.raises(DatasetError, match="no readable image left"):
        ImageFolderDataset([broken], Transform("resize_and_crop", 36, 32))[0]


def test_content_folder_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"data.root: .* is not a folder of images .*datasets/demo/trainB"):
        content_images(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="contains no images"):
        content_images(tmp_path)


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="trainA"):
        image_folder(tmp_path, "trainA")
    (tmp_path / "trainA").mkdir()
    (tmp_path / "trainA" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no images"):
        image_folder(tmp_path, "trainA")


def test_split_holds_out_last_and_subsets(tmp_path: Path) -> None:
    files = [tmp_path / f"{i}.png" for i in range(10)]
    train, val = split_train_val(files, 2, 5, tmp_path)
    assert val == files[8:] and train == files[:5]
    with pytest.raises(DatasetError, match="val_images"):
        split_train_val(files, 10, 0, tmp_path)


def test_epoch_sampler_shards_and_resumes() -> None:
    data = list(range(10))
    s0, s1 = EpochSampler(data, 2, 0, seed=1), EpochSampler(data, 2, 1, seed=1)
    s0.set_epoch(3)
    s1.set_epoch(3)
    i0, i1 = [i for _, i in s0], [i for _, i in s1]
    assert sorted(i0 + i1) == data and all(e == 3 for e, _ in s0)
    s0.set_epoch(3, start=2)
    assert [i for _, i in s0] == i0[2:] and len(s0) == len(i0) - 2
    s0.set_epoch(4)
    assert [i for _, i in s0] != i0  # a new permutation each epoch


def test_training_skips_bad_images_once_each_and_counts_them(tiny_dataset: Path, tiny_config, make_trainer,
                                                             tmp_path: Path, capsys) -> None:
    from utils.checkpoint import read_training_checkpoint

    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    make_corpus(root / "trainA")
    # Sorted, the last two files of trainA are held out for validation: a bad one and a good one.
    (root / "trainA" / "zz_truncated_val.jpg").write_bytes(truncated_jpeg())
    shutil.copy(root / "trainA" / "0000.png", root / "trainA" / "zzz_good_val.png")
    bad = {str(root / "trainA" / n) for n in [*BAD, "zz_truncated_val.jpg"]}

    trainer = make_trainer(tiny_config(f"data.root={root}", "optim.n_epochs_decay=0", "log.scalars_every=100"))
    logged: list[dict[str, float]] = []
    real_scalars = trainer.logger.scalars
    trainer.logger.scalars = lambda step, values: (logged.append(dict(values)), real_scalars(step, values))[1]
    result = trainer.fit()
    out = capsys.readouterr()

    n_train_A = len(list_images(root / "trainA")) - 2
    assert result.step == n_train_A  # every A image (good, odd, bad) is visited once, none stops the run
    assert {line.split(": ")[0] for line in trainer.skipped_images} == bad
    warnings_ = [line for line in out.err.splitlines() if line.startswith("WARNING: skipped unreadable image")]
    assert len(warnings_) == len(bad)
    for path in bad:
        assert sum(path + ":" in w for w in warnings_) == 1
    assert logged[-2]["health/skipped_images"] == len(bad)  # (the last entry is the epoch's lr line)
    assert f"skipped images {len(bad)}" in out.out
    assert read_training_checkpoint(result.last_checkpoint).skipped_images == sorted(trainer.skipped_images)
