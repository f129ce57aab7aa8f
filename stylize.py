"""Gatys et al. neural style transfer of one image or a folder.

    python stylize.py --config experiments/gatys.yaml --content photo.jpg --style monet.jpg --output out/
    python stylize.py --content photos/ --style a.jpg b.jpg --output out/ image.style_blend=0.7,0.3
    python stylize.py --content photo.jpg --style s.jpg --output out/ --vgg-weights vgg19-d01eb7cb.pth \
        loss.content_weight=5 loss.style_weight=100      # the Caffe VGG-19 and its weights
    python stylize.py --config experiments/gatys.yaml --dry-run optim.steps=500   # print the resolved config

Overrides are ``key.sub=value`` as for train.py; an unknown key or a bad value names the valid ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.image_io import BadImageError
from models.vgg import VGGWeightsUnavailable
from options.config import ConfigError, config_to_yaml
from options.gatys_config import load_gatys_config
from utils.stylize import content_files, stylize_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML file (default: the built-in defaults)")
    parser.add_argument("--content", help="content image or folder of images")
    parser.add_argument("--style", nargs="+", default=[], help="one or more style images (blended)")
    parser.add_argument("--output", help="folder for the results (<name>.png) and gatys_run.json")
    parser.add_argument("--vgg-weights", default=None, help="shortcut for vgg.weights=PATH (local VGG-19 file)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    if args.vgg_weights:
        overrides.insert(0, f"vgg.weights={args.vgg_weights}")
    try:
        cfg = load_gatys_config(args.config, overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(config_to_yaml(cfg), end="")
        return 0
    if not (args.content and args.style and args.output):
        parser.error("--content, --style and --output are required (or use --dry-run)")
    try:
        files, root = content_files(args.content)
        run = stylize_files(cfg, files, [Path(p) for p in args.style], args.output, root=root)
    except (VGGWeightsUnavailable, FileNotFoundError, BadImageError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(run.outputs)} image(s) to {args.output}: {run.seconds_per_image:.2f} s/image on {run.device}, "
          f"{run.steps} steps, {run.vgg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
