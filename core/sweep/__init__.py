"""Hyperparameter sweeps over training config fields (grid, random, Optuna's TPE with pruning): the spec
(spec.py), the sweep folder and its Optuna study (study.py), and the process that runs the trials as ordinary
runs (runner.py). `minimind sweep` is the command; docs/sweeps.md explains it.
"""
