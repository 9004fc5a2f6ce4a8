"""RunLibrary: a run's record and folder apart from its process (import, clone, delete), on a real store; a live
run it imports is followed by the real RunManager (the stand-in trainer as a child process)."""
from __future__ import annotations

import json
import threading

from core.process_identity import pid_alive


def _events_file(run_dir, steps: int, finished: bool = True) -> None:
    run_dir.mkdir(parents=True)
    lines = [{"v": 1, "type": "run_started", "time": 1.0, "step": 0, "method": "sft", "total_steps": steps}]
    lines += [{"v": 1, "type": "metric", "time": 1.0 + s, "step": s, "metrics": {"loss": 1 / s}}
              for s in range(1, steps + 1)]
    if finished:
        lines.append({"v": 1, "type": "run_finished", "time": 9e3, "step": steps, "status": "completed"})
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))


def test_import_run_folder_is_read_off_the_window_thread(qtbot, store, workspace):
    from studio.run_library import RunLibrary

    library = RunLibrary(store, workspace.runs_dir)
    run_dir = workspace.root / "cli-runs" / "cli"
    _events_file(run_dir, 3000)
    threads = []
    store_add = store.add_events
    store.add_events = lambda *a, **k: threads.append(threading.current_thread()) or store_add(*a, **k)
    with qtbot.waitSignal(library.runImported, timeout=10000) as done:
        library.import_run_dir_async(run_dir)
    assert done.args == ["cli", ""]
    assert threads and threads[0] is not threading.main_thread()  # the window's thread never read the file
    assert store.get_run("cli").status == "completed" and store.metric_series("cli", "loss")[0].size == 3000
    with qtbot.waitSignal(library.runImported, timeout=10000) as again:
        library.import_run_dir_async(run_dir)  # same name twice: an error for the user, no exception
    assert again.args[0] == "" and "already in this workspace" in again.args[1]


def test_delete_forgets_a_finished_run_and_removes_only_a_folder_under_runs(qtbot, store, workspace):
    from studio.run_library import RunLibrary

    library = RunLibrary(store, workspace.runs_dir)
    inside, outside = workspace.runs_dir / "inside", workspace.root / "elsewhere" / "outside"
    for run_dir in (inside, outside):
        _events_file(run_dir, 3)
        library.import_run_dir(run_dir)
    store.update_run("inside", status="running")
    assert not library.delete("inside", remove_files=True)  # an active run is never deleted
    store.update_run("inside", status="completed")
    with qtbot.waitSignal(library.runsChanged):
        assert library.delete("inside", remove_files=True)
    assert library.delete("outside", remove_files=True)
    assert store.get_run("inside") is None and store.get_run("outside") is None
    assert not inside.exists() and outside.is_dir()  # a folder outside runs/ is the user's: only forgotten


def test_a_live_run_folder_imported_is_followed_by_the_run_manager(qtbot, store, workspace, standin):
    from studio.context import StudioContext
    from studio.worker.run_manager import RunManager

    first = RunManager(store, workspace.runs_dir, command_builder=standin, poll_ms=50)
    run_id = first.launch({"method": "pretrain", "max_steps": 100000, "method_options": {"step_seconds": 0.01}})
    qtbot.waitUntil(lambda: (store.get_run(run_id).last_step or 0) > 0, timeout=15000)
    first.shutdown()  # a trainer this studio does not know: its row goes, its process stays
    del first
    run = store.get_run(run_id)
    store.delete_run(run_id)
    manager = RunManager(store, workspace.runs_dir, command_builder=standin, poll_ms=50)
    context = StudioContext(workspace, store, manager)
    manager.connect_context(context)
    try:
        with qtbot.waitSignal(context.library.runImported, timeout=10000) as done:
            context.library.import_run_dir_async(run.run_dir)
        assert done.args == [run_id, ""] and store.get_run(run_id).status == "running"
        assert manager.live_run_ids() == [run_id]
        with qtbot.waitSignal(manager.runFinished, timeout=15000) as finished:
            manager.kill(run_id)
        assert finished.args == [run_id, "interrupted"] and not pid_alive(run.pid, run.pid_start_ticks)
    finally:
        for live in manager.live_run_ids():
            manager.kill(live)
        manager.shutdown()
