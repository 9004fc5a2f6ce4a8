"""Host syncs (a GPU waits for the CPU to read a value) counted on CPU with a TorchFunctionMode: every
`.item()`, `.tolist()`, `.nonzero()` and truth test of a tensor is one on CUDA."""
from __future__ import annotations

import traceback

import torch
from torch.overrides import TorchFunctionMode

from core.config import get_preset
from core.model import MiniMindForCausalLM

SYNCS = {"item", "tolist", "nonzero", "__bool__", "__float__", "__int__"}


# Hooks that run on the host copy of a batch, before it moves to the device: their reads are not syncs there.
HOST_SIDE = {"loss_weight", "useful_tokens"}


class CountSyncs(TorchFunctionMode):
    """Counts reads made by the project's code (torch's own CPU optimizer reads its step counter; on CUDA the
    engine uses the fused AdamW, which does not)."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNCS:
            ours = [f for f in traceback.extract_stack()[:-1] if "/core/" in f.filename]
            if ours and ours[-1].name not in HOST_SIDE and "/torch/" not in traceback.extract_stack()[-2].filename:
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


def test_a_pretrain_step_reads_the_device_once(train_data, tiny_tokenizer_dir, tmp_path):
    """Syncs of a 4-step run minus those of a 2-step run (same logging and saving) = 2 steps' worth."""
    from core.train import run_training
    from tests.fixtures.train import one_thread, train_config

    counts = {}
    for steps in (2, 4):
        cfg = train_config(tmp_path / str(steps), tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=steps,
                           log_every=1000, **{"optim.accumulation": 2})
        with one_thread(), CountSyncs() as counter:
            assert run_training(cfg) == 0
        counts[steps] = len(counter.calls)
    assert (counts[4] - counts[2]) / 2 == 1, counts  # the step's metrics and gradient norm, in one read
