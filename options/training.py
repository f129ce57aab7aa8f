"""Which config schema a training run uses: the ``method`` key picks it from the method table
(:data:`methods.METHODS`).

``train.py`` trains every trainable method; a YAML file (or a checkpoint's stored config) says
which with ``method: johnson``. A config without the key is CycleGAN's (every config and
checkpoint written before the key existed).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from methods import TRAINABLE, training_schema
from options.common import RunConfig
from options.config import ConfigError, apply_override, build, parse_override, read_yaml


def _method_of(data: dict[str, Any], overrides: Iterable[str]) -> str:
    method = data.get("method", "cyclegan")
    for override in overrides:
        key, value = parse_override(override)
        if key == "method":
            method = value
    if not isinstance(method, str):
        raise ConfigError(f"method: expected a name, got {method!r}; valid: {', '.join(TRAINABLE)}")
    return method


def load_training_config(path: str | Path | None = None, overrides: Iterable[str] = (),
                         base: dict[str, Any] | None = None) -> RunConfig:
    """A YAML file (or ``base``, e.g. a checkpoint's stored config, or the defaults) + overrides
    -> the validated config of the method it names."""
    overrides = list(overrides)
    data = read_yaml(path) if path is not None else dict(base or {})
    schema = training_schema(_method_of(data, overrides))
    for override in overrides:
        apply_override(data, override, schema)
    cfg = build(schema, data)
    cfg.validate()
    return cfg


def refused_resume_changes(method: str, changed: Iterable[str]) -> list[str]:
    """The keys among ``changed`` that a resumed run of ``method`` may not change."""
    frozen = training_schema(method).RESUME_FROZEN
    return [k for k in changed if any(k == f or (f.endswith(".") and k.startswith(f)) for f in frozen)]
