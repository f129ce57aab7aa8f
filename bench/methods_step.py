"""Section ``methods``: one training step of CycleGAN, CUT and FastCUT at the same crop, batch and
network sizes, through each trainer's public ``train_step`` (uint8 batch in; D and G phases,
finite flags, Adam steps).

CUT's step runs one generator (on A and, with its identity term, B in one batch), four encoder
passes for PatchNCE and one discriminator; CycleGAN's runs two generators six times and two
discriminators. Park et al. (2020) report 0.24 s/iter and 3.3 GB for CUT against 0.40 s/iter and
4.8 GB for CycleGAN (batch 1, 256 px, one GPU). Reported per method and precision: ms/iter, the
ratio to CycleGAN's step, peak memory (CUDA). On a CPU the steps are timed in interleaved rounds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.tables import print_table
from bench.timing import Timer, peak_memory_gib, reset_peak_memory
from bench.train_step import synthetic_batch, trainer_step
from bench.workspace import Workspace

METHODS = {  # name -> overrides of the shared config (the paper settings of each)
    "cyclegan": ["method=cyclegan", "train.pool_size=50"],
    "cut": ["method=cut", "mode=cut"],
    "fastcut": ["method=cut", "mode=fastcut"],
}


@dataclass
class MethodsSpec:
    crop: int = 256
    batch: int = 1
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    rounds: int = 1


def config(ws: Workspace, method: str, spec: MethodsSpec, amp: str) -> Any:
    """The method's paper setting at the spec's sizes, no validation images, nothing logged."""
    from options.common import load_training_config

    # The authors' nce_layers end at the fifth residual block (16); a shallower generator ends earlier.
    layers = [f"loss.nce_layers=[0,4,8,12,{11 + spec.n_blocks}]"] if method != "cyclegan" and spec.n_blocks < 5 else []
    return load_training_config(None, [
        *METHODS[method], f"name={ws._name(method)}", f"device={ws.device}", f"log.root={ws.root / 'runs'}",
        "log.progress=false", "log.images_every=0", "log.scalars_every=1000000", "checkpoint.every_epochs=0",
        f"data.root={ws.cyclegan_dataset()}", f"data.load_size={spec.crop}", f"data.crop_size={spec.crop}",
        f"data.batch_size={spec.batch}", "data.num_workers=0", "data.val_images=0", f"model.ngf={spec.ngf}",
        f"model.ndf={spec.ndf}", f"model.n_blocks={spec.n_blocks}", f"train.amp={'off' if amp == 'fp32' else amp}",
        *layers,
    ])


def run(spec: MethodsSpec, ws: Workspace, timer: Timer, log: Callable[[str], None] = print) -> dict[str, Any]:
    data = synthetic_batch(spec.batch, spec.crop, pin=ws.device.type == "cuda")
    rows: list[dict[str, Any]] = []
    built: dict[str, tuple[dict[str, Any], Callable[[], None], Any]] = {}
    for amp in spec.precisions:
        for method in METHODS:
            row: dict[str, Any] = {"method": method, "precision": amp, "batch": spec.batch}
            reset_peak_memory(ws.device)
            trainer = ws.trainer(config(ws, method, spec, amp))
            fn = trainer_step(trainer, data)
            for _ in range(timer.warmup):
                timer.call(fn)
            if spec.rounds <= 1:
                m = timer.timed(fn)
                row.update(ms_per_iter=m.seconds * 1000, samples_s=m.samples, peak_mem_gib=peak_memory_gib(ws.device))
                trainer.close()
                log(f"  methods {method} {amp}: {row['ms_per_iter']:.1f} ms/iter")
            else:
                built[f"{method} {amp}"] = (row, fn, trainer)
            rows.append(row)
    if built:
        timed = timer.interleaved({k: fn for k, (_, fn, _) in built.items()}, spec.rounds,
                                  lambda s: log(f"  methods {s}"))
        for key, (row, _, trainer) in built.items():
            row.update(ms_per_iter=timed[key].seconds * 1000, samples_s=timed[key].samples)
            trainer.close()
    for row in rows:
        base = next(r for r in rows if r["method"] == "cyclegan" and r["precision"] == row["precision"])
        row["x_cyclegan_time"] = row["ms_per_iter"] / base["ms_per_iter"]
    result = {"crop": spec.crop, "batch": spec.batch, "ngf": spec.ngf, "n_blocks": spec.n_blocks,
              "estimator": timer.estimator, "rows": rows,
              "published": {"cut_s_per_iter": 0.24, "cyclegan_s_per_iter": 0.40, "cut_gb": 3.3, "cyclegan_gb": 4.8,
                            "source": "Park et al. 2020, batch 1, 256 px, one GPU"}}
    print_table(f"training step per method: crop {spec.crop}, batch {spec.batch}, ngf {spec.ngf}, "
                f"{spec.n_blocks} blocks ({timer.estimator}); published CUT / CycleGAN time: 0.24 / 0.40 = 0.60",
                rows, [("method", "method", ""), ("precision", "precision", ""), ("ms_per_iter", "ms/iter", ".1f"),
                       ("x_cyclegan_time", "time / CycleGAN's", ".2f"), ("peak_mem_gib", "peak GiB", ".2f")])
    return result
