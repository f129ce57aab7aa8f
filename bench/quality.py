"""Section ``quality``: bf16 must not cost quality. The same quickstart-like CycleGAN run
(``experiments/quickstart.yaml``: the demo dataset, 64 px crops, ngf 32, 4 blocks) in fp32 and
in bf16, same seeds and steps, deterministic kernels; both final generators are then scored in
fp32 on the same held-out images (mean cycle L1, the plateau metric; lower is better). The
guard passes when the bf16 mean is at most 5% above (worse than) the fp32 mean; a bf16 run that
scores better passes. The spread of the fp32 runs over seeds is printed beside it: a difference
smaller than that spread is noise, not an effect of the precision.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.tables import print_table
from bench.workspace import Workspace, quiet

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.05


@dataclass
class QualitySpec:
    steps: int = 200  # training iterations per run (one epoch of at most this many batches)
    seeds: int = 2
    data_root: str = ""  # the demo dataset (made there if missing); "" = inside the workspace


def quality_run(ws: Workspace, spec: QualitySpec, amp: str, seed: int) -> dict[str, Any]:
    """Train one quickstart-like run; its validation metric in its own precision and in fp32."""
    from options.common import load_training_config

    data_root = spec.data_root or str(ws.root / "demo")
    cfg = load_training_config(ROOT / "experiments" / "quickstart.yaml", [
        f"name=quality_{amp}_{seed}", f"seed={seed}", f"device={ws.device}", f"log.root={ws.root / 'runs'}",
        "log.progress=false", "log.images_every=0", f"data.root={data_root}", "data.demo=true",
        "data.num_workers=0", "optim.n_epochs=1", "optim.n_epochs_decay=0",
        f"train.max_batches_per_epoch={spec.steps}", f"train.amp={amp}", "deterministic=true",
        "checkpoint.every_epochs=0"])
    start = time.perf_counter()
    trainer = ws.trainer(cfg)
    with quiet():
        result = trainer.fit()
        trainer.cfg.train.amp = "off"  # the same metric, evaluated in fp32 for both runs
        fp32_eval = trainer.validate()["cycle_l1"]
    return {"amp": amp, "seed": seed, "steps": result.step, "val_cycle_l1": result.metrics["cycle_l1"],
            "val_cycle_l1_fp32_eval": fp32_eval, "seconds": time.perf_counter() - start}


def run(spec: QualitySpec, ws: Workspace, log: Callable[[str], None] = print) -> dict[str, Any]:
    rows = []
    for amp in ("off", "bf16"):
        for seed in range(spec.seeds):
            row = quality_run(ws, spec, amp, seed)
            rows.append(row)
            log(f"  quality amp={amp} seed={seed}: val cycle L1 {row['val_cycle_l1']:.4f} "
                f"(fp32 eval {row['val_cycle_l1_fp32_eval']:.4f}), {row['seconds']:.0f} s")
    torch.use_deterministic_algorithms(False)  # the runs' deterministic=true is process-wide: undo it
    mean = {amp: statistics.mean(r["val_cycle_l1_fp32_eval"] for r in rows if r["amp"] == amp)
            for amp in ("off", "bf16")}
    rel = (mean["bf16"] - mean["off"]) / mean["off"]
    fp32 = [r["val_cycle_l1_fp32_eval"] for r in rows if r["amp"] == "off"]
    spread = (max(fp32) - min(fp32)) / mean["off"]
    result = {"max_steps": spec.steps, "steps": sorted({r["steps"] for r in rows}), "seeds": spec.seeds,
              "rows": rows, "mean_fp32": mean["off"],
              "mean_bf16": mean["bf16"], "relative_diff": rel, "fp32_seed_spread": spread,
              "within_tolerance": rel <= TOLERANCE}
    print_table("quality guard: quickstart config on the demo dataset, validation cycle L1 (lower is better)", rows,
                [("amp", "amp", ""), ("seed", "seed", ""), ("steps", "steps", ""),
                 ("val_cycle_l1", "val metric (own precision)", ".4f"),
                 ("val_cycle_l1_fp32_eval", "val metric (fp32 eval)", ".4f"), ("seconds", "s", ".0f")])
    print(f"bf16 vs fp32: {mean['bf16']:.4f} vs {mean['off']:.4f}, relative difference {rel:+.2%} -> "
          f"{'PASS' if result['within_tolerance'] else 'FAIL'} (target: bf16 at most {TOLERANCE:.0%} worse); "
          f"fp32 runs spread {spread:.1%} over seeds")
    return result
