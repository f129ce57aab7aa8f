"""One typed config tree for training, loaded from YAML with ``key.sub=value`` overrides.

Every key has a type (checked, ints are accepted where floats are expected), ``Literal``
keys have a closed set of choices, and :func:`validate` checks ranges and cross-key rules.
Any mistake raises :class:`ConfigError` naming the key and what is valid. The resolved
config is stored beside the run (``config.yaml``) and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key and what is valid."""


@dataclass
class DataConfig:
    root: str = "datasets/demo"  # folder with trainA/ trainB/ testA/ testB/
    demo: bool = False  # generate the built-in demo dataset into `root` if it is missing
    demo_seed: int = 0
    preprocess: Literal["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"] = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    batch_size: int = 1
    num_workers: int = 4
    pin_memory: bool = True
    persistent_workers: bool = True
    prefetch_factor: int = 2
    subset_A: int = 0  # use only the first N images of trainA (0 = all); seed 002 used 120
    subset_B: int = 0  # ... of trainB; seed 002 used 750
    val_images: int = 50  # images per domain held out of train* for the validation metric (0 = off)


@dataclass
class ModelConfig:
    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    n_layers_D: int = 3
    norm: Literal["instance", "batch", "none"] = "instance"
    init: Literal["normal", "xavier", "kaiming", "orthogonal"] = "normal"
    init_gain: float = 0.02
    dropout: bool = False
    upsample: Literal["transpose", "resize_conv"] = "transpose"


@dataclass
class LossConfig:
    gan_mode: Literal["lsgan", "vanilla"] = "lsgan"
    lambda_A: float = 10.0  # cycle A -> B -> A
    lambda_B: float = 10.0  # cycle B -> A -> B
    lambda_identity: float = 0.5  # relative to lambda_A / lambda_B, as in the reference


@dataclass
class OptimConfig:
    lr: float = 2e-4  # generators
    lr_D: float = 0.0  # discriminators; 0 = same as lr
    beta1: float = 0.5
    beta2: float = 0.999
    lr_policy: Literal["linear", "step", "cosine", "plateau"] = "linear"
    n_epochs: int = 100  # epochs at the initial lr (linear policy)
    n_epochs_decay: int = 100  # epochs of linear decay afterwards
    step_epochs: int = 50  # step policy: multiply by step_gamma every step_epochs
    step_gamma: float = 0.1
    plateau_factor: float = 0.2
    plateau_patience: int = 5
    plateau_threshold: float = 0.01
    min_lr: float = 0.0  # cosine floor and plateau floor


@dataclass
class TrainConfig:
    pool_size: int = 50
    d_steps_per_g: int = 1  # discriminator updates per generator update (seed 002 tried 5)
    d_clip: float = 0.0  # clamp D weights to [-c, c] after each D step (0 = off; seed 002: 0.01)
    max_batches_per_epoch: int = 0  # 0 = the whole epoch (seed 002 used 20)
    amp: Literal["off", "bf16", "fp16"] = "off"
    channels_last: bool = False
    compile: bool = False
    grad_checkpoint: bool = False  # recompute residual blocks in backward (high resolution)
    max_nonfinite: int = 20  # stop after this many consecutive non-finite losses


@dataclass
class LogConfig:
    root: str = "runs"
    scalars_every: int = 50  # optimisation steps
    images_every: int = 500
    progress: bool = True


@dataclass
class CheckpointConfig:
    every_epochs: int = 1
    every_steps: int = 0  # 0 = only at epoch ends
    keep: int = 3  # newest checkpoints kept on disk


@dataclass
class Config:
    name: str = "cyclegan"
    seed: int = 0
    deterministic: bool = False  # bit-reproducible kernels (slower); resume equality relies on it
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    resume: str = ""  # run folder or checkpoint file to continue from
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.log.root) / self.name

    @property
    def total_epochs(self) -> int:
        return self.optim.n_epochs + self.optim.n_epochs_decay


# ---------------------------------------------------------------------------------------------
# Building from dicts, YAML and overrides


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it (ints widened to float)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and ("on" if value else "off") in choices:
            value = "on" if value else "off"  # YAML 1.1 reads a bare off / on as a boolean
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not a valid choice; valid: {', '.join(map(str, choices))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):  # YAML reads .nan / .inf; no key means anything by them
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp} for {key}")  # a bug in this file, not user input


def _unknown_key(key: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
    return ConfigError(f"unknown config key {key!r}{hint}; valid keys here: {', '.join(prefix + v for v in valid)}")


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {data!r}")
    hints = _hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise _unknown_key(prefix + str(key), valid)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, prefix + key + ".")
        else:
            kwargs[key] = _coerce(value, tp, prefix + key)
    return cls(**kwargs)


def apply_override(cfg_dict: dict[str, Any], override: str, schema: type | None = None) -> None:
    """Apply ``a.b.c=value`` to a nested dict; the value is parsed as YAML (``1e-4``, ``true``).

    ``schema`` is the root dataclass the keys are checked against (default :class:`Config`).
    """
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.sub=value")
    key, raw = override.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"{key}: cannot parse value {raw!r}: {e}") from e
    value = _parse_yaml_number_strings(value)
    node, cls = cfg_dict, schema or Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        hints = _hints(cls)
        if part not in hints:
            raise _unknown_key(".".join(parts[: i + 1]), [f.name for f in dataclasses.fields(cls)])
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(hints[part]):
                raise ConfigError(f"{key} is a section; set one of its keys, e.g. {key}.<key>=value")
            node[part] = value
        else:
            if not dataclasses.is_dataclass(hints[part]):
                raise ConfigError(f"{'.'.join(parts[: i + 1])} is not a section, so {key} does not exist")
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node, cls = node[part], hints[part]


_SCI_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _parse_yaml_number_strings(data: Any) -> Any:
    """YAML 1.1 reads ``2e-4`` (no dot) as a string; turn such strings back into floats."""
    if isinstance(data, dict):
        return {k: _parse_yaml_number_strings(v) for k, v in data.items()}
    if isinstance(data, str) and _SCI_NUMBER.match(data.strip()):
        return float(data)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, schema: type | None = None,
                validator: Any = None) -> Any:
    """Read a YAML config (or start from defaults), apply overrides, validate.

    By default this builds the training :class:`Config` and checks it with :func:`validate`;
    other entry points pass their own root dataclass as ``schema`` and their ``validator``.
    """
    schema = schema or Config
    validator = validator or (validate if schema is Config else None)
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found (the shipped ones are in experiments/)")
        with open(path) as f:
            try:
                data = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: not valid YAML: {e}") from e
        data = _parse_yaml_number_strings(data)
    for override in overrides or []:
        apply_override(data, override, schema)
    cfg = _build(schema, data)
    if validator is not None:
        validator(cfg)
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    cfg = _build(Config, data)
    validate(cfg)
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(config_to_yaml(cfg))


# ---------------------------------------------------------------------------------------------
# Ranges and cross-key rules


def check(cond: bool, key: str, message: str) -> None:
    """Raise :class:`ConfigError` ``"<key>: <message>"`` unless ``cond`` holds."""
    if not cond:
        raise ConfigError(f"{key}: {message}")


def validate(cfg: Config) -> None:
    d, m, o, t = cfg.data, cfg.model, cfg.optim, cfg.train
    check(bool(cfg.name) and "/" not in cfg.name and cfg.name not in (".", ".."), "name",
           f"must be a plain folder name, got {cfg.name!r}")
    check(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device) is not None,
           "device", f"expected auto, cpu, cuda, cuda:N or mps, got {cfg.device!r}")
    check(cfg.seed >= 0, "seed", "must be >= 0")
    check(d.demo_seed >= 0, "data.demo_seed", "must be >= 0")

    check(d.load_size > 0, "data.load_size", "must be > 0")
    check(d.crop_size > 0, "data.crop_size", "must be > 0")
    check(d.crop_size % 4 == 0, "data.crop_size",
           f"must be a multiple of 4 (the generator down-samples twice), got {d.crop_size}")
    if d.preprocess in ("resize_and_crop", "scale_width_and_crop"):
        check(d.crop_size <= d.load_size, "data.crop_size",
               f"{d.crop_size} is larger than data.load_size {d.load_size}; the crop must fit in the resized image")
    check(d.batch_size >= 1, "data.batch_size", "must be >= 1")
    check(d.num_workers >= 0, "data.num_workers", "must be >= 0")
    check(d.prefetch_factor >= 1, "data.prefetch_factor", "must be >= 1")
    check(d.subset_A >= 0, "data.subset_A", "must be >= 0 (0 = all images)")
    check(d.subset_B >= 0, "data.subset_B", "must be >= 0 (0 = all images)")
    check(d.val_images >= 0, "data.val_images", "must be >= 0")

    for key in ("input_nc", "output_nc", "ngf", "ndf", "n_layers_D"):
        check(getattr(m, key) >= 1, f"model.{key}", "must be >= 1")
    check(m.n_blocks >= 0, "model.n_blocks", "must be >= 0")
    check(m.init_gain > 0, "model.init_gain", "must be > 0")

    for key in ("lambda_A", "lambda_B", "lambda_identity"):
        check(getattr(cfg.loss, key) >= 0, f"loss.{key}", "must be >= 0")
    if cfg.loss.lambda_identity > 0:
        check(m.input_nc == m.output_nc, "loss.lambda_identity",
               "identity loss needs model.input_nc == model.output_nc; set loss.lambda_identity=0")

    check(o.lr > 0, "optim.lr", f"must be > 0, got {o.lr}")
    check(o.lr_D >= 0, "optim.lr_D", f"must be >= 0 (0 = same as optim.lr), got {o.lr_D}")
    check(0 <= o.beta1 < 1, "optim.beta1", "must be in [0, 1)")
    check(0 <= o.beta2 < 1, "optim.beta2", "must be in [0, 1)")
    check(o.n_epochs >= 0, "optim.n_epochs", "must be >= 0")
    check(o.n_epochs_decay >= 0, "optim.n_epochs_decay", "must be >= 0")
    check(o.n_epochs + o.n_epochs_decay >= 1, "optim.n_epochs", "n_epochs + n_epochs_decay must be >= 1")
    check(o.step_epochs >= 1, "optim.step_epochs", "must be >= 1")
    check(0 < o.step_gamma <= 1, "optim.step_gamma", "must be in (0, 1]")
    check(0 < o.plateau_factor < 1, "optim.plateau_factor", "must be in (0, 1)")
    check(o.plateau_patience >= 0, "optim.plateau_patience", "must be >= 0")
    check(o.plateau_threshold >= 0, "optim.plateau_threshold", "must be >= 0")
    check(o.min_lr >= 0, "optim.min_lr", "must be >= 0")
    if o.lr_policy == "plateau":
        check(d.val_images > 0, "optim.lr_policy",
               "plateau steps on the validation metric, so data.val_images must be > 0")

    check(t.pool_size >= 0, "train.pool_size", "must be >= 0")
    check(t.d_steps_per_g >= 1, "train.d_steps_per_g", "must be >= 1")
    check(t.d_clip >= 0, "train.d_clip", "must be >= 0 (0 = off)")
    check(t.max_batches_per_epoch >= 0, "train.max_batches_per_epoch", "must be >= 0 (0 = whole epoch)")
    check(t.max_nonfinite >= 1, "train.max_nonfinite", "must be >= 1")

    check(cfg.log.scalars_every >= 1, "log.scalars_every", "must be >= 1")
    check(cfg.log.images_every >= 0, "log.images_every", "must be >= 0 (0 = off)")
    check(cfg.checkpoint.every_epochs >= 0, "checkpoint.every_epochs", "must be >= 0")
    check(cfg.checkpoint.every_steps >= 0, "checkpoint.every_steps", "must be >= 0")
    check(cfg.checkpoint.keep >= 1, "checkpoint.keep", "must be >= 1")
