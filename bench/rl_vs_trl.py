"""GRPO against TRL: our GRPO and TRL's `GRPOTrainer` on the same model, prompts, reward code and settings.

    python -m bench.rl_vs_trl                       # 3 seeds × 40 steps: the table and the reward curves
    python -m bench.rl_vs_trl --markdown            # the same as Markdown (docs/benchmarks.md)
    python -m bench.rl_vs_trl --steps 10 --seeds 0  # a cheaper look

The set-up is bench/rl_gain.py's (its tokenizer, demo prompts, hinted SFT run, `REWARDS` and `GRPO` settings):
1. one SFT run (seed 0); `core.export.hf.export_hf` writes it as a transformers folder (`LlamaForCausalLM`: a dense
   model without QK-norm), checked here to give our logits to 1e-4 and our prompt token ids exactly;
2. per seed, interleaved (ours then TRL's): GRPO from that model on the training prompts, the same seed. Both
   samplers draw the same prompt order from the seed (`torch.randperm` with a generator seeded by it), so step k of
   both sides trains on the same prompts, which the bench checks from what each side logged;
3. TRL's reward function is `core.rl.rewards.RewardCombiner`, the code our recipe calls, fed the completion ids
   decoded by our tokenizer as our rollout does;
4. TRL's final model is imported back (`core.export.imports.import_checkpoint`) and both sides are scored by
   `bench.rl_gain.score_prompts` (greedy, exact answer) on held-out prompts: bench.rl_gain's validation split
   (the first 256 distinct prompts after the training ones; its test split is left for its own single report,
   as issue 23 asks), and gains are paired with the SFT model per prompt (`bench.rl_gain.paired`, 95 % bootstrap interval), and "ours − TRL" pairs the two sides.

Time per step is measured the same way on both sides: from the start of training (our `run_started` event, TRL's
`on_train_begin`) to the end of the last optimizer step (our last `metric` event, TRL's last `on_step_end`),
divided by the steps: model loading, the export and the final save are outside it. CPU, one thread.

What is matched, and what differs, is in `settings()` and docs/benchmarks.md ("GRPO against TRL").
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import tempfile
import time
from pathlib import Path

from bench.common import grid, machine_info, paired_text
from bench.rl_gain import GRPO, MODEL, REWARDS, paired, prepare, rl_config, score_prompts, sft_config, train_run

KL_COEF = 0.02  # our default kl_coef (k3 estimator on both sides; TRL's `beta`)
SCALE_REWARDS = "group"  # divide by the group's reward std on both sides
SIDES = ("ours", "trl")
METRICS = ("accuracy", "reward")


def settings(steps: int) -> dict:
    """The shared hyper-parameters, in one place, from which both sides' configs are built."""
    return {"prompts_per_step": GRPO["prompts"], "group_size": GRPO["G"], "lr": GRPO["lr"], "kl_coef": KL_COEF,
            "steps": steps, "max_new_tokens": 16, "max_prompt_len": 128, "temperature": 1.0, "clip": 0.2,
            "loss": "grpo", "scale_rewards": SCALE_REWARDS, "updates_per_rollout": 1, "schedule": "constant",
            "weight_decay": 0.0, "grad_clip": 1.0, "adam_betas": [0.9, 0.999], "adam_eps": 1e-8}


# ---- our side ---------------------------------------------------------------------------------------------------

def ours_config(run_dir: Path, sft_dir: Path, prompts: Path, s: dict, seed: int) -> dict:
    cfg = rl_config("grpo", run_dir, sft_dir, prompts, s["steps"], seed)
    rollouts = s["prompts_per_step"] * s["group_size"]
    if rollouts > 64:  # a `sample` event holds at most 64: the prompts of a step could no longer be checked
        raise ValueError(f"{rollouts} rollouts per step; the bench checks the prompts of a step up to 64")
    cfg["log_every"] = 1  # the reward curve: one metric event per step
    cfg["batch_size"] = s["prompts_per_step"]
    cfg["optim"] = {"lr": s["lr"], "schedule": s["schedule"], "weight_decay": s["weight_decay"],
                    "grad_clip": s["grad_clip"], "betas": s["adam_betas"], "eps": s["adam_eps"], "warmup_steps": 0}
    cfg["method_options"].update(
        num_generations=s["group_size"], kl_coef=s["kl_coef"], max_new_tokens=s["max_new_tokens"],
        max_prompt_len=s["max_prompt_len"], temperature=s["temperature"], clip=s["clip"], loss=s["loss"],
        **advantage_scale(s["scale_rewards"]), updates_per_rollout=s["updates_per_rollout"],
        # every rollout of every step goes into a `sample` event: which prompts each step trained on
        sample_every=1, samples_logged=rollouts)
    return cfg


def advantage_scale(scale: str) -> dict:
    """Our options for TRL's `scale_rewards`: "group" | "batch" | "none" with no std floor (TRL has none, only its
    + 1e-4), or, on a GRPOConfig from before the choice existed, the bool that meant group (True) or none."""
    from core.config.rl import GRPOConfig

    if "std_floor" in GRPOConfig.model_fields:
        return {"scale_rewards": scale, "std_floor": 0.0}
    if scale == "batch":
        raise ValueError("this GRPOConfig has no batch-std advantage scaling; use scale_rewards 'group' or 'none'")
    return {"scale_rewards": scale == "group"}


def train_ours(cfg: dict) -> dict:
    """Run our GRPO; read back its reward curve, the prompts of each step and the time per step."""
    train_run(cfg)
    events = [json.loads(line) for line in open(Path(cfg["run_dir"]) / "events.jsonl", encoding="utf-8")]
    start = next(e["time"] for e in events if e["type"] == "run_started")
    metrics = [e for e in events if e["type"] == "metric"]
    steps = {e["step"]: [s["prompt"] for s in e["samples"]] for e in events if e["type"] == "sample"}
    return {"reward_curve": [e["metrics"]["reward/mean"] for e in metrics],
            "step_prompts": [_distinct(steps[k]) for k in sorted(steps)],
            "steps": len(metrics), "step_s": (metrics[-1]["time"] - start) / len(metrics), "checkpoint": cfg["run_dir"]}


def _distinct(prompts: list[str]) -> list[str]:
    return list(dict.fromkeys(prompts))


# ---- TRL's side -------------------------------------------------------------------------------------------------

def trl_args(out_dir: Path, s: dict, seed: int):
    """TRL's GRPOConfig with every setting that has a counterpart on our side set to it explicitly."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(out_dir), seed=seed, max_steps=s["steps"], learning_rate=s["lr"],
        # one optimizer step = prompts_per_step × group_size completions, generated once and used once
        per_device_train_batch_size=s["prompts_per_step"] * s["group_size"], gradient_accumulation_steps=1,
        num_generations=s["group_size"], num_iterations=s["updates_per_rollout"], steps_per_generation=1,
        max_completion_length=s["max_new_tokens"], temperature=s["temperature"], top_p=1.0, top_k=0,
        beta=s["kl_coef"], epsilon=s["clip"], loss_type=s["loss"], scale_rewards=s["scale_rewards"],
        lr_scheduler_type=s["schedule"], warmup_steps=0, weight_decay=s["weight_decay"],
        max_grad_norm=s["grad_clip"], adam_beta1=s["adam_betas"][0], adam_beta2=s["adam_betas"][1],
        adam_epsilon=s["adam_eps"], optim="adamw_torch",
        use_cpu=True, bf16=False, fp16=False, activation_checkpointing=False, use_vllm=False,
        logging_steps=1, save_strategy="no", report_to="none", log_completions=False, disable_tqdm=True,
        dataloader_num_workers=0, shuffle_dataset=True)


def trl_dataset(items: list[dict]):
    """Our prompt items as TRL rows: the prompt text our chat template rendered, and the answer column the
    reward reads. (Plain text, not messages: TRL then tokenizes it as it is, with no template of its own.)"""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": it["prompt"], "answer": it["answer"]} for it in items])


class RewardLog:
    """TRL's reward function: our RewardCombiner over the completions decoded by our tokenizer (as our rollout
    decodes them). Records the mean reward and the prompts of each call (one call per optimizer step here)."""

    __name__ = "minimind_reward"  # TRL names the function's metrics after it

    def __init__(self, rewards_cfg, tokenizer):
        from core.rl.rewards import RewardCombiner

        self.combiner, self.tokenizer = RewardCombiner(rewards_cfg), tokenizer
        self.curve, self.step_prompts, self.text_mismatches = [], [], 0

    def __call__(self, prompts, completions, completion_ids, answer, **_) -> list[float]:
        from core.rl.rewards import RewardInputs

        texts = [self.tokenizer.decode(ids, skip_special_tokens=True) for ids in completion_ids]
        self.text_mismatches += sum(a != b for a, b in zip(texts, completions))
        total, _ = self.combiner(RewardInputs(texts, list(answer), [], [list(c) for c in completion_ids]))
        self.curve.append(float(total.mean()))
        self.step_prompts.append(_distinct(prompts))
        return total.tolist()


def _step_clock():
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.start, self.ends = None, []

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    return StepClock()


def train_trl(hf_dir: Path, items: list[dict], rewards_cfg, tokenizer, out_dir: Path, s: dict, seed: int) -> dict:
    """Run TRL's GRPOTrainer from the exported model and import its result back as our checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from core.export.imports import import_checkpoint

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype="float32")
    processing = AutoTokenizer.from_pretrained(hf_dir)
    reward, clock = RewardLog(rewards_cfg, tokenizer), _step_clock()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=trl_args(out_dir / "trainer", s, seed),
                          train_dataset=trl_dataset(items), processing_class=processing, callbacks=[clock])
    with contextlib.redirect_stdout(io.StringIO()):  # the trainer prints its logs; log_history keeps them
        trainer.train()
    hf_out = out_dir / "hf"
    trainer.save_model(str(hf_out))
    ckpt = out_dir / "checkpoint"
    import_checkpoint(hf_out, ckpt, tokenizer_dir=hf_dir)
    steps = trainer.state.global_step
    return {"reward_curve": reward.curve, "step_prompts": reward.step_prompts, "steps": steps,
            "step_s": (clock.ends[-1] - clock.start) / steps, "checkpoint": str(ckpt),
            "text_mismatches": reward.text_mismatches}


# ---- the shared model -------------------------------------------------------------------------------------------

def export_checked(sft_dir: Path, hf_dir: Path, items: list[dict]) -> dict:
    """Export the SFT model for transformers and check that both libraries see the same model and the same
    prompts: logits to 1e-4 on a few prompts, and TRL's tokenization (the HF tokenizer on the prompt text) giving
    our prompt ids for every prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.export.hf import export_hf
    from core.model.io import load_model

    info = export_hf(sft_dir, hf_dir)
    ours, _ = load_model(sft_dir)
    theirs = AutoModelForCausalLM.from_pretrained(hf_dir, dtype="float32").eval()
    worst = 0.0
    with torch.no_grad():
        for it in items[:4]:
            ids = torch.tensor([it["prompt_ids"]])
            a, b = ours(ids), theirs(ids)
            a = a.logits if hasattr(a, "logits") else a
            worst = max(worst, float((a - b.logits).abs().max()))
    if worst > 1e-4:
        raise RuntimeError(f"{hf_dir}: the exported model's logits differ from ours by {worst:.2g}")
    hf_tok = AutoTokenizer.from_pretrained(hf_dir)
    bad = [i for i, it in enumerate(items) if hf_tok(it["prompt"])["input_ids"] != list(it["prompt_ids"])]
    if bad:
        raise RuntimeError(f"{hf_dir}: the HF tokenizer gives other prompt ids than ours for {len(bad)} prompts "
                           f"(first: #{bad[0]})")
    return {**info, "max_logit_diff": worst}


# ---- the run ----------------------------------------------------------------------------------------------------

def _quiet_hf() -> None:
    """No progress bars or info logs from transformers and TRL in the bench's output."""
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("trl").setLevel(logging.ERROR)


def run(steps: int = 40, seeds: tuple[int, ...] = (0, 1, 2), sft_steps: int = 400, train_prompts: int = 600,
        held_out: int = 256, sft_answered: int = 300, model: dict | str = MODEL, work_dir: str | None = None) -> dict:
    import torch

    from core.config.rl import RewardConfig
    from core.data import PromptDataset
    from core.model.io import load_tokenizer, resolve_checkpoint

    torch.set_num_threads(1)
    _quiet_hf()
    s = settings(steps)
    work = Path(work_dir or tempfile.mkdtemp(prefix="rl_vs_trl_"))
    files = prepare(work, train_prompts, held_out, 0, sft_answered)
    sft_dir = work / "sft"
    train_run(sft_config(sft_dir, files["sft"], work / "tokenizer", sft_steps, model))
    tok = load_tokenizer(resolve_checkpoint(sft_dir))
    items = PromptDataset([files["train"]], tok, s["max_prompt_len"]).items
    export = export_checked(sft_dir, work / "sft_hf", items)
    rewards = RewardConfig.model_validate(REWARDS)
    runs = {side: {} for side in SIDES}
    for seed in seeds:
        runs["ours"][seed] = train_ours(ours_config(work / f"ours-seed{seed}", sft_dir, files["train"], s, seed))
        runs["trl"][seed] = train_trl(work / "sft_hf", items, rewards, tok, work / f"trl-seed{seed}", s, seed)
        if torch.get_num_threads() != 1:  # TRL / accelerate must not have changed the thread count under us
            raise RuntimeError(f"torch threads changed to {torch.get_num_threads()} during the TRL run")
    scores = {"sft": score_prompts(sft_dir, files["validation"], rewards)}
    for side in SIDES:
        scores[side] = {seed: score_prompts(Path(r["checkpoint"]), files["validation"], rewards)
                        for seed, r in runs[side].items()}
    return {"config": {**s, "seeds": list(seeds), "sft_steps": sft_steps, "train_prompts": train_prompts,
                       "held_out": held_out, "model": model, "rewards": REWARDS, "threads": 1,
                       "export": export, "machine": machine_info()},
            "results": summarise(scores, runs), "work_dir": str(work)}


def summarise(scores: dict, runs: dict) -> dict:
    """Per side: accuracy and reward per seed, paired gains over SFT, time per step, reward curve (mean over seeds),
    steps trained and the prompts of each step; plus the paired difference ours − TRL."""
    import numpy as np

    base = scores["sft"]
    out = {"sft": {m: float(np.mean(base[m])) for m in METRICS}}
    for side in SIDES:
        by_seed = scores[side]
        r = runs[side]
        out[side] = {
            **{m: {"mean": float(np.mean([np.mean(x[m]) for x in by_seed.values()])),
                   "seeds": [float(np.mean(x[m])) for x in by_seed.values()]} for m in METRICS},
            "vs_sft": {m: paired([x[m] for x in by_seed.values()], base[m]) for m in METRICS},
            "step_s": {"mean": float(np.mean([x["step_s"] for x in r.values()])),
                       "seeds": [x["step_s"] for x in r.values()]},
            "reward_curve": [float(v) for v in np.mean([x["reward_curve"] for x in r.values()], axis=0)],
            "steps": [x["steps"] for x in r.values()],
            # TRL's own decoding of the completions that ours (which the reward reads) decoded otherwise
            "text_mismatches": [x.get("text_mismatches", 0) for x in r.values()],
            "step_prompts": {seed: x["step_prompts"] for seed, x in r.items()}}
    out["ours_minus_trl"] = {m: paired([x[m] for x in scores["ours"].values()],
                                       list(np.mean([x[m] for x in scores["trl"].values()], axis=0)))
                             for m in METRICS}
    out["same_prompts"] = all(out["ours"]["step_prompts"][k] == out["trl"]["step_prompts"][k]
                              for k in out["ours"]["step_prompts"])
    return out


# ---- output -----------------------------------------------------------------------------------------------------

def table(result: dict, markdown: bool = False) -> str:
    res, n = result["results"], len(result["config"]["seeds"])
    head = ["side", "held-out accuracy (per seed)", "Δ accuracy vs SFT [95% CI]", "Δ reward vs SFT [95% CI]",
            "s / step (per seed)", "final reward"]
    body = [["SFT (start)", f"{res['sft']['accuracy']:.1%}", "–", "–", "–", "–"]]
    name = {"ours": f"ours ({n} seeds)", "trl": f"TRL GRPOTrainer ({n} seeds)"}
    for side in SIDES:
        r = res[side]
        acc = f"{r['accuracy']['mean']:.1%} (" + ", ".join(f"{x:.1%}" for x in r["accuracy"]["seeds"]) + ")"
        t = f"{r['step_s']['mean']:.2f} (" + ", ".join(f"{x:.2f}" for x in r["step_s"]["seeds"]) + ")"
        tail = r["reward_curve"][-max(1, len(r["reward_curve"]) // 5):]  # mean over the last fifth of the steps
        body.append([name[side], acc, paired_text(r["vs_sft"]["accuracy"], True), paired_text(r["vs_sft"]["reward"], False), t,
                     f"{sum(tail) / len(tail):.3f}"])
    d = res["ours_minus_trl"]
    ratio = res["ours"]["step_s"]["mean"] / res["trl"]["step_s"]["mean"]
    body.append(["ours − TRL (paired)", "–", paired_text(d["accuracy"], True), paired_text(d["reward"], False),
                 f"× {ratio:.2f}", "–"])
    return grid(head, body, markdown)


def curve_table(result: dict, every: int = 5, markdown: bool = False) -> str:
    """Mean reward per step (over seeds) of each side, every `every` steps and the last."""
    res = result["results"]
    n = len(res["ours"]["reward_curve"])
    steps = sorted({*range(every, n + 1, every), 1, n})
    body = [[str(k), f"{res['ours']['reward_curve'][k - 1]:.3f}", f"{res['trl']['reward_curve'][k - 1]:.3f}"]
            for k in steps]
    return grid(["step", "ours: mean reward", "TRL: mean reward"], body, markdown)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=40, help="GRPO steps of each side (default 40)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sft-steps", type=int, default=400)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--work-dir", help="keep the runs here (default: a new temporary folder)")
    a = p.parse_args(argv)
    res = run(steps=a.steps, seeds=tuple(a.seeds), sft_steps=a.sft_steps, work_dir=a.work_dir)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    print(table(res, a.markdown) + "\n")
    print(curve_table(res, markdown=a.markdown) + "\n")
    print(f"same prompts at every step on both sides: {res['results']['same_prompts']}")
    return 0 if all(math.isfinite(x) for x in res["results"]["ours"]["reward_curve"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
