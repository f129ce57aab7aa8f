"""Section ``style``: seconds per image of the style-transfer methods, batch 1, through their
:class:`methods.base.Method` objects (what ``test.py``, ``stylize.py`` and the report call).

* Gatys et al. 2015: ``experiments/gatys.yaml`` (VGG-19 with random weights: the arithmetic is
  the same as with ImageNet's), L-BFGS. A call of ``optim.steps = n`` costs setup + n steps, so
  a 1-step and a (1 + k)-step call give both, and 300 steps (the config's count) are
  extrapolated: s/image = setup + 300 x (t(1 + k) - t(1)) / k.
* Johnson et al. 2016: the default network (32 channels, 5 residual blocks) in the layout of
  PyTorch's fast_neural_style files, random weights.
* WCT (Li et al. 2017): five levels, full-width decoders (``model.width=1``) of a decoder run
  written by the trainer's ``save()``; AdaIN (Huang & Belongie 2017): its relu4_1 decoder. The
  style image's features are computed when the method is built, as in use, so not timed.

Precisions: ``fp32`` and ``bf16`` (``fp16`` on CUDA if asked); Gatys has no ``amp`` setting, so
its bf16 rows run the call inside ``torch.autocast``. The summary prints the Gatys : Johnson
ratio beside the lecture notes' GPU figures (Gatys 14.32 / 51.19 / 200.3 s, Johnson 0.014 /
0.045 / 0.166 s at 256 / 512 / 1024 px: about 1000x).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.tables import print_table
from bench.timing import Timer, peak_memory_gib, reset_peak_memory
from bench.workspace import Workspace, photo, quiet

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("gatys", "johnson", "wct", "adain")
LECTURE_GPU_SECONDS = {"gatys": {256: 14.32, 512: 51.19, 1024: 200.3}, "johnson": {256: 0.014, 512: 0.045, 1024: 0.166}}


@dataclass
class StyleSpec:
    sizes: list[int] = field(default_factory=lambda: [256, 512, 1024])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    precisions: list[str] = field(default_factory=lambda: ["fp32", "bf16"])
    gatys_steps: int = 300  # the steps one image takes (experiments/gatys.yaml)
    gatys_measured: int = 3  # k: steps timed beyond the first, for the per-step cost
    wct_width: float = 1.0


def _amp(precision: str) -> str:
    return "off" if precision == "fp32" else precision


def _load(opts: Any, device: torch.device) -> Any:
    from methods.base import load_method

    with quiet():
        return load_method(opts, device)


def style_file(ws: Workspace, spec: StyleSpec) -> str:
    """The style image: a photo at the largest size measured, at most 512 px (the style_max_size
    of WCT and AdaIN); Gatys resizes it to each content's size."""
    return str(ws.photo_file("chelsea", min(512, max(spec.sizes))))


def gatys_method(ws: Workspace, spec: StyleSpec, size: int, steps: int, device: torch.device,
                 like: Any = None) -> Any:
    """Gatys with ``experiments/gatys.yaml``, a random-weight VGG-19, ``steps`` L-BFGS steps at
    ``size`` px; ``like``: a Gatys method whose VGG-19 is reused (building one costs a second)."""
    from methods.gatys import GatysMethod
    from options.methods import MethodOptions

    settings = ["vgg.weights=random", "vgg.download=false", "progress=false", f"image.size={size}",
                f"optim.steps={steps}", f"log_every={steps}"]
    opts = MethodOptions(method="gatys", config=str(ROOT / "experiments" / "gatys.yaml"), settings=settings,
                         style=[style_file(ws, spec)])
    if like is None:
        return _load(opts, device)
    with quiet():
        return GatysMethod.build(opts, None, device, extractor=(like.net, like.vgg))


def feed_forward_method(ws: Workspace, name: str, precision: str, spec: StyleSpec, device: torch.device) -> Any:
    from options.methods import MethodOptions

    if name == "johnson":
        return _load(MethodOptions(method="johnson", checkpoint=str(ws.johnson_file()), amp=_amp(precision)), device)
    run = ws.wct_checkpoint(spec.wct_width)
    return _load(MethodOptions(method=name, checkpoint=str(run), style=[style_file(ws, spec)], amp=_amp(precision)),
                 device)


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def time_gatys(ws: Workspace, size: int, precision: str, spec: StyleSpec, timer: Timer,
               like: Any = None) -> tuple[dict[str, Any], Any]:
    """(row values, the 1-step method, whose VGG-19 the next call may reuse)."""
    device = ws.device
    content = photo("astronaut", size)
    short = gatys_method(ws, spec, size, 1, device, like)
    long = gatys_method(ws, spec, size, 1 + spec.gatys_measured, device, short)

    def call(method: Any) -> Callable[[], Any]:
        def run() -> Any:
            with _autocast(precision, device):
                return method(content)

        return run

    timer.call(call(short))  # warm-up: allocator, kernel choice
    t1 = timer.estimate(timer.samples(call(short)))
    tk = timer.estimate(timer.samples(call(long)))
    per_step = max(tk - t1, 0.0) / spec.gatys_measured
    setup = max(t1 - per_step, 0.0)
    note = f"{spec.gatys_steps} L-BFGS steps extrapolated from 1 and {1 + spec.gatys_measured}"
    note += "; autocast around the call (no amp setting)" if precision != "fp32" else ""
    if tk <= t1:  # timing noise swamped the extra steps: the extrapolation says nothing
        note += f"; UNRELIABLE: {1 + spec.gatys_measured} steps timed no slower than 1 (raise --gatys-measured)"
    return {"s_per_image": setup + spec.gatys_steps * per_step, "s_per_step": per_step, "setup_s": setup,
            "note": note}, short


def run(spec: StyleSpec, ws: Workspace, timer: Timer, log: Callable[[str], None] = print) -> dict[str, Any]:
    device = ws.device
    rows: list[dict[str, Any]] = []
    for name in spec.methods:
        for precision in spec.precisions:
            method = None
            for size in spec.sizes:
                row: dict[str, Any] = {"method": name, "size": size, "precision": precision}
                try:
                    reset_peak_memory(device)
                    if name == "gatys":
                        values, method = time_gatys(ws, size, precision, spec, timer, method)
                        row.update(values)
                    else:
                        method = method or feed_forward_method(ws, name, precision, spec, device)
                        content = photo("astronaut", size)
                        m = timer.measure(lambda method=method, content=content: method(content))
                        row.update(s_per_image=m.seconds, calls=m.calls)
                    row["peak_mem_gib"] = peak_memory_gib(device)
                except Exception as e:  # noqa: BLE001 - a method this machine cannot run is a result
                    row["error"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
                rows.append(row)
                log(f"  style {name} {size} px {precision}: {row.get('s_per_image', float('nan')):.3f} s/image "
                    f"{row.get('error', '')}")
            del method
    result = {"estimator": timer.estimator, "gatys_steps": spec.gatys_steps, "wct_width": spec.wct_width,
              "rows": rows, "summary": summary(rows, spec)}
    print_table(f"style transfer, batch 1, s/image ({timer.estimator})", rows,
                [("method", "method", ""), ("size", "px", ""), ("precision", "precision", ""),
                 ("s_per_image", "s/image", ".3f"), ("s_per_step", "s/step", ".3f"),
                 ("peak_mem_gib", "peak GiB", ".2f"), ("note", "note", ""), ("error", "error", "")])
    print_table("s/image by method, and Gatys : Johnson (the lecture notes' GPU figures: Gatys 14.32 / 51.19 / "
                "200.3 s, Johnson 0.014 / 0.045 / 0.166 s at 256 / 512 / 1024 px)", result["summary"],
                [("size", "px", ""), ("precision", "precision", ""), *((m, m, ".3f") for m in spec.methods),
                 ("gatys_over_johnson", "Gatys : Johnson", ".0f"), ("lecture_ratio", "lecture (GPU)", ".0f")])
    return result


def summary(rows: list[dict[str, Any]], spec: StyleSpec) -> list[dict[str, Any]]:
    """One row per (size, precision): each method's s/image and the Gatys : Johnson ratio."""
    out = []
    for size in spec.sizes:
        for precision in spec.precisions:
            entry: dict[str, Any] = {"size": size, "precision": precision}
            for r in rows:
                if (r["size"], r["precision"]) == (size, precision) and r.get("s_per_image"):
                    entry[r["method"]] = r["s_per_image"]
            g, j = entry.get("gatys"), entry.get("johnson")
            entry["gatys_over_johnson"] = g / j if g and j else None
            lec = [LECTURE_GPU_SECONDS[m].get(size) for m in ("gatys", "johnson")]
            entry["lecture_ratio"] = lec[0] / lec[1] if all(lec) else None
            out.append(entry)
    return out
