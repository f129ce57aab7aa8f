r"""Translate or stylize a folder of images (or one image) with a trained model.

Works with CycleGAN runs and the public reference's pretrained generators, Johnson fast-style
networks (ours and PyTorch's fast_neural_style files), and WCT / AdaIN decoders with any style
image. The method is read off --checkpoint unless --method says it.

examples:
  python test.py --checkpoint runs/monet --input datasets/monet2photo/testB --output results/monet --direction BtoA
  python test.py --checkpoint style_monet --input photos/ --output monet/ --recursive --gallery
  python test.py --checkpoint runs/monet/checkpoints/step_00100000.pt --input big.jpg --output out/ --max-size 1024
  python test.py --checkpoint runs/johnson_demo --input photos/ --output out/ --preserve-color
  python test.py --checkpoint candy --input photos/ --output candy/
  python test.py --checkpoint runs/wct_demo --input photos/ --output out/ --style a.jpg b.jpg \
      --style-weights 0.7 0.3 --alpha 0.6
  python test.py --checkpoint runs/wct_demo --method adain --input photos/ --output out/ --style a.jpg
  python test.py --checkpoint runs/wct_demo levels=[relu4_1,relu3_1] --input photos/ --output out/ --style a.jpg

key=value arguments set the method's own settings (--config FILE holds them in YAML): CycleGAN
ngf= n_blocks= (force the architecture), Johnson output=, WCT levels= transform= eps= (see
docs/methods.md). Put them before --style, which takes every image path that follows it.

exit status: 0 at least one image done, 1 nothing done (no images, every file failed, or every
output already there), 2 error (bad checkpoint or option, unusable output), 130 interrupted
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from methods import METHODS
from options import cli
from options.config import build, to_yaml
from options.methods import MethodOptions


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__, prog="test.py")
    p.add_argument("--checkpoint", required=True,
                   help="run folder (newest checkpoint), checkpoint file, foreign weights file, or a downloaded "
                        "model's name (style_monet, candy, ...)")
    p.add_argument("--input", required=True, help="folder of images, or one image")
    cli.add_output(p, "folder for the results (not the input folder or inside it)", required=True)
    p.add_argument("--method", default="auto", choices=["auto", *(m for m, e in METHODS.items() if e.folders)],
                   help="auto: read off the checkpoint (Gatys: stylize.py)")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], default="AtoB",
                   help="CycleGAN: AtoB uses G_A, BtoA uses G_B (the reference's single-generator files ignore this); "
                        "CUT: the direction its run was trained in")
    p.add_argument("--style", nargs="+", default=[], metavar="IMAGE", help="style image(s): WCT and AdaIN")
    p.add_argument("--style-weights", nargs="+", type=float, default=[], metavar="W",
                   help="blend several style images, or a multi-style Johnson network's styles")
    p.add_argument("--alpha", type=float, default=1.0, help="WCT / AdaIN: 1 = fully stylized, 0 = the content")
    p.add_argument("--preserve-color", action="store_true", help="keep the content's colours (luminance-only)")
    p.add_argument("--config", metavar="FILE", help="the method's settings (YAML)")
    p.add_argument("--dry-run", action="store_true",
                   help="load the model, print its settings and what would be written, write nothing")
    p.add_argument("settings", nargs="*", metavar="key=value", help="the method's settings")
    p.add_argument("--recursive", action="store_true", help="also process images in sub-folders")
    p.add_argument("--format", choices=["png", "jpg", "webp", "bmp", "tif", "same"], default="png",
                   help="output file format (same: each input's own)")
    p.add_argument("--quality", type=int, default=95, help="JPEG / WebP quality")
    cli.add_overwrite(p)
    p.add_argument("--alpha-channel", choices=["keep", "drop"], default="keep", dest="alpha_channel",
                   help="keep: put an input's transparency back on its output; drop: opaque outputs")
    p.add_argument("--load-size", type=int, help="process at this shorter side (output resized back)")
    p.add_argument("--max-size", type=int, help="process at most this longer side (huge images; resized back)")
    p.add_argument("--ngf", type=int, help="CycleGAN: force the generator width (= the setting ngf=N)")
    p.add_argument("--n-blocks", type=int, help="CycleGAN: force the residual block count (= n_blocks=N)")
    p.add_argument("--batch-size", type=int, default=4, help="images of equal size processed together")
    cli.add_device(p)
    p.add_argument("--amp", choices=["off", "auto", "bf16", "fp16"], default="off",
                   help="autocast precision; auto: bf16 where the device has it natively (CUDA >= 8.0, a CPU with "
                        "AVX-512 bf16 or AMX), else fp32; fp16: CUDA")
    p.add_argument("--workers", type=int, default=2, help="threads decoding and encoding images")
    p.add_argument("--gallery", action="store_true", help="write OUTPUT/index.html: input | output per row")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_intermixed_args(argv)


def method_options(args: argparse.Namespace) -> MethodOptions:
    settings = list(args.settings)
    settings += [f"ngf={args.ngf}"] if args.ngf is not None else []
    settings += [f"n_blocks={args.n_blocks}"] if args.n_blocks is not None else []
    return build(MethodOptions, {
        "method": args.method, "checkpoint": args.checkpoint, "direction": args.direction, "style": args.style,
        "style_weights": args.style_weights, "alpha": args.alpha, "preserve_color": args.preserve_color,
        "config": args.config or "", "settings": settings, "amp": args.amp})


def dry_run(args: argparse.Namespace, plan: list[tuple[Path, Path]]) -> int:
    """What a real run would write, without writing: each input and its output, marked when the
    output exists (kept without --overwrite)."""
    print(to_yaml(method_options(args)), end="")
    existing = sum(dst.exists() for _, dst in plan)
    for src, dst in plan:
        kept = dst.exists() and not args.overwrite
        print(f"  {src} -> {dst}" + ("  (exists: kept)" if kept else "  (exists: replaced)" if dst.exists() else ""))
    todo = len(plan) if args.overwrite else len(plan) - existing
    print(f"dry run: {len(plan)} image(s), {todo} to write, {len(plan) - todo} already there; nothing written")
    return cli.EXIT_DONE


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        # Deferred: these load torch, which --help does not need.
        from methods.base import load_method
        from utils.device import warn_once
        from utils.gallery import GalleryMaker, write_gallery
        from utils.translate import FolderJob, check_job, output_folder, run_folder

        job = FolderJob(Path(args.input), Path(args.output), recursive=args.recursive, fmt=args.format,
                        quality=args.quality, overwrite=args.overwrite, keep_alpha=args.alpha_channel == "keep",
                        load_size=args.load_size, max_size=args.max_size, batch_size=args.batch_size,
                        workers=args.workers, progress=not args.no_progress)
        plan = check_job(job)  # options and output rules, before the model loads
        method = load_method(method_options(args), args.device)
        print(method.describe())
        if method.amp_choice.requested == "auto":
            print(method.amp_choice.describe())
        warn_once(method.amp_choice.warning.replace("use amp auto or off", "use --amp auto or off"))
        if args.dry_run:
            return dry_run(args, plan)
        with output_folder(job):  # one writer: the outputs and the gallery under one lock
            summary = run_folder(method, job)
            print(summary.line())
            for path, reason in summary.failed:
                print(f"  failed: {path}: {reason}", file=sys.stderr)
            if args.gallery:
                settings = ", ".join(f"{k} {v}" for k, v in method.settings().items() if v not in (None, [], ""))
                maker = GalleryMaker.of(method.fingerprint(), method.describe())
                gallery = write_gallery(job.output, summary.pairs, summary.failed,
                                        title=f"{method.name}: {args.input} -> {args.output}", subtitle=settings,
                                        input_root=job.input if job.input.is_dir() else job.input.parent,
                                        written=summary.written, maker=maker)
                print(f"gallery: {gallery.path}")
                stale = gallery.stale_rows
                if stale:
                    print(f"gallery: {stale} of {len(summary.pairs)} row(s) show earlier outputs not known to come "
                          f"from this checkpoint (marked stale in the page; --overwrite remakes them)", file=sys.stderr)
        if summary.translated:
            return cli.EXIT_DONE
        if summary.skipped:
            print(f"nothing to do: all {summary.skipped} outputs already exist in {args.output} (--overwrite "
                  f"replaces them)", file=sys.stderr)
        else:
            print(f"nothing done: no image of {args.input} could be processed"
                  + ("" if summary.failed else " (no images found; add --recursive for sub-folders?)"),
                  file=sys.stderr)
        return cli.EXIT_NOTHING

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
