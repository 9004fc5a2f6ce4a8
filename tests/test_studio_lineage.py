"""Lineage graph and run comparison: runs as nodes with init/clone/resume edges and exports and evaluations on
their checkpoints; a click selects the run everywhere; a comparison shows only differing config fields, final
metrics side by side and the overlaid series."""
from __future__ import annotations

import pytest

pytest.importorskip("PySide6")


def _run(store, run_id, method="pretrain", config=None, metrics=(), parent=None, init=None, resumed=None,
         evals=()):
    store.create_run(run_id, run_dir=f"/ws/runs/{run_id}", config=config or {}, method=method, status="completed",
                     parent_run_id=parent, init_checkpoint=init)
    events = [{"v": 1, "type": "run_started", "time": 1.0, "step": resumed or 0, "method": method,
               "resumed_from": resumed, "total_steps": 10}]
    events += [{"v": 1, "type": "metric", "time": 2.0 + i, "step": i + 1, "metrics": m} for i, m in enumerate(metrics)]
    events += [{"v": 1, "type": "eval", "time": 9.0, "step": s, "metrics": m} for s, m in evals]
    store.add_events(run_id, events)


@pytest.fixture
def family(store):
    """pretrain → sft (from its step-000010 checkpoint) → a clone of the sft; the sft was resumed at step 4, has
    a GGUF export with a passing parity report and an evaluation."""
    _run(store, "pre", config={"method": "pretrain", "optim": {"lr": 3e-3}, "batch_size": 8},
         metrics=[{"loss": 6.0}, {"loss": 4.0}])
    _run(store, "sft", "sft", {"method": "sft", "optim": {"lr": 1e-3}, "batch_size": 8, "run_dir": "x"},
         metrics=[{"loss": 3.0}, {"loss": 2.5, "grad_norm": 0.5}], parent="pre",
         init="/ws/runs/pre/checkpoints/step-000010", resumed=4, evals=[(5, {"eval/loss": 2.9}), (10, {"eval/loss": 2.7})])
    _run(store, "clone", "sft", {"method": "sft", "optim": {"lr": 5e-4}, "batch_size": 8, "run_dir": "y"},
         metrics=[{"loss": 2.8}], parent="sft")
    store.add_export("/ws/exports/sft.gguf", "gguf", run_id="sft", checkpoint_path="/ws/runs/sft/checkpoints/step-000010",
                     meta={"parity": {"passed": True}})
    return store


def test_graph_has_runs_init_clone_resume_export_and_eval_edges(family):
    from studio.panes.runs.lineage_presenter import lineage_graph

    g = lineage_graph(family)
    edges = {(e.source, e.target, e.kind, e.label) for e in g.edges}
    assert edges == {("run:pre", "run:sft", "init", "step-000010"),
                     ("run:sft", "run:clone", "parent", "cloned"),
                     ("run:sft", "run:sft", "resumed", "step 4"),
                     ("run:sft", "export:0", "export", "step-000010"),
                     ("run:sft", "eval:sft", "eval", "step-000010")}
    assert {n.kind for n in g.nodes.values()} == {"run", "export", "eval"}
    assert g.nodes["export:0"].detail == "exported · parity ok" and g.nodes["export:0"].run_id == "sft"
    assert g.nodes["eval:sft"].detail == "loss 2.7"  # the latest evaluation only
    assert "resumed at 4" in g.nodes["run:sft"].detail


def test_layout_puts_children_right_of_their_parent_and_never_overlaps(family):
    from studio.panes.runs.lineage_presenter import COLUMN, layout, lineage_graph

    g = lineage_graph(family)
    pos = layout(g)
    assert set(pos) == set(g.nodes) and len(set(pos.values())) == len(pos)
    for e in g.edges:
        if e.source != e.target:
            assert pos[e.target][0] == pos[e.source][0] + COLUMN and pos[e.target][1] > pos[e.source][1]


def test_a_parent_cycle_is_drawn_once(store):
    from studio.panes.runs.lineage_presenter import layout, lineage_graph

    _run(store, "a", parent="b")
    _run(store, "b", parent="a")
    assert len(layout(lineage_graph(store))) == 2


def test_clicking_a_node_selects_the_run_everywhere(qtbot, family, context):
    from PySide6.QtCore import Qt

    from studio.panes.runs.view import RunsPane

    pane = RunsPane(context)
    qtbot.addWidget(pane)
    pane.resize(1000, 600)
    pane.show()
    context.selectedRunChanged.connect(pane.select_run)  # as MainWindow._connect_pane wires the Runs pane
    view = pane.views.show_view("Lineage")
    assert set(view.items_by_run) == {"pre", "sft", "clone"}
    with qtbot.waitSignal(context.selectedRunChanged) as changed:
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.node_rect("sft").center())
    assert changed.args == ["sft"] and context.selected_run_id == "sft"
    assert pane.selected_run_id() == "sft"  # the Runs table followed
    context.select_run("pre")  # selected elsewhere: the graph highlights it
    assert view.items_by_run["pre"].brush().color().name() != view.items_by_run["sft"].brush().color().name()


def test_compare_shows_only_differing_config_fields_and_final_metrics(family, context):
    from studio.panes.runs.compare_presenter import ComparePresenter

    r = ComparePresenter(context).compare(["pre", "sft", "clone"])
    assert r["labels"] == ["pre", "sft", "clone"]
    assert dict(r["config"]) == {"method": ["pretrain", "sft", "sft"], "optim.lr": [3e-3, 1e-3, 5e-4]}
    metrics = dict(r["metrics"])
    assert metrics["loss"] == [4.0, 2.5, 2.8] and metrics["grad_norm"] == [None, 0.5, None]
    assert r["names"][0] == "loss" and "eval/loss" in r["names"]
    assert ComparePresenter(context).compare(["pre"])["config"] == []  # one run: nothing to compare


def test_compare_panel_overlays_one_curve_per_ticked_run(qtbot, family, context):
    from studio.panes.runs.compare_view import ComparePanel

    panel = ComparePanel(context)
    qtbot.addWidget(panel)
    panel.set_checked(["pre", "sft"])
    assert panel.metric.currentText() == "loss"
    curves = [c for c in panel.plot.getPlotItem().listDataItems()]
    assert sorted(len(c.xData) for c in curves) == [2, 2]
    assert "optim.lr" in panel.table.toPlainText() and "batch_size" not in panel.table.toPlainText()
