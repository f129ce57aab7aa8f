"""Small helpers shared by the reliability tests (not fixtures: plain functions)."""

from __future__ import annotations

import hashlib
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from utils.checkpoint import list_checkpoints

ROOT = Path(__file__).resolve().parents[1]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def steps_on_disk(run_dir: Path) -> list[int]:
    return [int(p.stem.split("_")[1]) for p in list_checkpoints(run_dir)]


def snapshot(obj: torch.nn.Module | torch.optim.Optimizer) -> dict:
    """A deep copy of a module's state_dict or an optimiser's per-parameter state."""
    if isinstance(obj, torch.optim.Optimizer):
        return {k: {n: (v.clone() if torch.is_tensor(v) else v) for n, v in s.items()}
                for k, s in obj.state_dict()["state"].items()}
    return {k: v.detach().clone() for k, v in obj.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, dict):
            if not same(x, y):
                return False
        elif torch.is_tensor(x):
            if not torch.equal(x, y):
                return False
        elif x != y:
            return False
    return True


class Proc:
    """A Python subprocess whose merged output is read line by line in the background."""

    def __init__(self, args: list[str], cwd: Path = ROOT, new_session: bool = False) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.p = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=new_session)
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.p.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, pattern: str, timeout: float = 60) -> str | None:
        """The first new line matching ``pattern``; None if the process ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                return None
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = 60) -> int:
        rc = self.p.wait(timeout=timeout)
        while (line := self._q.get(timeout=10)) is not None:
            self.lines.append(line)
        return rc

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def stop_after(trainer, steps: int) -> None:
    """Make ``trainer.fit()`` stop after ``steps`` steps, as a SIGINT / SIGTERM then would: the
    stop request is raised inside the step that reaches ``steps``."""
    step = trainer.train_step

    def stepping(batch):
        logs = step(batch)
        if trainer.step + 1 == steps:
            trainer.stop.requested = True
        return logs

    trainer.train_step = stepping


def randomise(net: torch.nn.Module, seed: int, scale: float = 0.2) -> torch.nn.Module:
    """Random values for every parameter, norms included (their init is 1 / 0, which hides mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return net


def legacy_fast_neural_style_file(net: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A Johnson net's state_dict as PyTorch's fast_neural_style files have it: plus the pre-0.4
    InstanceNorm running statistics after each norm's bias."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, value in net.state_dict().items():
        sd[key] = value.clone()
        if key.endswith(".bias") and key.split(".")[-2].startswith("in"):
            prefix = key[: -len("bias")]
            sd[prefix + "running_mean"] = torch.randn(value.shape, generator=g)
            sd[prefix + "running_var"] = torch.rand(value.shape, generator=g) + 0.5
    return sd
