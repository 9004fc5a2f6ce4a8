"""Curves: EMA smoothing, in-place buffers, live events, hover read-out, and a 1,000,000-point plot."""
from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import Qt

from studio.panes.curves.presenter import CONSTANT_AFTER, CurvesPresenter, SeriesBuffer, ema


def _naive_ema(x, w):
    out, s = [], 0.0
    for t, v in enumerate(x):
        s = w * s + (1 - w) * v
        out.append(s / (1 - w ** (t + 1)))
    return np.array(out)


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.9, 0.99, 0.999])
def test_ema_matches_the_recurrence_and_continues_across_appends(weight):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 1.0, 10_000)
    whole, _ = ema(x, weight)
    np.testing.assert_allclose(whole, _naive_ema(x, weight), rtol=1e-9, atol=1e-9)
    first, state = ema(x[:3333], weight)
    rest, _ = ema(x[3333:], weight, state)
    np.testing.assert_allclose(np.concatenate([first, rest]), whole, rtol=1e-9, atol=1e-9)


def test_buffer_appends_in_place_and_grows_by_doubling():
    buf = SeriesBuffer(capacity=4)
    buf.append([1, 2, 3], [1.0, 2.0, 3.0])
    storage = buf.y
    buf.append([4], [4.0])
    assert buf.y is storage  # fits: no copy
    buf.append([5], [5.0])
    assert buf.y.size == 8 and buf.n == 5
    x, y = buf.view(smoothed=False)
    np.testing.assert_array_equal(x, [1, 2, 3, 4, 5])
    assert np.shares_memory(y, buf.y)  # views, not copies


def test_live_events_append_points_discover_names_and_rollouts(qtbot, context):
    presenter = CurvesPresenter(context)
    presenter.runs = ["r"]
    events = [{"type": "metric", "step": s, "metrics": {"loss": 1.0 / s}} for s in range(1, 6)]
    with qtbot.waitSignal(presenter.namesChanged) as names:
        presenter.on_events("r", events)
    assert names.args[0] == ["loss"]
    with qtbot.waitSignal(presenter.seriesChanged) as changed, qtbot.waitSignal(presenter.samplesAdded) as samples:
        presenter.on_events("r", [{"type": "metric", "step": 6, "metrics": {"loss": 0.1}},
                                  {"type": "sample", "step": 6, "samples": [{"prompt": "p", "completion": "c",
                                                                             "reward": 1.0, "rewards": {"a": 1}}]}])
    assert changed.args[0] == [("r", "loss")]
    assert samples.args[0][0]["step"] == 6
    x, y = presenter.series("r", "loss")
    np.testing.assert_array_equal(x, np.arange(1, 7))
    presenter.on_events("other-run", events)  # not shown: ignored
    assert ("other-run", "loss") not in presenter.buffers


def test_hover_readout_picks_the_nearest_point_of_each_run(context):
    presenter = CurvesPresenter(context)
    presenter.add_series("a", "loss", [0, 10, 20], [3.0, 2.0, 1.0])
    presenter.add_series("b", "loss", [5, 15], [9.0, 8.0])
    assert presenter.readout("loss", 12) == [("a", 10, 2.0), ("b", 15, 8.0)]
    assert presenter.readout("loss", -100) == [("a", 0, 3.0), ("b", 5, 9.0)]


def test_one_million_points_draw_downsampled_and_take_live_appends(qtbot, context):
    from studio.panes.curves.view import CurvesPane

    pane = CurvesPane(context)
    qtbot.addWidget(pane)
    pane.resize(1200, 700)
    n = 1_000_000
    steps = np.arange(n, dtype=np.float64)
    pane.presenter.add_series("big", "loss", steps, 5.0 * np.exp(-steps / 2e5) + np.sin(steps / 50.0) * 0.1)
    pane.show()
    qtbot.waitExposed(pane)
    qtbot.waitUntil(lambda: "loss" in pane.plots)  # laid out on the next event-loop pass
    curve = pane.plots["loss"].curves["big"]
    assert curve.opts["autoDownsample"] and curve.opts["downsampleMethod"] == "peak" and curve.opts["clipToView"]

    t0 = time.perf_counter()
    image = pane.graphics.grab()  # a full render of the scene
    first_draw = time.perf_counter() - t0
    assert not image.isNull()
    drawn = curve.getData()[0]  # what pyqtgraph actually draws after downsampling
    assert 0 < drawn.size < 50_000

    storage = pane.presenter.buffers[("big", "loss")].y
    pane.presenter.on_events("big", [{"type": "metric", "step": n + i, "metrics": {"loss": 1.0}} for i in range(100)])
    assert pane.presenter.buffers[("big", "loss")].y is storage  # appended in place (capacity 1,048,576)
    qtbot.waitUntil(lambda: curve.xData.size == n + 100, timeout=5000)  # the coalesced redraw
    t0 = time.perf_counter()
    pane.graphics.grab()
    redraw = time.perf_counter() - t0
    print(f"1M points: first draw {first_draw * 1000:.0f} ms, redraw after append {redraw * 1000:.0f} ms")
    assert redraw < 2.0  # generous: shared 2-core CI; measured ~0.1 s


def test_nice_span_rounds_up_to_1_2_5():
    from studio.panes.curves.view import nice_span

    assert [nice_span(s) for s in (1.0, 1.5, 3.0, 7.0, 10.0, 10.5, 0.03)] == [1, 2, 5, 10, 10, 20, 0.05]


def test_live_points_move_the_x_axis_in_steps_and_plots_come_from_idle_built_spares(qtbot, context):
    from studio.panes.curves.view import SPARE_PLOTS, CurvesPane

    pane = CurvesPane(context)
    qtbot.addWidget(pane)
    pane.show()
    qtbot.waitUntil(lambda: len(pane._spares) == SPARE_PLOTS, timeout=5000)  # built while idle
    spare = pane._spares[0]
    pane.presenter.add_series("r", "loss", [0], [1.0])
    qtbot.waitUntil(lambda: "loss" in pane.plots)
    assert pane.plots["loss"] is spare and pane.plots["loss"].plot.titleLabel.text == "loss"

    vb = pane.plots["loss"].plot.getViewBox()
    moves = []
    vb.sigXRangeChanged.connect(lambda *_: moves.append(vb.viewRange()[0]))
    for step in range(1, 1001):
        pane.presenter.add_series("r", "loss", [step], [1.0 / step])
        pane.flush()
    lo, hi = vb.viewRange()[0]
    assert lo == 0 and hi >= 1000  # every point in view
    assert 0 < len(moves) <= 12  # 1000 redraws, the axis moved only when the data left the view (~x1.5 each)

    vb.sigRangeChangedManually.emit([True, True])  # what a mouse pan/zoom emits: the user owns the range now
    vb.setXRange(100, 200, padding=0)
    pane.presenter.add_series("r", "loss", [5000], [0.1])
    pane.flush()
    assert vb.viewRange()[0] == [100, 200]


def _metrics(steps, **series):
    return [{"type": "metric", "step": s, "metrics": {k: f(s) for k, f in series.items()}} for s in steps]


def test_constant_metrics_are_hidden_unless_asked_for(qtbot, context):
    presenter = CurvesPresenter(context)
    presenter.runs = ["r"]
    presenter.on_events("r", _metrics(range(1, CONSTANT_AFTER), loss=lambda s: 3.0 / s, aux_loss=lambda s: 0.0))
    assert presenter.visible_names() == ["loss", "aux_loss"]  # a few equal points say nothing yet
    with qtbot.waitSignal(presenter.namesChanged) as names, qtbot.waitSignal(presenter.layoutChanged):
        presenter.on_events("r", _metrics([CONSTANT_AFTER], loss=lambda s: 3.0 / s, aux_loss=lambda s: 0.0))
    assert names.args[0] == ["loss"] and presenter.constant == {"aux_loss"}
    assert presenter.visible_names() == ["loss"]
    presenter.on_events("r", _metrics([9], loss=lambda s: 1.0, **{"eval/loss": lambda s: 2.0}))
    assert presenter.visible_names() == ["loss", "eval/loss"]  # logged once: shown

    with qtbot.waitSignal(presenter.namesChanged) as names:
        presenter.set_show_constant(True)
    assert names.args[0] == ["loss", "aux_loss", "eval/loss"]
    assert presenter.visible_names() == ["loss", "aux_loss", "eval/loss"]
    presenter.set_show_constant(False)
    presenter.on_events("r", _metrics([10], aux_loss=lambda s: 0.5))  # it moved: no longer constant
    assert "aux_loss" in presenter.visible_names() and not presenter.constant


def test_a_launched_run_shows_in_curves_at_once_checked_with_its_metrics(qtbot, context, workspace):
    from studio.main_window import MainWindow

    window = MainWindow(context, probe_device=False)
    qtbot.addWidget(window)
    pane = window.panes["Curves"]
    window.show_pane("Curves")
    window.show()  # live points are drawn only while the pane is visible
    context.store.create_run("live-1", run_dir=workspace.runs_dir / "live-1", name="demo-pretrain",
                             method="pretrain", status="queued")
    context.runsChanged.emit()  # what RunManager.launch emits
    # the window's run-change slots run as separate events in the next pass of the event loop (not in the emit)
    qtbot.waitUntil(lambda: context.selected_run_id == "live-1", timeout=500)
    item = pane.run_list.item(0)
    assert item.data(Qt.ItemDataRole.UserRole) == "live-1" and item.checkState() == Qt.CheckState.Checked

    context.eventsIngested.emit("live-1", _metrics(range(1, 6), loss=lambda s: 5.0 / s, aux_loss=lambda s: 0.0))
    assert [pane.name_list.item(i).text() for i in range(pane.name_list.count())] == ["loss"]
    assert pane.show_constant.text() == "Show constant metrics (1)"
    qtbot.waitUntil(lambda: "loss" in pane.plots and "live-1" in pane.plots["loss"].curves)
    context.eventsIngested.emit("live-1", _metrics([6], loss=lambda s: 0.5, aux_loss=lambda s: 0.0))
    curve = pane.plots["loss"].curves["live-1"]
    qtbot.waitUntil(lambda: curve.xData is not None and curve.xData.size == 6, timeout=3000)  # live redraw
    assert "aux_loss" not in pane.plots

    pane.show_constant.setChecked(True)
    qtbot.waitUntil(lambda: "aux_loss" in pane.plots)
    window.close_policy = "keep"
    window.close()


def test_metrics_group_into_training_reward_eval_and_system_sections():
    from studio.panes.curves.presenter import group_metrics, metric_section

    names = ["system/cpu_percent", "loss", "eval/loss", "reward/mean", "lr", "kl", "advantages/std",
             "rewards/margins", "rl/clip_fraction", "system/rss_gb", "eval/demo-facts/acc", "klass", "dpo_loss"]
    assert group_metrics(names) == [
        ("Training", ["loss", "lr", "klass", "dpo_loss"]),  # first; "klass" is not "kl"
        ("Reward", ["reward/mean", "kl", "advantages/std", "rewards/margins", "rl/clip_fraction"]),
        ("Eval", ["eval/loss", "eval/demo-facts/acc"]),
        ("System", ["system/cpu_percent", "system/rss_gb"]),
    ]
    assert group_metrics(["system/gpu_util"]) == [("System", ["system/gpu_util"])]  # empty sections are left out
    assert group_metrics([]) == []
    assert metric_section("kl/mean") == "Reward" and metric_section("evaluation") == "Training"


def test_the_metric_list_follows_the_sections(context):
    presenter = CurvesPresenter(context)
    presenter.add_series("r", "system/cpu_percent", [1, 2], [10.0, 20.0])
    for name in ("eval/loss", "reward/mean", "lr", "loss"):
        presenter.add_series("r", name, [1, 2], [1.0, 2.0])
    assert presenter.sorted_names() == ["loss", "lr", "reward/mean", "eval/loss", "system/cpu_percent"]


def test_each_section_is_a_titled_block_of_the_grid_with_training_first(qtbot, context):
    """System metrics that arrive first still end up below the training plots, each section under its title."""
    from studio.panes.curves.view import CurvesPane

    pane = CurvesPane(context)
    qtbot.addWidget(pane)
    presenter = pane.presenter
    presenter.add_series("r", "system/cpu_percent", [1, 2], [10.0, 20.0])
    presenter.add_series("r", "system/rss_gb", [1, 2], [1.0, 1.5])
    qtbot.waitUntil(lambda: len(pane.plots) == 2)
    for name in ("loss", "lr", "grad_norm", "eval/loss"):
        presenter.add_series("r", name, [1, 2], [2.0, 1.0])
    qtbot.waitUntil(lambda: len(pane.plots) == 6)
    layout = pane.graphics.ci

    def cell(row: int, col: int):
        item = layout.getItem(row, col)
        return next((t for t, label in pane.sections.items() if label is item),
                    next((n for n, p in pane.plots.items() if p.plot is item), None))

    grid = [[cell(r, c) for c in range(2)] for r in range(layout.layout.rowCount())]
    assert grid == [["Training", "Training"], ["loss", "lr"], ["grad_norm", None],  # a title spans both columns
                    ["Eval", "Eval"], ["eval/loss", None],
                    ["System", "System"], ["system/cpu_percent", "system/rss_gb"]]
    assert pane.sections["Training"].text == "Training"
