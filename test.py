"""Translate images with a trained generator: ours or the public reference's pretrained files.

    python test.py --checkpoint runs/monet --input datasets/monet2photo/testB --output results/monet --direction BtoA
    python test.py --checkpoint style_monet.pth --input photos/ --output monet/ --recursive --gallery
    python test.py --checkpoint runs/monet/checkpoints/step_00100000.pt --input big.jpg --output out/ --max-size 1024

Exit status: 0 when at least one image was translated (or all outputs were already there),
1 when nothing could be translated (no images, or every file failed), 2 when an error
stopped the run (unreadable checkpoint, bad option, missing input).
"""

from __future__ import annotations

import argparse
import sys

from utils.checkpoint import CheckpointError
from utils.translate import OUTPUT_FORMATS, TranslateError, describe_loaded, load_generator, translate_folder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="run folder (newest checkpoint), checkpoint file, or reference generator .pth")
    p.add_argument("--input", required=True, help="folder of images, or one image")
    p.add_argument("--output", required=True, help="folder for the translated images")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], default="AtoB",
                   help="AtoB uses G_A, BtoA uses G_B (a single-generator .pth ignores this)")
    p.add_argument("--recursive", action="store_true", help="also translate images in sub-folders")
    p.add_argument("--format", choices=["png", *[f for f in OUTPUT_FORMATS if f != "png"], "same"], default="png",
                   help="output file format (same: each input's own)")
    p.add_argument("--quality", type=int, default=95, help="JPEG / WebP quality")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    p.add_argument("--alpha", choices=["keep", "drop"], default="keep",
                   help="keep: put an input's transparency back on its output; drop: opaque RGB outputs")
    p.add_argument("--load-size", type=int, help="translate at this shorter side (output resized back)")
    p.add_argument("--max-size", type=int, help="translate at most this longer side (huge images; resized back)")
    p.add_argument("--ngf", type=int, help="force the generator width instead of reading it from the file")
    p.add_argument("--n-blocks", type=int, help="force the residual block count instead of reading it")
    p.add_argument("--batch-size", type=int, default=4, help="images of equal size translated together")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off", help="autocast precision (fp16: CUDA only)")
    p.add_argument("--workers", type=int, default=2, help="threads decoding and encoding images")
    p.add_argument("--gallery", action="store_true", help="write OUTPUT/index.html: input | output per row")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        generator, info = load_generator(args.checkpoint, args.direction, args.ngf, args.n_blocks, args.device)
        print(describe_loaded(info))
        if info["note"]:
            print(f"note: {info['note']}")
        summary = translate_folder(
            generator, args.input, args.output, device=args.device, amp=args.amp, recursive=args.recursive,
            batch_size=args.batch_size, fmt=args.format, quality=args.quality, overwrite=args.overwrite,
            alpha=args.alpha, load_size=args.load_size, max_size=args.max_size, workers=args.workers,
            progress=not args.no_progress, gallery=args.gallery,
            gallery_title=f"{args.input} -> {args.output} ({info['net'] or 'generator'}, {info['path']})",
        )
    except (CheckpointError, TranslateError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary.line())
    for path, reason in summary.failed:
        print(f"  failed: {path}: {reason}", file=sys.stderr)
    if args.gallery:
        print(f"gallery: {summary.output / 'index.html'}")
    if summary.translated + summary.skipped == 0:
        print(f"error: nothing translated from {args.input}"
              + ("" if summary.failed else " (no images found; add --recursive for sub-folders?)"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
