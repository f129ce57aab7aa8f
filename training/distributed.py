"""The one place that knows about processes: torchrun env, process group, rank, reductions, and
the epoch sampler every trainer uses (shuffled, seeded, sharded by rank, resumable mid-epoch),
and the signals: Ctrl-C and SIGTERM during training, where the first asks for a clean stop
(checkpoint, exit 0) and the second aborts at once (exit 130, no checkpoint).

A plain ``python train.py`` run never creates a process group; everything here then
degrades to the single-process answer (rank 0, world size 1, reductions are identities).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from datetime import timedelta
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init(device_kind: str) -> None:
    """Join the process group when started by torchrun (NCCL on CUDA, gloo on CPU)."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    backend = "nccl" if device_kind == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    """This process's GPU index on its node; read from torchrun's env, so valid before :func:`init`."""
    return int(os.environ.get("LOCAL_RANK", 0)) if launched_by_torchrun() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Only rank 0 writes files, logs and progress bars."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return value.clone()
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if any rank says True (stop requests from signals). A collective and a
    host read under DDP, so the trainer asks only every few steps."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_ranks_true(flag: torch.Tensor) -> torch.Tensor:
    """A device bool that is True only if it is True on every rank: no host read, so a step can
    decide to skip its update on every rank alike without synchronising with the host."""
    if not is_distributed():
        return flag
    t = flag.to(torch.float32).reshape(1)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t.reshape(()) > 0


def broadcast_from_main(value: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``value`` on every rank (a copy; single process: the value itself)."""
    if not is_distributed():
        return value
    out = value.detach().clone()
    dist.broadcast(out, src=0)
    return out


class EpochSampler(Sampler):
    """A :class:`DistributedSampler` (shuffled, seeded, sharded by rank) that yields
    ``(epoch, index)`` and can start part-way through an epoch (for mid-epoch resume).

    Works unchanged in a single process (``num_replicas=1, rank=0``).
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0) -> None:
        self.inner = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation; skip its first ``start`` samples of this rank."""
        self.inner.set_epoch(epoch)
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for k, index in enumerate(self.inner):
            if k >= self.start:
                yield (self.epoch, index)

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.start)


class StopRequests:
    """Installs the handlers for its ``with`` block; ``requested`` turns True at the first signal."""

    def __init__(self, announce: bool = True) -> None:
        self.requested = False
        self.announce = announce
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # second signal: stop now
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print(f"\n{signal.Signals(signum).name} received: saving a checkpoint and exiting "
                  f"(send again to abort without saving)", file=sys.stderr, flush=True)

    def __enter__(self) -> StopRequests:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a test runner thread): no handlers
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a forked worker inherits the trainer's handlers, so a Ctrl-C to
    the process group would set its own flag, print the notice again and, the second time, kill the
    worker mid-batch. Workers ignore the signals; the trainer stops them when it exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
