"""Nothing is lost under kill, crash and disk failure: the trainer's checkpoints and the studio's event ingestion.

Trainer processes are forked from a "zygote" that has already imported torch: on a loaded 2-core machine
`import torch` alone takes 10+ s, which would make 20 kill/resume cycles take minutes. Each forked child is
still a real, separate process running the real engine, killed with a real SIGKILL; the zygote only forks
and reaps (`waitpid`) so the test sees each child's exit status.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.train import checkpoint as ck

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 1, "max_position_embeddings": 64}

# The zygote: reads one JSON command per line ({"config": path, "resume": bool, "fsize": bytes|null}), forks a
# trainer child, prints {"pid"}, waits for it and prints {"status"} (exit code, or -signal).
ZYGOTE = r"""
import json, os, resource, signal, sys
sys.path.insert(0, sys.argv[1])
import torch
from core.config.train import load_train_config
from core.train import run_training
import core.train.engine, core.train.recipes.pretrain, core.data, core.model.io, core.tokenizer  # noqa: preload
import safetensors.torch, torch.utils.data  # noqa: preload
torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])  # its first use imports torch._dynamo (~5 s here)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)                  # the event stream also goes to events.jsonl
            err = os.open(cmd["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(err, 2)
            torch.set_num_threads(1)             # one thread: bit-reproducible CPU results
            if cmd.get("fsize"):                 # a real write failure: EFBIG past this many bytes per file
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (cmd["fsize"], cmd["fsize"]))
            code = run_training(load_train_config(cmd["config"]), resume=cmd["resume"])
        except BaseException:
            import traceback; traceback.print_exc(); code = 99
        os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    print(json.dumps({"status": code}), flush=True)
"""


class Zygote:
    def __init__(self, work: Path):
        self.work = work
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(REPO)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        assert self._read() == {"ready": True}

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, f"the zygote died (rc {self.proc.poll()})"
        return json.loads(line)

    def start(self, config: Path, resume: bool, fsize: int | None = None) -> int:
        cmd = {"config": str(config), "resume": resume, "fsize": fsize, "stderr": str(self.work / "stderr.log")}
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()["pid"]

    def wait(self) -> int:
        return self._read()["status"]

    def run(self, config: Path, resume: bool, fsize: int | None = None) -> int:
        self.start(config, resume, fsize)
        return self.wait()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def tiny_setup(shared_data, tmp_path_factory):
    from core.tokenizer import train_tokenizer

    work = tmp_path_factory.mktemp("fault")
    data = work / "pretrain.jsonl"
    with open(shared_data / "pretrain.jsonl", encoding="utf-8") as f:
        data.write_text("".join(next(f) for _ in range(64)), encoding="utf-8")
    train_tokenizer([data], vocab_size=300, out_dir=work / "tokenizer")
    zygote = Zygote(work)
    yield {"work": work, "data": data, "zygote": zygote}
    zygote.close()


def write_config(setup: dict, run_dir: Path, **overrides) -> Path:
    cfg = {"method": "pretrain", "model": TINY_MODEL, "run_dir": str(run_dir), "max_steps": 40, "batch_size": 4,
           "device": "cpu", "precision": "fp32", "log_every": 1, "save_every": 1, "keep_last": 2,
           "data": {"files": [str(setup["data"])], "seq_len": 32, "tokenizer": str(setup["work"] / "tokenizer"),
                    "cache_dir": str(setup["work"] / "cache")},
           "optim": {"lr": 3e-3, "warmup_steps": 2}}
    cfg.update(overrides)
    path = run_dir.parent / f"{run_dir.name}.json"
    path.write_text(json.dumps(cfg))
    return path


def events(run_dir: Path) -> list[dict]:
    """Parsed events; a line cut by a kill is skipped (the studio's tailer does the same)."""
    out = []
    for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def final_weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run_dir / "checkpoints" / latest / "model.safetensors"))


def current_checkpoint(run_dir: Path) -> int | None:
    """The step `latest` names, after checking that checkpoint verifies completely (sizes and hashes)."""
    latest = run_dir / "checkpoints" / "latest"
    if not latest.is_file():
        return None
    return ck.verify_checkpoint(run_dir / "checkpoints" / latest.read_text().strip())["step"]


def _kill_when(pid: int, run_dir: Path, how: str, delay: float, nth: int = 1, timeout: float = 60.0) -> str:
    """SIGKILL `pid`: `delay` s after it was forked ("start", setup included), or `delay` s after it logged its
    `nth` metric ("step") or began writing its `nth` checkpoint ("mid-checkpoint": its own temp dir appears).
    Kills are keyed to the child's progress, not the clock, so they land alike on a fast or a loaded machine."""
    ckpts, events_path = run_dir / "checkpoints", run_dir / "events.jsonl"
    start, seen, mark = time.monotonic(), set(), None
    while time.monotonic() - start < timeout:
        if mark is None:
            if how == "start":
                mark = start
            elif how == "step":
                text = events_path.read_text(errors="replace") if events_path.is_file() else ""
                mine = text.rfind(f'"pid": {pid}')
                if mine >= 0 and text.count('"type": "metric"', mine) >= nth:
                    mark = time.monotonic()
            elif ckpts.is_dir():
                seen.update(n for n in os.listdir(ckpts) if n.startswith(".tmp-step-") and n.endswith(f"-{pid}"))
                if len(seen) >= nth:
                    mark = time.monotonic()
        if mark is not None and time.monotonic() - mark >= delay:
            return _kill(pid, f"{how} {nth if how != 'start' else ''} +{delay * 1000:.1f} ms")
        time.sleep(0.0003)
    return _kill(pid, "timeout")


def _kill(pid: int, how: str) -> str:
    try:
        os.kill(pid, signal.SIGKILL)  # the zygote reaps only after we read its status: the pid is still ours
    except ProcessLookupError:
        return "ended first"
    return how


@pytest.mark.slow
def test_twenty_sigkills_at_random_moments_then_resume_gives_the_uninterrupted_weights(tiny_setup, tmp_path):
    zygote, steps = tiny_setup["zygote"], 80
    ref_dir = tmp_path / "reference"
    assert zygote.run(write_config(tiny_setup, ref_dir, max_steps=steps), resume=False) == 0
    want = final_weights(ref_dir)

    run_dir = tmp_path / "killed"
    config = write_config(tiny_setup, run_dir, max_steps=steps)
    seed = int(os.environ.get("FAULT_SEED", time.time()))  # rerun a failure with FAULT_SEED=<seed>
    rng = random.Random(seed)
    history = []
    for cycle in range(20):
        before = current_checkpoint(run_dir)
        how = ("mid-checkpoint", "step", "start")[cycle % 3]  # at most ~17 steps of progress per three cycles
        delay = rng.uniform(0, 0.3) if how == "start" else rng.uniform(0, 0.004)
        t0 = time.monotonic()
        pid = zygote.start(config, resume=True)
        how = _kill_when(pid, run_dir, how, delay, nth=rng.randint(1, 3))
        status = zygote.wait()
        after = current_checkpoint(run_dir)  # verifies every file of the checkpoint `latest` names
        history.append((cycle, pid, how, status, before, after, round(time.monotonic() - t0, 2)))
        if status == 0:
            break  # finished before the kill landed: nothing left to interrupt
        assert status == -signal.SIGKILL, (seed, history)
        assert after is None or before is None or after >= before, (seed, history)
    before = current_checkpoint(run_dir)
    last_pid = zygote.start(config, resume=True)
    assert zygote.wait() == 0, (tiny_setup["work"] / "stderr.log").read_text()[-3000:]
    history.append((len(history), last_pid, "not killed", 0, before, current_checkpoint(run_dir), None))

    evs = events(run_dir)
    started = {e["pid"]: e["resumed_from"] for e in evs if e["type"] == "run_started"}
    # every process that got as far as starting resumed from the checkpoint the previous one left behind
    for _, pid, _, _, before, *_ in history:
        if pid in started:
            # a --resume that finds no checkpoint yet starts over and says so with resumed_from 0
            assert started[pid] == (0 if before is None else before), (pid, started[pid], (seed, history))
    assert len(started) >= len(history) // 2, (seed, history)
    assert evs[-1]["type"] == "run_finished" and evs[-1]["status"] == "completed", evs[-1]
    assert sum(h[2].startswith("mid-checkpoint") for h in history) >= 5, (seed, history)
    assert "timeout" not in {h[2] for h in history}, (seed, history)
    got = final_weights(run_dir)
    assert got.keys() == want.keys()
    for name in want:
        assert (got[name] == want[name]).all(), f"{name} differs after kills {history} (FAULT_SEED={seed})"
    leftovers = [n for n in os.listdir(run_dir / "checkpoints") if n.startswith((".tmp-", ".old-"))]
    assert leftovers == [], leftovers


def test_a_checkpoint_write_that_fails_keeps_the_previous_one_and_says_why(tiny_setup, tmp_path):
    zygote = tiny_setup["zygote"]
    run_dir = tmp_path / "run"
    assert zygote.run(write_config(tiny_setup, run_dir, max_steps=3), resume=False) == 0
    assert current_checkpoint(run_dir) == 3
    # Continue to step 8 with files capped below the model's size: the step-4 save hits a real EFBIG from the
    # kernel, as on a full disk. events.jsonl stays below the cap.
    config = write_config(tiny_setup, run_dir, max_steps=8)
    weights = (run_dir / "checkpoints" / "step-000003" / "model.safetensors").stat().st_size
    assert zygote.run(config, resume=True, fsize=weights // 2) == 1
    evs = events(run_dir)
    error = [e for e in evs if e["type"] == "error"][-1]
    assert error["step"] == 4 and "step-000004" in error["message"] and "File too large" in error["message"], error
    assert "step-000003" in error["message"]  # says what is still safe to resume from
    assert evs[-1]["type"] == "run_finished" and evs[-1]["status"] == "failed"
    assert current_checkpoint(run_dir) == 3  # `latest` unchanged, and every file of step 3 verifies
    assert "step-000004" not in [p.name for p in ck.list_checkpoints(run_dir)]
    assert not [n for n in os.listdir(run_dir / "checkpoints") if n.startswith(".tmp-")]  # no half-written dir
    # once there is room again, the run resumes from the intact checkpoint and completes
    assert zygote.run(config, resume=True) == 0
    assert events(run_dir)[-1]["status"] == "completed" and current_checkpoint(run_dir) == 8


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_garbage_and_a_cut_last_line_in_events_jsonl_lose_nothing_else(tmp_path):
    from studio.store import import_run_dir, open_store

    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    t = time.time()
    good = [{"v": 1, "type": "run_started", "time": t, "step": 0, "run_id": "r1", "method": "pretrain",
             "config": {"method": "pretrain"}, "world_size": 1, "device": "cpu", "params": 1, "dataset_tokens": 1,
             "total_steps": 30, "resumed_from": None, "pid": _dead_pid()}]
    good += [{"v": 1, "type": "metric", "time": t + s, "step": s, "epoch": 0, "metrics": {"loss": 1.0 / s}}
             for s in range(1, 31)]
    lines = [json.dumps(e) for e in good]
    lines.insert(5, "\x00\x00garbage{{")                 # binary junk
    lines.insert(12, '{"type": 5}')                       # JSON, but not an event
    lines.insert(20, "[1, 2, 3]")
    lines.insert(25, "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"))  # invalid UTF-8 once encoded
    body = "\n".join(lines) + "\n" + '{"v": 1, "type": "metric", "time": 1, "step": 31, "metr'  # cut mid-write
    (run_dir / "events.jsonl").write_text(body, encoding="utf-8")
    store = open_store(tmp_path / "studio.db", tmp_path / "runs")
    try:
        assert store.recovery_message is None
        assert import_run_dir(store, run_dir) == "r1"
        steps, values = store.metric_series("r1", "loss")
        assert list(steps) == list(range(1, 31)) and values[-1] == pytest.approx(1 / 30)
        run = store.get_run("r1")
        assert run.status == "interrupted" and "resume" in run.status_message  # clear: it died without finishing
        assert "[events.jsonl: not an event] [1, 2, 3]" in run.status_message  # and which lines were skipped
    finally:
        store.close()


def test_a_studio_db_cut_in_half_is_rebuilt_from_the_run_folders(tmp_path):
    from studio.store import open_store

    runs = tmp_path / "runs"
    t = time.time()
    for name, n in (("a", 40), ("b", 25)):
        (runs / name).mkdir(parents=True)
        evs = [{"v": 1, "type": "run_started", "time": t, "step": 0, "run_id": name, "method": "pretrain",
                "config": {}, "world_size": 1, "device": "cpu", "params": 1, "dataset_tokens": 1, "total_steps": n,
                "resumed_from": None, "pid": 1}]
        evs += [{"v": 1, "type": "metric", "time": t + s, "step": s, "epoch": 0, "metrics": {"loss": 1.0}}
                for s in range(1, n + 1)]
        evs.append({"v": 1, "type": "run_finished", "time": t + n, "step": n, "status": "completed", "message": ""})
        (runs / name / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evs))
    db = tmp_path / "studio.db"
    store = open_store(db, runs)
    store.close()
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    data = db.read_bytes()
    assert len(data) > 8192
    db.write_bytes(data[: len(data) // 2])  # a crash or a full disk mid-copy

    store = open_store(db, runs)
    try:
        assert store.recovery_message and "2 run(s) re-imported" in store.recovery_message
        assert {r.id: r.status for r in store.list_runs()} == {"a": "completed", "b": "completed"}
        assert len(store.metric_series("a", "loss")[0]) == 40 and len(store.metric_series("b", "loss")[0]) == 25
    finally:
        store.close()
