"""Device choice and mixed-precision contexts shared by training, translation and Gatys."""

from __future__ import annotations

import contextlib

import torch


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
        raise ValueError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use device cpu or auto")
    return dev


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast works on CPU and CUDA; fp16 only on CUDA (CPU fp16 convs are slow or missing)."""
    if amp == "off":
        return contextlib.nullcontext()
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError(f"amp fp16 needs a CUDA device, this run uses {device}; use amp bf16 or off")
        return torch.autocast("cuda", dtype=torch.float16)
    raise ValueError(f"unknown amp mode {amp!r}; valid: off, bf16, fp16")
