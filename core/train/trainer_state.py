"""The trainer state of a checkpoint (`optimizer.pt`) beyond the optimizer itself: RNG streams and the rule that
everything in it is plain data, so a resume loads it with the weights-only unpickler."""
from __future__ import annotations

import contextlib
import random
from pathlib import Path

import numpy as np
import torch


def rng_state(device: torch.device) -> dict:
    """This process's RNG streams: Python, numpy, the CPU generator and the generator of its own GPU only (a
    resume may see fewer GPUs; each rank restores just the one it trains on)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_rng_state(s: dict, device: torch.device) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if device.type == "cuda" and isinstance(s.get("cuda"), torch.Tensor):
        torch.cuda.set_rng_state(s["cuda"], device)


@contextlib.contextmanager
def rng_kept(device: torch.device):
    """A block that leaves this process's RNG streams as it found them, however it ends (an evaluation, stopped
    or not): the training after it draws what it would have drawn without it, and an evaluation redone on resume
    starts from the same streams as the one it replaces."""
    saved = rng_state(device)
    try:
        yield
    finally:
        set_rng_state(saved, device)


def load_trainer_state(path: Path) -> dict:
    """optimizer.pt without unpickling code (weights_only): tensors, plain containers and the numpy RNG state's
    array are all it may hold, so a doctored checkpoint cannot run anything when a run is resumed."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    allowed = [np.ndarray, np.dtype, _reconstruct, type(np.dtype("uint32"))]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def check_plain(obj, where: str = "extra_state") -> None:
    """Recipe state must be plain data (tensors, numbers, strings, lists, tuples, dicts with plain keys): the
    weights-only loader refuses anything else on resume, so catch it at the first save, naming the key."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}; use str or int keys")
            check_plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
    elif not isinstance(obj, _PLAIN):
        raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__name__}; a recipe's extra_state must "
                        "be plain data (tensors, numbers, strings, lists, dicts) so resume can load it weights-only")
