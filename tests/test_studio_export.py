"""Export pane presenter: a real GGUF export with llama.cpp parity report, recorded for the Chat pane; HF export."""
from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("core.export", reason="core.export is not part of this build")


@pytest.mark.slow
def test_gguf_export_shows_parity_and_appears_in_chat_models(qtbot, context, tiny_checkpoint):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from studio.panes.chat_presenter import ChatPresenter
    from studio.panes.export import ExportPane, report_html

    pane = ExportPane(context)
    qtbot.addWidget(pane)
    with qtbot.waitSignal(context.exportAdded, timeout=120_000) as added, \
            qtbot.waitSignal(pane.presenter.finished, timeout=120_000) as done:
        pane.presenter.export_gguf(str(tiny_checkpoint), "f32")
    result = done.args[0]
    assert not result.get("error"), result.get("error")
    parity = result["parity"]
    assert parity["passed"] and parity["tokenizer_match"] and parity["max_abs_logit_diff"] < 1e-3
    assert added.args[0] == result["path"] and result["path"].endswith("-f32.gguf")
    shown = pane.report_view.toPlainText()
    assert "PASS" in shown and "max |Δlogit|" in shown and "Tokenizer match" in shown
    assert "FAIL" in report_html({"format": "gguf", "parity": {**parity, "passed": False,
                                                               "problems": ["greedy continuation diverges"]}})
    chat = ChatPresenter(context)
    assert result["path"] in [m.path for m in chat.refresh_models() if m.kind == "gguf"]
    chat.select(0, result["path"])  # and it chats through llama.cpp
    chat.sampling.update(temperature=0.0, max_new_tokens=5)
    with qtbot.waitSignal(chat.replyFinished, timeout=60_000) as reply:
        assert chat.send("Hello") is None
    assert reply.args[1]["text"] and reply.args[1]["model"] == result["path"]
    chat.shutdown()


def test_hf_export_writes_a_folder(qtbot, context, tiny_checkpoint, tmp_path):
    from studio.panes.export_presenter import ExportPresenter

    presenter = ExportPresenter(context)
    with qtbot.waitSignal(presenter.finished, timeout=60_000) as done:
        presenter.export_hf(str(tiny_checkpoint), out=tmp_path / "hf")
    result = done.args[0]
    assert not result.get("error"), result.get("error")
    assert (tmp_path / "hf" / "config.json").is_file() and (tmp_path / "hf" / "model.safetensors").is_file()
    assert [e.format for e in context.store.exports()] == ["hf"]


def test_parity_lines_read_plainly():
    from studio.panes.export_presenter import parity_lines

    rows = parity_lines({"passed": False, "max_abs_logit_diff": 0.7, "logit_range": 20.0, "rel_logit_diff": 0.035,
                         "top1_agreement": 0.9, "min_agreement": 0.95, "greedy_identical": False,
                         "greedy_first_divergence": 3, "tokenizer_match": True, "problems": ["agreement low"]})
    assert rows[0] == ("Result", "FAIL", False)
    assert ("Greedy agreement", "90.0% (needs ≥ 95%)", False) in rows
    assert ("Tokenizer match", "yes", True) in rows and ("Problem", "agreement low", False) in rows
