"""Non-finite losses: the update is skipped on the device (parameters, Adam moments and the fp16
scale untouched), counted, reported at the next log read, and the run stops after
train.max_nonfinite in a row, naming the last good checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY
from helpers import same, snapshot

import train
import training.cyclegan as cyclegan_trainer
from models.cyclegan import DiscriminatorLosses, GeneratorLosses
from training.trainer import TrainingError
from utils.checkpoint import read_training_checkpoint


def _nan_generator_losses(monkeypatch, when=lambda n: True) -> dict[str, int]:
    """Make the G loss NaN on the calls where ``when(call_number)`` (the graph stays intact)."""
    calls = {"n": 0}

    class NaNLosses(GeneratorLosses):
        @classmethod
        def compute(cls, *args, **kwargs):
            g = GeneratorLosses.compute(*args, **kwargs)
            calls["n"] += 1
            if when(calls["n"]):
                g.G_A = g.G_A * float("nan")
            return g

    monkeypatch.setattr(cyclegan_trainer, "GeneratorLosses", NaNLosses)
    return calls


def _inf_discriminator_losses(monkeypatch) -> None:
    class InfLosses(DiscriminatorLosses):
        @classmethod
        def compute(cls, *args, **kwargs):
            d = DiscriminatorLosses.compute(*args, **kwargs)
            d.D_A = d.D_A * float("inf")
            return d

    monkeypatch.setattr(cyclegan_trainer, "DiscriminatorLosses", InfLosses)


def _batch(t) -> dict:
    t.sampler.set_epoch(0)
    return next(iter(t.loader))


def test_nan_generator_loss_skips_the_update_on_the_device(tiny_config, make_trainer, monkeypatch) -> None:
    t = make_trainer(tiny_config())
    batch = _batch(t)
    t.train_step(batch)  # one good step, so Adam has moments to protect
    G_before = {n: snapshot(getattr(t, n)) for n in ("G_A", "G_B")}
    D_before = snapshot(t.D_A)
    opt_before = snapshot(t.opt_G)
    pool_before = [im.clone() for im in t.pool_B.images]

    _nan_generator_losses(monkeypatch)
    logs = t.train_step(batch)
    assert logs["nonfinite"].item() == 1.0 and not torch.isfinite(logs["G_total"])
    assert t.window.nonfinite_total.item() == 1 and t.window.streak.item() == 1
    for n in ("G_A", "G_B"):
        assert same(snapshot(getattr(t, n)), G_before[n]), f"{n} changed on a NaN step"
    assert same(snapshot(t.opt_G), opt_before), "Adam state of G changed on a NaN step"
    assert not same(snapshot(t.D_A), D_before), "D's finite update should still happen"
    # The skipped step's fakes never reach the pools: only finite images are stored.
    assert all(torch.isfinite(im).all() for pool in (t.pool_A, t.pool_B) for im in pool.images)
    assert len(t.pool_B.images) == len(pool_before) + 1

    monkeypatch.undo()
    t.train_step(batch)
    assert t.window.streak.item() == 0 and t.window.nonfinite_total.item() == 1


def test_nonfinite_losses_leave_the_grad_scaler_untouched(tiny_config, make_trainer, monkeypatch) -> None:
    """fp16's GradScaler logic, checked on CPU: a step whose loss is not finite neither crashes nor
    changes the scale or its growth tracker (overflowing gradients of a finite loss still back off)."""
    t = make_trainer(tiny_config("train.amp=off", "train.fused_adam=false"))
    t.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1000)
    batch = _batch(t)
    t.train_step(batch)
    state = t.scaler.state_dict()
    _nan_generator_losses(monkeypatch)
    _inf_discriminator_losses(monkeypatch)
    D_before = snapshot(t.D_A)
    for _ in range(3):
        t.train_step(batch)  # G and D both non-finite: no step at all
    assert t.scaler.state_dict() == state
    assert t.window.streak.item() == 3
    assert same(snapshot(t.D_A), D_before)


@pytest.mark.parametrize("fused", [True, False])
def test_fused_and_unfused_adam_skip_alike(tiny_config, make_trainer, monkeypatch, fused: bool) -> None:
    """train.fused_adam=false (PyTorch's default Adam, bit-identical to the reference) reads the
    flag on the host instead; a skipped step leaves G exactly as it was either way."""
    t = make_trainer(tiny_config(f"train.fused_adam={str(fused).lower()}"))
    assert t.fused is fused and t.opt_G.defaults["fused"] is (True if fused else None)
    batch = _batch(t)
    t.train_step(batch)
    G_before = snapshot(t.G_A)
    _nan_generator_losses(monkeypatch)
    t.train_step(batch)
    assert same(snapshot(t.G_A), G_before) and t.window.nonfinite_total.item() == 1


def test_consecutive_nonfinite_losses_stop_the_run_naming_the_last_good_checkpoint(
        tiny_dataset: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    # Steps 1-3 are fine, every step after that is NaN; checkpoints every 2 steps; stop after 2 in a row.
    _nan_generator_losses(monkeypatch, when=lambda n: n > 3)
    rc = train.main([f"data.root={tiny_dataset}", f"log.root={tmp_path}", "name=run", *TINY,
                     "checkpoint.every_steps=2", "train.max_nonfinite=2", "optim.n_epochs=3", "log.scalars_every=1"])
    out = capsys.readouterr()
    assert rc == 2
    good = tmp_path / "run" / "checkpoints" / "step_00000004.pt"
    assert "2 consecutive non-finite losses (NaN/Inf) by step 5" in out.err
    assert f"Last good checkpoint: {good}" in out.err
    assert out.err.count("WARNING: 1 non-finite loss(es)") == 2  # reported at each log read
    ckpt = read_training_checkpoint(good)
    assert ckpt.counters["nonfinite_total"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt.nets["G_A"].values() if v.is_floating_point())


def test_nonfinite_from_the_first_step_says_no_checkpoint_yet(tiny_config, make_trainer, monkeypatch) -> None:
    _nan_generator_losses(monkeypatch)
    t = make_trainer(tiny_config("train.max_nonfinite=3", "log.scalars_every=1"))
    with pytest.raises(TrainingError, match="none written yet"):
        t.fit()
    assert t.step == 3


def test_the_installed_torch_honours_the_device_side_skip() -> None:
    """training.nonfinite leans on torch internals (fused Adam's found_inf, GradScaler's _scale and
    _growth_tracker): if a torch release stops honouring them, NaN steps would be applied silently."""
    from training.nonfinite import fused_step_unless, scaled_step_unless

    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=0.1, fused=True)
    p.sum().backward()
    fused_step_unless(opt, torch.tensor(True))
    good = p.detach().clone()
    assert torch.allclose(good, torch.full((3,), 0.9))  # Adam's first step moves each weight by lr
    moments = {k: v.clone() for k, v in opt.state[p].items()}
    p.grad = torch.full((3,), float("nan"))
    fused_step_unless(opt, torch.tensor(False))
    assert torch.equal(p.detach(), good)
    assert all(torch.equal(opt.state[p][k], v) for k, v in moments.items())  # step count and moments too

    q = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([q], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=1)
    scaled_step_unless(scaler, opt, q.sum(), torch.tensor(True), fused=False)
    assert torch.allclose(q.detach(), torch.full((3,), 0.9)) and scaler.get_scale() == 16.0  # grew after 1 step
    opt.zero_grad()
    scaled_step_unless(scaler, opt, q.sum() * float("nan"), torch.tensor(False), fused=False)
    assert torch.allclose(q.detach(), torch.full((3,), 0.9))  # skipped
    assert scaler.get_scale() == 16.0 and int(scaler._growth_tracker) == 0  # a NaN loss is not an overflow


def test_a_finite_loss_with_non_finite_gradients_is_skipped(tiny_config, make_trainer) -> None:
    """sqrt(0) is finite, its gradient is not (CUT's L2 normalisation of a dead feature does this)."""
    t = make_trainer(tiny_config())
    before = snapshot(t.G_A)
    loss = torch.sqrt(sum(p.sum() for p in t.G_A.parameters()) * 0.0)
    assert torch.isfinite(loss)
    ok = t.update("G", loss)
    assert not bool(ok) and same(snapshot(t.G_A), before)
