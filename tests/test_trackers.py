"""Trackers (core/train/trackers.py): a real tiny run logs to TensorBoard and an MLflow file store, read back with
each tool's own reader; a failing or missing tracker is one warning and the run completes."""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from core.config.errors import TrainConfigError
from core.train import run_training
from tests.fixtures.train import one_thread, read_events, train_config


def _last_loss_per_step(run_dir: Path) -> dict[int, float]:
    """events.jsonl's loss at each step; a resumed run logs the steps after its checkpoint again (the later wins)."""
    return {e["step"]: e["metrics"]["loss"] for e in read_events(run_dir) if e["type"] == "metric"}


@pytest.fixture(scope="module")
def tracked_run(train_data, tiny_tokenizer_dir, tmp_path_factory) -> Path:
    """A 4-step pretrain run logging to TensorBoard and MLflow, resumed from its step-2 checkpoint as after a
    crash that lost step 4's: steps 3 and 4 are logged twice."""
    run_dir = tmp_path_factory.mktemp("tracked") / "run"
    cfg = train_config(run_dir, tiny_tokenizer_dir, [train_data["pretrain16"]], max_steps=4, save_every=2,
                       **{"log.tensorboard": True, "log.mlflow": True})
    with one_thread():
        assert run_training(cfg) == 0
        shutil.rmtree(run_dir / "checkpoints" / "step-000004")
        assert run_training(cfg, resume=True) == 0
    return run_dir


def test_tensorboard_event_files_hold_the_loss_of_events_jsonl_once_per_step(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tracked_run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    scalars = acc.Scalars("loss")
    expected = _last_loss_per_step(tracked_run)
    assert [s.step for s in scalars] == sorted(expected) == [1, 2, 3, 4]  # the resume purged its repeated steps
    for s in scalars:
        assert s.value == pytest.approx(expected[s.step], rel=1e-6)  # TensorBoard stores float32
    assert {"lr", "grad_norm", "epoch"} <= set(acc.Tags()["scalars"])
    warnings = [e for e in read_events(tracked_run) if e["type"] == "warning"]
    assert not warnings


def test_mlflow_file_store_holds_one_finished_run_with_the_config_and_each_loss(tracked_run):
    pytest.importorskip("mlflow", reason="mlflow-skinny is a dev extra (pip install -e '.[dev]')")
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(tracked_run / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("minimind")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # the resumed run continued its MLflow run
    run = runs[0]
    assert (run.info.run_name, run.info.status) == ("run", "FINISHED")
    assert run.data.params["method"] == "pretrain" and float(run.data.params["optim.lr"]) == 3e-3
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss")}
    assert history == pytest.approx(_last_loss_per_step(tracked_run), rel=1e-12)


def test_a_failing_and_a_missing_tracker_warn_once_each_and_the_run_completes(train_data, tiny_tokenizer_dir,
                                                                                 tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tensorboard").write_text("a file where TensorBoard's folder goes")  # unwritable, even for root
    wandb_missing = importlib.util.find_spec("wandb") is None  # the missing tracker, where wandb is not installed
    cfg = train_config(run_dir, tiny_tokenizer_dir, [train_data["pretrain16"]], max_steps=3,
                       **{"log.tensorboard": True, "log.wandb": wandb_missing})
    with one_thread():
        assert run_training(cfg) == 0
    events = read_events(run_dir)
    warnings = [e["message"] for e in events if e["type"] == "warning"]
    expected = ["log.tensorboard: TensorBoard failed ("] + (["log.wandb: wandb is not installed"] * wandb_missing)
    assert [w[:len(start)] for w, start in zip(warnings, expected)] == expected and len(warnings) == len(expected)
    assert all(w.endswith("(the run goes on, events.jsonl has every metric)") for w in warnings)
    assert [e["step"] for e in events if e["type"] == "metric"] == [1, 2, 3]
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "completed"


def test_log_options_take_true_as_a_tracker_with_its_defaults_and_name_a_bad_field(tmp_path):
    from core.config.load import load_train_config

    cfg = load_train_config(None, ["log.wandb=true", "log.mlflow.experiment=sweeps"], base={"run_dir": "r"})
    assert (cfg.log.wandb.enabled, cfg.log.wandb.mode, cfg.log.wandb.project) == (True, "offline", "minimind")
    assert (cfg.log.mlflow.enabled, cfg.log.mlflow.experiment, cfg.log.tensorboard) == (False, "sweeps", False)
    with pytest.raises(TrainConfigError, match=r"log\.wandb\.mode"):
        load_train_config(None, ["log.wandb.mode=cloud"], base={"run_dir": "r"})
