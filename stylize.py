r"""Gatys et al. neural style transfer by optimisation, for one image or a folder.

examples:
  python stylize.py --config experiments/gatys.yaml --input photo.jpg --style monet.jpg --output out/
  python stylize.py --input photos/ --style a.jpg b.jpg --output out/ image.style_blend=[0.7,0.3]
  python stylize.py --input photo.jpg --style s.jpg --output out/ --vgg-weights vgg19-d01eb7cb.pth \
      loss.content_weight=5 loss.style_weight=100     # the Caffe VGG-19 and neural-style's loss weights
  python stylize.py --config experiments/gatys_neural_style_pt.yaml --input photo.jpg --style s.jpg --output out/
  python stylize.py --config experiments/gatys.yaml --dry-run optim.steps=500

Sizes: the result is optimised and written at 512 px on its longer side (image.size=512, the
Gatys default; smaller images are enlarged), not at the content image's own size as test.py keeps
it; image.size=0 keeps each content image's size, image.size=N sets another longer side.

Same rules as test.py: the output folder is never the input folder or inside it, existing
outputs are skipped unless --overwrite, every input gets a unique output name, an unreadable
file is reported and skipped. OUTPUT/gatys_run.json records the settings, the VGG weights used,
each image's final losses and the seconds per image.

exit status: 0 at least one image done, 1 nothing done, 2 error, 130 interrupted
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from options import cli
from options.config import to_yaml
from options.gatys import load_gatys_config
from options.methods import MethodOptions
from utils.errors import UserError
from utils.files import write_text_atomic


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__, prog="stylize.py")
    cli.add_config(p, what="Gatys settings (YAML; default: the built-in defaults)", example="image.size=256")
    p.add_argument("--input", "--content", dest="input", help="content image or folder of images")
    p.add_argument("--style", nargs="+", default=[], metavar="IMAGE", help="one or more style images (blended)")
    p.add_argument("--style-weights", nargs="+", type=float, default=[], metavar="W", help="blend weights")
    cli.add_output(p, "folder for the results (<name>.png) and gatys_run.json")
    cli.add_device(p, default=None)
    cli.add_overwrite(p)
    p.add_argument("--recursive", action="store_true", help="also stylize images in sub-folders")
    p.add_argument("--preserve-color", action="store_true",
                   help="luminance-only: keep the content's colours (= image.preserve_color=true)")
    p.add_argument("--vgg-weights", metavar="FILE", help="shortcut for vgg.weights=FILE (a local VGG-19 file)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        settings = list(args.overrides)
        if args.vgg_weights:
            settings.insert(0, f"vgg.weights={args.vgg_weights}")
        if args.device:
            settings.append(f"device={args.device}")
        if args.no_progress:
            settings.append("progress=false")
        if args.preserve_color:
            settings.append("image.preserve_color=true")
        cfg = load_gatys_config(args.config, settings)
        if args.dry_run:
            print(to_yaml(cfg), end="")
            return cli.EXIT_DONE
        missing = [f for f, v in (("--input", args.input), ("--style", args.style), ("--output", args.output)) if not v]
        if missing:
            raise UserError(f"{', '.join(missing)} required (or use --dry-run)")
        # Deferred: these load torch, which --help and --dry-run do not need.
        from methods.gatys import GatysMethod
        from utils.device import resolve_device
        from utils.translate import FolderJob, check_job, output_folder, run_folder

        job = FolderJob(Path(args.input), Path(args.output), recursive=args.recursive, overwrite=args.overwrite,
                        keep_alpha=False, batch_size=cfg.batch_size, progress=not args.no_progress)
        check_job(job)  # the output rules before the VGG loads
        opts = MethodOptions(method="gatys", style=args.style, style_weights=args.style_weights,
                             config=args.config or "", settings=settings)
        method = GatysMethod.build(opts, None, resolve_device(cfg.device))
        print(method.describe())
        if not method.vgg.pretrained:
            print(f"WARNING: Gatys runs with a {method.vgg.label}: the images show what the optimisation does, "
                  f"not real style transfer", file=sys.stderr)
        with output_folder(job):  # one writer: the images and gatys_run.json under one lock
            summary = run_folder(method, job)
            for path, reason in summary.failed:
                print(f"  failed: {path}: {reason}", file=sys.stderr)
            if summary.translated:
                record = {"images": summary.translated, "seconds": summary.method_seconds,
                          "seconds_per_image": summary.seconds_per_image, "device": str(method.device),
                          "settings": method.settings(), "losses": summary.losses,
                          "outputs": [str(dst) for _, dst in summary.pairs], "config": json.loads(json.dumps(
                              dataclasses.asdict(cfg)))}
                try:
                    write_text_atomic(job.output / "gatys_run.json", json.dumps(record, indent=2))
                except OSError as e:
                    raise UserError(f"cannot write {job.output / 'gatys_run.json'}: {e.strerror or e} (read-only or "
                                    f"full?); the {summary.translated} stylized image(s) were written") from e
                print(f"wrote {summary.translated} image(s) to {job.output}: {summary.seconds_per_image:.2f} s/image "
                      f"on {method.device}; skipped {summary.skipped} (already there), failed {len(summary.failed)}")
                return cli.EXIT_DONE
        if summary.skipped:
            print(f"nothing to do: all {summary.skipped} outputs already exist in {job.output} (--overwrite)")
            return cli.EXIT_NOTHING
        print(f"nothing done: no image of {args.input} could be stylized", file=sys.stderr)
        return cli.EXIT_NOTHING

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
