"""Which device a run uses: `device: auto` resolved on this machine, the one place that decides it (the engine,
the run plan, calibration and pre-flight all ask here)."""
from __future__ import annotations

import torch


def device_type(pref: str) -> str:
    """The device type `device: pref` resolves to here ("cuda", "mps" or "cpu"), without touching the device.
    Raises ValueError (for people) when the asked-for device is not there."""
    if pref == "auto":
        return "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    if pref == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for but this torch build sees no CUDA GPU; use device=auto or cpu")
    if pref == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device: mps was asked for but is not available here; use device=auto or cpu")
    return pref


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """The torch device of rank `local_rank` for `device: pref`; on CUDA it becomes this process's current GPU."""
    kind = device_type(pref)
    if kind == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(kind)
