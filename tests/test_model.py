"""The decoder: exact sizes, equivalent attention paths, cache, YaRN, MoE routing, config validation."""
from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from core.config import ModelConfig, YarnConfig, get_preset
from core.model import MiniMindForCausalLM, rope_inv_freq
from core.model.io import CheckpointError, load_model, resolve_checkpoint, save_checkpoint


@pytest.mark.parametrize("preset,total,active", [
    ("small", 25_829_888, 25_829_888),
    ("moe", 145_029_760, 91_945_600),
    ("base", 104_030_976, 104_030_976),
    # upstream minimind-3's own MiniMindConfig/MiniMindForCausalLM give these (reference §1.2)
    ("minimind3", 63_912_192, 63_912_192),
    ("minimind3-moe", 198_416_640, 63_936_768),
])
def test_preset_parameter_counts_are_exact(preset, total, active):
    with torch.device("meta"):
        model = MiniMindForCausalLM(get_preset(preset))
    assert model.num_parameters() == total
    assert model.num_active_parameters() == active


def test_tiny_preset_is_a_cpu_demo_size():
    model = MiniMindForCausalLM(get_preset("tiny"))
    assert 1_000_000 < model.num_parameters() < 3_000_000


def test_state_dict_uses_hf_llama_names():
    model = MiniMindForCausalLM(get_preset("tiny", vocab_size=64, qk_norm=True))
    keys = set(model.state_dict())
    for k in ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
              "model.layers.0.self_attn.k_norm.weight", "model.layers.3.mlp.down_proj.weight",
              "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
              "model.norm.weight", "lm_head.weight"]:
        assert k in keys
    moe = MiniMindForCausalLM(get_preset("tiny", vocab_size=64, use_moe=True))
    assert {"model.layers.0.mlp.gate.weight", "model.layers.0.mlp.experts.3.up_proj.weight",
            "model.layers.0.mlp.shared_experts.0.gate_proj.weight"} <= set(moe.state_dict())


def small_model(**kw):
    torch.manual_seed(0)
    return MiniMindForCausalLM(get_preset("tiny", vocab_size=97, **kw)).eval()


@pytest.mark.parametrize("kw", [{}, {"qk_norm": True}, {"use_moe": True}])
def test_cached_decoding_matches_full_forward(kw):
    model = small_model(**kw)
    ids = torch.randint(0, 97, (2, 24))
    full = model(ids).logits
    out = model(ids[:, :10], use_cache=True)
    steps, cache = [out.logits], out.past_key_values
    for t in range(10, 24):
        out = model(ids[:, t:t + 1], past_key_values=cache, use_cache=True)
        steps.append(out.logits)
        cache = out.past_key_values
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


def test_sdpa_and_explicit_attention_agree():
    model = small_model()
    ids = torch.randint(0, 97, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[0, :4] = 0  # left padding exercises the masked path too
    sdpa = [model(ids).logits, model(ids, attention_mask=mask).logits]
    for layer in model.model.layers:
        layer.self_attn.use_sdpa = False
    explicit = [model(ids).logits, model(ids, attention_mask=mask).logits]
    for a, b in zip(sdpa, explicit):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)


def _padded_batch():
    ids = torch.randint(0, 97, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[0, :5] = 0
    return ids, mask


def test_masked_gqa_with_repeated_kv_equals_the_grouped_kernel(monkeypatch):
    """The path CUDA takes for masked calls (K/V repeated to every query head, no enable_gqa) gives the logits and
    gradients of the grouped path CPU takes."""
    import core.model.model as mm

    model = small_model()
    assert model.config.num_attention_heads > model.config.num_key_value_heads
    ids, mask = _padded_batch()

    def run():
        model.zero_grad()
        out = model(ids, attention_mask=mask, labels=ids)
        out.loss.backward()
        return out.logits.detach(), model.model.layers[0].self_attn.k_proj.weight.grad.clone()

    grouped = run()
    monkeypatch.setattr(mm, "gqa_kernel_available", lambda q, masked: False)
    repeated = run()
    assert torch.allclose(grouped[0], repeated[0], atol=1e-5, rtol=0)
    assert torch.allclose(grouped[1], repeated[1], atol=1e-6, rtol=1e-4)


def test_enable_gqa_only_where_a_fused_kernel_takes_it(monkeypatch):
    """On CUDA only flash takes grouped K/V: unmasked, half precision, compute capability 8.0 or newer."""
    from types import SimpleNamespace

    from core.model.model import gqa_kernel_available

    def q(device, dtype):
        return SimpleNamespace(device=torch.device(device), dtype=dtype)

    assert gqa_kernel_available(q("cpu", torch.float32), masked=True)
    assert not gqa_kernel_available(q("cuda", torch.bfloat16), masked=True)
    assert not gqa_kernel_available(q("cuda", torch.float32), masked=False)
    for major, takes in ((7, False), (8, True), (9, True)):
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device, m=major: SimpleNamespace(major=m))
        assert gqa_kernel_available(q("cuda", torch.float16), masked=False) is takes


@pytest.mark.parametrize("kw", [{}, {"use_moe": True}])
def test_a_preallocated_cache_decodes_as_the_growing_one(kw):
    """KVCache (written in place, grown by doubling) against the list of (k, v) grown by torch.cat: a padded
    prefill, a chunk of two, single tokens past a capacity doubling, and rows leaving the batch."""
    from core.model.model import KVCache

    model = small_model(**kw)
    ids, mask = _padded_batch()
    cache = KVCache()
    with torch.no_grad():
        a, b = model(ids, attention_mask=mask, use_cache=True), model(ids, attention_mask=mask, past_key_values=cache,
                                                                      use_cache=True)
        assert b.past_key_values is cache and cache.length == 16 and cache.capacity == 16
        grow, steps = a.past_key_values, [(a.logits, b.logits)]
        new = torch.randint(0, 97, (2, 10))
        for t0, t1 in ((0, 2), (2, 3), (3, 4), (4, 10)):
            mask = torch.cat([mask, torch.ones(2, t1 - t0, dtype=torch.long)], dim=1)
            a = model(new[:, t0:t1], past_key_values=grow, use_cache=True, attention_mask=mask)
            b = model(new[:, t0:t1], past_key_values=cache, use_cache=True, attention_mask=mask)
            grow = a.past_key_values
            steps.append((a.logits, b.logits))
        assert cache.capacity == 32 and cache.length == 26
        keep = torch.tensor([1])
        cache.keep_rows(keep)
        grow = [(k[keep], v[keep]) for k, v in grow]
        last, mask = torch.tensor([[5]]), torch.cat([mask[keep], torch.ones(1, 1, dtype=torch.long)], dim=1)
        steps.append((model(last, past_key_values=grow, use_cache=True, attention_mask=mask).logits,
                      model(last, past_key_values=cache, use_cache=True, attention_mask=mask).logits))
    for x, y in steps:
        assert torch.allclose(x, y, atol=1e-5, rtol=0)


def test_left_padding_gives_the_same_logits_as_no_padding():
    model = small_model()
    ids = torch.randint(3, 97, (1, 12))
    padded = torch.cat([torch.zeros(1, 5, dtype=torch.long), ids], 1)
    mask = torch.cat([torch.zeros(1, 5), torch.ones(1, 12)], 1).long()
    assert torch.allclose(model(padded, attention_mask=mask).logits[:, 5:], model(ids).logits, atol=1e-5)


def test_loss_is_shifted_cross_entropy_ignoring_minus_100():
    model = small_model()
    ids = torch.randint(0, 97, (2, 10))
    labels = ids.clone()
    labels[:, :4] = -100
    out = model(ids, labels=labels)
    logits = out.logits[:, :-1].reshape(-1, 97)
    expected = torch.nn.functional.cross_entropy(logits, labels[:, 1:].reshape(-1), ignore_index=-100)
    assert torch.allclose(out.loss, expected, atol=1e-6)


def test_yarn_frequencies_follow_the_paper():
    dim, theta = 64, 1e6
    yarn = YarnConfig(factor=16, original_max_position_embeddings=2048, beta_fast=32, beta_slow=1)
    scaled, attn = rope_inv_freq(dim, theta, yarn, max_positions=32768)
    base = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    # Independent computation from YaRN eq.: r_i = L*f_i/(2*pi); gamma = ramp of r between beta_slow and beta_fast
    # expressed through the correction dims d*ln(L/(2*pi*b))/(2*ln(theta)).
    def corr(b):
        return dim * math.log(2048 / (b * 2 * math.pi)) / (2 * math.log(theta))
    low, high = max(math.floor(corr(32)), 0), min(math.ceil(corr(1)), dim // 2 - 1)
    for i in range(dim // 2):
        ramp = min(max((i - low) / max(high - low, 0.001), 0), 1)
        want = base[i] * (1 - ramp) + base[i] / 16 * ramp
        assert scaled[i].item() == pytest.approx(want.item(), rel=1e-5)
    assert scaled[0].item() == pytest.approx(base[0].item(), rel=1e-6)  # high frequencies untouched
    assert scaled[-1].item() == pytest.approx(base[-1].item() / 16, rel=1e-5)  # low ones interpolated
    assert attn == 1.0
    unscaled, _ = rope_inv_freq(dim, theta, yarn, max_positions=2048)  # no extension needed: plain RoPE
    assert torch.allclose(unscaled, base.float())


def test_yarn_switch_changes_long_range_logits_only_when_enabled():
    model = small_model(rope_scaling=YarnConfig(factor=4, original_max_position_embeddings=512))
    ids = torch.randint(0, 97, (1, 32))
    plain = model(ids).logits
    model.model.set_rope_scaling(True)
    assert model.model.yarn_enabled
    assert not torch.allclose(model(ids).logits, plain)
    model.model.set_rope_scaling(False)
    assert torch.allclose(model(ids).logits, plain)


def test_moe_routes_top_k_and_aux_loss_is_positive_and_differentiable():
    torch.manual_seed(0)
    model = MiniMindForCausalLM(get_preset("tiny", vocab_size=97, use_moe=True, n_routed_experts=4,
                                           num_experts_per_tok=2)).train()
    gate = model.model.layers[0].mlp.gate
    x = torch.randn(2, 8, model.config.hidden_size)
    idx, w, aux = gate(x)
    scores = torch.nn.functional.linear(x.reshape(-1, x.shape[-1]), gate.weight).softmax(-1)
    assert set(map(tuple, idx.sort(-1).values.tolist())) == set(map(tuple, scores.topk(2).indices.sort(-1).values.tolist()))
    assert torch.allclose(w.sum(-1), torch.ones(16), atol=1e-6)  # renormalised
    out = model(torch.randint(0, 97, (2, 8)), labels=torch.randint(0, 97, (2, 8)))
    assert out.aux_loss.item() > 0
    out.aux_loss.backward()
    assert gate.weight.grad is not None and gate.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("bad,field", [
    ({"hidden_size": 4}, "hidden_size"),
    ({"dropout": 1.5}, "dropout"),
    ({"num_attention_heads": 8, "num_key_value_heads": 3}, "num_key_value_heads"),
    ({"rope_theta": -1}, "rope_theta"),
])
def test_invalid_configs_name_the_field(bad, field):
    with pytest.raises(ValidationError) as info:
        ModelConfig(**bad)
    assert field in str(info.value)


def test_checkpoint_round_trip_and_resolution(tmp_path):
    model = small_model()
    save_checkpoint(model, tmp_path / "run" / "checkpoints" / "step-000010")
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step-000010")
    loaded, _ = load_model(tmp_path / "run", with_tokenizer=False)
    ids = torch.randint(0, 97, (1, 8))
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        resolve_checkpoint(tmp_path)
    weights = tmp_path / "run" / "checkpoints" / "step-000010" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(tmp_path / "run", with_tokenizer=False)


@pytest.mark.parametrize("preset,counts", [("moe", ("145,029,760", "91,945,600")),
                                           ("minimind3", ("parameters: 63,912,192",)),
                                           ("minimind3-moe", ("198,416,640", "63,936,768"))])
def test_model_info_cli_prints_exact_count(preset, counts, capsys):
    from core.cli import main

    assert main(["model", "info", "--preset", preset]) == 0
    out = capsys.readouterr().out
    assert all(c in out for c in counts), out


def test_minimind3_presets_have_upstreams_shape():
    dense, moe = get_preset("minimind3"), get_preset("minimind3-moe")
    for cfg in (dense, moe):
        assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (768, 8, 8, 4)
        assert cfg.resolved_head_dim == 96 and cfg.resolved_intermediate_size == math.ceil(768 * math.pi / 64) * 64
        assert cfg.qk_norm and cfg.rms_norm_eps == 1e-6 and cfg.vocab_size == 6400 and cfg.tie_word_embeddings
    assert (moe.n_routed_experts, moe.num_experts_per_tok, moe.n_shared_experts) == (4, 1, 0)
    assert moe.resolved_moe_intermediate_size == 2432 and moe.renormalises_topk


def test_minimind3_router_renormalises_top1_and_balances_over_the_batch():
    """minimind-3: the one chosen expert gets weight 1; aux = E * sum_e mean(one_hot) * mean(scores) * 5e-4."""
    torch.manual_seed(0)
    cfg = get_preset("minimind3-moe", hidden_size=64, head_dim=16, intermediate_size=128, vocab_size=97)
    gate = MiniMindForCausalLM(cfg).model.layers[0].mlp.gate.train()
    x = torch.randn(2, 8, 64)
    idx, w, aux = gate(x)
    assert torch.equal(w, torch.ones(16, 1))
    scores = torch.nn.functional.linear(x.reshape(16, 64), gate.weight).softmax(-1)
    load = torch.nn.functional.one_hot(idx, 4).float().mean(0)  # upstream's formula, (1, E)
    assert aux.item() == pytest.approx(((load * scores.mean(0)).sum() * 4 * 5e-4).item(), rel=1e-5)
    v2_top1 = MiniMindForCausalLM(cfg.model_copy(update={"renormalise_top1": False})).model.layers[0].mlp.gate
    v2_top1.load_state_dict(gate.state_dict())
    assert torch.allclose(v2_top1(x)[1].squeeze(1), scores.max(-1).values)  # MiniMind2 keeps the softmax weight
