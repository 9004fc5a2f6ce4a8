"""Built-in demo datasets (first version: signature only)."""
from __future__ import annotations

from pathlib import Path


def generate_demo_data(out_dir, seed: int = 0) -> dict[str, Path]:
    raise NotImplementedError
