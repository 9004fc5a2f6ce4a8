"""RL gain on the built-in verifiable task: a small SFT'd model before and after GRPO and PPO.

    python -m bench.rl_gain             # prints a table
    python -m bench.rl_gain --markdown  # the same as Markdown (docs/benchmarks.md)

Everything comes from the built-in demo data (`core.data.generate_demo_data`, rl.jsonl generated with 2000
prompts), so it runs offline anywhere:
1. a byte-level BPE tokenizer (vocab 1024) on the demo pretrain + SFT text;
2. prompts: the first `train_prompts` lines of rl.jsonl train; the held-out set is the next `eval_prompts`
   distinct prompts that do not occur in the training part (`core.rl.evaluate.split_prompts`);
3. SFT from scratch of a small model (128 wide, 4 layers) on the demo conversations, half of the questions with
   the RL prompts' answer hints, plus the first `sft_answered` RL *training* prompts replied with the bare
   answer (`core.rl.evaluate.write_hinted_sft`), so the SFT model answers hinted questions in both styles;
4. GRPO and PPO from that checkpoint on the training prompts; reward = exact answer (1/0) + 0.1 × a length
   target that is 1 for any reply ≤ 16 characters (it only separates over-long replies, so it cannot be
   gamed for more than 0.1); rollouts at temperature 1.0;
5. greedy replies on the held-out prompts: mean reward and exact-answer accuracy (reply = answer, or answer as
   its first number/word).
CPU, one thread per run, fixed seeds: the figures repeat on the same machine.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

REWARDS = {"sources": [{"type": "answer", "partial": 0.0},
                       {"type": "length", "weight": 0.1, "min_chars": 0, "max_chars": 16, "tolerance": 16}]}
GRPO = {"prompts": 4, "G": 8, "lr": 5e-4}           # 32 rollouts per step
PPO = {"prompts": 16, "lr": 3e-4, "critic_lr": 1e-3}  # 16 rollouts per step, GAE critic from the policy's backbone
RL_PROMPTS = 2000  # demo rl.jsonl size here: enough distinct held-out prompts after the training part
MODEL = {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
         "max_position_embeddings": 512}


def _lines(src: Path, dst: Path, start: int, n: int) -> Path:
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
        for i, line in enumerate(f):
            if start <= i < start + n:
                out.write(line)
    return dst


def _train(cfg: dict) -> float:
    from core.config.train import validate_train_config
    from core.train import run_training

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the event stream; events.jsonl keeps it
        code = run_training(validate_train_config(cfg))
    if code != 0:
        raise RuntimeError(f"{cfg['method']} run failed (exit {code}); see {cfg['run_dir']}/events.jsonl")
    return time.perf_counter() - t0


def run(sft_steps: int = 400, rl_steps: int = 120, train_prompts: int = 600, eval_prompts: int = 256,
        sft_answered: int = 300, work_dir: str | None = None, sft_run: str | None = None) -> dict:
    """`sft_run`: reuse the SFT run dir of an earlier call (same work_dir layout) instead of training one."""
    import torch

    from core.config.rl import RewardConfig
    from core.data import generate_demo_data
    from core.rl.evaluate import evaluate_policy, split_prompts, write_hinted_sft
    from core.tokenizer import train_tokenizer

    torch.set_num_threads(1)
    work = Path(work_dir or tempfile.mkdtemp(prefix="rl_gain_"))
    demo = generate_demo_data(work / "demo", seed=0, sizes={"rl": RL_PROMPTS})
    train_tokenizer([demo["pretrain"], demo["sft"]], vocab_size=1024, out_dir=work / "tokenizer")
    rl_train, rl_eval = split_prompts(demo["rl"], work / "rl_train.jsonl", work / "rl_eval.jsonl", train_prompts,
                                      eval_prompts)
    answered = _lines(rl_train, work / "sft_answered.jsonl", 0, sft_answered)
    sft_file = write_hinted_sft(demo["sft"], work / "sft_hinted.jsonl", answered=answered)
    common = {"device": "cpu", "precision": "fp32", "log_every": 10, "save_every": 0, "seed": 0}
    sft_dir = Path(sft_run) if sft_run else work / "sft"
    times = {"sft": 0.0 if sft_run else _train({
        **common, "method": "sft", "run_dir": str(sft_dir), "max_steps": sft_steps, "batch_size": 16, "model": MODEL,
        "data": {"files": [str(sft_file)], "max_len": 96, "tokenizer": str(work / "tokenizer")},
        "optim": {"lr": 3e-3, "warmup_steps": 20}})}
    rl_common = {**common, "init": str(sft_dir), "max_steps": rl_steps, "data": {"files": [str(rl_train)]}}
    opts = {"max_new_tokens": 16, "rewards": REWARDS, "sample_every": 10, "temperature": 1.0}
    times["grpo"] = _train({**rl_common, "method": "grpo", "run_dir": str(work / "grpo"), "batch_size": GRPO["prompts"],
                            "optim": {"lr": GRPO["lr"]}, "method_options": {**opts, "num_generations": GRPO["G"]}})
    times["ppo"] = _train({**rl_common, "method": "ppo", "run_dir": str(work / "ppo"), "batch_size": PPO["prompts"],
                           "optim": {"lr": PPO["lr"]}, "method_options": {**opts, "critic_lr": PPO["critic_lr"]}})
    rewards = RewardConfig.model_validate(REWARDS)
    rows = {}
    for name in ("sft", "grpo", "ppo"):
        rows[name] = evaluate_policy(sft_dir if name == "sft" else work / name, [rl_eval], rewards, max_new_tokens=16)
        rows[name]["train_s"] = times[name]
    return {"config": {"sft_steps": sft_steps, "rl_steps": rl_steps, "train_prompts": train_prompts,
                       "eval_prompts": eval_prompts, "sft_answered": sft_answered, "model": MODEL,
                       "rewards": REWARDS, "grpo": GRPO, "ppo": PPO, "temperature": 1.0, "threads": 1},
            "results": rows, "work_dir": str(work)}


def table(result: dict, markdown: bool = False) -> str:
    rows = result["results"]
    head = ["model", "mean reward", "exact-answer accuracy", "reply tokens", "train time (s)"]
    body = [[{"sft": "SFT (before)", "grpo": "SFT + GRPO", "ppo": "SFT + PPO"}[k], f"{r['reward']:.3f}",
             f"{r['accuracy']:.1%}", f"{r['response_length']:.1f}", f"{r['train_s']:.0f}"] for k, r in rows.items()]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head] + body)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sft-steps", type=int, default=400)
    p.add_argument("--rl-steps", type=int, default=120)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--sft-run", help="reuse this SFT run dir (from an earlier --work-dir) instead of training one")
    p.add_argument("--work-dir", help="keep the runs here (default: a new temporary folder)")
    a = p.parse_args()
    res = run(sft_steps=a.sft_steps, rl_steps=a.rl_steps, work_dir=a.work_dir, sft_run=a.sft_run)
    print(json.dumps(res, indent=2) if a.json else table(res, a.markdown))
