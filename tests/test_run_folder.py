"""A run folder belongs to one live trainer; a fresh run never destroys another run; unusable
places are one-line errors before any work (training/run_dir.py)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from conftest import TINY
from helpers import sha

import train
from data.download import _make_dirs
from training import run_dir
from training.run_dir import RunFolder, RunFolderError
from utils.checkpoint import list_checkpoints
from utils.files import missing_folders, take_lock


def _args(tiny_dataset: Path, root: Path, *extra: str) -> list[str]:
    return [f"data.root={tiny_dataset}", f"log.root={root}", *TINY, "optim.n_epochs_decay=0", "log.images_every=0",
            *extra]


def test_a_fresh_run_refuses_a_folder_that_holds_a_run(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    """Copy a run to runs/ref2, then start a fresh run named ref2: refused, nothing touched."""
    assert train.main(_args(tiny_dataset, tmp_path, "name=ref")) == 0
    shutil.copytree(tmp_path / "ref", tmp_path / "ref2")
    before = {p: sha(p) for p in (tmp_path / "ref2").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert train.main(_args(tiny_dataset, tmp_path, "name=ref2", "seed=5")) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'ref2'} already holds a run (1 checkpoint(s), newest step_00000006.pt)" in err
    assert f"python train.py --resume {tmp_path / 'ref2'}" in err and "--overwrite" in err
    assert {p: sha(p) for p in (tmp_path / "ref2").rglob("*") if p.is_file()} == before


def test_overwrite_starts_afresh_and_deletes_only_the_runs_files(tiny_dataset: Path, tmp_path: Path) -> None:
    assert train.main(_args(tiny_dataset, tmp_path, "name=r", "checkpoint.every_steps=2")) == 0
    notes = tmp_path / "r" / "my_notes.txt"
    notes.write_text("mine")
    assert [p.name for p in list_checkpoints(tmp_path / "r")] == ["step_00000002.pt", "step_00000004.pt",
                                                                  "step_00000006.pt"]
    assert train.main(_args(tiny_dataset, tmp_path, "name=r", "train.max_batches_per_epoch=3", "--overwrite")) == 0
    assert [p.name for p in list_checkpoints(tmp_path / "r")] == ["step_00000003.pt"]  # the old ones are gone
    assert notes.read_text() == "mine"


def test_a_second_trainer_on_a_live_run_folder_exits_2_naming_the_holder(tiny_config, make_trainer, capsys) -> None:
    cfg = tiny_config()
    first = make_trainer(cfg)  # holds the lock until closed
    before = sorted(p.name for p in cfg.run_dir.rglob("*"))
    rc = train.main(_cfg_overrides(cfg))
    err = capsys.readouterr().err
    assert rc == 2 and f"is in use by another trainer (PID {os.getpid()})" in err
    assert sorted(p.name for p in cfg.run_dir.rglob("*")) == before  # the second one touched nothing
    first.close()  # the lock goes with the trainer: the folder is usable again
    with RunFolder(cfg.run_dir, resume=cfg.run_dir) as folder:
        assert folder.path == cfg.run_dir


def _cfg_overrides(cfg) -> list[str]:
    return [f"data.root={cfg.data.root}", f"log.root={cfg.log.root}", f"name={cfg.name}", *TINY]


def test_the_lock_is_the_operating_systems(tmp_path: Path) -> None:
    """flock: released when its file descriptor closes, which the OS does when a process dies
    (the SIGKILL test in test_kill.py relaunches on the same folder)."""
    a = RunFolder(tmp_path / "run", resume="").open()
    with pytest.raises(RunFolderError, match="in use by another trainer"):
        RunFolder(tmp_path / "run", resume=tmp_path / "run").open()
    a.close()
    RunFolder(tmp_path / "run", resume=tmp_path / "run").open().close()


@pytest.mark.parametrize("case", ["a_file", "read_only", "full", "name_too_long"])
def test_unusable_run_places_are_one_line_errors(tiny_dataset: Path, tmp_path: Path, monkeypatch, capsys,
                                                 case: str) -> None:
    root, name = tmp_path / "runs", "run"
    if case == "a_file":
        root.write_text("not a folder")
        expect = "cannot create the run folder"
    elif case == "read_only":
        real_mkdir = Path.mkdir

        def read_only(self, *args, **kwargs):
            if str(self).startswith(str(root)):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", read_only)
        expect = "read-only"
    elif case == "full":
        monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 10, 10))
        expect = "MiB free"
    else:
        name = "n" * 250  # passes the config check (<= 200 bytes? no: refused there, one line too)
        expect = "name"
    rc = train.main([f"data.root={tiny_dataset}", f"log.root={root}", f"name={name}", *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and expect in err and err.count("\n") == 1, err


def test_a_folder_where_a_run_file_goes_is_a_one_line_error(tiny_dataset, tmp_path, capsys) -> None:
    """Hostile round 3 item 15: --overwrite with run/config.yaml (or a tb/ events name) a directory."""
    for stray in ("config.yaml", "tb/events.out.tfevents.123.host"):
        run = tmp_path / stray.replace("/", "_") / "run"
        (run / stray).mkdir(parents=True)
        (run / stray / "keep.txt").write_text("mine")
        args = [f"data.root={tiny_dataset}", f"log.root={run.parent}", "name=run", *TINY]
        assert train.main([*args, "--overwrite"]) == 2
        assert "move it away" in capsys.readouterr().err
        assert (run / stray / "keep.txt").read_text() == "mine"


def test_a_run_folder_inside_its_own_dataset_is_refused(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    """The newcomer's case: --output data.root/trainA wrote checkpoints among the training images.
    CycleGAN reads trainA/ ... testB/, so those (and folders in them) are refused, not the rest of
    data.root; a resume of a run that already lies there is not refused."""
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    before = {p: sha(p) for p in data.rglob("*") if p.is_file()}
    for out, sub in ((data / "trainA", "trainA"), (data / "testB", "testB"), (data / "trainA" / "run", "trainA")):
        assert train.main([*_args(data, tmp_path), "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"is inside data.root/{sub}={data / sub}" in err and err.count("\n") == 1, err
        assert {p: sha(p) for p in data.rglob("*") if p.is_file()} == before and not (data / "trainA" / "run").exists()
    assert train.main([*_args(data, tmp_path), "--output", str(data / "runs" / "r")]) == 0  # not a folder it reads
    inside = data / "trainA" / "old_run"
    reads = {"data.root/trainA": data / "trainA"}
    with pytest.raises(RunFolderError, match="inside data.root/trainA"):
        RunFolder(inside, inputs=reads).open()
    inside.mkdir()  # a run made there before this rule resumes from itself: allowed
    RunFolder(inside, resume=inside, inputs=reads).open().close()
    assert list(inside.iterdir()) == []


def test_a_spelled_path_never_removes_a_folder_that_was_there(tmp_path: Path, capsys) -> None:
    """--output u/b/../c is u/c: a run that fails early removes the u/b it made, never the user's
    (empty) u/c, which its spelling made look new."""
    (tmp_path / "u" / "c").mkdir(parents=True)
    assert train.main([*_args(tmp_path / "nope", tmp_path), "--output", str(tmp_path / "u/b/../c")]) == 2
    capsys.readouterr()
    assert (tmp_path / "u" / "c").is_dir() and sorted(p.name for p in (tmp_path / "u").iterdir()) == ["c"]
    # nothing there: x/y/../z makes x, x/y and x/z, and removes all three (deepest first, x last)
    assert missing_folders(tmp_path / "x/y/../z") == [tmp_path / "x/z", tmp_path / "x/y", tmp_path / "x"]
    assert train.main([*_args(tmp_path / "nope", tmp_path), "--output", str(tmp_path / "x/y/../z")]) == 2
    capsys.readouterr()
    assert not (tmp_path / "x").exists()
    created: list[Path] = []
    _make_dirs(tmp_path / "d/e/../f", created)  # data.download's mkdir -p: outermost first
    assert created == [tmp_path / "d", tmp_path / "d/e", tmp_path / "d/f"] and (tmp_path / "d/f").is_dir()


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_new_folders_lock_is_removed_whoever_created_the_file(tmp_path: Path, monkeypatch) -> None:
    """Two trainers racing for a new folder: the one that takes the lock may not be the one that
    created the file; the folder is still its own, and it leaves nothing. A lock that cannot be
    taken at all (an OSError) also removes the folders made for it."""
    monkeypatch.setattr(run_dir, "take_lock", lambda folder, what: (take_lock(folder, what)[0], False))
    RunFolder(tmp_path / "new" / "run").open().close()
    assert list(tmp_path.iterdir()) == []

    def refuse(folder, what):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(run_dir, "take_lock", refuse)
    with pytest.raises(RunFolderError, match="cannot write in the run folder"):
        RunFolder(tmp_path / "new" / "run").open()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_lock_file_that_is_not_ours_is_refused_and_left(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    """RUN/.lock as a link to the user's file, or a file of the user's: refused, exit 2, both untouched
    (a lock opened through the link would truncate the user's file, and its release remove the link)."""
    theirs = tmp_path / "notes.txt"
    theirs.write_text("my notes\n")
    for name, make in (("link", lambda p: p.symlink_to(theirs)), ("file", lambda p: p.write_text("mine\n")),
                       ("folder", lambda p: p.mkdir())):
        run = tmp_path / name
        run.mkdir()
        make(run / ".lock")
        assert train.main([*_args(tiny_dataset, tmp_path), "--output", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"{run / '.lock'}" in err and err.count("\n") == 1, err
        assert theirs.read_text() == "my notes\n" and sorted(p.name for p in run.iterdir()) == [".lock"]
    assert (tmp_path / "link" / ".lock").is_symlink() and (tmp_path / "file" / ".lock").read_text() == "mine\n"


def test_overwrite_keeps_the_earlier_run_when_the_new_one_cannot_start(tiny_dataset: Path, tmp_path: Path,
                                                                       capsys) -> None:
    """--overwrite with a typo in data.root: exit 2 and the earlier run's checkpoints, events and
    config are all still there (they were deleted before the data was checked)."""
    assert train.main(_args(tiny_dataset, tmp_path, "name=r")) == 0
    before = {p: sha(p) for p in (tmp_path / "r").rglob("*") if p.is_file() and p.name != ".lock"}
    assert any(p.parent.name == "checkpoints" for p in before) and any(p.parent.name == "tb" for p in before)
    assert train.main(_args(tmp_path / "typo", tmp_path, "name=r", "--overwrite")) == 2
    assert "typo" in capsys.readouterr().err
    assert {p: sha(p) for p in (tmp_path / "r").rglob("*") if p.is_file() and p.name != ".lock"} == before


def test_a_run_that_stops_before_writing_leaves_nothing_behind(tmp_path: Path, capsys) -> None:
    """A missing dataset: exit 2, and neither the run folder nor the folders above it that the run
    made are left (with a dead PID's lock file in them); a folder the user made stays, without a lock."""
    missing = tmp_path / "no_such_dataset"
    assert train.main([*_args(missing, tmp_path), "--output", str(tmp_path / "new" / "deeper" / "run")]) == 2
    assert "no_such_dataset" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    mine = tmp_path / "mine"
    mine.mkdir()
    assert train.main([*_args(missing, tmp_path), "--output", str(mine)]) == 2
    assert mine.is_dir() and list(mine.iterdir()) == []
    # a run that wrote something keeps its folder and its lock file (released: the next run may take it)
    held = RunFolder(tmp_path / "kept").open()
    (tmp_path / "kept" / "config.yaml").write_text("x: 1\n")
    held.close()
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [".lock", "config.yaml"]
