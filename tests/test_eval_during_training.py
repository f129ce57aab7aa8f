"""FID / KID during training: logged per direction with image counts, usable as the plateau metric,
and off with one notice (never a crash) when the Inception weights are missing."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import evaluation.during_training as during
from evaluation.metrics import MetricUnavailable


def test_fid_kid_every_epoch_logged_and_driving_the_plateau(tiny_config, make_trainer, tiny_features,
                                                           monkeypatch, capsys) -> None:
    monkeypatch.setattr(during, "load_inception", lambda *a, **k: tiny_features)
    cfg = tiny_config("eval.every_epochs=1", "optim.lr_policy=plateau", "optim.plateau_metric=fid",
                      "optim.n_epochs=2", "optim.n_epochs_decay=0", "eval.amp=off")
    t = make_trainer(cfg)
    import training.trainer as trainer_module

    stepped: list[float | None] = []
    real_step = trainer_module.step_scheduler
    monkeypatch.setattr(trainer_module, "step_scheduler", lambda s, v: (stepped.append(v), real_step(s, v))[1])
    result = t.fit()
    out = capsys.readouterr().out
    assert "FID/KID every 1 epoch(s) on 2 testA and 2 testB images at 32 px" in out
    assert out.count("FID/KID: ") >= 2 and "s per evaluation" in out
    m = result.metrics
    assert {"fid_A", "kid_A", "fid_B", "kid_B", "cycle_l1"} <= set(m) and m["images_A"] == m["images_B"] == 2
    assert m["fid_A"] > 0 and m["fid_B"] > 0
    # The plateau schedulers (G and D) stepped on the mean FID of both directions, every epoch.
    assert len(stepped) == 4 and stepped[-1] == pytest.approx(0.5 * (m["fid_A"] + m["fid_B"]))
    assert t.schedulers["G"].best == pytest.approx(min(stepped))
    acc = EventAccumulator(str(cfg.run_dir / "tb"), size_guidance={"scalars": 0}).Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"val/fid_A", "val/kid_A", "val/fid_B", "val/kid_B", "val/images_A", "val/images_B"} <= tags
    assert len(acc.Scalars("val/fid_A")) == 2


def test_fid_of_a_generator_that_copies_its_input_is_that_of_the_test_sets(tiny_config, tiny_features, monkeypatch,
                                                                           tiny_dataset) -> None:
    """A direct check of the numbers: identity generators give FID(testA, testB) both ways."""
    import torch

    from evaluation.metrics import extract_features, fid_kid
    from options.common import EvalConfig

    ev = during.TrainingEvaluator(tiny_dataset, EvalConfig(every_epochs=1, amp="off"), 32, torch.device("cpu"),
                                  log=None, feature_extractor=tiny_features)
    ident = torch.nn.Identity()
    got = ev.evaluate(ident, ident)
    a = extract_features(tiny_features, ev.images["A"])
    b = extract_features(tiny_features, ev.images["B"])
    assert got["fid_A"] == pytest.approx(fid_kid(b, a).fid, rel=1e-6)
    assert got["fid_B"] == pytest.approx(fid_kid(a, b).fid, rel=1e-6)


@pytest.mark.parametrize("amp, dtype", [("off", None), ("bf16", "bfloat16")])
def test_the_generators_translate_under_eval_amp_not_train_amp(tiny_features, tiny_dataset, amp, dtype) -> None:
    import torch

    from options.common import EvalConfig

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            on = torch.is_autocast_enabled("cpu")
            seen.append(str(torch.get_autocast_dtype("cpu")).removeprefix("torch.") if on else None)
            return x

    ev = during.TrainingEvaluator(tiny_dataset, EvalConfig(every_epochs=1, amp=amp), 32, torch.device("cpu"),
                                  log=None, feature_extractor=tiny_features)
    ev.evaluate(Probe(), Probe())
    assert seen and set(seen) == {dtype}


def test_missing_inception_weights_turn_the_metric_off_with_one_notice(tiny_config, make_trainer, monkeypatch,
                                                                      capsys) -> None:
    def unavailable(*a, **k):
        raise MetricUnavailable("no Inception weights in /nowhere and downloads are disabled")

    monkeypatch.setattr(during, "load_inception", unavailable)
    result = make_trainer(tiny_config("eval.every_epochs=1")).fit()
    out = capsys.readouterr().out
    assert out.count("note: FID/KID during training are off: no Inception weights") == 1
    assert "fid_A" not in result.metrics and "cycle_l1" in result.metrics


def test_fid_every_second_epoch_is_logged_when_measured_only(tiny_config, make_trainer, tiny_features, monkeypatch,
                                                            capsys) -> None:
    monkeypatch.setattr(during, "load_inception", lambda *a, **k: tiny_features)
    cfg = tiny_config("eval.every_epochs=2", "optim.n_epochs=2", "optim.n_epochs_decay=1", "eval.amp=off")
    make_trainer(cfg).fit()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "/3 done" in ln]
    assert ["fid_A" in ln for ln in lines] == [False, True, False]  # measured at epoch 2 only
    acc = EventAccumulator(str(cfg.run_dir / "tb"), size_guidance={"scalars": 0}).Reload()
    assert [e.step for e in acc.Scalars("val/fid_A")] == [12]  # not re-logged at epochs 1 and 3
    assert len(acc.Scalars("val/cycle_l1")) == 3


def test_plateau_on_fid_without_the_weights_is_refused_at_start(tiny_dataset, tmp_path, monkeypatch, capsys) -> None:
    from conftest import TINY

    import train

    def unavailable(*a, **k):
        raise MetricUnavailable("no Inception weights in /nowhere and downloads are disabled")

    monkeypatch.setattr(during, "load_inception", unavailable)
    rc = train.main([f"data.root={tiny_dataset}", f"log.root={tmp_path}", *TINY, "eval.every_epochs=1",
                     "optim.lr_policy=plateau", "optim.plateau_metric=kid"])
    err = capsys.readouterr().err
    assert rc == 2 and "optim.plateau_metric=kid: the plateau schedule steps on FID/KID" in err
    assert err.count("\n") == 1 and not (tmp_path / "cyclegan" / "checkpoints").exists()
