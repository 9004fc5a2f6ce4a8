"""The run plan (core/train/plan.py) is what the engine does: for every registered method, `--dry-run`'s plan
equals the `run_started` event of the same config's real run (device, precision and why, steps, parameters);
the CLI prints it as a table and as JSON; and a config that cannot run is refused with the reason.

The runs are tiny: one epoch (no max_steps, so the step count comes from the data) over a few records, from the
session's tiny SFT checkpoint, with `device` and `precision` left to `auto` so the plan decides them.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.methods import get_method, method_names
from tests.fixtures.rl import write_agent_tasks
from tests.fixtures.train import REPO, head_lines, one_thread, read_events, subprocess_env

# what the plan and run_started both state
SHARED = ("device", "precision", "precision_reason", "world_size", "total_steps", "steps_per_epoch", "params",
          "trainable_params")


def _files(method: str, train_data: dict, rl_data: dict, work: Path) -> list[str]:
    kind = get_method(method).data_kind
    if kind == "agent":
        return [str(write_agent_tasks(work / "agent.jsonl", pairs=((12, 13), (7, 91), (31, 4), (25, 25))))]
    source, lines = {"pretrain": (train_data["pretrain"], 6), "sft": (train_data["sft"], 12),
                     "dpo": (rl_data["dpo"], 12), "rl": (rl_data["rl"], 4)}[kind]
    return [str(head_lines(source, work / f"{kind}.jsonl", lines))]


def _config(method: str, init: Path, files: list[str], work: Path) -> dict:
    spec = get_method(method)
    cfg = {"method": method, "init": str(init), "run_dir": str(work / "run"), "epochs": 1, "batch_size": 4,
           "device": "auto", "precision": "auto", "log_every": 1, "save_every": 0,
           "data": {"files": files, "seq_len": 32, "max_len": 64, "cache_dir": str(work / "cache")}}
    if spec.generates:
        cfg["batch_size"] = 2
        cfg["method_options"] = {"max_new_tokens": 4, "max_prompt_len": 48}
        if "num_generations" in spec.options.model_fields:
            cfg["method_options"]["num_generations"] = 2
        if "max_turns" in spec.options.model_fields:
            cfg["method_options"].update(max_turns=1, max_prompt_len=1024)
    if spec.teacher:
        cfg["method_options"] = {"teacher": str(init)}
    return cfg


@pytest.mark.parametrize("method", method_names())
def test_the_dry_run_plan_equals_the_run_started_event(method, tiny_sft_checkpoint, train_data, rl_data,
                                                       tmp_path):
    from core.config.load import validate_train_config
    from core.train import run_training
    from core.train.plan import plan_from_setup

    cfg = validate_train_config(_config(method, tiny_sft_checkpoint, _files(method, train_data, rl_data, tmp_path),
                                        tmp_path), method)
    with one_thread():
        plan = plan_from_setup(cfg, log=lambda message: None).to_json()
        assert run_training(cfg) == 0, (tmp_path / "run" / "events.jsonl").read_text()
    started = next(e for e in read_events(tmp_path / "run") if e["type"] == "run_started")
    assert {k: plan[k] for k in SHARED} == {k: started[k] for k in SHARED}
    assert plan["data_kind"] == get_method(method).data_kind and plan["memory"]["total"] > 0
    assert plan["total_steps"] == plan["steps_per_epoch"]  # one epoch, counted from the data


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", "train", *args], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)


def test_the_dry_run_prints_the_plan_as_a_table_and_as_json_and_trains_nothing(train_data, tiny_tokenizer_dir,
                                                                               tmp_path):
    data = head_lines(train_data["sft"], tmp_path / "sft.jsonl", 20)
    args = ["sft", "--data", str(data), "--tokenizer", str(tiny_tokenizer_dir), "--preset", "tiny",
            "--batch-size", "4", "--accumulation", "2", "--epochs", "3", "--device", "cpu", "--precision", "fp32",
            "--run-dir", str(tmp_path / "run"), "--set", f'data.cache_dir="{tmp_path / "cache"}"', "--dry-run"]
    as_json = _cli(*args, "--json")
    assert as_json.returncode == 0, as_json.stderr
    plan = json.loads(as_json.stdout)
    # 20 records in batches of 4 = 5 micro-batches, 2 a step: 2 steps an epoch (the fifth is dropped), 3 epochs
    assert (plan["batches_per_epoch"], plan["steps_per_epoch"], plan["total_steps"]) == (5, 2, 6)
    assert (plan["device"], plan["precision"]) == ("cpu", "fp32")
    assert plan["precision_reason"] == "precision: fp32 was asked for"
    assert plan["compile"] is False and plan["data_kind"] == "sft"
    assert plan["memory"]["tokens_per_step"] == 4 * 2 * 512  # batch × accumulation × max_len (512 by default)
    table = _cli(*args)
    assert table.returncode == 0, table.stderr
    lines = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in table.stdout.splitlines())
    assert lines["total steps"] == "6" and lines["steps per epoch"] == "2"
    assert lines["precision"] == "fp32 (precision: fp32 was asked for)"
    assert lines["parameters"].startswith(f"{plan['params']:,} ")
    assert not (tmp_path / "run").exists()  # nothing trained, no run folder


def test_a_dry_run_of_data_too_small_for_one_step_says_so(train_data, tiny_tokenizer_dir, tmp_path):
    data = head_lines(train_data["sft"], tmp_path / "sft.jsonl", 3)
    out = _cli("sft", "--data", str(data), "--tokenizer", str(tiny_tokenizer_dir), "--preset", "tiny",
               "--batch-size", "4", "--accumulation", "2", "--device", "cpu",
               "--set", f'data.cache_dir="{tmp_path / "cache"}"', "--dry-run")
    assert out.returncode == 1 and out.stdout == ""
    # 3 records make one (short) batch of 4, and a step takes 2
    assert "the data holds 1 batches of 4, fewer than one optimizer step of 2" in out.stderr
