"""DDP under torchrun: 2 CPU processes (gloo) train a tiny CycleGAN, stay in sync, write once,
resume, and train the same model as one process with the same global batch. Runs
tests/ddp_worker.py (train.py plus a per-rank weight dump)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY

from utils.checkpoint import list_checkpoints

ROOT = Path(__file__).resolve().parents[1]
# The tiny config (conftest), 3 steps an epoch on each of 2 processes, plateau on the validation metric.
DDP = [*TINY, "data.demo=false", "data.batch_size=1", "optim.lr_policy=plateau", "optim.n_epochs_decay=0",
       "train.max_batches_per_epoch=3", "train.pool_size=2", "train.amp=off", "log.scalars_every=1",
       "log.images_every=2", "checkpoint.keep=5"]


def torchrun(dump: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "ddp_worker.py"), str(dump), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def load_dumps(dump: Path) -> tuple[dict, dict]:
    r0 = torch.load(dump / "rank0.pt", weights_only=True)
    r1 = torch.load(dump / "rank1.pt", weights_only=True)
    return r0, r1


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() == {"G_A", "G_B", "D_A", "D_B"}
    for name in a:
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}.{key} differs between ranks"


@pytest.mark.slow
def test_torchrun_two_cpu_processes_sync_write_once_and_resume(tiny_dataset: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    common = ["--config", str(ROOT / "experiments" / "quickstart.yaml"), f"data.root={tiny_dataset}",
              f"log.root={runs}", "name=ddp", *DDP]

    # ---- 2 epochs of 3 steps on 2 ranks
    proc = torchrun(tmp_path / "dump1", *common, "optim.n_epochs=2")
    r0, r1 = load_dumps(tmp_path / "dump1")
    assert r0["distributed"] and r0["world"] == r1["world"] == 2 and (r0["rank"], r1["rank"]) == (0, 1)
    assert (r0["sampler_replicas"], r0["sampler_rank"], r1["sampler_rank"]) == (2, 0, 1)  # data sharded
    assert r0["step"] == r1["step"] == 6 and r0["epoch"] == 2
    assert_same_weights(r0["nets"], r1["nets"])
    # the validation metric is all-reduced, so the plateau scheduler saw the same value everywhere
    assert r0["metrics"]["cycle_l1"] == r1["metrics"]["cycle_l1"] and r0["lr_G"] == r1["lr_G"]

    # only rank 0 writes: checkpoints, the config, TensorBoard events; rank 0's file = the weights
    assert r1["writes"] == []
    ckpts = list_checkpoints(runs / "ddp")
    assert [p.name for p in ckpts] == ["step_00000003.pt", "step_00000006.pt"]
    assert r0["writes"] == [str(p) for p in ckpts]
    assert not [p for p in (runs / "ddp" / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert len(list((runs / "ddp").rglob("events.out.tfevents.*"))) == 1
    saved = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
    assert_same_weights(saved["nets"], r0["nets"])
    assert proc.stdout.count("epoch 2/2 done") == 1  # one process prints

    # ---- resume under DDP for a third epoch: continues from step 6, in sync, one writer
    torchrun(tmp_path / "dump2", *common, "optim.n_epochs=3", f"resume={runs / 'ddp'}")
    q0, q1 = load_dumps(tmp_path / "dump2")
    assert q0["step"] == q1["step"] == 9 and q0["epoch"] == 3
    assert_same_weights(q0["nets"], q1["nets"])
    assert q1["writes"] == [] and q0["writes"] == [str(runs / "ddp" / "checkpoints" / "step_00000009.pt")]
    resumed = torch.load(runs / "ddp" / "checkpoints" / "step_00000009.pt", map_location="cpu", weights_only=True)
    assert resumed["counters"]["step"] == 9
    assert_same_weights(resumed["nets"], q0["nets"])
    assert any(not torch.equal(resumed["nets"]["G_A"][k], saved["nets"]["G_A"][k]) for k in saved["nets"]["G_A"])


@pytest.mark.slow
def test_two_processes_of_batch_1_train_as_one_process_of_batch_2(tiny_dataset: Path, tmp_path: Path,
                                                                    make_trainer) -> None:
    """One step from the same start: DDP averages the per-rank gradients of per-image means, which
    is the gradient of the batch-2 mean, and the pools return the new fakes while they fill. So the
    trained networks compute the same function up to float noise.

    The biases of convolutions followed by instance norm have a gradient of exactly 0 in exact
    arithmetic (the norm removes them); Adam's first step, lr * g / |g|, turns the float noise
    of those zeros into moves of up to lr either way. They do not change any output."""
    lr = 2e-4
    one_step = [f"data.root={tiny_dataset}", *DDP, "optim.lr_policy=linear", "optim.n_epochs=1",
                "train.max_batches_per_epoch=1", "deterministic=true", f"optim.lr={lr}"]
    torchrun(tmp_path / "dump", *one_step, f"log.root={tmp_path / 'ddp'}", "name=ddp")
    ddp, _ = load_dumps(tmp_path / "dump")
    from options.common import load_training_config

    single = make_trainer(load_training_config(None, [*one_step, "data.batch_size=2", f"log.root={tmp_path / 's'}",
                                                      "name=single"]))
    start = {k: v.clone() for k, v in single.G_A.state_dict().items()}
    assert single.fit().step == 1 and ddp["step"] == 1
    for name, net in single.nets.items():
        for key, value in net.state_dict().items():
            other = ddp["nets"][name][key]
            if key.endswith("bias"):
                assert (value - other).abs().max() <= 2 * lr + 1e-6, f"{name}.{key}"
            else:
                assert torch.allclose(value, other, rtol=1e-5, atol=1e-6), f"{name}.{key}"
    assert any(not torch.equal(start[k], v) for k, v in single.G_A.state_dict().items())  # it did train
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    twin = type(single.G_A)(3, 3, 8, 1).eval()
    twin.load_state_dict(ddp["nets"]["G_A"])
    with torch.no_grad():
        assert torch.allclose(single.G_A.eval()(x), twin(x), atol=1e-5)  # the same function


def test_single_process_run_creates_no_process_group(tiny_config, make_trainer) -> None:
    import torch.distributed as tdist

    t = make_trainer(tiny_config())
    assert not tdist.is_initialized()
    assert (t.rank, t.world) == (0, 1)
    assert not isinstance(t.gen_pair, torch.nn.parallel.DistributedDataParallel)


def test_local_rank_is_read_before_the_process_group_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer picks its GPU before joining the group: under torchrun, rank 1 must get cuda:1."""
    from training import distributed as dist

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not dist.is_distributed() and dist.local_rank() == 1
    monkeypatch.setenv("WORLD_SIZE", "1")  # a single process ignores a stray LOCAL_RANK
    assert dist.local_rank() == 0


@pytest.mark.slow
def test_torchrun_trains_cut_with_netF_in_sync(tiny_dataset: Path, tmp_path: Path) -> None:
    """CUT under DDP: netF exists before DDP wraps it (built from the feature channels, not the first
    batch), so G, netF and D stay identical on both ranks and only rank 0 writes."""
    from test_cut import CUT_TINY

    runs = tmp_path / "runs"
    torchrun(tmp_path / "dump", f"data.root={tiny_dataset}", f"log.root={runs}", "name=cut", *CUT_TINY,
             "optim.n_epochs_decay=0", "train.max_batches_per_epoch=3", "train.amp=off")
    r0, r1 = load_dumps(tmp_path / "dump")
    assert r0["distributed"] and r0["step"] == r1["step"] == 3
    assert r0["nets"].keys() == r1["nets"].keys() == {"G", "F", "D"}
    for name in r0["nets"]:
        for key in r0["nets"][name]:
            assert torch.equal(r0["nets"][name][key], r1["nets"][name][key]), f"{name}.{key} differs between ranks"
    assert r1["writes"] == [] and r0["writes"] == [str(p) for p in list_checkpoints(runs / "cut")]
    assert r0["metrics"]["nce"] == r1["metrics"]["nce"]  # the held-out NCE is all-reduced
