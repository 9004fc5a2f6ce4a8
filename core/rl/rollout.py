"""Rollouts: batched KV-cache sampling (core.infer.generate_batch), rewards, and the tensors the losses need.

Layout of a rollout batch (B rows): `[left-padded prompt | completion right-padded]`, width P + C, with an
attention mask, so one forward with `logits_to_keep=C+1` yields the log-prob of every completion token.
`response_mask` (B, C) is 1 on the completion tokens up to and including the stop token.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

from core.rl.losses import entropy_from_logits, token_logprobs


@dataclass
class Rollout:
    input_ids: torch.Tensor          # (B, P+C)
    attention_mask: torch.Tensor     # (B, P+C)
    response_mask: torch.Tensor      # (B, C) float
    prompt_width: int
    prompts: list[str]
    completions: list[str]
    completion_ids: list[list[int]]
    rewards: torch.Tensor            # (B,) total
    breakdown: dict[str, list[float]]
    old_logp: torch.Tensor | None    # (B, C) log-probs under the policy that sampled (the "old" policy); None when
    #                                  each rollout feeds one update: the training pass's detached log-probs are it
    ref_logp: torch.Tensor           # (B, C)
    advantages: torch.Tensor | None = None   # (B, 1) sequence-level or (B, C) token-level
    extras: dict = field(default_factory=dict)  # method-specific (PPO: old values, returns)
    temperature: float = 1.0         # the sampling temperature: log-probs are of softmax(logits / temperature)

    def state_dict(self) -> dict:
        """Plain data for a checkpoint (tensors, numbers, strings, lists, dicts: what the weights-only loader
        accepts), as CPU copies: the live rollout is left as it is, on its device."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extras":
                value = {k: _cpu_copy(v) for k, v in value.items()}
            elif f.name == "breakdown":
                value = {k: [float(x) for x in v] for k, v in value.items()}
            out[f.name] = _cpu_copy(value)
        return out

    @classmethod
    def from_state_dict(cls, state: dict, device) -> "Rollout":
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in state.items()}
        moved["extras"] = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in state["extras"].items()}
        return cls(**moved)

    @property
    def response_lengths(self) -> torch.Tensor:
        return self.response_mask.sum(-1)


def _cpu_copy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, list):
        return [list(v) if isinstance(v, list) else v for v in value]
    return value


def pack_sequences(prompts: list[list[int]], completions: list[list[int]], pad_id: int, device
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(input_ids, attention_mask, response_mask, P) for left-padded prompts + right-padded completions."""
    B = len(prompts)
    P, C = max(len(p) for p in prompts), max(1, max(len(c) for c in completions))
    ids = torch.full((B, P + C), pad_id, dtype=torch.long)
    mask = torch.zeros((B, P + C), dtype=torch.long)
    resp = torch.zeros((B, C), dtype=torch.float32)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, P - len(p):P] = torch.tensor(p, dtype=torch.long)
        mask[i, P - len(p):P] = 1
        if c:
            ids[i, P:P + len(c)] = torch.tensor(c, dtype=torch.long)
            mask[i, P:P + len(c)] = 1
            resp[i, :len(c)] = 1.0
    return ids.to(device), mask.to(device), resp.to(device), P


def response_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_width: int):
    """Logits predicting each completion token: (B, C, V). Positions come from the mask (left padding)."""
    C = input_ids.shape[1] - prompt_width
    out = model(input_ids, attention_mask=attention_mask, logits_to_keep=C + 1)
    logits = out.logits if hasattr(out, "logits") else out
    return logits[:, :-1], out


def scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Logits of the distribution the sampler drew from: logits / T (as TRL's GRPO/PPO trainers). Without it the
    ratio and KL are of the T=1 policy while the samples come from the T≠1 one, a silent off-policy bias."""
    return logits if temperature == 1.0 else logits / temperature


def response_logprobs(model, r: Rollout, with_entropy: bool = False):
    """Per-token log-probs of the completion under `model` at the sampling temperature (B, C), and the mean
    entropy (float) if asked."""
    logits = scaled(response_logits(model, r.input_ids, r.attention_mask, r.prompt_width)[0],
                    getattr(r, "temperature", 1.0))
    logp = token_logprobs(logits, r.input_ids[:, r.prompt_width:])
    if not with_entropy:
        return logp
    with torch.no_grad():
        ent = entropy_from_logits(logits.detach())
        ent = float((ent * r.response_mask).sum() / r.response_mask.sum().clamp(min=1))
    return logp, ent


def sample(policy, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int, temperature: float,
           top_p: float = 1.0, top_k: int = 0, constraints: list | None = None) -> list[list[int]]:
    """Sample one completion per prompt (ids up to and including the stop token); `constraints` (one per prompt,
    core.infer.constraint) limit each draw to what a grammar allows. The log-probs a Rollout keeps are always the
    policy's own, unconstrained ones (docs/rl.md, "Constrained rollouts")."""
    from core.infer import SamplingParams, generate_batch

    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k)
    was_training = policy.training
    policy.eval()  # no dropout while sampling
    try:
        res = generate_batch(policy, prompt_ids, params, pad_id=tokenizer.pad_id, eos_id=tokenizer.eos_id,
                             constraints=constraints)
    finally:
        policy.train(was_training)
    return res.sequences


def make_rollout(policy, reference, tokenizer, rewards, items: list[dict], opts, device, repeats: int = 1,
                 autocast=None, keep_old_logp: bool = True) -> Rollout:
    """Sample `repeats` completions per prompt item, score them, and compute old/reference log-probs.

    `items` are PromptDataset items (prompt_ids, messages, answer, prompt). Rows are grouped by prompt:
    row k·repeats + j is sample j of prompt k (GRPO's groups).
    """
    from core.rl.rewards import RewardInputs

    items = [it for it in items for _ in range(repeats)]
    prompts = [list(it["prompt_ids"])[-opts.max_prompt_len:] for it in items]
    with torch.no_grad():
        completions = sample(policy, tokenizer, prompts, opts.max_new_tokens, opts.temperature, opts.top_p,
                             opts.top_k)
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in completions]
    total, breakdown = rewards(RewardInputs(texts, [it.get("answer") for it in items],
                                            [it["messages"] for it in items], completions))
    return score_rollout(policy, reference, tokenizer, [it["prompt"] for it in items], prompts, completions, texts,
                         total, breakdown, opts.temperature, device, autocast, keep_old_logp=keep_old_logp)


def score_rollout(policy, reference, tokenizer, prompt_texts: list[str], prompts: list[list[int]],
                  completions: list[list[int]], texts: list[str], total: torch.Tensor, breakdown: dict,
                  temperature: float, device, autocast=None, completion_masks: list[list[int]] | None = None,
                  keep_old_logp: bool = True) -> Rollout:
    """Pack sampled completions with their rewards and the old/reference log-probs into a Rollout.
    `completion_masks` (1 = a token the policy generated) leaves other completion tokens (tool responses, template
    glue of multi-turn episodes) out of the loss and the KL; default: every completion token counts.
    `keep_old_logp=False` skips the policy's scoring pass: when a rollout feeds exactly one update, the policy that
    sampled is the policy being trained, and the training pass's own log-probs, detached, are the old ones (same
    weights, same numbers; `old_logprobs`). One forward in three saved per step, as TRL does."""
    import contextlib

    ids, mask, resp, P = pack_sequences(prompts, completions, tokenizer.pad_id, device)
    if completion_masks is not None:
        for i, m in enumerate(completion_masks):
            resp[i, :len(m)] = torch.tensor(m, dtype=resp.dtype, device=resp.device)
    ctx = autocast() if autocast is not None else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        old = token_logprobs(scaled(response_logits(policy, ids, mask, P)[0], temperature), ids[:, P:]).float() \
            if keep_old_logp else None
        ref = token_logprobs(scaled(response_logits(reference, ids, mask, P)[0], temperature), ids[:, P:])
    return Rollout(ids, mask, resp, P, prompt_texts, texts, completions, total.to(device), breakdown, old,
                   ref.float(), temperature=temperature)


def old_logprobs(r: Rollout, logp: torch.Tensor) -> torch.Tensor:
    """The sampling policy's log-probs: stored, or (one update per rollout) the training pass's, detached."""
    return r.old_logp if r.old_logp is not None else logp.detach()
