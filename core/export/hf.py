"""Export a checkpoint as a Hugging Face folder that `transformers` loads without custom code.

| MiniMind config                         | HF class               | how it stays exact                                   |
|-----------------------------------------|------------------------|------------------------------------------------------|
| dense, no QK-norm                       | `LlamaForCausalLM`     | same block, same names, rotate-half RoPE             |
| dense, QK-norm                          | `Qwen3ForCausalLM`     | per-head q/k RMSNorm before RoPE                     |
| MoE + QK-norm, no shared expert         | `Qwen3MoeForCausalLM`  | softmax top-k; `norm_topk_prob` as our router does   |
| MoE without QK-norm (shared or not)     | `Qwen2MoeForCausalLM`  | shared expert gated by sigmoid(0·x) = 1/2 with its down projection doubled (no shared expert: a zero one); zero q/k/v biases |
| MoE + QK-norm + shared expert(s)        | refused                | no transformers class has both without custom code   |

Experts are written per expert (`mlp.experts.N.gate_proj.weight`), the layout on the Hub, which transformers
4.x loads as is and 5.x stacks on load. Weights stay float32 unless `dtype` says otherwise.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from core.export.mapping import UnsupportedExport

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def hf_architecture(cfg) -> str:
    if not cfg.use_moe:
        return "Qwen3ForCausalLM" if cfg.qk_norm else "LlamaForCausalLM"
    if cfg.qk_norm and cfg.n_shared_experts > 0:
        raise UnsupportedExport(
            "model_config.json: MoE with QK-norm and shared experts has no exact transformers class "
            "(Qwen3-MoE has no shared expert, Qwen2-MoE has no QK-norm); export to GGUF instead "
            "(`minimind export gguf`), which maps it exactly to llama.cpp's bailingmoe2")
    return "Qwen3MoeForCausalLM" if cfg.qk_norm else "Qwen2MoeForCausalLM"


def rope_parameters(cfg, yarn: bool) -> dict:
    """RoPE settings in transformers' form; YaRN with MiniMind's explicit attention factor (HF would otherwise
    use 0.1*ln(factor)+1) and truncated correction range (MiniMind floors/ceils it)."""
    if not yarn:
        return {"rope_type": "default", "rope_theta": cfg.rope_theta}
    y = cfg.resolved_rope_scaling
    return {"rope_type": "yarn", "type": "yarn", "rope_theta": cfg.rope_theta, "factor": y.factor,
            "original_max_position_embeddings": y.original_max_position_embeddings, "beta_fast": y.beta_fast,
            "beta_slow": y.beta_slow, "attention_factor": y.attention_factor, "truncate": True}


def hf_config(cfg, arch: str, dtype: str, yarn: bool = False) -> dict:
    hd = cfg.resolved_head_dim
    rope = rope_parameters(cfg, yarn)
    common = {
        "architectures": [arch],
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.resolved_intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads, "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": hd, "hidden_act": "silu", "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps, "rope_theta": cfg.rope_theta,
        # transformers >= 5 reads rope_parameters; 4.x reads rope_theta/rope_scaling
        "rope_scaling": {k: v for k, v in rope.items() if k != "rope_theta"} if yarn else None,
        "rope_parameters": rope,
        "tie_word_embeddings": cfg.tie_word_embeddings, "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id,
        "use_cache": True, "torch_dtype": dtype, "dtype": dtype, "initializer_range": 0.02,
    }
    if arch == "LlamaForCausalLM":
        return {**common, "model_type": "llama", "mlp_bias": False, "pretraining_tp": 1}
    if arch == "Qwen3ForCausalLM":
        return {**common, "model_type": "qwen3", "use_sliding_window": False, "sliding_window": None,
                "max_window_layers": cfg.num_hidden_layers}
    moe = {"num_experts": cfg.n_routed_experts, "num_experts_per_tok": cfg.num_experts_per_tok,
           "moe_intermediate_size": cfg.resolved_moe_intermediate_size, "norm_topk_prob": cfg.renormalises_topk,
           "decoder_sparse_step": 1, "mlp_only_layers": [], "output_router_logits": False,
           "router_aux_loss_coef": cfg.aux_loss_alpha, "use_sliding_window": False, "sliding_window": None,
           "max_window_layers": cfg.num_hidden_layers}
    if arch == "Qwen3MoeForCausalLM":
        return {**common, **moe, "model_type": "qwen3_moe"}
    return {**common, **moe, "model_type": "qwen2_moe", "qkv_bias": True,
            "shared_expert_intermediate_size": shared_width(cfg)}


def shared_width(cfg) -> int:
    return max(1, cfg.n_shared_experts) * cfg.resolved_moe_intermediate_size


def hf_state_dict(model, arch: str) -> dict[str, torch.Tensor]:
    """Our state dict renamed/reshaped for `arch` (float32, contiguous)."""
    cfg = model.config
    sd = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    if arch != "Qwen2MoeForCausalLM":
        return sd
    out = {}
    h, kvd = cfg.hidden_size, cfg.num_key_value_heads * cfg.resolved_head_dim
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        out[f"{p}.self_attn.q_proj.bias"] = torch.zeros(cfg.num_attention_heads * cfg.resolved_head_dim)
        out[f"{p}.self_attn.k_proj.bias"] = torch.zeros(kvd)
        out[f"{p}.self_attn.v_proj.bias"] = torch.zeros(kvd)
        gates = [sd.pop(f"{p}.mlp.shared_experts.{j}.gate_proj.weight") for j in range(cfg.n_shared_experts)]
        ups = [sd.pop(f"{p}.mlp.shared_experts.{j}.up_proj.weight") for j in range(cfg.n_shared_experts)]
        downs = [sd.pop(f"{p}.mlp.shared_experts.{j}.down_proj.weight") for j in range(cfg.n_shared_experts)]
        if not gates:  # a zero shared expert contributes silu(0)*0 = 0
            ff = cfg.resolved_moe_intermediate_size
            gates, ups, downs = [torch.zeros(ff, h)], [torch.zeros(ff, h)], [torch.zeros(h, ff)]
        # several shared experts on the same input = one expert with their units concatenated
        out[f"{p}.mlp.shared_expert.gate_proj.weight"] = torch.cat(gates)
        out[f"{p}.mlp.shared_expert.up_proj.weight"] = torch.cat(ups)
        out[f"{p}.mlp.shared_expert.down_proj.weight"] = 2.0 * torch.cat(downs, dim=1)  # x2: sigmoid(0) = 1/2
        out[f"{p}.mlp.shared_expert_gate.weight"] = torch.zeros(1, h)
    out.update(sd)
    return out


def export_hf(model_path, out_dir, dtype: str = "float32", tokenizer=None) -> dict:
    """Write model.safetensors, config.json, generation_config.json and the tokenizer files into `out_dir`."""
    from core.export.gguf import load_for_export  # loads checkpoints, merging LoRA

    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    model, tok, source = load_for_export(model_path, tokenizer)
    cfg = model.config
    arch = hf_architecture(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.to(DTYPES[dtype]).contiguous() for k, v in hf_state_dict(model, arch).items()}
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    yarn = bool(getattr(model.model, "yarn_enabled", False))
    config = hf_config(cfg, arch, dtype, yarn)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    gen = {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n", encoding="utf-8")
    tok.save(out)  # tokenizer.json + tokenizer_config.json (chat template, PreTrainedTokenizerFast)
    return {"path": str(out), "architecture": arch, "model_type": config["model_type"], "dtype": dtype,
            "tensors": len(sd), "source": source, "yarn": yarn}
