"""Section ``train``: one CycleGAN training iteration, the reference-style step against ours.

* ``reference``: :class:`bench.reference_step.ReferenceStep`, the public reference's loop (fp32,
  eager, unfused Adam, float batch already on the device).
* every variant: ``training.build_trainer(cfg)`` with the variant's speed options and a
  synthetic uint8 batch through its public ``train_step(batch)`` (uint8 -> device and [-1, 1],
  G phase, D phase, pools, finite flags and masked fused Adam steps; no host synchronisation).

A variant is ``+``-joined options: ``fp32`` | ``bf16`` | ``fp16`` (precision, with a
GradScaler for fp16), ``channels_last``, ``compile`` or ``compile=reduce-overhead`` |
``compile=max-autotune``, ``grad_checkpoint``; e.g. ``bf16+channels_last+compile``.

Reported per batch size and variant: ms/iter, images/s, the ratio to the reference-style step
at the same batch and at batch 1, peak memory (CUDA), TFLOP/s and model-FLOP utilisation
against the device's dense bf16 peak (:mod:`bench.timing`), the first call's seconds (compile).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.reference_step import ReferenceStep
from bench.tables import print_table
from bench.timing import Timer, count_flops, dense_bf16_peak_tflops, peak_memory_gib, reset_peak_memory
from bench.workspace import Workspace

REFERENCE = "reference-style step"
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class Variant:
    """A set of ``train.*`` speed options."""

    name: str
    amp: str = "off"
    channels_last: bool = False
    compile: str = "off"
    grad_checkpoint: bool = False


def parse_variant(spec: str) -> Variant:
    """``bf16+channels_last+compile=max-autotune`` -> :class:`Variant`; ValueError names what is wrong."""
    amp, cl, comp, gc = "off", False, "off", False
    for token in filter(None, (t.strip() for t in spec.split("+"))):
        key, _, value = token.partition("=")
        if key in ("fp32", "bf16", "fp16") and not value:
            amp = "off" if key == "fp32" else key
        elif key == "channels_last" and not value:
            cl = True
        elif key == "grad_checkpoint" and not value:
            gc = True
        elif key == "compile" and (value or "default") in COMPILE_MODES:
            comp = value or "default"
        else:
            raise ValueError(f"variant {spec!r}: unknown option {token!r}; combine with '+': fp32, bf16, fp16, "
                             f"channels_last, grad_checkpoint, compile, compile=reduce-overhead, "
                             f"compile=max-autotune")
    return Variant(spec, amp, cl, comp, gc)


def default_variants(device: torch.device) -> list[str]:
    """fp32, bf16 and channels_last everywhere; fp16 and the three compile modes on CUDA only
    (compiling the four networks takes minutes on a small CPU: name them to run them there)."""
    out = ["fp32", "bf16", "channels_last", "bf16+channels_last"]
    if device.type == "cuda":
        out += ["fp16", *(f"bf16+channels_last+compile={m}" for m in COMPILE_MODES)]
    return out


@dataclass
class TrainSpec:
    crop: int = 256
    batches: list[int] = field(default_factory=lambda: [1])
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    variants: list[Variant] = field(default_factory=list)
    rounds: int = 1  # > 1: every option built first, then timed in interleaved rounds (shared CPUs)


def synthetic_batch(batch: int, crop: int, seed: int = 0, pin: bool = False) -> dict[str, Any]:
    """What the CycleGAN loader yields: uint8 (batch, 3, crop, crop) per domain, no skipped files."""
    g = torch.Generator().manual_seed(seed)
    a, b = (torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8, generator=g) for _ in range(2))
    if pin:
        a, b = a.pin_memory(), b.pin_memory()
    return {"A": a, "B": b, "skipped": [""] * batch}


def trainer_step(trainer: Any, batch: dict[str, Any]) -> Callable[[], None]:
    """One iteration as the training loop runs it (the loop counts steps after each call)."""

    def step() -> None:
        trainer.train_step(batch)
        trainer.step += 1

    return step


def reference_step(ref: ReferenceStep, batch: dict[str, Any], device: torch.device) -> Callable[[], None]:
    from data.image_io import to_model_range

    ref.set_input(to_model_range(batch["A"].to(device)), to_model_range(batch["B"].to(device)))
    return ref.optimize_parameters


def generator_gmac(ngf: int, n_blocks: int, size: int) -> dict[str, float]:
    """GMAC of one generator forward at ``size`` px, batch 1: ``real`` as FlopCounterMode counts
    (transposed convs over their input pixels) and ``output_px`` counting transposed convs over
    their output pixels (4x at stride 2: the convention of the 56.8 GMAC often quoted for
    ngf 64, 9 blocks, 256 px)."""
    from models.cyclegan import build_generator

    net = build_generator(ngf=ngf, n_blocks=n_blocks).eval()
    extra = 0

    def hook(m: torch.nn.ConvTranspose2d, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal extra
        x = inp[0]
        macs_in = x.shape[0] * x.shape[2] * x.shape[3] * m.in_channels * m.out_channels * m.kernel_size[0] \
            * m.kernel_size[1]
        extra += macs_in * (out.shape[2] * out.shape[3] // (x.shape[2] * x.shape[3]) - 1)

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    with torch.no_grad():
        real = count_flops(lambda: net(torch.zeros(1, 3, size, size))) / 2
    for h in hooks:
        h.remove()
    return {"real_gmac": real / 1e9, "output_px_gmac": (real + extra) / 1e9}


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


def _prepare(spec: TrainSpec, ws: Workspace, timer: Timer, variant: Variant, batch: int,
             data: dict[str, Any]) -> tuple[dict[str, Any], Callable[[], None] | None, Any]:
    """Build one variant's trainer and warm it up: (row, step function or None on error, trainer)."""
    row: dict[str, Any] = {"batch": batch, "variant": variant.name, "amp": variant.amp,
                           "channels_last": variant.channels_last, "compile": variant.compile}
    trainer = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = ws.trainer(ws.cyclegan_config(spec.crop, batch, spec.ngf, spec.ndf, spec.n_blocks, variant.amp,
                                                    variant.channels_last, variant.compile, variant.grad_checkpoint))
            fn = trainer_step(trainer, data)
            row["first_call_s"] = timer.call(fn)  # compiles when compile is on
            for _ in range(timer.warmup + (2 if variant.compile != "off" else 0)):
                timer.call(fn)
        fallback = [str(w.message) for w in caught if "train.compile" in str(w.message)]
        row["note"] = fallback[0][:160] if fallback else None
        return row, fn, trainer
    except Exception as e:  # noqa: BLE001 - an option this machine cannot run is a result, not a crash
        row["error"] = _error(e)
        print(f"  train batch {batch} {variant.name}: {row['error']}", flush=True)
        if trainer is not None:
            trainer.close()
        return row, None, None


def _finish(row: dict[str, Any], seconds: float, samples: list[float], batch: int, flops: int,
            peak: float | None) -> None:
    row.update(ms_per_iter=seconds * 1000, images_per_s=batch / seconds, samples_s=samples,
               tflops=flops / seconds / 1e12)
    row["mfu"] = row["tflops"] / peak if peak else None


def run(spec: TrainSpec, ws: Workspace, timer: Timer, log: Callable[[str], None] = print) -> dict[str, Any]:
    device = ws.device
    peak = dense_bf16_peak_tflops(device)
    rows: list[dict[str, Any]] = []
    flops_per_step: dict[int, int] = {}
    for batch in spec.batches:
        data = synthetic_batch(batch, spec.crop, pin=device.type == "cuda")
        reset_peak_memory(device)
        ref = ReferenceStep.build(device, spec.ngf, spec.ndf, spec.n_blocks)
        ref_row: dict[str, Any] = {"batch": batch, "variant": REFERENCE, "amp": "off"}
        ref_fn = reference_step(ref, data, device)
        flops = flops_per_step[batch] = count_flops(ref_fn)  # the same maths as every variant's step
        for _ in range(timer.warmup):
            timer.call(ref_fn)
        if spec.rounds <= 1:  # one after another, each freed before the next: each one's own peak memory
            _time(ref_row, ref_fn, timer, batch, flops, peak, log)
            rows.append(ref_row)
            del ref, ref_fn
            for variant in spec.variants:
                reset_peak_memory(device)
                row, fn, trainer = _prepare(spec, ws, timer, variant, batch, data)
                if fn is not None:
                    _time(row, fn, timer, batch, flops, peak, log)
                    trainer.close()
                rows.append(row)
                del fn, trainer
                if variant.compile != "off":
                    torch._dynamo.reset()
            continue
        # Interleaved rounds (shared CPUs): everything built and warmed up first, then timed together.
        prepared = [(ref_row, ref_fn, None)] + [_prepare(spec, ws, timer, v, batch, data) for v in spec.variants]
        live = {row["variant"]: fn for row, fn, _ in prepared if fn is not None}
        timed = timer.interleaved(live, spec.rounds, lambda s, b=batch: log(f"  train batch {b} {s}"))
        for row, _, trainer in prepared:
            if row["variant"] in timed:
                m = timed[row["variant"]]
                _finish(row, m.seconds, m.samples, batch, flops, peak)
            if trainer is not None:
                trainer.close()
            rows.append(row)
        del prepared, live, ref, ref_fn
        torch._dynamo.reset()
    _ratios(rows)
    result = {"crop": spec.crop, "ngf": spec.ngf, "ndf": spec.ndf, "n_blocks": spec.n_blocks, "rounds": spec.rounds,
              "estimator": timer.estimator, "peak_bf16_tflops": peak, "flops_per_step": flops_per_step,
              "generator_gmac": generator_gmac(spec.ngf, spec.n_blocks, spec.crop), "rows": rows,
              "targets": targets(rows)}
    _print(result)
    return result


def _time(row: dict[str, Any], fn: Callable[[], None], timer: Timer, batch: int, flops: int, peak: float | None,
          log: Callable[[str], None]) -> None:
    m = timer.timed(fn)
    _finish(row, m.seconds, m.samples, batch, flops, peak)
    row["peak_mem_gib"] = peak_memory_gib(timer.device)
    log(f"  train batch {batch} {row['variant']}: {row['ms_per_iter']:.1f} ms/iter")


def _ratios(rows: list[dict[str, Any]]) -> None:
    ref = {r["batch"]: r.get("images_per_s") for r in rows if r["variant"] == REFERENCE}
    for r in rows:
        if r.get("images_per_s"):
            same, one = ref.get(r["batch"]), ref.get(1)
            r["x_reference"] = r["images_per_s"] / same if same else None
            r["x_reference_b1"] = r["images_per_s"] / one if one and r["batch"] != 1 else None


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The speed targets: batch 8 >= 4x the reference-style step (same batch), >= 25% of the dense
    bf16 peak in model FLOPs, batch-1 peak memory no higher than the reference-style step's."""
    ours = [r for r in rows if r["variant"] != REFERENCE and r.get("images_per_s")]
    out: dict[str, Any] = {}
    b8 = [r for r in ours if r["batch"] == 8]
    if b8:
        best = max(b8, key=lambda r: r["images_per_s"])
        out["batch8_x_reference"] = {"best": best["variant"], "value": best.get("x_reference"), "target": 4.0,
                                     "met": (best.get("x_reference") or 0) >= 4.0}
    mfu = [r for r in ours if r.get("mfu") is not None]
    if mfu:
        best = max(mfu, key=lambda r: r["mfu"])
        out["mfu"] = {"best": f"{best['variant']} batch {best['batch']}", "value": best["mfu"], "target": 0.25,
                      "met": best["mfu"] >= 0.25}
    ref1 = next((r.get("peak_mem_gib") for r in rows if r["variant"] == REFERENCE and r["batch"] == 1), None)
    mem = [r for r in ours if r["batch"] == 1 and r.get("peak_mem_gib") is not None]
    if ref1 is not None and mem:
        low = min(mem, key=lambda r: r["peak_mem_gib"])
        out["batch1_memory"] = {"lowest": low["variant"], "value": low["peak_mem_gib"], "reference": ref1,
                                "met": low["peak_mem_gib"] <= ref1}
    return out


def _print(result: dict[str, Any]) -> None:
    gm = result["generator_gmac"]
    print_table(
        f"training step: crop {result['crop']}, ngf {result['ngf']}, {result['n_blocks']} blocks "
        f"(G forward {gm['real_gmac']:.3g} GMAC counted, {gm['output_px_gmac']:.3g} GMAC with transposed convs over "
        f"output pixels; dense bf16 peak {result['peak_bf16_tflops'] or 'n/a'} TFLOP/s; {result['estimator']})",
        result["rows"],
        [("batch", "batch", ""), ("variant", "variant", ""), ("ms_per_iter", "ms/iter", ".1f"),
         ("images_per_s", "images/s", ".2f"), ("x_reference", "x reference", ".2f"),
         ("x_reference_b1", "x reference b1", ".2f"), ("peak_mem_gib", "peak GiB", ".2f"),
         ("tflops", "TFLOP/s", ".3f"), ("mfu", "MFU", ".1%"), ("first_call_s", "1st call s", ".1f"),
         ("note", "note", ""), ("error", "error", "")])
    for key, t in result["targets"].items():
        print(f"target {key}: {t}")
