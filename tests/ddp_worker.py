"""Test helper for tests/test_ddp.py (not a test): ``train.py`` under torchrun, plus a dump.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py DUMP_DIR \
        --config experiments/quickstart.yaml key=value ...

Runs exactly what ``train.py`` runs, counting checkpoint writes per rank, then each rank writes
``DUMP_DIR/rank<r>.pt``: its four networks' weights, its counters, lr and validation metrics.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import training.trainer as trainer_module  # noqa: E402
from train import parse_args, resolve_config  # noqa: E402
from training import build_trainer  # noqa: E402
from training import distributed as dist  # noqa: E402


def main() -> int:
    dump = Path(sys.argv[1])
    writes: list[str] = []
    real_save = trainer_module.save_atomic

    def counting_save(obj, path):  # noqa: ANN001 - same signature as utils.checkpoint.save_atomic
        writes.append(str(path))
        return real_save(obj, path)

    trainer_module.save_atomic = counting_save
    cfg = resolve_config(parse_args(sys.argv[2:]))
    t = build_trainer(cfg)
    result = t.fit()
    dump.mkdir(parents=True, exist_ok=True)
    torch.save({
        "rank": t.rank, "world": t.world, "distributed": dist.is_distributed(),
        "nets": {name: {k: v.detach().cpu() for k, v in net.state_dict().items()} for name, net in t.nets.items()},
        "step": result.step, "epoch": result.epoch, "metrics": result.metrics,
        "lr_G": t.optimizers["G"].param_groups[0]["lr"], "writes": writes,
        "sampler_replicas": t.sampler.inner.num_replicas, "sampler_rank": t.sampler.inner.rank,
    }, dump / f"rank{t.rank}.pt")
    dist.barrier()
    dist.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
