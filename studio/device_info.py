"""One line about the training device for the status bar: GPU name and memory, or CPU and RAM.

No psutil: RAM comes from /proc/meminfo. torch is imported only when asked (it takes ~1 s), and its absence
or a broken CUDA set-up degrades to the CPU line instead of failing.
"""
from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DeviceInfo:
    kind: str            # "cuda" | "mps" | "cpu"
    name: str            # "NVIDIA H100 80GB HBM3" | "CPU (x86_64, 2 cores)"
    memory_total_gb: float | None
    memory_free_gb: float | None
    count: int = 1       # number of GPUs (1 for CPU)

    def summary(self) -> str:
        mem = ""
        if self.memory_total_gb is not None:
            free = f"{self.memory_free_gb:.1f} / " if self.memory_free_gb is not None else ""
            mem = f" · {free}{self.memory_total_gb:.1f} GB free"
        count = f"{self.count}× " if self.count > 1 else ""
        return f"{count}{self.name}{mem}"


def read_meminfo(path: Path = Path("/proc/meminfo")) -> tuple[float | None, float | None]:
    """(total GB, available GB) from /proc/meminfo; (None, None) where the file is absent (macOS, Windows)."""
    try:
        text = path.read_text()
    except OSError:
        return None, None
    values: dict[str, float] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) / (1024 ** 2)  # kB -> GB
    return values.get("MemTotal"), values.get("MemAvailable")


def cpu_info() -> DeviceInfo:
    total, free = read_meminfo()
    name = f"CPU ({platform.machine() or 'unknown'}, {os.cpu_count() or 1} cores)"
    return DeviceInfo("cpu", name, total, free)


def gpu_possible() -> bool:
    """Whether asking torch can find a GPU at all: no NVIDIA driver on Linux means CPU, without importing torch
    (~1-2 s, and a second thread importing torch at the same time is asking for trouble)."""
    if sys.platform != "linux":
        return True  # macOS (MPS), Windows (CUDA): only torch knows
    return Path("/proc/driver/nvidia/version").exists()


def probe_device(use_torch: bool = True) -> DeviceInfo:
    """The device a run would train on: the first CUDA GPU if torch sees one, else the CPU."""
    if use_torch and gpu_possible():
        try:
            import torch

            if torch.cuda.is_available():
                free, total = torch.cuda.mem_get_info(0)
                return DeviceInfo("cuda", torch.cuda.get_device_name(0), total / 1e9, free / 1e9,
                                  torch.cuda.device_count())
            if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
                total, free = read_meminfo()
                return DeviceInfo("mps", "Apple GPU (MPS)", total, free)
        except Exception:  # a broken driver must not keep the studio from starting
            pass
    return cpu_info()
