"""The resume contract holds for every registered method: a real SIGKILL right after a checkpoint, the `init`
folder deleted, `--resume`, and the final weights equal an uninterrupted run's, tensor for tensor.

Parametrised over the method registry, so a method added later is covered without editing this file. The
on-policy methods take two updates per rollout and are killed after step 1: inside a rollout group, so the
checkpoint must carry the cached rollout (as plain tensors and lists, which the weights-only loader accepts).
Each run is a separate process forked from a zygote that has imported torch (tests/fixtures/zygote.py).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.methods import get_method, method_names
from core.train import checkpoint as ck
from core.train.trainer_state import load_trainer_state
from tests.fixtures.rl import write_agent_tasks
from tests.fixtures.train import read_events
from tests.fixtures.zygote import Zygote

STEPS, KILL_AT = 3, 1


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


def _data_files(method: str, train_data: dict, rl_data: dict, work: Path) -> list[str]:
    kind = get_method(method).data_kind
    if kind == "agent":
        return [str(write_agent_tasks(work / "agent.jsonl"))]
    return [str({"pretrain": train_data["pretrain"], "sft": train_data["sft"], "dpo": rl_data["dpo"],
                 "rl": rl_data["rl"]}[kind])]


def _write_config(method: str, run_dir: Path, init: Path, files: list[str], save_every: int,
                  precision: str = "fp32") -> Path:
    spec = get_method(method)
    cfg = {"method": method, "init": str(init), "run_dir": str(run_dir), "max_steps": STEPS, "batch_size": 4,
           "device": "cpu", "precision": precision, "log_every": 1, "save_every": save_every,
           "data": {"files": files, "seq_len": 32, "max_len": 64, "cache_dir": str(run_dir.parent / "cache")},
           "optim": {"lr": 1e-3, "warmup_steps": 0}}
    if spec.generates:
        cfg["batch_size"] = 2
        cfg["method_options"] = {"updates_per_rollout": 2, "max_new_tokens": 8, "max_prompt_len": 48,
                                 "sample_every": 1, "samples_logged": 1}
        if "num_generations" in spec.options.model_fields:
            cfg["method_options"]["num_generations"] = 2
        if "max_turns" in spec.options.model_fields:  # agent: two turns with thinking sometimes open
            cfg["method_options"].update(max_turns=2, thinking_ratio=0.5, max_prompt_len=1024)
    if spec.teacher:  # a frozen teacher that stays on disk (only `init` is deleted)
        cfg["method_options"] = {"teacher": str(init.parent / "teacher")}
    path = run_dir.parent / f"{run_dir.name}.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


def _weights(ckpt: Path) -> dict[str, object]:
    from safetensors.torch import load_file

    files = sorted(ckpt.rglob("*.safetensors"))
    return {f"{f.relative_to(ckpt)}:{k}": v for f in files for k, v in load_file(str(f)).items()}


@pytest.mark.parametrize("method", method_names())
def test_every_method_killed_after_a_checkpoint_resumes_to_the_uninterrupted_weights(
        method, zygote, tiny_sft_checkpoint, train_data, rl_data, tmp_path):
    want, got = _kill_delete_init_and_resume(method, "fp32", zygote, tiny_sft_checkpoint, train_data, rl_data,
                                             tmp_path)
    assert sorted(got) == sorted(want) and any(k.startswith("model.safetensors:") for k in got)
    assert _differing(want, got) == [], f"{method}: tensors differ after resume"


def test_a_bf16_cpu_run_killed_and_resumed_equals_the_uninterrupted_bf16_run(
        zygote, tiny_sft_checkpoint, train_data, rl_data, tmp_path):
    want, got = _kill_delete_init_and_resume("sft", "bf16", zygote, tiny_sft_checkpoint, train_data, rl_data,
                                             tmp_path)
    assert sorted(got) == sorted(want) and any(k.startswith("model.safetensors:") for k in got)
    assert _differing(want, got) == [], "bf16: tensors differ after resume"


def _differing(want: dict, got: dict) -> list[str]:
    import torch

    return [k for k in want if not torch.equal(want[k], got[k])]


def _kill_delete_init_and_resume(method, precision, zygote, tiny_sft_checkpoint, train_data, rl_data, tmp_path):
    """(uninterrupted weights, weights after a SIGKILL right after checkpoint 1, `init` deleted, and resume);
    asserts on the way that the kill landed where it should and the resume started from it."""
    init = shutil.copytree(tiny_sft_checkpoint, tmp_path / "init")
    shutil.copytree(tiny_sft_checkpoint, tmp_path / "teacher")
    files = _data_files(method, train_data, rl_data, tmp_path)
    reference_cfg = _write_config(method, tmp_path / "reference", init, files, save_every=0, precision=precision)
    assert zygote.run(reference_cfg, resume=False) == 0, zygote.stderr_tail()

    run_dir = tmp_path / "run"
    cfg = _write_config(method, run_dir, init, files, save_every=1, precision=precision)
    assert zygote.run(cfg, resume=False, kill_after_checkpoint=KILL_AT) == -9, zygote.stderr_tail()
    assert [c.name for c in ck.list_checkpoints(run_dir)] == [ck.step_dir_name(KILL_AT)]  # killed right after it
    saved = load_trainer_state(run_dir / ck.CKPT_DIR / ck.step_dir_name(KILL_AT) / ck.TRAINER_FILE)  # weights-only
    if get_method(method).generates:  # the kill landed inside a rollout group: one update done, one to go
        assert [e["updates"] for e in saved["recipe"]["rollout_cache"]] == [1]

    shutil.rmtree(init)  # Runs › Delete of the parent run: resume must not need it
    assert zygote.run(cfg, resume=True) == 0, zygote.stderr_tail()
    started = [e for e in read_events(run_dir) if e["type"] == "run_started"]
    assert [s["resumed_from"] for s in started] == [None, KILL_AT]

    return (_weights(tmp_path / "reference" / ck.CKPT_DIR / ck.step_dir_name(STEPS)),
            _weights(run_dir / ck.CKPT_DIR / ck.step_dir_name(STEPS)))
