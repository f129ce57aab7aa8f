"""CycleGAN vs Gatys comparison report: images side by side and a metrics table.

    # the demo (after `python train.py --config experiments/quickstart.yaml`):
    python report.py --dataset datasets/demo --checkpoint runs/quickstart --direction BtoA \
        --style datasets/demo/trainA/0000.png --gatys-config experiments/gatys_quick.yaml --out report/
    # monet2photo, photo -> Monet, two Monet paintings blended as the Gatys style:
    python report.py --dataset datasets/monet2photo --checkpoint runs/monet --direction BtoA \
        --style datasets/monet2photo/trainA/00001.jpg datasets/monet2photo/trainA/00010.jpg \
        --gatys-config experiments/gatys.yaml --out report/monet image.size=256
    # any folder, with same-named ground truth:
    python report.py --input photos/ --ground-truth targets/ --checkpoint runs/x --style s.jpg --out report/x

Writes OUT/index.html (self-contained), OUT/grid.png, OUT/metrics.json, OUT/metrics.md; the
methods' images go to OUT/outputs/<method>/ and are reused on the next run when inputs and
settings match (--rerun forces both again). Trailing key=value arguments override the Gatys
config (same rules as train.py). FID/KID need the Inception weights (torch cache, download,
or --inception-weights PATH); without them the table says "unavailable" and why.

Exit status: 0 report written, 2 bad arguments or unusable inputs.
"""

from __future__ import annotations

import argparse
import sys

from data.image_io import BadImageError
from models.vgg import VGGWeightsUnavailable
from options.config import ConfigError
from options.gatys_config import load_gatys_config
from utils.checkpoint import CheckpointError
from utils.report import ReportError, build_report, dataset_test_set, folder_test_set, summary_lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="dataset folder with testA/ testB/ (the demo dataset has ground truth)")
    src.add_argument("--input", help="folder of test images (instead of --dataset)")
    p.add_argument("--ground-truth", help="with --input: folder of same-named target images (PSNR/SSIM)")
    p.add_argument("--reference", help="with --input: real target-domain images for FID/KID (default: ground truth)")
    p.add_argument("--demo", action="store_true", help="generate the demo dataset into --dataset if it is missing")
    p.add_argument("--checkpoint", required=True, help="CycleGAN run folder, checkpoint file or generator .pth")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], default="BtoA",
                   help="BtoA: photo -> painting for monet2photo and the demo (A = paintings)")
    p.add_argument("--style", nargs="+", required=True, help="style image(s) for Gatys, blended (a Monet painting)")
    p.add_argument("--gatys-config", default="experiments/gatys.yaml", help="Gatys YAML config")
    p.add_argument("--out", default="report", help="report folder")
    p.add_argument("--limit", type=int, default=0, help="use only the first N test images (0 = all)")
    p.add_argument("--rerun", action="store_true", help="run both methods again even if outputs exist")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (both methods)")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off", help="CycleGAN autocast precision")
    p.add_argument("--inception-weights", help="local FID Inception weights file (weights-inception-2015-12-05-*.pth)")
    p.add_argument("--vgg-weights", help="shortcut for the Gatys override vgg.weights=PATH")
    p.add_argument("--no-download", action="store_true", help="never download weights (cache and files only)")
    p.add_argument("--grid-rows", type=int, default=8, help="test images in grid.png")
    p.add_argument("--html-rows", type=int, default=100, help="test images shown in index.html")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the Gatys config")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.vgg_weights:
        overrides.insert(0, f"vgg.weights={args.vgg_weights}")
    if args.no_download:
        overrides.append("vgg.download=false")
    try:
        cfg = load_gatys_config(args.gatys_config, overrides)
        if args.dataset:
            if args.demo:
                from data.demo import make_demo_dataset

                make_demo_dataset(args.dataset)
            test = dataset_test_set(args.dataset, args.direction, args.limit)
        else:
            test = folder_test_set(args.input, args.ground_truth, args.reference, args.limit)
        result = build_report(test, args.checkpoint, args.direction, args.style, args.out, cfg, device=args.device,
                              rerun=args.rerun, inception_weights=args.inception_weights,
                              allow_download=not args.no_download, grid_rows=args.grid_rows,
                              html_rows=args.html_rows, amp=args.amp)
    except (ConfigError, ReportError, CheckpointError, VGGWeightsUnavailable, BadImageError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
