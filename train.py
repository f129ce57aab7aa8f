"""Train CycleGAN.

    python train.py --config experiments/quickstart.yaml [key.sub=value ...]
    python train.py --config experiments/monet.yaml --dry-run
    python train.py --resume runs/quickstart [key.sub=value ...]
    torchrun --nproc_per_node=4 train.py --config experiments/monet.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.unaligned import DatasetError
from options.config import ConfigError, apply_override, config_from_dict, config_to_yaml, load_config
from utils.checkpoint import CheckpointError, resolve_checkpoint
from utils.trainer import Trainer, TrainingError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (see experiments/)")
    parser.add_argument("--resume", help="run folder or checkpoint file to continue from")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. optim.lr=1e-4")
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace):
    overrides = list(args.overrides)
    if args.resume:
        overrides.append(f"resume={args.resume}")
    if args.config:
        return load_config(args.config, overrides)
    if args.resume:
        # No config file: continue with the config stored in the checkpoint.
        ckpt_path, ckpt = resolve_checkpoint(args.resume)
        cfg_dict = ckpt["config"]
        # Keep writing into the run folder being resumed, even if it was moved or copied since.
        run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else None
        if run_dir is not None:
            cfg_dict.setdefault("log", {})["root"] = str(run_dir.parent)
            cfg_dict["name"] = run_dir.name
        for override in overrides:
            apply_override(cfg_dict, override)
        return config_from_dict(cfg_dict)
    return load_config(None, overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = resolve_config(args)
        if args.dry_run:
            print(config_to_yaml(cfg), end="")
            return 0
        if cfg.resume and not Path(cfg.resume).exists():
            raise CheckpointError(f"resume={cfg.resume}: no such run folder or checkpoint file")
        result = Trainer(cfg).fit()
    except (ConfigError, DatasetError, CheckpointError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"done: epoch {result.epoch}, step {result.step}, last checkpoint {result.last_checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
