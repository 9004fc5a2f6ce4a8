"""The evaluation worker (the studio's Evaluate pane runs it as a child process): every (model, task) pair of a
spec file, one JSON message a line on stdout.

    python -m core.eval.worker SPEC.json

SPEC: {"models": [checkpoint dir or .gguf, ...], "tasks": [task name, ...], "settings": {"k_shot", "limit",
"batch_size", "max_new_tokens", "max_turns", "ngram"}}. A task is a built-in benchmark set (core.eval.tasks.BUILTIN),
a benchmark file (scored by core.eval.bench), "tool-use" / "tool-use:CASES.jsonl" (core.eval.tool_use), or
"rl-signal" / "rl-signal:CASES.jsonl": the same cases answered `samples` times sampled, as RL rollouts sample
(settings "samples", default 8, "temperature", default 1.0, and "think"); its accuracy is the share of cases an RL group
could learn from (solved sometimes, not always; core.eval.tool_use.sampled_coverage, docs/rl.md).
Messages (declared in core/event_schema.py, `EVAL_MESSAGES`; built with `make_eval_message`, which refuses one that
breaks the schema, and checked by the studio with `validate_eval_message`): first {"type": "started", "jobs"}, then
{"type": "progress", "job", "model", "task", "done", "total"}, {"type": "result", "job", "model", "task",
"result"}, {"type": "error", "job", "model", "task", "message"}, and last {"type": "finished", "status"}
("completed" | "cancelled"). SIGTERM cancels: the pair being scored stops at its next batch and is not reported.

Every task kind answers through one adapter shape (`run(backend, task, settings, progress, cancelled) -> dict`),
so the studio stores and shows any of them the same way:
{"kind", "accuracy", "interval": [lo, hi], "contamination": share or None, "flagged", "n", "seconds", "settings",
 "items": [{"question", "options": [{"text", "score"}], "gold", "chosen", "correct", "calls", "answer"}]}.
No Qt here: the child stays light and the same code runs from a terminal.
"""
from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from core.event_schema import make_eval_message

TOOL_USE = "tool-use"
RL_SIGNAL = "rl-signal"


class Cancelled(Exception):
    pass


def bench_result(backend, task: str, settings: dict, progress, cancelled) -> dict:
    """A multiple-choice benchmark (core.eval.bench): accuracy by log-likelihood, Wilson interval, contamination."""
    from core.eval.bench import load_task, score_task

    loaded = load_task(task, limit=settings.get("limit") or None)
    out = score_task(backend, loaded, k_shot=int(settings.get("k_shot", 0)),
                     batch_size=int(settings.get("batch_size", 16)), progress=progress, cancelled=cancelled,
                     ngram=int(settings.get("ngram", 13)))
    if out["cancelled"]:
        raise Cancelled()
    summary, report = out["summary"], out["contamination"]
    items = [{"question": r["question"], "gold": r["gold"], "chosen": r["chosen"], "correct": r["correct"],
              "options": [{"text": c, "score": s} for c, s in zip(r["choices"], r["scores"])],
              "contaminated": r.get("contaminated")} for r in out["items"]]
    return {"kind": "bench", "accuracy": summary["acc"], "interval": summary["acc_ci95"],
            "contamination": report.get("share") if report.get("checked") else None,
            "flagged": bool(report.get("flagged")), "n": summary["n"], "seconds": summary["seconds"],
            "settings": {**summary["settings"], "limit": settings.get("limit")}, "items": items}


def _cases(task: str, settings: dict) -> tuple[list, str]:
    """The task's tool-use cases ("NAME:CASES.jsonl", else the built-in ones), cut to settings["limit"]."""
    from core.eval.tool_use import builtin_cases, load_cases

    cases_file = task.partition(":")[2]
    cases = load_cases(cases_file) if cases_file else builtin_cases()
    return (cases[:settings["limit"]] if settings.get("limit") else cases), cases_file


def _checked(progress, cancelled):
    def step(done: int, total: int) -> None:
        progress(done, total)
        if cancelled():
            raise Cancelled()
    return step


def tool_use_result(backend, task: str, settings: dict, progress, cancelled) -> dict:
    """Tool-use cases (core.eval.tool_use): accuracy = correct final answers with tools; items show the calls."""
    from core.eval.bench import wilson_interval
    from core.eval.tool_use import BackendTarget, evaluate_tool_use

    cases, cases_file = _cases(task, settings)
    max_new, turns = int(settings.get("max_new_tokens", 128)), int(settings.get("max_turns", 3))
    started = time.perf_counter()
    out = evaluate_tool_use(BackendTarget(backend, max_new), cases, turns, max_new, without_tools=False,
                            progress=_checked(progress, cancelled))
    correct = sum(c["correct"] for c in out["cases"])
    items = [{"question": case.question, "correct": r["correct"], "calls": r["calls"], "answer": r["answer"],
              "options": [], "gold": None, "chosen": None, "expected": case.gt, "tool": case.tool}
             for case, r in zip(cases, out["cases"])]
    return {"kind": "tool-use", "accuracy": out["accuracy_with_tools"],
            "interval": list(wilson_interval(correct, len(cases))), "contamination": None, "flagged": False,
            "n": len(cases), "seconds": round(time.perf_counter() - started, 3),
            "settings": {"max_new_tokens": max_new, "max_turns": turns, "limit": settings.get("limit"),
                         "cases": cases_file or "built-in"}, "items": items,
            "summary": out["summary"]}


def rl_signal_result(backend, task: str, settings: dict, progress, cancelled) -> dict:
    """What an RL run on tool-use cases could learn from, before it is run: each case answered `samples` times
    at `temperature` (core.eval.tool_use.sampled_coverage). accuracy = the share of cases solved sometimes but
    not always: a group whose answers all score alike has zero advantages and teaches nothing."""
    from core.eval.bench import wilson_interval
    from core.eval.tool_use import BackendTarget, sampled_coverage

    cases, cases_file = _cases(task, settings)
    max_new, turns = int(settings.get("max_new_tokens", 128)), int(settings.get("max_turns", 3))
    samples, temperature = int(settings.get("samples", 8)), float(settings.get("temperature", 1.0))
    think = settings.get("think")  # None: the chat template decides, as for "tool-use"
    started = time.perf_counter()
    cov = sampled_coverage(BackendTarget(backend, max_new, think=think), cases, samples, temperature, turns,
                           progress=_checked(progress, cancelled))
    signal = [0 < solved < samples for solved in cov["solved"]]
    items = [{"question": case.question, "correct": has, "solved": solved, "samples": samples, "options": [],
              "gold": None, "chosen": None, "expected": case.gt, "tool": case.tool}
             for case, solved, has in zip(cases, cov["solved"], signal)]
    return {"kind": RL_SIGNAL, "accuracy": cov["signal"], "interval": list(wilson_interval(sum(signal), len(cases))),
            "contamination": None, "flagged": False, "n": len(cases), "seconds": round(time.perf_counter() - started, 3),
            "settings": {"samples": samples, "temperature": temperature, "think": think, "max_new_tokens": max_new,
                         "max_turns": turns, "limit": settings.get("limit"), "cases": cases_file or "built-in"},
            "items": items, "summary": {k: cov[k] for k in ("sampled", "pass_at_k", "signal", "by_tool")}}


def adapter_for(task: str):
    for name, adapter in ((TOOL_USE, tool_use_result), (RL_SIGNAL, rl_signal_result)):
        if task == name or task.startswith(name + ":"):
            return adapter
    return bench_result


# ---- the process -----------------------------------------------------------------------------------------------

def emit(kind: str, **fields) -> None:
    print(json.dumps(make_eval_message(kind, **fields), ensure_ascii=False), flush=True)


def run_spec(spec: dict, cancelled) -> str:
    from core.infer.backend import open_backend

    job = 0
    for model in spec["models"]:
        try:
            backend = open_backend(Path(model))
        except Exception as exc:  # a missing or broken model fails its own pairs, not the others
            for task in spec["tasks"]:
                emit("error", job=job, model=model, task=task, message=f"{type(exc).__name__}: {exc}")
                job += 1
            continue
        try:
            for task in spec["tasks"]:
                here = dict(job=job, model=model, task=task)
                try:
                    result = adapter_for(task)(backend, task, spec.get("settings", {}),
                                               lambda done, total, h=here: emit("progress", **h, done=done,
                                                                                 total=total), cancelled)
                    emit("result", **here, result=result)
                except Cancelled:
                    return "cancelled"
                except Exception as exc:
                    emit("error", **here, message=f"{type(exc).__name__}: {exc}")
                job += 1
                if cancelled():
                    return "cancelled"
        finally:
            backend.close()
    return "completed"


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("flag", True))
    emit("started", jobs=len(spec["models"]) * len(spec["tasks"]))
    emit("finished", status=run_spec(spec, lambda: stop["flag"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
