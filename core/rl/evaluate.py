"""Greedy evaluation of a policy on prompts with verifiable answers: mean reward and exact-answer accuracy.

Used by the RL tests and `bench/rl_gain.py`; the recipes' eval events compute the same numbers in-run.
"""
from __future__ import annotations

from pathlib import Path

import torch


@torch.no_grad()
def evaluate_policy(checkpoint: str | Path, prompt_files: list[str | Path], rewards_cfg, limit: int | None = None,
                    max_new_tokens: int = 32, batch_size: int = 32, max_prompt_len: int = 128) -> dict:
    """{"reward": mean total reward, "accuracy": share of answered prompts whose reply is exactly the answer
    (first number/word), "response_length": mean tokens, "n": prompts, "per_prompt": each prompt's total reward}
    for greedy replies."""
    from core.data import PromptDataset
    from core.model.io import load_model
    from core.rl.rewards import RewardCombiner, RewardInputs, answer_score
    from core.rl.rollout import sample

    model, tok = load_model(checkpoint)
    ds = PromptDataset(prompt_files, tok, max_prompt_len)
    items = [ds[i] for i in range(len(ds) if limit is None else min(limit, len(ds)))]
    combiner = RewardCombiner(rewards_cfg)
    rewards, correct, answered, lengths = [], 0, 0, []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        outs = sample(model, tok, [it["prompt_ids"] for it in chunk], max_new_tokens, 0.0)
        texts = [tok.decode(o, skip_special_tokens=True) for o in outs]
        total, _ = combiner(RewardInputs(texts, [it.get("answer") for it in chunk], [it["messages"] for it in chunk],
                                         outs))
        rewards += total.tolist()
        lengths += [len(o) for o in outs]
        for it, text in zip(chunk, texts):
            if it.get("answer") is not None:
                answered += 1
                correct += answer_score(text, str(it["answer"]), 0.0) == 1.0
    n = max(len(items), 1)
    return {"reward": sum(rewards) / n, "accuracy": correct / max(answered, 1),
            "response_length": sum(lengths) / n, "n": len(items), "per_prompt": rewards}


def split_prompts(src: str | Path, train_dst: str | Path, eval_dst: str | Path, n_train: int, n_eval: int
                  ) -> tuple[Path, Path]:
    """Train = the first `n_train` records of an RL prompt file; eval = the next `n_eval` records whose prompt
    text occurs neither in the train part nor earlier in eval. The demo generator repeats questions (there are
    only 12 colour facts), so a plain line split would "hold out" prompts the policy was trained on."""
    import json

    def key(rec: dict) -> str:
        return json.dumps(rec["conversations"], ensure_ascii=False, sort_keys=True)

    with open(src, encoding="utf-8") as f:
        recs = [json.loads(line) for line in f if line.strip()]
    train, seen, held = recs[:n_train], {key(r) for r in recs[:n_train]}, []
    for rec in recs[n_train:]:
        if len(held) < n_eval and key(rec) not in seen:
            held.append(rec)
            seen.add(key(rec))
    if len(held) < n_eval:
        raise ValueError(f"{src}: only {len(held)} distinct held-out prompts after the first {n_train}, "
                         f"{n_eval} asked; generate more (generate_demo_data sizes={{'rl': ...}}) or ask fewer")
    for dst, part in ((train_dst, train), (eval_dst, held)):
        Path(dst).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return Path(train_dst), Path(eval_dst)


def write_hinted_sft(src: str | Path, dst: str | Path, share: float = 0.5, seed: int = 0,
                     answered: str | Path | None = None) -> Path:
    """Copy an SFT file, appending the demo RL prompts' answer hints (" Answer with a number." / " Answer with
    one word." / "只写答案。") to a `share` of the user turns, replies unchanged. A model SFT'd on it has seen
    RL-style prompts; without it a tiny model derails on the unseen hint and RL starts from near-zero reward.

    `answered`: an RL prompt file (RL *training* prompts, never the held-out ones) whose prompts are added as
    conversations replied with the bare answer. The SFT model then answers a hinted question sometimes with the
    bare answer and sometimes with the full sentence ("3 + 4 = 7."), so sampled groups differ in exact-answer
    reward and RL has a signal to sharpen; without it exact answers are rare and most groups score all-zero."""
    import json
    import random

    rng = random.Random(seed)
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
        for line in f:
            rec = json.loads(line)
            conv = rec["conversations"]
            for i, m in enumerate(conv[:-1]):
                if m["role"] == "user" and conv[i + 1]["role"] == "assistant" and rng.random() < share:
                    reply, text = conv[i + 1]["content"], m["content"]
                    if not text.isascii():
                        m["content"] = text + "只写答案。"
                    else:
                        m["content"] = text + (" Answer with a number." if any(c.isdigit() for c in reply)
                                               else " Answer with one word.")
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        if answered is not None:
            with open(answered, encoding="utf-8") as f:
                for line in f:
                    rec = json.loads(line)
                    if rec.get("answer") is not None:
                        conv = [m for m in rec["conversations"] if m["role"] != "assistant" or m["content"]]
                        conv.append({"role": "assistant", "content": str(rec["answer"])})
                        out.write(json.dumps({"conversations": conv}, ensure_ascii=False) + "\n")
    return Path(dst)
