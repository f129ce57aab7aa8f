"""How the benchmarks measure: timed calls, peak memory, FLOPs, the device's peak and name.

**Estimators.** Each timed call is followed by a device synchronisation, so it measures the
work, not the launch. On a dedicated GPU the *median* call is the estimate (robust to a one-off
stall). On a shared CPU other processes only ever add time, so the *fastest* call is the
estimate that stays closest to what the code costs (``best_of=True``); several options are
then timed in interleaved rounds (:meth:`Timer.interleaved`), so load that comes and goes hits
them alike.

**Model-FLOP utilisation.** FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode`
on one eager call (it counts a transposed convolution over its *input* pixels: the multiplies
really done). Achieved FLOP/s is divided by the device's *dense bf16* tensor-core peak for every
row, fp32 rows included, so the fractions compare with each other.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

# Dense (no sparsity) bf16 tensor-core peak in TFLOP/s, by a substring of the CUDA device name;
# the first match wins, so the specific names come before the general ones.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("GH200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM5
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
    ("RTX 4090", 165.0),
)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Measurement:
    """Seconds per call (the estimate) and the samples it came from."""

    seconds: float
    samples: list[float] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.samples)


class Timer:
    """Times callables on ``device``: ``warmup`` untimed calls, then up to ``iters`` timed ones,
    stopping early (after at least one) once ``max_seconds`` are spent. The estimate is the
    fastest call with ``best_of`` (shared CPUs), else the median (dedicated GPUs)."""

    def __init__(self, device: torch.device, best_of: bool, warmup: int = 1, iters: int = 5,
                 max_seconds: float = 20.0) -> None:
        self.device, self.best_of = device, best_of
        self.warmup, self.iters, self.max_seconds = warmup, iters, max_seconds

    @property
    def estimator(self) -> str:
        return "fastest call" if self.best_of else "median call"

    def call(self, fn: Callable[[], Any]) -> float:
        """Seconds of one call of ``fn``, the device synchronised before and after."""
        sync(self.device)
        start = time.perf_counter()
        fn()
        sync(self.device)
        return time.perf_counter() - start

    def samples(self, fn: Callable[[], Any], iters: int | None = None, max_seconds: float | None = None) -> list[float]:
        """Timed calls (no warm-up): at least one, at most ``iters``, within ``max_seconds``."""
        iters = self.iters if iters is None else iters
        budget = self.max_seconds if max_seconds is None else max_seconds
        out: list[float] = []
        start = time.perf_counter()
        while len(out) < max(1, iters):
            out.append(self.call(fn))
            if time.perf_counter() - start > budget:
                break
        return out

    def estimate(self, samples: list[float]) -> float:
        return min(samples) if self.best_of else statistics.median(samples)

    def timed(self, fn: Callable[[], Any]) -> Measurement:
        """Time an already warmed-up ``fn``."""
        samples = self.samples(fn)
        return Measurement(self.estimate(samples), samples)

    def measure(self, fn: Callable[[], Any]) -> Measurement:
        """Warm up, then time ``fn``."""
        for _ in range(self.warmup):
            self.call(fn)
        return self.timed(fn)

    def interleaved(self, fns: dict[str, Callable[[], Any]], rounds: int,
                    log: Callable[[str], None] | None = None) -> dict[str, Measurement]:
        """Time several already warmed-up callables in ``rounds`` rounds of ``iters / rounds`` calls
        each, every callable once per round, so varying load from other processes hits them alike."""
        per_round = max(1, self.iters // max(1, rounds))
        budget = self.max_seconds / max(1, rounds)
        samples: dict[str, list[float]] = {name: [] for name in fns}
        for r in range(rounds):
            for name, fn in fns.items():
                samples[name] += self.samples(fn, per_round, budget)
            if log is not None:
                log(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {samples[n][-1] * 1000:.0f} ms" for n in fns))
        return {name: Measurement(self.estimate(s), s) for name, s in samples.items()}


# ---------------------------------------------------------------------------------------------
# memory and FLOPs


def reset_peak_memory(device: torch.device) -> None:
    """Free cached blocks and start a new peak (CUDA); collect garbage everywhere."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    """Peak allocated device memory since the last reset, GiB (None on the CPU: not tracked)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (forward and backward), as FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def dense_bf16_peak_tflops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in TFLOP/s, or None (CPUs, GPUs not in the table)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


# ---------------------------------------------------------------------------------------------
# the machine


def cpu_model() -> tuple[str, set[str]]:
    """(model name, feature flags) of the first CPU in /proc/cpuinfo; the platform's name elsewhere."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return platform.processor() or platform.machine(), set()
    name, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not name:
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return name or platform.machine(), flags


def describe_device(device: torch.device) -> str:
    """E.g. ``NVIDIA H100 80GB HBM3`` or ``2-core AMD EPYC (AVX-512 bf16)``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name, flags = cpu_model()
    extra = "AMX bf16" if "amx_bf16" in flags else "AVX-512 bf16" if "avx512_bf16" in flags else ""
    return f"{os.cpu_count()}-core {name}" + (f" ({extra})" if extra else "")


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _busy_cpu_seconds() -> float | None:
    """CPU seconds every process of the machine has used since boot (/proc/stat), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children (DataLoader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class OtherLoad:
    """How many cores *other* processes kept busy while the benchmark ran, on average: the
    machine's busy CPU time minus this process's, over the wall time. Near 0 on an idle
    machine; on a shared one it says how much the numbers were disturbed."""

    def __init__(self) -> None:
        self.start_busy, self.start_own, self.start = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()

    def cores(self) -> float | None:
        busy = _busy_cpu_seconds()
        if busy is None or self.start_busy is None:
            return None
        wall = time.perf_counter() - self.start
        other = (busy - self.start_busy) - (_own_cpu_seconds() - self.start_own)
        return max(0.0, other / wall) if wall > 0 else None
