"""What keeps the UI thread short (issue 16.8): the model pickers read the store in one query whatever the number
of runs, and bench.ui_stall's per-thread split names a wait on another thread."""
from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("PySide6")


def _runs_with_checkpoints(workspace, store, first: int, last: int, steps=(100, 200)) -> None:
    for i in range(first, last):
        run_id = f"run-{i:03d}"
        events = []
        for step in steps:
            folder = workspace.runs_dir / run_id / "checkpoints" / f"step-{step:06d}"
            folder.mkdir(parents=True)
            (folder / "model_config.json").write_text("{}")
            events.append({"v": 1, "type": "checkpoint", "time": time.time(), "step": step, "path": str(folder)})
        store.create_run(run_id, run_dir=workspace.runs_dir / run_id, config={}, name=f"r{i}", method="pretrain",
                         status="completed", created_at=1000.0 + i)
        store.add_events(run_id, events)


def test_the_model_pickers_read_the_store_in_one_query_whatever_the_number_of_runs(context, workspace, store):
    from sqlalchemy import event

    from studio.store.model_sources import list_checkpoints

    statements = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    counts, made = {}, 0
    for n_runs in (3, 30):
        _runs_with_checkpoints(workspace, store, made, n_runs)
        made = n_runs
        statements.clear()
        sources = list_checkpoints(context)
        counts[n_runs] = len(statements)
        assert len(sources) == 2 * n_runs
    assert counts == {3: 1, 30: 1}, statements
    # newest run first, and within a run the newest step first; labels name the run and the step
    assert [s.label for s in sources[:3]] == ["r29 · step-000200 (pretrain)", "r29 · step-000100 (pretrain)",
                                              "r28 · step-000200 (pretrain)"]
    # a checkpoint folder the store does not know is still listed, after the stored ones
    extra = workspace.runs_dir / "copied-in" / "checkpoints" / "step-000007"
    extra.mkdir(parents=True)
    (extra / "model_config.json").write_text("{}")
    sources = list_checkpoints(context)
    assert sources[-1].path == str(extra) and sources[-1].run_id == "copied-in"


def test_the_thread_clock_names_the_thread_that_held_the_ui_thread():
    from bench.stall_causes import ThreadClock, format_interval

    clock = ThreadClock()
    if not clock.available:
        pytest.skip("no /proc/self/task/*/schedstat on this system")
    lock = threading.Lock()
    held, measured = threading.Event(), threading.Event()

    def burner() -> None:
        with lock:
            held.set()
            end = time.perf_counter() + 0.15
            while time.perf_counter() < end:  # CPU work while holding what the main thread waits for
                pass
        measured.wait(10)  # alive until read: an ended thread has no counters left

    thread = threading.Thread(target=burner, name="burner")
    clock.tick()
    start = time.perf_counter()
    thread.start()
    held.wait()
    with lock:  # the "UI thread" blocks here until the burner is done
        pass
    clock.tick()
    split = clock.interval(time.perf_counter() - start)
    measured.set()
    thread.join()
    assert split["blocked_ms"] > 60 and split["cpu_ms"] < 40, split
    assert split["others"] and split["others"][0]["thread"] == "burner" and split["others"][0]["cpu_ms"] > 20, split
    assert "blocked (GIL or lock); meanwhile burner" in format_interval(split)


def test_a_run_that_fails_to_start_is_still_selected_to_show_why(qtbot, workspace, monkeypatch):
    """Run changes reach the window deferred, after the launch: a run whose process could not be spawned is
    already ``failed`` by then (the OS refusal is raised here: a missing executable only fails in the child)."""
    import studio.worker.run_manager as run_manager
    from studio.app import build_context
    from studio.main_window import MainWindow

    def refuse(argv, *_args, **_kwargs):
        raise PermissionError(13, "Permission denied", argv[0])

    monkeypatch.setattr(run_manager, "spawn_detached", refuse)
    context = build_context(workspace.root)
    window = MainWindow(context, probe_device=False)
    qtbot.addWidget(window)
    run_id = context.runs.launch({"method": "pretrain", "max_steps": 5})
    qtbot.waitUntil(lambda: context.selected_run_id == run_id, timeout=2000)
    run = context.store.get_run(run_id)
    assert run.status == "failed" and "could not start" in run.status_message
    window.close_policy = "keep"
    window.close()
    context.runs.shutdown()
    context.store.close()
