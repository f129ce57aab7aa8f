"""The method table: every method once, with its config schemas, its trainer and its inference class.

Importing this module loads no torch and no method's code: each entry names its schemas, trainer
and inference class ``"module:Class"``, imported by :func:`training_schema`, :func:`trainer_class`
and :func:`inference_class` only when a command needs that method, so a CycleGAN run imports no
other method's modules (its schema classes included). The schemas are classes that carry their
own rules: ``validate()`` and ``RESUME_FROZEN``. ``train.py`` picks a training schema and trainer
by the config's ``method`` key, ``test.py`` and the report an inference class by ``--method`` (or
by the checkpoint, ``auto``).

Adding a method = its own files (network and objective in ``models/``, schemas in ``options/``,
its :class:`methods.base.Method` here, its trainer in ``training/`` if it trains) + one
:class:`Entry` in :data:`METHODS` + its tests. See docs/layout.md.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from options.config import ConfigError


@dataclass(frozen=True)
class Entry:
    """One method, each part ``"module:Class"``, imported on use. ``settings``: its test-time schema
    (``test.py``'s trailing ``key=value``, a report entry's ``settings``); ``training``: its training
    config schema (a :class:`options.common.RunConfig` with ``validate()`` and ``RESUME_FROZEN``),
    empty when it does not train, as is ``trainer``."""

    inference: str
    settings: str
    training: str = ""
    trainer: str = ""
    folders: bool = True  # test.py runs it over folders (Gatys, an optimisation per image, runs in stylize.py)


METHODS: dict[str, Entry] = {
    "cyclegan": Entry("methods.cyclegan:CycleGANMethod", "options.cyclegan:CycleGANTestSettings",
                      "options.cyclegan:CycleGANConfig", "training.cyclegan:CycleGANTrainer"),
    "gatys": Entry("methods.gatys:GatysMethod", "options.gatys:GatysConfig", folders=False),
    "johnson": Entry("methods.johnson:JohnsonMethod", "options.johnson:JohnsonTestSettings",
                     "options.johnson:JohnsonConfig", "training.johnson:JohnsonTrainer"),
    "wct": Entry("methods.wct:WCTMethod", "options.wct:WCTSettings", "options.wct:WCTConfig",
                 "training.wct:WCTTrainer"),
    "adain": Entry("methods.wct:AdaINMethod", "options.wct:AdaINSettings"),  # on a wct run's relu4_1 decoder
    "cut": Entry("methods.cut:CUTMethod", "options.cut:CUTTestSettings", "options.cut:CUTConfig",
                 "training.cut:CUTTrainer"),
    "onnx": Entry("methods.onnx:ONNXMethod", "options.onnx:ONNXSettings"),  # export.py's graphs, onnxruntime
}

TRAINABLE = tuple(name for name, e in METHODS.items() if e.training)


def _resolve(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def training_schema(method: str) -> type:
    """The config schema of a trainable ``method``; :class:`ConfigError` for any other name."""
    entry = METHODS.get(method)
    if entry is None or not entry.training:
        raise ConfigError(f"method: {method!r} is not a trainable method; valid: {', '.join(TRAINABLE)}")
    return _resolve(entry.training)


def trainer_class(method: str) -> Any:
    training_schema(method)
    return _resolve(METHODS[method].trainer)


def _entry(method: str) -> Entry:
    if method not in METHODS:
        raise ConfigError(f"method: {method!r} is not a method; valid: {', '.join(METHODS)}")
    return METHODS[method]


def inference_class(method: str) -> Any:
    return _resolve(_entry(method).inference)


def settings_schema(method: str) -> type:
    """The test-time settings schema of ``method`` (what its ``key=value`` settings are checked against)."""
    return _resolve(_entry(method).settings)
