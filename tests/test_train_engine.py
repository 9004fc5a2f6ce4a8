"""The engine end to end on a tiny model: learning, exact resume after a kill, clean stop, NaN, broken pipe, CLI."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.train import checkpoint as ck
from core.train import run_training
from tests.fixtures.train import (REPO, losses, one_thread, read_events, subprocess_env, train_config,
                                  wait_for_events)


def _launch(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "core.train", *args], cwd=REPO, env=subprocess_env(),
                            stderr=subprocess.PIPE, **kw)


def _config_file(cfg, path: Path) -> Path:
    path.write_text(cfg.model_dump_json(indent=2))
    return path


@pytest.mark.slow
def test_loss_falls_well_below_its_start(train_data, tiny_tokenizer_dir, tmp_path):
    # 16 real documents (~2k tokens) seen ~25 times: small enough to learn within a test's time on a busy CPU
    cfg = train_config(tmp_path / "run", tiny_tokenizer_dir, [train_data["pretrain16"]], max_steps=100,
                       eval_every=50, **{"optim.lr": 5e-3, "data.eval_files": [str(train_data["pretrain16"])],
                                         "data.eval_batches": 2})
    with one_thread():
        assert run_training(cfg) == 0
    loss = losses(tmp_path / "run")
    first, last = loss[1], sum(loss[s] for s in range(91, 101)) / 10
    assert first > 6.5  # ~ln(1024): the untrained model guesses uniformly
    assert last < 0.75 * first, loss
    events = read_events(tmp_path / "run")
    started = next(e for e in events if e["type"] != "prepare")  # tokenizing the data comes first
    assert started["type"] == "run_started" and started["total_steps"] == 100 and started["dataset_tokens"] > 0
    metric = next(e for e in events if e["type"] == "metric")
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "aux_loss"} <= set(metric["metrics"])
    assert metric["total_steps"] == 100 and metric["v"] == 1
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "completed"
    assert ck.verify_checkpoint(tmp_path / "run" / "checkpoints" / "step-000100")["step"] == 100
    evals = {e["step"]: e["metrics"]["eval/loss"] for e in events if e["type"] == "eval"}
    assert sorted(evals) == [50, 100] and evals[100] < evals[50] < first


@pytest.mark.slow
def test_sigkill_then_resume_gives_exactly_the_uninterrupted_losses(train_data, tiny_tokenizer_dir, tmp_path):
    steps = 16
    ref = train_config(tmp_path / "ref", tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=steps)
    with one_thread():
        assert run_training(ref) == 0
    want = losses(tmp_path / "ref")

    run_dir = tmp_path / "killed"
    cfg = ref.model_copy(update={"run_dir": str(run_dir), "save_every": 3})
    proc = _launch(["--config", str(_config_file(cfg, tmp_path / "cfg.json"))], stdout=subprocess.DEVNULL)
    kill_after = random.randint(4, 12)  # a step somewhere between checkpoints
    wait_for_events(run_dir, lambda ev: any(e["type"] == "metric" and e["step"] >= kill_after for e in ev), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = int((run_dir / "checkpoints" / "latest").read_text().strip().split("-")[1])
    assert 3 <= saved <= kill_after + 1

    resumed = _launch(["--resume", str(run_dir)], stdout=subprocess.DEVNULL)
    assert resumed.wait(timeout=180) == 0, resumed.stderr.read().decode()[-2000:]
    events = read_events(run_dir)
    starts = [e for e in events if e["type"] == "run_started"]
    assert starts[-1]["resumed_from"] == saved
    after = [e for e in events[events.index(starts[-1]):] if e["type"] == "metric"]
    got = {e["step"]: e["metrics"]["loss"] for e in after}
    assert sorted(got) == list(range(saved + 1, steps + 1))
    assert got == {s: want[s] for s in got}, f"killed after step {kill_after}, resumed from {saved}"


def test_reader_going_away_then_sigterm_stops_cleanly_with_a_checkpoint(train_data, tiny_tokenizer_dir, tmp_path):
    # The studio dies (stdout pipe closes): training goes on. Then SIGTERM: checkpoint, `stopped`, exit 0.
    run_dir = tmp_path / "run"
    cfg = train_config(run_dir, tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=10000, save_every=0)
    proc = _launch(["--config", str(_config_file(cfg, tmp_path / "cfg.json"))], stdout=subprocess.PIPE)
    kinds = [json.loads(proc.stdout.readline())["type"]]
    while kinds[-1] == "prepare":  # while the token cache is built, if it is not yet
        kinds.append(json.loads(proc.stdout.readline())["type"])
    assert kinds[-1] == "run_started"
    proc.stdout.close()
    wait_for_events(run_dir, lambda ev: any(e["type"] == "metric" and e["step"] >= 3 for e in ev), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()[-2000:]
    events = read_events(run_dir)
    last = events[-1]
    assert last["type"] == "run_finished" and last["status"] == "stopped" and f"--resume {run_dir}" in last["message"]
    assert sorted(losses(run_dir)) == list(range(1, last["step"] + 1))  # every step was still recorded
    ckpt = [e for e in events if e["type"] == "checkpoint"][-1]
    assert ckpt["step"] == last["step"] and ck.verify_checkpoint(run_dir / ckpt["path"])["step"] == last["step"]


def test_resume_skips_a_truncated_checkpoint_with_a_warning(train_data, tiny_tokenizer_dir, tmp_path):
    run_dir = tmp_path / "run"
    cfg = train_config(run_dir, tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=4, save_every=2)
    with one_thread():
        assert run_training(cfg) == 0
        weights = run_dir / "checkpoints" / "step-000004" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
        assert run_training(cfg.model_copy(update={"max_steps": 5}), resume=True) == 0
    events = read_events(run_dir)
    started = [e for e in events if e["type"] == "run_started"][-1]
    assert started["resumed_from"] == 2
    warning = next(e for e in events[events.index(started):] if e["type"] == "warning")
    assert "step-000004" in warning["message"] and "model.safetensors: 1000 bytes" in warning["message"]
    assert events[-1]["status"] == "completed" and events[-1]["step"] == 5


def test_nan_loss_is_an_error_naming_the_step(tiny_pretrain_run, train_data, tiny_tokenizer_dir, tmp_path):
    import torch

    from core.model import io

    model, tok = io.load_model(tiny_pretrain_run)
    with torch.no_grad():
        model.model.norm.weight[0] = float("nan")
    io.save_checkpoint(model, tmp_path / "broken", tokenizer=tok)
    cfg = train_config(tmp_path / "run", tiny_tokenizer_dir, [train_data["sft"]], method="sft",
                       init=str(tmp_path / "broken"), max_steps=5)
    with one_thread():
        assert run_training(cfg) == 3
    events = read_events(tmp_path / "run")
    error = next(e for e in events if e["type"] == "error")
    assert error["step"] == 1 and "loss is nan at step 1" in error["message"]
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "failed"
    assert not ck.list_checkpoints(tmp_path / "run")  # nothing poisoned was saved


def test_cli_flags_and_errors(train_data, tiny_tokenizer_dir, tmp_path, capsys):
    from core.cli import main

    run_dir = tmp_path / "run"
    args = ["train", "pretrain", "--data", str(train_data["pretrain"]), "--tokenizer", str(tiny_tokenizer_dir),
            "--preset", "tiny", "--max-steps", "2", "--run-dir", str(run_dir), "--batch-size", "4",
            "--seq-len", "32", "--set", "device=cpu", "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    with one_thread():
        assert main(args) == 0
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["max_steps"] == 2 and cfg["data"]["seq_len"] == 32 and cfg["model"] == "tiny"
    assert read_events(run_dir)[-1]["status"] == "completed"
    capsys.readouterr()
    assert main(["train", "sft", "--set", "optim.lr=-1"]) == 2
    out = capsys.readouterr()
    assert "optim.lr: Input should be greater than 0" in out.err
    assert json.loads(out.out.splitlines()[-1])["status"] == "failed"
    # an existing run is never overwritten by accident
    with one_thread():
        assert main(args) == 1
    assert "already has checkpoints" in read_events(run_dir)[-2]["message"]


@pytest.mark.slow
def test_two_processes_equal_one_with_the_same_global_batch(train_data, tiny_tokenizer_dir, tmp_path):
    # accumulation 2: the first micro-batch of each step runs under DDP no_sync, the second all-reduces
    one = train_config(tmp_path / "one", tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=6, batch_size=8,
                       **{"optim.accumulation": 2})
    with one_thread():
        assert run_training(one) == 0
    two = one.model_copy(update={"run_dir": str(tmp_path / "two")})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "core.train",
           "--config", str(_config_file(two, tmp_path / "cfg.json"))]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    events = read_events(tmp_path / "two")
    assert events[0]["world_size"] == 2
    assert sum(1 for line in proc.stdout.decode().splitlines() if '"run_started"' in line) == 1  # rank 0 only
    want, got = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(got) == list(range(1, 7))
    assert all(abs(got[s] - want[s]) < 1e-5 for s in got), (want, got)


def test_infinite_gradient_with_a_finite_loss_stops_before_the_update(tiny_pretrain_run, train_data,
                                                                       tiny_tokenizer_dir, tmp_path):
    import torch

    from core.model import io

    model, tok = io.load_model(tiny_pretrain_run)
    with torch.no_grad():  # logits ~1e20: the loss stays finite in fp32, the gradient norm overflows
        model.model.norm.weight[0] = 1e20
    io.save_checkpoint(model, tmp_path / "huge", tokenizer=tok)
    cfg = train_config(tmp_path / "run", tiny_tokenizer_dir, [train_data["sft"]], method="sft",
                       init=str(tmp_path / "huge"), max_steps=5)
    with one_thread():
        assert run_training(cfg) == 3
    events = read_events(tmp_path / "run")
    error = next(e for e in events if e["type"] == "error")
    assert error["step"] == 1 and "gradient norm is inf at step 1" in error["message"], error
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "failed"
    assert not ck.list_checkpoints(tmp_path / "run")


def test_a_failure_before_the_run_folder_exists_is_still_an_event(train_data, tiny_tokenizer_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    cfg = train_config(tmp_path / "file" / "run", tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=1)
    assert run_training(cfg) == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [e["type"] for e in lines] == ["error", "run_finished"], lines
    assert lines[-1]["status"] == "failed" and str(tmp_path / "file") in lines[-1]["message"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_a_full_disk_for_events_jsonl_keeps_the_stdout_stream(tmp_path, capfd):
    from core.train.events import EventLog

    (tmp_path / "events.jsonl").symlink_to("/dev/full")  # every write fails with ENOSPC, as on a full disk
    events = EventLog(tmp_path)
    events.emit("warning", 0, message="first")
    events.emit("metric", 1, epoch=0.1, total_steps=2, metrics={"loss": 1.0})
    events.close()
    out, err = capfd.readouterr()
    assert [json.loads(x)["type"] for x in out.splitlines()] == ["warning", "metric"]
    assert err.count("cannot write") == 1 and "No space left" in err


FAILING_RANK = r"""
import os, sys
from core.train.recipes import pretrain
from core.train.cli import main

def fail_on_rank_1(self, step, metrics):  # an unexpected failure on one rank only (a bug, an OOM on its GPU)
    if os.environ["RANK"] == "1" and step == 2:
        raise RuntimeError("simulated failure on rank 1")

pretrain.PretrainRecipe.on_step_end = fail_on_rank_1
sys.exit(main())
"""


@pytest.mark.slow
def test_a_failure_on_rank_1_is_reported_with_its_traceback_and_ends_the_run(train_data, tiny_tokenizer_dir,
                                                                             tmp_path):
    cfg = train_config(tmp_path / "run", tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=6, batch_size=8)
    script = tmp_path / "failing_rank.py"
    script.write_text(FAILING_RANK, encoding="utf-8")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           "--config", str(_config_file(cfg, tmp_path / "cfg.json"))]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, timeout=300)
    assert proc.returncode != 0
    stderr = proc.stderr.decode(errors="replace")
    assert "rank 1: Traceback" in stderr and "simulated failure on rank 1" in stderr, stderr[-3000:]
    events = read_events(tmp_path / "run")
    errors = [e["message"] for e in events if e["type"] == "error"]
    assert "rank 1: RuntimeError: simulated failure on rank 1" in errors, errors
    assert any(e["type"] == "run_finished" and e["status"] == "failed" for e in events)
