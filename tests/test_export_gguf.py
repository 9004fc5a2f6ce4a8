"""GGUF export: the llama.cpp architecture mapping is exact for every MiniMind shape, checked by llama.cpp itself."""
from __future__ import annotations

import copy
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
    assert p["chat_template_match"] and p["chat_cases"] == 4, p["problems"]
    assert p["rel_logit_diff"] <= 1e-3, p["max_abs_logit_diff"]
    assert p["greedy_identical"] and p["greedy_torch"] == p["greedy_llama_cpp"]
    assert len(p["greedy_torch"]) == 32
    written = json.loads((tmp_path / f"{kind}.parity.json").read_text())
    assert written["passed"] and written["rel_logit_diff"] == p["rel_logit_diff"]


def tiny_preset_model(preset: str, vocab_size: int):
    """A 2-layer, 64-wide model of a preset's architecture (same norms, routing, top-k; smaller sizes)."""
    import torch

    from core.config import get_preset
    from core.model import MiniMindForCausalLM

    torch.manual_seed(0)
    cfg = get_preset(preset, vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16, intermediate_size=128, max_position_embeddings=256)
    return MiniMindForCausalLM(cfg).eval()


@pytest.mark.parametrize("preset,arch", [("minimind3", "qwen3"), ("minimind3-moe", "qwen3moe")])
def test_minimind3_presets_export_exactly(preset, arch, tiny_tokenizer, tmp_path):
    report = export_gguf(tiny_preset_model(preset, tiny_tokenizer.vocab_size), tmp_path / "m.gguf", "f32",
                         tokenizer=tiny_tokenizer)
    p = report["parity"]
    assert report["arch"] == arch and p["passed"] and p["greedy_identical"]
    assert p["rel_logit_diff"] <= 1e-3


@pytest.fixture(scope="module")
def v3_tokenizer(shared_data):
    """MiniMind's own minimind-3 tokenizer: 6400 ids, 21 special + 15 non-special added tokens, upstream's
    tools/thinking chat template."""
    from core.tokenizer import MiniMindTokenizer

    return MiniMindTokenizer.load(shared_data / "minimind-tokenizers" / "v3")


@pytest.mark.parametrize("preset", ["minimind3", "minimind3-moe"])
def test_v3_tokenizer_exports_added_tokens_and_tool_chat_exactly(preset, v3_tokenizer, tmp_path):
    """The found bug: <tool_call> came out of llama.cpp as plain-text pieces. Every added token must stay one
    token, and the file's chat template must render tool conversations as we do."""
    out = tmp_path / "m3.gguf"
    report = export_gguf(tiny_preset_model(preset, v3_tokenizer.vocab_size), out, "f32", tokenizer=v3_tokenizer)
    p = report["parity"]
    assert p["passed"] and p["tokenizer_match"] and p["greedy_identical"] and p["rel_logit_diff"] <= 1e-3
    assert p["n_added_tokens"] == 36 and p["chat_template_match"] and p["chat_cases"] == 4, p["problems"]
    types = gguf.GGUFReader(str(out)).fields["tokenizer.ggml.token_type"].contents()
    assert types[:21] == [3] * 21 and types[21:36] == [4] * 15 and set(types[36:]) == {1}
    llm = llama_cpp.Llama(model_path=str(out), vocab_only=True, verbose=False)
    for text, ids in (("<tool_call>", [21]), ("</tool_call>", [22]), ("<think>", [25]), ("<|buffer9|>", [35])):
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids == v3_tokenizer.encode(text)
        # USER_DEFINED: atomic even without special-token parsing, as HF treats non-special added tokens
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == ids
    assert llm.detokenize([21, 25]).decode() == "<tool_call><think>"  # shown in text, not dropped as control


def test_minimind3_moe_pth_with_v3_tokenizer_imports_and_exports_as_qwen3moe(v3_tokenizer, shared_data, tmp_path):
    """A minimind-3-moe `.pth` (fp16, embedding and lm_head both stored, as upstream saves) imports with top-1
    renormalised routing, the router upstream computes, and exports exactly as qwen3moe."""
    import torch

    from core.export import import_checkpoint

    model = tiny_preset_model("minimind3-moe", v3_tokenizer.vocab_size)
    torch.save({k: v.half() for k, v in model.state_dict().items()}, tmp_path / "full_sft_64_moe.pth")
    report = import_checkpoint(tmp_path / "full_sft_64_moe.pth", tmp_path / "ckpt",
                               tokenizer_dir=shared_data / "minimind-tokenizers" / "v3")
    out = export_gguf(report["path"], tmp_path / "m3.gguf", "f32")
    assert out["arch"] == "qwen3moe" and out["parity"]["passed"] and out["parity"]["chat_template_match"]


def test_parity_text_holds_every_added_token(v3_tokenizer, tiny_tokenizer):
    from core.export.parity import parity_text

    for tok in (v3_tokenizer, tiny_tokenizer):
        text = parity_text(tok)
        ids = tok.encode(text)
        assert set(tok.special_tokens.values()) <= set(ids)


def test_parity_check_catches_a_chat_template_llama_cpp_renders_differently(tiny_tokenizer, tmp_path):
    model = tiny_model("llama", tiny_tokenizer.vocab_size)
    export_gguf(model, tmp_path / "m.gguf", "f32", tokenizer=tiny_tokenizer, check=False)
    changed = copy.copy(tiny_tokenizer)
    changed.chat_template = tiny_tokenizer.chat_template.replace("# Tools", "# Functions")
    with pytest.raises(ParityError, match="chat case 0: the file's chat template renders differently"):
        check_parity(model, changed, tmp_path / "m.gguf", "f32", write=False)


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
    # 3 control tokens, then <think> </think> <tool_call> </tool_call> <tool_response> </tool_response>
    n_added = len(tiny_tokenizer.special_tokens)
    assert field("tokenizer.ggml.token_type")[:n_added + 1] == [3, 3, 3] + [4] * (n_added - 3) + [1]
    assert (field("tokenizer.ggml.bos_token_id"), field("tokenizer.ggml.eos_token_id")) == (1, 2)
    assert field("tokenizer.ggml.add_bos_token") is False
    assert field("tokenizer.chat_template") == tiny_tokenizer.chat_template
    assert field("bailingmoe.rope.freq_base") == pytest.approx(1e6)
    assert field("bailingmoe.expert_weights_norm") is True
    assert field("bailingmoe.expert_count") == 4 and field("bailingmoe.expert_used_count") == 2
    modelfile = (tmp_path / "m.Modelfile").read_text()
    assert modelfile.startswith("FROM ./m.gguf") and "{{- if .Tools }}" in modelfile


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
    # MiniMind2's router keeps the softmax weight at top-1, so qwen3moe (always renormalised) is not exact
    assert choose_architecture(tiny_config("qwen3moe", 64, num_experts_per_tok=1)).arch == "bailingmoe2"
    # minimind-3's router renormalises top-1 to weight 1, as qwen3moe does
    assert choose_architecture(tiny_config("qwen3moe", 64, num_experts_per_tok=1, renormalise_top1=True)).arch == "qwen3moe"
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


def test_digit_split_tokenizer_exports_as_llama_cpp_qwen2_and_only_that_matches(digit_tokenizer, tmp_path,
                                                                                  monkeypatch):
    """A tokenizer trained with pre_tokenizer="qwen2" (the demo's) is written with llama.cpp's "qwen2" split and
    tokenizes identically there; written as "gpt-2" the parity check fails on the digits of its text."""
    from core.export import gguf as gguf_export

    model = tiny_model("llama", digit_tokenizer.vocab_size)
    report = export_gguf(model, tmp_path / "q.gguf", "f32", tokenizer=digit_tokenizer)
    assert report["parity"]["passed"] and report["parity"]["tokenizer_match"]
    reader = gguf.GGUFReader(str(tmp_path / "q.gguf"))
    field = reader.fields["tokenizer.ggml.pre"]
    assert bytes(field.parts[field.data[0]]).decode() == "qwen2"

    monkeypatch.setitem(gguf_export.LLAMA_PRE, "qwen2", "gpt-2")
    with pytest.raises(ParityError, match="tokeni"):
        export_gguf(model, tmp_path / "wrong.gguf", "f32", tokenizer=digit_tokenizer)


def test_a_split_llama_cpp_cannot_match_is_refused_before_writing(tiny_tokenizer, tmp_path):
    from tokenizers import Tokenizer, pre_tokenizers

    from core.tokenizer import MiniMindTokenizer

    backend = Tokenizer.from_str(tiny_tokenizer.backend.to_str())
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    odd = MiniMindTokenizer(backend, tiny_tokenizer.chat_template)
    with pytest.raises(UnsupportedExport, match="no pre-tokenizer for.*\"Whitespace\""):
        export_gguf(tiny_model("llama", odd.vocab_size), tmp_path / "odd.gguf", "f32", tokenizer=odd)
    assert not (tmp_path / "odd.gguf").exists()
