"""`minimind export gguf|hf` and `minimind import` from the command line."""
from __future__ import annotations

import json

import pytest
import torch

from core.cli import main


@pytest.mark.slow
def test_export_gguf_command_checks_parity_and_writes_modelfile(tiny_checkpoint, tmp_path, capsys):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    out = tmp_path / "tiny-q8_0.gguf"
    rc = main(["export", "gguf", "--model", str(tiny_checkpoint), "--type", "q8_0", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "parity with llama.cpp: PASSED" in captured.out and "tokenizer identical" in captured.out
    assert "[" in captured.err  # progress on stderr
    assert json.loads((tmp_path / "tiny-q8_0.parity.json").read_text())["passed"]
    assert (tmp_path / "tiny-q8_0.Modelfile").read_text().startswith("FROM ./tiny-q8_0.gguf")


def test_export_gguf_command_fails_with_a_message_for_a_missing_model(tmp_path, capsys):
    rc = main(["export", "gguf", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "x.gguf")])
    assert rc == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_export_hf_then_import_commands_round_trip(tiny_checkpoint, tmp_path, capsys):
    assert main(["export", "hf", "--model", str(tiny_checkpoint), "--out", str(tmp_path / "hf")]) == 0
    assert "LlamaForCausalLM" in capsys.readouterr().out
    assert main(["import", "--from", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    assert "imported" in capsys.readouterr().out
    from core.model.io import load_model

    (a, tok), (b, _) = load_model(tiny_checkpoint), load_model(tmp_path / "back")
    ids = torch.tensor([tok.encode("round trip 往返")])
    with torch.no_grad():
        assert torch.equal(a(ids).logits, b(ids).logits)


def test_import_command_reports_unsupported_sources(tmp_path, capsys):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert main(["import", "--from", str(tmp_path / "bert"), "--out", str(tmp_path / "o")]) == 2
    assert "model_type: 'bert' is not supported" in capsys.readouterr().err
