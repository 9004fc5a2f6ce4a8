"""Every method from its pure defaults on the demo model: a short run must not make held-out quality worse.

    python -m bench.method_defaults --demo-dir W/demo            # reuse a FULL `minimind demo` folder
    python -m bench.method_defaults --steps 30 --markdown        # the table in docs/benchmarks.md

For each method the config names only what a user must: the method, the starting run (`init`: the demo's
pretraining run for pretrain, SFT and distillation, its SFT run for the rest), the data files, the number of
steps, and the distillation teacher. Learning rate, schedule, batch, clip and every method option are the
method's defaults (core/methods.py, scaled to the init run's rate). The data shape (max_len, seq_len) is the
demo's, as a user's data would set it.

Held-out quality is each recipe's own evaluation on held-out records (`data.eval_files`, `eval_every`):
pretrain/SFT/LoRA: eval/loss; DPO: eval/preference_accuracy (the policy's own log-probability prefers the chosen
reply); RM: eval/accuracy; PPO/GRPO/SPO: eval/accuracy (greedy exact answers); agent: eval/accuracy (every
ground-truth value in the final answer); distill: eval/kl (T²·KL to the teacher). "Before" is the same config
run for one step at a learning rate of 1e-30 (the init weights, evaluated by the same code); "after" is the run
at the defaults. Held-out records are never trained on: every 10th SFT/DPO/pretrain record, the demo's held-out
agent tasks, and RL prompts that occur nowhere in the training part (core.rl.evaluate.split_prompts).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

# method: (init stage, data file, metric, higher is better). Continued pretraining and LoRA adapt the demo models
# to text they never saw (the shared datasets, ../shared/data: dictionary entries and their Q&A), as a user adapts
# a model to a domain; the demo's own files were in the init runs' training data, so they hold nothing held out.
METHODS = {
    "pretrain": ("pretrain", "shared_pretrain", "eval/loss", False),
    "sft": ("pretrain", "sft", "eval/loss", False),
    "lora": ("sft", "shared_sft", "eval/loss", False),
    "dpo": ("sft", "dpo", "eval/preference_accuracy", True),
    "rm": ("sft", "dpo", "eval/accuracy", True),
    "ppo": ("sft", "rl", "eval/accuracy", True),
    "grpo": ("sft", "rl", "eval/accuracy", True),
    "spo": ("sft", "rl", "eval/accuracy", True),
    "agent": ("sft", "agent_rl", "eval/accuracy", True),
    "distill": ("pretrain", "sft", "eval/kl", False),
}
EVAL_BATCHES = {"rl": 32, "agent_rl": 24}  # batches of 2 prompts: 64 and 48 held-out prompts


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_LINES = 2000  # the first lines of each shared file: 1,800 train, 200 held out


def split_data(data: Path, work: Path, rl_train: int = 200, rl_held: int = 64, shared: Path = SHARED,
               shared_lines: int = SHARED_LINES) -> dict[str, tuple[Path, Path]]:
    """{data kind: (train file, held-out file)} from a demo data folder (and the shared datasets)."""
    from core.data.demo import agent_rl_held_out
    from core.rl.evaluate import split_prompts

    out = {}
    sources = {k: data / f"{k}.jsonl" for k in ("pretrain", "sft", "dpo", "agent_rl")}
    sources.update(shared_pretrain=shared / "pretrain.jsonl", shared_sft=shared / "sft.jsonl")
    for kind, path in sources.items():
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\n") for _, line in zip(range(shared_lines), f)] if kind.startswith("shared") \
                else f.read().splitlines()
        held = (lambda i: agent_rl_held_out(i)) if kind == "agent_rl" else (lambda i: i % 10 == 9)
        train, test = work / f"{kind}_train.jsonl", work / f"{kind}_held.jsonl"
        train.write_text("\n".join(x for i, x in enumerate(lines) if not held(i)) + "\n", encoding="utf-8")
        test.write_text("\n".join(x for i, x in enumerate(lines) if held(i)) + "\n", encoding="utf-8")
        out[kind] = (train, test)
    out["rl"] = split_prompts(data / "rl.jsonl", work / "rl_train.jsonl", work / "rl_held.jsonl", rl_train, rl_held)
    return out


def method_config(method: str, runs: Path, files: dict, run_dir: Path, steps: int, seq: tuple[int, int]) -> dict:
    """The config a user would write: everything else is the method's default."""
    stage, kind, _, _ = METHODS[method]
    train, held = files[kind]
    cfg = {"method": method, "init": str(runs / stage), "run_dir": str(run_dir), "max_steps": steps,
           "device": "cpu", "save_every": 0, "log_every": max(1, steps // 5), "eval_every": steps,
           "data": {"files": [str(train)], "eval_files": [str(held)], "seq_len": seq[0], "max_len": seq[1],
                    "eval_batches": EVAL_BATCHES.get(kind, 8)}}
    if method == "distill":
        cfg["method_options"] = {"teacher": str(runs / "sft")}
    return cfg


def last_eval(run_dir: Path, metric: str) -> float:
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    evals = [e for e in events if e.get("type") == "eval" and metric in (e.get("metrics") or {})]
    if not evals:
        raise RuntimeError(f"{run_dir}: no eval event with {metric}")
    return float(evals[-1]["metrics"][metric])


def measure(method: str, runs: Path, files: dict, work: Path, steps: int, seq: tuple[int, int]) -> dict:
    from bench.rl_gain import train_run

    _, _, metric, higher = METHODS[method]
    before_cfg = method_config(method, runs, files, work / f"{method}-before", 1, seq)
    before_cfg["optim"] = {"lr": 1e-30}
    train_run(before_cfg)
    after_dir = work / f"{method}-defaults"
    seconds = train_run(method_config(method, runs, files, after_dir, steps, seq))
    saved = json.loads((after_dir / "config.json").read_text(encoding="utf-8"))
    before, after = last_eval(work / f"{method}-before", metric), last_eval(after_dir, metric)
    return {"method": method, "metric": metric, "higher_is_better": higher, "before": before, "after": after,
            "lr": saved["optim"]["lr"], "batch_size": saved["batch_size"], "steps": steps,
            "not_worse": after >= before if higher else after <= before, "seconds": round(seconds, 1)}


def run(demo_dir: Path | None = None, steps: int = 30, methods: tuple[str, ...] = tuple(METHODS),
        work: Path | None = None, threads: int = 1, fast: bool = False) -> list[dict]:
    """`demo_dir`: a `minimind demo` folder (runs/pretrain, runs/sft, data/); without one, a demo is trained."""
    import torch

    from core.demo import FAST, FULL, run_demo

    torch.set_num_threads(threads)
    work = Path(work or tempfile.mkdtemp(prefix="method_defaults_"))
    work.mkdir(parents=True, exist_ok=True)
    if demo_dir is None:
        demo_dir = work / "demo"
        run_demo(demo_dir, fast=fast, say=lambda m: None, threads=threads)
    plan = FAST if fast else FULL
    files = split_data(demo_dir / "data", work, *((6, 2, SHARED, 200) if fast else (200, 64)))
    return [measure(m, demo_dir / "runs", files, work, steps, (plan.seq_len, plan.max_len)) for m in methods]


def table(rows: list[dict], markdown: bool = False) -> str:
    head = ["method", "default lr (from the init run)", "batch", "held-out metric", "before", "after", "not worse"]
    body = [[r["method"], f"{r['lr']:.3g}", str(r["batch_size"]), r["metric"].replace("eval/", ""),
             f"{r['before']:.4g}", f"{r['after']:.4g}", "yes" if r["not_worse"] else "**no**"] for r in rows]
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head] + body)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.method_defaults", description=__doc__.split("\n")[0])
    p.add_argument("--demo-dir", type=Path, help="a FULL `minimind demo` folder to start from (else one is trained)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--work-dir", type=Path)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    a = p.parse_args(argv)
    rows = run(a.demo_dir, a.steps, tuple(a.methods), a.work_dir)
    print(table(rows, a.markdown))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r["not_worse"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
