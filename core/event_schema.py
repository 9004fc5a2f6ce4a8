"""The trainer's event schema (v1): which fields each event type carries and their types, in one place; and the
evaluation worker's messages (`EVAL_MESSAGES`), checked the same way.

The trainer (`core.train.events.EventLog`) and the studio's stand-in trainer build their events with
`make_event`, which refuses an event that breaks this schema; the studio reads events.jsonl lines with
`parse_event_line` and skips an event that `validate_event` finds malformed, with the reason it gives.
docs/events.md describes the same fields for people.

Importable without torch, pydantic or Qt (the studio's store and the stand-in trainer use it).

A reader ignores fields it does not know, and an older trainer's event may lack a field added since: so a reader
checks the type of every field that is present, while `make_event` (a writer's obligation) also demands every
required one. A field a writer may leave out is declared with ``required=False``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Field:
    type: type            # int, float, str, dict or list (JSON's types as Python reads them)
    required: bool = True  # a writer must give it
    nullable: bool = False  # null is a valid value (e.g. "not known")


def field(type_: type, *, required: bool = True, nullable: bool = False) -> Field:
    return Field(type_, required, nullable)


COMMON: dict[str, Field] = {
    "v": field(int),
    "type": field(str),
    "time": field(float),  # unix seconds
    "step": field(int),    # optimizer steps completed
}

EVENTS: dict[str, dict[str, Field]] = {
    "run_started": {
        "run_id": field(str),
        "method": field(str),
        "config": field(dict),
        "world_size": field(int),
        "device": field(str),
        "precision": field(str),
        "precision_reason": field(str, required=False),  # why `precision: auto` chose it (core/precision.py)
        "params": field(int),
        "trainable_params": field(int),
        "dataset_tokens": field(int, nullable=True),
        "total_steps": field(int),
        "steps_per_epoch": field(int),
        "resumed_from": field(int, nullable=True),
        "pid": field(int),
        "pid_start_ticks": field(int, nullable=True),
        "ranks": field(list, required=False),  # [{rank, pid, pid_start_ticks}] of every process of the run
    },
    # data preparation (tokenizing into the token cache) before run_started: core/preparation.py
    "prepare": {
        "state": field(str),          # running | waiting (another process builds this cache) | done | stopped
        "cache": field(str),          # the cache entry's name
        "label": field(str),          # for people: "tokenizing pretrain_hq.jsonl"
        "bytes_done": field(int),     # input bytes tokenized, all files together
        "bytes_total": field(int),
        "records": field(int),        # records tokenized
        "resumed_bytes": field(int),  # of bytes_done, what earlier interrupted attempts had finished
        "rate": field(float, nullable=True),  # input bytes per second in this attempt
        "eta_s": field(float, nullable=True),
        "files": field(list),         # [{path, bytes_done, bytes_total, records}] per input file
    },
    "metric": {"epoch": field(float), "total_steps": field(int), "metrics": field(dict)},
    "eval": {"metrics": field(dict)},
    "sample": {"samples": field(list)},
    "checkpoint": {"path": field(str)},
    "warning": {"message": field(str)},
    "error": {"message": field(str)},
    "run_finished": {"status": field(str), "message": field(str)},
}
FINISH_STATUSES = ("completed", "stopped", "failed")

# The evaluation worker's messages (core/eval/worker.py → the studio's Evaluate pane), one JSON object a line on
# its stdout. They carry only "type" in common: no schema version, time or step (they are not stored as events).
EVAL_MESSAGES: dict[str, dict[str, Field]] = {
    "started": {"jobs": field(int)},  # (model, task) pairs to score
    "progress": {"job": field(int), "model": field(str), "task": field(str), "done": field(int),
                 "total": field(int)},
    "result": {"job": field(int), "model": field(str), "task": field(str), "result": field(dict)},
    "error": {"job": field(int), "model": field(str), "task": field(str), "message": field(str)},
    "finished": {"status": field(str)},
}
EVAL_FINISH_STATUSES = ("completed", "cancelled")


def _type_problem(name: str, value: Any, spec: Field) -> str | None:
    if value is None:
        return None if spec.nullable else f"field {name!r} must not be null"
    if spec.type is float:  # JSON does not tell 1 from 1.0
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif spec.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, spec.type)
    if ok:
        return None
    kind = {int: "an integer", float: "a finite number", str: "a string", dict: "an object", list: "a list"}
    return f"field {name!r} must be {kind.get(spec.type, spec.type.__name__)}, got {value!r}"[:300]


def _fields_problem(obj: Any, what: str, common: dict[str, Field], types: dict[str, dict[str, Field]],
                    complete: bool, finish: tuple[str, str, tuple[str, ...]]) -> str | None:
    """Why ``obj`` breaks the schema of ``common`` fields plus its type's (``types``), or None; ``finish`` is the
    type whose `status` must be one of its statuses in a complete message."""
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        return f"not {what} object with a string 'type'"
    kind = obj["type"]
    for name, spec in {**common, **types.get(kind, {})}.items():
        if name not in obj:
            if complete and spec.required:
                return f"{kind} {what.split()[-1]}: field {name!r} is missing"
            continue
        problem = _type_problem(name, obj[name], spec)
        if problem:
            return f"{kind} {what.split()[-1]}: {problem}"
    finish_type, status_field, statuses = finish
    if kind == finish_type and complete and obj[status_field] not in statuses:
        return (f"{kind} {what.split()[-1]}: {status_field} must be one of {', '.join(statuses)}, "
                f"got {obj[status_field]!r}")
    return None


def validate_event(event: Any, complete: bool = False) -> str | None:
    """None when ``event`` fits the schema, else why not. Every field present must have its type; with
    ``complete`` every required field must be present too (what a writer owes). Unknown types and fields pass:
    a newer trainer may add them."""
    return _fields_problem(event, "an event", COMMON, EVENTS, complete, ("run_finished", "status", FINISH_STATUSES))


def validate_eval_message(message: Any, complete: bool = False) -> str | None:
    """As ``validate_event``, for the evaluation worker's messages (``EVAL_MESSAGES``)."""
    return _fields_problem(message, "a message", {"type": field(str)}, EVAL_MESSAGES, complete,
                           ("finished", "status", EVAL_FINISH_STATUSES))


def make_eval_message(type: str, **fields: Any) -> dict:
    """A complete evaluation-worker message; ValueError when a required field is missing or has the wrong type."""
    message = {"type": type, **fields}
    problem = validate_eval_message(message, complete=True)
    if problem:
        raise ValueError(f"{problem} (core/event_schema.py, EVAL_MESSAGES)")
    return message


def make_event(type: str, step: int, **fields: Any) -> dict:
    """A complete schema-v1 event (``v``, ``type``, ``time`` now, ``step``, then ``fields``); ValueError when a
    required field is missing or has the wrong type."""
    event = {"v": SCHEMA_VERSION, "type": type, "time": time.time(), "step": int(step), **fields}
    problem = validate_event(event, complete=True)
    if problem:
        raise ValueError(f"{problem} (docs/events.md, core/event_schema.py)")
    return event


def parse_event_line(line: bytes | str) -> dict | None:
    """The event on one line of events.jsonl (or the trainer's stdout), or None for a line that is not a JSON
    object with a string ``type``. Its fields are not checked here: see ``validate_event``."""
    try:
        event = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return None
    return event
