"""Section ``infer``: ``test.py``'s path for CycleGAN, in images/s.

A CycleGAN run with random weights is written by a trainer's ``save()`` and loaded the way
``test.py`` loads it, ``methods.base.load_method(MethodOptions(checkpoint=run, amp=...))``; each
call of the method is timed: uint8 batch (CPU) -> device, [-1, 1], padding, generator under
autocast, crop, uint8 back on the CPU. File decoding and encoding (``test.py``'s worker
threads) are not included. Modes: ``fp32``, ``bf16``, ``fp16`` (CUDA), and
``bf16+channels_last``: the method's generator converted to channels_last by the bench
(``test.py`` has no such option; the row says whether one would pay).

The target on an H100 / H200: >= 1000 images/s at 256 px, batch 32, bf16.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.tables import print_table
from bench.timing import Timer, peak_memory_gib, reset_peak_memory
from bench.workspace import Workspace, quiet

MODES = ("fp32", "bf16", "fp16", "bf16+channels_last")


def default_modes(device: torch.device) -> list[str]:
    return [m for m in MODES if m != "fp16" or device.type == "cuda"]


@dataclass
class InferSpec:
    sizes: list[int] = field(default_factory=lambda: [256])
    batches: list[int] = field(default_factory=lambda: [1, 32])
    ngf: int = 64
    n_blocks: int = 9
    modes: list[str] = field(default_factory=lambda: ["fp32", "bf16"])


def build_method(checkpoint: str, mode: str, device: torch.device) -> Any:
    """The CycleGAN method ``test.py --checkpoint RUN --amp ...`` builds, for a mode of :data:`MODES`."""
    from methods.base import load_method
    from options.methods import MethodOptions

    amp = {"fp32": "off", "bf16+channels_last": "bf16"}.get(mode, mode)
    with quiet():
        method = load_method(MethodOptions(method="cyclegan", checkpoint=checkpoint, amp=amp), device)
    if mode.endswith("+channels_last"):
        method.generator.to(memory_format=torch.channels_last)
    return method


def run(spec: InferSpec, ws: Workspace, timer: Timer, log: Callable[[str], None] = print) -> dict[str, Any]:
    device = ws.device
    checkpoint = str(ws.cyclegan_checkpoint(spec.ngf, spec.n_blocks))
    rows: list[dict[str, Any]] = []
    for size in spec.sizes:
        for batch in spec.batches:
            images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8,
                                   generator=torch.Generator().manual_seed(0))
            if device.type == "cuda":
                images = images.pin_memory()
            base = None
            for mode in spec.modes:
                row: dict[str, Any] = {"size": size, "batch": batch, "mode": mode}
                try:
                    reset_peak_memory(device)
                    method = build_method(checkpoint, mode, device)
                    m = timer.measure(lambda method=method, images=images: method(images))
                    row.update(images_per_s=batch / m.seconds, ms_per_batch=m.seconds * 1000, calls=m.calls,
                               peak_mem_gib=peak_memory_gib(device))
                    base = base or (row["images_per_s"] if mode == "fp32" else None)
                    row["x_fp32"] = row["images_per_s"] / base if base else None
                    del method
                except Exception as e:  # noqa: BLE001 - a mode this machine cannot run is a result
                    row["error"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
                rows.append(row)
                log(f"  infer {size} px batch {batch} {mode}: {row.get('images_per_s', 0):.2f} images/s "
                    f"{row.get('error', '')}")
    target = next((r for r in rows if (r["size"], r["batch"], r["mode"]) == (256, 32, "bf16")
                   and r.get("images_per_s")), None)
    result = {"ngf": spec.ngf, "n_blocks": spec.n_blocks, "estimator": timer.estimator, "rows": rows,
              "target_256px_b32_bf16": None if target is None else
              {"value": target["images_per_s"], "target": 1000.0, "met": target["images_per_s"] >= 1000.0}}
    print_table(f"inference: test.py's path (CycleGAN method, one generator, ngf {spec.ngf}, {spec.n_blocks} blocks, "
                f"uint8 in and out; {timer.estimator})", rows,
                [("size", "px", ""), ("batch", "batch", ""), ("mode", "mode", ""),
                 ("images_per_s", "images/s", ".2f"), ("x_fp32", "x fp32", ".2f"), ("ms_per_batch", "ms/batch", ".1f"),
                 ("peak_mem_gib", "peak GiB", ".2f"), ("error", "error", "")])
    if result["target_256px_b32_bf16"]:
        print(f"target 256 px batch 32 bf16 >= 1000 images/s: {result['target_256px_b32_bf16']}")
    return result
