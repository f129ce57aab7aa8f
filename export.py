r"""Export a trained model out of PyTorch: ONNX (onnxruntime, the web, mobile), TorchScript
(libtorch, no Python) or safetensors (weights that load without unpickling anything).

The exported graph takes images of any height, width and batch, uint8 in [0, 255] (or float in
[0, 1] with --input-type float), pads them inside to the network's multiple and returns images in
the same convention. Every file is loaded back by the runtime that will run it and compared with
the PyTorch method on images of odd sizes before it is written; the maximum difference is printed.
See docs/export.md.

examples:
  python export.py --checkpoint runs/monet --direction BtoA --format onnx --output monet.onnx
  python export.py --checkpoint style_monet --format onnx --output style_monet.onnx --input-type float
  python export.py --checkpoint candy --format torchscript --output candy.pt
  python export.py --checkpoint runs/johnson_multi --format onnx --output styles.onnx
  python export.py --checkpoint runs/wct_demo --method adain --format onnx --output adain.onnx
  python export.py --checkpoint runs/quickstart --format safetensors --output G_A.safetensors
  python export.py --checkpoint runs/monet --format onnx --output monet.onnx --dry-run
  python test.py --checkpoint monet.onnx --input photos/ --output out/

Methods: CycleGAN (our runs and the reference's generators: --direction picks G_A or G_B), CUT /
FastCUT, Johnson (single and multi-style: the style weights are an input), AdaIN (one graph with
content, style and alpha inputs); WCT as safetensors only (its eigendecomposition has no ONNX
operator). Gatys optimises each image and has nothing to export.

exit status: 0 written (or --dry-run), 1 nothing to do (the output exists: --overwrite replaces
it), 2 error (bad checkpoint or option, a method with nothing to export, an output inside the
input, an opset the exporter cannot write, a failed check: nothing is written then)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from options import cli
from options.config import build
from options.methods import MethodOptions

FORMATS = ("onnx", "torchscript", "safetensors")
METHOD_CHOICES = ("auto", "cyclegan", "cut", "johnson", "adain", "wct", "gatys")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__, prog="export.py")
    p.add_argument("--checkpoint", required=True,
                   help="run folder (newest checkpoint), checkpoint file, foreign weights file (.pth, .safetensors), "
                        "or a downloaded model's name (style_monet, candy, ...)")
    p.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    p.add_argument("--output", required=True, metavar="FILE",
                   help="the file to write (.onnx, .pt / .ts, .safetensors); not inside the input run folder")
    p.add_argument("--method", default="auto", choices=METHOD_CHOICES,
                   help="auto: read off the checkpoint (a wct run: wct; --method adain for its relu4_1 graph)")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], default="AtoB",
                   help="CycleGAN: AtoB exports G_A, BtoA G_B (a single-generator file ignores this)")
    p.add_argument("--input-type", choices=["uint8", "float"], default="uint8",
                   help="uint8: images in [0, 255] in and out; float: float32 in [0, 1] in and out")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (11 to the installed exporter's highest)")
    p.add_argument("--style", nargs="+", default=[], metavar="IMAGE",
                   help="AdaIN / WCT: the style image the check runs with (none given: a generated picture); the "
                        "AdaIN graph takes its style as an input")
    p.add_argument("--alpha", type=float, default=1.0, help="AdaIN: the alpha the check runs with")
    p.add_argument("--config", metavar="FILE", help="the method's settings (YAML), as test.py's")
    p.add_argument("settings", nargs="*", metavar="key=value",
                   help="the method's settings, as test.py's (CycleGAN ngf= n_blocks=, Johnson output=)")
    cli.add_overwrite(p, "replace an existing output file")
    p.add_argument("--dry-run", action="store_true", help="load the model, print what would be written, write nothing")
    cli.add_device(p)
    return p.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        # Deferred: these load torch, which --help does not need.
        from methods.base import open_weights
        from methods.export import plan_export
        from methods.export_files import check_opset, check_output, export
        from utils.device import resolve_device

        output = Path(args.output)
        opts = build(MethodOptions, {"method": args.method, "checkpoint": args.checkpoint,
                                     "direction": args.direction, "style": args.style, "alpha": args.alpha,
                                     "config": args.config or "", "settings": list(args.settings)})
        if args.format == "onnx":
            check_opset(args.opset)
        device = resolve_device(args.device)
        file = None
        if args.method != "gatys":  # refused by plan_export, with no file to read
            file = open_weights(args.checkpoint, args.direction, "" if args.method == "auto" else args.method)
        check_output(output, args.format, args.checkpoint, file.path if file else None)
        plan = plan_export(opts, device, args.input_type, file)
        try:
            print(f"{plan.method.describe()}")
            print(f"exporting {plan.title} as {args.format}" + (f" (opset {args.opset})" if args.format == "onnx"
                                                              else ""))
            if args.format == "safetensors":
                print(f"  tensors: {plan.weights_doc}")
            elif plan.graph is not None:
                for spec in plan.inputs:
                    print(f"  input  {spec.line()}")
                for spec in plan.outputs:
                    print(f"  output {spec.line()}")
                print(f"  padding: {plan.padding}; height and width >= {plan.min_side} px")
            if output.exists() and not args.overwrite:
                print(f"nothing to do: {output} exists (--overwrite replaces it)", file=sys.stderr)
                return cli.EXIT_NOTHING
            if args.dry_run:
                verb = "replace" if output.exists() else "write"
                print(f"dry run: would {verb} {output}; nothing written")
                return cli.EXIT_DONE
            written = export(plan, args.format, output, opts, device, args.opset)
            print(written.check.line())
            print(f"wrote {written.path} ({written.bytes / 2**20:.1f} MiB)")
        finally:
            plan.close()
        return cli.EXIT_DONE

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
