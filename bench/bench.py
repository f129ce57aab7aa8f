"""Speed benchmarks (not tests): one script, one run, a printed table and a JSON file.

Every speed is also given as a ratio to the plain path measured in the same run: fp32, eager,
contiguous memory, no compile -- what the public reference does.

    python bench/bench.py --device auto --crop 128 --batch 1 --ngf 64 --n-blocks 9 --out bench/results.json
    python bench/bench.py --sections train --crop 256 --batch 8                  # one section
    python bench/bench.py --sections infer,gatys --infer-sizes 256 512
    python bench/bench.py --quality-guard                                        # fp32 vs bf16 val metric

Sections (``--sections``, comma separated; default train,infer,data,gatys):

* ``train``: the trainer's full iteration (G phase + D phase, pools, finite checks, optimiser
  steps; uint8 batch -> device included) in ms/iter and images/s for each option set, peak
  memory, FLOPs of one step counted with ``torch.utils.flop_counter.FlopCounterMode`` (which
  counts a transposed conv over its *input* pixels, i.e. the multiplies really done), achieved
  TFLOP/s and its fraction of the device's dense bf16 peak.
* ``memory``: peak memory of a training step at ``--memory-crop`` with and without activation
  checkpointing of the residual blocks (CUDA only).
* ``infer``: test.py-style translation (one generator, eval, inference mode, output to uint8)
  at ``--infer-sizes`` for batch 1 and ``--infer-batch``.
* ``data``: the training data loader's pairs/s with N workers on 256 px JPEGs (monet2photo's
  format), against what the training step consumes.
* ``gatys``: Gatys et al. optimisation (VGG-19 to relu5_1, Gram style + relu4_2 content loss,
  L-BFGS) iterations/s at ``--gatys-sizes``; random weights (speed does not depend on them).
* ``quality`` (or ``--quality-guard``): the same tiny quickstart-like run on the demo dataset in
  fp32 and in bf16, same seed and steps; prints both validation metrics and their relative gap.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s. Achieved TFLOP/s is divided by this
# for every row, fp32 rows included, so the fractions compare with each other.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM / HBM3
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
    ("RTX 4090", 165.0),
)


BEST_OF = False  # set by --best-of (default on CPU): time = fastest call instead of the median

# ---------------------------------------------------------------------------------------------
# helpers


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def timed(fn: Callable[[], Any], device: torch.device, warmup: int, iters: int, max_s: float) -> tuple[float, int]:
    """Mean seconds per call of ``fn`` after ``warmup`` calls: at least one timed call, at most
    ``iters``, stopping early once ``max_s`` seconds are spent (slow CPU configurations)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < iters:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > max_s:
            break
    # Median on a dedicated machine (robust to one-off stalls); with best=True the fastest call,
    # the estimator that survives other processes competing for a shared CPU (noise only adds time).
    return (min(times) if BEST_OF else statistics.median(times)), len(times)


def fmt(value: Any, spec: str = ".1f") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def print_table(title: str, rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> None:
    """columns: (key, header, format spec)."""
    print(f"\n## {title}")
    cells = [[h for _, h, _ in columns]] + [[fmt(r.get(k), s) for k, _, s in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for n, row in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    sys.stdout.flush()


@contextlib.contextmanager
def quiet() -> Any:
    """Silence the trainer's prints (headers, 'resumed from') while building one."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# ---------------------------------------------------------------------------------------------
# training step


@dataclass
class Variant:
    name: str
    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    grad_checkpoint: bool = False
    note: str = ""
    overrides: list[str] = field(default_factory=list)


def train_variants(device: torch.device, with_compile: bool) -> list[Variant]:
    cuda = device.type == "cuda"
    v = [Variant("plain fp32 eager (reference)"), Variant("bf16", amp="bf16")]
    if cuda:
        v.append(Variant("fp16 + GradScaler", amp="fp16"))
    v += [Variant("channels_last", channels_last=True), Variant("bf16 + channels_last", "bf16", True)]
    if with_compile:
        v.append(Variant("compile", compile=True))
        v.append(Variant("bf16 + channels_last + compile", "bf16", True, True))
        if cuda:
            v.append(Variant("fp16 + channels_last + compile", "fp16", True, True))
    return v


def make_trainer(args: argparse.Namespace, device: torch.device, tmp: Path, variant: Variant, crop: int, batch: int,
                 name: str = "bench") -> Any:
    from options.config import load_config
    from utils.trainer import Trainer

    overrides = [
        f"name={name}", f"device={device}", f"log.root={tmp / 'runs'}", "log.progress=false",
        f"data.root={args.data_root}", "data.demo=true", f"data.load_size={crop}", f"data.crop_size={crop}",
        f"data.batch_size={batch}", "data.num_workers=0", "data.val_images=0",
        f"model.ngf={args.ngf}", f"model.ndf={args.ndf}", f"model.n_blocks={args.n_blocks}",
        # amp quoted: YAML reads a bare `off` as false
        f"train.amp='{variant.amp}'", f"train.channels_last={str(variant.channels_last).lower()}",
        f"train.compile={str(variant.compile).lower()}",
        f"train.grad_checkpoint={str(variant.grad_checkpoint).lower()}",
        "log.images_every=0", "log.scalars_every=1000000", *variant.overrides,
    ]
    with quiet():
        return Trainer(load_config(None, overrides))


def _batch(trainer: Any, batch: int, crop: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8, generator=g)
    b = torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8, generator=g)
    if trainer.device.type == "cuda":
        a, b = a.pin_memory(), b.pin_memory()
    return a, b


def step_fn(trainer: Any, a: torch.Tensor, b: torch.Tensor) -> Callable[[], None]:
    """One full training iteration as the training loop runs it (uint8 batch -> device included)."""

    def run() -> None:
        trainer.train_step(trainer._to_device(a), trainer._to_device(b))
        trainer.step += 1

    return run


def count_step_flops(trainer: Any, a: torch.Tensor, b: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step_fn(trainer, a, b)()
    return int(counter.get_total_flops())


def generator_gmac(args: argparse.Namespace, size: int) -> dict[str, float]:
    """MACs of one generator forward at ``size`` px, batch 1, in two conventions.

    ``real``: FlopCounterMode (transposed conv over its input pixels: the multiplies done).
    ``output_px``: transposed conv counted over its output pixels (4x at stride 2), the
    convention of the issue's ~56.8 GMAC for ngf 64 / 9 blocks / 256 px.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from models.cyclegan import build_generator

    net = build_generator(ngf=args.ngf, n_blocks=args.n_blocks).eval()
    extra = 0
    hooks = []

    def hook(m: nn.ConvTranspose2d, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal extra
        macs_in = inp[0].shape[0] * inp[0].shape[2] * inp[0].shape[3] * m.in_channels * m.out_channels \
            * m.kernel_size[0] * m.kernel_size[1]
        extra += macs_in * (out.shape[2] * out.shape[3] // (inp[0].shape[2] * inp[0].shape[3]) - 1)

    for m in net.modules():
        if isinstance(m, nn.ConvTranspose2d):
            hooks.append(m.register_forward_hook(hook))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    real = counter.get_total_flops() / 2
    return {"real_gmac": real / 1e9, "output_px_gmac": (real + extra) / 1e9}


def bench_train(args: argparse.Namespace, device: torch.device, tmp: Path, results: dict[str, Any]) -> None:
    """Build every variant's trainer, then time them in interleaved rounds (``--rounds``), so load
    from other processes on a shared machine hits all variants alike; the median round counts.
    On CUDA (``--rounds 1``) variants run one after another, so peak memory is each one's own."""
    crop, batch = args.crop, args.batch
    rounds = args.rounds or (1 if device.type == "cuda" else 3)
    peak = peak_tflops(device)
    variants = train_variants(device, not args.no_compile)
    if args.variants:
        wanted = [w.strip() for w in args.variants.split(",")]
        variants = [v for v in variants if v is variants[0] or any(w in v.name for w in wanted)]
    rows: list[dict[str, Any]] = []
    live: list[tuple[dict[str, Any], Callable[[], None], Any]] = []
    flops: int | None = None
    for variant in variants:
        row: dict[str, Any] = {"variant": variant.name, "amp": variant.amp, "channels_last": variant.channels_last,
                               "compile": variant.compile, "crop": crop, "batch": batch, "times": []}
        rows.append(row)
        reset_memory(device)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                trainer = make_trainer(args, device, tmp, variant, crop, batch)
                a, b = _batch(trainer, batch, crop, 0)
                fn = step_fn(trainer, a, b)
                t0 = time.perf_counter()
                fn()  # first call: compiles when compile is on
                sync(device)
                row["first_iter_s"] = time.perf_counter() - t0
                for _ in range(args.warmup + (2 if variant.compile else 0)):
                    t0 = time.perf_counter()
                    fn()
                    sync(device)
                    if BEST_OF:  # any call after the first is a sample of the fastest-call estimate
                        row["times"].append(time.perf_counter() - t0)
            fallback = [str(w.message) for w in caught if "compile" in str(w.message)]
            row["compile_fallback"] = fallback[0] if fallback else None
            if flops is None:
                flops = count_step_flops(trainer, a, b)
            if rounds == 1:
                sec, n = timed(fn, device, 0, args.iters, args.max_seconds)
                row["times"].append(sec)
                row["peak_mem_gb"] = peak_memory_gb(device)
                del trainer, a, b, fn
            else:
                live.append((row, fn, trainer))
        except Exception as e:  # noqa: BLE001 - a failing option is a result, not a crash
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        if rounds == 1 or "error" in row:
            print(f"  train {variant.name}: {fmt(row['times'][0] * 1000 if row['times'] else None)} ms/iter "
                  f"{row.get('error', '')}", flush=True)
    for r in range(1 if rounds == 1 else rounds):
        for row, fn, _ in live:
            sec, _ = timed(fn, device, 0, max(1, args.iters // rounds), args.max_seconds / rounds)
            row["times"].append(sec)
        if live:
            print(f"  train round {r + 1}/{rounds}: " + ", ".join(f"{row['variant']} {row['times'][-1] * 1000:.0f} ms"
                                                                for row, _, _ in live), flush=True)
    del live
    torch._dynamo.reset()
    for row in rows:
        if row["times"]:
            sec = min(row["times"]) if BEST_OF else statistics.median(row["times"])
            row["ms_per_iter"] = sec * 1000
            row["images_per_s"] = batch / sec
    base = rows[0].get("images_per_s")
    for row in rows:
        if "images_per_s" not in row:
            continue
        row["ratio"] = row["images_per_s"] / base if base else None
        if flops:
            row["tflops"] = flops / (row["ms_per_iter"] / 1000) / 1e12
            row["frac_peak"] = row["tflops"] / peak if peak else None
    results["train"] = {"crop": crop, "batch": batch, "ngf": args.ngf, "n_blocks": args.n_blocks, "rounds": rounds,
                        "flops_per_step": flops, "peak_bf16_tflops": peak, "rows": rows,
                        "generator_gmac": generator_gmac(args, crop)}
    gm = results["train"]["generator_gmac"]
    print_table(
        f"training step: crop {crop}, batch {batch}, ngf {args.ngf}, {args.n_blocks} blocks "
        f"({fmt(flops and flops / 1e9)} GFLOP/step; G fwd {gm['real_gmac']:.1f} GMAC real, "
        f"{gm['output_px_gmac']:.1f} GMAC transposed-over-output; peak bf16 {fmt(peak, '.0f')} TFLOP/s)",
        rows,
        [("variant", "variant", ""), ("ms_per_iter", "ms/iter", ".1f"), ("images_per_s", "images/s", ".2f"),
         ("ratio", "x plain", ".2f"), ("peak_mem_gb", "peak GB", ".2f"), ("tflops", "TFLOP/s", ".2f"),
         ("frac_peak", "of bf16 peak", ".1%"), ("first_iter_s", "1st iter s", ".1f"), ("error", "error", "")],
    )


def bench_memory(args: argparse.Namespace, device: torch.device, tmp: Path, results: dict[str, Any]) -> None:
    if device.type != "cuda":
        print("\n## memory: CUDA only (peak memory is not tracked on CPU); skipped")
        results["memory"] = None
        return
    crop = args.memory_crop
    rows = []
    for variant in (Variant("fp32", grad_checkpoint=False), Variant("fp32 + grad_checkpoint", grad_checkpoint=True),
                    Variant("bf16", "bf16"), Variant("bf16 + grad_checkpoint", "bf16", grad_checkpoint=True)):
        reset_memory(device)
        trainer = make_trainer(args, device, tmp, variant, crop, 1)
        a, b = _batch(trainer, 1, crop, 0)
        fn = step_fn(trainer, a, b)
        fn()
        reset_memory(device)
        sec, _ = timed(fn, device, 1, max(3, args.iters // 2), args.max_seconds)
        rows.append({"variant": variant.name, "crop": crop, "ms_per_iter": sec * 1000,
                     "peak_mem_gb": peak_memory_gb(device)})
        del trainer, a, b, fn
    results["memory"] = rows
    print_table(f"memory: training step at {crop} px, batch 1", rows,
                [("variant", "variant", ""), ("peak_mem_gb", "peak GB", ".2f"), ("ms_per_iter", "ms/iter", ".1f")])


# ---------------------------------------------------------------------------------------------
# inference


def bench_infer(args: argparse.Namespace, device: torch.device, results: dict[str, Any]) -> None:
    from data.unaligned import to_uint8
    from models.cyclegan import build_generator

    modes = [("fp32 eager", None, False, False), ("bf16 + channels_last", torch.bfloat16, True, False)]
    if device.type == "cuda":
        modes.append(("fp16 + channels_last", torch.float16, True, False))
    if not args.no_compile:
        modes.append(("bf16 + channels_last + compile", torch.bfloat16, True, True))
    rows = []
    for size in args.infer_sizes:
        for batch in (1, args.infer_batch):
            base = None
            for name, dtype, cl, comp in modes:
                reset_memory(device)
                torch._dynamo.reset()
                net = build_generator(ngf=args.ngf, n_blocks=args.n_blocks).to(device).eval()
                if cl:
                    net = net.to(memory_format=torch.channels_last)
                run_net: Callable[[torch.Tensor], torch.Tensor] = torch.compile(net) if comp else net
                x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
                if cl:
                    x = x.contiguous(memory_format=torch.channels_last)

                def fn(run_net=run_net, x=x, dtype=dtype) -> None:
                    with torch.inference_mode():
                        ctx = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
                        with ctx:
                            y = run_net(x)
                        to_uint8(y)

                try:
                    sec, n = timed(fn, device, args.warmup + (2 if comp else 0), args.iters, args.max_seconds)
                    row = {"mode": name, "size": size, "batch": batch, "images_per_s": batch / sec,
                           "ms_per_batch": sec * 1000, "iters_timed": n, "peak_mem_gb": peak_memory_gb(device)}
                    base = base or row["images_per_s"]
                    row["ratio"] = row["images_per_s"] / base
                except Exception as e:  # noqa: BLE001
                    row = {"mode": name, "size": size, "batch": batch, "error": f"{type(e).__name__}: {e}"[:200]}
                rows.append(row)
                print(f"  infer {name} {size}px b{batch}: {fmt(row.get('images_per_s'), '.2f')} images/s", flush=True)
                del net, run_net, x
    results["infer"] = rows
    print_table(f"inference (test.py-style, one generator, ngf {args.ngf}, {args.n_blocks} blocks)", rows,
                [("size", "px", ""), ("batch", "batch", ""), ("mode", "mode", ""), ("images_per_s", "images/s", ".1f"),
                 ("ratio", "x fp32", ".2f"), ("ms_per_batch", "ms/batch", ".1f"), ("peak_mem_gb", "peak GB", ".2f"),
                 ("error", "error", "")])


# ---------------------------------------------------------------------------------------------
# data loading


def make_jpeg_dataset(root: Path, n: int, size: int = 256) -> Path:
    """monet2photo-like files: ``n`` size x size JPEGs per domain, from the demo images."""
    from PIL import Image

    src = sorted((ROOT / "datasets" / "demo" / "trainA").glob("*.png"))
    rng = np.random.default_rng(0)
    for sub in ("trainA", "trainB", "testA", "testB"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n if sub.startswith("train") else 2):
            if src:
                img = Image.open(src[i % len(src)]).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
                arr = np.asarray(img, dtype=np.int16) + rng.integers(-8, 9, (size, size, 3))
            else:
                arr = rng.integers(0, 256, (size, size, 3))
            Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(root / sub / f"{i:04d}.jpg", quality=90)
    return root


def bench_data(args: argparse.Namespace, device: torch.device, tmp: Path, results: dict[str, Any]) -> None:
    from torch.utils.data import DataLoader

    from data.unaligned import EpochSampler, Transform, UnalignedDataset, image_folder, to_model_range

    root = make_jpeg_dataset(tmp / "jpeg256", args.data_images)
    crop = args.crop
    load = max(crop, round(crop * 286 / 256) // 2 * 2)
    dataset = UnalignedDataset(image_folder(root, "trainA"), image_folder(root, "trainB"),
                               Transform("resize_and_crop", load, crop, True, train=True), seed=0)
    rows = []
    for workers in args.workers:
        sampler = EpochSampler(dataset, 1, 0, shuffle=True, seed=0)
        loader = DataLoader(dataset, batch_size=args.batch, sampler=sampler, num_workers=workers,
                            pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                            prefetch_factor=2 if workers > 0 else None, drop_last=True)
        seen, epoch = 0, 0
        it = iter(loader)
        next(it)  # start-up (worker spawn) is paid once per run: not counted
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.data_seconds:
            try:
                batch = next(it)
            except StopIteration:
                epoch += 1
                sampler.set_epoch(epoch)
                it = iter(loader)
                continue
            # What the trainer does with each batch before the step: copy and scale on device.
            to_model_range(batch["A"].to(device, non_blocking=True))
            to_model_range(batch["B"].to(device, non_blocking=True))
            seen += batch["A"].shape[0]
        sync(device)
        rate = seen / (time.perf_counter() - t0)
        rows.append({"workers": workers, "pairs_per_s": rate})
        print(f"  data {workers} workers: {rate:.1f} pairs/s", flush=True)
        del it, loader
    consumption = {}
    for row in (results.get("train") or {}).get("rows", []):
        if "images_per_s" in row:
            consumption[row["variant"]] = row["images_per_s"]
    fastest = max(consumption.values()) if consumption else None
    for row in rows:
        row["x_fastest_step"] = row["pairs_per_s"] / fastest if fastest else None
    results["data"] = {"crop": crop, "load_size": load, "batch": args.batch, "rows": rows,
                       "fastest_train_step_images_per_s": fastest}
    print_table(f"data loader: 256 px JPEGs -> resize {load} -> crop {crop}, batch {args.batch}, uint8 until the "
                f"device; fastest training step consumes {fmt(fastest, '.1f')} pairs/s", rows,
                [("workers", "workers", ""), ("pairs_per_s", "pairs/s", ".1f"),
                 ("x_fastest_step", "x fastest step's need", ".2f")])


# ---------------------------------------------------------------------------------------------
# Gatys


STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"


def gatys_extractor(device: torch.device) -> tuple[nn.Module, str]:
    """Random-weight VGG-19 features returning {layer: activation} (speed does not depend on weights)."""
    try:
        from models.vgg import load_vgg19

        net, _ = load_vgg19([*STYLE_LAYERS, CONTENT_LAYER], pooling="max", weights="random")
        return net.to(device), "models.vgg.VGG19Features (random weights)"
    except ImportError:
        import torchvision

        feats = torchvision.models.vgg19(weights=None).features[:30].to(device).eval().requires_grad_(False)
        # torchvision indices of relu1_1, relu2_1, relu3_1, relu4_1, relu4_2, relu5_1
        index = {1: "relu1_1", 6: "relu2_1", 11: "relu3_1", 20: "relu4_1", 22: "relu4_2", 29: "relu5_1"}

        class Wrap(nn.Module):
            def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
                out = {}
                for i, layer in enumerate(feats):
                    x = layer(x)
                    if i in index:
                        out[index[i]] = x
                return out

        return Wrap(), "torchvision vgg19 features, random weights (models.vgg not importable)"


def gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    f = f.float().reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def bench_gatys(args: argparse.Namespace, device: torch.device, results: dict[str, Any]) -> None:
    extractor, source = gatys_extractor(device)
    try:
        import models.gatys  # noqa: F401

        source += "; models.gatys importable, loop timed here is the paper's L-BFGS loop with the same extractor"
    except ImportError:
        source += "; models.gatys not importable: the equivalent L-BFGS Gram-loss loop is timed"
    dtypes = [("fp32", None)] + ([("bf16 autocast", torch.bfloat16)] if device.type == "cuda" else [])
    rows = []
    for size in args.gatys_sizes:
        for name, dtype in dtypes:
            g = torch.Generator().manual_seed(0)
            content = torch.rand(1, 3, size, size, generator=g).to(device)
            style = torch.rand(1, 3, size, size, generator=g).to(device)
            with torch.no_grad():
                target_c = extractor(content)[CONTENT_LAYER].float()
                target_s = {k: gram(v) for k, v in extractor(style).items() if k in STYLE_LAYERS}
            x = content.clone().requires_grad_(True)
            opt = torch.optim.LBFGS([x], lr=1.0, max_iter=args.gatys_iters, history_size=50)
            evals = 0

            def closure(x=x, opt=opt, target_c=target_c, target_s=target_s, dtype=dtype) -> torch.Tensor:
                nonlocal evals
                evals += 1
                opt.zero_grad(set_to_none=True)
                ctx = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
                with ctx:
                    feats = extractor(x)
                loss = nn.functional.mse_loss(feats[CONTENT_LAYER].float(), target_c)
                loss = loss + 1e3 * sum(nn.functional.mse_loss(gram(feats[k]), target_s[k]) for k in STYLE_LAYERS)
                loss.backward()
                return loss

            opt.step(closure)  # warm-up (cuDNN autotune, allocator)
            sync(device)
            evals = 0
            t0 = time.perf_counter()
            opt.step(closure)
            sync(device)
            sec = time.perf_counter() - t0
            rows.append({"size": size, "precision": name, "iters_per_s": evals / sec, "evals": evals})
            print(f"  gatys {size}px {name}: {evals / sec:.2f} it/s", flush=True)
    results["gatys"] = {"extractor": source, "rows": rows}
    print_table(f"Gatys optimisation, L-BFGS, VGG-19 to relu5_1 ({source}); one iteration = one forward + backward",
                rows, [("size", "px", ""), ("precision", "precision", ""), ("iters_per_s", "iterations/s", ".2f")])


# ---------------------------------------------------------------------------------------------
# quality guard


def bench_quality(args: argparse.Namespace, device: torch.device, tmp: Path, results: dict[str, Any]) -> None:
    from options.config import load_config
    from utils.trainer import Trainer

    rows = []
    for amp in ("off", "bf16"):
        for seed in range(args.quality_seeds):
            overrides = [
                f"name=quality_{amp}_{seed}", f"seed={seed}", f"device={device}", f"log.root={tmp / 'runs'}",
                "log.progress=false", f"data.root={args.data_root}", "optim.n_epochs=1", "optim.n_epochs_decay=0",
                f"train.max_batches_per_epoch={args.quality_steps}", f"train.amp='{amp}'", "deterministic=true",
                "data.num_workers=0", "log.images_every=0", "checkpoint.every_epochs=0",
            ]
            t0 = time.perf_counter()
            with quiet():
                trainer = Trainer(load_config(ROOT / "experiments" / "quickstart.yaml", overrides))
                result = trainer.fit()
                trainer.amp = "off"  # the same metric evaluated in fp32 for both runs
                fp32_metric = trainer.validate()
            rows.append({"amp": amp, "seed": seed, "steps": result.step, "val_metric": result.val_metric,
                         "val_metric_fp32_eval": fp32_metric, "seconds": time.perf_counter() - t0})
            print(f"  quality amp={amp} seed={seed}: val cycle L1 {result.val_metric:.4f} "
                  f"(fp32 eval {fp32_metric:.4f})", flush=True)
    mean = {amp: statistics.mean(r["val_metric_fp32_eval"] for r in rows if r["amp"] == amp) for amp in ("off", "bf16")}
    rel = (mean["bf16"] - mean["off"]) / mean["off"]
    verdict = "PASS" if abs(rel) <= 0.05 else "FAIL"
    results["quality"] = {"steps": args.quality_steps, "seeds": args.quality_seeds, "rows": rows,
                          "mean_fp32": mean["off"], "mean_bf16": mean["bf16"], "relative_diff": rel,
                          "within_5pct": verdict == "PASS"}
    print_table("quality guard: quickstart config on the demo dataset, validation cycle L1 (lower is better)", rows,
                [("amp", "amp", ""), ("seed", "seed", ""), ("steps", "steps", ""),
                 ("val_metric", "val metric (own precision)", ".4f"), ("val_metric_fp32_eval", "val metric (fp32 eval)",
                                                                       ".4f"), ("seconds", "s", ".0f")])
    print(f"bf16 vs fp32: {mean['bf16']:.4f} vs {mean['off']:.4f}, relative difference {rel:+.2%} -> {verdict} "
          f"(target within 5%)")


# ---------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--sections", default="train,infer,data,gatys",
                   help="comma list of train, memory, infer, data, gatys, quality")
    p.add_argument("--quality-guard", action="store_true", help="also run the fp32 vs bf16 quality section")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--n-blocks", type=int, default=9)
    p.add_argument("--variants", default="", help="only training variants whose name contains one of these "
                                                  "(comma list; the plain baseline always runs)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=10, help="timed iterations per variant (split over rounds)")
    p.add_argument("--rounds", type=int, default=0, help="interleaved timing rounds (default 1 CUDA, 3 CPU)")
    p.add_argument("--max-seconds", type=float, default=15.0, help="time budget per measurement")
    p.add_argument("--memory-crop", type=int, default=512)
    p.add_argument("--infer-sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--infer-batch", type=int, default=None, help="the large batch (default 32 CUDA, 4 CPU)")
    p.add_argument("--workers", type=int, nargs="+", default=None, help="loader worker counts to try")
    p.add_argument("--data-images", type=int, default=64)
    p.add_argument("--data-seconds", type=float, default=5.0)
    p.add_argument("--data-root", default=str(ROOT / "datasets" / "demo"),
                   help="demo dataset folder (made if missing) for the trainer and the quality guard")
    p.add_argument("--gatys-sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--gatys-iters", type=int, default=10, help="L-BFGS max_iter per timed step")
    p.add_argument("--quality-steps", type=int, default=200)
    p.add_argument("--quality-seeds", type=int, default=2)
    p.add_argument("--best-of", choices=["auto", "yes", "no"], default="auto",
                   help="time = fastest call (yes; default on CPU, for shared machines) or the median (no)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--out", default="bench/results.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    global BEST_OF
    BEST_OF = args.best_of == "yes" or (args.best_of == "auto" and not cuda)
    if args.infer_batch is None:
        args.infer_batch = 32 if cuda else 4
    if args.workers is None:
        cpus = os.cpu_count() or 1
        counts = {0, 1, min(2, cpus), min(4, cpus), min(8, cpus)} if cuda else {0, 1, min(2, cpus)}
        args.workers = sorted(counts)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if args.quality_guard and "quality" not in sections:
        sections.append("quality")
    unknown = set(sections) - {"train", "memory", "infer", "data", "gatys", "quality"}
    if unknown:
        print(f"error: unknown section(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "device": device_name(device), "device_type": device.type, "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "argv": sys.argv[1:],
        "args": vars(args), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    results["timing"] = "fastest call" if BEST_OF else "median call"
    print(f"# bench: {results['device']} ({device}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs; time per call = {results['timing']}")
    if "quality" in sections or "train" in sections or "memory" in sections:
        from data.demo import DemoSpec, make_demo_dataset

        make_demo_dataset(Path(args.data_root), DemoSpec())
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cyclegan-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for section in sections:
            t0 = time.perf_counter()
            if section == "train":
                bench_train(args, device, tmp, results)
            elif section == "memory":
                bench_memory(args, device, tmp, results)
            elif section == "infer":
                bench_infer(args, device, results)
            elif section == "data":
                bench_data(args, device, tmp, results)
            elif section == "gatys":
                bench_gatys(args, device, results)
            elif section == "quality":
                bench_quality(args, device, tmp, results)
            print(f"({section}: {time.perf_counter() - t0:.0f} s)", flush=True)
    results["seconds"] = time.perf_counter() - t_all
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=lambda o: None if isinstance(o, float) and math.isnan(o)
                                  else str(o)))
        print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
