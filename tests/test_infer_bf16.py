"""Chat and serve on CPU: bf16 weights only where the model's greedy continuation stays the fp32 one, decided per
model at load (core.infer.backend.bf16_keeps_greedy)."""
from __future__ import annotations

import copy

import torch

from core.config import get_preset
from core.infer import backend
from core.model import MiniMindForCausalLM


def _greedy(model, tok, n: int) -> list[int]:
    from core.infer.generate import generate
    from core.infer.sampling import SamplingParams

    prompt = tok.encode(tok.apply_chat_template(backend.GREEDY_CHECK_CHAT, add_generation_prompt=True))
    return generate(model, tok, prompt, SamplingParams.greedy_params(n, stop_token_ids=[])).token_ids


def test_bf16_weights_are_chosen_exactly_when_greedy_output_is_unchanged(monkeypatch, tiny_tokenizer):
    monkeypatch.setattr("core.precision.cpu_native_bf16", lambda: "AMX")
    torch.manual_seed(0)
    cfg = get_preset("tiny", vocab_size=tiny_tokenizer.vocab_size).model_copy(update={"num_hidden_layers": 1})
    model = MiniMindForCausalLM(cfg).eval()
    unchanged = _greedy(model, tiny_tokenizer, 8) == _greedy(copy.deepcopy(model).to(torch.bfloat16),
                                                             tiny_tokenizer, 8)
    chosen, reason = backend.bf16_keeps_greedy(model, tiny_tokenizer, n_tokens=8)
    assert (next(chosen.parameters()).dtype == torch.bfloat16) == unchanged, reason
    assert ("is unchanged" in reason) == unchanged and next(model.parameters()).dtype == torch.float32


def test_a_cpu_without_native_bf16_keeps_fp32(monkeypatch, tiny_tokenizer):
    monkeypatch.setattr("core.precision.cpu_native_bf16", lambda: None)
    model = object()
    assert backend.bf16_keeps_greedy(model, tiny_tokenizer) == (model, "fp32 weights: this CPU has no native bf16")
