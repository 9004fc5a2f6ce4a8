"""K-quant exports (Q4_K_M, Q5_K_M, Q6_K) by llama.cpp's own quantizer, and the quality of any quantized file
against the f32 export on held-out text (perplexity change, top-1 agreement, mean KL)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.fixtures.export import tiny_model

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
gguf = pytest.importorskip("gguf")

from core.cli import main  # noqa: E402
from core.export import GGUF_TYPES, KQUANTS, QTYPES, QuantizeError, export_gguf  # noqa: E402
from core.export.quality import (HELDOUT_TEXT, compare_logits, heldout_ids, heldout_text,  # noqa: E402
                                 measure_quality)
from core.export.quantize import quantize_gguf, tensor_types  # noqa: E402

WIDE = dict(hidden_size=256, intermediate_size=512)  # every matrix row a multiple of 256: real K-quant blocks


def read_types(path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}


def assert_sane(quality: dict) -> None:
    values = [quality[k] for k in ("perplexity_f32", "perplexity", "perplexity_change", "top1_agreement",
                                   "mean_kl", "max_kl")]
    assert all(math.isfinite(v) for v in values), quality
    assert quality["mean_kl"] >= 0 and quality["max_kl"] >= quality["mean_kl"]
    assert 0.0 <= quality["top1_agreement"] <= 1.0 and quality["n_tokens"] > 100


def test_the_type_table_is_the_one_list_every_reader_uses():
    assert list(GGUF_TYPES) == ["f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"]
    assert set(QTYPES) | set(KQUANTS) == set(GGUF_TYPES) and not set(QTYPES) & set(KQUANTS)
    assert all(hasattr(llama_cpp, ftype) for ftype in KQUANTS.values())


def test_a_tiny_model_s_k_quant_export_reports_every_tensor_that_fell_back(tiny_tokenizer, tmp_path):
    """Rows of 64 and 128 cannot hold a 256-weight K block: llama.cpp gives each matrix a legacy type, and the
    report names each one with its reason, as read back from the file."""
    out = tmp_path / "m.gguf"
    report = export_gguf(tiny_model("llama", tiny_tokenizer.vocab_size), out, "q4_k_m", tokenizer=tiny_tokenizer)
    types = read_types(out)
    assert report["tensor_types"] == types and report["quantizer"] == "llama.cpp llama_model_quantize"
    matrices = sorted(name for name, (_t, shape) in tensor_types(out).items() if len(shape) == 2)
    assert sorted(f.split()[0] for f in report["fallbacks"]) == matrices  # every matrix, and nothing else
    assert all("not a multiple of 256" in f for f in report["fallbacks"])
    assert types["blk.0.attn_q.weight"] == "Q5_0"  # llama.cpp's fallback for Q4_K
    assert types["blk.0.attn_norm.weight"] == "F32" and not {"Q4_K", "Q6_K"} & set(types.values())
    p = report["parity"]
    assert p["passed"] and p["tokenizer_match"] and p["chat_template_match"]
    assert_sane(p["quality"])
    assert p["quality"]["heldout"].startswith("built-in")
    written = json.loads((tmp_path / "m.parity.json").read_text())
    assert written["quality"] == p["quality"]


@pytest.mark.parametrize("qtype,base", [("q4_k_m", "Q4_K"), ("q5_k_m", "Q5_K"), ("q6_k", "Q6_K")])
def test_rows_of_256_get_real_k_quant_blocks_and_quality_orders_by_bits(qtype, base, tiny_tokenizer, tmp_path):
    out = tmp_path / f"{qtype}.gguf"
    report = export_gguf(tiny_model("llama", tiny_tokenizer.vocab_size, **WIDE), out, qtype,
                         tokenizer=tiny_tokenizer)
    types = read_types(out)
    assert report["fallbacks"] == []
    assert types["blk.0.attn_q.weight"] == base and types["blk.1.ffn_up.weight"] == base
    if qtype != "q6_k":  # the _M mixes keep some tensors at Q6_K (llama.cpp's choice, not a fallback)
        assert report["type_counts"]["Q6_K"] >= 1
    assert report["parity"]["passed"]
    quality = report["parity"]["quality"]
    assert_sane(quality)
    assert 0 < quality["mean_kl"] < {"q6_k": 1e-3, "q5_k_m": 2e-3, "q4_k_m": 5e-3}[qtype]  # random init: small
    assert abs(quality["perplexity_change"]) < 0.02 and quality["top1_agreement"] > 0.9


def test_the_f32_export_against_itself_has_no_loss(tiny_tokenizer, tmp_path):
    out = tmp_path / "f32.gguf"
    model = tiny_model("llama", tiny_tokenizer.vocab_size)
    export_gguf(model, out, "f32", tokenizer=tiny_tokenizer, check=False)
    ids = heldout_ids(tiny_tokenizer, HELDOUT_TEXT, model.config.max_position_embeddings)
    q = measure_quality(out, out, ids, "same file")
    assert q["mean_kl"] == pytest.approx(0.0, abs=1e-12) and q["top1_agreement"] == 1.0
    assert q["perplexity_change"] == pytest.approx(0.0, abs=1e-12) and q["perplexity"] == q["perplexity_f32"]


def test_quality_figures_by_hand():
    """Two tokens. Reference p = (3/4, 1/4), other q = (1/4, 3/4); the text is token 0 twice.
    Perplexity 4/3 -> 4 (+200 %), top-1 disagrees, KL(p||q) = 3/4 ln 3 + 1/4 ln(1/3) = ln(3)/2."""
    ref = np.log(np.array([[0.75, 0.25], [0.75, 0.25]]))
    other = np.log(np.array([[0.25, 0.75], [0.25, 0.75]]))
    q = compare_logits(ref, other, [0, 0])
    assert q["n_tokens"] == 1
    assert q["perplexity_f32"] == pytest.approx(4 / 3) and q["perplexity"] == pytest.approx(4.0)
    assert q["perplexity_change"] == pytest.approx(2.0) and q["top1_agreement"] == 0.0
    assert q["mean_kl"] == pytest.approx(math.log(3) / 2)
    assert compare_logits(ref + 5.0, ref, [0, 1])["mean_kl"] == pytest.approx(0.0, abs=1e-15)  # shift-invariant


def test_held_out_text_is_the_run_s_eval_file_unless_named(tmp_path, tiny_tokenizer):
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "step-000010"
    ckpt.mkdir(parents=True)
    evalf = tmp_path / "val.jsonl"
    evalf.write_text(json.dumps({"text": "held out words"}) + "\n" +
                     json.dumps({"conversations": [{"role": "user", "content": "hi"},
                                                   {"role": "assistant", "content": "hello"}]}) + "\n")
    (run / "config.json").write_text(json.dumps({"data": {"eval_files": [str(evalf)]}}))
    text, where = heldout_text(ckpt, None, tiny_tokenizer)
    assert where == str(evalf) and text.startswith("held out words\n") and "hello" in text
    named = tmp_path / "mine.txt"
    named.write_text("my own text")
    assert heldout_text(ckpt, named, tiny_tokenizer) == ("my own text", str(named))
    assert heldout_text(tmp_path / "elsewhere", None)[0] == HELDOUT_TEXT
    with pytest.raises(FileNotFoundError, match="held-out text"):
        heldout_text(ckpt, tmp_path / "missing.txt")


def test_a_file_llama_cpp_cannot_quantize_gives_a_clear_error_and_the_caller_survives(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x07" * 4000)
    with pytest.raises(QuantizeError, match="llama.cpp could not quantize"):
        quantize_gguf(bad, tmp_path / "out.gguf", "q4_k_m")


@pytest.mark.slow
def test_export_command_takes_a_k_quant_and_prints_fallbacks_and_quality(tiny_checkpoint, tmp_path, capsys):
    out, text = tmp_path / "tiny-q6_k.gguf", tmp_path / "heldout.txt"
    text.write_text("A short passage the model never saw, long enough to measure. " * 20)
    rc = main(["export", "gguf", "--model", str(tiny_checkpoint), "--type", "q6_k", "--out", str(out),
               "--heldout", str(text)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "quantized by llama.cpp llama_model_quantize" in captured.out
    assert "fallback blk.0.attn_q.weight [64, 64]: Q8_0 (rows of 64 are not a multiple of 256" in captured.out
    assert "parity with llama.cpp: PASSED" in captured.out
    assert f"held-out tokens ({text})" in captured.out and "mean KL" in captured.out
    assert read_types(out)["blk.0.attn_q.weight"] == "Q8_0"  # Q6_K's fallback
