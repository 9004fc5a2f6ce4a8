"""Export pane presenter: a real GGUF export with llama.cpp parity report, recorded for the Chat pane; HF export."""
from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("core.export", reason="core.export is not part of this build")


@pytest.mark.slow
def test_gguf_export_shows_parity_and_appears_in_chat_models(qtbot, context, tiny_checkpoint):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from studio.panes.chat.presenter import ChatPresenter
    from studio.panes.export.view import ExportPane, report_html

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
    from studio.panes.export.presenter import ExportPresenter

    presenter = ExportPresenter(context)
    with qtbot.waitSignal(presenter.finished, timeout=60_000) as done:
        presenter.export_hf(str(tiny_checkpoint), out=tmp_path / "hf")
    result = done.args[0]
    assert not result.get("error"), result.get("error")
    assert (tmp_path / "hf" / "config.json").is_file() and (tmp_path / "hf" / "model.safetensors").is_file()
    assert [e.format for e in context.store.exports()] == ["hf"]


def test_parity_lines_read_plainly():
    from studio.panes.export.presenter import parity_lines

    rows = parity_lines({"passed": False, "max_abs_logit_diff": 0.7, "logit_range": 20.0, "rel_logit_diff": 0.035,
                         "top1_agreement": 0.9, "min_agreement": 0.95, "greedy_identical": False,
                         "greedy_first_divergence": 3, "tokenizer_match": True, "problems": ["agreement low"]})
    assert rows[0] == ("Result", "FAIL", False)
    assert ("Greedy agreement", "90.0% (needs ≥ 95%)", False) in rows
    assert ("Tokenizer match", "yes", True) in rows and ("Problem", "agreement low", False) in rows


def test_the_types_table_lists_every_type_with_size_on_disk_and_quality(qtbot, context, tiny_checkpoint):
    """A K-quant export through the pane: its row shows the file's size and its quality against the f32 export,
    the result names the tensors that fell back, and the types not exported say so."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from core.export.types import GGUF_TYPES
    from studio.panes.export.view import ExportPane
    from studio.panes.export.presenter import TYPE_COLUMNS

    pane = ExportPane(context)
    qtbot.addWidget(pane)
    pane.source.addItem("tiny", str(tiny_checkpoint))  # not a run of this workspace: listed by hand
    pane.source.setCurrentIndex(pane.source.count() - 1)
    table = pane.types_table
    assert [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())] == list(TYPE_COLUMNS)
    assert [table.item(r, 0).text() for r in range(table.rowCount())] == list(GGUF_TYPES)
    with qtbot.waitSignal(pane.presenter.finished, timeout=120_000) as done:
        pane.presenter.export_gguf(str(tiny_checkpoint), "q4_k_m")
    assert not done.args[0].get("error"), done.args[0].get("error")
    rows = {table.item(r, 0).text(): [table.item(r, c).text() for c in range(table.columnCount())]
            for r in range(table.rowCount())}
    name, size, ppl, top1, kl, verdict = rows["q4_k_m"]
    assert size.endswith(" MB") and ppl.endswith("%") and top1.endswith("%") and float(kl) >= 0
    assert verdict == "PASS" and rows["f32"][1] == "not exported"
    shown = pane.report_view.toPlainText()
    assert "Fallbacks" in shown and "blk.0.attn_q.weight" in shown and "Mean KL vs f32" in shown


def test_a_type_row_reads_the_export_and_its_parity_report(tmp_path):
    import json

    from studio.panes.export.presenter import type_row

    path = tmp_path / "m-q6_k.gguf"
    assert type_row("q6_k", path) == ("q6_k", "not exported", "", "", "", "")
    path.write_bytes(b"x" * 1_500_000)
    quality = {"perplexity_change": 0.0123, "top1_agreement": 0.975, "mean_kl": 0.00042, "perplexity_f32": 10.0,
               "perplexity": 10.123, "n_tokens": 200}
    (tmp_path / "m-q6_k.parity.json").write_text(json.dumps({"passed": True, "quality": quality}))
    assert type_row("q6_k", path) == ("q6_k", "1.50 MB", "+1.23%", "97.5%", "4.20e-04", "PASS")
    (tmp_path / "m-f32.gguf").write_bytes(b"x")
    assert type_row("f32", tmp_path / "m-f32.gguf")[2:5] == ("reference",) * 3
