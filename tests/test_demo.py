"""The demo dataset: layout, pairs, determinism, the painterly transform, and user data safety."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import data.demo as demo
from data.demo import DemoDatasetError, DemoSpec, make_demo_dataset, painterly, planned_files
from utils.errors import DatasetError

TINY = DemoSpec(size=24, n_train_A=3, n_train_B=4, n_test=2, seed=5)
OTHER = DemoSpec(size=24, n_train_A=2, n_train_B=2, n_test=3, seed=6)


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file below root (hidden ones included) -> its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _user_image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)


def test_demo_dataset_layout_pairs_and_determinism(tmp_path: Path) -> None:
    spec = TINY
    a = make_demo_dataset(tmp_path / "a", spec)
    b = make_demo_dataset(tmp_path / "b", spec)
    for sub, n in (("trainA", 3), ("trainB", 4), ("testA", 2), ("testB", 2)):
        names = sorted(p.name for p in (a / sub).iterdir())
        assert len(names) == n
        for name in names:
            assert (a / sub / name).read_bytes() == (b / sub / name).read_bytes()
    assert sorted(p.name for p in (a / "testA").iterdir()) == sorted(p.name for p in (a / "testB").iterdir())
    meta = json.loads((a / "demo.json").read_text())
    assert meta["domains"] == {"A": "painting", "B": "photo"}
    assert meta["complete"] is True and meta["spec"] == asdict(spec)
    assert sorted(meta["files"]) == sorted(planned_files(spec)) and len(meta["files"]) == 3 + 4 + 2 + 2
    # Train photos and test photos come from disjoint bands of the sources.
    bands = meta["bands"]
    assert bands["trainA"][1] <= bands["trainB"][0] and bands["trainB"][1] <= bands["test"][0]
    painting = np.asarray(Image.open(a / "testA" / "0000.png"), dtype=float)
    photo = np.asarray(Image.open(a / "testB" / "0000.png"), dtype=float)
    assert painting.shape == photo.shape and np.abs(painting - photo).mean() > 5  # a real change
    # The pair is exact: the painting is painterly() of the stored photo, up to PNG rounding.
    again = painterly(photo / 255.0) * 255
    assert np.abs(again - painting).max() <= 1.0


def test_painterly_is_a_local_deterministic_function() -> None:
    rng = np.random.default_rng(0)
    photo = np.clip(rng.random((1, 1, 3)) + 0.1 * rng.standard_normal((40, 48, 3)), 0, 1)
    out = painterly(photo)
    assert out.shape == photo.shape and out.min() >= 0 and out.max() <= 1
    assert np.array_equal(out, painterly(photo.copy()))  # no hidden randomness
    # Local: changing the left half of the photo leaves the far right columns unchanged.
    other = photo.copy()
    other[:, :20] = 1 - other[:, :20]
    assert np.allclose(painterly(other)[:, 36:], out[:, 36:])
    # Flip-equivariant (training flips images horizontally; the pairs must still match).
    assert np.allclose(painterly(photo[:, ::-1]), out[:, ::-1])
    # The palette has no black and no white: a black photo becomes the violet shadow colour.
    black = painterly(np.zeros((12, 12, 3)))
    assert np.allclose(black, demo.SHADOW)


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_refuses_a_folder_of_user_images_and_changes_nothing(tmp_path: Path, ext: str) -> None:
    root = tmp_path / "my_dataset"
    for i, sub in enumerate(("trainA", "trainB", "testA", "testB")):
        _user_image(root / sub / f"my_photo.{ext}", i)
    before = _snapshot(root)
    with pytest.raises(DemoDatasetError) as info:
        make_demo_dataset(root, TINY)
    assert isinstance(info.value, DatasetError)  # train.py prints it as one line and exits 2
    msg = str(info.value)
    assert str(root) in msg and "nothing was changed" in msg and "new or empty folder" in msg
    assert _snapshot(root) == before  # every user file, byte for byte, and nothing added


def test_refuses_any_file_even_hidden_or_at_the_top(tmp_path: Path) -> None:
    for name in ("notes.txt", ".DS_Store", "trainA/deep/photo.png"):
        root = tmp_path / name.replace("/", "_")
        (root / name).parent.mkdir(parents=True)
        (root / name).write_bytes(b"mine")
        with pytest.raises(DemoDatasetError, match="is not empty"):
            make_demo_dataset(root, TINY)
        assert _snapshot(root) == {name: b"mine"}
    a_file = tmp_path / "file"
    a_file.write_bytes(b"x")
    with pytest.raises(DemoDatasetError, match="is a file"):
        make_demo_dataset(a_file, TINY)


def test_missing_empty_and_empty_subfolders_are_filled(tmp_path: Path) -> None:
    expected = _snapshot(make_demo_dataset(tmp_path / "missing" / "deeper", TINY))
    (tmp_path / "empty").mkdir()
    for sub in ("trainA", "testB"):
        (tmp_path / "subs" / sub).mkdir(parents=True)
    for name in ("empty", "subs"):
        assert _snapshot(make_demo_dataset(tmp_path / name, TINY)) == expected


def test_same_spec_is_reused_other_spec_replaces_only_its_own_files(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "demo", TINY)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert make_demo_dataset(root, TINY) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps  # nothing rewritten

    _user_image(root / "trainA" / "my_photo.png", 7)
    (root / "notes.txt").write_text("mine")
    mine = {k: v for k, v in _snapshot(root).items() if k in ("trainA/my_photo.png", "notes.txt")}
    make_demo_dataset(root, OTHER)
    after = _snapshot(root)
    assert {k: after[k] for k in mine} == mine  # the user's files survive
    assert sorted(set(after) - set(mine)) == sorted(["demo.json", *planned_files(OTHER)])  # old set gone
    assert _snapshot(make_demo_dataset(tmp_path / "fresh", OTHER)) == {k: v for k, v in after.items() if k not in mine}


def test_a_set_with_missing_files_is_completed(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "demo", TINY)
    expected = _snapshot(root)
    (root / "testA" / "0001.png").unlink()
    make_demo_dataset(root, TINY)
    assert _snapshot(root) == expected


def test_regeneration_refuses_to_overwrite_or_delete_changed_files(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "demo", TINY)
    # A user file where the new spec would write (trainA has 3 images, the new spec 5).
    _user_image(root / "trainA" / "0004.png", 1)
    before = _snapshot(root)
    with pytest.raises(DemoDatasetError, match="did not write"):
        make_demo_dataset(root, DemoSpec(size=24, n_train_A=5, n_train_B=4, n_test=2, seed=5))
    assert _snapshot(root) == before
    (root / "trainA" / "0004.png").unlink()
    # A generated file the user edited since is theirs now: not deleted.
    _user_image(root / "trainB" / "0001.png", 2)
    before = _snapshot(root)
    with pytest.raises(DemoDatasetError, match="changed since"):
        make_demo_dataset(root, OTHER)
    assert _snapshot(root) == before


def test_unreadable_or_foreign_manifest_is_refused(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "demo", TINY)
    for text in ("{not json", json.dumps({"spec": asdict(OTHER), "files": {"../../etc/passwd": None}}),
                 json.dumps({"spec": {"version": 2}})):
        (root / "demo.json").write_text(text)
        before = _snapshot(root)
        with pytest.raises(DemoDatasetError, match="demo.json"):
            make_demo_dataset(root, OTHER)
        assert _snapshot(root) == before


def test_version_1_set_without_manifest_is_replaced(tmp_path: Path) -> None:
    """Sets made before the manifest existed: their file names follow from their spec."""
    root = make_demo_dataset(tmp_path / "demo", TINY)
    old_spec = {**asdict(TINY), "version": 1}
    (root / "demo.json").write_text(json.dumps({"spec": old_spec, "domains": {}}))
    _user_image(root / "testB" / "my_photo.png", 3)
    make_demo_dataset(root, OTHER)
    after = _snapshot(root)
    assert "testB/my_photo.png" in after
    assert sorted(after) == sorted(["demo.json", "testB/my_photo.png", *planned_files(OTHER)])


def test_interrupted_run_leaves_a_journal_the_next_run_cleans(tmp_path: Path, monkeypatch) -> None:
    """demo.json is written first (complete=false, every file the run may write) and last
    (complete=true), so a half-written set is always recognised as the generator's own."""
    root = tmp_path / "demo"
    root.mkdir()
    (root / demo.TMP_MANIFEST).write_text("{")  # killed while writing its first journal: still empty
    _user_image(root / "trainA" / "0000.png", 0)  # not empty: refused before anything is written
    with pytest.raises(DemoDatasetError):
        make_demo_dataset(root, TINY)
    (root / "trainA" / "0000.png").unlink()

    calls = {"n": 0}
    real = demo._encode

    def dies_after_four(img: np.ndarray) -> bytes:
        calls["n"] += 1
        if calls["n"] > 4:
            raise KeyboardInterrupt
        return real(img)

    monkeypatch.setattr(demo, "_encode", dies_after_four)
    with pytest.raises(KeyboardInterrupt):
        make_demo_dataset(root, TINY)
    monkeypatch.undo()
    meta = json.loads((root / "demo.json").read_text())
    assert meta["complete"] is False and sorted(meta["files"]) == sorted(planned_files(TINY))
    assert len([p for p in root.rglob("*.png")]) == 4

    _user_image(root / "testA" / "my_photo.png", 9)  # added to the half set: survives
    make_demo_dataset(root, TINY)
    fresh = _snapshot(make_demo_dataset(tmp_path / "fresh", TINY))
    after = _snapshot(root)
    assert after.pop("testA/my_photo.png") and after == fresh


# Hostile round 3: arguments out of range and unwritable places are one line, exit 2, nothing written.


@pytest.mark.parametrize("args", [["--size", "100000"], ["--size", "0"], ["--seed", "-1"], ["--n-train", "-1"],
                                  ["--n-train", "0"], ["--n-test", "0"], ["--n-test", "10000000"]])
def test_demo_command_validates_its_arguments(tmp_path: Path, capsys, args: list[str]) -> None:
    out = tmp_path / "demo"
    assert demo.main(["--output", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and args[0] in err[0]
    assert not out.exists()


def test_demo_command_into_an_unwritable_place_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    import errno
    import os

    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(demo, "_write_meta", read_only)
    assert demo.main(["--output", str(tmp_path / "demo"), "--size", "24", "--n-train", "1", "--n-test", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
