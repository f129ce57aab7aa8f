"""Device choice and mixed-precision contexts shared by every command."""

from __future__ import annotations

import contextlib

import torch

from utils.errors import UserError


class DeviceError(UserError, ValueError):
    """A device or precision this machine cannot provide; the message says what to use instead."""


def resolve_device(device: str | torch.device = "auto", cuda_index: int = 0) -> torch.device:
    """``"auto"`` -> ``cuda:<cuda_index>`` when CUDA is present, else CPU; a named CUDA device must exist.

    ``cuda_index`` is the process's local rank under torchrun, so each process takes its own GPU.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda", cuda_index) if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise DeviceError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N, mps") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} requested but CUDA is not available here; use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                              f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"device {device!r} requested but Apple's MPS is not available here; use cpu or auto")
    elif dev.type != "cpu":
        raise DeviceError(f"device {device!r} is not supported; valid: auto, cpu, cuda, cuda:N, mps")
    return dev


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast works on CPU and CUDA; fp16 only on CUDA (CPU fp16 convs are slow or missing)."""
    if amp == "off":
        return contextlib.nullcontext()
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if amp == "fp16":
        if device.type != "cuda":
            raise DeviceError(f"amp fp16 needs a CUDA device, this run uses {device}; use amp bf16 or off")
        return torch.autocast("cuda", dtype=torch.float16)
    raise DeviceError(f"unknown amp mode {amp!r}; valid: off, bf16, fp16")
