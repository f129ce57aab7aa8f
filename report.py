r"""The comparison report: every method on the same test images, side by side, and one metrics table.

examples:
  python report.py --config experiments/report_demo.yaml                  # the demo: after `make train-demo`
  python report.py --config experiments/report_monet.yaml --device cuda   # monet2photo, photo -> Monet
  python report.py --config experiments/report_demo.yaml --dry-run methods.0.checkpoint=runs/other
  python report.py --config experiments/report_demo.yaml limit=8 --output results/report_small

The config lists the test set (dataset: with testA/ testB/, or input: any folder), the style
images, and the methods, one table row and one image column each (CycleGAN, CUT, Gatys,
Johnson, WCT, AdaIN, in any number and order). Each method runs through the batched path test.py uses,
into OUTPUT/outputs/<method>/; a later run reuses those outputs when nothing that shapes them
changed (settings, and the content of the checkpoint, style and input files); --rerun forces it.

Writes OUTPUT/index.html (self-contained), OUTPUT/grid.png, OUTPUT/metrics.json, OUTPUT/metrics.md,
and OUTPUT/.report.json first: only a folder holding that marker is replaced without --overwrite.
A report that fails before any output (a missing checkpoint, a bad device) leaves no folder behind.
FID/KID need the Inception weights (torch cache, download, or inception_weights=PATH); without
them the table says "unavailable" and why.

exit status: 0 report written, 2 error (bad config, unusable inputs or output), 130 interrupted
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack, suppress
from pathlib import Path

from options import cli
from options.config import load, to_yaml
from options.report import ReportConfig
from utils.errors import UserError
from utils.files import folder_lock, missing_folders, remove_empty_folders, write_text_atomic

# report.py's own marker: written (before any output) into every folder the report writes, so only
# such a folder counts as an earlier report; a metrics.json of anyone else's does not.
REPORT_MARKER = ".report.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__, prog="report.py")
    cli.add_config(p, default="experiments/report_demo.yaml", what="report config", example="limit=4")
    cli.add_output(p, "report folder", default="report")
    cli.add_device(p, default=None)
    cli.add_overwrite(p, "write into a folder that holds files other than an earlier report's")
    p.add_argument("--rerun", action="store_true", help="run every method again even if its outputs can be reused")
    return p.parse_intermixed_args(argv)


def check_report_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--output {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not _is_report_folder(out) and not overwrite:
        raise UserError(f"--output {out} holds files that are not an earlier report; choose an empty or new folder, "
                        f"or pass --overwrite to write beside them")


def _is_report_folder(out: Path) -> bool:
    """True when ``out`` holds the marker report.py writes (a regular file with its JSON)."""
    marker = out / REPORT_MARKER
    if marker.is_symlink() or not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("written_by") == "report.py"
    except (OSError, ValueError, AttributeError):
        return False


def write_marker(out: Path) -> None:
    """Claim ``out`` as a report folder before anything else is written into it, so an interrupted
    report is still recognised (and its outputs reused) by the rerun."""
    if not _is_report_folder(out):
        write_text_atomic(out / REPORT_MARKER, json.dumps({"written_by": "report.py", "version": 1}) + "\n")


def unclaim(out: Path, before: set[str]):
    """An exit callback for the report's ExitStack, run while the folder's lock is still held: a report
    that failed before writing anything but the marker it wrote leaves the folder as it found it
    (``before``: the names it held once locked), so a later report without --overwrite does not take
    a folder of someone's files for an earlier report."""
    def on_exit(kind, *_) -> bool:
        if kind is not None:
            with suppress(OSError):
                if {p.name for p in out.iterdir()} - {REPORT_MARKER} <= before:
                    (out / REPORT_MARKER).unlink()
        return False
    return on_exit


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
        cfg = load(ReportConfig, args.config, overrides)
        if args.dry_run:
            print(to_yaml(cfg), end="")
            return cli.EXIT_DONE
        # Deferred: these load torch, which --help and --dry-run do not need.
        from evaluation.curves import run_curves
        from evaluation.render import summary_lines, write_report
        from evaluation.report_data import build_report_data
        from utils.device import resolve_device
        from utils.translate import check_output_folder

        out = Path(args.output).resolve()  # out/new/.. is out: judged (and written) as the folder it names
        check_report_folder(out, args.overwrite)
        # Every folder the report reads: outputs inside the reference or ground-truth folder would be
        # read back as real images by the next run.
        check_output_folder(out, [Path(p) for p in (cfg.dataset, cfg.input, cfg.ground_truth, cfg.reference) if p])
        made = missing_folders(out)  # deepest first
        try:
            with ExitStack() as stack:  # one writer per report folder, for the whole report
                try:
                    out.mkdir(parents=True, exist_ok=True)
                    stack.enter_context(folder_lock(out, "report.py"))
                    if not _is_report_folder(out):
                        stack.push(unclaim(out, {p.name for p in out.iterdir()}))
                    (out / ".probe").write_bytes(b"")
                    (out / ".probe").unlink()
                    write_marker(out)
                except OSError as e:
                    raise UserError(f"cannot write the report into {out}: {e.strerror or e}") from e
                data = build_report_data(cfg, out, resolve_device(cfg.device), rerun=args.rerun)
                try:
                    curves = run_curves(data.runs, out / "curves")
                    data.curves, data.curve_notes = curves.pictures, curves.notes
                    for note in curves.notes:
                        print(f"WARNING: training curves: {note}", file=sys.stderr)
                    result = write_report(data, out)
                except OSError as e:
                    raise UserError(f"cannot write the report into {out}: {e.strerror or e} (read-only or full?); "
                                    f"the method outputs in {out / 'outputs'} are kept and a rerun reuses them") from e
        except BaseException:
            remove_empty_folders(made)
            raise
        print("\n".join(summary_lines(result)))
        print(f"report: {out / 'index.html'}, {out / 'grid.png'}, {out / 'metrics.md'} ({data.seconds_total:.0f} s)")
        return cli.EXIT_DONE

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
