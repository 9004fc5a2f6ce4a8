"""Activation checkpointing (TrainConfig.gradient_checkpointing): per decoder layer, the same gradients as the plain
path, dropout included."""
from __future__ import annotations

import torch

from core.config import get_preset
from core.model import MiniMindForCausalLM
from core.model.model import set_gradient_checkpointing


def _grads(model, x, checkpointing: bool) -> dict:
    set_gradient_checkpointing(model, checkpointing)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same dropout masks on both paths
    model(x, labels=x).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_checkpointed_layers_give_the_plain_gradients():
    cfg = get_preset("tiny", vocab_size=128).model_copy(update={"num_hidden_layers": 2, "dropout": 0.1,
                                                                  "max_position_embeddings": 64})
    torch.manual_seed(0)
    model = MiniMindForCausalLM(cfg).train()
    x = torch.randint(0, 128, (2, 32))
    plain, checkpointed = _grads(model, x, False), _grads(model, x, True)
    assert model.model.gradient_checkpointing
    for name, g in plain.items():
        torch.testing.assert_close(checkpointed[name], g, rtol=0, atol=1e-6, msg=name)
