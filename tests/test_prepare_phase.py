"""Data preparation as a phase of the run: config first, `prepare` events, stop at once, resume after a kill.

Tokenizing here is made slow on purpose (a sleep per batch of 50 records, in the trainer process only), so that a
build of a 0.5 MB file lasts several seconds: long enough to signal it partway, however loaded the machine is.
No assertion depends on timing; the time limits are hang guards.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.data import cache_build, datasets
from core.data.cache import list_caches
from core.train import run_training
from tests.fixtures.train import REPO, one_thread, read_events, subprocess_env, train_config, wait_for_events

BATCH, SHARD_BYTES = 50, 8192  # 2000 records of ~255 bytes: 40 batches, one shard each

# A command (`entry`'s main: the trainer, the `minimind` CLI) with tokenizing slowed down by `delay` s per batch.
SLOWED = """
import sys, time
import core.data.cache_build as cb, core.data.datasets as ds
cb.BATCH_RECORDS, cb.MIN_SHARD_BYTES = {batch}, {shard}
real = ds.encode_texts
def slow(tok, texts):
    time.sleep({delay})
    return real(tok, texts)
ds.encode_texts = slow
from ENTRY import main
sys.exit(main(sys.argv[1:]))
"""
SLOW_TRAINER = SLOWED.replace("ENTRY", "core.train.cli")
SLOW_CLI = SLOWED.replace("ENTRY", "core.cli")


def _launch_slow(args: list[str], delay: float = 0.2) -> subprocess.Popen:
    code = SLOW_TRAINER.format(batch=BATCH, shard=SHARD_BYTES, delay=delay)
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _sigterm_once_marked(code: str, cfg_path: Path, marker: Path) -> None:
    """Run trainer `code` on `cfg_path`, SIGTERM it once it has touched `marker` (the phase under test has begun),
    and check it ends with exit 0 (a stop, not a crash)."""
    proc = subprocess.Popen([sys.executable, "-c", code, "--config", str(cfg_path)], cwd=REPO, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()[-2000:]


def _prepares(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "prepare"]


def _config(tmp_path: Path, train_data, tokenizer_dir, **overrides) -> tuple:
    run_dir = tmp_path / "run"
    cfg = train_config(run_dir, tokenizer_dir, [train_data["pretrain"]],
                       **{"max_steps": 2, "data.cache_dir": str(tmp_path / "cache"), **overrides})
    path = tmp_path / "cfg.json"
    path.write_text(cfg.model_dump_json(indent=2))
    return cfg, run_dir, path


def _one_go_cache(train_data, tokenizer, cache_dir: Path) -> dict[str, bytes]:
    ds = datasets.PretrainDataset([train_data["pretrain"]], tokenizer, 64, cache_dir)
    return {name: (ds.cache.path / name).read_bytes() for name in ("tokens.bin", "tokens.idx")}


def test_the_config_and_prepare_events_come_before_run_started(train_data, tiny_tokenizer_dir, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setattr(cache_build, "BATCH_RECORDS", BATCH)
    cfg, run_dir, _ = _config(tmp_path, train_data, tiny_tokenizer_dir)
    with one_thread():
        assert run_training(cfg) == 0
    events = read_events(run_dir)
    kinds = [e["type"] for e in events]
    prepares = _prepares(events)
    assert kinds.index("run_started") > kinds.index("prepare")  # every prepare event first
    assert all(k == "prepare" for k in kinds[:kinds.index("run_started")])
    assert prepares[-1]["state"] == "done" and prepares[-1]["bytes_done"] == prepares[-1]["bytes_total"]
    assert prepares[-1]["records"] == 2000 and prepares[-1]["eta_s"] == 0
    assert prepares[-1]["files"] == [{"path": str(train_data["pretrain"]), "bytes_done": prepares[-1]["bytes_total"],
                                      "bytes_total": train_data["pretrain"].stat().st_size, "records": 2000}]
    assert json.loads((run_dir / "config.json").read_text())["run_dir"] == str(run_dir)
    # a second run finds the cache ready: no preparation at all
    with one_thread():
        assert run_training(cfg.model_copy(update={"run_dir": str(tmp_path / "again")})) == 0
    assert _prepares(read_events(tmp_path / "again")) == []


def test_sigterm_while_tokenizing_stops_at_once_keeps_the_finished_shards_and_resumes(
        train_data, tiny_tokenizer_dir, tmp_path):
    _, run_dir, cfg_path = _config(tmp_path, train_data, tiny_tokenizer_dir)
    proc = _launch_slow(["--config", str(cfg_path)])
    wait_for_events(run_dir, lambda ev: any(e["records"] > 0 for e in _prepares(ev)), proc, poll=0.02)
    assert (run_dir / "config.json").is_file()  # written before preparation began
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()[-2000:]
    took = time.monotonic() - sent
    events = read_events(run_dir)
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "stopped"
    assert "preparing data" in events[-1]["message"] and f"--resume {run_dir}" in events[-1]["message"]
    assert _prepares(events)[-1]["state"] == "stopped"
    assert "run_started" not in [e["type"] for e in events]
    (partial,) = list_caches(tmp_path / "cache")
    assert not partial.complete and 0 < partial.done_fraction < 1
    print(f"SIGTERM to exit while tokenizing: {took:.2f} s")

    # --resume goes on from the kept shards and trains
    proc = _launch_slow(["--resume", str(run_dir)], delay=0)
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()[-2000:]
    events = read_events(run_dir)
    resumed = _prepares(events[events.index(next(e for e in events if e["type"] == "run_finished")):])
    assert resumed[0]["resumed_bytes"] > 0 and resumed[-1]["state"] == "done"
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "completed"


def test_a_killed_build_resumes_where_it_was_and_ends_byte_identical(train_data, tiny_tokenizer_dir, tiny_tokenizer,
                                                                       tmp_path, monkeypatch):
    want = _one_go_cache(train_data, tiny_tokenizer, tmp_path / "one-go")
    cfg, run_dir, cfg_path = _config(tmp_path, train_data, tiny_tokenizer_dir)
    proc = _launch_slow(["--config", str(cfg_path)])
    wait_for_events(run_dir, lambda ev: sum(e["records"] > 0 for e in _prepares(ev)) >= 2, proc, poll=0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    (partial,) = list_caches(tmp_path / "cache")
    manifest = json.loads((partial.path / cache_build.MANIFEST).read_text())
    kept = manifest["shards"][-1]["after"]["report"]["records"]
    assert 0 < kept < 2000, kept

    # the same run again, in this process: count what it tokenizes
    tokenized = []
    real = datasets.encode_texts
    monkeypatch.setattr(datasets, "encode_texts", lambda tok, texts: tokenized.extend(texts) or real(tok, texts))
    monkeypatch.setattr(cache_build, "BATCH_RECORDS", BATCH)
    with one_thread():
        assert run_training(cfg, resume=True) == 0
    assert len(tokenized) == 2000 - kept
    (entry,) = list_caches(tmp_path / "cache")
    assert entry.complete and {n: (entry.path / n).read_bytes() for n in want} == want
    leftovers = [p.name for p in (tmp_path / "cache").rglob("*") if p.name.endswith((".tmp", ".partial"))
                 or p.name.startswith("shard-") or p.name == cache_build.MANIFEST]
    assert leftovers == []
    started = next(e for e in reversed(read_events(run_dir)) if e["type"] == "run_started")
    assert started["dataset_tokens"] == len(np.frombuffer(want["tokens.bin"], dtype=np.uint16))


def test_sigterm_in_another_long_setup_phase_stops_the_run(train_data, tiny_tokenizer_dir, tmp_path):
    # Loading a large model (or a reference, a teacher) has no step boundary to wait for: the stop is at once.
    _, run_dir, cfg_path = _config(tmp_path, train_data, tiny_tokenizer_dir)
    marker = tmp_path / "loading"
    code = f"""
import sys, time, pathlib
import core.train.recipe as recipe
def slow_build(*args, **kwargs):
    pathlib.Path({str(marker)!r}).touch()
    time.sleep(600)
recipe.build_model = slow_build
from core.train.cli import main
sys.exit(main(sys.argv[1:]))
"""
    _sigterm_once_marked(code, cfg_path, marker)
    last = read_events(run_dir)[-1]
    assert last["type"] == "run_finished" and last["status"] == "stopped" and "set-up" in last["message"]


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over torchrun on CPU")
def test_two_ranks_tokenize_once_with_no_collective_while_one_builds(train_data, tiny_tokenizer_dir, tmp_path):
    # Each rank logs its own tokenizing calls to a file named after its pid: only one file may appear, and the
    # other rank must get through (waiting on the cache entry's lock, not in a barrier) to train with it.
    _, run_dir, cfg_path = _config(tmp_path, train_data, tiny_tokenizer_dir, batch_size=4)
    calls = tmp_path / "calls"
    calls.mkdir()
    code = SLOW_TRAINER.format(batch=BATCH, shard=SHARD_BYTES, delay=0.05).replace(
        "    time.sleep(", f"    open({str(calls)!r} + '/%d' % __import__('os').getpid(), 'a').write('x')\n"
                          "    time.sleep(")
    script = tmp_path / "trainer.py"
    script.write_text(code)
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(script), "--config", str(cfg_path)], cwd=REPO, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(list(calls.iterdir())) == 1
    events = read_events(run_dir)
    assert _prepares(events)[-1]["state"] == "done" and events[-1]["status"] == "completed"
    assert [e["world_size"] for e in events if e["type"] == "run_started"] == [2]


def test_sigterm_during_an_evaluation_ends_it_and_the_step_is_still_saved(train_data, tiny_tokenizer_dir, tmp_path):
    _, run_dir, cfg_path = _config(tmp_path, train_data, tiny_tokenizer_dir, max_steps=50, eval_every=1,
                                   **{"data.eval_files": [str(train_data["pretrain16"])]})
    marker = tmp_path / "evaluating"
    code = f"""
import sys, time, pathlib
import core.train.recipe as recipe
def slow_evaluate(self, model, batches):
    pathlib.Path({str(marker)!r}).touch()
    time.sleep(600)
recipe.Recipe.evaluate = slow_evaluate
from core.train.cli import main
sys.exit(main(sys.argv[1:]))
"""
    _sigterm_once_marked(code, cfg_path, marker)
    events = read_events(run_dir)
    assert [e["type"] for e in events[-2:]] == ["checkpoint", "run_finished"]
    assert events[-1]["status"] == "stopped" and events[-1]["step"] == 1
    assert "eval" not in [e["type"] for e in events]
