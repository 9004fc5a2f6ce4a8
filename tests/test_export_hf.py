"""HF export loads in transformers without custom code and computes our logits; imports round-trip."""
from __future__ import annotations

import json

import pytest
import torch

from tests.fixtures.export import tiny_model

from core.export.parity import one_torch_thread  # noqa: E402
from core.export import ImportCheckpointError, UnsupportedExport, export_hf, import_checkpoint  # noqa: E402
from core.model.io import load_model  # noqa: E402

TEXT = "Hello, world! 你好，世界！🙂 def f(x): return x<think>ok</think>"
HF_KINDS = {"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM", "qwen3moe": "Qwen3MoeForCausalLM",
            "bailingmoe": "Qwen2MoeForCausalLM"}


def logits(model, tok, text=TEXT):
    with torch.no_grad(), one_torch_thread():  # MoE index_add is ~1000x slower on 2 busy threads
        return model(torch.tensor([tok.encode(text)])).logits


@pytest.mark.parametrize("kind", list(HF_KINDS))
def test_hf_export_loads_in_transformers_with_our_logits(kind, tiny_tokenizer, tmp_path):
    transformers = pytest.importorskip("transformers")
    model = tiny_model(kind, tiny_tokenizer.vocab_size)
    report = export_hf(model, tmp_path / "hf", tokenizer=tiny_tokenizer)
    assert report["architecture"] == HF_KINDS[kind]
    hf, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32,
                                                                 output_loading_info=True)
    assert type(hf).__name__ == HF_KINDS[kind]
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ours, theirs = logits(model, tiny_tokenizer), logits(hf.eval(), tiny_tokenizer)
    assert (ours - theirs).abs().max() <= 1e-4
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tok(TEXT, add_special_tokens=False)["input_ids"] == tiny_tokenizer.encode(TEXT)
    chat = [{"role": "user", "content": "你好"}]
    assert hf_tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == \
        tiny_tokenizer.apply_chat_template(chat, add_generation_prompt=True)


def test_moe_with_qk_norm_and_shared_experts_is_refused_clearly(tiny_tokenizer, tmp_path):
    model = tiny_model("bailingmoe2", tiny_tokenizer.vocab_size)
    with pytest.raises(UnsupportedExport, match="no exact transformers class.*export to GGUF"):
        export_hf(model, tmp_path / "hf", tokenizer=tiny_tokenizer)
    assert not (tmp_path / "hf" / "model.safetensors").exists()


@pytest.mark.parametrize("kind", ["llama", "qwen3", "bailingmoe"])
def test_minimind_pth_import_round_trip(kind, tiny_tokenizer, tiny_tokenizer_dir, tmp_path):
    """A MiniMind .pth: fp16, embedding and lm_head both present, 4 heads given (the default is MiniMind's 8)."""
    eps = 1e-6 if kind == "qwen3" else 1e-5  # MiniMind v3 (QK-norm) uses 1e-6, v2 1e-5: what import assumes
    model = tiny_model(kind, tiny_tokenizer.vocab_size, rms_norm_eps=eps)
    sd = {k: v.half() for k, v in model.state_dict().items()}
    assert "lm_head.weight" in sd and "model.embed_tokens.weight" in sd
    torch.save(sd, tmp_path / "full_sft_64.pth")
    report = import_checkpoint(tmp_path / "full_sft_64.pth", tmp_path / "ckpt", tokenizer_dir=tiny_tokenizer_dir,
                               heads=4)
    imported, tok = load_model(report["path"])
    assert imported.config.tie_word_embeddings and imported.config.qk_norm == (kind == "qwen3")
    assert imported.config.n_shared_experts == (1 if kind == "bailingmoe" else imported.config.n_shared_experts)
    reference = tiny_model(kind, tiny_tokenizer.vocab_size, rms_norm_eps=eps)
    reference.load_state_dict({k: v.float() for k, v in sd.items()})  # the same fp16-rounded weights
    assert torch.equal(logits(imported, tok), logits(reference, tiny_tokenizer))


YARN = {"factor": 8.0, "original_max_position_embeddings": 16, "attention_factor": 1.3}  # active on short prompts


def test_hf_export_carries_yarn(tiny_tokenizer, tmp_path):
    transformers = pytest.importorskip("transformers")
    model = tiny_model("qwen3", tiny_tokenizer.vocab_size, inference_rope_scaling=True, rope_scaling=YARN)
    assert export_hf(model, tmp_path / "hf", tokenizer=tiny_tokenizer)["yarn"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    text = TEXT * 4  # ~100 tokens, far past the 16 "trained" positions
    assert (logits(model, tiny_tokenizer, text) - logits(hf, tiny_tokenizer, text)).abs().max() <= 1e-4
    imported, tok = load_model(import_checkpoint(tmp_path / "hf", tmp_path / "ckpt")["path"])
    assert imported.config.rope_scaling == model.config.rope_scaling and imported.model.yarn_enabled


@pytest.mark.parametrize("kind", list(HF_KINDS))
def test_hf_folder_import_round_trip(kind, tiny_tokenizer, tmp_path):
    model = tiny_model(kind, tiny_tokenizer.vocab_size)
    export_hf(model, tmp_path / "hf", tokenizer=tiny_tokenizer)
    report = import_checkpoint(tmp_path / "hf", tmp_path / "ckpt")
    imported, tok = load_model(report["path"])
    for field in ("hidden_size", "num_attention_heads", "num_key_value_heads", "qk_norm", "use_moe",
                  "n_shared_experts", "num_experts_per_tok", "rope_theta", "rms_norm_eps"):
        assert getattr(imported.config, field) == getattr(model.config, field), field
    assert torch.equal(logits(imported, tok), logits(model, tiny_tokenizer))


def test_import_errors_say_what_is_wrong(tiny_tokenizer, tiny_tokenizer_dir, tmp_path):
    torch.save({"tok_embeddings.weight": torch.zeros(8, 4)}, tmp_path / "old.pth")
    with pytest.raises(ImportCheckpointError, match="pre-2025-04 MiniMind weights"):
        import_checkpoint(tmp_path / "old.pth", tmp_path / "o1", tokenizer_dir=tiny_tokenizer_dir)
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ImportCheckpointError, match=r"config.json: model_type: 'gpt2' is not supported"):
        import_checkpoint(tmp_path / "gpt2", tmp_path / "o2")
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    with pytest.raises(ImportCheckpointError, match="junk.pth: not a readable PyTorch weights file"):
        import_checkpoint(tmp_path / "junk.pth", tmp_path / "o3", tokenizer_dir=tiny_tokenizer_dir)
    model = tiny_model("llama", tiny_tokenizer.vocab_size)
    torch.save(model.state_dict(), tmp_path / "m.pth")
    with pytest.raises(ImportCheckpointError, match="no tokenizer found.*--tokenizer"):
        import_checkpoint(tmp_path / "m.pth", tmp_path / "o4")
