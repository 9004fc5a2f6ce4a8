"""The training engine and its method recipes.

Which recipe runs a method is the method registry's fact (core/methods.py, `MethodSpec.recipe`): each recipe
module defines `RECIPE = <Recipe subclass>` and is imported only when its method runs.
"""
from __future__ import annotations

import importlib


def get_recipe(method: str):
    """The Recipe class for `method` (a ValueError naming the known methods for an unknown one)."""
    from core.methods import get_method

    return importlib.import_module(get_method(method).recipe).RECIPE


def run_training(cfg, resume: bool = False) -> int:
    from core.train.engine import run_training as _run

    return _run(cfg, resume=resume)
