"""Nothing is lost under kill, crash and disk failure: the trainer's checkpoints and the studio's event ingestion.

Most trainer processes are forked from a "zygote" (tests/fixtures/zygote.py) that has already imported torch:
on a loaded 2-core machine `import torch` alone takes 10+ s, which would make 20 kill/resume cycles take
minutes. A forked child cannot be killed during its imports, so the kills meant for start-up hit fresh
`python -m core.train` processes instead; they die within their first seconds and cost little. The
uninterrupted reference run is a fresh process too.
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
from tests.fixtures.zygote import Zygote

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 1, "max_position_embeddings": 64}


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


def _fresh_trainer(config: Path, run_dir: Path | None = None) -> subprocess.Popen:
    """A real `python -m core.train` process that imports everything itself (`--resume run_dir` if given)."""
    argv = [sys.executable, "-m", "core.train", "--config", str(config)]
    argv += ["--resume", str(run_dir)] if run_dir is not None else []
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _reference_run(config: Path) -> float:
    """Run `config` uninterrupted in a fresh process; seconds until it printed its first event (start-up)."""
    t0 = time.monotonic()
    proc = _fresh_trainer(config)
    first = proc.stdout.readline()
    while first and json.loads(first)["type"] == "prepare":  # tokenizing the data comes first
        first = proc.stdout.readline()
    startup = time.monotonic() - t0
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and json.loads(first)["type"] == "run_started", err.decode()[-3000:]
    return startup


def _temp_dirs(run_dir: Path, pid: int) -> list[str]:
    """Checkpoint temp dirs (`.tmp-step-N-<pid>`) of one process: a checkpoint write it began and did not finish."""
    ckpts = run_dir / "checkpoints"
    return [n for n in os.listdir(ckpts) if n.startswith(".tmp-step-") and n.endswith(f"-{pid}")] \
        if ckpts.is_dir() else []


def _wait_for(pid: int, run_dir: Path, how: str, nth: int, timeout: float = 60.0) -> bool:
    """Until the forked child `pid` has logged its `nth` metric ("step") or begun its `nth` checkpoint write
    ("mid-checkpoint": its own temp dir appears); "start" returns at once. Kills are keyed to the child's
    progress, not the clock, so they land alike on a fast or a loaded machine."""
    events_path, seen, deadline = run_dir / "events.jsonl", set(), time.monotonic() + timeout
    while how != "start" and time.monotonic() < deadline:
        if how == "step":
            text = events_path.read_text(errors="replace") if events_path.is_file() else ""
            mine = text.rfind(f'"pid": {pid}')
            if mine >= 0 and text.count('"type": "metric"', mine) >= nth:
                return True
        else:
            seen.update(_temp_dirs(run_dir, pid))
            if len(seen) >= nth:
                return True
        time.sleep(0.0003)
    return how == "start"


def _sigkill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)  # the zygote reaps only after we read its status: the pid is still ours
    except ProcessLookupError:
        pass  # it ended first: its exit status says so


def _kill_forked(zygote: Zygote, config: Path, run_dir: Path, how: str, rng: random.Random) -> dict:
    """One forked child, SIGKILLed 0-4 ms after its mark (0-0.3 s after the fork for "start", set-up included)."""
    nth, delay = rng.randint(1, 3), rng.uniform(0, 0.3) if how == "start" else rng.uniform(0, 0.004)
    pid = zygote.start(config, resume=True)
    reached = _wait_for(pid, run_dir, how, nth)
    mark = time.monotonic()
    while time.monotonic() - mark < delay:
        pass  # a busy wait: sleep() granularity is coarser than the write being hit
    _sigkill(pid)
    return {"how": f"{how} {nth} +{delay * 1000:.1f} ms", "pid": pid, "reached": reached,
            "status": zygote.wait(), "left_behind": _temp_dirs(run_dir, pid)}


def _kill_during_imports(config: Path, run_dir: Path, window: float, rng: random.Random) -> dict:
    """A fresh trainer process, SIGKILLed at a random moment of its first `window` seconds (imports)."""
    delay = rng.uniform(0, window)
    proc = _fresh_trainer(config, run_dir)
    time.sleep(delay)
    proc.kill()
    out, _ = proc.communicate(timeout=30)
    return {"how": f"import +{delay * 1000:.0f} ms", "pid": proc.pid, "reached": True,
            "status": proc.returncode, "emitted": out.decode(errors="replace"), "left_behind": []}


# Twenty kills of one run: forked children at their 1st-3rd checkpoint write (8), at their 1st-3rd metric (4), in
# their set-up (4), and fresh processes inside their start-up imports (4).
KILL_PLAN = ("mid-checkpoint", "import", "step", "mid-checkpoint", "start") * 4


def _kill_twenty_times(setup: dict, config: Path, run_dir: Path, startup: float, seed: int) -> list[dict]:
    rng, kills = random.Random(seed), []
    for how in KILL_PLAN:
        before = current_checkpoint(run_dir)
        kill = _kill_during_imports(config, run_dir, min(startup / 3, 2.0), rng) if how == "import" else \
            _kill_forked(setup["zygote"], config, run_dir, how, rng)
        kill.update(before=before, after=current_checkpoint(run_dir))  # `after` verifies every file it names
        kills.append(kill)
        assert kill["status"] == -signal.SIGKILL and kill["reached"], (seed, kills)
        assert kill["after"] is None or kill["before"] is None or kill["after"] >= kill["before"], (seed, kills)
    return kills


def _assert_where_the_kills_landed(kills: list[dict], started: dict, seed: int) -> None:
    assert len(kills) == 20 and all(k["status"] == -signal.SIGKILL for k in kills), (seed, kills)
    # the kills during imports: the process had printed nothing and logged nothing, not even run_started
    imports = [k for k in kills if k["how"].startswith("import")]
    assert len(imports) == 4 and all(k["emitted"] == "" and k["pid"] not in started for k in imports), imports
    # the kills at a metric or a checkpoint write hit a process that had started training
    assert all(k["pid"] in started for k in kills if k["how"].startswith(("step", "mid-checkpoint"))), (seed, kills)
    # several landed inside a checkpoint write: the killed process's temp dir `.tmp-step-N-<pid>` was left behind
    inside = [k for k in kills if k["how"].startswith("mid-checkpoint") and k["left_behind"]]
    assert len(inside) >= 4, (seed, kills)


@pytest.mark.slow
def test_twenty_sigkills_at_random_moments_then_resume_gives_the_uninterrupted_weights(tiny_setup, tmp_path):
    # room for every kill: a "start" kill lands up to 0.3 s after the fork, and on an idle machine a forked child of
    # this tiny model gets through set-up and trains many steps in that time. With 80 steps, seed 1796551740's 11th
    # kill found the run at step 77 and the child finished it (exit 0, not a kill); 400 leave a wide margin.
    steps, zygote = 400, tiny_setup["zygote"]
    ref_dir = tmp_path / "reference"
    startup = _reference_run(write_config(tiny_setup, ref_dir, max_steps=steps))
    run_dir = tmp_path / "killed"
    config = write_config(tiny_setup, run_dir, max_steps=steps)
    seed = int(os.environ.get("FAULT_SEED", time.time()))  # rerun a failure with FAULT_SEED=<seed>
    kills = _kill_twenty_times(tiny_setup, config, run_dir, startup, seed)
    before = current_checkpoint(run_dir)
    last_pid = zygote.start(config, resume=True)
    assert zygote.wait() == 0, zygote.stderr_tail()

    evs = events(run_dir)
    started = {e["pid"]: e["resumed_from"] for e in evs if e["type"] == "run_started"}
    _assert_where_the_kills_landed(kills, started, seed)
    # the temp dirs the kills left were removed by later saves: none survives the final run
    assert [n for n in os.listdir(run_dir / "checkpoints") if n.startswith((".tmp-", ".old-"))] == []
    # every process that got as far as starting resumed from the checkpoint the previous one left behind
    # (a --resume that finds no checkpoint yet starts over and says so with resumed_from 0)
    for k in kills + [{"pid": last_pid, "before": before}]:
        if k["pid"] in started:
            assert started[k["pid"]] == (k["before"] or 0), (k, started[k["pid"]], seed)
    assert evs[-1]["type"] == "run_finished" and evs[-1]["status"] == "completed", evs[-1]
    got, want = final_weights(run_dir), final_weights(ref_dir)
    assert got.keys() == want.keys()
    for name in want:  # bit for bit, not a tolerance
        assert (got[name] == want[name]).all(), f"{name} differs after kills {kills} (FAULT_SEED={seed})"


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
