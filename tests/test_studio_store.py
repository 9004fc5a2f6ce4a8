"""The studio's SQLite store: round trip, batching, lineage, recovery from a corrupt file, reconcile of dead runs."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from studio.store import RunStore, open_store


def _events(n: int, start: int = 1, finished: str | None = None, resumed_from: int | None = None) -> list[dict]:
    t = time.time()
    out = [{"v": 1, "type": "run_started", "time": t, "step": start - 1, "run_id": "r", "method": "pretrain",
            "config": {"method": "pretrain"}, "world_size": 1, "device": "cpu", "params": 10, "dataset_tokens": 100,
            "total_steps": start + n - 1, "resumed_from": resumed_from, "pid": 1}]
    for step in range(start, start + n):
        out.append({"v": 1, "type": "metric", "time": t + step, "step": step, "epoch": 0,
                    "metrics": {"loss": 10.0 / step, "lr": 1e-3, "bad": "not a number"}})
    out.append({"v": 1, "type": "checkpoint", "time": t + n, "step": start + n - 1,
                "path": f"checkpoints/step-{start + n - 1:06d}"})
    out.append({"v": 1, "type": "sample", "time": t + n, "step": start + n - 1,
                "samples": [{"prompt": "p", "completion": "c", "reward": 0.5, "rewards": {"acc": 0.5}}]})
    if finished:
        out.append({"v": 1, "type": "run_finished", "time": t + n + 1, "step": start + n - 1, "status": finished,
                    "message": ""})
    return out


def _write_run_dir(runs_dir: Path, name: str, events: list[dict]) -> Path:
    run_dir = runs_dir / name
    run_dir.mkdir(parents=True)
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run_dir / "config.json").write_text(json.dumps({"method": "pretrain", "run_dir": str(run_dir)}))
    return run_dir


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_round_trip_on_a_real_sqlite_file_in_wal_mode(workspace):
    store = RunStore(workspace.db_path)
    assert store.journal_mode() == "wal"
    store.create_run("r1", run_dir=workspace.runs_dir / "r1", config={"method": "pretrain"}, method="pretrain")
    changes = store.add_events("r1", _events(300, finished="completed"), offset=1234)
    assert changes["finished"] == "completed" and len(changes["checkpoints"]) == 1
    store.close()

    reopened = RunStore(workspace.db_path)  # everything above was committed to the file
    run = reopened.get_run("r1")
    assert (run.status, run.last_step, run.total_steps, run.events_offset) == ("completed", 300, 300, 1234)
    assert run.best_loss == 10.0 / 300
    steps, values = reopened.metric_series("r1", "loss")
    assert steps.dtype == np.int64 and values.dtype == np.float64
    np.testing.assert_array_equal(steps, np.arange(1, 301))
    np.testing.assert_allclose(values, 10.0 / np.arange(1, 301))
    assert reopened.metric_names("r1") == ["loss", "lr"]  # the non-numeric "bad" value was not stored
    assert [c.step for c in reopened.checkpoints("r1")] == [300]
    assert reopened.samples("r1")[0]["rewards"] == {"acc": 0.5}
    assert [e["type"] for e in reopened.events("r1")] == ["run_started", "checkpoint", "sample", "run_finished"]
    reopened.close()


def test_add_events_is_one_transaction_and_skips_malformed_events(workspace):
    store = RunStore(workspace.db_path)
    store.create_run("r1", run_dir=workspace.runs_dir / "r1")
    try:
        store.add_events("missing", _events(5), offset=99)
    except KeyError:
        pass
    else:
        raise AssertionError("events of an unknown run must raise")
    batch = _events(50)
    batch.insert(10, {"v": 1, "type": "metric", "time": 0, "step": "not-an-int", "metrics": {"loss": 1.0}})
    batch.insert(20, {"v": 1, "type": "metric", "time": 0, "step": 3, "metrics": [1.0]})
    changes = store.add_events("r1", batch, offset=99)
    # The two malformed events are described and skipped; the rest of the batch is stored with its offset.
    assert len(changes["bad"]) == 2 and "'step'" in changes["bad"][0] and "'metrics'" in changes["bad"][1]
    assert store.metric_series("r1", "loss")[0].size == 50
    assert (store.get_run("r1").events_offset, store.get_run("r1").status) == (99, "running")
    store.close()


def test_resume_drops_replayed_steps_and_lineage_follows_parents(workspace):
    store = RunStore(workspace.db_path)
    store.create_run("base", run_dir=workspace.runs_dir / "base")
    store.add_events("base", _events(20))
    store.add_events("base", _events(10, start=16, resumed_from=15, finished="completed"))
    steps, _ = store.metric_series("base", "loss")
    np.testing.assert_array_equal(steps, np.arange(1, 26))  # 16..20 once, from the resumed process
    store.create_run("child", run_dir=workspace.runs_dir / "child", parent_run_id="base",
                     init_checkpoint="runs/base/checkpoints/step-000025")
    store.create_run("grandchild", run_dir=workspace.runs_dir / "gc", parent_run_id="child")
    assert [r.id for r in store.lineage("grandchild")] == ["base", "child", "grandchild"]
    assert [r.id for r in store.children("base")] == ["child"]
    store.close()


def test_corrupt_database_is_moved_aside_and_rebuilt_from_run_folders(workspace):
    _write_run_dir(workspace.runs_dir, "run-a", _events(40, finished="completed"))
    _write_run_dir(workspace.runs_dir, "run-b", _events(25, finished="stopped"))
    store = open_store(workspace.db_path, workspace.runs_dir)
    assert store.recovery_message is None
    store.close()
    workspace.db_path.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(str(workspace.db_path) + suffix).unlink(missing_ok=True)

    store = open_store(workspace.db_path, workspace.runs_dir)
    message = store.recovery_message
    assert message and "moved to" in message and "2 run(s) re-imported" in message
    moved = list(workspace.root.glob("studio.db.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"this is not a database")
    assert str(moved[0]) in message
    assert {r.id: r.status for r in store.list_runs()} == {"run-a": "completed", "run-b": "stopped"}
    assert store.metric_series("run-a", "loss")[0].size == 40
    sqlite3.connect(workspace.db_path).execute("PRAGMA quick_check").fetchone()  # the new file is a database
    store.close()


def test_reconcile_marks_a_dead_run_interrupted_with_all_its_metrics(qtbot, workspace, store):
    from studio.worker.run_manager import RunManager

    run_dir = _write_run_dir(workspace.runs_dir, "r-dead", [])
    store.create_run("r-dead", run_dir=run_dir, status="running")
    store.update_run("r-dead", pid=_dead_pid())
    # The trainer wrote 30 steps (the studio had stored none) and died without run_finished.
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in _events(30)))
    (run_dir / "stderr.log").write_text("Traceback ...\nRuntimeError: out of memory\n")

    manager = RunManager(store, workspace.runs_dir, poll_ms=50)
    with qtbot.waitSignal(manager.runFinished, timeout=10000):  # the backlog is read in the ingest thread
        assert manager.reconcile() == ["r-dead"]
    run = store.get_run("r-dead")
    assert run.status == "interrupted"
    assert "out of memory" in run.status_message
    assert store.metric_series("r-dead", "loss")[0].size == 30
    assert manager.live_run_ids() == []
    manager.shutdown()


def test_import_of_a_cli_run_folder(workspace, store):
    from studio.store import import_run_dir

    run_dir = _write_run_dir(workspace.root / "elsewhere", "cli-run", _events(12, finished="completed"))
    assert import_run_dir(store, run_dir) == "cli-run"
    assert store.get_run("cli-run").status == "completed"
    try:
        import_run_dir(store, run_dir.parent)  # not a run folder
    except ValueError as exc:
        assert "events.jsonl" in str(exc)
    else:
        raise AssertionError("a folder without events.jsonl must be refused")


def test_a_run_that_dies_before_its_run_folder_exists_reports_the_trainers_message(workspace, store):
    from studio.store import mark_dead

    run_dir = workspace.runs_dir / "bad"
    run_dir.mkdir()
    store.create_run("bad", run_dir=run_dir, status="starting")
    # What python -m core.train prints for a config error: events on stdout only (no events.jsonl yet).
    error = "config.json: batch_size: Input should be greater than or equal to 1 (got 0)"
    (run_dir / "stdout.log").write_text(
        json.dumps({"v": 1, "type": "error", "time": 1.0, "step": 0, "message": error}) + "\n" +
        json.dumps({"v": 1, "type": "run_finished", "time": 1.0, "step": 0, "status": "failed", "message": error})
        + "\n")
    assert mark_dead(store, "bad") == "failed"
    assert store.get_run("bad").status_message == error


def test_a_reused_pid_of_an_unrelated_process_is_not_the_runs(workspace, store):
    """run_started's pid now belongs to another program (pid reuse): not running, and never signalled."""
    from studio.store import import_run_dir
    from core.process_identity import pid_alive, process_start_ticks
    from studio.worker.pids import send_signal

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with_ticks = _events(5)
        with_ticks[0].update(pid=sleeper.pid, pid_start_ticks=12345)  # ticks of the trainer, long gone
        without_ticks = _events(5)
        without_ticks[0]["pid"] = sleeper.pid  # an older trainer: no ticks, and `sleep` is not a trainer
        for name, events in (("ticks", with_ticks), ("no-ticks", without_ticks)):
            import_run_dir(store, _write_run_dir(workspace.runs_dir, name, events))
            run = store.get_run(name)
            assert run.status == "interrupted", name
            assert not send_signal(run.pid, 15, group=True, start_ticks=run.pid_start_ticks)
        assert sleeper.poll() is None  # still alive: nothing was sent to it
        assert pid_alive(sleeper.pid, process_start_ticks(sleeper.pid))  # with its own ticks it is itself
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_malformed_run_folder_does_not_stop_the_rebuild(workspace):
    _write_run_dir(workspace.runs_dir, "good", _events(10, finished="completed"))
    bad = _events(6, finished="completed")
    bad[0]["total_steps"] = [5]
    bad[3]["metrics"] = 3
    bad_dir = _write_run_dir(workspace.runs_dir, "odd", bad)
    broken = workspace.runs_dir / "broken"
    broken.mkdir()
    (broken / "events.jsonl").write_text(json.dumps(_events(2)[0]) + "\n")
    (broken / "config.json").write_text("[1, 2]")  # not an object: must not stop anything either
    workspace.db_path.write_bytes(b"not a database" * 100)

    store = open_store(workspace.db_path, workspace.runs_dir)
    runs = {r.id: r for r in store.list_runs()}
    assert runs["good"].status == "completed" and store.metric_series("good", "loss")[0].size == 10
    assert runs["odd"].status == "completed" and store.metric_series("odd", "loss")[0].size == 5
    assert "broken" in runs
    assert "2 line(s)" in store.recovery_message and str(bad_dir) in store.recovery_message
    log = (bad_dir / "stderr.log").read_text()
    assert "'total_steps'" in log and "'metrics'" in log
    store.close()


def test_a_malformed_live_event_is_reported_once_and_ingestion_goes_on(workspace, store):
    from studio.worker.ingest import ingest_once
    from studio.store.tailer import EventTailer

    run_dir = _write_run_dir(workspace.runs_dir, "live", [])
    store.create_run("live", run_dir=run_dir, status="running")
    events = _events(4)
    events[2]["metrics"] = "oops"
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    tailer = EventTailer(run_dir / "events.jsonl")
    stored, changes = ingest_once(store, "live", tailer)
    assert len(changes["bad"]) == 1 and all(isinstance(e.get("metrics", {}), dict) for e in stored)
    with open(run_dir / "events.jsonl", "a") as fh:
        fh.write(json.dumps({"v": 1, "type": "metric", "time": 1.0, "step": 9, "metrics": {"loss": 0.1}}) + "\n")
    stored, changes = ingest_once(store, "live", tailer)  # the next poll is not stuck on the bad line
    assert [e["step"] for e in stored] == [9] and not changes["bad"]
    assert store.metric_series("live", "loss")[0].tolist() == [1, 3, 4, 9]  # step 2 was the bad one
    assert (run_dir / "stderr.log").read_text().count("bad event") == 1


def test_stop_and_kill_never_signal_a_pid_that_is_not_the_runs(qtbot, workspace, store):
    from studio.worker.run_manager import RunManager

    sleeper = subprocess.Popen(["sleep", "30"])  # holds the pid an old run's row still names
    try:
        run_dir = _write_run_dir(workspace.runs_dir, "stale", _events(3))
        store.create_run("stale", run_dir=run_dir, status="running")
        store.update_run("stale", pid=sleeper.pid, pid_start_ticks=None, started_at=1.0)
        manager = RunManager(store, workspace.runs_dir, poll_ms=50)
        manager.stop("stale")
        manager.kill("stale")
        with qtbot.waitSignal(manager.runFinished, timeout=10000) as finished:
            manager.reconcile()
        assert finished.args == ["stale", "interrupted"]
        assert sleeper.poll() is None  # neither SIGTERM nor a SIGKILL to its group reached it
        manager.shutdown()
    finally:
        sleeper.kill()
        sleeper.wait()
