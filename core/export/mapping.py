"""Which llama.cpp architecture reproduces a MiniMind config exactly, and how our tensors map onto it.

Every choice below was checked against llama.cpp's graph code (src/models/*.cpp, `build_moe_ffn`) and then by
logits (the parity check runs after every export):

| MiniMind config                     | GGUF arch     | why it is exact                                            |
|-------------------------------------|---------------|------------------------------------------------------------|
| dense, no QK-norm                   | `llama`       | same block; llama.cpp's "normal" RoPE is interleaved, so Q/K rows are permuted as convert_hf_to_gguf.py does |
| dense, QK-norm                      | `qwen3`       | per-head q/k RMSNorm before NeoX (rotate-half) RoPE        |
| MoE + QK-norm, no shared, top-k renormalised   | `qwen3moe` | softmax -> top-k -> always renormalised (`norm_w = true`)  |
| MoE with shared expert(s), no QK-norm | `bailingmoe` | softmax -> top-k -> renormalised iff `expert_weights_norm`; shared expert added *un-gated*; "normal" RoPE (permute) |
| MoE with shared expert(s), QK-norm  | `bailingmoe2` | as bailingmoe + q/k norm, NeoX RoPE, `expert_gating_func = softmax`; fused QKV (needs heads*head_dim == hidden) |
| any other MoE (no QK-norm, or no renormalisation) | `bailingmoe(2)` with a zero shared expert (silu(0)*0 = 0 adds nothing) |

`qwen2moe` is not used: its shared-expert gate is computed as silu(x)/x, which is 0/0 = NaN for the zero gate
that would make it an exact un-gated expert, and it never renormalises the top-k weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


class UnsupportedExport(ValueError):
    """The model has a shape no target format reproduces exactly; the message says what and why."""


@dataclass(frozen=True)
class ArchMapping:
    arch: str              # GGUF `general.architecture`
    permute_qk: bool       # HF rotate-half -> GGML interleaved RoPE ("normal" rope type)
    fused_qkv: bool        # one attn_qkv tensor (bailingmoe2)
    moe: bool
    shared: bool           # writes ffn_*_shexp tensors
    output_required: bool  # the arch has no tied-embedding fallback: write output.weight even when tied
    reason: str


def choose_architecture(cfg) -> ArchMapping:
    """The exact llama.cpp architecture for a `ModelConfig`, or `UnsupportedExport` saying why there is none."""
    if not cfg.use_moe:
        if cfg.qk_norm:
            return ArchMapping("qwen3", False, False, False, False, False, "dense with QK-norm = Qwen3")
        return ArchMapping("llama", True, False, False, False, False, "dense without QK-norm = Llama")
    shared = cfg.n_shared_experts > 0
    # qwen3moe always renormalises (top-1: weight 1) and needs q/k norms (an identity RMSNorm still rescales).
    if cfg.qk_norm and not shared and cfg.renormalises_topk:
        return ArchMapping("qwen3moe", False, False, True, False, False,
                           "MoE with QK-norm, softmax top-k renormalised, no shared expert = Qwen3-MoE")
    why = ("shared expert(s) added un-gated" if shared else "no shared expert (written as a zero one)")
    if cfg.qk_norm:
        if cfg.num_attention_heads * cfg.resolved_head_dim != cfg.hidden_size:
            raise UnsupportedExport(
                f"model_config.json: head_dim: this MoE maps to llama.cpp's bailingmoe2, whose fused QKV needs "
                f"num_attention_heads*head_dim == hidden_size ({cfg.num_attention_heads}*{cfg.resolved_head_dim}"
                f" != {cfg.hidden_size}); no other llama.cpp architecture computes this model exactly")
        return ArchMapping("bailingmoe2", False, True, True, True, True, f"MoE with QK-norm, {why} = BailingMoE2")
    return ArchMapping("bailingmoe", True, False, True, True, True, f"MoE without QK-norm, {why} = BailingMoE")


def permute_rows(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF rotate-half Q/K rows -> GGML interleaved order (llama.cpp convert_hf_to_gguf.py `LlamaModel.permute`)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _expert_stack(sd: dict, prefix: str, n: int, proj: str) -> torch.Tensor:
    return torch.stack([sd[f"{prefix}.experts.{e}.{proj}.weight"] for e in range(n)])


def gguf_tensors(sd: dict[str, torch.Tensor], cfg, m: ArchMapping):
    """Yield (gguf_name, float32 numpy array in torch (out, in) layout, kind) in file order.

    kind is "norm" | "router" | "weight"; norms and the router are always stored in f32.
    """
    f = lambda t: t.detach().to(torch.float32).contiguous().numpy()  # noqa: E731
    yield "token_embd.weight", f(sd["model.embed_tokens.weight"]), "weight"
    hd = cfg.resolved_head_dim
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        yield f"blk.{i}.attn_norm.weight", f(sd[f"{p}.input_layernorm.weight"]), "norm"
        q, k, v = (sd[f"{p}.self_attn.{x}_proj.weight"] for x in "qkv")
        if m.permute_qk:
            q, k = permute_rows(q, cfg.num_attention_heads), permute_rows(k, cfg.num_key_value_heads)
        if m.fused_qkv:
            yield f"blk.{i}.attn_qkv.weight", f(torch.cat([q, k, v])), "weight"
        else:
            yield f"blk.{i}.attn_q.weight", f(q), "weight"
            yield f"blk.{i}.attn_k.weight", f(k), "weight"
            yield f"blk.{i}.attn_v.weight", f(v), "weight"
        if cfg.qk_norm:
            yield f"blk.{i}.attn_q_norm.weight", f(sd[f"{p}.self_attn.q_norm.weight"]), "norm"
            yield f"blk.{i}.attn_k_norm.weight", f(sd[f"{p}.self_attn.k_norm.weight"]), "norm"
        yield f"blk.{i}.attn_output.weight", f(sd[f"{p}.self_attn.o_proj.weight"]), "weight"
        yield f"blk.{i}.ffn_norm.weight", f(sd[f"{p}.post_attention_layernorm.weight"]), "norm"
        if not m.moe:
            for proj, name in (("gate_proj", "ffn_gate"), ("up_proj", "ffn_up"), ("down_proj", "ffn_down")):
                yield f"blk.{i}.{name}.weight", f(sd[f"{p}.mlp.{proj}.weight"]), "weight"
            continue
        mp = f"{p}.mlp"
        yield f"blk.{i}.ffn_gate_inp.weight", f(sd[f"{mp}.gate.weight"]), "router"
        n = cfg.n_routed_experts
        yield f"blk.{i}.ffn_gate_exps.weight", f(_expert_stack(sd, mp, n, "gate_proj")), "weight"   # (E, ff, H)
        yield f"blk.{i}.ffn_up_exps.weight", f(_expert_stack(sd, mp, n, "up_proj")), "weight"
        yield f"blk.{i}.ffn_down_exps.weight", f(_expert_stack(sd, mp, n, "down_proj")), "weight"   # (E, H, ff)
        if m.shared:
            gate, up, down = shared_expert_block(sd, mp, cfg)
            yield f"blk.{i}.ffn_gate_shexp.weight", f(gate), "weight"
            yield f"blk.{i}.ffn_up_shexp.weight", f(up), "weight"
            yield f"blk.{i}.ffn_down_shexp.weight", f(down), "weight"
    yield "output_norm.weight", f(sd["model.norm.weight"]), "norm"
    if not cfg.tie_word_embeddings or m.output_required:
        head = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
        yield "output.weight", f(head), "weight"


def tensor_count(cfg, m: ArchMapping) -> int:
    """How many tensors `gguf_tensors` yields (sizes the progress bar without converting anything)."""
    attn = 1 + (1 if m.fused_qkv else 3) + (2 if cfg.qk_norm else 0) + 1
    ffn = 1 + (3 if not m.moe else 4 + (3 if m.shared else 0))
    head = 1 if (not cfg.tie_word_embeddings or m.output_required) else 0
    return 1 + cfg.num_hidden_layers * (attn + ffn) + 1 + head


def shared_expert_block(sd: dict, mp: str, cfg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All shared experts as one wider SwiGLU FFN, padded with zero units to `shared_ffn_length(cfg)`.

    Summing S SwiGLU experts on the same input equals one expert with their units concatenated; a padded unit
    has zero gate/up rows and a zero down column, so it contributes silu(0)*0 = 0.
    """
    s = cfg.n_shared_experts
    gates = [sd[f"{mp}.shared_experts.{j}.gate_proj.weight"] for j in range(s)]
    ups = [sd[f"{mp}.shared_experts.{j}.up_proj.weight"] for j in range(s)]
    downs = [sd[f"{mp}.shared_experts.{j}.down_proj.weight"] for j in range(s)]
    h = cfg.hidden_size
    have = sum(g.shape[0] for g in gates)
    width = shared_ffn_length(cfg, have)
    pad_rows = torch.zeros(width - have, h)
    gate = torch.cat([*[g.float() for g in gates], pad_rows])
    up = torch.cat([*[u.float() for u in ups], pad_rows])
    down = torch.cat([*[d.float() for d in downs], torch.zeros(h, width - have)], dim=1)
    return gate, up, down


def shared_ffn_length(cfg, have: int) -> int:
    """Total shared FFN width written: a whole number of expert widths (bailingmoe uses n_ff_exp * count)."""
    ff = cfg.resolved_moe_intermediate_size
    return max(1, -(-have // ff)) * ff

