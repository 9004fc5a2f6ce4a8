"""Write a MiniMind checkpoint as a GGUF file that llama.cpp, Ollama and LM Studio load, then check it.

The tensors and the architecture come from `core.export.mapping`; this module adds the hyper-parameters, the
full tokenizer (so llama.cpp tokenizes exactly as we do) and the quantisation, and writes an Ollama Modelfile
beside the file. Every export ends with the parity check (`core.export.parity`), which raises on failure.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Callable

import gguf
import numpy as np

from core.export.mapping import (ArchMapping, UnsupportedExport, choose_architecture, gguf_tensors,
                                 shared_expert_block, tensor_count)
from core.export.modelfile import write_modelfile
from core.export.parity import check_parity
from core.export.quality import heldout_ids, heldout_text, measure_quality
from core.export.quantize import KQUANTS, describe_types, quantize_gguf
from core.export.types import GGUF_TYPES

# name -> (tensor type, file type) of the types written here, tensor by tensor (core.export.types: every type).
QTYPES: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    name: (gguf.GGMLQuantizationType[t.tensor_type], gguf.LlamaFileType[t.file_type])
    for name, t in GGUF_TYPES.items() if t.maker == "gguf-py"}

Progress = Callable[[int, int, str], None]  # (done, total, message)


def load_for_export(model_or_path, tokenizer=None):
    """(model, tokenizer, source label) from a run/checkpoint path or an in-memory model (+ tokenizer)."""
    if isinstance(model_or_path, (str, Path)):
        from core.model.io import load_model  # merges LoRA adapters into the base weights
        model, tok = load_model(model_or_path)
        return model, tokenizer or tok, str(model_or_path)
    if tokenizer is None:
        raise ValueError("export of an in-memory model needs its tokenizer: pass tokenizer=")
    return model_or_path, tokenizer, type(model_or_path).__name__


def export_gguf(model_or_path, out_file, qtype: str = "f32", progress: Progress | None = None,
                tokenizer=None, check: bool = True, modelfile: bool = True, heldout: str | Path | None = None) -> dict:
    """Export to GGUF, write `<stem>.parity.json` + an Ollama `<stem>.Modelfile` beside it; return the report.

    K-quants (KQUANTS) are made by llama.cpp's quantizer from the f32 export (`core.export.quantize`). The check
    of any type but f32 also measures the file against the f32 export on held-out text (`core.export.quality`;
    `heldout` names the text file, else the run's eval file or a built-in passage).

    Raises `UnsupportedExport` before writing anything when no llama.cpp architecture is exact,
    `core.export.parity.ParityError` when llama.cpp disagrees with the torch model, and
    `core.export.quantize.QuantizeError` when llama.cpp cannot quantize.
    """
    if qtype not in GGUF_TYPES:
        raise ValueError(f"--type {qtype!r}: choose one of {', '.join(GGUF_TYPES)}")
    model, tok, source = load_for_export(model_or_path, tokenizer)
    model.eval()
    cfg = model.config
    mapping = choose_architecture(cfg)
    check_vocab(cfg, tok)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    # YaRN (inference-time context extension) is stored when llama.cpp can reproduce it; otherwise the file holds
    # the model as trained, and the parity reference is the model with YaRN off.
    yarn_on = bool(getattr(model.model, "yarn_enabled", False))
    store_yarn = yarn_on and yarn_storable(cfg)
    if yarn_on and not store_yarn:
        model.model.set_rope_scaling(False)
    try:
        with tempfile.TemporaryDirectory(prefix="minimind-export-") as tmp:
            # the f32 export: what K-quants are made from, and what every other type's quality is measured against
            reference = Path(tmp) / "f32.gguf"
            t0 = time.perf_counter()
            if qtype in KQUANTS:
                write_gguf(model, tok, mapping, reference, "f32", progress, yarn=store_yarn)
                report = write_kquant(reference, out_file, qtype, mapping, progress)
            else:
                report = write_gguf(model, tok, mapping, out_file, qtype, progress, yarn=store_yarn)
            report.update(source=source, seconds=round(time.perf_counter() - t0, 3), yarn=store_yarn)
            if yarn_on and not store_yarn:
                y = cfg.resolved_rope_scaling
                report["note"] = (f"YaRN not stored (beta_fast/beta_slow other than llama.cpp's fixed 32/1); run "
                                  f"llama.cpp with --rope-scaling yarn --rope-scale {y.factor:g} --yarn-orig-ctx "
                                  f"{y.original_max_position_embeddings} --yarn-beta-fast {y.beta_fast:g} "
                                  f"--yarn-beta-slow {y.beta_slow:g}")
            if modelfile:
                report["modelfile"] = str(write_modelfile(out_file))
            if check:
                extra = {}
                if qtype != "f32":
                    if not reference.is_file():
                        write_gguf(model, tok, mapping, reference, "f32", None, yarn=store_yarn)
                    if progress:
                        progress(1, 1, "quality against the f32 export (llama.cpp, held-out text)")
                    text, where = heldout_text(model_or_path if isinstance(model_or_path, (str, Path)) else None,
                                               heldout, tok)
                    ids = heldout_ids(tok, text, cfg.max_position_embeddings)
                    extra["quality"] = measure_quality(reference, out_file, ids, where)
                if progress:
                    progress(1, 1, "parity check with llama.cpp")
                # raises ParityError on failure
                report["parity"] = check_parity(model, tok, out_file, qtype, extra=extra)
    finally:
        if yarn_on and not store_yarn:
            model.model.set_rope_scaling(True)
    return report


def write_kquant(reference: Path, out_file: Path, qtype: str, m: ArchMapping, progress: Progress | None) -> dict:
    """Quantize the f32 export `reference` to `out_file` with llama.cpp (see `core.export.quantize`)."""
    if progress:
        progress(0, 0, f"quantizing to {qtype} with llama.cpp")
    types = quantize_gguf(reference, out_file, qtype)
    return {"path": str(out_file), "arch": m.arch, "mapping": m.reason, "qtype": qtype,
            "tensors": len(types["tensor_types"]), "file_bytes": out_file.stat().st_size,
            "quantizer": "llama.cpp llama_model_quantize", **types}


def check_vocab(cfg, tok) -> None:
    if cfg.vocab_size < tok.vocab_size:
        raise UnsupportedExport(
            f"model_config.json: vocab_size: the model has {cfg.vocab_size} embeddings but its tokenizer has "
            f"{tok.vocab_size} tokens; the checkpoint and tokenizer/ do not belong together")


def yarn_storable(cfg) -> bool:
    """llama.cpp reads factor, original context and attention factor from GGUF for our architectures, but
    uses fixed beta_fast 32 / beta_slow 1 (MiniMind's defaults)."""
    y = cfg.resolved_rope_scaling
    return y.beta_fast == 32.0 and y.beta_slow == 1.0 and cfg.max_position_embeddings > y.original_max_position_embeddings


def add_yarn(w: gguf.GGUFWriter, cfg) -> None:
    y = cfg.resolved_rope_scaling
    w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    w.add_rope_scaling_factor(float(y.factor))
    w.add_rope_scaling_orig_ctx_len(int(y.original_max_position_embeddings))
    # ggml multiplies cos/sin by attn_factor*(1 + 0.1*ln(factor)) (llama-context.cpp cancels only its own
    # mscale); MiniMind multiplies them by attention_factor alone, so divide that term out.
    w.add_rope_scaling_attn_factors(float(y.attention_factor) / (1.0 + 0.1 * math.log(y.factor)))


def write_gguf(model, tok, m: ArchMapping, out_file: Path, qtype: str, progress: Progress | None,
               yarn: bool = False) -> dict:
    cfg = model.config
    sd = {k: v for k, v in model.state_dict().items()}
    tensor_type, file_type = QTYPES[qtype]
    w = gguf.GGUFWriter(str(out_file), m.arch)
    add_hparams(w, cfg, m, sd, file_type)
    if yarn:
        add_yarn(w, cfg)
    add_tokenizer(w, tok, cfg.vocab_size)
    fallbacks: list[str] = []
    total = tensor_count(cfg, m)
    n_bytes = 0
    for idx, (name, data, kind) in enumerate(gguf_tensors(sd, cfg, m)):
        arr, used = encode_tensor(data, kind, tensor_type)
        if kind == "weight" and used != tensor_type:
            fallbacks.append(f"{name} {list(data.shape)}: {used.name} (rows of {data.shape[-1]} are not a "
                             f"multiple of {tensor_type.name}'s block of {block_size(tensor_type)})")
        if used in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            w.add_tensor(name, arr)
        else:
            w.add_tensor(name, arr, raw_dtype=used)
        n_bytes += arr.nbytes
        if progress:
            progress(idx + 1, total, f"{name} ({used.name})")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    types = describe_types(out_file)  # read back: what the file holds, not what we meant to write
    return {"path": str(out_file), "arch": m.arch, "mapping": m.reason, "qtype": qtype, "tensors": total,
            "tensor_bytes": n_bytes, "file_bytes": out_file.stat().st_size, "fallbacks": fallbacks,
            "tensor_types": types["tensor_types"], "type_counts": types["type_counts"]}


def block_size(t: gguf.GGMLQuantizationType) -> int:
    return gguf.GGML_QUANT_SIZES[t][0]


def encode_tensor(data: np.ndarray, kind: str, want: gguf.GGMLQuantizationType):
    """(array to write, type used). 1-D norms and the router stay f32 (tiny, and precision-critical);
    a block type falls back to f16 when the rows are not a whole number of blocks."""
    F32, F16 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16
    if kind != "weight" or want == F32:
        return data.astype(np.float32), F32
    if want == F16:
        return data.astype(np.float16), F16
    if data.shape[-1] % block_size(want):
        return data.astype(np.float16), F16
    return gguf.quants.quantize(data, want), want


def add_hparams(w: gguf.GGUFWriter, cfg, m: ArchMapping, sd: dict, file_type) -> None:
    hd = cfg.resolved_head_dim
    w.add_name("MiniMind")
    w.add_file_type(int(file_type))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(cfg.vocab_size)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(float(cfg.rope_theta))  # silently 10000 when missing
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    if not m.moe:
        w.add_feed_forward_length(cfg.resolved_intermediate_size)
        return
    ff = cfg.resolved_moe_intermediate_size
    w.add_feed_forward_length(ff)
    w.add_expert_feed_forward_length(ff)
    w.add_expert_count(cfg.n_routed_experts)        # missing -> llama.cpp aborts the process
    w.add_expert_used_count(cfg.num_experts_per_tok)
    if m.shared:
        gate, _, _ = shared_expert_block(sd, "model.layers.0.mlp", cfg)
        w.add_expert_shared_count(gate.shape[0] // ff)  # bailingmoe: shared width = count * expert width
        w.add_expert_weights_norm(cfg.renormalises_topk)
        w.add_expert_weights_scale(1.0)
        if m.arch == "bailingmoe2":
            w.add_expert_gating_func(gguf.ExpertGatingFuncType.SOFTMAX)
            w.add_expert_shared_feed_forward_length(ff)
            w.add_leading_dense_block_count(0)
            w.add_nextn_predict_layers(0)


def token_types(tok, n_vocab: int) -> list[int]:
    """GGUF token types, by the tokenizer's own flags as convert_hf_to_gguf.py's `get_vocab_base` sets them.

    Added tokens marked special -> CONTROL; every other added token (<think>, <tool_call>, <tool_response>,
    <|buffer1|>, ...) -> USER_DEFINED, so llama.cpp keeps it one token and shows it in text, as HF does; without
    it llama.cpp splits `<tool_call>` into plain BPE pieces. convert_hf_to_gguf.py also turns non-special
    tokens spelled `<|...|>` into CONTROL by their look; we keep the tokenizer's flag instead, since CONTROL
    tokens are dropped from llama.cpp's text output and not matched without special-token parsing, while HF
    matches and shows non-special added tokens always.
    """
    control = tok.control_ids
    added = set(tok.special_tokens.values())  # every atomic added token
    types = []
    for i in range(n_vocab):
        if i >= tok.vocab_size:
            types.append(gguf.TokenType.UNUSED)
        elif i in control:
            types.append(gguf.TokenType.CONTROL)
        elif i in added:
            types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    return [int(t) for t in types]


# our tokenizer's split (MiniMindTokenizer.pre_tokenizer) -> llama.cpp's pre-tokenizer with the same regex
LLAMA_PRE = {"gpt2": "gpt-2", "qwen2": "qwen2"}


def llama_pre(tok) -> str:
    """llama.cpp's `tokenizer.ggml.pre` for this tokenizer; a split llama.cpp has no match for cannot export."""
    pre = LLAMA_PRE.get(tok.pre_tokenizer)
    if pre is None:
        raise UnsupportedExport(
            "the tokenizer splits text in a way llama.cpp has no pre-tokenizer for (tokenizer.json "
            f"pre_tokenizer: {json.dumps(tok.pre_tokenizer_spec)[:200]}); supported: GPT-2's ByteLevel "
            "regex and Qwen2's digit-splitting regex")
    return pre


def add_tokenizer(w: gguf.GGUFWriter, tok, n_vocab: int) -> None:
    """The byte-level BPE tokenizer as llama.cpp's "gpt2" model with the matching pre-tokenizer regex."""
    tokens = tok.tokens + [f"<|unused_{i}|>" for i in range(tok.vocab_size, n_vocab)]  # padded embedding rows
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(llama_pre(tok))  # the same split as ours, or llama.cpp tokenizes differently
    w.add_token_list(tokens)
    w.add_token_types(token_types(tok, n_vocab))
    w.add_token_merges(tok.merges)  # "a b" strings
    w.add_bos_token_id(tok.bos_id)
    w.add_eos_token_id(tok.eos_id)
    w.add_pad_token_id(tok.pad_id)
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    w.add_chat_template(tok.chat_template)


__all__ = ["GGUF_TYPES", "KQUANTS", "QTYPES", "UnsupportedExport", "export_gguf", "write_gguf", "write_modelfile"]
