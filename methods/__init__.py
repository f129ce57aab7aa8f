"""Registered methods and :func:`load_method`, the one way commands and the report build one.

Adding a method = a module here implementing :class:`methods.base.Method` + one line in
:data:`METHODS` + its settings schema in ``options/``; the report and ``test.py`` need no edit.
"""

from __future__ import annotations

import importlib
from typing import Any

from options.methods import MethodOptions, validate_method_options

# name -> "module:class" (imported on use)
METHODS: dict[str, str] = {
    "cyclegan": "methods.cyclegan:CycleGANMethod",
    "gatys": "methods.gatys:GatysMethod",
    "johnson": "methods.johnson:JohnsonMethod",
    "wct": "methods.wct:WCTMethod",
    "adain": "methods.wct:AdaINMethod",
}


def method_class(name: str) -> Any:
    from methods.base import MethodError

    if name not in METHODS:
        raise MethodError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def load_method(opts: MethodOptions, device: Any = "auto") -> Any:
    """Build the method ``opts`` describe on ``device`` (``auto``: CUDA when present).

    ``opts.method == "auto"`` reads the method off the checkpoint (our runs say which; foreign
    files are recognised by their keys).
    """
    from utils.checkpoint import open_weights
    from utils.device import resolve_device

    validate_method_options(opts)
    dev = resolve_device(device)
    name, file = opts.method, None
    if opts.checkpoint and name != "gatys":
        file = open_weights(opts.checkpoint, opts.direction)
        if name == "auto":
            name = file.method
    cls = method_class(name)
    return cls.build(opts, file, dev)
