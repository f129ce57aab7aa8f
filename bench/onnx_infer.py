"""Section ``onnx``: CycleGAN inference through onnxruntime against PyTorch eager, images/s side by side.

The same random-weight CycleGAN run as the ``infer`` section is loaded as ``test.py`` loads it
(the PyTorch row: the method, fp32, uint8 batch in and out), and exported by ``export.py``'s code
(:func:`methods.export.plan_export` + :func:`methods.export_files.export`: a uint8 graph, opset
17, checked by onnxruntime before it is written). The onnxruntime row runs that file with the
CPU execution provider (the CUDA one on a CUDA device, when installed) and as many intra-op
threads as torch uses. Both take the same uint8 batch and return uint8 images; file decoding and
encoding are not included. The two are timed in interleaved rounds, and the largest difference
between their outputs at the timed size is reported beside the speeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.inference import build_method
from bench.tables import print_table
from bench.timing import Timer
from bench.workspace import Workspace, quiet


@dataclass
class OnnxSpec:
    sizes: list[int] = field(default_factory=lambda: [256])
    batches: list[int] = field(default_factory=lambda: [1])
    ngf: int = 64
    n_blocks: int = 9
    rounds: int = 3


def export_onnx(checkpoint: str, ws: Workspace, name: str) -> tuple[Any, str]:
    """The run's G_A as export.py writes it -> (path, the check line export printed)."""
    from methods.export import plan_export
    from methods.export_files import export
    from options.methods import MethodOptions

    opts = MethodOptions(method="cyclegan", checkpoint=checkpoint)
    path = ws.root / "onnx" / f"{name}.onnx"
    with quiet():
        plan = plan_export(opts, ws.device)
        try:
            written = export(plan, "onnx", path, opts, ws.device)
        finally:
            plan.close()
    return path, written.check.line()


def run(spec: OnnxSpec, ws: Workspace, timer: Timer, log: Callable[[str], None] = print) -> dict[str, Any]:
    import onnxruntime as ort

    from methods.onnx import open_session

    device = ws.device
    checkpoint = str(ws.cyclegan_checkpoint(spec.ngf, spec.n_blocks))
    method = build_method(checkpoint, "fp32", device)
    path, check = export_onnx(checkpoint, ws, f"cyclegan_ngf{spec.ngf}_b{spec.n_blocks}")
    session = open_session(path, device, threads=torch.get_num_threads() if device.type == "cpu" else 0)
    provider = session.get_providers()[0]
    log(f"  onnx: {check}")
    rows: list[dict[str, Any]] = []
    for size in spec.sizes:
        for batch in spec.batches:
            images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8,
                                   generator=torch.Generator().manual_seed(0))
            feed = {"image": images.numpy()}
            fns = {"pytorch": lambda images=images: method(images),
                   "onnxruntime": lambda feed=feed: session.run(None, feed)[0]}
            for fn in fns.values():  # warm-up: first-call allocations, oneDNN / ORT kernel choices
                for _ in range(max(1, timer.warmup)):
                    timer.call(fn)
            diff = int(np.abs(fns["onnxruntime"]().astype(np.int16) - method(images).numpy().astype(np.int16)).max())
            measured = timer.interleaved(fns, spec.rounds)
            base = batch / measured["pytorch"].seconds
            for name, m in measured.items():
                ips = batch / m.seconds
                rows.append({"size": size, "batch": batch,
                             "runtime": "PyTorch eager (test.py's method, fp32)" if name == "pytorch"
                             else f"onnxruntime {ort.__version__} ({provider})",
                             "images_per_s": ips, "ms_per_batch": m.seconds * 1000, "x_pytorch": ips / base,
                             "calls": m.calls, "max_diff_uint8": diff})
                log(f"  onnx {size} px batch {batch} {name}: {ips:.2f} images/s")
    print_table(f"CycleGAN inference, onnxruntime against PyTorch eager (ngf {spec.ngf}, {spec.n_blocks} blocks, "
                f"uint8 in and out, {torch.get_num_threads()} threads; {timer.estimator})", rows,
                [("size", "px", ""), ("batch", "batch", ""), ("runtime", "runtime", ""),
                 ("images_per_s", "images/s", ".2f"), ("x_pytorch", "x PyTorch", ".2f"),
                 ("ms_per_batch", "ms/batch", ".1f"), ("max_diff_uint8", "max diff (uint8)", "")])
    return {"ngf": spec.ngf, "n_blocks": spec.n_blocks, "estimator": timer.estimator, "provider": provider,
            "onnxruntime": ort.__version__, "threads": torch.get_num_threads(), "check": check, "rows": rows}
