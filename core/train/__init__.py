"""The training engine and its method recipes.

Which recipe runs a method is the method registry's fact (core/methods.py: `MethodSpec.recipe`, `get_recipe`):
each recipe module defines `RECIPE` (a `Recipe` subclass, or `on_policy(METHOD)`) and is imported only when its method runs.
"""
from __future__ import annotations



def get_recipe(method: str):
    """The registry's `get_recipe` (core/methods.py). Imported on call: the stand-in trainer and the studio read
    `core.train.events` and must not pull the registry (pydantic) in with it."""
    from core.methods import get_recipe as lookup

    return lookup(method)


def run_training(cfg, resume: bool = False) -> int:
    from core.train.engine import run_training as _run

    return _run(cfg, resume=resume)
