"""Sweeps (core/sweep, `minimind sweep`): the spec's errors, a 4-trial sweep end to end through the CLI in a real
process (killed while its third trial trains, and resumed), a sweep killed at each awkward point resumed (with a
stand-in trainer), and pruning through the run's normal stop."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.process_identity import stat_fields
from core.sweep.spec import SweepSpecError, load_sweep_spec
from tests.fixtures.train import REPO, head_lines, read_events, subprocess_env

optuna = pytest.importorskip("optuna")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")


def _base(tmp_path: Path, tokenizer_dir: Path, train_data: dict, **over) -> dict:
    evals = head_lines(train_data["pretrain"], tmp_path / "eval.jsonl", 40, skip=1900)
    base = {"method": "pretrain", "model": "tiny", "max_steps": 4, "batch_size": 4, "device": "cpu",
            "precision": "fp32", "log_every": 1, "save_every": 0, "eval_every": 2,
            "data": {"files": [str(train_data["pretrain16"])], "eval_files": [str(evals)], "eval_batches": 1,
                     "seq_len": 32, "tokenizer": str(tokenizer_dir), "cache_dir": str(tmp_path / "cache")}}
    base.update(over)
    return base


def _write_spec(path: Path, base: dict, **fields) -> Path:
    spec = {"name": "t", "base": base, "parameters": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2,
                                                                   "log": True}},
            "sampler": "random", "n_trials": 4, "pruner": {"kind": "none"}}
    spec.update(fields)
    path.write_text(json.dumps(spec, indent=1))
    return path


def _sweep_cmd(spec: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "core", "sweep", str(spec), "--out", str(out)]


def _wait_for(pred, proc, what: str, timeout: float = 300.0) -> None:
    """Poll until `pred()` holds while `proc` runs (a hang guard, not a timing assumption)."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert proc.poll() is None, f"the sweep exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _trial_states(db: Path) -> list[str] | None:
    """The study's trial states in trial order, or None while study.db cannot be read (not made yet, or locked by
    a write the frozen sweep process was in the middle of)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1)) as con:
            return [state for (state,) in con.execute("SELECT state FROM trials ORDER BY number")]
    except sqlite3.OperationalError:
        return None


def _children(pid: int) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and (stat_fields(p.name) or [None, None])[1] == str(pid)]


def _freeze_while_trial_runs(sweep: subprocess.Popen, db: Path, number: int, timeout: float = 300.0) -> int:
    """Freeze the sweep process and its trainer (SIGSTOP to its process group) while its study records trials
    0..number-1 COMPLETE and `number` RUNNING, with that trial's trainer started; returns the trainer's pid. Frozen,
    the sweep records nothing more, so a kill from here on leaves exactly that state. It is looked for while the
    sweep runs, every 0.05 s, then confirmed frozen: trial `number` stays RUNNING for its trainer's whole life."""
    ready = ["COMPLETE"] * number + ["RUNNING"]
    deadline = time.monotonic() + timeout
    while True:
        states = _trial_states(db)
        on_the_way = states is None or (len(states) <= number + 1 and set(states[:-1]) <= {"COMPLETE"}
                                        and states[-1:] in ([], ["RUNNING"], ["COMPLETE"])
                                        and states[number:] in ([], ["RUNNING"]))
        assert on_the_way, f"trial states {states}: a trial failed, or the sweep went past trial {number}"
        if states == ready and _children(sweep.pid):
            os.killpg(sweep.pid, signal.SIGSTOP)
            while (stat_fields(sweep.pid) or ["Z"])[0] not in ("T", "t", "Z"):  # until the stop has taken effect
                time.sleep(0.001)
            trainers = _children(sweep.pid)  # trial `number`'s trainer is the sweep's only child
            if _trial_states(db) == ready and len(trainers) == 1:
                return trainers[0]
            os.killpg(sweep.pid, signal.SIGCONT)  # it moved on in between (or the file was locked): look again
        assert sweep.poll() is None, f"the sweep exited ({sweep.returncode}) before trial {number} ran"
        assert time.monotonic() < deadline, f"timed out waiting for trial {number} to run"
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------------ the spec
def _spec_error(tmp_path: Path, text: str) -> tuple[Path, str]:
    """(the spec file, the error its loading raised)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    with pytest.raises(SweepSpecError) as err:
        load_sweep_spec(spec)
    return spec, str(err.value)


def test_a_spec_naming_an_unknown_field_fails_with_the_file_line_and_field(tmp_path):
    spec, error = _spec_error(tmp_path, "base: {method: pretrain, model: tiny}\nn_trials: 2\nparameters:\n"
                                        "  optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2}\n"
                                        "  optim.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2}\n")
    assert f"{spec}:5: parameters.optim.learning_rate: not a field of the training config" in error


def test_a_bad_range_names_its_line_and_field(tmp_path):
    spec, error = _spec_error(tmp_path, "base: {method: pretrain}\nn_trials: 2\nparameters:\n"
                                        "  optim.lr:\n    type: float\n    low: 0.1\n    high: 0.01\n")
    assert f"{spec}:4: parameters.optim.lr.float: Value error, low (0.1) is above high (0.01)" in error


def test_a_value_that_makes_an_invalid_config_is_refused_before_any_trial(tmp_path):
    _, error = _spec_error(tmp_path, "base: {method: pretrain}\nn_trials: 2\nparameters:\n"
                                     "  batch_size: {type: int, low: 0, high: 8}\n")
    assert "parameters.batch_size: the value 0 makes an invalid config: batch_size" in error


def test_an_eval_objective_needs_eval_data(tmp_path):
    spec, error = _spec_error(tmp_path, "base: {method: pretrain}\nn_trials: 2\nobjective: {metric: eval/loss}\n"
                                        "parameters:\n  seed: {type: categorical, choices: [1, 2]}\n")
    assert f"{spec}:3: objective.metric: eval/loss is measured by evaluations" in error


def test_a_yaml_syntax_error_names_its_line(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("base: {method: pretrain}\nparameters: [unclosed\n")
    with pytest.raises(SweepSpecError, match=rf"{spec}:3:1: not valid YAML/JSON"):
        load_sweep_spec(spec)


def test_a_grid_is_the_product_of_its_values_and_needs_steps_for_floats(tmp_path):
    spec = tmp_path / "spec.yaml"
    base = "base: {method: pretrain}\nsampler: grid\nobjective: {metric: loss}\nparameters:\n"
    spec.write_text(base + "  seed: {type: categorical, choices: [1, 2, 3]}\n"
                           "  optim.warmup_steps: {type: int, low: 0, high: 10, step: 5}\n")
    assert load_sweep_spec(spec)[0].total_trials() == 9
    spec.write_text(base + "  optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2}\n")
    with pytest.raises(SweepSpecError, match="a grid needs choices, an int range or a float range with a step"):
        load_sweep_spec(spec)


# ------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
@linux_only
def test_a_four_trial_sweep_runs_four_ordinary_runs_and_a_killed_sweep_resumes_with_the_rest(
        tmp_path, tiny_tokenizer_dir, train_data):
    spec = _write_spec(tmp_path / "spec.json", _base(tmp_path, tiny_tokenizer_dir, train_data))
    out = tmp_path / "sweep"
    runs = out / "runs"
    with open(tmp_path / "first.log", "wb") as log:  # its own process group: frozen with its trainers at once
        first = subprocess.Popen(_sweep_cmd(spec, out), cwd=REPO, env=subprocess_env(), stdout=log, stderr=log,
                                 start_new_session=True)
        try:  # killed while trial 2 trains: two trials are done, one is in the middle
            trainer = _freeze_while_trial_runs(first, out / "study.db", 2)
            os.kill(trainer, signal.SIGCONT)  # the sweep stays frozen: trial 2 cannot end in the study
            _wait_for(lambda: any(e["type"] == "run_started" for p in runs.glob("*-t002/events.jsonl")
                                  for e in read_events(p.parent)), first, "trial 2's run_started")
            first.kill()  # its trainer gets SIGTERM (PR_SET_PDEATHSIG) and stops as on a Stop
        except BaseException:
            with contextlib.suppress(ProcessLookupError):  # a failure above leaves nothing frozen or running
                os.killpg(first.pid, signal.SIGKILL)
            raise
        finally:
            first.wait()
    done_before = {p.parent.name: p.read_bytes() for p in runs.glob("*-t00[01]/events.jsonl")}
    assert len(done_before) == 2

    second = subprocess.run(_sweep_cmd(spec, out), cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr
    assert "trials finished by this process: 2, 3\n" in second.stdout  # exactly the two left, the killed one resumed
    assert {p.parent.name: p.read_bytes() for p in runs.glob("*-t00[01]/events.jsonl")} == done_before

    sweep = json.loads((out / "sweep.json").read_text())
    study = optuna.load_study(study_name=sweep["id"], storage=f"sqlite:///{out / 'study.db'}")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    run_dirs = sorted(p for p in runs.iterdir() if p.is_dir())
    assert [p.name for p in run_dirs] == [f"{sweep['id']}-t{i:03d}" for i in range(4)]
    for trial, run_dir in zip(trials, run_dirs):
        config = json.loads((run_dir / "config.json").read_text())
        assert config["sweep"] == {"id": sweep["id"], "dir": str(out.resolve()), "trial": trial.number,
                                   "params": trial.params}
        assert config["optim"]["lr"] == trial.params["optim.lr"]
        events = read_events(run_dir)
        assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "completed"
        evals = [e for e in events if e["type"] == "eval"]
        assert trial.value == evals[-1]["metrics"]["eval/loss"]  # the objective is the run's last eval loss
        assert trial.user_attrs["run_dir"] == str(run_dir)


# core.train's stand-in for the resume tests: it notes how it was started, evaluates at steps 2 and 4 (eval/loss
# 2.0, then 1.0) after the last step its run folder's events reached (a resumed run goes on from a checkpoint there,
# as core.train's does) and completes
_FAKE_TRAINER = r"""
import json, sys
from pathlib import Path
from core.event_schema import make_event

how, arg = sys.argv[1:3]
run_dir = Path(arg) if how == "--resume" else Path(json.loads(Path(arg).read_text())["run_dir"])
events = run_dir / "events.jsonl"
earlier = events.read_text().splitlines() if how == "--resume" and events.is_file() else []
done = max((json.loads(line)["step"] for line in earlier), default=0)
with open(run_dir / "started.txt", "a") as fh:
    fh.write(how + "\n")
new = [make_event("eval", s, metrics={"eval/loss": 3.0 - s / 2}) for s in (2, 4) if s > done]
with open(events, "a") as fh:
    for e in new + [make_event("run_finished", 4, status="completed", message="4 steps")]:
        fh.write(json.dumps(e) + "\n")
"""


def _killed_sweep(tmp_path: Path, state: str):
    """A one-trial sweep folder as a sweep process killed at `state` leaves it (trial 0 RUNNING in study.db, its
    run folder as far as it got), and the runner that resumes it with the stand-in trainer."""
    from core.event_schema import make_event
    from core.process_identity import process_start_ticks
    from core.sweep.runner import TRAINER_ATTR, SweepRunner
    from core.sweep.study import RUN_DIR_ATTR, storage

    base = {"method": "pretrain", "model": "tiny", "max_steps": 4, "eval_every": 2, "device": "cpu",
            "data": {"files": [str(tmp_path / "train.jsonl")], "eval_files": [str(tmp_path / "eval.jsonl")]}}
    spec, base = load_sweep_spec(_write_spec(tmp_path / "spec.json", base, n_trials=1))
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text(json.dumps({"id": "s", "spec_identity": spec.identity()}))
    (tmp_path / "trainer.py").write_text(_FAKE_TRAINER)
    runner = SweepRunner(spec, base, sweep_dir, trainer=[sys.executable, str(tmp_path / "trainer.py")],
                         log=io.StringIO())
    study = optuna.create_study(study_name="s", storage=storage(sweep_dir))
    if state == "inside ask":  # the trial row is written, its values are not yet
        study._storage.create_new_trial(study._study_id)
        return runner, None
    trial = study.ask(runner._distributions())
    if state == "after ask":
        return runner, None
    run_dir = sweep_dir / "runs" / "s-t000"
    run_dir.mkdir(parents=True)
    study._storage.set_trial_user_attr(trial._trial_id, RUN_DIR_ATTR, str(run_dir))
    (run_dir / "config.json").write_text("{}")  # read by core.train alone
    orphan = None
    if state == "trainer in set-up":  # started, SIGTERM on its way, no run_started yet
        orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        study._storage.set_trial_user_attr(trial._trial_id, TRAINER_ATTR,
                                           [orphan.pid, process_start_ticks(orphan.pid)])
        return runner, orphan
    status = "stopped" if state == "run stopped at its last step" else "completed"
    events = [make_event("eval", 2, metrics={"eval/loss": 2.0}), make_event("eval", 4, metrics={"eval/loss": 1.0}),
              make_event("run_finished", 4, status=status, message="")]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return runner, orphan


@pytest.mark.parametrize("state, started", [
    ("inside ask", ["--config"]), ("after ask", ["--config"]),
    pytest.param("trainer in set-up", ["--resume"], marks=linux_only),
    ("run stopped at its last step", ["--resume"]), ("run finished, not told", [])])
def test_a_sweep_killed_at_any_point_resumes_and_completes_the_trial(tmp_path, state, started):
    runner, orphan = _killed_sweep(tmp_path, state)
    try:
        result = runner.run()
    finally:
        if orphan is not None:
            orphan.kill()
            orphan.wait()
    log = runner.out.getvalue()
    assert result.finished == [0], log
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'sweep' / 'study.db'}")
    (trial,) = study.get_trials()
    assert trial.state.name == "COMPLETE", log
    # the objective counts the evaluations of the attempt before the kill, which the killed sweep never reported
    assert (trial.value, trial.intermediate_values) == (1.0, {2: 2.0, 4: 1.0})
    run_dir = Path(trial.user_attrs["run_dir"])
    starts = run_dir / "started.txt"  # the trainers this process started, in order
    assert (starts.read_text().split() if starts.exists() else []) == started
    if started == ["--config"]:  # a fresh run with every value drawn, its config naming them
        assert set(trial.params) == {"optim.lr"}
        assert json.loads((run_dir / "config.json").read_text())["sweep"]["params"] == trial.params
    if orphan is not None:  # the interrupted sweep's trainer ended before the trial went on
        assert f"its trainer (pid {orphan.pid}) from the interrupted sweep still runs; stopping it" in log
        assert orphan.returncode == -signal.SIGTERM


def test_a_pruned_trial_is_stopped_through_the_runs_normal_stop(tmp_path, tiny_tokenizer_dir, train_data, monkeypatch):
    from core.sweep.runner import run_sweep

    base = _base(tmp_path, tiny_tokenizer_dir, train_data, max_steps=400, eval_every=1)
    spec = _write_spec(tmp_path / "spec.json", base, n_trials=1, pruner={"kind": "threshold", "upper": 0.0})
    for key, value in subprocess_env().items():  # the trainer's environment (one thread, the repo importable)
        monkeypatch.setenv(key, value)
    log = tmp_path / "sweep.log"
    with open(log, "w") as fh:  # the sweep process is this one (its own start-up is not the behaviour tested)
        result = run_sweep(spec, tmp_path / "sweep", log=fh)
    assert result.finished == [0], log.read_text()
    study = optuna.load_study(study_name=result.sweep_id, storage=f"sqlite:///{tmp_path / 'sweep' / 'study.db'}")
    (trial,) = study.get_trials()
    assert trial.state.name == "PRUNED"
    assert list(trial.intermediate_values) == [1]  # pruned at its first evaluation
    events = read_events(Path(trial.user_attrs["run_dir"]))
    finished = events[-1]
    assert finished["type"] == "run_finished" and finished["status"] == "stopped"  # SIGTERM: the normal stop
    assert finished["step"] < 400
    assert any(e["type"] == "checkpoint" for e in events)  # the stop saved a checkpoint, as a Stop does
