"""The one place that knows about processes: torchrun env, process group, rank, reductions.

A plain ``python train.py`` run never creates a process group; everything here then
degrades to the single-process answer (rank 0, world size 1, reductions are identities).
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


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
