"""Hostile round 3, items 1 and 2: a checkpoint never chooses where training writes. A resumed
file continues in the run folder it sits in (RUN/checkpoints/), or in --output; the log.root /
name stored inside it are data, never a destination; a folder holding another run is not taken
over (its config and checkpoints stay as they were)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from conftest import TINY
from helpers import sha

import train
from utils.checkpoint import list_checkpoints, read_training_checkpoint


def _train(tiny_dataset: Path, root: Path, name: str, *extra: str) -> Path:
    assert train.main([f"data.root={tiny_dataset}", f"log.root={root}", f"name={name}", *TINY,
                       "optim.n_epochs_decay=0", *extra]) == 0
    return root / name


def _fingerprint(run: Path) -> dict[str, str]:
    return {p.relative_to(run).as_posix(): sha(p) for p in sorted(run.rglob("*")) if p.is_file()
            and p.name != ".lock"}


def test_a_loose_checkpoint_needs_output_and_never_reaches_the_run_it_names(tiny_dataset, tmp_path, capsys) -> None:
    victim = _train(tiny_dataset, tmp_path / "theirs", "qs", "seed=7")
    loose = tmp_path / "from_colleague.pt"
    shutil.copy(list_checkpoints(victim)[-1], loose)  # its stored config names theirs/qs
    before = _fingerprint(victim)
    assert train.main(["--resume", str(loose), "optim.n_epochs=2"]) == 2
    assert "--output" in capsys.readouterr().err
    assert _fingerprint(victim) == before
    out = tmp_path / "mine" / "qs_continued"
    assert train.main(["--resume", str(loose), "--output", str(out), "optim.n_epochs=2"]) == 0
    assert read_training_checkpoint(out).step == 12 and _fingerprint(victim) == before


def test_resuming_into_a_folder_that_holds_another_run_is_refused(tiny_dataset, tmp_path, capsys) -> None:
    """Across methods too: the report's case turned a CycleGAN run into another run and pruned its checkpoint."""
    victim = _train(tiny_dataset, tmp_path, "victim", "checkpoint.keep=1")
    other = _train(tiny_dataset, tmp_path, "other", "seed=3")
    before = _fingerprint(victim)
    assert train.main(["--resume", str(list_checkpoints(other)[-1]), "--output", str(victim),
                       "optim.n_epochs=2"]) == 2
    assert "already holds another run" in capsys.readouterr().err
    assert _fingerprint(victim) == before
    # --overwrite is the user saying so
    assert train.main(["--resume", str(list_checkpoints(other)[-1]), "--output", str(victim), "--overwrite",
                       "optim.n_epochs=2"]) == 0
    assert read_training_checkpoint(victim).config["seed"] == 3


def test_a_crafted_log_root_is_never_written_to(tiny_dataset, tmp_path) -> None:
    run = _train(tiny_dataset, tmp_path / "runs", "run")
    path = list_checkpoints(run)[-1]
    ckpt = torch.load(path, weights_only=True)
    elsewhere = tmp_path / "elsewhere"
    ckpt["config"]["log"]["root"] = str(elsewhere)
    ckpt["config"]["name"] = "hijacked"
    torch.save(ckpt, path)
    assert train.main(["--resume", str(path), "optim.n_epochs=2"]) == 0
    assert not elsewhere.exists()
    assert read_training_checkpoint(run).step == 12  # it continued where the file sits


def test_the_method_cannot_change_on_resume(tiny_dataset, tmp_path, capsys) -> None:
    run = _train(tiny_dataset, tmp_path, "run")
    before = _fingerprint(run)
    assert train.main(["--resume", str(run), "method=wct"]) == 2
    assert "cannot change on resume" in capsys.readouterr().err
    assert _fingerprint(run) == before
