r"""Train a model: CycleGAN, CUT / FastCUT, a Johnson fast-style network, or WCT / AdaIN decoders (the
config's method: key says which).

examples:
  python train.py --config experiments/quickstart.yaml            # CycleGAN on the built-in demo data
  python train.py --config experiments/monet.yaml                 # the paper's setting on monet2photo
  python train.py --config experiments/monet.yaml --dry-run optim.lr=1e-4
  python train.py --config experiments/johnson_demo.yaml          # one fast style-transfer network
  python train.py --config experiments/wct_demo.yaml              # decoders for WCT and AdaIN
  python train.py --resume runs/quickstart                        # continue, with the stored config
  python train.py --resume runs/quickstart optim.n_epochs=10      # continue for longer
  torchrun --standalone --nproc_per_node=4 train.py --config experiments/monet.yaml

The run folder is log.root/name (or --output); it holds config.yaml, checkpoints/ and tb/.
A fresh run refuses a folder that holds a run: resume it, choose another name, or --overwrite.

exit status: 0 trained, 1 nothing to do (the run is already complete), 2 error, 130 interrupted
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from options import cli
from options.common import RunConfig, load_training_config
from options.config import to_yaml
from training import build_trainer
from utils.errors import UserError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__, prog="train.py")
    cli.add_config(p)
    p.add_argument("--resume", metavar="RUN", help="run folder (newest good checkpoint) or checkpoint file")
    cli.add_output(p, "run folder (overrides log.root and name)")
    cli.add_device(p, default=None)
    cli.add_overwrite(p, "start afresh in a run folder that holds a run, deleting its checkpoints and logs")
    return p.parse_intermixed_args(argv)


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """Config file (or the resumed checkpoint's stored config, or defaults) + overrides."""
    overrides = list(args.overrides)
    if args.output:
        out = Path(args.output)
        overrides += [f"log.root={out.parent.as_posix() or '.'}", f"name={out.name}"]
    if args.device:
        overrides.append(f"device={args.device}")
    if args.resume:
        overrides.append(f"resume={args.resume}")
    if args.config or not args.resume:
        return load_training_config(args.config, overrides)
    from training.resume import resumed_config  # deferred: reading a checkpoint loads torch

    return resumed_config(args.resume, overrides, args.output)


def dry_run_notes(cfg: RunConfig) -> list[str]:
    """Comment lines for --dry-run: what data the run holds out and how long it is."""
    notes = [f"# method {cfg.method}: run folder {cfg.run_dir}, {cfg.total_epochs} epochs"]
    data = getattr(cfg, "data", None)
    two_domains = hasattr(data, "subset_A")  # CycleGAN: trainA/ and trainB/; the others: one folder
    where = "trainA/ and of trainB/" if two_domains else str(getattr(data, "root", ""))
    if data is not None and hasattr(data, "val_images"):
        if data.val_images:
            notes.append(f"# validation: the last {data.val_images} images of {where} are held out of training "
                         f"(data.val_images)")
        else:
            notes.append(f"# trains on every image of {where.replace('of ', '')} (data.val_images=0)")
    ev = getattr(cfg, "eval", None)
    if ev is not None and getattr(ev, "every_epochs", 0):
        notes.append(f"# FID/KID on testA/testB every {ev.every_epochs} epoch(s) (eval.every_epochs)")
    return notes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        if not (args.config or args.resume or args.overrides or args.dry_run):
            raise UserError("nothing says what to train: give --config FILE (e.g. experiments/quickstart.yaml), "
                            "--resume RUN, or key=value overrides of the defaults (--dry-run shows them)")
        cfg = resolve_config(args)
        if args.dry_run:
            print("\n".join(dry_run_notes(cfg)))
            print(to_yaml(cfg), end="")
            return cli.EXIT_DONE
        trainer = build_trainer(cfg, overwrite=args.overwrite)
        if trainer.epoch >= cfg.total_epochs:
            trainer.close()
            print(f"nothing to do: {trainer.run_dir} has completed {trainer.epoch} of {cfg.total_epochs} epochs "
                  f"(to train longer raise optim.n_epochs or optim.n_epochs_decay)", file=sys.stderr)
            return cli.EXIT_NOTHING
        result = trainer.fit()
        print(f"done: epoch {result.epoch}, step {result.step}, last checkpoint {result.last_checkpoint}")
        return cli.EXIT_DONE

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
