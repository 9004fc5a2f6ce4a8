"""MainWindow wires every pane from one table (``PANE_CONNECTIONS``, keyed by pane type): each tab's pane has a
row, each row names a real context signal and pane slot, and a signal reaches the panes its rows name."""
from __future__ import annotations


def test_every_pane_type_has_its_row_and_a_signal_reaches_the_slots_it_names(qtbot, context, monkeypatch):
    from studio.main_window import PANE_CONNECTIONS, MainWindow
    from studio.panes.chat.presenter import ChatPresenter
    from studio.panes.evaluate.presenter import EvaluatePresenter
    from studio.panes.export.presenter import ExportPresenter

    calls = []
    for cls, name in ((ChatPresenter, "refresh_models"), (EvaluatePresenter, "refresh_sources"),
                      (ExportPresenter, "refresh_sources")):
        monkeypatch.setattr(cls, name, lambda self, _cls=cls: calls.append(_cls.__name__) or [])
    window = MainWindow(context, probe_device=False, lazy_panes=False)
    qtbot.addWidget(window)
    panes = {type(window.panes.get(title)).__name__ for title in window.panes}
    assert panes <= set(PANE_CONNECTIONS), "a pane without a row (or a placeholder: a pane failed to load)"
    for rows in PANE_CONNECTIONS.values():
        for signal, _path, how in rows:
            assert hasattr(context, signal) and how in ("direct", "again", "later")
    calls.clear()
    context.exportAdded.emit("/models/m.gguf")  # Chat and Evaluate list GGUFs; Export does not
    assert sorted(calls) == ["ChatPresenter", "EvaluatePresenter"]
    calls.clear()
    context.checkpointAdded.emit("run-1", "/runs/run-1/checkpoints/step-000001")
    assert sorted(calls) == ["ChatPresenter", "EvaluatePresenter", "ExportPresenter"]
