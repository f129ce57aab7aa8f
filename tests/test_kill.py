"""Subprocesses: SIGKILL at random moments and in the middle of a checkpoint write, then resume;
SIGINT / SIGTERM save and exit 0; a second Ctrl-C aborts with exit 130 and one line. All slow."""

from __future__ import annotations

import os
import random
import re
import signal
import time
from pathlib import Path

import pytest
from conftest import BATCHES_PER_EPOCH, TINY
from helpers import ROOT, Proc, steps_on_disk

from utils.checkpoint import list_checkpoints, read_training_checkpoint

pytestmark = pytest.mark.slow


def _args(tiny_dataset: Path, root: Path, *extra: str) -> list[str]:
    return [f"data.root={tiny_dataset}", f"log.root={root}", "name=run", *TINY, "optim.n_epochs_decay=0",
            "log.images_every=0", "log.scalars_every=1", *extra]


KILL_MID_WRITE = """
import io, os, signal, sys
sys.path.insert(0, {root!r})
import torch
real, calls = torch.save, [0]
def save(obj, f, *a, **k):
    calls[0] += 1
    if calls[0] == {nth}:  # write half of this checkpoint, fsync it, then die like a power cut
        buf = io.BytesIO()
        real(obj, buf, *a, **k)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2]); f.flush(); os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return real(obj, f, *a, **k)
torch.save = save
import runpy
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path({train!r}, run_name="__main__")
"""


def _check_run_dir(run_dir: Path) -> list[int]:
    for p in list_checkpoints(run_dir):
        read_training_checkpoint(p)  # every checkpoint on disk loads
    return steps_on_disk(run_dir)


N_RANDOM_KILLS = 4


def test_sigkill_at_random_moments_then_resume_finishes_the_run(tiny_dataset: Path, tmp_path: Path) -> None:
    """One kill in the middle of a checkpoint write, then SIGKILL at 4 random (seeded) moments,
    resuming each time: no checkpoint is ever unreadable, the step never goes backwards, no stale
    lock blocks the relaunch, and the run ends at exactly the planned step."""
    epochs, keep = 5, 3
    total = epochs * BATCHES_PER_EPOCH
    args = _args(tiny_dataset, tmp_path, f"optim.n_epochs={epochs}", "checkpoint.every_steps=2",
                 f"checkpoint.keep={keep}")
    run_dir = tmp_path / "run"
    rng = random.Random(1234)
    resumed_steps: list[int] = []

    # 1. Killed while writing its 3rd checkpoint (step 6): a half-written temp file is left.
    script = tmp_path / "kill_mid_write.py"
    script.write_text(KILL_MID_WRITE.format(root=str(ROOT), nth=3, train=str(ROOT / "train.py")))
    proc = Proc([str(script), *args])
    assert proc.finish(timeout=120) == -signal.SIGKILL, proc.output
    tmps = list((run_dir / "checkpoints").glob(".step_*.tmp"))
    assert len(tmps) == 1 and tmps[0].name.startswith(".step_00000006.pt.")
    assert _check_run_dir(run_dir) == [2, 4]
    newest_seen = 4

    # 2. Four SIGKILLs at random moments, each followed by a resume from the run folder. A moment is
    # "once checkpoint `target` is on disk, plus a random 0-300 ms": random, yet sure to land before
    # the run ends on any machine speed; some land inside a checkpoint write or right at start-up.
    targets = sorted(rng.sample(range(6, total - 8), N_RANDOM_KILLS))
    for target in [*targets, None]:
        proc = Proc(["train.py", "--resume", str(run_dir)])
        line = proc.wait_for(r"^resumed from ")
        found = re.search(r"\(epoch (\d+), step (\d+)\)", line)
        resumed_epoch, step = int(found.group(1)), int(found.group(2))
        assert step == newest_seen, f"resumed at {step}, newest good checkpoint was {newest_seen}"
        assert not resumed_steps or step >= resumed_steps[-1], "the step counter went backwards"
        resumed_steps.append(step)
        if target is None:
            break
        deadline = time.monotonic() + 120
        while (steps_on_disk(run_dir) or [0])[-1] < target and proc.p.poll() is None:
            assert time.monotonic() < deadline, proc.output
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.p.send_signal(signal.SIGKILL)
        assert proc.finish() == -signal.SIGKILL, "the run ended before it could be killed:\n" + proc.output
        steps = _check_run_dir(run_dir)
        # A kill after a checkpoint is renamed into place but before the oldest is pruned leaves
        # one extra; the resumed run's first save prunes it.
        assert len(steps) <= keep + 1 and steps[-1] >= newest_seen
        newest_seen = steps[-1]
    # The last kill landed after the final checkpoint (its epoch closed): nothing is left to do. A
    # kill between the last step's checkpoint and the epoch's end leaves the epoch to close: done.
    # "Nothing to do" writes nothing, so an extra checkpoint left by that kill stays.
    finished_before = resumed_steps[-1] == total and resumed_epoch == epochs
    if finished_before:
        assert proc.finish(timeout=120) == 1 and "nothing to do" in proc.output, proc.output
    else:
        assert proc.finish(timeout=120) == 0, proc.output
        assert f"done: epoch {epochs}, step {total}" in proc.output
    steps = _check_run_dir(run_dir)
    assert steps[-1] == total and len(steps) <= keep + finished_before
    assert not list((run_dir / "checkpoints").glob(".*.tmp")), "stale temp files were not cleaned"
    assert resumed_steps == sorted(resumed_steps) and len(resumed_steps) == N_RANDOM_KILLS + 1
    final = read_training_checkpoint(run_dir / "checkpoints" / f"step_{total:08d}.pt")
    assert final.counters["epoch"] == epochs and final.step == total


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_exits_0_and_resumes(tiny_dataset: Path, tmp_path: Path, sig: signal.Signals) -> None:
    """A long run with no scheduled checkpoints; the signal saves one and exits 0 within seconds.
    SIGINT goes to the whole process group with a DataLoader worker, as Ctrl-C in a terminal does."""
    workers = "1" if sig == signal.SIGINT else "0"
    args = _args(tiny_dataset, tmp_path, "optim.n_epochs=200", "checkpoint.every_epochs=0",
                 f"data.num_workers={workers}", "data.persistent_workers=true")
    run_dir = tmp_path / "run"

    def interrupt(proc: Proc) -> None:
        proc.wait_for(r"^epoch \d+/200 done")  # training is under way, no checkpoint written yet
        t0 = time.monotonic()
        if sig == signal.SIGINT:
            os.killpg(proc.p.pid, sig)
        else:
            proc.p.send_signal(sig)
        assert proc.finish(timeout=30) == 0, proc.output
        took = time.monotonic() - t0
        assert took < 10, f"took {took:.1f}s to stop"
        assert f"{sig.name} received" in proc.output and "stopped at epoch" in proc.output
        assert proc.output.count(f"{sig.name} received") == 1  # the DataLoader workers stay quiet

    proc = Proc(["train.py", *args], new_session=True)
    interrupt(proc)
    first = _check_run_dir(run_dir)
    assert len(first) == 1 and first[0] >= BATCHES_PER_EPOCH

    proc = Proc(["train.py", "--resume", str(run_dir)], new_session=True)
    line = proc.wait_for(r"^resumed from ")
    assert f"step {first[0]})" in line
    interrupt(proc)
    second = _check_run_dir(run_dir)
    assert second[-1] > first[0]


def test_a_second_ctrl_c_aborts_with_exit_130_and_one_line(tiny_dataset: Path, tmp_path: Path) -> None:
    """The first SIGINT asks for a clean stop; a second before it completes aborts: exit 130, one
    line, no traceback, also with DataLoader workers (Ctrl-C reaches the whole process group; the
    workers ignore it). A slow step (a sleep in the checkpoint write) leaves room for the second."""
    script = tmp_path / "slow_save.py"
    script.write_text(f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
import torch
real = torch.save
def save(obj, f, *a, **k):
    print("saving", flush=True)
    time.sleep(30)
    return real(obj, f, *a, **k)
torch.save = save
import runpy
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path({str(ROOT / "train.py")!r}, run_name="__main__")
""")
    proc = Proc([str(script), *_args(tiny_dataset, tmp_path, "optim.n_epochs=200", "checkpoint.every_epochs=0",
                                     "data.num_workers=1", "data.persistent_workers=true")], new_session=True)
    proc.wait_for(r"^epoch 1/200 done")
    os.killpg(proc.p.pid, signal.SIGINT)
    proc.wait_for(r"^saving")
    os.killpg(proc.p.pid, signal.SIGINT)
    assert proc.finish(timeout=30) == 130, proc.output
    assert "Traceback" not in proc.output and proc.output.rstrip().endswith("interrupted")
    assert not list_checkpoints(tmp_path / "run")  # aborted: nothing half-written was kept
    assert not list((tmp_path / "run" / "checkpoints").glob(".*.tmp"))
