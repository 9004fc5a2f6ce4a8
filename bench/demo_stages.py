"""Demo stages on the built-in benchmarks: the demo's pretrain, SFT and SFT + GRPO checkpoints scored on
`minimind eval bench`'s built-in multiple-choice tasks, with 95 % intervals and paired differences between stages.

    python -m bench.demo_stages                       # full demo + GRPO + scoring; prints the table
    python -m bench.demo_stages --markdown            # the same as Markdown (docs/benchmarks.md)
    python -m bench.demo_stages --demo minimind-demo  # reuse a `minimind demo` output folder
    python -m bench.demo_stages --fast --rl-steps 2 --limit 8   # a smoke run (seconds; not a measurement)

1. `minimind demo` (core/demo.py, the FULL plan, one thread per trainer) into the work folder: tokenizer, then
   the `tiny` model pretrained (`runs/pretrain`) and SFT'd (`runs/sft`); or `--demo DIR` takes those two
   checkpoints from an existing demo folder (nothing is written there).
2. GRPO from `runs/sft` on the demo's own rl.jsonl, with bench/rl_gain.py's settings unchanged (`GRPO`:
   4 prompts × G = 8, lr 5e-4; `REWARDS`: exact answer + 0.1 × length; temperature 1.0; ≤ 16 new tokens;
   kl_coef 0.02) for `rl_steps` (120, rl_gain's), seed 0, into `<work>/grpo`.
3. Every checkpoint scored on every task by `core.eval.bench.score_task` (zero-shot, torch fp32): accuracy and
   length-normalised accuracy, each with its 95 % Wilson interval; the 13-gram contamination check against the
   checkpoint's own training data (its lineage included) says how many items it has seen.
4. Paired, on the same items: per item, correct(stage) − correct(previous stage) (1, 0 or −1); its mean and a
   95 % paired-bootstrap interval over items (`bench.rl_gain.paired`).

Nothing was tuned on the reported items: the demo recipe (commit 27380f9), the GRPO settings and the step count
are core/demo.py's and bench/rl_gain.py's as they stand. CPU, one thread.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.rl_gain import BOOTSTRAP, GRPO, paired, rl_config, train_run

TASKS = ("demo-facts", "shared-poems")
RL_STEPS = 120  # bench/rl_gain.py's, chosen there on its validation split
STAGES = ("pretrain", "sft", "grpo")
METRICS = ("correct", "correct_norm")  # per-item fields of score_task: acc and acc_norm


def _demo(work: Path, fast: bool, threads: int) -> Path:
    from core.demo import run_demo

    run_demo(work / "demo", fast=fast, say=lambda m: None, threads=threads)
    return work / "demo"


def _grpo(demo: Path, work: Path, steps: int) -> tuple[Path, float]:
    run_dir = work / "grpo"
    cfg = rl_config("grpo", run_dir, demo / "runs" / "sft", demo / "data" / "rl.jsonl", steps, seed=0)
    return run_dir, train_run(cfg)


def score_stage(checkpoint: Path, tasks, limit: int | None) -> dict:
    """{task: score_task's result, without the per-item texts} for one checkpoint."""
    from core.eval.bench import load_task, score_task
    from core.infer.backend import open_backend

    backend = open_backend(checkpoint)
    try:
        out = {}
        for name in tasks:
            r = score_task(backend, load_task(name, limit=limit))
            c = r["contamination"]
            out[name] = {"summary": r["summary"], "seen": c.get("contaminated") if c.get("checked") else None,
                         "items": [{m: float(i[m]) for m in METRICS} for i in r["items"]]}
        return out
    finally:
        backend.close()


def compare(scores: dict) -> dict:
    """scores[stage][task] -> per task and stage: summary, and per metric the paired difference to the stage
    before it (items in the same order: every stage scores the same task)."""
    out = {}
    for task in next(iter(scores.values())):
        rows, prev = {}, None
        for stage, by_task in scores.items():
            s = by_task[task]
            row = {"summary": s["summary"], "seen": s["seen"]}
            if prev is not None:
                base = scores[prev][task]["items"]
                row["vs_prev"] = {m: paired([[i[m] for i in s["items"]]], [i[m] for i in base], BOOTSTRAP)
                                  for m in METRICS}
            rows[stage], prev = row, stage
        out[task] = rows
    return out


def run(demo: str | Path | None = None, rl_steps: int = RL_STEPS, tasks=TASKS, limit: int | None = None,
        fast: bool = False, threads: int = 1, work_dir: str | Path | None = None) -> dict:
    import torch

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="demo_stages_") as tmp:
        work = Path(work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        seconds = {}
        t0 = time.perf_counter()
        demo_dir = Path(demo) if demo else _demo(work, fast, threads)
        seconds["demo"] = 0.0 if demo else time.perf_counter() - t0
        grpo_dir, seconds["grpo"] = _grpo(demo_dir, work, rl_steps)
        checkpoints = {"pretrain": demo_dir / "runs" / "pretrain", "sft": demo_dir / "runs" / "sft",
                       "grpo": grpo_dir}
        t0 = time.perf_counter()
        scores = {stage: score_stage(checkpoints[stage], tasks, limit) for stage in STAGES}
        seconds["scoring"] = time.perf_counter() - t0
        steps = {stage: _steps(checkpoints[stage]) for stage in STAGES}
    return {"config": {"demo": str(demo) if demo else ("fast" if fast else "full"), "rl_steps": rl_steps,
                       "grpo": GRPO, "tasks": list(tasks), "limit": limit, "threads": threads, "steps": steps,
                       "bootstrap": BOOTSTRAP},
            "results": compare(scores), "seconds": {k: round(v, 1) for k, v in seconds.items()}}


def _steps(run_dir: Path) -> int | None:
    """The run's max_steps from its config.json (the row label says how long each stage trained)."""
    try:
        return json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["max_steps"]
    except (OSError, KeyError, ValueError):
        return None


def _ci(p: float, ci: list) -> str:
    return f"{p:.1%} [{ci[0]:.1%}, {ci[1]:.1%}]"


def _diff(d: dict | None) -> str:
    if d is None:
        return "–"
    return f"{100 * d['mean']:+.1f} pt [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"


def table(result: dict, markdown: bool = False) -> str:
    steps = result["config"]["steps"]
    name = {"pretrain": "pretrain", "sft": "+ SFT", "grpo": "+ GRPO"}
    head = ["task (items, chance)", "stage (steps)", "acc [95% CI]", "Δ acc vs stage above [95% CI]",
            "acc_norm [95% CI]", "Δ acc_norm vs stage above [95% CI]", "items seen in training"]
    body = []
    for task, rows in result["results"].items():
        for stage, r in rows.items():
            s, vs = r["summary"], r.get("vs_prev", {})
            label = f"{task} ({s['n']}, {s['chance']:.0%})" if stage == STAGES[0] else ""
            body.append([label, f"{name[stage]} ({steps.get(stage)})", _ci(s["acc"], s["acc_ci95"]),
                         _diff(vs.get("correct")), _ci(s["acc_norm"], s["acc_norm_ci95"]),
                         _diff(vs.get("correct_norm")), "–" if r["seen"] is None else f"{r['seen']}/{s['n']}"])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + body)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.demo_stages", description=__doc__.split("\n")[0])
    p.add_argument("--demo", metavar="DIR", help="reuse this `minimind demo` output folder (runs/pretrain, "
                   "runs/sft, data/rl.jsonl) instead of running the demo")
    p.add_argument("--fast", action="store_true", help="run the demo's FAST plan (a smoke run, not a model)")
    p.add_argument("--rl-steps", type=int, default=RL_STEPS, help=f"GRPO steps (default {RL_STEPS})")
    p.add_argument("--task", action="append", dest="tasks", help=f"a built-in task (default: {', '.join(TASKS)})")
    p.add_argument("--limit", type=int, help="score only the first N items of each task")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", help="keep the demo and GRPO runs here (default: a temporary folder)")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    a = p.parse_args(argv)
    res = run(a.demo, a.rl_steps, tuple(a.tasks or TASKS), a.limit, a.fast, a.threads, a.work_dir)
    print(table(res, a.markdown))
    print(json.dumps({"seconds": res["seconds"], "config": res["config"]}))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
