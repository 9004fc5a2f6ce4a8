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
    (first number/word), "response_length": mean tokens, "n": prompts} for greedy replies."""
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
            "response_length": sum(lengths) / n, "n": len(items)}


def write_hinted_sft(src: str | Path, dst: str | Path, share: float = 0.5, seed: int = 0) -> Path:
    """Copy an SFT file, appending the demo RL prompts' answer hints (" Answer with a number." / " Answer with
    one word." / "只写答案。") to a `share` of the user turns, replies unchanged. A model SFT'd on it has seen
    RL-style prompts; without it a tiny model derails on the unseen hint and RL starts from near-zero reward."""
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
    return Path(dst)
