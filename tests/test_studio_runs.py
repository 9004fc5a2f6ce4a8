"""RunManager with a real child process (the stand-in trainer): events reach SQLite and live plots, stop, kill,
resume, queue, and a studio that goes away while the run goes on."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.process_identity import pid_alive

FAST = {"method": "pretrain", "max_steps": 25, "method_options": {"step_seconds": 0.005}}
SLOW = {"method": "pretrain", "max_steps": 100000, "method_options": {"step_seconds": 0.01}}


def _wait_finished(qtbot, manager, run_id, timeout=15000):
    with qtbot.waitSignal(manager.runFinished, timeout=timeout,
                          check_params_cb=lambda rid, _status: rid == run_id) as blocker:
        pass
    return blocker.args[1]


def _wait_metrics(qtbot, manager, run_id, timeout=15000):
    """Until the run's first metric events are stored."""
    qtbot.waitSignal(manager.eventsIngested, timeout=timeout,
                     check_params_cb=lambda rid, evs: rid == run_id and any(e["type"] == "metric" for e in evs)).wait()


def test_worker_events_reach_sqlite_and_the_live_plot(qtbot, run_manager, store, workspace):
    from studio.context import StudioContext
    from studio.panes.curves.presenter import CurvesPresenter

    context = StudioContext(workspace, store, run_manager)
    run_manager.connect_context(context)
    presenter = CurvesPresenter(context)
    context.eventsIngested.connect(presenter.on_events)  # as MainWindow._connect_pane wires the Curves pane
    with qtbot.waitSignal(run_manager.runFinished, timeout=15000) as finished:
        run_id = run_manager.launch(dict(FAST, method="grpo", name="rl", method_options={"step_seconds": 0.005,
                                                                               "samples_every": 5}))
        presenter.set_runs([run_id])
    assert finished.args == [run_id, "completed"]
    run = store.get_run(run_id)
    assert (run.status, run.last_step, run.total_steps, run.method, run.name) == ("completed", 25, 25, "grpo", "rl")
    steps, values = store.metric_series(run_id, "loss")
    np.testing.assert_array_equal(steps, np.arange(1, 26))
    x, y = presenter.series(run_id, "loss")  # live events arrived in the plot buffers, none twice
    np.testing.assert_array_equal(x, steps)
    np.testing.assert_allclose(y, values)
    assert len(store.samples(run_id)) == 5
    run_dir = Path(run.run_dir)
    assert "a line that is not an event" in (run_dir / "stdout.log").read_text()
    assert "stand-in trainer: warming up" in (run_dir / "stderr.log").read_text()
    written = json.loads((run_dir / "config.json").read_text())  # what the trainer validates (extra="forbid")
    assert written["run_dir"] == str(run_dir) and "name" not in written


def test_stop_is_graceful_checkpoint_then_run_finished_stopped(qtbot, run_manager, store):
    run_id = run_manager.launch(SLOW)
    _wait_metrics(qtbot, run_manager, run_id)
    with qtbot.waitSignal(run_manager.runFinished, timeout=10000) as finished, \
            qtbot.waitSignal(run_manager.checkpointAdded, timeout=10000) as ckpt:
        run_manager.stop(run_id)
    assert finished.args == [run_id, "stopped"]
    run = store.get_run(run_id)
    assert run.status == "stopped" and run.status_message == "stopped by SIGTERM"
    assert Path(ckpt.args[1]).is_dir() and [c.path for c in store.checkpoints(run_id)] == [ckpt.args[1]]
    assert [e["type"] for e in store.events(run_id, limit=2)] == ["checkpoint", "run_finished"]


def test_resume_continues_in_the_same_folder_without_duplicate_steps(qtbot, run_manager, store):
    run_id = run_manager.launch(dict(SLOW, max_steps=200))
    _wait_metrics(qtbot, run_manager, run_id)
    run_manager.stop(run_id)
    _wait_finished(qtbot, run_manager, run_id)
    stopped_at = store.get_run(run_id).last_step
    run_manager.resume(run_id)
    assert _wait_finished(qtbot, run_manager, run_id, timeout=30000) == "completed"
    run = store.get_run(run_id)
    assert run.resumed_from == stopped_at and run.last_step == 200
    steps, _ = store.metric_series(run_id, "loss")
    np.testing.assert_array_equal(steps, np.arange(1, 201))


def test_kill_leaves_an_interrupted_resumable_run(qtbot, run_manager, store):
    run_id = run_manager.launch(dict(SLOW, max_steps=200))
    _wait_metrics(qtbot, run_manager, run_id)
    run_manager.kill(run_id)
    assert _wait_finished(qtbot, run_manager, run_id) == "interrupted"
    run = store.get_run(run_id)
    assert "killed" in run.status_message and not pid_alive(run.pid, run.pid_start_ticks)
    run_manager.resume(run_id)  # resumable: it runs again in its folder to the end, every step stored once
    assert _wait_finished(qtbot, run_manager, run_id, timeout=30000) == "completed"
    steps, _ = store.metric_series(run_id, "loss")
    np.testing.assert_array_equal(steps, np.arange(1, 201))


def test_a_second_run_waits_in_the_queue_until_the_device_is_free(qtbot, run_manager, store):
    first = run_manager.launch(SLOW)
    second = run_manager.launch(FAST)
    queued = store.get_run(second)
    assert queued.status == "queued" and first in queued.status_message
    _wait_metrics(qtbot, run_manager, first)
    with qtbot.waitSignal(run_manager.runFinished, timeout=15000,
                          check_params_cb=lambda rid, _s: rid == second):
        run_manager.stop(first)
    assert store.get_run(first).status == "stopped"
    assert store.get_run(second).status == "completed"


def test_a_run_launched_while_a_sweep_runs_waits_for_the_sweep_to_end(qtbot, run_manager, store, workspace):
    from core.sweep.runner import _locked

    sweep_dir = workspace.sweeps_dir / "lr-sweep"
    with _locked(sweep_dir):  # the lock a running `minimind sweep` holds, taken the way it takes it
        run_id = run_manager.launch(FAST)
        qtbot.wait(200)  # four polls: the run still waits (nothing here is timed; it may only not start)
        run = store.get_run(run_id)
        assert run.status == "queued" and run.status_message == (
            "waiting for sweep lr-sweep to finish (one run per device)"), run.status_message
        assert run.pid is None
    assert _wait_finished(qtbot, run_manager, run_id) == "completed"  # the sweep ended: the queue moved on

    # a sweep the studio has just spawned and whose process has not taken the lock yet (imports, spec checks)
    import subprocess
    import sys

    from core.process_identity import process_start_ticks
    from studio.worker.run_manager import SWEEP_STARTED_FILE

    starting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (sweep_dir / SWEEP_STARTED_FILE).write_text(json.dumps({"pid": starting.pid,
                                                                "start_ticks": process_start_ticks(starting.pid)}))
        second = run_manager.launch(FAST)
        assert store.get_run(second).status == "queued"
    finally:
        starting.kill()
        starting.wait()
    assert _wait_finished(qtbot, run_manager, second) == "completed"


def test_dropping_the_studio_side_does_not_stop_the_run_and_reopening_reattaches(qtbot, store, workspace, standin):
    from studio.worker.run_manager import RunManager

    first = RunManager(store, workspace.runs_dir, command_builder=standin, poll_ms=50)
    run_id = first.launch(dict(SLOW, max_steps=150))
    _wait_metrics(qtbot, first, run_id)
    first.shutdown()  # the studio goes away without stopping anything
    del first
    run = store.get_run(run_id)
    assert pid_alive(run.pid, run.pid_start_ticks)

    second = RunManager(store, workspace.runs_dir, command_builder=standin, poll_ms=50)
    with qtbot.waitSignal(second.runFinished, timeout=20000) as finished:
        assert run_id in second.reconcile()
        assert store.get_run(run_id).status == "running" and second.live_run_ids() == [run_id]
    assert finished.args == [run_id, "completed"]
    steps, _ = store.metric_series(run_id, "loss")
    np.testing.assert_array_equal(steps, np.arange(1, 151))  # nothing lost, nothing twice across the gap
    second.shutdown()


def test_runs_presenter_rows_buttons_and_detail(qtbot, run_manager, store, workspace):
    from studio.context import StudioContext
    from studio.panes.runs.presenter import RunsPresenter

    context = StudioContext(workspace, store, run_manager)
    run_manager.connect_context(context)
    with qtbot.waitSignal(run_manager.runFinished, timeout=15000):
        parent = run_manager.launch(dict(FAST, name="base run"))
    with qtbot.waitSignal(context.configEditRequested) as edit:
        config = context.library.clone(parent)
    assert edit.args[0] == config and config["parent_run_id"] == parent and "run_dir" not in config
    with qtbot.waitSignal(run_manager.runFinished, timeout=15000):
        child = run_manager.launch(config)
    presenter = RunsPresenter(context)
    rows = {row.run_id: row for row in presenter.rows()}
    assert rows[parent].cells[0] == "base run" and rows[parent].cells[2] == "completed"
    assert rows[parent].cells[5] == "25/25"
    assert presenter.allowed(parent) == {"start": True, "stop": False, "kill": False, "resume": True,
                                         "clone": True, "delete": True, "tensorboard": False}
    detail = presenter.detail(child)
    assert any(parent in line and line.startswith("parent run") for line in detail["lineage"])
    assert detail["checkpoints"][0][0] == 25
    assert presenter.delete(child, remove_files=True)
    assert store.get_run(child) is None and not (workspace.runs_dir / child).exists()


def test_trainer_command_from_source_with_torchrun_and_frozen(monkeypatch, tmp_path):
    import sys

    from studio.worker.command import build_trainer_command

    cfg = tmp_path / "config.json"
    assert build_trainer_command(cfg) == [sys.executable, "-m", "core.train", "--config", str(cfg)]
    assert build_trainer_command(cfg, tmp_path, n_gpus=2) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "core.train",
        "--config", str(cfg), "--resume", str(tmp_path)]
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # a PyInstaller bundle re-runs itself as the worker
    assert build_trainer_command(cfg) == [sys.executable, "--worker", "--config", str(cfg)]
