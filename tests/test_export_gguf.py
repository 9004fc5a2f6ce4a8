"""GGUF export: the llama.cpp architecture mapping is exact for every MiniMind shape, checked by llama.cpp itself."""
from __future__ import annotations

import json

import pytest

from tests.fixtures.export import TINY_KINDS, tiny_config, tiny_model

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
gguf = pytest.importorskip("gguf")

from core.export import ParityError, UnsupportedExport, check_parity, choose_architecture, export_gguf  # noqa: E402
from core.export.gguf import write_gguf  # noqa: E402
from core.export.mapping import ArchMapping  # noqa: E402


@pytest.mark.parametrize("kind", list(TINY_KINDS))
def test_f32_export_matches_torch_exactly(kind, tiny_tokenizer, tmp_path):
    model = tiny_model(kind, tiny_tokenizer.vocab_size)
    report = export_gguf(model, tmp_path / f"{kind}.gguf", "f32", tokenizer=tiny_tokenizer)
    p = report["parity"]
    assert report["arch"] == kind
    assert p["tokenizer_match"], "llama.cpp must tokenize English/Chinese/emoji/code/specials like we do"
    assert p["rel_logit_diff"] <= 1e-3, p["max_abs_logit_diff"]
    assert p["greedy_identical"] and p["greedy_torch"] == p["greedy_llama_cpp"]
    assert len(p["greedy_torch"]) == 32
    written = json.loads((tmp_path / f"{kind}.parity.json").read_text())
    assert written["passed"] and written["rel_logit_diff"] == p["rel_logit_diff"]


def test_metadata_carries_tokenizer_and_hparams(tiny_tokenizer, tmp_path):
    model = tiny_model("bailingmoe", tiny_tokenizer.vocab_size)
    out = tmp_path / "m.gguf"
    export_gguf(model, out, "f32", tokenizer=tiny_tokenizer, check=False)
    r = gguf.GGUFReader(str(out))

    def field(name):
        f = r.fields[name]
        return f.contents()

    assert field("general.architecture") == "bailingmoe"
    assert field("tokenizer.ggml.pre") == "gpt-2" and field("tokenizer.ggml.model") == "gpt2"
    assert field("tokenizer.ggml.tokens") == tiny_tokenizer.tokens
    assert field("tokenizer.ggml.merges")[:3] == tiny_tokenizer.merges[:3]
    assert field("tokenizer.ggml.token_type")[:5] == [3, 3, 3, 4, 4]  # 3 control tokens, <think> </think>
    assert (field("tokenizer.ggml.bos_token_id"), field("tokenizer.ggml.eos_token_id")) == (1, 2)
    assert field("tokenizer.ggml.add_bos_token") is False
    assert field("tokenizer.chat_template") == tiny_tokenizer.chat_template
    assert field("bailingmoe.rope.freq_base") == pytest.approx(1e6)
    assert field("bailingmoe.expert_weights_norm") is True
    assert field("bailingmoe.expert_count") == 4 and field("bailingmoe.expert_used_count") == 2
    modelfile = (tmp_path / "m.Modelfile").read_text()
    assert modelfile.startswith("FROM ./m.gguf") and 'PARAMETER stop "<|im_end|>"' in modelfile


# llama q8_0 runs in the CLI test. The qwen3 case also has an untied head and 32 embedding rows past the
# tokenizer (written as UNUSED tokens), which llama.cpp must accept.
@pytest.mark.parametrize("kind,qtype,extra", [("qwen3", "f16", dict(tie_word_embeddings=False, pad=32)),
                                              ("bailingmoe", "q8_0", {})])
def test_quantised_exports_keep_greedy_agreement(kind, qtype, extra, tiny_tokenizer, tmp_path):
    extra = dict(extra)
    vocab = tiny_tokenizer.vocab_size + extra.pop("pad", 0)
    model = tiny_model(kind, vocab, **extra)
    report = export_gguf(model, tmp_path / "m.gguf", qtype, tokenizer=tiny_tokenizer)
    p = report["parity"]
    assert p["tokenizer_match"]
    assert p["top1_agreement"] >= 0.9
    assert report["fallbacks"] == []  # every row of the tiny model is a whole number of q8_0 blocks
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(tmp_path / "m.gguf")).tensors}
    assert types["blk.0.attn_norm.weight"] == "F32"  # norms stay f32
    assert types["blk.0.attn_output.weight"] == qtype.upper()


def test_rows_that_are_not_whole_blocks_fall_back_to_f16(tiny_tokenizer, tmp_path):
    model = tiny_model("llama", tiny_tokenizer.vocab_size, intermediate_size=80)  # ffn_down rows of 80
    report = export_gguf(model, tmp_path / "m.gguf", "q8_0", tokenizer=tiny_tokenizer, check=False)
    assert [f.split()[0] for f in report["fallbacks"]] == ["blk.0.ffn_down.weight", "blk.1.ffn_down.weight"]


def test_parity_check_catches_a_wrong_file(tiny_tokenizer, tmp_path):
    """Without the Q/K permutation llama's interleaved RoPE scrambles attention: the check must fail."""
    model = tiny_model("llama", tiny_tokenizer.vocab_size)
    wrong = ArchMapping("llama", False, False, False, False, False, "deliberately unpermuted")
    write_gguf(model, tiny_tokenizer, wrong, tmp_path / "wrong.gguf", "f32", None)
    with pytest.raises(ParityError, match="logits differ") as info:
        check_parity(model, tiny_tokenizer, tmp_path / "wrong.gguf", "f32")
    assert info.value.report["rel_logit_diff"] > 1e-3


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_gguf_gives_a_clear_error_and_the_caller_survives(damage, tiny_tokenizer, tmp_path):
    model = tiny_model("llama", tiny_tokenizer.vocab_size)
    path = tmp_path / "bad.gguf"
    export_gguf(model, path, "f32", tokenizer=tiny_tokenizer, check=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"GGUF" + b"\x07" * 4000)
    with pytest.raises(ParityError, match="llama.cpp could not load or run this file"):
        check_parity(model, tiny_tokenizer, path, "f32")


def test_architecture_choice_and_refusal(tiny_tokenizer):
    arch = {k: choose_architecture(tiny_config(k, 64)).arch for k in TINY_KINDS}
    assert arch == {k: k for k in TINY_KINDS}
    # top-1 routing is not renormalised by our router, so qwen3moe (always renormalised) is not exact
    assert choose_architecture(tiny_config("qwen3moe", 64, num_experts_per_tok=1)).arch == "bailingmoe2"
    assert choose_architecture(tiny_config("llama", 64, use_moe=True, n_shared_experts=0)).arch == "bailingmoe"
    with pytest.raises(UnsupportedExport, match="fused QKV"):
        choose_architecture(tiny_config("bailingmoe2", 64, head_dim=32))


def test_tiny_gguf_fixture_is_a_checked_export(tiny_gguf):
    report = json.loads(tiny_gguf.with_suffix(".parity.json").read_text())
    assert report["passed"] and report["qtype"] == "f32" and report["chat_template_in_file"]
    assert tiny_gguf.with_suffix(".Modelfile").is_file()


def test_llama_cpp_abort_is_contained_in_the_child(tiny_tokenizer, tmp_path, monkeypatch):
    """Without expert_count llama.cpp hits a GGML_ASSERT and SIGABRTs: only the worker process dies."""
    model = tiny_model("qwen3moe", tiny_tokenizer.vocab_size)
    monkeypatch.setattr(gguf.GGUFWriter, "add_expert_count", lambda self, n: None)  # craft the broken file
    export_gguf(model, tmp_path / "broken.gguf", "f32", tokenizer=tiny_tokenizer, check=False)
    monkeypatch.undo()
    with pytest.raises(ParityError, match="SIGABRT") as info:
        check_parity(model, tiny_tokenizer, tmp_path / "broken.gguf", "f32")
    assert info.value.report["returncode"] < 0


def test_yarn_is_stored_exactly(tiny_tokenizer, tmp_path):
    """YaRN over 16 trained positions (so the 150-token prompt exercises it), with an attention factor."""
    yarn = {"factor": 8.0, "original_max_position_embeddings": 16, "attention_factor": 1.3}
    model = tiny_model("qwen3", tiny_tokenizer.vocab_size, inference_rope_scaling=True, rope_scaling=yarn)
    report = export_gguf(model, tmp_path / "yarn.gguf", "f32", tokenizer=tiny_tokenizer)
    assert report["yarn"] and report["parity"]["rel_logit_diff"] <= 1e-3 and model.model.yarn_enabled
    model.model.set_rope_scaling(False)  # the same weights without YaRN compute something else
    with pytest.raises(ParityError, match="logits differ"):
        check_parity(model, tiny_tokenizer, tmp_path / "yarn.gguf", "f32", write=False)
