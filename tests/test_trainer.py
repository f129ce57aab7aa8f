"""The training loop: G-then-D phase order, knobs, schedules, logging, checkpoints and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import BATCHES_PER_EPOCH
from helpers import stop_after
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from options.common import OptimConfig
from training.cyclegan import CycleGANTrainer
from training.schedulers import build_scheduler, linear_factor, step_scheduler
from utils.checkpoint import list_checkpoints, load_file, read_training_checkpoint


def _batch(t: CycleGANTrainer) -> dict:
    t.sampler.set_epoch(0)
    return next(iter(t.loader))


def _params(*nets: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for net in nets for p in net.parameters()]


def test_generator_phase_leaves_no_gradient_in_D_then_D_phase_leaves_G(tiny_config, make_trainer) -> None:
    t = make_trainer(tiny_config())
    batch = _batch(t)
    real_A, real_B = t.to_device(batch["A"]), t.to_device(batch["B"])
    D_before, G_before = _params(t.D_A, t.D_B), _params(t.G_A, t.G_B)
    tr, g = t.generator_step(real_A, real_B)
    assert bool(t.update("G", g.total))
    assert all(p.grad is None for net in (t.D_A, t.D_B) for p in net.parameters())
    assert all(p.grad is not None for net in (t.G_A, t.G_B) for p in net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(D_before, _params(t.D_A, t.D_B)))
    assert not all(torch.equal(a, b) for a, b in zip(G_before, _params(t.G_A, t.G_B)))
    assert all(p.requires_grad for p in t.D_A.parameters())  # unfrozen again for the D phase
    G_after = _params(t.G_A, t.G_B)
    d = t.discriminator_step(real_A, real_B, tr.fake_B.detach(), tr.fake_A.detach())
    assert bool(t.update("D", d.total))
    assert all(torch.equal(a, b) for a, b in zip(G_after, _params(t.G_A, t.G_B)))
    assert not all(torch.equal(a, b) for a, b in zip(D_before, _params(t.D_A, t.D_B)))
    assert len(t.pool_A.images) == real_A.shape[0]


def test_train_step_logs_every_term_as_device_scalars(tiny_config, make_trainer) -> None:
    t = make_trainer(tiny_config())
    logs = t.train_step(_batch(t))
    assert set(logs) == {"G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B", "G_total", "D_A", "D_B", "nonfinite"}
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in logs.values())
    terms = ("G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B")
    assert logs["G_total"].item() == pytest.approx(sum(logs[k].item() for k in terms), rel=1e-5)
    assert logs["nonfinite"].item() == 0.0


def test_d_steps_per_g_and_clipping(tiny_config, make_trainer) -> None:
    t = make_trainer(tiny_config("train.d_steps_per_g=2", "train.d_clip=0.01"))
    batch = _batch(t)
    t.train_step(batch)  # step 0: G and D
    t.step = 1
    G_before = _params(t.G_A, t.G_B)
    logs = t.train_step(batch)  # step 1: D only
    assert "G_A" not in logs and "D_A" in logs
    assert all(torch.equal(a, b) for a, b in zip(G_before, _params(t.G_A, t.G_B)))
    assert max(p.abs().max().item() for p in t.D_A.parameters()) <= 0.01 + 1e-9


def _opt(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def test_linear_schedule_matches_reference_formula() -> None:
    opt = _opt()
    sched = build_scheduler(opt, OptimConfig(lr_policy="linear", n_epochs=2, n_epochs_decay=2))
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3])
    assert linear_factor(99, 100, 100) == 1.0 and linear_factor(199, 100, 100) == pytest.approx(1 / 101)


def test_step_and_cosine_schedules() -> None:
    opt = _opt()
    step = build_scheduler(opt, OptimConfig(lr_policy="step", n_epochs=4, n_epochs_decay=0, step_epochs=2,
                                            step_gamma=0.5))
    seen = []
    for _ in range(4):
        opt.step()
        step.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([1.0, 0.5, 0.5, 0.25])
    opt = _opt()
    cos = build_scheduler(opt, OptimConfig(lr_policy="cosine", n_epochs=2, n_epochs_decay=2, min_lr=0.1))
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0)
    for _ in range(4):
        opt.step()
        cos.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_plateau_refuses_missing_metric_and_reduces_on_real_one() -> None:
    opt = _opt()
    sched = build_scheduler(opt, OptimConfig(lr_policy="plateau", n_epochs=10, n_epochs_decay=0, plateau_factor=0.2,
                                             plateau_patience=1, plateau_threshold=0.01))
    with pytest.raises(ValueError, match="validation metric"):
        step_scheduler(sched, None)
    for metric in (1.0, 0.5, 0.5, 0.5):  # improves, then stalls for 2 epochs > patience 1
        step_scheduler(sched, metric)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)


def test_fit_plateau_steps_on_the_validation_metric(tiny_config, make_trainer) -> None:
    t = make_trainer(tiny_config("optim.lr_policy=plateau", "optim.n_epochs=2", "optim.n_epochs_decay=0"))
    result = t.fit()
    val = result.metrics["cycle_l1"]
    assert result.epoch == 2 and 0 < val < 2
    sched = t.schedulers["G"]
    assert 0 < sched.best <= val  # a real metric, never the reference's constant 0
    assert sched.last_epoch == 2


def test_fit_writes_logs_checkpoints_and_config(tiny_config, make_trainer) -> None:
    cfg = tiny_config("checkpoint.keep=2")
    result = make_trainer(cfg).fit()
    run = cfg.run_dir
    assert result.step == 2 * BATCHES_PER_EPOCH and result.epoch == 2
    assert (run / "config.yaml").is_file()
    ckpts = list_checkpoints(run)
    assert [p.name for p in ckpts] == ["step_00000006.pt", "step_00000012.pt"]
    raw = load_file(ckpts[-1])
    assert raw["format"] == "cyclegan-checkpoint" and raw["version"] == 2 and raw["method"] == "cyclegan"
    ckpt = read_training_checkpoint(run)
    assert ckpt.path == ckpts[-1] and set(ckpt.nets) == {"G_A", "G_B", "D_A", "D_B"}
    assert set(ckpt.optim) == set(ckpt.sched) == {"G", "D"}
    assert ckpt.config["model"]["ngf"] == 8 and ckpt.counters["step"] == 12 and "cycle_l1" in ckpt.metrics
    assert len(ckpt.extra["pools"]["A"]["images"]) == 4  # pool_size 4, full after 12 steps

    acc = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("loss/G_A", "loss/G_B", "loss/cycle_A", "loss/cycle_B", "loss/idt_A", "loss/idt_B", "loss/D_A",
                "loss/D_B", "lr/G", "lr/D", "val/cycle_l1", "perf/images_per_s", "health/nonfinite_total"):
        assert tag in tags, tag
    assert {"images/A_to_B", "images/B_to_A"} <= set(acc.Tags()["images"])
    row = acc.Images("images/A_to_B")[-1]  # real | translated | reconstructed | identity, side by side
    assert (row.width, row.height) == (4 * 32, 32)
    # n_epochs=1, n_epochs_decay=1: epoch 2 trains at lr * (1 - 1/2), then 0.
    assert [e.value for e in acc.Scalars("lr/G")] == pytest.approx([1e-4, 0.0])
    # scalars_every=2: 6 windows, each the mean of two steps' values, read once per window.
    assert [e.step for e in acc.Scalars("loss/G_A")] == [2, 4, 6, 8, 10, 12]


def test_max_batches_and_subsets(tiny_config, make_trainer) -> None:
    t = make_trainer(tiny_config("train.max_batches_per_epoch=2", "data.subset_A=3", "data.subset_B=4"))
    assert t.train_counts == (3, 4) and len(t.dataset) == 4
    assert t.fit().step == 4  # 2 epochs x 2 batches


def _state(t: CycleGANTrainer) -> dict[str, torch.Tensor]:
    flat = {f"{n}.{k}": v for n, net in t.nets.items() for k, v in net.state_dict().items()}
    for name, opt in t.optimizers.items():
        for i, s in opt.state_dict()["state"].items():
            flat.update({f"{name}.{i}.{k}": v for k, v in s.items() if torch.is_tensor(v)})
    return flat


def test_resume_mid_epoch_reproduces_uninterrupted_run(tiny_config, make_trainer, tmp_path: Path) -> None:
    """Stop after 4 of 6 batches of epoch 1, resume from the run folder: weights, Adam moments,
    pools and lr must equal those of a run that was never interrupted, bit for bit."""
    common = ["deterministic=true", "optim.n_epochs=1", "optim.n_epochs_decay=1"]
    ref = make_trainer(tiny_config(*common, "name=ref"))
    ref.fit()

    stopped = make_trainer(tiny_config(*common, "name=cut"))
    stop_after(stopped, 4)
    first = stopped.fit()
    assert first.stopped_early and first.step == 4 and first.epoch == 0

    resumed = make_trainer(tiny_config(*common, "name=cut", f"resume={tmp_path / 'runs' / 'cut'}"))
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
    assert ref.metrics == resumed.metrics


def test_resume_from_cli_uses_stored_config(tiny_config, make_trainer, capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_config("optim.n_epochs=1", "optim.n_epochs_decay=0")
    make_trainer(cfg).fit()
    # Continue the finished run for one more epoch: stored config + an override.
    assert train.main(["--resume", str(cfg.run_dir), "optim.n_epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "step 6" in out and "changed: optim.n_epochs" in out
    assert [p.name for p in list_checkpoints(cfg.run_dir)][-1] == "step_00000012.pt"
    assert read_training_checkpoint(cfg.run_dir).config["optim"]["n_epochs"] == 2  # says what ran


def test_scalar_window_ignores_a_skipped_nan_step() -> None:
    from training.logger import LossWindow

    w = LossWindow(torch.device("cpu"))
    for g, d in ((1.0, float("nan")), (float("nan"), float("nan")), (3.0, float("nan"))):
        w.add({"G_A": torch.tensor(g), "D_A": torch.tensor(d)}, images=1)
        w.note_finite(torch.tensor(g == g))
    read = w.read()
    assert read.means == {"G_A": 2.0} and read.nonfinite_total == 1 and read.worst_streak == 1
    assert read.images_per_s > 0
    w.note_finite(torch.tensor(False))
    w.note_finite(torch.tensor(False))
    assert w.read().worst_streak == 2 and w.read().worst_streak == 2  # a streak that goes on stays the worst
