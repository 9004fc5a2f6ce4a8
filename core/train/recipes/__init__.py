"""One file per training method; each defines `RECIPE` (a core.train.recipe.Recipe subclass)."""
