r"""Speed benchmarks (not tests): printed Markdown tables and, with --output, one JSON file.

sections (--sections, comma separated, run in this order):
  train    one CycleGAN training iteration: the public reference's loop (fp32, eager, unfused Adam)
           against this project's trainer for each option set (--variants), per batch size
           (--batches): images/s, ratio to the reference-style step, peak memory (CUDA), model-FLOP
           utilisation against the dense bf16 peak
  infer    test.py's path: a CycleGAN checkpoint through its method, uint8 in and out, images/s
  style    s/image of Gatys (300 L-BFGS steps, extrapolated), Johnson, WCT and AdaIN, batch 1
  data     the training loader's pairs/s against what the fastest training step consumes
  quality  fp32 vs bf16: the validation metric of the same quickstart-like run (minutes)
  methods  one training step of CycleGAN, CUT and FastCUT at the same sizes (--crop, --batches'
           first, --ngf, --n-blocks; --style-precisions), the time ratio to CycleGAN's step
  onnx     CycleGAN inference through onnxruntime (export.py's uint8 graph) against PyTorch eager
           (test.py's method, fp32), at --infer-sizes and --infer-batches: images/s side by side

A variant is '+'-joined options: fp32 | bf16 | fp16, channels_last, compile | compile=MODE
(reduce-overhead, max-autotune), grad_checkpoint. 'auto' = fp32, bf16, channels_last,
bf16+channels_last, plus fp16 and bf16+channels_last+compile in its three modes on CUDA.

On a CPU every option is built first and timed in interleaved rounds, and a time is the fastest
call (other processes only add time); on CUDA one option after another (so peak memory is its
own) and a time is the median call. See docs/performance.md.

examples:
  python bench/bench.py --device cuda --crop 256 --batches 1,8 --output bench/results_h100.json
  python bench/bench.py --device cpu --sections train,infer --crop 128 --infer-batches 1,32
  python bench/bench.py --sections train --crop 512 --variants fp32,bf16,bf16+grad_checkpoint
  python bench/bench.py --sections style --style-sizes 256,512,1024 --output bench/results_style.json
  python bench/bench.py --sections quality --quality-steps 150 --quality-seeds 1
  python bench/bench.py --sections train,infer,style --crop 32 --ngf 8 --n-blocks 1 --style-sizes 32 --iters 1
  python bench/bench.py --sections methods --crop 128 --ngf 32 --n-blocks 9
  python bench/bench.py --device cuda --sections methods --crop 256 --output bench/results_methods_cuda.json
  python bench/bench.py --device cpu --sections onnx --infer-sizes 256 --infer-batches 1,4 --threads 2

exit status: 0 done, 2 error (bad option, unknown device, existing --output without --overwrite)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))  # before bench/ itself, so `bench` is the package, not this file

from options import cli  # noqa: E402
from utils.errors import UserError  # noqa: E402

SECTIONS = ("train", "infer", "style", "data", "quality", "methods", "onnx")


class BenchError(UserError):
    """A benchmark option that cannot be used; the message says which and why."""


class HelpFormatter(cli.HelpFormatter):
    """The project's formatter, without ``(default: None)`` on options whose default depends on the device."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _ints(text: str, minimum: int, example: str) -> list[int]:
    what = "positive integers" if minimum == 1 else f"integers >= {minimum}"
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, e.g. {example}; got {text!r}") from None
    if not values or min(values) < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, e.g. {example}; got {text!r}")
    return values


def int_list(text: str) -> list[int]:
    return _ints(text, 1, "1,8")


def worker_list(text: str) -> list[int]:
    return _ints(text, 0, "0,2")


def name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.parser(__doc__, prog="bench/bench.py")
    p.formatter_class = HelpFormatter
    p.add_argument("--sections", type=name_list, metavar="LIST", default="train,infer,style,data",
                   help=f"comma list of {', '.join(SECTIONS)}")
    cli.add_device(p)
    # cli.add_output names its value DIR; here it is one file
    p.add_argument("--output", metavar="FILE", help="JSON file for every measurement (default: tables printed only)")
    cli.add_overwrite(p, "replace an existing --output file")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    g = p.add_argument_group("timing")
    g.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    g.add_argument("--iters", type=int, default=5, help="timed calls per measurement (split over --rounds)")
    g.add_argument("--rounds", type=int, default=None, help="interleaved rounds of the train section (default: 3 on "
                                                             "a CPU, 1 on CUDA = one option after another)")
    g.add_argument("--max-seconds", type=float, default=30.0, help="time budget of one measurement")
    g.add_argument("--estimator", choices=["auto", "fastest", "median"], default="auto",
                   help="time of a measurement: the fastest call or the median (auto: fastest on a CPU)")
    g = p.add_argument_group("train")
    g.add_argument("--crop", type=int, default=256, help="training crop (px); also the data section's")
    g.add_argument("--batches", type=int_list, metavar="N,N", default="1", help="batch sizes, e.g. 1,4,8,16")
    g.add_argument("--variants", type=name_list, metavar="LIST", default="auto", help="option sets to time (see above)")
    g.add_argument("--ngf", type=int, default=64, help="generator width (train and infer)")
    g.add_argument("--ndf", type=int, default=64, help="discriminator width")
    g.add_argument("--n-blocks", type=int, default=9, help="generator residual blocks (train and infer)")
    g = p.add_argument_group("infer")
    g.add_argument("--infer-sizes", type=int_list, metavar="N,N", default="256", help="image sides (px)")
    g.add_argument("--infer-batches", type=int_list, metavar="N,N", default="1,32", help="batch sizes")
    g.add_argument("--infer-modes", type=name_list, metavar="LIST", default="auto",
                   help="fp32, bf16, fp16, bf16+channels_last (auto: all but fp16 on a CPU)")
    g = p.add_argument_group("style")
    g.add_argument("--style-sizes", type=int_list, metavar="N,N", default="256,512,1024", help="image sides (px)")
    g.add_argument("--style-methods", type=name_list, metavar="LIST", default="gatys,johnson,wct,adain",
                   help="methods to time")
    g.add_argument("--style-precisions", type=name_list, metavar="LIST", default="fp32,bf16",
                   help="fp32, bf16, fp16 (CUDA)")
    g.add_argument("--gatys-steps", type=int, default=300, help="L-BFGS steps per image (s/image extrapolated)")
    g.add_argument("--gatys-measured", type=int, default=3, help="steps timed beyond the first, per measurement")
    g.add_argument("--wct-width", type=float, default=1.0, help="WCT / AdaIN decoder width (1 = Li et al.'s)")
    g = p.add_argument_group("data")
    g.add_argument("--workers", type=worker_list, metavar="N,N", default=None,
                   help="loader worker counts (default: 0,1,2 on a CPU; up to 8 on CUDA)")
    g.add_argument("--data-images", type=int, default=64, help="JPEGs per training folder")
    g.add_argument("--data-seconds", type=float, default=5.0, help="timed seconds per worker count")
    g = p.add_argument_group("quality")
    g.add_argument("--quality-steps", type=int, default=200,
                   help="at most this many training iterations per run (one epoch: 112 on the demo dataset)")
    g.add_argument("--quality-seeds", type=int, default=2, help="runs per precision")
    g.add_argument("--data-root", default="", help="demo dataset folder (made if missing; default: a temp folder)")
    return p.parse_args(argv)


def check(args: argparse.Namespace) -> list[str]:
    """Option errors found before any work (and before torch is imported); the sections to run."""
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown or not args.sections:
        raise BenchError(f"--sections: unknown {', '.join(unknown) or '(none given)'}; valid: {', '.join(SECTIONS)}")
    bad = [m for m in args.style_methods if m not in ("gatys", "johnson", "wct", "adain")]
    if bad:
        raise BenchError(f"--style-methods: unknown {', '.join(bad)}; valid: gatys, johnson, wct, adain")
    for key in ("warmup", "threads"):
        if getattr(args, key) < 0:
            raise BenchError(f"--{key}: must be >= 0")
    if args.iters < 1 or args.gatys_measured < 1 or args.crop < 8 or args.crop % 4:
        raise BenchError("--iters and --gatys-measured must be >= 1, --crop a multiple of 4 and >= 8")
    if args.output and Path(args.output).exists() and not args.overwrite:
        raise BenchError(f"--output {args.output} exists; pass --overwrite to replace it, or another file")
    return [s for s in SECTIONS if s in args.sections]


def bench(args: argparse.Namespace) -> int:
    sections = check(args)
    import json
    import os
    import tempfile
    import time

    import torch

    from bench import data_loader, inference, methods_step, onnx_infer, quality, style, train_step
    from bench.timing import OtherLoad, Timer, describe_device, load_average
    from bench.workspace import Workspace
    from utils.device import resolve_device

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    try:
        variants = [train_step.parse_variant(v) for v in
                    (train_step.default_variants(device) if args.variants == ["auto"] else args.variants)]
    except ValueError as e:
        raise BenchError(f"--variants: {e}") from e
    best_of = args.estimator == "fastest" or (args.estimator == "auto" and not cuda)
    timer = Timer(device, best_of, args.warmup, args.iters, args.max_seconds)
    results: dict = {
        "device": describe_device(device), "device_type": device.type, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "estimator": timer.estimator,
        "load_average_start": load_average(), "time": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[1:],
        "sections": {},
    }
    print(f"# bench: {results['device']} ({device}), torch {torch.__version__}, {results['threads']} threads, "
          f"load average {results['load_average_start']}; time = {timer.estimator}", flush=True)
    start, others = time.perf_counter(), OtherLoad()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        ws = Workspace(Path(tmp), device)
        out = results["sections"]
        for section in sections:
            t0 = time.perf_counter()
            if section == "train":
                out["train"] = train_step.run(train_step.TrainSpec(
                    args.crop, args.batches, args.ngf, args.ndf, args.n_blocks, variants,
                    args.rounds if args.rounds is not None else (1 if cuda else 3)), ws, timer)
            elif section == "infer":
                modes = inference.default_modes(device) if args.infer_modes == ["auto"] else args.infer_modes
                out["infer"] = inference.run(inference.InferSpec(args.infer_sizes, args.infer_batches, args.ngf,
                                                                 args.n_blocks, modes), ws, timer)
            elif section == "style":
                out["style"] = style.run(style.StyleSpec(args.style_sizes, args.style_methods, args.style_precisions,
                                                         args.gatys_steps, args.gatys_measured, args.wct_width),
                                         ws, timer)
            elif section == "data":
                rates = [r["images_per_s"] for r in out.get("train", {}).get("rows", []) if r.get("images_per_s")]
                workers = args.workers if args.workers is not None else data_loader.default_workers(device)
                out["data"] = data_loader.run(data_loader.DataSpec(args.crop, args.batches[0], workers,
                                                                   args.data_images, args.data_seconds), ws,
                                              max(rates) if rates else None)
            elif section == "methods":
                out["methods"] = methods_step.run(methods_step.MethodsSpec(
                    args.crop, args.batches[0], args.ngf, args.ndf, args.n_blocks, args.style_precisions,
                    args.rounds if args.rounds is not None else (1 if cuda else 3)), ws, timer)
            elif section == "onnx":
                out["onnx"] = onnx_infer.run(onnx_infer.OnnxSpec(
                    args.infer_sizes, args.infer_batches, args.ngf, args.n_blocks,
                    args.rounds if args.rounds is not None else (1 if cuda else 3)), ws, timer)
            elif section == "quality":
                out["quality"] = quality.run(quality.QualitySpec(args.quality_steps, args.quality_seeds,
                                                                 args.data_root), ws)
            print(f"({section}: {time.perf_counter() - t0:.0f} s)", flush=True)
    results.update(seconds=time.perf_counter() - start, load_average_end=load_average(),
                   other_processes_cores=others.cores())
    print(f"load average at the end: {results['load_average_end']}; other processes kept "
          f"{results['other_processes_cores']} cores busy on average during the run")
    if args.output:
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = path.with_name(f".{path.name}.tmp")
        tmp_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
        os.replace(tmp_path, path)
        print(f"wrote {path}")
    return cli.EXIT_DONE


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return cli.run(lambda: bench(args))


if __name__ == "__main__":
    sys.exit(main())
