"""One line about the training device for the status bar: GPU name and memory, or CPU and RAM.

The studio's own process never creates a CUDA context (one costs hundreds of MB of GPU memory for as long as the
window is open, memory the run it launches then lacks): NVIDIA GPUs are read through NVML (`nvidia-ml-py`, when
installed) or `nvidia-smi --query-gpu` in a short child process, never through torch.cuda. Only on macOS is torch
asked (MPS creates no CUDA context). No psutil: RAM comes from /proc/meminfo. Anything missing or broken degrades
to the CPU line instead of failing.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
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


NVIDIA_SMI_QUERY = ["--query-gpu=index,uuid,name,memory.total,memory.free", "--format=csv,noheader,nounits"]


def _visible(index: str, uuid: str, visible: list[str] | None) -> bool:
    """Whether CUDA_VISIBLE_DEVICES (None: unset) lets a run see this GPU (by index, or by a UUID prefix)."""
    return visible is None or any(v == index or (v.startswith("GPU-") and uuid.startswith(v)) for v in visible)


def _visible_devices() -> list[str] | None:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [] if value.strip() in ("", "-1") else [v.strip() for v in value.split(",") if v.strip()]


def _gpus_from(rows: list[tuple[str, str, str, float, float]]) -> DeviceInfo | None:
    """(index, uuid, name, total MiB, free MiB) per GPU -> the first visible GPU, and how many are visible."""
    visible = _visible_devices()
    seen = [row for row in rows if _visible(row[0], row[1], visible)]
    if not seen:
        return None
    _, _, name, total, free = seen[0]
    return DeviceInfo("cuda", name, total * 2**20 / 1e9, free * 2**20 / 1e9, len(seen))


def nvml_gpus() -> DeviceInfo | None:
    """The GPUs as NVML (the driver's library, `nvidia-ml-py`) lists them; None without it or a driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            rows = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                name, uuid = pynvml.nvmlDeviceGetName(handle), pynvml.nvmlDeviceGetUUID(handle)
                rows.append((str(i), uuid.decode() if isinstance(uuid, bytes) else uuid,
                             name.decode() if isinstance(name, bytes) else name,
                             memory.total / 2**20, memory.free / 2**20))
            return _gpus_from(rows)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver, or a broken one: the CPU line
        return None


def smi_gpus(timeout: float = 10.0) -> DeviceInfo | None:
    """The GPUs as `nvidia-smi --query-gpu` lists them, in a child process; None without it or on an error."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=timeout, check=True)
        rows = []
        for line in out.stdout.splitlines():
            index, uuid, name, total, free = (part.strip() for part in line.split(","))
            rows.append((index, uuid, name, float(total), float(free)))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return _gpus_from(rows)


def probe_device() -> DeviceInfo:
    """The device a run would train on: the first visible NVIDIA GPU (NVML, else nvidia-smi), on macOS Apple's
    GPU when torch sees it, else the CPU. Never initialises CUDA in this process."""
    gpu = nvml_gpus() or smi_gpus()
    if gpu is not None:
        return gpu
    if sys.platform == "darwin":
        try:
            import torch

            if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
                total, free = read_meminfo()
                return DeviceInfo("mps", "Apple GPU (MPS)", total, free)
        except Exception:  # noqa: BLE001 - a broken install must not keep the studio from starting
            pass
    return cpu_info()
