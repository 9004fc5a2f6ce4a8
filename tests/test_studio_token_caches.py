"""Datasets › Token caches: tokenize for training in a worker process (progress, Cancel), list and delete the
caches, and a run started later from the studio finds the cache ready and trains at once.

The worker is the real `minimind data prepare --events` in a QProcess. For Cancel it runs with tokenizing slowed
to a sleep per batch of 50 records (tests/test_prepare_phase.py's trick), so the build is still going when
Cancel is pressed, however loaded the machine is; no assertion depends on timing.
"""
from __future__ import annotations

import json
import os
import sys

import pytest

pytest.importorskip("PySide6")

from tests.fixtures.train import head_lines, read_events  # noqa: E402
from tests.test_prepare_phase import BATCH, SHARD_BYTES, SLOW_CLI  # noqa: E402


@pytest.fixture()
def pretrain_file(workspace, shared_data):
    return head_lines(shared_data / "pretrain.jsonl", workspace.datasets_dir / "pretrain-1000.jsonl", 1000)


def _pane(qtbot, context, data, tokenizer_dir):
    from studio.panes.datasets.view import DatasetsPane

    pane = DatasetsPane(context)
    qtbot.addWidget(pane)
    with qtbot.waitSignal(pane.presenter.fileOpened, timeout=60_000):
        pane.presenter.add_paths([data])  # the first file added opens
    pane.caches.select_tokenizer(str(tokenizer_dir))
    return pane


def test_tokenize_for_training_builds_the_cache_in_a_worker_process_then_lists_and_deletes_it(
        qtbot, context, pretrain_file, tiny_tokenizer_dir):
    from PySide6.QtCore import Qt

    pane = _pane(qtbot, context, pretrain_file, tiny_tokenizer_dir)
    tab, presenter = pane.caches, pane.caches.presenter
    events = []
    presenter.progress.connect(lambda done, total, text: events.append(presenter.last_event))
    with qtbot.waitSignal(presenter.runningChanged, timeout=10_000) as started:
        qtbot.mouseClick(tab.prepare_btn, Qt.LeftButton)
    assert started.args == [True] and not tab.prepare_btn.isEnabled() and tab.cancel_btn.isEnabled()
    worker_pid = presenter._process.processId()
    assert worker_pid not in (0, os.getpid())  # the build runs outside the studio's process
    with qtbot.waitSignal(presenter.finished, timeout=120_000) as finished, \
            qtbot.waitSignal(presenter.cachesChanged, timeout=120_000,
                             check_params_cb=lambda entries: len(entries) == 1) as listed:
        pass  # (the pane listed the caches when it opened too: wait for the listing with the new one)
    assert finished.args[0] == "done", finished.args
    done = [e for e in events if e and e["state"] == "done"]
    assert done and done[-1]["records"] == 1000 and done[-1]["bytes_done"] == pretrain_file.stat().st_size
    assert tab.bar.value() == 1000 and tab.prepare_btn.isEnabled()

    (entry,) = listed.args[0]
    assert entry.complete and entry.path.parent == context.workspace.cache_dir and entry.size_bytes > 0
    assert [tab.table.item(0, c).text() for c in (0, 1, 5)] == ["pretrain-1000.jsonl", "pretrain", "ready"]
    assert tab.table.item(0, 2).text() == f"tokenizer {tiny_tokenizer_dir.name}, any seq_len"

    tab.table.selectRow(0)
    with qtbot.waitSignal(presenter.cachesChanged, timeout=30_000) as after:
        qtbot.mouseClick(tab.delete_btn, Qt.LeftButton)
    assert after.args == [[]] and tab.table.rowCount() == 0 and not entry.path.exists()


def test_cancel_stops_the_worker_keeps_the_finished_shards_and_the_next_build_goes_on_from_them(
        qtbot, context, pretrain_file, tiny_tokenizer_dir, monkeypatch):
    from studio.panes.datasets import token_caches_presenter as tcp

    code = SLOW_CLI.format(batch=BATCH, shard=SHARD_BYTES, delay=0.2)
    monkeypatch.setattr(tcp, "cli_command", lambda args: [sys.executable, "-c", code, *args])
    presenter = tcp.TokenCachesPresenter(context)
    assert presenter.prepare(pretrain_file, tiny_tokenizer_dir, 64)
    # until the worker reports records tokenized: some shards are finished then
    qtbot.waitUntil(lambda: (presenter.last_event or {}).get("records", 0) > 0, timeout=120_000)
    with qtbot.waitSignal(presenter.finished, timeout=60_000) as finished, \
            qtbot.waitSignal(presenter.cachesChanged, timeout=60_000,
                             check_params_cb=lambda entries: len(entries) == 1) as listed:
        presenter.cancel()
    assert finished.args[0] == "stopped" and "the finished part is kept" in finished.args[1]
    (partial,) = listed.args[0]
    assert not partial.complete and 0 < partial.done_fraction < 1

    with qtbot.waitSignal(presenter.finished, timeout=120_000) as finished:
        presenter.prepare(pretrain_file, tiny_tokenizer_dir, 64)
    assert finished.args[0] == "done"
    assert presenter.last_event["resumed_bytes"] > 0  # went on from the kept shards, not from zero


@pytest.mark.slow
def test_a_run_started_after_tokenizing_ahead_finds_the_cache_and_trains_at_once(
        qtbot, store, workspace, pretrain_file, tiny_tokenizer_dir, monkeypatch, capsys):
    from core.cli import main
    from studio.worker.command import build_trainer_command
    from studio.worker.run_manager import RunManager

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # `minimind data prepare` with no --cache-dir fills the workspace's cache folder (MINIMIND_WORKSPACE)
    assert main(["data", "prepare", str(pretrain_file), "--tokenizer", str(tiny_tokenizer_dir),
                 "--seq-len", "32"]) == 0
    assert f"cache: {workspace.cache_dir}" in capsys.readouterr().out

    manager = RunManager(store, workspace.runs_dir, command_builder=build_trainer_command, poll_ms=50)
    try:
        config = {"name": "after prepare", "method": "pretrain", "model": "tiny", "max_steps": 1, "batch_size": 2,
                  "device": "cpu", "precision": "fp32", "log_every": 1, "save_every": 0,
                  "data": {"files": [str(pretrain_file)], "seq_len": 32, "tokenizer": str(tiny_tokenizer_dir)}}
        with qtbot.waitSignal(manager.runFinished, timeout=180_000) as finished:
            run_id = manager.launch(config)
        assert finished.args == [run_id, "completed"]
    finally:
        manager.shutdown()
    run_dir = workspace.runs_dir / run_id
    assert json.loads((run_dir / "config.json").read_text())["data"]["cache_dir"] == str(workspace.cache_dir)
    events = read_events(run_dir)
    assert events[0]["type"] == "run_started"  # no prepare event: nothing was tokenized
    assert not (run_dir / "cache").exists() and len(list(workspace.cache_dir.glob("pretrain-*"))) == 1
