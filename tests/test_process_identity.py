"""Without /proc (macOS) a pid cannot be identified: only a process this studio spawned may be signalled.

Linux has /proc, so the unreadable start time and command line are simulated by replacing their readers."""
from __future__ import annotations

import signal
import subprocess

import pytest

import core.process_identity as identity
from core.process_identity import identity_problem, pid_alive, process_start_ticks
from studio.worker.pids import send_signal


@pytest.fixture()
def sleeper():
    """Another program, with the pid and start ticks an imported run folder could name."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture()
def no_proc(monkeypatch):
    monkeypatch.setattr(identity, "process_start_ticks", lambda pid="self": None)
    monkeypatch.setattr(identity, "process_cmdline", lambda pid: None)


def test_with_proc_the_start_ticks_identify_the_process(sleeper):
    ticks = process_start_ticks(sleeper.pid)
    assert ticks is not None and pid_alive(sleeper.pid, ticks)
    assert "pid was reused" in identity_problem(sleeper.pid, ticks + 1)


def test_an_unreadable_start_time_identifies_nothing(sleeper, no_proc):
    ticks = 12345  # what the run folder says
    assert not pid_alive(sleeper.pid, ticks)
    assert "its start time cannot be read on this system" in identity_problem(sleeper.pid, ticks)
    assert "its command line cannot be read" in identity_problem(sleeper.pid, None)
    assert not send_signal(sleeper.pid, signal.SIGTERM, group=True, start_ticks=ticks)
    assert sleeper.poll() is None  # nothing reached it


def test_a_process_this_studio_spawned_is_still_signalled_without_proc(sleeper, no_proc):
    assert pid_alive(sleeper.pid, 12345, trusted=True)
    assert send_signal(sleeper.pid, signal.SIGTERM, start_ticks=12345, trusted=True)
    assert sleeper.wait(timeout=30) == -signal.SIGTERM


def test_stop_and_kill_say_why_they_sent_no_signal(qtbot, workspace, store, sleeper, no_proc):
    from studio.worker.run_manager import RunManager

    run_dir = workspace.runs_dir / "imported"
    run_dir.mkdir(parents=True)
    (run_dir / "events.jsonl").write_text("")
    store.create_run("imported", run_dir=run_dir, status="running")
    store.update_run("imported", pid=sleeper.pid, pid_start_ticks=12345, started_at=1.0)
    manager = RunManager(store, workspace.runs_dir, poll_ms=50)
    try:
        manager.stop("imported")
        assert store.get_run("imported").status_message.startswith(
            f"Stop sent no signal: process {sleeper.pid} cannot be identified as the run's")
        manager.kill("imported")
        assert "Kill sent no signal" in store.get_run("imported").status_message
        with qtbot.waitSignal(manager.runFinished, timeout=10_000) as finished:
            manager.reconcile()
        assert finished.args == ["imported", "interrupted"]
        assert store.get_run("imported").status_message.startswith("Kill sent no signal")  # kept past the end
        assert sleeper.poll() is None
    finally:
        manager.shutdown()
