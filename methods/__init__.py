"""The method table: every method once, with its config schemas, its trainer and its inference class.

Importing this module loads no torch: the schemas are plain dataclasses (``options/``), and the
trainer and inference classes are named ``"module:Class"`` and imported by :func:`trainer_class`
/ :func:`inference_class` only when a command needs them, so a CycleGAN run imports no other
method's code. ``train.py`` picks a training schema and trainer by the config's ``method`` key,
``test.py`` and the report an inference class by ``--method`` (or by the checkpoint, ``auto``).

Adding a method = its own files (network and objective in ``models/``, schemas in ``options/``,
its :class:`methods.base.Method` here, its trainer in ``training/`` if it trains) + one
:class:`Entry` in :data:`METHODS` + its tests. See docs/layout.md.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from options.config import ConfigError
from options.cut import CUTConfig, CUTTestSettings
from options.cyclegan import CycleGANConfig, CycleGANTestSettings
from options.gatys import GatysConfig
from options.johnson import JohnsonConfig, JohnsonTestSettings
from options.onnx import ONNXSettings
from options.wct import AdaINSettings, WCTConfig, WCTSettings


@dataclass(frozen=True)
class Entry:
    """One method. ``settings``: its test-time schema (``test.py``'s trailing ``key=value``, a report
    entry's ``settings``); ``training``: its training config schema (a :class:`options.common.RunConfig`
    with ``validate()`` and ``RESUME_FROZEN``), None when it does not train; ``trainer`` and
    ``inference``: ``"module:Class"``, imported on use."""

    inference: str
    settings: type
    training: type | None = None
    trainer: str = ""
    folders: bool = True  # test.py runs it over folders (Gatys, an optimisation per image, runs in stylize.py)


METHODS: dict[str, Entry] = {
    "cyclegan": Entry("methods.cyclegan:CycleGANMethod", CycleGANTestSettings, CycleGANConfig,
                      "training.cyclegan:CycleGANTrainer"),
    "gatys": Entry("methods.gatys:GatysMethod", GatysConfig, folders=False),
    "johnson": Entry("methods.johnson:JohnsonMethod", JohnsonTestSettings, JohnsonConfig,
                     "training.johnson:JohnsonTrainer"),
    "wct": Entry("methods.wct:WCTMethod", WCTSettings, WCTConfig, "training.wct:WCTTrainer"),
    "adain": Entry("methods.wct:AdaINMethod", AdaINSettings),  # AdaIN runs on a wct run's relu4_1 decoder
    "cut": Entry("methods.cut:CUTMethod", CUTTestSettings, CUTConfig, "training.cut:CUTTrainer"),
    "onnx": Entry("methods.onnx:ONNXMethod", ONNXSettings),  # a graph of export.py's, through onnxruntime
}

TRAINABLE = tuple(name for name, e in METHODS.items() if e.training is not None)


def _resolve(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def training_schema(method: str) -> type:
    """The config schema of a trainable ``method``; :class:`ConfigError` for any other name."""
    entry = METHODS.get(method)
    if entry is None or entry.training is None:
        raise ConfigError(f"method: {method!r} is not a trainable method; valid: {', '.join(TRAINABLE)}")
    return entry.training


def trainer_class(method: str) -> Any:
    training_schema(method)
    return _resolve(METHODS[method].trainer)


def inference_class(method: str) -> Any:
    if method not in METHODS:
        raise ConfigError(f"method: {method!r} is not a method; valid: {', '.join(METHODS)}")
    return _resolve(METHODS[method].inference)
