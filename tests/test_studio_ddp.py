"""Stop and Kill reach every rank of a torchrun run: a real 2-rank gloo run on CPU, launched the studio's way
(RunManager with n_gpus=2, so ``python -m torch.distributed.run --standalone --nproc_per_node=2 -m core.train``).
torchrun starts each rank in a session of its own: signalling torchrun's group alone leaves them training.
The three real runs take 60-90 s together on the shared 2-core machine: torch's import in torchrun and in each rank
(about 14 s per launch) is most of it; Stop-and-resume launches twice."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from core.process_identity import looks_like_trainer, pid_alive
from studio.worker.pids import child_processes
from tests.fixtures.train import head_lines

real_ddp_run = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def test_the_ranks_are_read_from_the_newest_run_started_and_malformed_entries_are_skipped(workspace, store):
    store.create_run("r", run_dir=workspace.runs_dir / "r")

    def started(ranks):
        return {"v": 1, "type": "run_started", "time": 1.0, "step": 0, "pid": 10, "ranks": ranks}

    store.add_events("r", [started([{"rank": 0, "pid": 11, "pid_start_ticks": 5}])])
    store.add_events("r", [started([{"rank": 0, "pid": 21, "pid_start_ticks": 7},
                                    {"rank": 1, "pid": 22, "pid_start_ticks": None},
                                    "junk", {"pid": "x"}, {"pid": -3}, {"pid": True}, {"rank": 2}])])
    assert store.rank_processes("r") == [(21, 7), (22, None)]


@pytest.fixture()
def ddp_config(workspace, shared_data, tiny_tokenizer_dir, monkeypatch):
    """A tiny CPU pretrain run, as a launch request for two processes."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by torchrun and its ranks (it sets 1 anyway)
    data = head_lines(shared_data / "pretrain.jsonl", workspace.datasets_dir / "pretrain-200.jsonl", 200)
    return {"name": "ddp", "method": "pretrain", "model": "tiny", "max_steps": 100_000, "batch_size": 4,
            "device": "cpu", "precision": "fp32", "log_every": 1, "save_every": 0, "n_gpus": 2,
            "data": {"files": [str(data)], "seq_len": 32, "tokenizer": str(tiny_tokenizer_dir),
                     "cache_dir": str(workspace.datasets_dir / "cache")}}


@pytest.fixture()
def manager(qtbot, store, workspace):
    """A RunManager with the real trainer command (no stand-in)."""
    from studio.worker.run_manager import RunManager

    manager = RunManager(store, workspace.runs_dir, poll_ms=100)
    yield manager
    for run_id in manager.live_run_ids():  # never leave a rank behind a failed test
        manager.kill(run_id)
    manager.shutdown()


def _finished(qtbot, manager, run_id, timeout=120_000):
    with qtbot.waitSignal(manager.runFinished, timeout=timeout,
                          check_params_cb=lambda rid, _status: rid == run_id) as blocker:
        pass
    return blocker.args[1]


def _wait_metrics(qtbot, manager, run_id):
    qtbot.waitSignal(manager.eventsIngested, timeout=120_000,
                     check_params_cb=lambda rid, evs: rid == run_id and any(e["type"] == "metric" for e in evs)).wait()


def _rank_children(pid: int) -> list[tuple[int, int | None]]:
    return [(p, t) for p, t in child_processes(pid) if looks_like_trainer(p)]


def _wait_gone(processes, seconds=10.0) -> list[int]:
    """The pids still alive (as the same processes) after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        alive = [pid for pid, ticks in processes if pid_alive(pid, ticks)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _processes_using(folder: Path) -> list[int]:
    """Pids whose working directory or an open file lies in ``folder``."""
    folder, found = folder.resolve(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            links = [entry / "cwd", *(entry / "fd").iterdir()]
            targets = [Path(os.readlink(link)) for link in links]
        except OSError:  # ended meanwhile, or not ours
            continue
        if any(t == folder or folder in t.parents for t in targets):
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@real_ddp_run
def test_kill_reaches_every_rank_and_nothing_writes_the_run_folder_afterwards(qtbot, manager, store, ddp_config):
    run_id = manager.launch(ddp_config)
    _wait_metrics(qtbot, manager, run_id)
    run = store.get_run(run_id)
    ranks = store.rank_processes(run_id)
    assert len(ranks) == 2 and all(pid_alive(pid, ticks) for pid, ticks in ranks)
    assert {pid for pid, _ in ranks} == {pid for pid, _ in _rank_children(run.pid)}  # torchrun's children
    manager.kill(run_id)
    assert _finished(qtbot, manager, run_id) == "interrupted"
    assert _wait_gone([*ranks, (run.pid, run.pid_start_ticks)]) == []
    run_dir = Path(run.run_dir)
    assert _processes_using(run_dir) == []
    size = (run_dir / "events.jsonl").stat().st_size
    time.sleep(1.0)  # a surviving rank would log a step every few tens of milliseconds
    assert (run_dir / "events.jsonl").stat().st_size == size


@pytest.mark.slow
@real_ddp_run
def test_kill_before_run_started_reaches_the_ranks_through_torchruns_children(qtbot, manager, store, ddp_config):
    run_id = manager.launch(ddp_config)
    torchrun = store.get_run(run_id).pid
    qtbot.waitUntil(lambda: len(_rank_children(torchrun)) == 2, timeout=60_000)  # still importing torch
    ranks = _rank_children(torchrun)
    assert store.rank_processes(run_id) == []  # run_started has not named them
    manager.kill(run_id)
    assert _finished(qtbot, manager, run_id) in ("failed", "interrupted")
    assert _wait_gone(ranks) == []


@pytest.mark.slow
@real_ddp_run
def test_stop_signals_each_rank_checkpoints_the_stopped_step_and_the_run_resumes(qtbot, manager, store,
                                                                                 ddp_config):
    run_id = manager.launch(dict(ddp_config, max_steps=20))
    _wait_metrics(qtbot, manager, run_id)
    manager.stop(run_id)
    assert _finished(qtbot, manager, run_id) == "stopped", store.get_run(run_id).status_message
    run = store.get_run(run_id)
    finished = store.events(run_id, ["run_finished"], limit=1)[0]
    stopped_at = finished["step"]
    assert 0 < stopped_at < 20 and finished["status"] == "stopped"
    checkpoint = store.checkpoints(run_id)[-1]
    assert checkpoint.step == stopped_at and (Path(checkpoint.path) / "model.safetensors").is_file()
    assert (Path(run.run_dir) / "checkpoints" / "latest").read_text().strip() == Path(checkpoint.path).name
    log = (Path(run.run_dir) / "stderr.log").read_text()
    assert log.count("received SIGTERM") == 2  # each rank was told, not torchrun (which would kill them in 30 s)
    assert "death signal" not in log  # torchrun's words when it is signalled itself
    manager.resume(run_id)
    assert _finished(qtbot, manager, run_id) == "completed", store.get_run(run_id).status_message
    run = store.get_run(run_id)
    assert (run.resumed_from, run.last_step) == (stopped_at, 20)
