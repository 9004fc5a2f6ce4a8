"""RL gain where the samples hold the answer: agent RL, GRPO and PPO from an under-trained SFT checkpoint of a
small calculator model, 3 seeds, paired 95 % intervals on held-out tasks.

    python -m bench.calculator_gain                  # ~10 min on one core: the model, then 3 seeds × 3 methods
    python -m bench.calculator_gain --markdown --json result.json --work-dir W

The demo benchmarks (bench/agent_gain.py, bench/rl_gain.py) measure RL on models whose tasks are mostly either
answered greedily already or never answered in samples, so group advantages have little to work on
(docs/rl.md). This bench measures the methods where they have something to learn, on a task built for it:
1. Data (`write_data`): two-number calculator tasks with only the calculator declared. Pretraining transcripts
   (4,000), SFT tool conversations (800), RL tasks (200), and two held-out sets of 64 tasks whose calls occur in
   no other data (the demo's split by call, `core.data.demo_tools.is_held_out`): **validation** (chooses the
   start) and **test** (reported). Each task also comes as a single-turn prompt that ends with the tool's result,
   with that result as the `answer` (GRPO, PPO).
2. Model (`build`): a 2-layer, 128-wide model with a digit-split tokenizer, pretrained 800 steps on the
   transcripts, then 100 SFT steps with a checkpoint every 10. A pretraining seed whose final SFT model does not
   answer 58 of 64 held-out calls (copying appears suddenly, at a seed-dependent step) is retrained with the next.
3. Start: the first SFT checkpoint that answers 8-36 of the 64 validation calls (agent scoring): under-trained,
   it often writes half a call or miscopies the tool's result, and its samples often get it right.
4. Per seed, from that start, each method at its defaults (the rate 3 % of the SFT's, upstream's ratio):
   agent RL 60 steps (2 prompts × G 4, two turns with the real tool), GRPO 40 steps (4 prompts × G 8) and PPO
   40 steps (16 prompts) on the single-turn prompts with the answer reward (1 when the reply holds the result).
5. Scored on the test split, greedy: agent RL with `minimind eval tools`' check (bench/agent_gain.py
   `score_cases`), GRPO and PPO by the answer reward; each against the start on the same cases, paired over
   cases with the seeds averaged (bench/rl_gain.py `paired`).

The tests use the same model and runs (tests/fixtures/rl.py `calculator_agent`, tests/test_agent_rl.py,
tests/test_rl_train.py).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

MODEL = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "max_position_embeddings": 512, "vocab_size": 1024}
PRETRAIN_STEPS = 800
SEEDS = (1, 2, 3)     # pretraining seeds tried in turn
COPIES = 58           # held-out calls (of 64) the final SFT model must answer
EARLY_EVERY = 10      # SFT checkpoint interval: the under-trained models to start from
START_WINDOW = (8, 36)  # validation calls (of 64) the start answers
ANSWER_REWARD = {"sources": [{"type": "answer", "partial": 1.0}]}  # 1 when the reply holds the answer's number
STEPS = {"agent": 60, "grpo": 40, "ppo": 40}


def tasks(r, n: int, held_out: bool) -> list:
    """`n` two-number calculator tasks (English) on one side of the demo's held-out split (by call)."""
    from core.data.demo_tools import calculator_task, is_held_out

    out = []
    while len(out) < n:
        task = calculator_task(r, False)
        if is_held_out(task.key) == held_out and len(task.arguments["expression"].split()) == 3:
            out.append(task)
    return out


def write_data(work: Path) -> dict[str, Path]:
    """Pretraining transcripts (4,000), SFT conversations (800), agent-RL prompts (200), held-out prompts (64,
    `held_out`, the test split) and 64 more (`validation`), all with only the calculator declared; and each RL and
    held-out task as a single-turn prompt that ends with the tool's result, with that result as the `answer`
    (`*_answer`)."""
    import random

    from core.data.demo_tools import compact_json, tool_result
    from core.tokenizer import CHAT_TEMPLATE, render
    from core.tools import builtin_registry

    system = {"role": "system", "content": "", "tools": compact_json(builtin_registry().schemas(["calculate_math"]))}

    def conversation(t):
        return [{"role": "user", "content": t.question},
                {"role": "assistant", "content": "", "tool_calls": compact_json([{"name": t.tool,
                                                                                   "arguments": t.arguments}])},
                {"role": "tool", "content": tool_result(t)}, {"role": "assistant", "content": t.answer}]

    def prompt(t):
        return {"conversations": [system, {"role": "user", "content": t.question}], "gt": list(t.gt),
                "tool": t.tool}

    def answer_prompt(t):  # the conversation up to the tool's result; the reply must repeat it
        return {"conversations": [system, *conversation(t)[:3]], "answer": str(t.gt[0])}

    r = random.Random(0)
    sft, rl, held_out = tasks(r, 800, False), tasks(r, 200, False), tasks(r, 64, True)
    validation = tasks(r, 64, True)  # drawn last: the other sets are those the tests measured
    records = {"sft": [{"conversations": [system, *conversation(t)]} for t in sft],
               "rl": [prompt(t) for t in rl], "held_out": [prompt(t) for t in held_out],
               "validation": [prompt(t) for t in validation],
               "rl_answer": [answer_prompt(t) for t in rl], "held_out_answer": [answer_prompt(t) for t in held_out],
               "validation_answer": [answer_prompt(t) for t in validation],
               "pretrain": [{"text": render(CHAT_TEMPLATE, conversation(t))}
                            for t in tasks(random.Random(1), 4000, False)]}
    records["tokenizer"] = [{"text": render(CHAT_TEMPLATE, rec["conversations"])} for rec in records["sft"]]
    paths = {}
    for name, lines in records.items():
        paths[name] = work / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    return paths


def _train(run_dir: Path, work: Path, method: str, steps: int, files: Path, seed: int, init: Path | None,
           **extra) -> None:
    from core.config.load import load_train_config
    from core.train import run_training

    cfg = {"method": method, "model": MODEL, "run_dir": str(run_dir), "max_steps": steps, "batch_size": 16,
           "device": "cpu", "precision": "fp32", "log_every": 50, "save_every": 0, "seed": seed,
           "init": init and str(init),
           "data": {"files": [str(files)], "seq_len": 64, "max_len": 128, "tokenizer": str(work / "tokenizer"),
                    "cache_dir": str(work / "cache")},
           "optim": {"lr": 1e-3, "warmup_steps": 20}}
    sets = [f"{k}={json.dumps(v)}" for k, v in extra.items()]
    if run_training(load_train_config(None, sets, base=cfg)) != 0:
        raise RuntimeError(f"{method} run {run_dir} failed; see {run_dir}/events.jsonl")


def build(work: Path) -> dict:
    """{"sft": run dir, "early_sft": its checkpoints at steps 10-90, "before": held-out calls the final model
    answers, and the data files of `write_data`}: trains the tokenizer, then per pretraining seed (`SEEDS`, until
    one's final SFT model answers `COPIES` of 64) pretraining and SFT. Copying appears suddenly during pretraining
    (the loss drops from ~0.55 to ~0.35), at a step that depends on the seed: at 450-550 for four of five seeds
    tried at 1e-3, after 1,000 for the fifth; not within 600 steps at 3e-3 (2026-12-06)."""
    from bench.agent_gain import score_cases
    from core.tokenizer import train_tokenizer

    data = write_data(work)
    train_tokenizer([data["tokenizer"]], vocab_size=MODEL["vocab_size"], out_dir=work / "tokenizer",
                    pre_tokenizer="qwen2")
    tried = {}
    for seed in SEEDS:
        pretrain, sft = work / f"pretrain-{seed}", work / f"sft-{seed}"
        _train(pretrain, work, "pretrain", PRETRAIN_STEPS, data["pretrain"], seed, None, **{"data.seq_len": 128})
        _train(sft, work, "sft", 100, data["sft"], seed, pretrain, **{"data.max_len": 256, "save_every": EARLY_EVERY,
                                                                        "keep_last": 100 // EARLY_EVERY})
        tried[seed] = int(sum(score_cases(sft, data["held_out"])))
        if tried[seed] >= COPIES:
            return {**data, "sft": sft, "before": tried[seed],
                    "early_sft": [sft / "checkpoints" / f"step-{step:06d}" for step in range(EARLY_EVERY, 100,
                                                                                           EARLY_EVERY)]}
    raise RuntimeError(f"no seed gave a model that copies (held-out calls answered, of 64, by seed: {tried})")


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "events.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]


def agent_run(run_dir: Path, init: Path, tasks_file: Path, steps: int, overrides=(), seed: int = 0) -> list[dict]:
    """Agent RL from `init` at every default (rate scaled from the init run's, KL, loss, std floor) but 2 prompts ×
    G 4 per step and two turns of up to 32 tokens; returns the metric events."""
    from core.config.load import load_train_config
    from core.train import run_training

    cfg = {"method": "agent", "init": str(init), "run_dir": str(run_dir), "max_steps": steps, "seed": seed,
           "batch_size": 2, "device": "cpu", "precision": "fp32", "log_every": 1, "save_every": 0,
           "data": {"files": [str(tasks_file)]},
           "method_options": {"num_generations": 4, "max_turns": 2, "max_new_tokens": 32, "sample_every": 0}}
    if run_training(load_train_config(None, list(overrides), base=cfg)) != 0:
        raise RuntimeError(f"agent run {run_dir} failed: {_events(run_dir)[-1]}")
    return [e["metrics"] for e in _events(run_dir) if e["type"] == "metric"]


def answer_run(run_dir: Path, init: Path, prompts: Path, method: str, steps: int, rewards=ANSWER_REWARD,
               seed: int = 0) -> list[dict]:
    """`method` (grpo, ppo) from `init` at every default but the batch (GRPO 4 prompts × G 8, PPO 16 prompts) and
    24 new tokens, with `rewards`; returns the metric events."""
    from core.config.load import load_train_config
    from core.train import run_training

    options = {"num_generations": 8} if method == "grpo" else {}
    cfg = {"method": method, "init": str(init), "run_dir": str(run_dir), "max_steps": steps, "seed": seed,
           "batch_size": 4 if method == "grpo" else 16, "device": "cpu", "precision": "fp32", "log_every": 1,
           "save_every": 0, "data": {"files": [str(prompts)]},
           "method_options": {**options, "max_new_tokens": 24, "sample_every": 0, "rewards": rewards}}
    if run_training(load_train_config(None, [], base=cfg)) != 0:
        raise RuntimeError(f"{method} run {run_dir} failed: {_events(run_dir)[-1]}")
    return [e["metrics"] for e in _events(run_dir) if e["type"] == "metric"]


def answered(checkpoint: Path, prompts: Path) -> list[float]:
    """1/0 per prompt: the greedy reply holds the answer's number (the answer reward), whole prompts as trained."""
    from core.config.rl import RewardConfig
    from core.rl.evaluate import evaluate_policy

    return evaluate_policy(checkpoint, [prompts], RewardConfig.model_validate(ANSWER_REWARD), max_new_tokens=24,
                           max_prompt_len=256)["per_prompt"]


def choose_start(model: dict) -> tuple[Path, dict[str, int]]:
    """The first early SFT checkpoint that answers `START_WINDOW` of the validation calls, and the scores seen."""
    from bench.agent_gain import score_cases

    seen = {}
    for checkpoint in model["early_sft"]:
        seen[checkpoint.name] = n = int(sum(score_cases(checkpoint, model["validation"])))
        if START_WINDOW[0] <= n <= START_WINDOW[1]:
            return checkpoint, seen
    raise RuntimeError(f"no SFT checkpoint answers {START_WINDOW} of the validation calls: {seen}")


def run(seeds=(0, 1, 2), work: Path | None = None, threads: int = 1, quiet: bool = True) -> dict:
    """`quiet`: keep the training runs' log lines off stdout (each run's events.jsonl has them)."""
    import torch

    from bench.agent_gain import score_cases
    from bench.rl_gain import paired

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp, \
            (contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()):
        work = Path(work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        say("training the model (pretraining, then SFT with a checkpoint every 10 steps)")
        model = build(work)
        start, seen = choose_start(model)
        seconds = {"model": time.perf_counter() - t0}
        say(f"start: {start.name} (validation calls answered per checkpoint: {seen})")
        base = {"agent": score_cases(start, model["held_out"]), "answer": answered(start, model["held_out_answer"])}
        cases: dict[str, list[list[float]]] = {m: [] for m in STEPS}
        for seed in seeds:
            for method, steps in STEPS.items():
                run_dir, t = work / f"{method}-{seed}", time.perf_counter()
                say(f"{run_dir.name}: {steps} steps")
                if method == "agent":
                    agent_run(run_dir, start, model["rl"], steps, seed=seed)
                    cases[method].append(score_cases(run_dir, model["held_out"]))
                else:
                    answer_run(run_dir, start, model["rl_answer"], method, steps, seed=seed)
                    cases[method].append(answered(run_dir, model["held_out_answer"]))
                seconds[run_dir.name] = time.perf_counter() - t
    rows = {}
    for method, runs in cases.items():
        before = base["agent" if method == "agent" else "answer"]
        rows[method] = {"before": sum(before) / len(before), "per_seed": [sum(r) / len(r) for r in runs],
                        "vs_start": paired(runs, before), "cases": runs, "start_cases": before}
    return {"settings": {"seeds": list(seeds), "steps": STEPS, "start": start.name, "validation_scores": seen,
                         "pretrain_seed": int(model["sft"].name.split("-")[1])},
            "seconds": {k: round(v, 1) for k, v in seconds.items()}, "test": rows}


def say(message: str) -> None:
    print(f"[calculator_gain {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


NAMES = {"agent": "agent RL (2 × G 4, two turns)", "grpo": "GRPO (4 × G 8)", "ppo": "PPO (16 prompts)"}


def table(result: dict, markdown: bool = False) -> str:
    s = result["settings"]
    head = (f"Held-out test answers (64), from SFT {s['start']}", "before", "after (per seed)", "gain, 95% CI")
    rows = []
    for method, r in result["test"].items():
        d = r["vs_start"]
        rows.append((f"{NAMES[method]}, {s['steps'][method]} steps", f"{r['before']:.1%}",
                     f"{sum(r['per_seed']) / len(r['per_seed']):.1%} ("
                     + ", ".join(f"{x:.1%}" for x in r["per_seed"]) + ")",
                     f"{d['mean'] * 100:+.1f} pt [{d['ci95'][0] * 100:+.1f}, {d['ci95'][1] * 100:+.1f}]"))
    if markdown:
        return "\n".join("| " + " | ".join(row) + " |" for row in [head, ("---",) * 4, *rows])
    return "\n".join(f"{a:<48} {b:<8} {c:<28} {d}" for a, b, c, d in [head, *rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.calculator_gain", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", type=Path, help="keep the model and the runs here")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    args = p.parse_args(argv)
    result = run(tuple(args.seeds), args.work_dir, args.threads)
    print(table(result, args.markdown))
    print(json.dumps({"settings": result["settings"], "seconds": result["seconds"]}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
