"""The recipe interface is the table in core/train/recipe.py, and the on-policy methods are short files composed
over one shared recipe (issue 25 §4)."""
from __future__ import annotations

import functools
import importlib
import inspect
from pathlib import Path

import pytest

import core.train.recipe as recipe_module
from core.methods import all_methods
from core.train.recipe import HOOKS, PROVIDED, Recipe
from core.train.recipes.onpolicy import OnPolicyMethod, OnPolicyRecipe

ON_POLICY = [spec for spec in all_methods() if spec.generates]


def _public_methods(cls) -> set[str]:
    return {name for name, value in vars(cls).items() if callable(value) and not name.startswith("_")}


def test_every_hook_in_the_table_is_a_method_of_recipe():
    for hook in HOOKS:
        assert callable(getattr(Recipe, hook.name, None)), hook.name


def test_every_public_method_of_recipe_is_in_the_table():
    assert _public_methods(Recipe) == {h.name for h in HOOKS} | set(PROVIDED)


def test_the_docstring_table_describes_every_hook_with_its_kind():
    rows = {line.split("(")[0].strip("| ").strip(): line for line in recipe_module.__doc__.splitlines()
            if line.startswith("| ") and "(" in line.split("|")[1]}
    for hook in HOOKS:
        assert hook.name in rows, f"{hook.name} has no row in core/train/recipe.py's docstring table"
        assert ("| required |" in rows[hook.name]) == hook.required, hook.name


def test_the_required_hooks_have_no_default():
    for hook in HOOKS:
        if hook.required:
            with pytest.raises(NotImplementedError):
                getattr(Recipe, hook.name)(*[object()] * len(inspect.signature(getattr(Recipe, hook.name)).parameters))


@pytest.mark.parametrize("spec", ON_POLICY, ids=lambda s: s.name)
def test_an_on_policy_method_is_one_short_file_over_the_shared_recipe(spec):
    """Two levels at most (Recipe → OnPolicyRecipe): the method's file defines an OnPolicyMethod and no recipe
    class of its own, and stays under 120 lines."""
    module = importlib.import_module(spec.recipe)
    assert isinstance(module.RECIPE, functools.partial) and module.RECIPE.func is OnPolicyRecipe
    assert isinstance(module.RECIPE.keywords["method"], OnPolicyMethod)
    assert OnPolicyRecipe.__bases__ == (Recipe,)
    own_recipes = [name for name, value in vars(module).items()
                   if inspect.isclass(value) and issubclass(value, Recipe) and value.__module__ == module.__name__]
    assert own_recipes == []
    lines = len(Path(module.__file__).read_text(encoding="utf-8").splitlines())
    assert lines < 120, f"{module.__file__}: {lines} lines"
