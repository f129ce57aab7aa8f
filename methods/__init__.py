""":func:`load_method`, the one way commands and the report build a method.

Adding a method = a module here implementing :class:`methods.base.Method` + one line in
:data:`methods.registry.METHODS` + its settings schema in ``options/``; the report and
``test.py`` need no edit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from methods.registry import METHODS

if TYPE_CHECKING:  # options.methods reads the registry: importing it here at load time would be circular
    from options.methods import MethodOptions


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
    from methods.base import MethodError
    from options.methods import validate_method_options
    from utils.checkpoint import open_weights
    from utils.device import resolve_device

    validate_method_options(opts)
    dev = resolve_device(device)
    name, file = opts.method, None
    needs = name == "auto" or method_class(name).needs_checkpoint
    if needs and not opts.checkpoint:
        raise MethodError(f"{name} needs --checkpoint (a run folder, a weights file or a downloaded model's name)")
    if needs:
        file = open_weights(opts.checkpoint, opts.direction)
        if name == "auto":
            name = file.method
    cls = method_class(name)
    return cls.build(opts, file, dev)
