"""The training engine and its method recipes.

`RECIPES` maps a method name to the module that defines it (`RECIPE = <Recipe subclass>`); modules are imported
only when used. A new method registers itself with one line here or at runtime: `RECIPES["mine"] = "pkg.mod"`.
Names not listed are looked up as `core.train.recipes.<name>`.
"""
from __future__ import annotations

import importlib
import importlib.util

RECIPES: dict[str, str] = {
    "pretrain": "core.train.recipes.pretrain",
    "sft": "core.train.recipes.sft",
    "lora": "core.train.recipes.lora",
    "dpo": "core.train.recipes.dpo",
    "rm": "core.train.recipes.rm",
    "ppo": "core.train.recipes.ppo",
    "grpo": "core.train.recipes.grpo",
    "spo": "core.train.recipes.spo",
}


def get_recipe(method: str):
    """The Recipe class for `method`; a clear error when the method has no recipe in this build."""
    module_name = RECIPES.get(method, f"core.train.recipes.{method}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ValueError(f"method: {method!r} is not available in this build (no module {module_name}); "
                             f"available: {', '.join(available_methods())}") from None
        raise
    return module.RECIPE


def available_methods() -> list[str]:
    out = []
    for name, mod in RECIPES.items():
        if importlib.util.find_spec(mod) is not None:
            out.append(name)
    return out


def run_training(cfg, resume: bool = False) -> int:
    from core.train.engine import run_training as _run

    return _run(cfg, resume=resume)
