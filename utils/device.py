"""Device choice and mixed-precision contexts shared by every command.

``amp`` is ``off``, ``bf16``, ``fp16`` or ``auto``. ``auto`` (:func:`resolve_amp`) picks bf16
where the hardware computes it natively and fp32 elsewhere:

* CUDA: bf16 when the GPU has bf16 arithmetic (``torch.cuda.is_bf16_supported`` without
  emulation: Ampere and later), else fp32;
* CPU: bf16 when the CPU has AVX-512 bf16 or AMX (the ``avx512_bf16`` / ``amx_bf16`` flags of
  ``/proc/cpuinfo``), PyTorch's kernels run at AVX-512 (``torch.backends.cpu.get_cpu_capability``)
  and ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``), if set, does not cap oneDNN below its bf16
  kernels; else fp32. Without them bf16 is emulated: a quickstart-sized CycleGAN forward + backward
  took 6799 ms in bf16 against 1613 ms in fp32 (``ONEDNN_MAX_CPU_ISA=AVX2``, issue 22), 4.2x slower;
* anything else (MPS): fp32.

An explicit ``bf16`` where it is emulated still runs, with one warning line giving the reason.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from dataclasses import dataclass

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


AMP_MODES = ("auto", "off", "bf16", "fp16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic
# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) that stop below its native bf16 kernels (avx512_core_bf16).
ONEDNN_ISAS_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                                      "AVX512_CORE_VNNI", "AVX512_MIC", "AVX512_MIC_4OPS"})
EMULATED_BF16 = ("bf16 is emulated there: a quickstart-sized CycleGAN step measured 4.2x slower than fp32 "
                 "(6799 vs 1613 ms)")


@functools.lru_cache(maxsize=1)
def _proc_cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):  # x86, ARM
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``); empty where they cannot be read (not Linux)."""
    return _proc_cpu_flags()


def cpu_bf16_native() -> tuple[bool, str]:
    """(True, why) when this CPU computes bf16 natively for PyTorch; (False, why not) otherwise."""
    flags = cpu_flags()
    native = [f for f in CPU_BF16_FLAGS if f in flags]
    if not flags:
        return False, "the CPU's flags cannot be read (no /proc/cpuinfo), so native bf16 is not known"
    if not native:
        return False, "the CPU has no avx512_bf16 or amx_bf16 flag"
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        isa = os.environ.get(var, "").strip().upper()
        if isa in ONEDNN_ISAS_WITHOUT_BF16:
            return False, f"{var}={isa} caps oneDNN below its bf16 kernels (the CPU has {', '.join(native)})"
    capability = torch.backends.cpu.get_cpu_capability()
    if not capability.upper().startswith(("AVX512", "AMX")):
        return False, f"PyTorch's CPU kernels run at {capability} (ATEN_CPU_CAPABILITY?), below AVX-512"
    return True, f"the CPU has {', '.join(native)}"


def cuda_bf16_native(device: torch.device) -> tuple[bool, str]:
    """(True, why) when the CUDA device has bf16 arithmetic (compute capability 8.0 and later)."""
    major, minor = torch.cuda.get_device_capability(device)
    name = torch.cuda.get_device_name(device)
    if major >= 8:
        return True, f"{name} (compute capability {major}.{minor}) has bf16"
    return False, f"{name} (compute capability {major}.{minor}) has no bf16 arithmetic (needs 8.0, Ampere)"


def bf16_native(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` computes bf16 natively (fast), and why."""
    if device.type == "cpu":
        return cpu_bf16_native()
    if device.type == "cuda":
        return cuda_bf16_native(device)
    return False, f"{device.type} is not checked for bf16"


@dataclass(frozen=True)
class AmpChoice:
    """What ``amp`` a run uses: ``mode`` (off, bf16, fp16) resolved from ``requested``, and why."""

    requested: str
    mode: str
    reason: str = ""
    warning: str = ""  # non-empty: an explicit bf16 where it is emulated

    def describe(self) -> str:
        """``amp bf16 (auto: the CPU has avx512_bf16)``, ``amp off``: the start line's part."""
        if self.requested == "auto":
            return f"amp {self.mode} (auto: {self.reason})"
        return f"amp {self.mode}"


def resolve_amp(amp: str, device: torch.device) -> AmpChoice:
    """``auto`` -> bf16 where ``device`` has native bf16, else off (fp32); other modes as given,
    with a warning for an explicit bf16 where it is emulated. Raises :class:`DeviceError` for an
    unknown mode (fp16 off CUDA is refused by :func:`autocast_context`)."""
    if amp not in AMP_MODES:
        raise DeviceError(f"unknown amp mode {amp!r}; valid: {', '.join(AMP_MODES)}")
    if amp not in ("auto", "bf16"):
        return AmpChoice(amp, amp)
    native, why = bf16_native(device)
    if amp == "auto":
        return AmpChoice(amp, "bf16" if native else "off", why + ("" if native else ": fp32"))
    if native:
        return AmpChoice(amp, amp, why)
    return AmpChoice(amp, amp, why, f"WARNING: amp bf16 on {device}: {why}; {EMULATED_BF16}; use amp auto or off "
                                    f"for fp32")


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """Print ``message`` to stderr the first time this process sees it (one line per cause)."""
    if message and message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr, flush=True)


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast works on CPU and CUDA; fp16 only on CUDA (CPU fp16 convs are slow or missing);
    ``auto`` is resolved by :func:`resolve_amp` (silently: callers print the choice)."""
    if amp == "auto":
        amp = resolve_amp(amp, device).mode
    if amp == "off":
        return contextlib.nullcontext()
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if amp == "fp16":
        if device.type != "cuda":
            raise DeviceError(f"amp fp16 needs a CUDA device, this run uses {device}; use amp bf16 or off")
        return torch.autocast("cuda", dtype=torch.float16)
    raise DeviceError(f"unknown amp mode {amp!r}; valid: {', '.join(AMP_MODES)}")
