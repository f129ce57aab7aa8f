"""Speed of the Gatys baseline: L-BFGS iterations per second and seconds per image.

    python bench/gatys_speed.py                          # 256 and 512 px, 300 L-BFGS steps each
    python bench/gatys_speed.py --sizes 256 --steps 300 --device cpu
    python bench/gatys_speed.py --sizes 512 --steps 30   # fewer steps; s/image extrapolated to 300

Content and style are scikit-image's bundled photos (astronaut, chelsea), so nothing is
downloaded. With no pretrained VGG-19 on the machine the network has random weights: the
arithmetic (and so the time) is the same as with real weights, and the output says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.gatys import GatysParams, stylize  # noqa: E402
from models.style_losses import LossWeights  # noqa: E402
from models.vgg import load_vgg19  # noqa: E402
from utils.metrics import Stopwatch, describe_device  # noqa: E402
from utils.translate import resolve_device  # noqa: E402


def _photo(name: str, size: int) -> torch.Tensor:
    from skimage import data, transform

    img = np.asarray(getattr(data, name)()[..., :3], dtype=np.float64) / 255.0
    img = transform.resize(img, (size, size), anti_aliasing=True)
    return torch.from_numpy(img).float().permute(2, 0, 1).unsqueeze(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=300, help="L-BFGS steps measured per size")
    parser.add_argument("--target-steps", type=int, default=300, help="steps per image for the s/image figure")
    parser.add_argument("--pooling", choices=["max", "avg"], default="max")
    parser.add_argument("--vgg-weights", default="imagenet", help="imagenet | random | path")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    weights = LossWeights()
    extractor, info = load_vgg19(weights.layers, args.pooling, args.vgg_weights, allow_download=False,
                                 random_if_unavailable=True)
    extractor = extractor.to(device)
    print(f"device: {describe_device(device)}; torch {torch.__version__}; VGG: {info.label}")
    if not info.pretrained:
        print("note: random VGG weights (no pretrained file here); timing is unaffected, images are not meaningful")
    if hasattr(os, "getloadavg"):
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for size in args.sizes:
        content, style = _photo("astronaut", size), _photo("chelsea", size)
        warm = GatysParams(weights=weights, steps=2)
        stylize(extractor, content, [style], warm)  # allocator / kernel selection warm-up
        params = GatysParams(weights=weights, steps=args.steps, optimizer="lbfgs", log_every=args.steps)
        with Stopwatch(device) as sw:
            result = stylize(extractor, content, [style], params)
        its = args.steps / sw.seconds
        extra = "" if args.steps == args.target_steps else f" (extrapolated from {args.steps} steps)"
        print(f"{size} px: {its:.2f} L-BFGS it/s, {args.target_steps / its:.1f} s/image for {args.target_steps} "
              f"steps{extra}; final loss {float(result.losses.total):.4g}; measured {sw.seconds:.1f} s "
              f"at {time.strftime('%H:%M:%S')}")
    if hasattr(os, "getloadavg"):
        print(f"load average after: {os.getloadavg()[0]:.2f} (other processes on the machine slow the figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
