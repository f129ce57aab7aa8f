"""Training: one loop (:mod:`training.trainer`) and one trainer per method.

``build_trainer(cfg)`` picks the trainer from the config's ``method`` key; adding a
trainable method = one module here + its config schema (``options/training.py``).
"""

from __future__ import annotations

import importlib
from typing import Any

# method -> "module:class"
TRAINERS: dict[str, str] = {
    "cyclegan": "training.cyclegan:CycleGANTrainer",
    "johnson": "training.johnson:JohnsonTrainer",
    "wct": "training.decoders:DecoderTrainer",
}


def trainer_class(method: str) -> Any:
    module, cls = TRAINERS[method].split(":")
    return getattr(importlib.import_module(module), cls)


def build_trainer(cfg: Any, overwrite: bool = False) -> Any:
    """The trainer for ``cfg.method``, built (data, networks, optimisers; resumed if ``cfg.resume``)."""
    return trainer_class(cfg.method)(cfg, overwrite=overwrite)
