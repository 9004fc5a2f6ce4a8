"""Compare runs: the config fields that differ, final metrics side by side, and the series to overlay.

Plain object over the context's store; the widget (studio/panes/runs/compare_view.py) renders ``compare(run_ids)`` and
draws ``series`` for the metric picked.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

SKIP_KEYS = ("run_dir",)  # differs for every run by construction


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """{"optim.lr": 3e-4, ...}: nested dicts become dotted keys; lists and scalars are leaves."""
    if not isinstance(config, dict):
        return {prefix: config}
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def config_diff(configs: list[dict]) -> list[tuple[str, list]]:
    """(dotted key, one value per config) for each field whose values are not all equal; a field one config
    lacks shows None there."""
    flat = [flatten(c) for c in configs]
    keys = sorted({k for f in flat for k in f if k not in SKIP_KEYS})
    rows = []
    for key in keys:
        values = [f.get(key) for f in flat]
        if any(json.dumps(v, sort_keys=True, default=str) != json.dumps(values[0], sort_keys=True, default=str)
               for v in values[1:]):
            rows.append((key, values))
    return rows


def _metric_order(name: str) -> tuple:
    return (name != "loss", name.startswith("system/"), "/" in name, name)


class ComparePresenter:
    def __init__(self, context) -> None:
        self.context = context

    @property
    def store(self):
        return self.context.store

    def runs(self) -> list[tuple[str, str]]:
        """(run_id, label) of every run, newest first."""
        return [(r.id, f"{r.name or r.id}  ·  {r.method}  ·  {r.status}") for r in self.store.list_runs()]

    def label(self, run_id: str) -> str:
        run = self.store.get_run(run_id)
        return (run.name or run.id) if run is not None else run_id

    def final_metrics(self, run_ids: list[str]) -> list[tuple[str, list[float | None]]]:
        """(metric name, its last value in each run or None) over every name any of the runs logged."""
        last: dict[str, dict[str, float]] = {}
        for run_id in run_ids:
            for name in self.store.metric_names(run_id):
                _steps, values = self.store.metric_series(run_id, name)
                if values.size:
                    last.setdefault(name, {})[run_id] = float(values[-1])
        return [(name, [last[name].get(r) for r in run_ids]) for name in sorted(last, key=_metric_order)]

    def compare(self, run_ids: list[str]) -> dict:
        """Everything the comparison shows for two or more runs (fewer: an empty comparison)."""
        run_ids = [r for r in run_ids if self.store.get_run(r) is not None]
        if len(run_ids) < 2:
            return {"runs": run_ids, "labels": [], "config": [], "metrics": [], "names": []}
        metrics = self.final_metrics(run_ids)
        return {"runs": run_ids, "labels": [self.label(r) for r in run_ids],
                "config": config_diff([self.store.run_config(r) for r in run_ids]),
                "metrics": metrics, "names": [name for name, _ in metrics]}

    def series(self, run_id: str, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self.store.metric_series(run_id, name)
