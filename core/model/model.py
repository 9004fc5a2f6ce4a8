"""The MiniMind decoder, top to bottom in the order data flows through it.

A pre-norm Llama-style decoder: RMSNorm, rotate-half RoPE (optionally YaRN-scaled), grouped-query attention
(SDPA for training and prefill, a KV cache for decoding), SwiGLU or a Mixture-of-Experts FFN, tied embeddings.
Parameter names equal HF Llama / Qwen3 (`model.layers.N.self_attn.q_proj.weight`, ...), so MiniMind and HF
checkpoints of the same shape load directly. Shapes: B batch, T new tokens, S keys (past + new), H heads,
K kv heads, D head dim, C hidden.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from core.config.model import ModelConfig, YarnConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 for stability, cast back, then scale (MiniMind v2 / HF Llama order).
        xf = x.float()
        return self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x)


# ---------------------------------------------------------------------------------------------- RoPE / YaRN
def rope_inv_freq(dim: int, theta: float, yarn: Optional[YarnConfig], max_positions: int) -> tuple[torch.Tensor, float]:
    """Inverse frequencies theta^(-2i/d), YaRN-interpolated when the context exceeds the trained one.

    YaRN (Peng et al. 2023, §3.2 "NTK-by-parts"): r_i = L / (2*pi/f_i) rotations over the original length L;
    dims with r > beta_fast keep f_i, dims with r < beta_slow use f_i/s, a linear ramp in between. The dim
    where r = b is d*ln(L/(2*pi*b)) / (2*ln(theta)). Returns (inv_freq, attention_factor).
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    if yarn is None or max_positions / yarn.original_max_position_embeddings <= 1:
        return inv_freq.float(), 1.0
    orig = yarn.original_max_position_embeddings

    def dim_for(rotations: float) -> float:
        return dim * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(dim_for(yarn.beta_fast)), 0)
    high = min(math.ceil(dim_for(yarn.beta_slow)), dim // 2 - 1)
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / max(high - low, 0.001)).clamp(0, 1)
    inv_freq = inv_freq * ((1 - ramp) + ramp / yarn.factor)
    return inv_freq.float(), yarn.attention_factor


def rope_tables(config: ModelConfig, use_yarn: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (max_positions, D) in the rotate-half layout: [cos(t*f), cos(t*f)]."""
    dim = config.resolved_head_dim
    yarn = config.resolved_rope_scaling if use_yarn else None
    inv_freq, attn_factor = rope_inv_freq(dim, config.rope_theta, yarn, config.max_position_embeddings)
    t = torch.arange(config.max_position_embeddings, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos() * attn_factor, emb.sin() * attn_factor


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x (B, H, T, D); cos/sin (B, 1, T, D), fp32 tables cast to x's dtype (as HF Llama/Qwen3): under autocast a bf16
    # q/k is not promoted to fp32 and back in every layer
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


# ---------------------------------------------------------------------------------------------- attention
class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.n_heads, self.n_kv, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.resolved_head_dim
        self.q_proj = nn.Linear(c.hidden_size, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, c.hidden_size, bias=False)
        if c.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, c.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, c.rms_norm_eps)
        self.qk_norm = c.qk_norm
        self.dropout = c.dropout
        self.resid_dropout = nn.Dropout(c.dropout)
        self.use_sdpa = c.flash_attn

    def forward(self, x, cos, sin, past, mask: Optional[torch.Tensor], use_cache: bool):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.n_kv, self.head_dim)
        v = self.v_proj(x).view(B, T, self.n_kv, self.head_dim)
        if self.qk_norm:  # Qwen3: per-head RMSNorm before RoPE
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H|K, T, D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # No earlier keys: plain causal attention. A Python bool, never derived from T: under torch.compile a
        # dynamic T makes `T > 1` a SymBool, which SDPA refuses (a graph break in every layer).
        fresh = past is None
        if isinstance(past, LayerCache):  # preallocated cache: this step's keys are written in place
            fresh = past.cache.length == 0
            k, v = past.append(k, v)
        elif past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        present = (k, v) if use_cache else None
        p = self.dropout if self.training else 0.0
        if self.use_sdpa:
            y = sdpa_attention(q, k, v, mask, p, causal=fresh and mask is None)
        else:
            rep = self.n_heads // self.n_kv
            k_full = k.repeat_interleave(rep, dim=1) if rep > 1 else k
            v_full = v.repeat_interleave(rep, dim=1) if rep > 1 else v
            y = explicit_attention(q, k_full, v_full, mask, p, self.training)
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)
        return self.resid_dropout(self.o_proj(y)), present


def sdpa_attention(q, k, v, mask, dropout_p: float, causal: bool) -> torch.Tensor:
    """SDPA with grouped-query K/V (H query heads, K kv heads; head h reads kv head h // (H/K)).

    SDPA's `enable_gqa` reads K/V without copies, but on CUDA only the flash kernel takes it, and flash takes no
    mask, no fp32 and no GPU before Ampere: anything else falls back to the math backend, which keeps the
    (B, H, T, S) fp32 scores (about 1.7 GB a layer for 32 rollout rows). Those calls get K/V repeated to H heads,
    which the memory-efficient kernel takes with a mask. A single query per row (decoding) needs neither: its
    query heads are folded onto the kv head they share, (B, K, H/K, D), and the mask broadcasts over them.
    """
    B, H, T, D = q.shape
    rep = H // k.shape[1]
    if rep == 1:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)
    if T == 1:
        y = F.scaled_dot_product_attention(q.view(B, k.shape[1], rep, D), k, v, attn_mask=mask, dropout_p=dropout_p)
        return y.view(B, H, 1, D)
    if gqa_kernel_available(q, mask is not None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal,
                                              enable_gqa=True)
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)


def gqa_kernel_available(q: torch.Tensor, masked: bool) -> bool:
    """Whether SDPA runs a fused kernel for `enable_gqa` on q's device: on CPU always (its flash kernel takes
    masks and fp32); on CUDA only flash, for unmasked fp16/bf16 on compute capability 8.0 or newer."""
    if q.device.type != "cuda":
        return q.device.type == "cpu"
    return (not masked and q.dtype in (torch.float16, torch.bfloat16)
            and torch.cuda.get_device_properties(q.device).major >= 8)


def explicit_attention(q, k, v, mask, dropout_p: float, training: bool) -> torch.Tensor:
    """softmax(QK^T/sqrt(D) + mask) V with a float32 softmax; the reference for the SDPA path."""
    T, S = q.shape[2], k.shape[2]
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask is None:
        mask = causal_mask(T, S, q.device)
    scores = scores.masked_fill(~mask, float("-inf"))
    attn = F.softmax(scores.float(), dim=-1).type_as(q)
    if dropout_p and training:
        attn = F.dropout(attn, p=dropout_p)
    return attn @ v


def causal_mask(T: int, S: int, device) -> torch.Tensor:
    """(T, S) bool, True = may attend: query t (at absolute S-T+t) sees keys <= its own position."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


class KVCache:
    """Keys and values of the positions decoded so far, preallocated: per layer (B, K, capacity, D), the first
    `length` positions filled. A step writes its keys in place, where a list of (k, v) grown by torch.cat (also
    accepted by the model) copies the whole cache at every token. The buffers take the shape, dtype and device
    of the first keys written; `reserve` grows them by doubling."""

    def __init__(self, capacity: int = 0):
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.length, self.capacity = 0, capacity

    def reserve(self, tokens: int) -> None:
        """Room for `tokens` more positions."""
        need = self.length + tokens
        if need > self.capacity:
            self.capacity = max(need, 2 * self.capacity)
            self.keys = [self._grown(t) for t in self.keys]
            self.values = [self._grown(t) for t in self.values]

    def _grown(self, t: torch.Tensor) -> torch.Tensor:
        out = t.new_empty(*t.shape[:2], self.capacity, t.shape[3])
        out[:, :, :self.length] = t[:, :, :self.length]
        return out

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write one layer's new keys and values (B, K, T, D); returns that layer's (B, K, length + T, D) views."""
        if layer == len(self.keys):
            self.keys.append(k.new_empty(*k.shape[:2], self.capacity, k.shape[3]))
            self.values.append(v.new_empty(*v.shape[:2], self.capacity, v.shape[3]))
        end = self.length + k.shape[2]
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only these batch rows (finished sequences leave the batch)."""
        self.keys = [t[rows] for t in self.keys]
        self.values = [t[rows] for t in self.values]


class LayerCache(NamedTuple):
    """What one attention layer receives of a KVCache."""
    cache: KVCache
    layer: int

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.append(self.layer, k, v)


# ---------------------------------------------------------------------------------------------- FFN / MoE
class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, hidden: int, inner: int, dropout: float = 0.0):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x)))


class MoEGate(nn.Module):
    """Softmax router over routed experts, top-k, optionally renormalised; MiniMind's balance loss."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.top_k, self.n_experts = config.num_experts_per_tok, config.n_routed_experts
        self.norm_topk, self.alpha, self.seq_aux = config.renormalises_topk, config.aux_loss_alpha, config.seq_aux
        self.weight = nn.Parameter(torch.empty(self.n_experts, config.hidden_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor):
        B, T, C = x.shape
        with torch.autocast(x.device.type, enabled=False):  # the router in fp32, also under autocast
            scores = F.linear(x.reshape(-1, C).float(), self.weight.float()).softmax(dim=-1)  # (B*T, E)
        topk_w, topk_idx = scores.topk(self.top_k, dim=-1, sorted=False)
        if self.norm_topk:  # MiniMind2 only when k > 1; minimind-3 also at k = 1 (weight 1)
            topk_w = topk_w / (topk_w.sum(dim=-1, keepdim=True) + 1e-20)
        aux = self.balance_loss(scores, topk_idx, B, T) if (self.training and self.alpha > 0) else scores.new_zeros(())
        return topk_idx, topk_w.to(x.dtype), aux

    def balance_loss(self, scores, topk_idx, B: int, T: int) -> torch.Tensor:
        """Switch-Transformer style alpha * sum_e f_e * P_e, f normalised so uniform routing = 1: per sequence
        (MiniMind v2, seq_aux) or over the batch (minimind-3: E * sum_e mean(one_hot) * mean(scores))."""
        E, k = self.n_experts, self.top_k
        if self.seq_aux:
            s = scores.view(B, T, E)
            counts = torch.zeros(B, E, device=scores.device).scatter_add_(
                1, topk_idx.view(B, -1), torch.ones(B, T * k, device=scores.device))
            ce = counts / (T * k / E)
            return (ce * s.mean(dim=1)).sum(dim=1).mean() * self.alpha
        f = F.one_hot(topk_idx.view(-1), E).float().mean(0) * E
        return (f * scores.mean(0)).sum() * self.alpha


class MoEFeedForward(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        inner = config.resolved_moe_intermediate_size
        self.gate = MoEGate(config)
        self.experts = nn.ModuleList(FeedForward(config.hidden_size, inner, config.dropout)
                                     for _ in range(config.n_routed_experts))
        self.shared_experts = nn.ModuleList(FeedForward(config.hidden_size, inner, config.dropout)
                                            for _ in range(config.n_shared_experts))

    def forward(self, x: torch.Tensor):
        B, T, C = x.shape
        topk_idx, topk_w, aux = self.gate(x)
        y = self.dispatch(x.reshape(-1, C), topk_idx, topk_w).view(B, T, C)
        for shared in self.shared_experts:
            y = y + shared(x)
        return y, aux

    # Eager even inside a compiled model: the run lengths below are data, and traced they break the graph
    # (bincount's output shape) and recompile whenever a new set of counts appears, until dynamo's recompile
    # limit sends the whole model to eager. Excluded, the rest of the model compiles once; the experts are
    # plain matmuls that compiling would not speed up much.
    @torch.compiler.disable
    def dispatch(self, flat: torch.Tensor, topk_idx: torch.Tensor, topk_w: torch.Tensor) -> torch.Tensor:
        """sum_k w_k * expert_k(x) per token (N, C). Dispatch by one stable sort of the routed slots: each
        expert's tokens are a contiguous run, in token order; the run lengths cost one host sync per layer (a
        .nonzero() per expert cost one each)."""
        y = torch.zeros_like(flat)
        k = topk_idx.shape[-1]
        routed = topk_idx.reshape(-1)
        order = routed.argsort(stable=True)
        counts = torch.bincount(routed, minlength=len(self.experts)).tolist()
        tokens, weights = order // k, topk_w.reshape(-1)[order]
        start = 0
        for expert, n in zip(self.experts, counts):
            if n == 0:
                if self.training:  # keep every expert in the graph so DDP sees a gradient for it
                    y = y + 0 * sum(p.sum() for p in expert.parameters())
                continue
            tok = tokens[start:start + n]
            y = y.index_add(0, tok, expert(flat[tok]) * weights[start:start + n, None])
            start += n
        return y


# ---------------------------------------------------------------------------------------------- block / model
class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.is_moe = config.use_moe
        self.mlp = MoEFeedForward(config) if config.use_moe else FeedForward(
            config.hidden_size, config.resolved_intermediate_size, config.dropout)

    def forward(self, x, cos, sin, past, mask, use_cache):
        h, present = self.self_attn(self.input_layernorm(x), cos, sin, past, mask, use_cache)
        x = x + h
        if self.is_moe:
            m, aux = self.mlp(self.post_attention_layernorm(x))
        else:
            m, aux = self.mlp(self.post_attention_layernorm(x)), None
        return x + m, present, aux


class MiniMindModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.set_rope_scaling(config.inference_rope_scaling)
        self.gradient_checkpointing = False  # a training choice (TrainConfig), not part of the architecture

    def set_rope_scaling(self, enabled: bool) -> None:
        """Switch YaRN on or off (inference-time context extension); rebuilds the cos/sin tables."""
        device = self.embed_tokens.weight.device
        cos, sin = rope_tables(self.config, enabled)
        self.register_buffer("rope_cos", cos.to(device), persistent=False)
        self.register_buffer("rope_sin", sin.to(device), persistent=False)
        self.yarn_enabled = enabled

    def forward(self, input_ids, past_key_values=None, use_cache=False, attention_mask=None, position_ids=None):
        """past_key_values: None, a list of (k, v) per layer (returned grown by torch.cat), or a KVCache (written
        in place, and returned)."""
        B, T = input_ids.shape
        cache = past_key_values if isinstance(past_key_values, KVCache) else None
        if cache is not None:
            past_len = cache.length
            cache.reserve(T)
        else:
            past_len = past_key_values[0][0].shape[2] if past_key_values else 0
        S = past_len + T
        if S > self.config.max_position_embeddings:
            raise ValueError(f"sequence of {S} tokens exceeds max_position_embeddings "
                             f"({self.config.max_position_embeddings})")
        mask = None
        if attention_mask is not None:  # (B, S) with 1 = real token: padding-aware causal mask
            attention_mask = attention_mask.bool()
            if position_ids is None:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
            mask = causal_mask(T, S, input_ids.device)[None] & attention_mask[:, None, :]
            # A left-pad query sees no real key; letting it see itself avoids NaN rows (its output is unused).
            mask = (mask | _diagonal(T, S, input_ids.device)[None])[:, None]
        elif past_len and T > 1:  # chunked prefill on top of a cache: causal with an offset
            mask = causal_mask(T, S, input_ids.device)[None, None]
        if position_ids is None:
            position_ids = torch.arange(past_len, S, device=input_ids.device)[None].expand(B, T)
        cos = self.rope_cos[position_ids][:, None].to(self.embed_tokens.weight.dtype)  # (B, 1, T, D)
        sin = self.rope_sin[position_ids][:, None].to(self.embed_tokens.weight.dtype)
        x = self.dropout(self.embed_tokens(input_ids))
        presents, aux_total = [], x.new_zeros((), dtype=torch.float32)
        for i, layer in enumerate(self.layers):
            if cache is not None:
                past = LayerCache(cache, i)
            else:
                past = past_key_values[i] if past_key_values else None
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                # keep only each layer's input; recompute its activations in the backward pass (same RNG state,
                # so dropout masks and gradients equal the plain path's)
                x, present, aux = torch.utils.checkpoint.checkpoint(layer, x, cos, sin, past, mask, use_cache,
                                                                     use_reentrant=False)
            else:
                x, present, aux = layer(x, cos, sin, past, mask, use_cache)
            presents.append(present)
            if aux is not None:
                aux_total = aux_total + aux
        if cache is not None:
            cache.length += T
            return self.norm(x), cache, aux_total
        return self.norm(x), (presents if use_cache else None), aux_total


def set_gradient_checkpointing(module: nn.Module, enabled: bool) -> None:
    """Switch activation checkpointing per decoder layer on or off in every MiniMind decoder inside `module`
    (a bare model, or one wrapped by LoRA or a value head)."""
    for m in module.modules():
        if isinstance(m, MiniMindModel):
            m.gradient_checkpointing = enabled


def _diagonal(T: int, S: int, device) -> torch.Tensor:
    """(T, S) bool, True where key position == query position (keys S-T+t)."""
    ones = torch.ones(T, S, dtype=torch.bool, device=device)
    return ones.tril(S - T) & ~ones.tril(S - T - 1)


@dataclass
class CausalLMOutput:
    logits: torch.Tensor
    loss: Optional[torch.Tensor] = None
    aux_loss: Optional[torch.Tensor] = None
    ce_loss: Optional[torch.Tensor] = None
    past_key_values: Optional[list | KVCache] = None
    hidden_states: Optional[torch.Tensor] = None


class MiniMindForCausalLM(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.model = MiniMindModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, input_ids, labels=None, past_key_values=None, use_cache=False, attention_mask=None,
                position_ids=None, logits_to_keep: int = 0, output_hidden_states: bool = False) -> CausalLMOutput:
        h, presents, aux = self.model(input_ids, past_key_values, use_cache, attention_mask, position_ids)
        logits = self.lm_head(h[:, -logits_to_keep:] if logits_to_keep else h)
        loss = ce = None
        if labels is not None:
            # Shifted next-token CE in float32; -100 marks positions without loss (padding, prompts).
            ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                 labels[:, 1:].reshape(-1), ignore_index=-100)
            loss = ce + aux
        return CausalLMOutput(logits=logits, loss=loss, aux_loss=aux, ce_loss=ce,
                              past_key_values=presents, hidden_states=h if output_hidden_states else None)

    def num_parameters(self) -> int:
        """Total parameters, tied embeddings counted once."""
        return sum(p.numel() for p in self.parameters())

    def num_active_parameters(self) -> int:
        """Parameters used per token: MoE layers only run top-k of their routed experts."""
        c = self.config
        if not c.use_moe:
            return self.num_parameters()
        per_expert = 3 * c.hidden_size * c.resolved_moe_intermediate_size
        return self.num_parameters() - c.num_hidden_layers * (c.n_routed_experts - c.num_experts_per_tok) * per_expert
