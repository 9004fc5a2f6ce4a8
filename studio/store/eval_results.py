"""Evaluation results in the studio database (table ``eval_result``): one row per model and task, the latest kept.

The table is created by ``Base.metadata.create_all`` when the store opens, so a database made before it existed
gains it on open; rows are plain dicts here so the Evaluate pane never holds ORM objects.
"""
from __future__ import annotations

import json
import time

from sqlalchemy import delete, select

from studio.store.models import EvalResult

COLUMNS = ("model_path", "model_label", "run_id", "task", "kind", "accuracy", "ci_low", "ci_high", "contamination",
           "flagged", "n", "seconds", "created_at")


def save_eval_result(store, model_path: str, task: str, result: dict, model_label: str = "",
                     run_id: str | None = None) -> None:
    """Store `result` (the worker's adapter shape: accuracy, interval, contamination, flagged, n, seconds,
    settings, items), replacing an earlier result of the same model and task."""
    low, high = (list(result.get("interval") or []) + [None, None])[:2]
    row = EvalResult(model_path=model_path, model_label=model_label or model_path, run_id=run_id, task=task,
                     kind=result.get("kind", "bench"), accuracy=float(result["accuracy"]), ci_low=low, ci_high=high,
                     contamination=result.get("contamination"), flagged=bool(result.get("flagged")),
                     n=int(result.get("n", 0)), seconds=float(result.get("seconds", 0.0)),
                     settings_json=json.dumps(result.get("settings") or {}, ensure_ascii=False),
                     details_json=json.dumps(result.get("items") or [], ensure_ascii=False), created_at=time.time())
    with store.session() as s, s.begin():
        s.execute(delete(EvalResult).where(EvalResult.model_path == model_path, EvalResult.task == task))
        s.add(row)


def eval_results(store) -> list[dict]:
    """Every stored result (without item details), oldest model first."""
    with store.session() as s:
        rows = s.scalars(select(EvalResult).order_by(EvalResult.id)).all()
        return [{**{c: getattr(r, c) for c in COLUMNS}, "settings": json.loads(r.settings_json or "{}")}
                for r in rows]


def eval_details(store, model_path: str, task: str) -> list[dict]:
    """The per-item details of one result ([] when there is none)."""
    with store.session() as s:
        raw = s.scalar(select(EvalResult.details_json).where(EvalResult.model_path == model_path,
                                                             EvalResult.task == task))
    return json.loads(raw) if raw else []
