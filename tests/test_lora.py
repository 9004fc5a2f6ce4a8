"""LoRA: adapters on any nn.Linear shape, only adapters train, merging reproduces the adapted model."""
from __future__ import annotations

import pytest
import torch

from core.config import get_preset
from core.config.lora import LoraConfig
from core.model import MiniMindForCausalLM
from core.model.lora import (LoRALinear, apply_lora, base_state_dict, load_adapter, lora_state_dict, merge_lora,
                             save_adapter)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return MiniMindForCausalLM(get_preset("tiny", vocab_size=128))


def _perturb_adapters(m):
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, LoRALinear):
                mod.lora_B.normal_(0, 0.05)


def test_default_targets_cover_rectangular_layers(model):
    apply_lora(model, LoraConfig(rank=4))
    adapted = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    k = model.model.layers[0].self_attn.k_proj  # GQA: narrower than hidden, not square
    assert k.lora_A.shape == (4, k.in_features) and k.lora_B.shape == (k.out_features, 4) and k.in_features != k.out_features
    # base keys keep their HF names; the adapter is separate
    assert "model.layers.0.self_attn.q_proj.weight" in base_state_dict(model)
    assert set(lora_state_dict(model)) == {n for n, p in model.named_parameters() if p.requires_grad}


def test_a_fresh_adapter_does_not_change_the_model(model):
    x = torch.randint(0, 128, (2, 16))
    before = model(x).logits
    apply_lora(model, LoraConfig(rank=4))
    assert torch.equal(model(x).logits, before)  # B starts at zero


def test_training_changes_only_adapter_weights(model):
    apply_lora(model, LoraConfig(rank=4, target_modules=["q_proj", "v_proj"]))
    frozen = {k: v.clone() for k, v in base_state_dict(model).items()}
    adapters = {k: v.clone() for k, v in lora_state_dict(model).items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randint(0, 128, (4, 16))
    for _ in range(3):
        model(x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.equal(v, frozen[k]) for k, v in base_state_dict(model).items())
    assert all(not torch.equal(v, adapters[k]) for k, v in lora_state_dict(model).items() if k.endswith("lora_B"))


def test_merge_reproduces_the_adapted_logits(model):
    apply_lora(model, LoraConfig(rank=4, alpha=8))
    _perturb_adapters(model)
    model.eval()
    x = torch.randint(0, 128, (2, 24))
    adapted = model(x).logits
    merged = merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert torch.allclose(merged(x).logits, adapted, atol=1e-5)
    assert set(merged.state_dict()) == set(MiniMindForCausalLM(merged.config).state_dict())


def test_adapter_round_trips_through_a_checkpoint_dir(model, tmp_path):
    base = {k: v.clone() for k, v in model.state_dict().items()}
    apply_lora(model, LoraConfig(rank=2, target_modules=["o_proj", "down_proj"]))
    _perturb_adapters(model)
    model.eval()
    x = torch.randint(0, 128, (1, 12))
    want = model(x).logits
    save_adapter(model, tmp_path)
    fresh = MiniMindForCausalLM(model.config)
    fresh.load_state_dict(base)
    load_adapter(fresh, tmp_path)  # applies LoRA from lora_config.json, then loads the weights
    fresh.eval()
    assert torch.allclose(fresh(x).logits, want, atol=1e-6)


def test_bad_targets_and_truncated_adapters_are_explained(model, tmp_path):
    with pytest.raises(ValueError, match="no nn.Linear named any of"):
        apply_lora(model, LoraConfig(target_modules=["nope"]))
    apply_lora(model, LoraConfig(rank=2))
    save_adapter(model, tmp_path)
    data = (tmp_path / "adapter.safetensors").read_bytes()
    (tmp_path / "adapter.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_adapter(model, tmp_path)


@pytest.mark.parametrize("target", ["lm_head", "embed_tokens"])
def test_tied_head_or_embedding_is_refused(model, target):
    # merging would untie the head and saving (embedding only) would drop the adapter without a word
    assert model.config.tie_word_embeddings
    with pytest.raises(ValueError, match=f"{target}.*tie_word_embeddings"):
        apply_lora(model, LoraConfig(rank=4, target_modules=["q_proj", target]))


def test_untied_head_can_be_adapted():
    torch.manual_seed(0)
    m = MiniMindForCausalLM(get_preset("tiny", vocab_size=128, tie_word_embeddings=False))
    apply_lora(m, LoraConfig(rank=4, target_modules=["lm_head"]))
    assert isinstance(m.lm_head, LoRALinear)
