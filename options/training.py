"""Which config schema a training run uses: the ``method`` key picks it.

``train.py`` trains every method (CycleGAN, Johnson fast style transfer, WCT/AdaIN decoders);
a YAML file (or a checkpoint's stored config) says which with ``method: johnson``. A config
without the key is CycleGAN's (every config and checkpoint written before the key existed).
Adding a trainable method = one line in :data:`SCHEMAS` (and one in ``training/__init__.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from options.common import RunConfig
from options.config import ConfigError, apply_override, build, parse_override, read_yaml

# method -> (module, schema class, validator, keys a resumed run may not change)
SCHEMAS: dict[str, tuple[str, str, str, str]] = {
    "cyclegan": ("options.cyclegan", "CycleGANConfig", "validate_cyclegan", "RESUME_FROZEN"),
    "johnson": ("options.johnson", "JohnsonConfig", "validate_johnson", "RESUME_FROZEN"),
    "wct": ("options.wct", "DecoderConfig", "validate_decoders", "RESUME_FROZEN"),
}


@dataclass(frozen=True)
class Schema:
    method: str
    cls: type
    validate: Callable[[Any], None]
    frozen: tuple[str, ...]  # key prefixes a resumed run may not change


def schema(method: str) -> Schema:
    if method not in SCHEMAS:
        raise ConfigError(f"method: {method!r} is not a trainable method; valid: {', '.join(SCHEMAS)}")
    module, cls, validator, frozen = SCHEMAS[method]
    mod = importlib.import_module(module)
    return Schema(method, getattr(mod, cls), getattr(mod, validator), tuple(getattr(mod, frozen)))


def _method_of(data: dict[str, Any], overrides: Iterable[str]) -> str:
    method = data.get("method", "cyclegan")
    for override in overrides:
        key, value = parse_override(override)
        if key == "method":
            method = value
    if not isinstance(method, str):
        raise ConfigError(f"method: expected a name, got {method!r}; valid: {', '.join(SCHEMAS)}")
    return method


def load_training_config(path: str | Path | None = None, overrides: Iterable[str] = (),
                         base: dict[str, Any] | None = None) -> RunConfig:
    """A YAML file (or ``base``, e.g. a checkpoint's stored config, or the defaults) + overrides
    -> the validated config of the method it names."""
    overrides = list(overrides)
    data = read_yaml(path) if path is not None else dict(base or {})
    s = schema(_method_of(data, overrides))
    for override in overrides:
        apply_override(data, override, s.cls)
    cfg = build(s.cls, data)
    s.validate(cfg)
    return cfg


def refused_resume_changes(method: str, changed: Iterable[str]) -> list[str]:
    """The keys among ``changed`` that a resumed run of ``method`` may not change."""
    frozen = schema(method).frozen
    return [k for k in changed if any(k == f or (f.endswith(".") and k.startswith(f)) for f in frozen)]
