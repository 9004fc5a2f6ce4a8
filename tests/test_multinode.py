"""Multi-node training as a cluster target runs it: one torchrun agent per "node" (two agents on 127.0.0.1),
meeting through torchrun's c10d rendezvous (``--nnodes 2 --rdzv-backend c10d``), gloo on CPU, ``-m core.train``.
Two nodes give the same losses as one process with the same global batch; only rank 0 writes events and
checkpoints into the shared run folder; a node lost mid-run ends the job with an ``error`` event, and resuming
from the last checkpoint on two nodes ends with exactly the uninterrupted run's weights.
Each two-agent launch costs ~15-30 s on the shared 2-core machine (torch imported by 2 agents and 2 ranks)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.train import head_lines, read_events, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="signals and /proc")]
MAX_STEPS = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def config_for(tmp_path, shared_data, tiny_tokenizer_dir):
    data = head_lines(shared_data / "pretrain.jsonl", tmp_path / "pretrain-200.jsonl", 200)

    def make(name: str, **overrides) -> Path:
        run_dir = tmp_path / name
        run_dir.mkdir()
        config = {"method": "pretrain", "model": "tiny", "run_dir": str(run_dir), "max_steps": MAX_STEPS,
                  "batch_size": 4, "device": "cpu", "precision": "fp32", "log_every": 1, "save_every": 10,
                  "data": {"files": [str(data)], "seq_len": 32, "tokenizer": str(tiny_tokenizer_dir),
                           "cache_dir": str(tmp_path / "cache")}, **overrides}
        (run_dir / "config.json").write_text(json.dumps(config))
        return run_dir
    return make


def _agents(run_dir: Path, resume: bool = False) -> list[subprocess.Popen]:
    """Two torchrun agents, as two nodes' `srun torchrun ...` lines would start them."""
    port = _free_port()
    args = ["--resume", str(run_dir)] if resume else ["--config", str(run_dir / "config.json")]
    argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", run_dir.name,
            "-m", "core.train", *args]
    return [subprocess.Popen(argv, env=subprocess_env(), stdout=subprocess.DEVNULL,
                             stderr=open(run_dir / f"agent{i}.log", "ab"), start_new_session=True)
            for i in range(2)]


def _wait(procs: list[subprocess.Popen], timeout: float = 300) -> list[int]:
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)


def _losses(run_dir: Path) -> dict[int, float]:
    return {e["step"]: e["metrics"]["loss"] for e in read_events(run_dir) if e["type"] == "metric"}


def _final_weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    from core.model.io import resolve_checkpoint

    return load_file(str(Path(resolve_checkpoint(run_dir)) / "model.safetensors"))


def test_two_nodes_equal_one_process_and_a_lost_node_ends_the_job_with_an_error_and_resumes_exactly(config_for):
    one, two, lost = config_for("one"), config_for("two"), config_for("lost")
    single = subprocess.Popen([sys.executable, "-m", "core.train", "--config", str(one / "config.json")],
                              env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=open(one / "stderr.log", "ab"))
    assert _wait(_agents(two)) == [0, 0], (two / "agent0.log").read_text()[-2000:]
    assert _wait([single]) == [0]

    # Same global batch on one process and on two nodes: the same losses, step for step.
    ref, multi = _losses(one), _losses(two)
    assert sorted(multi) == sorted(ref) == list(range(1, MAX_STEPS + 1))
    worst = max(abs(multi[s] - ref[s]) for s in ref)
    assert worst <= 1e-5, f"two nodes drift from one process by {worst}"
    started = [e for e in read_events(two) if e["type"] == "run_started"]
    assert len(started) == 1 and started[0]["world_size"] == 2 and len(started[0]["ranks"]) == 2  # rank 0 only
    assert (two / "checkpoints" / "latest").is_file()

    # A node is lost after the first checkpoint: its agent and its rank die at once.
    agents = _agents(lost)
    deadline = time.monotonic() + 300
    while not ((lost / "events.jsonl").exists() and any(e["type"] == "checkpoint" for e in read_events(lost))):
        assert time.monotonic() < deadline and all(a.poll() is None for a in agents), "no checkpoint came"
        time.sleep(0.2)
    rank1 = next(r["pid"] for e in read_events(lost) if e["type"] == "run_started" for r in e["ranks"] if r["rank"] == 1)
    os.killpg(agents[1].pid, signal.SIGKILL)
    os.kill(rank1, signal.SIGKILL)
    codes = _wait(agents, timeout=180)
    assert codes[0] != 0, "the surviving node must end the job"
    events = read_events(lost)
    errors = [e for e in events if e["type"] == "error"]
    assert errors and events[-1]["type"] == "run_finished" and events[-1]["status"] == "failed", events[-3:]
    assert "a rank or node of this 2-process run was lost" in errors[-1]["message"], errors[-1]
    assert "--resume" in errors[-1]["message"]
    lost_at = events[-1]["step"]
    assert 0 < lost_at < MAX_STEPS

    # Resumed on two nodes from the last checkpoint: exactly the uninterrupted run's weights.
    assert _wait(_agents(lost, resume=True)) == [0, 0], (lost / "agent0.log").read_text()[-2000:]
    assert [e for e in read_events(lost) if e["type"] == "run_finished"][-1]["status"] == "completed"
    a, b = _final_weights(two), _final_weights(lost)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), "resume after a lost node is not exact"
    print(f"max |loss(2 nodes) - loss(1 process)| = {worst:.2e}; node lost at step {lost_at}: {errors[-1]['message']}")
