"""Process and device metrics logged with the training metrics: ``system/*`` names at the log interval.

``system/rss_gb`` (resident memory now), ``system/rss_peak_gb`` (its high-water mark), ``system/cpu_percent``
(this process's CPU time over wall time since the previous sample; 200 = two cores busy) and, on CUDA,
``system/gpu_mem_gb`` / ``system/gpu_peak_gb`` (torch's allocated and peak-allocated bytes on the run's device)
and ``system/gpu_util`` (NVML's utilisation in %, only when ``nvidia-ml-py`` is installed). Standard library
only (``/proc`` on Linux, ``resource`` elsewhere): nothing here may fail a run, so every probe that cannot
answer is left out of the sample instead.
"""
from __future__ import annotations

import os
import sys
import time

GB = 1e9


def rss_bytes() -> int | None:
    """Resident set size of this process now (Linux: /proc/self/statm), else None."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def peak_rss_bytes() -> int | None:
    """The process's resident high-water mark: Linux's VmHWM (/proc/self/status), else getrusage (KiB on Linux,
    bytes on macOS), else None. Not getrusage first: on Linux its ru_maxrss survives exec, so a trainer started by
    a large process (the studio, a test runner) reported its parent's size at fork time as its own peak (measured: a
    child of a 1.5 GB process read 1.51 GB from getrusage and 0.012 GB from VmHWM)."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def nvml_handle(pynvml, cuda_index: int):
    """NVML's handle of CUDA device `cuda_index`, matched by PCI address (by UUID where torch does not give the
    address); None when no NVML device matches. NVML numbers GPUs in PCI order over the whole machine, CUDA
    fastest-first and only those in CUDA_VISIBLE_DEVICES: the same index can name another GPU."""
    import torch

    props = torch.cuda.get_device_properties(cuda_index)
    pci = tuple(getattr(props, name, None) for name in ("pci_domain_id", "pci_bus_id", "pci_device_id"))
    uuid = str(getattr(props, "uuid", "") or "").removeprefix("GPU-")
    for i in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(i)
        if None not in pci:
            info = pynvml.nvmlDeviceGetPciInfo(handle)
            if (info.domain, info.bus, info.device) == pci:
                return handle
        elif uuid:
            found = pynvml.nvmlDeviceGetUUID(handle)
            found = found.decode() if isinstance(found, bytes) else str(found)
            if found.removeprefix("GPU-") == uuid:
                return handle
    return None


class _Nvml:
    """NVML utilisation of one GPU through the optional ``nvidia-ml-py`` (import name ``pynvml``)."""

    def __init__(self, index: int) -> None:
        self.handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle, self.nvml = nvml_handle(pynvml, index), pynvml
        except Exception:  # not installed, no driver, or a device NVML does not see (MIG): no gpu_util
            self.handle = None

    def utilisation(self) -> float | None:
        if self.handle is None:
            return None
        try:
            return float(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
        except Exception:
            return None


class SystemMetrics:
    """One ``sample()`` per log interval; CPU use is measured between consecutive samples."""

    def __init__(self, device=None) -> None:
        self.device = device
        self._cpu, self._wall = time.process_time(), time.perf_counter()
        cuda = device is not None and getattr(device, "type", "") == "cuda"
        self._nvml = _Nvml(device.index or 0) if cuda else None

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        rss, peak = rss_bytes(), peak_rss_bytes()
        if rss is not None:
            out["system/rss_gb"] = rss / GB
        if peak is not None:  # the kernel updates the high-water mark lazily: never show it below the current
            out["system/rss_peak_gb"] = max(peak, rss or 0) / GB
        cpu, wall = time.process_time(), time.perf_counter()
        if wall - self._wall > 0.05:  # a shorter interval (the first sample) says nothing
            out["system/cpu_percent"] = 100.0 * (cpu - self._cpu) / (wall - self._wall)
        self._cpu, self._wall = cpu, wall
        if self._nvml is not None:
            import torch

            out["system/gpu_mem_gb"] = torch.cuda.memory_allocated(self.device) / GB
            out["system/gpu_peak_gb"] = torch.cuda.max_memory_allocated(self.device) / GB
            util = self._nvml.utilisation()
            if util is not None:
                out["system/gpu_util"] = util
        return out
