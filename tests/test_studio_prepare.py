"""The studio while a real trainer prepares its data: the Runs table and the status bar say "preparing data 37 %,
12 min left", Stop works then, and a run stopped before its first checkpoint can be resumed.

The trainer is the real one (launched by RunManager as the studio does), with tokenizing slowed down to a sleep
per batch of 50 records (tests/test_prepare_phase.py), so that the preparation lasts several seconds.
"""
from __future__ import annotations

import re
import sys

import pytest

from tests.fixtures.train import head_lines
from tests.test_prepare_phase import BATCH, SHARD_BYTES, SLOW_TRAINER


def _slow_trainer_command(config_path, resume=None, n_gpus=1) -> list[str]:
    code = SLOW_TRAINER.format(batch=BATCH, shard=SHARD_BYTES, delay=0.2)
    return [sys.executable, "-c", code, "--config", str(config_path)] + (
        ["--resume", str(resume)] if resume is not None else [])


@pytest.fixture()
def manager(run_manager, monkeypatch):
    """The studio fixtures' RunManager, launching the real (slowed) trainer instead of the stand-in."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run_manager.command_builder = _slow_trainer_command
    return run_manager


@pytest.fixture()
def pretrain_config(workspace, shared_data, tiny_tokenizer_dir) -> dict:
    data = head_lines(shared_data / "pretrain.jsonl", workspace.datasets_dir / "pretrain-2000.jsonl", 2000)
    return {"name": "big corpus", "method": "pretrain", "model": "tiny", "max_steps": 2, "batch_size": 4,
            "device": "cpu", "precision": "fp32", "log_every": 1, "save_every": 0,
            "data": {"files": [str(data)], "seq_len": 32, "tokenizer": str(tiny_tokenizer_dir),
                     "cache_dir": str(workspace.datasets_dir / "cache")}}


def test_preparing_data_shows_in_the_runs_table_and_status_bar_and_stop_and_resume_work(
        qtbot, manager, store, workspace, pretrain_config):
    from studio.context import StudioContext
    from studio.main_window import MainWindow
    from studio.panes.runs.presenter import RunsPresenter, run_progress

    context = StudioContext(workspace, store, manager)
    manager.connect_context(context)
    presenter = RunsPresenter(context)
    run_id = manager.launch(pretrain_config)
    # until a stored prepare event shows some records tokenized
    qtbot.waitUntil(lambda: (store.preparation(run_id) or {}).get("records", 0) > 0, timeout=120_000)

    status = presenter.row(store.get_run(run_id)).cells[2]
    assert re.fullmatch(r"preparing data \d+ %(, .+ left)?", status), status
    assert "tokenizing pretrain-2000.jsonl" in presenter.row(store.get_run(run_id)).tooltip
    view = run_progress(store, manager, run_id)
    assert view.preparing and view.label == f"Preparing data for {run_id}" and view.maximum == 1000
    window = MainWindow(context, probe_device=False)
    qtbot.addWidget(window)
    window.refresh_progress()
    assert window.run_label.text() == f"Preparing data for {run_id}"
    assert re.fullmatch(r"\d+ %", window.progress.format())
    from studio.dialogs.first_run import FirstRunPresenter

    guide = FirstRunPresenter(context)
    guide.step, guide.waiting = 2, ("big corpus", 0.0)  # as if the guide had launched this run
    with qtbot.waitSignal(guide.progress) as shown:
        guide.check_runs()
    assert shown.args[1] == 1000 and shown.args[2].startswith("preparing data ")

    with qtbot.waitSignal(manager.runFinished, timeout=60_000,
                          check_params_cb=lambda rid, _status: rid == run_id) as finished:
        manager.stop(run_id)
    assert finished.args[1] == "stopped"
    assert store.preparation(run_id) is None and "preparing data" in store.get_run(run_id).status_message
    assert presenter.allowed(run_id)["resume"]  # no checkpoint yet, but its config and cache shards are kept

    with qtbot.waitSignal(manager.runFinished, timeout=120_000,
                          check_params_cb=lambda rid, _status: rid == run_id) as finished:
        manager.resume(run_id)
    assert finished.args[1] == "completed"
    resumed = [e for e in store.events(run_id, ["prepare"], limit=1000) if e["resumed_bytes"] > 0]
    assert resumed and resumed[-1]["state"] == "done"
    assert presenter.row(store.get_run(run_id)).cells[2] == "completed"
    window.close_policy = "keep"
    window.close()
