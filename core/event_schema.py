"""The trainer's event schema (v1): which fields each event type carries and their types, in one place.

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


def validate_event(event: Any, complete: bool = False) -> str | None:
    """None when ``event`` fits the schema, else why not. Every field present must have its type; with
    ``complete`` every required field must be present too (what a writer owes). Unknown types and fields pass:
    a newer trainer may add them."""
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return "not an event object with a string 'type'"
    kind = event["type"]
    for name, spec in {**COMMON, **EVENTS.get(kind, {})}.items():
        if name not in event:
            if complete and spec.required:
                return f"{kind} event: field {name!r} is missing"
            continue
        problem = _type_problem(name, event[name], spec)
        if problem:
            return f"{kind} event: {problem}"
    if kind == "run_finished" and complete and event["status"] not in FINISH_STATUSES:
        return f"run_finished event: status must be one of {', '.join(FINISH_STATUSES)}, got {event['status']!r}"
    return None


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
