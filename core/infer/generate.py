"""Text generation with the torch model: KV-cache decoding, streaming, and batched rollouts.

Single sequence: one prefill over the prompt (SDPA, causal), then one token per forward pass on top of the
KV cache. `decode_loop` is backend-agnostic: it asks a `Stepper` for next-token logits, picks a token with
`core.infer.sampling`, and feeds it to a `TextStream` (incremental detokenization + stops), so the llama.cpp
backend reuses it unchanged.

Batched (`generate_batch`, used for RL rollouts): prompts are left-padded to one length with an attention
mask; the model derives positions from the mask, so every row sees exactly the positions it would see
alone. Rows that reached a stop id are removed from the batch and the KV cache every few tokens.

Both write the KV cache in place (core.model.model.KVCache): a cache grown by torch.cat copies all of it at
every token.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

import torch

from core.infer.sampling import SamplingParams, choose_tokens, make_generator
from core.infer.text import TextStream
from core.model.model import KVCache

# generate_batch reads which rows finished once every this many tokens (a host sync each time) when decoding
# greedily; sampled rows are checked at every token, because the random numbers a row draws depend on which rows
# are still in the batch, and a later check would change every seeded rollout stream
FINISHED_CHECK_EVERY = 8


class Stepper(Protocol):
    """Produces next-token logits (1-D float tensor over the vocabulary) for one growing sequence."""

    def prefill(self, ids: list[int]) -> torch.Tensor: ...

    def step(self, token_id: int) -> torch.Tensor: ...


class TorchStepper:
    """KV-cached decoding with a MiniMindForCausalLM; `use_cache=False` re-runs the whole sequence each step
    (the reference the cache is tested against)."""

    def __init__(self, model, use_cache: bool = True):
        self.model, self.use_cache = model, use_cache
        self.device = next(model.parameters()).device
        self._past = None
        self._ids: list[int] = []

    @torch.inference_mode()
    def _forward(self, ids: list[int], past) -> torch.Tensor:
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.model(x, past_key_values=past, use_cache=self.use_cache, logits_to_keep=1)
        self._past = out.past_key_values if self.use_cache else None
        return out.logits[0, -1].float()

    def prefill(self, ids: list[int]) -> torch.Tensor:
        if not ids:
            raise ValueError("cannot generate from an empty prompt; give at least one token")
        self._ids = list(ids)
        return self._forward(self._ids, KVCache() if self.use_cache else None)

    def step(self, token_id: int) -> torch.Tensor:
        self._ids.append(token_id)
        if self.use_cache:
            return self._forward([token_id], self._past)
        return self._forward(self._ids, None)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]          # every sampled id, the stop id included
    finish_reason: str            # "stop" | "length"
    usage: Usage = field(default_factory=Usage)


def decode_loop(stepper: Stepper, prompt_ids: list[int], params: SamplingParams,
                decode: Callable[[list[int]], str], eos_id: int = 2, vocab_size: int | None = None,
                max_positions: int | None = None, stats: Usage | None = None,
                on_finish: Callable[[TextStream], None] | None = None, constraint=None) -> Iterator[str]:
    """Yield text pieces until a stop id/string or the token budget; `stats` (if given) is filled in.

    The budget is min(max_new_tokens, max_positions - len(prompt)) so the model's position table is never
    exceeded. `on_finish` receives the TextStream (text, ids, finish_reason) when generation ends. `constraint`
    (core.infer.constraint) removes the tokens its grammar forbids before each draw.
    """
    stream = TextStream(decode, stop=params.stop, stop_ids=params.resolved_stop_ids(eos_id))
    budget = params.max_new_tokens
    if max_positions is not None:
        budget = min(budget, max_positions - len(prompt_ids))
        if budget < 1:
            raise ValueError(f"the prompt has {len(prompt_ids)} tokens, the model's context is {max_positions}: "
                             "no room to generate; shorten the conversation")
    stats = stats if stats is not None else Usage()
    stats.prompt_tokens = len(prompt_ids)
    generator = make_generator(params.seed)
    seen = None
    t0 = time.perf_counter()
    logits = stepper.prefill(prompt_ids)
    stats.prefill_s = time.perf_counter() - t0
    if params.repetition_penalty != 1.0:
        seen = torch.zeros(1, vocab_size or logits.shape[-1], dtype=torch.bool)
        seen[0, torch.tensor(prompt_ids)] = True
    t0 = time.perf_counter()
    try:
        for n in range(budget):
            if constraint is not None:
                logits = constraint.mask(logits.cpu())
            token = int(choose_tokens(logits[None].cpu(), params, seen, generator)[0])
            stats.completion_tokens = n + 1
            piece = stream.push(token)
            if piece:
                yield piece
            if stream.done:
                break
            if constraint is not None:
                constraint.accept(token)
            if seen is not None:
                seen[0, token] = True
            if n + 1 < budget:
                logits = stepper.step(token)
        if not stream.done:
            piece = stream.finish("length")
            if piece:
                yield piece
    finally:
        stats.decode_s = time.perf_counter() - t0
        if on_finish is not None and stream.done:
            on_finish(stream)


def _tokenizer_decode(tokenizer) -> Callable[[list[int]], str]:
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)


def stream_generate(model, tokenizer, prompt_ids: list[int], params: SamplingParams | None = None,
                    use_cache: bool = True, stats: Usage | None = None) -> Iterator[str]:
    """Stream the completion of `prompt_ids` as text pieces that never split a character."""
    params = params or SamplingParams()
    return decode_loop(TorchStepper(model, use_cache), prompt_ids, params, _tokenizer_decode(tokenizer),
                       eos_id=tokenizer.eos_id, vocab_size=model.config.vocab_size,
                       max_positions=model.config.max_position_embeddings, stats=stats)


def generate(model, tokenizer, prompt_ids: list[int], params: SamplingParams | None = None,
             use_cache: bool = True) -> GenerationResult:
    """Complete `prompt_ids`; returns the text, the sampled ids, why it stopped and token counts."""
    params = params or SamplingParams()
    stats, done = Usage(), {}
    pieces = list(decode_loop(TorchStepper(model, use_cache), prompt_ids, params, _tokenizer_decode(tokenizer),
                              eos_id=tokenizer.eos_id, vocab_size=model.config.vocab_size,
                              max_positions=model.config.max_position_embeddings, stats=stats,
                              on_finish=lambda s: done.update(ids=list(s.ids), reason=s.finish_reason)))
    return GenerationResult("".join(pieces), done["ids"], done["reason"], stats)


def set_rope_scaling(model, enabled: bool) -> None:
    """Switch YaRN (the config's rope_scaling, MiniMind defaults when unset) on or off at inference time;
    rebuilds the RoPE tables in place. Training never uses it (MiniMind's `--inference_rope_scaling`)."""
    model.model.set_rope_scaling(enabled)


# ---------------------------------------------------------------------------------------------- batched
@dataclass
class BatchResult:
    """Per prompt: the generated ids (up to and including the stop id), their log-probabilities under the
    model's unmodified distribution (temperature 1, no filters, no constraint; None unless asked), and why each
    ended."""
    sequences: list[list[int]]
    finish_reasons: list[str]
    logprobs: list[list[float]] | None = None


def _constrained(logits: torch.Tensor, rows: torch.Tensor, constraints: list) -> torch.Tensor:
    """`logits` (rows still decoding, V) with each row's constraint applied (the mask is computed on the CPU)."""
    out = logits.clone()
    for i, row in enumerate(rows.tolist()):
        if constraints[row] is not None:
            out[i] = constraints[row].mask(logits[i].cpu()).to(out.device)
    return out


def left_pad(prompt_ids_list: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, width) ids left-padded with `pad_id`, and the attention mask (1 = real token). The model derives
    positions from the mask, so each row sees the positions it would see alone."""
    B, width = len(prompt_ids_list), max(len(p) for p in prompt_ids_list)
    ids = torch.full((B, width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((B, width), dtype=torch.long, device=device)
    for row, prompt in enumerate(prompt_ids_list):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long, device=device)
        mask[row, width - len(prompt):] = 1
    return ids, mask


@torch.inference_mode()
def generate_batch(model, prompt_ids_list: list[list[int]], params: SamplingParams | None = None,
                   pad_id: int = 0, eos_id: int = 2, return_logprobs: bool = False,
                   generator: torch.Generator | None = None, constraints: list | None = None,
                   check_every: int | None = None) -> BatchResult:
    """Generate for several prompts at once (left padding + attention mask, one KV cache for the batch).

    Rows that reached a stop id leave the batch (and its KV cache) every `check_every` tokens, so a long tail
    of unfinished rollouts does not pay for the finished ones; reading which rows finished is a host sync.
    Until then a finished row is decoded along, and what it samples is dropped. Default: every
    FINISHED_CHECK_EVERY tokens when greedy, every token when sampling (which keeps the seeded streams as they
    were; pass a larger value to trade that for fewer syncs).

    Stops on stop token ids only (`params.stop_token_ids`, eos by default); stop *strings* are a text-level
    matter handled by `stream_generate`/backends. Greedy rows equal per-prompt `generate` (tested). Sampling
    uses one RNG for the whole batch (`params.seed`, or pass `generator` to continue a stream of rollouts);
    which draws a row gets depends on the rows decoded beside it, hence on `check_every`.
    Memory: one (B, K, S, D) key and value tensor per layer, S = longest prompt + max_new_tokens.
    `constraints`: one per prompt (core.infer.constraint, None for a free row), applied to that row's draws.
    """
    params = params or SamplingParams()
    if not prompt_ids_list or any(len(p) == 0 for p in prompt_ids_list):
        raise ValueError("generate_batch needs a non-empty list of non-empty prompts")
    check_every = check_every or (FINISHED_CHECK_EVERY if params.greedy else 1)
    if constraints is not None:  # constraints read every row's token anyway: finished rows leave at once
        check_every = 1
    device = next(model.parameters()).device
    B, width = len(prompt_ids_list), max(len(p) for p in prompt_ids_list)
    budget = min(params.max_new_tokens, model.config.max_position_embeddings - width)
    if budget < 1:
        raise ValueError(f"longest prompt ({width} tokens) leaves no room in the context "
                         f"({model.config.max_position_embeddings})")
    ids, mask = left_pad(prompt_ids_list, pad_id, device)
    stop_ids = torch.tensor(sorted(params.resolved_stop_ids(eos_id)), dtype=torch.long, device=device)
    gen = generator if generator is not None else make_generator(params.seed, device)
    seen = None
    if params.repetition_penalty != 1.0:
        # scatter_add, not scatter_: a pad column (id 0) must not overwrite a real id 0 in the same row
        seen = torch.zeros(B, model.config.vocab_size, dtype=torch.long, device=device).scatter_add_(1, ids, mask) > 0

    full_mask = torch.cat([mask, torch.ones((B, budget), dtype=mask.dtype, device=device)], dim=1)
    cache = KVCache(capacity=width + budget)
    out = model(ids, attention_mask=mask, past_key_values=cache, use_cache=True, logits_to_keep=1)
    logits = out.logits[:, -1].float()
    tokens = torch.full((B, budget), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros((B, budget), dtype=torch.float32, device=device) if return_logprobs else None
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    lengths = torch.full((B,), budget, dtype=torch.long, device=device)
    rows = torch.arange(B, device=device)  # original index of each row still being decoded
    for t in range(budget):
        drawn_from = logits if constraints is None else _constrained(logits, rows, constraints)
        nxt = choose_tokens(drawn_from, params, seen, gen)
        tokens[rows, t] = nxt
        if logps is not None:
            logps[rows, t] = logits.log_softmax(-1).gather(1, nxt[:, None]).squeeze(1)
        # a row's first stop id sets its length; what a finished row samples until it leaves is never read
        hit = torch.isin(nxt, stop_ids) & ~finished[rows]
        if constraints is not None:
            for row, token, stop in zip(rows.tolist(), nxt.tolist(), hit.tolist()):
                if constraints[row] is not None and not stop:
                    constraints[row].accept(token)
        lengths[rows] = torch.where(hit, t + 1, lengths[rows])
        finished[rows] = finished[rows] | hit
        if t + 1 == budget:
            break
        if (t + 1) % check_every == 0:  # the one host read: which rows are still going
            live = (~finished[rows]).tolist()
            if not any(live):
                break
            if not all(live):  # finished rows leave the batch and its KV cache: no work on them any more
                keep = torch.tensor([i for i, going in enumerate(live) if going], device=device)
                rows, nxt, full_mask = rows[keep], nxt[keep], full_mask[keep]
                cache.keep_rows(keep)
                seen = seen[keep] if seen is not None else None
        if seen is not None:
            seen.scatter_(1, nxt[:, None], True)
        out = model(nxt[:, None], past_key_values=cache, use_cache=True, attention_mask=full_mask[:, :width + t + 1])
        logits = out.logits[:, -1].float()

    tokens_cpu, lengths_cpu = tokens.cpu(), lengths.cpu().tolist()
    finished_cpu = finished.cpu().tolist()
    steps = t + 1
    sequences = [tokens_cpu[r, :min(lengths_cpu[r], steps)].tolist() for r in range(B)]
    reasons = ["stop" if finished_cpu[r] else "length" for r in range(B)]
    lp = None
    if logps is not None:
        logps_cpu = logps.cpu()
        lp = [logps_cpu[r, :len(sequences[r])].tolist() for r in range(B)]
    return BatchResult(sequences, reasons, lp)
