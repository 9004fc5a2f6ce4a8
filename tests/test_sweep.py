"""Sweeps (core/sweep, `minimind sweep`): the spec's errors, a 4-trial sweep end to end through the CLI in a real
process (killed after two trials and resumed), and pruning through the run's normal stop."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.sweep.spec import SweepSpecError, load_sweep_spec
from tests.fixtures.train import REPO, head_lines, read_events, subprocess_env

optuna = pytest.importorskip("optuna")


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
def test_a_four_trial_sweep_runs_four_ordinary_runs_and_a_killed_sweep_resumes_with_the_rest(
        tmp_path, tiny_tokenizer_dir, train_data):
    spec = _write_spec(tmp_path / "spec.json", _base(tmp_path, tiny_tokenizer_dir, train_data))
    out = tmp_path / "sweep"
    runs = out / "runs"
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(_sweep_cmd(spec, out), cwd=REPO, env=subprocess_env(), stdout=log, stderr=log)
        try:  # kill it once the third trial's trainer runs: two trials are done, one is in the middle
            _wait_for(lambda: any(e["type"] == "run_started" for p in runs.glob("*-t002/events.jsonl")
                                  for e in read_events(p.parent)), first, "trial 2's run_started")
        finally:
            first.kill()
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
