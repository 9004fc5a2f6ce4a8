"""Evaluate pane: results stored per model and task (old databases gain the table), the comparison table, chart
and per-item details, CSV / Markdown export, and one real worker-process run on a tiny checkpoint."""
from __future__ import annotations

import csv
import io
import sqlite3

import pytest

from studio.store.eval_results import eval_details, eval_results, save_eval_result

BENCH = {"kind": "bench", "accuracy": 0.5, "interval": [0.2, 0.8], "contamination": 0.25, "flagged": True, "n": 2,
         "seconds": 1.5, "settings": {"k_shot": 0},
         "items": [{"question": "The sky is", "gold": 0, "chosen": 0, "correct": True,
                    "options": [{"text": "blue", "score": -1.25}, {"text": "loud", "score": -3.5}]},
                   {"question": "Fire is", "gold": 1, "chosen": 0, "correct": False,
                    "options": [{"text": "cold", "score": -2.0}, {"text": "hot", "score": -2.5}]}]}
TOOLS = {"kind": "tool-use", "accuracy": 1.0, "interval": [0.21, 1.0], "contamination": None, "flagged": False,
         "n": 1, "seconds": 3.0, "settings": {"max_turns": 3},
         "items": [{"question": "What is 2*3?", "correct": True, "options": [], "expected": [6], "answer": "6",
                    "calls": [{"name": "calculate_math", "arguments": "{\"expression\": \"2*3\"}"}]}]}


@pytest.fixture()
def stored(context):
    save_eval_result(context.store, "/ck/a", "demo-facts", {**BENCH, "accuracy": 0.1}, "run a")
    save_eval_result(context.store, "/ck/a", "demo-facts", BENCH, "run a")  # replaces the first
    save_eval_result(context.store, "/ck/a", "tool-use", TOOLS, "run a")
    save_eval_result(context.store, "/ck/b", "demo-facts", {**BENCH, "accuracy": 0.75, "flagged": False}, "run b")
    return context


def test_a_database_made_before_the_table_gains_it_on_open(workspace):
    from studio.store import open_store

    store = open_store(workspace.db_path, workspace.runs_dir)
    store.close()
    with sqlite3.connect(workspace.db_path) as db:  # the file as an older studio left it
        db.execute("DROP TABLE eval_result")
    store = open_store(workspace.db_path, workspace.runs_dir)
    save_eval_result(store, "/ck/a", "demo-facts", BENCH)
    assert [(r["task"], r["ci_low"], r["contamination"]) for r in eval_results(store)] == [("demo-facts", 0.2, 0.25)]
    assert eval_details(store, "/ck/a", "demo-facts")[1]["options"][1] == {"text": "hot", "score": -2.5}
    store.close()


def test_results_compare_and_export_as_csv_and_markdown(qtbot, stored, tmp_path):
    from studio.panes.evaluate.presenter import EvaluatePresenter

    presenter = EvaluatePresenter(stored)
    models, tasks, cells = presenter.comparison()
    assert models == [("/ck/a", "run a"), ("/ck/b", "run b")] and tasks == ["demo-facts", "tool-use"]
    assert cells[("/ck/a", "demo-facts")]["accuracy"] == 0.5 and ("/ck/b", "tool-use") not in cells
    rows = list(csv.DictReader(io.StringIO(presenter.export(tmp_path / "r.csv").read_text())))
    assert [(r["model"], r["task"], r["accuracy"], r["flagged"]) for r in rows] == [
        ("run a", "demo-facts", "0.5000", "yes"), ("run a", "tool-use", "1.0000", "no"),
        ("run b", "demo-facts", "0.7500", "no")]
    assert rows[0]["contamination"] == "0.2500" and rows[1]["contamination"] == ""
    md = presenter.export(tmp_path / "r.md").read_text().splitlines()
    assert md[0] == "| model | demo-facts | tool-use |"
    assert md[2] == "| run a | 50.0% [20–80%] · 25% seen ⚠ | 100.0% [21–100%] |" and md[3].endswith("| – |")


def test_pane_table_chart_and_item_details(qtbot, stored):
    import pyqtgraph as pg

    from studio.panes.evaluate.view import EvaluatePane

    pane = EvaluatePane(stored)
    qtbot.addWidget(pane)
    assert pane.table.rowCount() == 2 and pane.table.columnCount() == 2
    assert pane.table.item(0, 0).text().endswith("⚠") and pane.table.item(1, 1).text() == "–"
    bars = [i for i in pane.bars.getPlotItem().items if isinstance(i, pg.BarGraphItem)]
    assert len(bars) == 2  # one series per model
    pane.show_cell(0, 0)
    text = pane.details.toPlainText()
    assert "The sky is" in text and "blue: -1.250" in text and "✔ right" in text and "✘ wrong" in text
    pane.show_cell(0, 1)
    text = pane.details.toPlainText()
    assert "call calculate_math" in text and "answer: 6" in text


@pytest.fixture(scope="module")
def tool_checkpoint(tiny_tokenizer, tmp_path_factory):
    """The inference fixture's tiny model with room for the tool-use prompts (~700 tokens) in its context."""
    from core.model.io import save_checkpoint
    from tests.fixtures.infer import random_model, tiny_infer_config

    config = tiny_infer_config(tiny_tokenizer.vocab_size).model_copy(update={"max_position_embeddings": 1024})
    return save_checkpoint(random_model(config), tmp_path_factory.mktemp("eval") / "tiny" / "checkpoints" /
                           "step-000001", tiny_tokenizer)


@pytest.mark.slow
def test_a_real_worker_scores_a_benchmark_and_tool_use_then_stores_them(qtbot, context, tool_checkpoint):
    from studio.panes.evaluate.view import EvaluatePane

    pane = EvaluatePane(context)
    qtbot.addWidget(pane)
    presenter, seen = pane.presenter, []
    presenter.progress.connect(lambda done, total, text: seen.append(text))
    with qtbot.waitSignal(presenter.finished, timeout=240_000) as done:
        assert presenter.start([str(tool_checkpoint)], ["demo-facts", "tool-use"],
                               {"limit": 2, "max_new_tokens": 12, "max_turns": 1})
    assert done.args == ["completed"], presenter.errors
    rows = {r["task"]: r for r in presenter.results()}
    assert set(rows) == {"demo-facts", "tool-use"} and rows["demo-facts"]["n"] == 2
    assert 0 <= rows["demo-facts"]["ci_low"] <= rows["demo-facts"]["accuracy"] <= rows["demo-facts"]["ci_high"]
    assert rows["tool-use"]["settings"]["max_new_tokens"] == 12
    assert len(presenter.details(str(tool_checkpoint), "demo-facts")[0]["options"]) >= 2
    assert any("demo-facts: 2/2" in t for t in seen) and pane.table.rowCount() == 1
    assert pane.run_btn.isEnabled() and not pane.cancel_btn.isEnabled()


def test_cancel_stops_the_worker_and_stores_nothing_unfinished(qtbot, context, tool_checkpoint):
    from studio.panes.evaluate.presenter import EvaluatePresenter

    presenter = EvaluatePresenter(context)
    with qtbot.waitSignal(presenter.progress, timeout=120_000,
                          check_params_cb=lambda done, total, text: "tool-use: 1/" in text):
        presenter.start([str(tool_checkpoint)], ["tool-use"], {"limit": 20, "max_new_tokens": 24, "max_turns": 2})
    with qtbot.waitSignal(presenter.finished, timeout=60_000) as done:
        presenter.cancel()
    assert done.args == ["cancelled"] and presenter.results() == [] and not presenter.running


def test_the_worker_messages_follow_the_schema_on_both_sides(context):
    """The worker cannot write a message that breaks core/event_schema.py's EVAL_MESSAGES, and the pane skips
    (and reports) one that does, storing nothing from it."""
    from core.event_schema import make_eval_message
    from studio.panes.evaluate.presenter import EvaluatePresenter

    with pytest.raises(ValueError, match="result message: field 'result' is missing"):
        make_eval_message("result", job=0, model="m", task="demo-facts")
    with pytest.raises(ValueError, match="finished message: status must be one of completed, cancelled"):
        make_eval_message("finished", status="done")
    presenter = EvaluatePresenter(context)
    reported = []
    presenter.errorRaised.connect(reported.append)
    presenter.handle_line(b'{"type": "result", "job": "0", "model": "m", "task": "demo-facts", "result": {}}')
    presenter.handle_line(b"a stray print")  # not a message at all: ignored
    assert reported == ["the evaluation worker sent a malformed message: result message: field 'job' must be an "
                        "integer, got '0'"]
    assert presenter.results() == []


def test_rl_signal_counts_the_cases_an_rl_group_could_learn_from_as_sampling_finds_them(qtbot, context,
                                                                                        tool_checkpoint, tmp_path):
    """The `rl-signal` task through a real worker: each case answered 4 times sampled at T = 1.0, as RL rollouts
    sample. Two cases ask the tool model its question: one expects the true product, one a wrong number (never
    found: a group of equal rewards). Each item's count is what `core.eval.tool_use.sampled_coverage` finds on the
    same checkpoint in this process (the torch backend's draws are seeded per sample; how that function counts is
    tests/test_eval_tools.py's), and the accuracy is the share of cases solved sometimes but not always."""
    import json

    from core.eval.tool_use import BackendTarget, load_cases, sampled_coverage
    from core.infer.backend import open_backend
    from core.tools import builtin_registry
    from studio.panes.evaluate.view import EvaluatePane, details_html
    from tests.fixtures.tool_model import QUESTION
    from webdemo.chat import DEFAULT_SYSTEM

    tools = json.dumps(builtin_registry().schemas(["calculate_math"]))
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps({"conversations": [{"role": "system", "content": DEFAULT_SYSTEM, "tools": tools},
                                                           {"role": "user", "content": QUESTION}], "gt": gt}) + "\n"
                             for gt in ([1776], [9999])), encoding="utf-8")
    pane = EvaluatePane(context)
    qtbot.addWidget(pane)
    presenter, task = pane.presenter, f"rl-signal:{cases}"
    assert "rl-signal" in presenter.tasks
    pane.samples.setValue(4)
    settings = {**pane.settings(), "max_new_tokens": 256, "max_turns": 2, "think": True}  # as the model was taught
    assert settings["samples"] == 4
    with qtbot.waitSignal(presenter.finished, timeout=240_000) as done:
        assert presenter.start([str(tool_checkpoint)], [task], settings)
    assert done.args == ["completed"], presenter.errors
    (row,) = presenter.results()
    items = presenter.details(str(tool_checkpoint), task)
    assert row["kind"] == "rl-signal" and row["n"] == 2 and [it["samples"] for it in items] == [4, 4]
    backend = open_backend(tool_checkpoint)
    try:
        here = sampled_coverage(BackendTarget(backend, 256, think=True), load_cases(cases), 4, 1.0, 2)
    finally:
        backend.close()
    assert [it["solved"] for it in items] == here["solved"]
    assert items[1]["solved"] == 0  # the wrong number is never found
    assert [it["correct"] for it in items] == [0 < it["solved"] < 4 for it in items]
    assert row["accuracy"] == sum(it["correct"] for it in items) / 2
    assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]

    shown = details_html(items + [{**items[0], "solved": 3, "correct": True}])
    assert shown.count(" of 4 sampled answers") == 3 and shown.count("signal: RL can learn from it") == 1
    assert "right in 0 of 4 sampled answers · no signal: all alike" in shown
