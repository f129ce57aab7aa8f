"""Translation speed of test.py's path: images/s for the paper's generator (ngf 64, 9 blocks).

Random weights (speed does not depend on them). Each row times ``utils.translate.translate_batch``
(uint8 batch -> device, [-1, 1], reflect pad, generator, crop, uint8 back on the CPU) in eval
and inference mode; file decoding and encoding are not included.

    python bench/translate_speed.py                                  # 256 px, batch 1 and 4, fp32 and bf16
    python bench/translate_speed.py --device cuda --amp off bf16 fp16 --batch-sizes 1 8 32
    python bench/translate_speed.py --size 512 --seconds 5
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from models.cyclegan import build_generator  # noqa: E402
from utils.translate import resolve_device, translate_batch  # noqa: E402


def measure(generator: torch.nn.Module, size: int, batch: int, device: torch.device, amp: str,
            seconds: float) -> tuple[float, float, int]:
    """(images/s, process CPU seconds per image, timed calls).

    One warm-up call, then calls until ``seconds`` have passed (at least 2). The CPU seconds
    show what the work costs when other processes share the cores (wall time then lies).
    """
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    translate_batch(generator, x, device, amp)  # warm-up: kernel selection, allocator, autocast caches
    calls, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while calls < 2 or time.perf_counter() - start < seconds:
        translate_batch(generator, x, device, amp)  # returns a CPU tensor, so CUDA work is finished
        calls += 1
    images = calls * batch
    return images / (time.perf_counter() - start), (time.process_time() - cpu_start) / images, calls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--n-blocks", type=int, default=9)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    p.add_argument("--amp", nargs="+", default=["off", "bf16"], choices=["off", "bf16", "fp16"])
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds per row (after one warm-up call)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    torch.manual_seed(0)
    generator = build_generator(ngf=args.ngf, n_blocks=args.n_blocks).eval().requires_grad_(False).to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"device {device} ({name}, {os.cpu_count()} cores), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads{load}")
    print(f"generator ngf={args.ngf}, n_blocks={args.n_blocks}, {args.size}x{args.size} px")
    print(f"{'amp':>5} {'batch':>5} {'images/s':>9} {'ms/image':>9} {'cpu s/image':>11} {'calls':>5}")
    for amp in args.amp:
        for batch in args.batch_sizes:
            try:
                ips, cpu_per_image, calls = measure(generator, args.size, batch, device, amp, args.seconds)
            except ValueError as e:  # fp16 on a CPU
                print(f"{amp:>5} {batch:>5}  skipped: {e}")
                continue
            print(f"{amp:>5} {batch:>5} {ips:9.2f} {1000 / ips:9.1f} {cpu_per_image:11.2f} {calls:5d}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
