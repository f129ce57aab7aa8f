"""A resumed run does what it says: changed optim.* keys apply from the first resumed step, the
stored config describes what ran, keys that cannot change are refused, and checkpoints written
by earlier releases (format version 1) still resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import TINY
from helpers import same, snapshot, stop_after

import train
from options.config import to_dict
from utils.checkpoint import FORMAT, list_checkpoints, load_file, read_training_checkpoint


def _run(tiny_dataset: Path, root: Path, *extra: str) -> list[str]:
    return [f"data.root={tiny_dataset}", f"log.root={root}", "name=run", *TINY, "log.images_every=0", *extra]


@pytest.fixture
def finished_run(tiny_dataset: Path, tmp_path: Path) -> Path:
    """2 epochs: 1 at lr 2e-4, then 1 of linear decay; the lr is 0 at the end."""
    assert train.main(_run(tiny_dataset, tmp_path, "optim.n_epochs=1", "optim.n_epochs_decay=1")) == 0
    return tmp_path / "run"


def _nets(run: Path) -> dict:
    return read_training_checkpoint(run).nets


def test_train_longer_applies_the_new_schedule_from_the_first_resumed_step(finished_run: Path, capsys) -> None:
    """The README's "train longer": the old code trained the first resumed epoch at lr 0 (nothing moved)."""
    before = _nets(finished_run)
    assert train.main(["--resume", str(finished_run), "optim.n_epochs=2"]) == 0
    after = read_training_checkpoint(finished_run)
    assert after.counters["epoch"] == 3
    # Epoch 3 trained at lr * linear_factor(2, n_epochs=2, decay=1) = 0.5 * 2e-4: the networks moved.
    assert not all(same({"w": before[n][k]}, {"w": after.nets[n][k]}) for n in before for k in before[n])
    assert after.config["optim"]["n_epochs"] == 2  # the stored config describes what ran
    assert "changed: optim.n_epochs" in capsys.readouterr().out


def test_resume_with_a_new_lr_trains_at_that_lr(finished_run: Path, make_trainer) -> None:
    from options.common import load_training_config

    ckpt = read_training_checkpoint(finished_run)
    cfg = load_training_config(None, ["optim.lr=1e-3", "optim.n_epochs=3", f"resume={finished_run}"],
                               base=ckpt.config)
    t = make_trainer(cfg)
    # Epoch index 2 of n_epochs=3: the constant phase, so exactly the new lr, for G and for D.
    assert t.opt_G.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert t.opt_D.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert t.opt_G.param_groups[0]["initial_lr"] == pytest.approx(1e-3)
    # Adam's moments came from the checkpoint.
    assert same(snapshot(t.opt_G), {k: v for k, v in _opt_state(ckpt.optim["G"]).items()})


def _opt_state(sd: dict) -> dict:
    return {k: dict(s) for k, s in sd["state"].items()}


def test_resume_with_changed_plateau_settings_keeps_the_reductions(tiny_dataset: Path, tmp_path: Path,
                                                                   make_trainer) -> None:
    from options.common import load_training_config

    base = _run(tiny_dataset, tmp_path, "optim.lr_policy=plateau", "optim.n_epochs=2", "optim.n_epochs_decay=0",
                "optim.plateau_patience=0", "optim.plateau_threshold=10")  # every epoch "stalls": lr x0.2
    assert train.main(base) == 0
    ckpt = read_training_checkpoint(tmp_path / "run")
    assert ckpt.optim["G"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.2**2)
    cfg = load_training_config(None, ["optim.n_epochs=3", "optim.lr=1e-3", "optim.plateau_factor=0.5",
                                      f"resume={tmp_path / 'run'}"], base=ckpt.config)
    t = make_trainer(cfg)
    assert t.opt_G.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**2)  # 2 reductions, new base, new factor


@pytest.mark.parametrize("key,value", [("model.ngf", 16), ("model.upsample", "resize_conv"), ("train.pool_size", 7)])
def test_keys_that_cannot_change_are_refused(finished_run: Path, capsys, key: str, value) -> None:
    assert train.main(["--resume", str(finished_run), "optim.n_epochs=3", f"{key}={value}"]) == 2
    err = capsys.readouterr().err
    assert f"{key} cannot change when resuming" in err and err.count("\n") == 1
    assert [p.name for p in list_checkpoints(finished_run)] == ["step_00000006.pt", "step_00000012.pt"]


def test_resuming_a_finished_run_is_nothing_to_do(finished_run: Path, capsys) -> None:
    assert train.main(["--resume", str(finished_run)]) == 1
    assert "nothing to do" in capsys.readouterr().err


def _as_version_1(ckpt: dict) -> dict:
    """A checkpoint as format version 1 (the previous release) wrote it."""
    old = {k: v for k, v in ckpt.items() if k not in ("method", "metrics", "extra")}
    old["version"] = 1
    old["config"] = {k: v for k, v in ckpt["config"].items() if k != "method"}
    old["config"]["train"] = {**old["config"]["train"], "compile": False}  # a bool then
    old["config"]["model"] = dict(old["config"]["model"])
    old["config"]["optim"] = {k: v for k, v in old["config"]["optim"].items() if k != "plateau_metric"}
    old["config"]["data"] = dict(old["config"]["data"])
    old["config"].pop("eval", None)
    old["val_metric"] = ckpt["metrics"].get("cycle_l1")
    for opt in old["optim"].values():  # that release ran PyTorch's default (unfused) Adam
        for group in opt["param_groups"]:
            group["fused"], group["foreach"] = None, None
    gen = torch.Generator().manual_seed(5)
    old["pools"] = {d: {**p, "rng": gen.get_state()} for d, p in ckpt["extra"]["pools"].items()}
    return old


def test_a_version_1_checkpoint_resumes_and_translates(finished_run: Path, tmp_path: Path, capsys) -> None:
    path = list_checkpoints(finished_run)[-1]
    v1 = _as_version_1(load_file(path))
    assert v1["format"] == FORMAT and "method" not in v1 and "pools" in v1
    torch.save(v1, path)
    ckpt = read_training_checkpoint(path)
    assert (ckpt.version, ckpt.method, ckpt.metrics) == (1, "cyclegan", {"cycle_l1": v1["val_metric"]})
    assert train.main(["--resume", str(finished_run), "optim.n_epochs=2"]) == 0
    assert read_training_checkpoint(finished_run).version == 2
    import test as test_cli

    torch.save(v1, tmp_path / "v1.pt")
    out = tmp_path / "out"
    assert test_cli.main(["--checkpoint", str(tmp_path / "v1.pt"), "--input",
                          str(Path(read_training_checkpoint(finished_run).config["data"]["root"]) / "testB"),
                          "--output", str(out), "--direction", "BtoA", "--no-progress"]) == 0
    assert len(list(out.glob("*.png"))) == 2


def test_stored_config_round_trips_through_resume(finished_run: Path) -> None:
    from options.common import load_training_config

    stored = read_training_checkpoint(finished_run).config
    cfg = load_training_config(None, [], base=stored)
    assert to_dict(cfg) == stored and dataclasses.is_dataclass(cfg)


def test_a_new_batch_size_mid_epoch_continues_from_the_image_reached(tiny_config, make_trainer, capsys) -> None:
    """Stopped after 3 batches of 1 image, resumed with batches of 2: the epoch goes on from batch
    1 (images 2-3), so one image is seen twice and none is skipped; the note says so."""
    cut = make_trainer(tiny_config("optim.n_epochs_decay=0"))
    stop_after(cut, 3)
    cut.cfg.log.scalars_every = 1  # check the stop request every step
    assert cut.fit().step == 3
    resumed = make_trainer(tiny_config("optim.n_epochs_decay=0", "data.batch_size=2", f"resume={cut.run_dir}"))
    assert resumed.batch_in_epoch == 1 and resumed.step == 3
    assert "data.batch_size 1 -> 2 mid-epoch: 1 image(s) of epoch 1 are seen twice" in capsys.readouterr().out
