"""The training loop: phase order, knobs, schedules, logging, checkpoints and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from utils.checkpoint import list_checkpoints, load_training_checkpoint
from utils.schedulers import build_scheduler, linear_factor, step_scheduler
from utils.trainer import Trainer


def _batch(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    trainer.sampler.set_epoch(0)
    batch = next(iter(trainer.loader))
    return trainer._to_device(batch["A"]), trainer._to_device(batch["B"])


def _params(*nets: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for net in nets for p in net.parameters()]


def test_generator_step_leaves_no_gradient_in_D(tiny_config) -> None:
    t = Trainer(tiny_config())
    real_A, real_B = _batch(t)
    D_before = _params(t.D_A, t.D_B)
    G_before = _params(t.G_A, t.G_B)
    tr, ok = t.generator_step(real_A, real_B, {})
    assert ok
    assert all(p.grad is None for net in (t.D_A, t.D_B) for p in net.parameters())
    assert all(p.grad is not None for net in (t.G_A, t.G_B) for p in net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(D_before, _params(t.D_A, t.D_B)))
    assert not all(torch.equal(a, b) for a, b in zip(G_before, _params(t.G_A, t.G_B)))
    assert all(p.requires_grad for p in t.D_A.parameters())  # unfrozen again for the D phase
    # The D phase then trains D on pooled fakes and leaves G alone.
    G_after = _params(t.G_A, t.G_B)
    assert t.discriminator_step(real_A, real_B, tr.fake_B.detach(), tr.fake_A.detach(), {})
    assert all(torch.equal(a, b) for a, b in zip(G_after, _params(t.G_A, t.G_B)))
    assert not all(torch.equal(a, b) for a, b in zip(D_before, _params(t.D_A, t.D_B)))
    assert len(t.pool_A.images) == real_A.shape[0]


def test_train_step_logs_every_term(tiny_config) -> None:
    t = Trainer(tiny_config())
    logs = t.train_step(*_batch(t))
    assert set(logs) == {"G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B", "G_total", "D_A", "D_B"}
    terms = ("G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B")
    assert logs["G_total"] == pytest.approx(sum(logs[k] for k in terms))


def test_d_steps_per_g_and_clipping(tiny_config) -> None:
    t = Trainer(tiny_config("train.d_steps_per_g=2", "train.d_clip=0.01"))
    real_A, real_B = _batch(t)
    t.train_step(real_A, real_B)  # step 0: G and D
    t.step = 1
    G_before = _params(t.G_A, t.G_B)
    logs = t.train_step(real_A, real_B)  # step 1: D only
    assert "G_A" not in logs and "D_A" in logs
    assert all(torch.equal(a, b) for a, b in zip(G_before, _params(t.G_A, t.G_B)))
    assert max(p.abs().max().item() for p in t.D_A.parameters()) <= 0.01 + 1e-9


def test_linear_schedule_matches_reference_formula() -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = build_scheduler(opt, "linear", n_epochs=2, n_epochs_decay=2)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3])
    assert linear_factor(99, 100, 100) == 1.0 and linear_factor(199, 100, 100) == pytest.approx(1 / 101)


def test_step_and_cosine_schedules() -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    step = build_scheduler(opt, "step", 4, 0, step_epochs=2, step_gamma=0.5)
    seen = []
    for _ in range(4):
        opt.step()
        step.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([1.0, 0.5, 0.5, 0.25])
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    cos = build_scheduler(opt, "cosine", 2, 2, min_lr=0.1)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0)
    for _ in range(4):
        opt.step()
        cos.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_plateau_refuses_missing_metric_and_reduces_on_real_one() -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = build_scheduler(opt, "plateau", 10, 0, plateau_factor=0.2, plateau_patience=1, plateau_threshold=0.01)
    with pytest.raises(ValueError, match="validation metric"):
        step_scheduler(sched, None)
    for metric in (1.0, 0.5, 0.5, 0.5):  # improves, then stalls for 2 epochs > patience 1
        step_scheduler(sched, metric)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)


def test_fit_plateau_uses_validation_metric(tiny_config) -> None:
    t = Trainer(tiny_config("optim.lr_policy=plateau", "optim.n_epochs=2", "optim.n_epochs_decay=0"))
    result = t.fit()
    assert result.epoch == 2 and result.val_metric is not None and 0 < result.val_metric < 2
    assert t.sched_G.best <= result.val_metric and t.sched_G.best > 0  # a real metric, never the constant 0
    assert t.sched_G.last_epoch == 2


def test_fit_writes_logs_checkpoints_and_config(tiny_config) -> None:
    cfg = tiny_config("checkpoint.keep=2")
    result = Trainer(cfg).fit()
    run = cfg.run_dir
    assert result.step == 12 and result.epoch == 2  # 6 training images per domain, 2 epochs
    assert (run / "config.yaml").is_file()
    ckpts = list_checkpoints(run)
    assert [p.name for p in ckpts] == ["step_00000006.pt", "step_00000012.pt"]
    ckpt = load_training_checkpoint(ckpts[-1])
    assert set(ckpt) >= {"nets", "optim", "sched", "scaler", "pools", "counters", "rng", "config", "version"}
    assert set(ckpt["nets"]) == {"G_A", "G_B", "D_A", "D_B"}
    assert ckpt["config"]["model"]["ngf"] == 8 and ckpt["counters"]["step"] == 12
    assert len(ckpt["pools"]["A"]["images"]) == 4  # pool_size 4, full after 12 steps

    acc = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("loss/G_A", "loss/G_B", "loss/cycle_A", "loss/cycle_B", "loss/idt_A", "loss/idt_B", "loss/D_A",
                "loss/D_B", "lr/G", "lr/D", "val/cycle_l1", "perf/images_per_s"):
        assert tag in tags, tag
    assert {"images/A_to_B", "images/B_to_A"} <= set(acc.Tags()["images"])
    # n_epochs=1, n_epochs_decay=1: epoch 2 trains at lr * (1 - 1/2), then 0.
    assert [e.value for e in acc.Scalars("lr/G")] == pytest.approx([1e-4, 0.0])


def test_max_batches_and_subsets(tiny_config) -> None:
    t = Trainer(tiny_config("train.max_batches_per_epoch=2", "data.subset_A=3", "data.subset_B=4"))
    assert t.train_counts == (3, 4) and len(t.dataset) == 4
    assert t.fit().step == 4  # 2 epochs x 2 batches


def _state(t: Trainer) -> dict[str, torch.Tensor]:
    flat = {f"{n}.{k}": v for n, net in t.nets.items() for k, v in net.state_dict().items()}
    for name, opt in (("opt_G", t.opt_G), ("opt_D", t.opt_D)):
        for i, s in opt.state_dict()["state"].items():
            flat.update({f"{name}.{i}.{k}": v for k, v in s.items() if torch.is_tensor(v)})
    return flat


def test_resume_mid_epoch_reproduces_uninterrupted_run(tiny_config, tmp_path: Path) -> None:
    """Stop after 4 of 6 batches of epoch 1, resume from the run folder: weights, Adam moments,
    pools and lr must equal those of a run that was never interrupted, bit for bit."""
    common = ["deterministic=true", "optim.n_epochs=1", "optim.n_epochs_decay=1"]
    ref = Trainer(tiny_config(*common, "name=ref"))
    ref.fit()

    stopped = Trainer(tiny_config(*common, "name=cut"))
    original = stopped.train_step

    def stop_after_four(*args, **kwargs):
        logs = original(*args, **kwargs)
        if stopped.step + 1 == 4:
            stopped._stop_requested = True
        return logs

    stopped.train_step = stop_after_four
    first = stopped.fit()
    assert first.stopped_early and first.step == 4 and first.epoch == 0

    resumed = Trainer(tiny_config(*common, "name=cut", f"resume={tmp_path / 'runs' / 'cut'}"))
    assert (resumed.step, resumed.batch_in_epoch) == (4, 4)
    result = resumed.fit()
    assert result.step == 12 and not result.stopped_early
    a, b = _state(ref), _state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for pa, pb in ((ref.pool_A, resumed.pool_A), (ref.pool_B, resumed.pool_B)):
        assert all(torch.equal(x, y) for x, y in zip(pa.images, pb.images))
    assert ref.opt_G.param_groups[0]["lr"] == resumed.opt_G.param_groups[0]["lr"]
    assert ref.val_metric == resumed.val_metric


def test_resume_from_cli_uses_stored_config(tiny_config, capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_config("optim.n_epochs=1", "optim.n_epochs_decay=0")
    Trainer(cfg).fit()
    # Continue the finished run for one more epoch: stored config + an override.
    assert train.main(["--resume", str(cfg.run_dir), "optim.n_epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "step 12" in out
    assert [p.name for p in list_checkpoints(cfg.run_dir)][-1] == "step_00000012.pt"


def test_scalar_window_ignores_a_skipped_nan_step(tiny_config) -> None:
    t = Trainer(tiny_config())
    logged = {}
    t.logger.scalars = lambda step, values: logged.update(values)
    t._window["G_A"] += [1.0, float("nan"), 3.0]
    t._window["D_A"] += [float("nan")]
    t._log_scalars(images_per_s=2.0)
    assert logged["loss/G_A"] == 2.0 and "loss/D_A" not in logged
    assert logged["perf/images_per_s"] == 2.0
