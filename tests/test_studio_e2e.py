"""End to end: the real main window over a real workspace, a studio process killed mid-run, the packaging
self-test, and (once the trainer is present) a real tiny training run followed by the studio."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
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
    threads_before = set(threading.enumerate())
    context, window = _window(workspace, standin)
    qtbot.addWidget(window)
    window.show()
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == \
        ["Datasets", "Config", "Runs", "Curves", "Chat", "Export", "Evaluate"]
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
    # the Config pane sizes its model in a thread: let the threads this test started end before the interpreter
    # does (only those: a daemon thread an earlier test left, e.g. a tool worker's reader, may never end)
    for thread in threading.enumerate():
        if thread.daemon and thread not in threads_before and not isinstance(thread, threading._DummyThread):
            thread.join(60)


STUDIO_SCRIPT = """
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
from PySide6.QtCore import QCoreApplication
from studio.app import build_context
from fixtures.studio import standin_command
{hook}
app = QCoreApplication([])
context = build_context({ws!r})
context.runs.command_builder = standin_command
print(context.runs.launch({config!r}), flush=True)
app.exec()
"""

# Test-only hook for the studio process: on the `nth` add_events batch that holds metrics, SIGKILL the process
# from inside the store's transaction, at the flush that has written the batch's rows and its new offset (the
# last SQL before COMMIT). What the transaction held is written to `mark` first, read back through its own
# connection: the proof that the kill landed inside it.
KILL_INSIDE_ADD_EVENTS = """
import json, os, signal
from sqlalchemy import event
from sqlalchemy.orm import Session
from studio.store.run_store import RunStore
pending = {{"batches": 0, "offset": None}}
store_batch = RunStore.add_events
def add_events(self, run_id, events, offset=None):
    steps = [e["step"] for e in events if e.get("type") == "metric"]
    pending["batches"] += bool(steps)
    if steps and pending["batches"] == {nth}:
        pending.update(offset=offset, run_id=run_id, steps=steps)
    return store_batch(self, run_id, events, offset)
RunStore.add_events = add_events
@event.listens_for(Session, "after_flush")
def kill_before_commit(session, _context):
    if pending["offset"] is None:
        return
    sql = session.connection().exec_driver_sql
    run_id, steps = pending["run_id"], pending["steps"]
    offset = sql("SELECT events_offset FROM run WHERE id = ?", (run_id,)).scalar()
    if offset != pending["offset"]:
        return  # an earlier flush of the same transaction (the run row's other fields)
    rows = sql("SELECT count(*) FROM metric WHERE run_id = ? AND name = 'loss' AND step BETWEEN ? AND ?",
               (run_id, steps[0], steps[-1])).scalar()
    with open({mark!r}, "w") as f:
        json.dump({{"offset": offset, "steps": steps, "rows": rows, "in_transaction": session.in_transaction()}}, f)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _metric_lines(path: Path, limit: int | None = None) -> int:
    """Metric events in events.jsonl (in its first `limit` bytes)."""
    return path.read_bytes()[:limit].count(b'"type": "metric"') if path.exists() else 0


def _launch_studio(workspace, config: dict, hook: str = "") -> tuple[subprocess.Popen, str]:
    script = STUDIO_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests"), ws=str(workspace.root),
                                  config=config, hook=hook)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    studio = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    return studio, studio.stdout.readline().strip()


def _stored(workspace, run_id: str) -> tuple[int, int, str]:
    """(saved events offset, stored loss rows, status) as the studio's database holds them, read from outside."""
    with closing(sqlite3.connect(f"file:{workspace.db_path}?mode=ro", uri=True, timeout=5)) as db:
        row = db.execute("SELECT events_offset, status FROM run WHERE id = ?", (run_id,)).fetchone()
        rows = db.execute("SELECT count(*) FROM metric WHERE run_id = ? AND name = 'loss'", (run_id,)).fetchone()
    return (row[0], rows[0], row[1]) if row else (0, 0, "")


def _reopen_and_finish(qtbot, workspace, run_id: str, steps: int) -> None:
    """Reopen the studio on the workspace: it reconciles the run, follows it to the end, every step once."""
    from studio.app import build_context

    context = build_context(workspace.root, reconcile=False)
    assert context.store.get_run(run_id).status in ("starting", "running")  # as the dead studio left it
    with qtbot.waitSignal(context.runs.runFinished, timeout=30000) as finished:
        assert context.runs.reconcile() == [run_id]
    assert finished.args == [run_id, "completed"]
    stored, _ = context.store.metric_series(run_id, "loss")
    np.testing.assert_array_equal(stored, np.arange(1, steps + 1))  # none missing, none twice
    context.runs.shutdown()
    context.store.close()


def _assert_trainer_alive(events_path: Path) -> None:
    started = json.loads(events_path.read_text().splitlines()[0])
    assert pid_alive(started["pid"], started["pid_start_ticks"]), "the trainer must survive the studio"


@pytest.mark.slow
def test_a_killed_studio_leaves_the_run_training_and_reopening_reconciles_it(qtbot, workspace):
    """Killed after a partial ingest (a saved offset > 0, the run not finished): reopening goes on from that
    offset, so no step is lost or stored twice."""
    studio, run_id = _launch_studio(workspace, dict(SLOW_RUN, max_steps=300))
    events_path = workspace.runs_dir / run_id / "events.jsonl"
    deadline = time.time() + 30
    while time.time() < deadline and _stored(workspace, run_id)[1] == 0:
        time.sleep(0.02)  # the studio runs in another process: poll its database
    studio.send_signal(signal.SIGKILL)
    studio.wait(10)
    offset, rows, status = _stored(workspace, run_id)
    assert offset > 0 and 0 < rows < 300 and status in ("starting", "running"), (offset, rows, status)
    assert rows == _metric_lines(events_path, offset)  # the offset and the events were saved together
    _assert_trainer_alive(events_path)
    _reopen_and_finish(qtbot, workspace, run_id, 300)


@pytest.mark.slow
def test_a_studio_killed_inside_the_store_transaction_loses_and_repeats_no_step(qtbot, workspace, tmp_path):
    mark = tmp_path / "killed-inside.json"
    hook = KILL_INSIDE_ADD_EVENTS.format(nth=3, mark=str(mark))
    studio, run_id = _launch_studio(workspace, dict(SLOW_RUN, max_steps=300), hook)
    try:
        assert studio.wait(30) == -signal.SIGKILL  # it killed itself: the hook fired
    finally:
        studio.kill()
    inside = json.loads(mark.read_text())
    # inside the transaction: its batch's rows and its new offset were written, COMMIT was not reached
    assert inside["in_transaction"] and inside["rows"] == len(inside["steps"]) > 0, inside
    offset, rows, _ = _stored(workspace, run_id)
    assert 0 < offset < inside["offset"], (offset, inside)  # two batches committed, the third rolled back
    committed = _metric_lines(workspace.runs_dir / run_id / "events.jsonl", offset)
    assert rows == committed == inside["steps"][0] - 1, (rows, committed, inside)
    _assert_trainer_alive(workspace.runs_dir / run_id / "events.jsonl")
    _reopen_and_finish(qtbot, workspace, run_id, 300)


@pytest.mark.skipif(not TRAINER_PRESENT, reason="core.train has no __main__ yet (trainer not in this checkout)")
def test_self_test_opens_the_window_and_finds_the_trainer_entry(qapp, capsys):
    from studio.app import self_test  # what `python app.py --self-test` runs, here in-process (same Qt app)

    assert self_test() == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "window: ok (Datasets, Config, Runs, Curves, Chat, Export, Evaluate)" in out and "trainer entry: ok" in out


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
