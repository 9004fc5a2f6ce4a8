"""End to end: the real main window over a real workspace, a studio process killed mid-run, the packaging
self-test, and (once the trainer is present) a real tiny training run followed by the studio."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.process_identity import pid_alive

REPO = Path(__file__).resolve().parents[1]
TRAINER_PRESENT = (REPO / "core" / "train" / "__main__.py").is_file()
SLOW_RUN = {"method": "pretrain", "max_steps": 100000, "method_options": {"step_seconds": 0.01}}


def _window(workspace, standin):
    from studio.app import build_context
    from studio.main_window import MainWindow

    context = build_context(workspace.root)
    context.runs.command_builder = standin
    return context, MainWindow(context, probe_device=False)


def test_main_window_hosts_every_pane_follows_a_run_and_stops_it_on_close(qtbot, workspace, standin):
    context, window = _window(workspace, standin)
    qtbot.addWidget(window)
    window.show()
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == \
        ["Datasets", "Config", "Runs", "Curves", "Chat", "Export"]
    menus = {a.text().replace("&", ""): [x.text().replace("&", "") for x in a.menu().actions() if x.text()]
             for a in window.menuBar().actions()}
    assert menus["Run"] == ["Start run", "Stop run", "Resume run"]
    assert "Import run folder…" in menus["File"] and "Quit" in menus["File"]
    # Panes are built on first use: only the first tab exists yet (cold start), the rest on demand.
    assert [t for t in window.panes if window.panes.is_built(t)] == ["Datasets"]
    context.configEditRequested.emit({"method": "sft", "max_steps": 7})  # Clone & edit into an unbuilt pane
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Config"
    assert window.panes["Config"].method_box.currentText() == "sft"

    with qtbot.waitSignal(context.eventsIngested, timeout=15000,
                          check_params_cb=lambda _r, evs: any(e["type"] == "metric" for e in evs)):
        context.request_launch(dict(SLOW_RUN, name="from the config pane"))
    run_id = context.runs.active_run_id()
    window.refresh_progress()
    assert window.run_label.text() == f"Training {run_id}" and window.progress.isVisible()
    assert window.progress.maximum() == 100000
    runs_pane = window.panes["Runs"]
    assert runs_pane.table.rowCount() == 1 and runs_pane.table.item(0, 0).text() == "from the config pane"
    runs_pane.table.selectRow(0)  # the selected run is state: a pane built afterwards reads it
    assert context.selected_run_id == run_id and not window.panes.is_built("Curves")
    assert window.panes["Curves"].presenter.runs == [run_id]

    window.close_policy = "stop"  # the close dialog's "Stop (save checkpoint)"
    window.close()
    run = context.store.get_run(run_id)
    deadline = time.time() + 15
    while pid_alive(run.pid, run.pid_start_ticks) and time.time() < deadline:
        time.sleep(0.05)  # not a Qt wait: nothing in this process follows the run any more
    events = [json.loads(line) for line in (workspace.runs_dir / run_id / "events.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events[-2:]] == ["checkpoint", "run_finished"]
    assert events[-1]["status"] == "stopped"
    context.store.close()
    import threading  # the Config pane sizes its model in a thread: let it end before the interpreter does

    for thread in threading.enumerate():
        if thread.daemon and not isinstance(thread, threading._DummyThread):
            thread.join(60)


STUDIO_SCRIPT = """
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
from PySide6.QtCore import QCoreApplication
from studio.app import build_context
from fixtures.studio import standin_command
app = QCoreApplication([])
context = build_context({ws!r})
context.runs.command_builder = standin_command
print(context.runs.launch({config!r}), flush=True)
app.exec()
"""


def _metric_lines(path: Path) -> int:
    return path.read_text().count('"type": "metric"') if path.exists() else 0


@pytest.mark.slow
def test_a_killed_studio_leaves_the_run_training_and_reopening_reconciles_it(qtbot, workspace):
    config = dict(SLOW_RUN, max_steps=300)
    script = STUDIO_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests"), ws=str(workspace.root), config=config)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    studio = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    run_id = studio.stdout.readline().strip()
    events_path = workspace.runs_dir / run_id / "events.jsonl"
    deadline = time.time() + 20
    while time.time() < deadline and _metric_lines(events_path) < 5:
        time.sleep(0.05)  # the studio runs in another process: poll its files
    studio.send_signal(signal.SIGKILL)
    studio.wait(10)
    started = json.loads(events_path.read_text().splitlines()[0])
    assert pid_alive(started["pid"], started["pid_start_ticks"]), "the trainer must survive the studio"

    from studio.app import build_context

    context = build_context(workspace.root, reconcile=False)
    assert context.store.get_run(run_id).status in ("starting", "running")  # as the dead studio left it
    with qtbot.waitSignal(context.runs.runFinished, timeout=30000) as finished:
        assert context.runs.reconcile() == [run_id]
    assert finished.args == [run_id, "completed"]
    steps, _ = context.store.metric_series(run_id, "loss")
    np.testing.assert_array_equal(steps, np.arange(1, 301))
    context.runs.shutdown()
    context.store.close()


@pytest.mark.skipif(not TRAINER_PRESENT, reason="core.train has no __main__ yet (trainer not in this checkout)")
def test_self_test_opens_the_window_and_finds_the_trainer_entry(qapp, capsys):
    from studio.app import self_test  # what `python app.py --self-test` runs, here in-process (same Qt app)

    assert self_test() == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "window: ok (Datasets, Config, Runs, Curves, Chat, Export)" in out and "trainer entry: ok" in out


@pytest.mark.slow
@pytest.mark.skipif(not TRAINER_PRESENT, reason="core.train has no __main__ yet (trainer not in this checkout)")
def test_a_real_tiny_training_run_is_followed_into_the_store(
        qtbot, workspace, store, shared_data, tiny_tokenizer_dir, monkeypatch):
    from studio.worker.run_manager import RunManager

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the child inherits it: one thread is faster on a shared 2-core box
    data = workspace.datasets_dir / "pretrain-300.jsonl"
    with open(shared_data / "pretrain.jsonl", encoding="utf-8") as src:
        data.write_text("".join(line for _, line in zip(range(100), src)), encoding="utf-8")
    config = {"name": "tiny real run", "method": "pretrain", "model": "tiny", "max_steps": 4, "batch_size": 4,
              "device": "cpu", "precision": "fp32", "log_every": 1, "save_every": 0,
              "data": {"files": [str(data)], "seq_len": 32, "tokenizer": str(tiny_tokenizer_dir)}}
    manager = RunManager(store, workspace.runs_dir, poll_ms=100)  # the real command: python -m core.train
    try:
        with qtbot.waitSignal(manager.runFinished, timeout=240_000) as finished:
            run_id = manager.launch(config)
        assert finished.args == [run_id, "completed"], store.get_run(run_id).status_message
        run = store.get_run(run_id)
        assert (run.method, run.last_step, run.total_steps) == ("pretrain", 4, 4)
        steps, loss = store.metric_series(run_id, "loss")
        np.testing.assert_array_equal(steps, np.arange(1, 5))
        assert np.all(np.isfinite(loss)) and {"lr", "grad_norm"} <= set(store.metric_names(run_id))
        assert [c.step for c in store.checkpoints(run_id)] == [4]
        assert (Path(store.checkpoints(run_id)[0].path) / "model.safetensors").is_file()
    finally:
        manager.shutdown()
