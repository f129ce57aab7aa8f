"""Training: one loop (:mod:`training.trainer`) and one trainer per method, found through the
method table (:data:`methods.METHODS`)."""

from __future__ import annotations

from typing import Any

from methods import trainer_class


def build_trainer(cfg: Any, overwrite: bool = False) -> Any:
    """The trainer for ``cfg.method``, built (data, networks, optimisers; resumed if ``cfg.resume``)."""
    return trainer_class(cfg.method)(cfg, overwrite=overwrite)
