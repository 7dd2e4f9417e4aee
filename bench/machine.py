"""Machine facts, the raw fp32 matmul rate used as the speed baseline, and a small timing helper.

Benchmarks on shared machines are noisy, so every speed is also reported as a ratio against
`matmul_gflops` measured in the same run, on the same device.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from latentdex.models.inference import cpu_bf16_instructions


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of repeated calls after warm-up; `median` is the figure to report."""

    median: float
    best: float
    samples: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "best_s": self.best, "samples_s": self.samples}


def no_sync() -> None:
    """The synchronisation hook for CPU work: nothing to wait for."""


def device_sync(device: torch.device) -> Callable[[], None]:
    """A function that waits until all queued work on `device` has finished (no-op on CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return no_sync


def time_call(
    fn: Callable[[], object],
    *,
    warmup: int = 2,
    repeat: int = 5,
    sync: Callable[[], None] = no_sync,
) -> Timing:
    """Call `fn` `warmup` times untimed, then `repeat` times timed; `sync` runs before each clock read."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - start)
    return Timing(median=statistics.median(samples), best=min(samples), samples=samples)


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    warmup: int = 2,
    repeat: int = 5,
    sync: Callable[[], None] = no_sync,
) -> dict[str, Timing]:
    """Like `time_call` for several variants, alternating them sample by sample (A B A B ...).

    Load from other processes then hits every variant alike, so their ratio is steadier than the
    ratio of two separately timed runs.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            samples[name].append(time.perf_counter() - start)
    return {name: Timing(median=statistics.median(s), best=min(s), samples=s) for name, s in samples.items()}


def matmul_gflops(
    device: torch.device | str = "cpu", size: int = 1024, repeat: int = 7, inner: int | None = None
) -> dict[str, Any]:
    """Best-of-`repeat` fp32 `torch.matmul` rate of two size x size matrices, in GFLOP/s (2 n^3 per product).

    `inner` products are timed per sample (default: enough for ~tens of milliseconds on a CPU); the best
    sample is the least disturbed by other processes, which is what a peak-rate baseline should be.
    """
    device = torch.device(device)
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device)
    b = torch.randn(size, size, generator=generator).to(device)
    out = torch.empty(size, size, device=device)
    inner = inner or (4 if device.type == "cpu" else 50)

    def products() -> None:
        for _ in range(inner):
            torch.matmul(a, b, out=out)

    timing = time_call(products, warmup=2, repeat=repeat, sync=device_sync(device))
    flops = 2.0 * size**3 * inner
    return {
        "device": str(device),
        "size": size,
        "dtype": "float32",
        "gflops_best": flops / timing.best / 1e9,
        "gflops_median": flops / timing.median / 1e9,
        "timing": timing.to_dict(),
    }


@dataclass(frozen=True)
class MachineFacts:
    """What a reader needs to compare two result files: hardware, software versions and load."""

    timestamp: str
    hostname: str
    cpu_model: str
    cpu_bf16: str | None  # native bfloat16 arithmetic: "amx", "avx512_bf16" or None
    cpu_vector: str  # the widest vector instructions torch dispatches to (e.g. "AVX512")
    cpu_count: int | None
    cpus_usable: int
    torch_threads: int
    torch_version: str
    python_version: str
    platform: str
    load_average: list[float]
    cuda_available: bool
    gpu_name: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine_facts() -> MachineFacts:
    """Collect the machine facts now (the load average tells how busy the cores were)."""
    cuda = torch.cuda.is_available()
    return MachineFacts(
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
        hostname=platform.node(),
        cpu_model=cpu_model(),
        cpu_bf16=cpu_bf16_instructions(),
        cpu_vector=torch.backends.cpu.get_cpu_capability(),
        cpu_count=os.cpu_count(),
        cpus_usable=len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else (os.cpu_count() or 1),
        torch_threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        platform=platform.platform(),
        load_average=[round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else [],
        cuda_available=cuda,
        gpu_name=torch.cuda.get_device_name(0) if cuda else None,
    )


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's "model name" from /proc/cpuinfo, falling back to `platform.processor()`."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
