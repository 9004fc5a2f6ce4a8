"""Import weights from elsewhere into a MiniMind checkpoint directory.

Sources:
- MiniMind `.pth` files (`full_sft_512.pth`, ...): a state dict with HF names in fp16, holding both the
  embedding and `lm_head` (minimind-reference §1.7). Read with `torch.load(weights_only=True)` (no pickled code).
  The shapes do not say how many query heads there are; MiniMind uses 8 for every published model, so that is
  the default (`heads=` overrides). v3 files carry q_norm, whose size is the head dim.
- Hugging Face folders of `LlamaForCausalLM`, `Qwen3ForCausalLM`, `Qwen3MoeForCausalLM`, and the
  `Qwen2MoeForCausalLM` folders our own export writes (zero shared-expert gate, no q/k/v bias values).
The tokenizer comes from `tokenizer_dir`, else from the source folder; it must be a MiniMind-style tokenizer
(special tokens 0/1/2).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from core.config.model import ModelConfig

OLD_NAMES = ("tok_embeddings.weight", "layers.0.attention.wq.weight")


class ImportCheckpointError(ValueError):
    """The source cannot be imported; the message names the file, the field and what to do."""


def import_checkpoint(source, out_dir, tokenizer_dir=None, heads: int | None = None,
                      experts_per_tok: int | None = None) -> dict:
    """Convert `source` (.pth file or HF folder) into a checkpoint directory `out_dir`; returns a summary."""
    from core.model import MiniMindForCausalLM
    from core.model.io import load_weights_into, save_checkpoint

    src = Path(source)
    if not src.exists():
        raise ImportCheckpointError(f"{src}: no such file or directory")
    if src.is_file():
        sd = read_pth(src)
        cfg = infer_config(sd, str(src), heads=heads, experts_per_tok=experts_per_tok)
        kind = "minimind-pth"
    else:
        sd, cfg = read_hf_folder(src)
        kind = "hf"
    tok = find_tokenizer(src, tokenizer_dir)
    if tok.vocab_size > cfg.vocab_size:
        raise ImportCheckpointError(f"{src}: the weights have {cfg.vocab_size} embeddings but the tokenizer has "
                           f"{tok.vocab_size} tokens; pass the tokenizer these weights were trained with")
    model = MiniMindForCausalLM(cfg)
    load_weights_into(model, sd, str(src))
    model.eval()
    out = save_checkpoint(model, out_dir, tok, metadata={"imported_from": str(src)})
    return {"path": str(out), "source": str(src), "kind": kind, "config": cfg.model_dump(),
            "params": model.num_parameters()}


# ------------------------------------------------------------------------------------------------- .pth
def read_pth(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, code objects refused by weights_only
        raise ImportCheckpointError(
            f"{path}: not a readable PyTorch weights file ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):  # {"model": sd, "optimizer": ...}
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ImportCheckpointError(f"{path}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    sd = {k.removeprefix("module.").removeprefix("_orig_mod."): v.float() for k, v in obj.items()}
    if any(k in sd for k in OLD_NAMES):
        raise ImportCheckpointError(
            f"{path}: pre-2025-04 MiniMind weights (tok_embeddings/attention.wq names, interleaved RoPE) are not "
            f"compatible with today's architecture; use a newer MiniMind checkpoint")
    return sd


def infer_config(sd: dict, source: str, heads: int | None = None, experts_per_tok: int | None = None,
                 base: dict | None = None) -> ModelConfig:
    """A ModelConfig matching the tensor shapes of an HF-named state dict."""
    def need(key):
        if key not in sd:
            raise ImportCheckpointError(f"{source}: {key}: missing; not a Llama/Qwen3-style MiniMind state dict")
        return sd[key]

    emb = sd.get("model.embed_tokens.weight", sd.get("lm_head.weight"))
    if emb is None:
        raise ImportCheckpointError(f"{source}: model.embed_tokens.weight: missing; not a MiniMind/HF-Llama state dict")
    vocab, hidden = emb.shape
    layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"model\.layers\.(\d+)\.", k)))
    q = need("model.layers.0.self_attn.q_proj.weight")
    k = need("model.layers.0.self_attn.k_proj.weight")
    qk_norm = "model.layers.0.self_attn.q_norm.weight" in sd
    if qk_norm:
        head_dim = sd["model.layers.0.self_attn.q_norm.weight"].shape[0]
        n_heads = q.shape[0] // head_dim
    else:
        n_heads = heads or 8  # every published MiniMind model has 8 query heads
        head_dim = q.shape[0] // n_heads
    if q.shape[0] % n_heads or k.shape[0] % head_dim:
        raise ImportCheckpointError(f"{source}: q_proj {tuple(q.shape)} / k_proj {tuple(k.shape)} do not split into "
                           f"{n_heads} heads; pass the right number of heads")
    fields = dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=n_heads,
                  num_key_value_heads=k.shape[0] // head_dim, qk_norm=qk_norm,
                  head_dim=None if head_dim * n_heads == hidden else head_dim,
                  rms_norm_eps=1e-6 if qk_norm else 1e-5, rope_theta=1e6, max_position_embeddings=32768)
    lm = sd.get("lm_head.weight")
    fields["tie_word_embeddings"] = lm is None or ("model.embed_tokens.weight" in sd and torch.equal(lm, emb))
    if "model.layers.0.mlp.gate.weight" in sd:
        n_exp = sd["model.layers.0.mlp.gate.weight"].shape[0]
        n_shared = len({k for k in sd if re.match(r"model\.layers\.0\.mlp\.shared_experts\.\d+\.gate_proj", k)})
        fields.update(use_moe=True, n_routed_experts=n_exp, n_shared_experts=n_shared,
                      moe_intermediate_size=need("model.layers.0.mlp.experts.0.gate_proj.weight").shape[0],
                      # MiniMind2-MoE: top-2 with a shared expert; minimind-3-moe: top-1, none
                      num_experts_per_tok=experts_per_tok or (2 if n_shared else 1))
        if qk_norm:  # minimind-3's router renormalises even top-1, with a batch-level balance loss of 5e-4
            fields.update(renormalise_top1=True, aux_loss_alpha=5e-4, seq_aux=False)
        fields["intermediate_size"] = fields["moe_intermediate_size"]
    else:
        fields["intermediate_size"] = need("model.layers.0.mlp.gate_proj.weight").shape[0]
    fields.update(base or {})
    try:
        return ModelConfig(**fields)
    except ValueError as exc:
        raise ImportCheckpointError(f"{source}: the shapes give an invalid model config: {exc}") from None


# ------------------------------------------------------------------------------------------------- HF
SUPPORTED_HF = {"llama", "qwen3", "qwen3_moe", "qwen2_moe"}


def read_hf_folder(folder: Path) -> tuple[dict, ModelConfig]:
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ImportCheckpointError(f"{folder}: no config.json; expected a Hugging Face model folder or a .pth file")
    hf = json.loads(cfg_path.read_text(encoding="utf-8"))
    mt = hf.get("model_type")
    if mt not in SUPPORTED_HF:
        raise ImportCheckpointError(
            f"{cfg_path}: model_type: {mt!r} is not supported; importable: {', '.join(sorted(SUPPORTED_HF))}")
    for key, ok in (("hidden_act", lambda v: v in (None, "silu")), ("attention_bias", lambda v: not v),
                    ("mlp_bias", lambda v: not v), ("use_sliding_window", lambda v: not v)):
        if not ok(hf.get(key)):
            raise ImportCheckpointError(f"{cfg_path}: {key}: {hf.get(key)!r} is not part of the MiniMind architecture")
    yarn = read_yarn(hf, cfg_path)
    sd = read_safetensors_folder(folder)
    sd = from_hf_names(sd, hf, cfg_path)
    theta = hf.get("rope_theta") or (hf.get("rope_parameters") or {}).get("rope_theta") or 10000.0
    base = dict(rms_norm_eps=hf.get("rms_norm_eps", 1e-6), rope_theta=float(theta),
                max_position_embeddings=hf.get("max_position_embeddings", 32768),
                tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
                num_attention_heads=hf["num_attention_heads"], num_key_value_heads=hf["num_key_value_heads"])
    if hf.get("head_dim") and hf["head_dim"] * hf["num_attention_heads"] != hf["hidden_size"]:
        base["head_dim"] = hf["head_dim"]
    if yarn:
        base.update(inference_rope_scaling=True, rope_scaling=yarn)
    if mt in ("qwen3_moe", "qwen2_moe"):
        base.update(num_experts_per_tok=hf["num_experts_per_tok"], norm_topk_prob=bool(hf.get("norm_topk_prob")),
                    intermediate_size=hf.get("intermediate_size") or hf["moe_intermediate_size"])
        if hf.get("mlp_only_layers") or hf.get("decoder_sparse_step", 1) != 1:
            raise ImportCheckpointError(f"{cfg_path}: mlp_only_layers/decoder_sparse_step: mixed dense and MoE layers "
                               f"are not supported")
        base["renormalise_top1"] = base["norm_topk_prob"]  # transformers renormalises at any k
        if "router_aux_loss_coef" in hf:
            base["aux_loss_alpha"] = hf["router_aux_loss_coef"]
    return sd, infer_config(sd, str(folder), heads=hf["num_attention_heads"], base=base)


def read_yarn(hf: dict, cfg_path: Path) -> dict | None:
    """None for plain RoPE, YarnConfig fields for YaRN; anything else is refused."""
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rtype = rope.get("rope_type", rope.get("type")) or "default"
    if rtype == "default":
        return None
    if rtype != "yarn" or rope.get("mscale") or rope.get("mscale_all_dim") or rope.get("truncate") is False:
        raise ImportCheckpointError(
            f"{cfg_path}: rope_parameters: {rtype!r} RoPE scaling (or YaRN with mscale/truncate=false) is not "
            f"supported; only plain RoPE and MiniMind-style YaRN")
    factor = float(rope["factor"])
    return {"factor": factor, "original_max_position_embeddings": int(rope["original_max_position_embeddings"]),
            "beta_fast": float(rope.get("beta_fast") or 32.0), "beta_slow": float(rope.get("beta_slow") or 1.0),
            # transformers' default when unset: 0.1*ln(factor) + 1
            "attention_factor": float(rope.get("attention_factor") or (0.1 * math.log(factor) + 1.0))}


def read_safetensors_folder(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ImportCheckpointError(f"{folder}: no .safetensors files (convert .bin weights with transformers first)")
    sd = {}
    for f in files:
        sd.update({k: v.float() for k, v in load_file(str(f)).items()})
    return sd


def from_hf_names(sd: dict, hf: dict, cfg_path: Path) -> dict:
    """Unstack transformers-5 expert tensors and fold Qwen2-MoE's shared expert back into ours."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"(model\.layers\.\d+\.mlp\.experts)\.(gate_up_proj|down_proj)$", k)
        if m:  # transformers >= 5: (E, 2F, H) gate|up and (E, H, F)
            for e in range(v.shape[0]):
                if m.group(2) == "gate_up_proj":
                    g, u = v[e].chunk(2, dim=0)
                    out[f"{m.group(1)}.{e}.gate_proj.weight"], out[f"{m.group(1)}.{e}.up_proj.weight"] = g, u
                else:
                    out[f"{m.group(1)}.{e}.down_proj.weight"] = v[e]
        else:
            out[k] = v
    if hf["model_type"] != "qwen2_moe":
        return out
    for k in [k for k in out if k.endswith("_proj.bias")]:
        if out[k].abs().max() > 0:
            raise ImportCheckpointError(f"{cfg_path}: {k}: non-zero attention bias; MiniMind attention has no biases")
        del out[k]
    for k in [k for k in out if k.endswith("mlp.shared_expert_gate.weight")]:
        if out[k].abs().max() > 0:
            raise ImportCheckpointError(f"{cfg_path}: {k}: a sigmoid-gated shared expert (non-zero gate) is not "
                               f"representable; only Qwen2-MoE folders exported by MiniMind (zero gate) import")
        p = k.removesuffix("shared_expert_gate.weight")
        del out[k]
        down = out.pop(f"{p}shared_expert.down_proj.weight") / 2.0  # undo the export's x2 for sigmoid(0)
        gate, up = out.pop(f"{p}shared_expert.gate_proj.weight"), out.pop(f"{p}shared_expert.up_proj.weight")
        if down.abs().max() == 0:  # the zero expert written for a model without shared experts
            continue
        ff = hf["moe_intermediate_size"]
        if gate.shape[0] % ff:
            raise ImportCheckpointError(f"{cfg_path}: shared_expert_intermediate_size: {gate.shape[0]} is not a "
                                        f"multiple of moe_intermediate_size {ff}")
        for j in range(gate.shape[0] // ff):  # our export concatenated the shared experts' units
            rows = slice(j * ff, (j + 1) * ff)
            out[f"{p}shared_experts.{j}.gate_proj.weight"] = gate[rows]
            out[f"{p}shared_experts.{j}.up_proj.weight"] = up[rows]
            out[f"{p}shared_experts.{j}.down_proj.weight"] = down[:, rows]
    return out


def find_tokenizer(src: Path, tokenizer_dir=None):
    from core.tokenizer import MiniMindTokenizer

    candidates = [Path(tokenizer_dir)] if tokenizer_dir else [src if src.is_dir() else src.parent,
                                                               (src if src.is_dir() else src.parent) / "tokenizer"]
    for d in candidates:
        if (d / "tokenizer.json").is_file():
            try:
                return MiniMindTokenizer.load(d)
            except ValueError as exc:
                raise ImportCheckpointError(f"{d}: {exc}") from None
    raise ImportCheckpointError(f"{src}: no tokenizer found (looked in {', '.join(map(str, candidates))}); pass "
                       f"--tokenizer DIR with the tokenizer.json these weights were trained with")
