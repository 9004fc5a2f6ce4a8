"""Learning-rate schedules as a pure function of the optimizer step (so resume needs only the step)."""
from __future__ import annotations

import math


def lr_factor(step: int, total_steps: int, schedule: str, warmup_steps: int = 0, min_lr_ratio: float = 0.1) -> float:
    """Multiplier on the peak LR for optimizer step `step` (0-based) of `total_steps`.

    - constant: 1 after warm-up.
    - cosine: linear warm-up, then min + (1-min)·½(1+cos(π·t/T)) over the remaining steps
      (Loshchilov & Hutter 2017, SGDR eq. 5, one cycle).
    - minimind: 0.1 + 0.45·(1+cos(π·t/T)), MiniMind v2 `get_lr` (trainer_utils.py @83e52f6; starts at lr, ends
      at 0.1·lr). MiniMind applies it per micro-step; here t counts optimizer steps.
    Here t counts the steps after warm-up and T = (remaining steps - 1), so the last step sits on the floor.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    t = step - warmup_steps
    # the last step (T-1) gets progress 1, so the run ends exactly on the documented floor
    span = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, t / span)
    if schedule == "minimind":
        return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))
    if schedule == "cosine":
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown LR schedule {schedule!r} (cosine, minimind, constant)")
