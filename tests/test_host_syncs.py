"""Host syncs (a GPU waits for the CPU to read a value) counted on CPU with a TorchFunctionMode: every
`.item()`, `.tolist()`, `.nonzero()` and truth test of a tensor is one on CUDA."""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from core.config import get_preset
from core.model import MiniMindForCausalLM

SYNCS = {"item", "tolist", "nonzero", "__bool__", "__float__", "__int__"}


class CountSyncs(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNCS:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def _moe(layers: int = 2) -> MiniMindForCausalLM:
    cfg = get_preset("moe", vocab_size=128).model_copy(update={
        "hidden_size": 32, "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2,
        "moe_intermediate_size": 32, "max_position_embeddings": 64})
    torch.manual_seed(0)
    return MiniMindForCausalLM(cfg)


def test_a_moe_forward_syncs_once_per_layer_not_once_per_expert():
    model = _moe(layers=2)
    assert model.config.n_routed_experts >= 4
    x = torch.randint(0, 128, (2, 16))
    with CountSyncs() as counter:
        model(x, labels=x)
    assert counter.calls == ["tolist", "tolist"], counter.calls  # one routing-count read per MoE layer


def test_sorted_dispatch_equals_routing_each_expert_on_its_own_tokens():
    model = _moe(layers=1).eval()
    moe = model.model.layers[0].mlp
    x = torch.randn(2, 16, 32)
    with torch.no_grad():
        got, _ = moe(x)
        idx, w, _ = moe.gate(x)
        flat, want = x.reshape(-1, 32), torch.zeros(32, 32)
        for e, expert in enumerate(moe.experts):  # the reference: a mask per expert
            tok, slot = (idx == e).nonzero(as_tuple=True)
            want = want.index_add(0, tok, expert(flat[tok]) * w[tok, slot, None])
        for shared in moe.shared_experts:
            want = want + shared(flat)
    assert torch.equal(got.reshape(-1, 32), want)


def test_a_dense_forward_and_backward_never_sync():
    model = MiniMindForCausalLM(get_preset("tiny", vocab_size=128))
    x = torch.randint(0, 128, (2, 16))
    with CountSyncs() as counter:
        model(x, labels=x).loss.backward()
    assert counter.calls == [], counter.calls
