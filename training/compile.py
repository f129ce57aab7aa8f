"""``torch.compile`` with a guarded first call: a platform that cannot compile runs eager.

torch.compile is lazy: a missing C compiler or an unsupported op only shows at the first call,
so that call is guarded; later calls are not (a real error must surface). One warning per
trainer, however many networks fall back.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn


class CompileFallback:
    """Shared by the wrappers of one trainer: warn once, not once per network."""

    def __init__(self) -> None:
        self.warned = False

    def warn(self, error: BaseException, what: str = "torch.compile failed here") -> None:
        if not self.warned:
            self.warned = True
            first = (str(error).strip().splitlines() or [""])[0][:300]
            warnings.warn(f"train.compile is on but {what} ({type(error).__name__}: {first}); running eager",
                          stacklevel=3)


class CompiledOrEager(nn.Module):
    """``compiled(net)`` that falls back to eager for good if its first call fails.

    The compiled callable is kept outside the module tree, so parameters are registered once
    (under ``net.``) and DDP sees each parameter once; checkpoints are written from the bare
    networks, so keys never get an ``_orig_mod.`` prefix.
    """

    def __init__(self, net: nn.Module, compiled: Any, fallback: CompileFallback) -> None:
        super().__init__()
        self.net = net
        self._compiled = [compiled]  # a list: not an attribute nn.Module would register
        self._checked = False
        self._fallback = fallback

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        compiled = self._compiled[0]
        if compiled is None:
            return self.net(*args, **kwargs)
        if self._checked:
            return compiled(*args, **kwargs)
        try:
            out = compiled(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - any compiler failure: run eager instead
            self._compiled[0] = None
            self._fallback.warn(e)
            return self.net(*args, **kwargs)
        self._checked = True
        return out


def maybe_compile(nets: list[nn.Module], mode: str, fallback: CompileFallback) -> list[nn.Module]:
    """``nets`` compiled with ``mode`` (default | reduce-overhead | max-autotune), or unchanged for off."""
    if mode == "off":
        return list(nets)
    try:
        compiled = [torch.compile(net, mode=mode) for net in nets]
    except Exception as e:  # noqa: BLE001 - platform without a working compiler
        fallback.warn(e, "torch.compile is unavailable here")
        return list(nets)
    return [CompiledOrEager(net, c, fallback) for net, c in zip(nets, compiled, strict=True)]
