"""Precision: `auto` picks bf16 on CPUs with native bf16 and says why; bf16 CPU training stays close to fp32 and
resumes exactly."""
from __future__ import annotations

import pytest
import torch

from core import precision
from core.precision import resolve_precision
from tests.fixtures.train import losses, one_thread, read_events, train_config


def test_auto_on_a_cpu_follows_its_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: "AVX512-BF16")
    assert resolve_precision("auto", torch.device("cpu")) == (
        torch.bfloat16, "auto: this CPU has native bf16 (AVX512-BF16); weights and optimizer stay fp32")
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: None)
    assert resolve_precision("auto", torch.device("cpu")) == (
        None, "auto: this CPU has no native bf16 (AVX512-BF16/AMX), so fp32")
    assert resolve_precision("fp16", torch.device("cpu")) == (torch.float16, "precision: fp16 was asked for")


def test_half_precision_asked_for_where_the_cpu_emulates_it_is_warned_at_pre_flight(monkeypatch):
    from core.precision import precision_warning
    from studio.panes.config.preflight import precision_note, run_plan

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: None)
    monkeypatch.setattr(precision, "cpu_native_fp16", lambda: None)
    slow = precision_warning("bf16", cpu)
    assert slow.startswith("precision: bf16 on this CPU is emulated") and slow.endswith("which picks fp32 here")
    assert precision_warning("fp16", cpu).startswith("precision: fp16 on this CPU is emulated")
    assert precision_warning("auto", cpu) is None and precision_warning("fp32", cpu) is None
    config = {"method": "pretrain", "device": "cpu", "precision": "bf16", "data": {"files": []}}
    assert precision_note(config, run_plan(config)) == slow
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: "AMX")
    assert precision_warning("bf16", cpu) is None and precision_note(config, run_plan(config)) is None
    assert precision_warning("fp16", cpu).endswith("which picks bf16 here")
    monkeypatch.setattr(precision, "cpu_native_fp16", lambda: "AMX-FP16")
    assert precision_warning("fp16", cpu) is None
    assert precision_warning("bf16", torch.device("cuda")) is None


def test_run_started_names_the_choice_of_this_machine(train_data, tiny_tokenizer_dir, tmp_path):
    from core.train import run_training

    cfg = train_config(tmp_path / "run", tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=1,
                       precision="auto")
    with one_thread():
        assert run_training(cfg) == 0
    started = next(e for e in read_events(tmp_path / "run") if e["type"] == "run_started")
    want = "bf16" if precision.cpu_native_bf16() else "fp32"
    assert started["precision"] == want and started["precision_reason"].startswith("auto: this CPU")


SMALL_MODEL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "max_position_embeddings": 512}


def test_bf16_training_on_cpu_stays_within_noise_of_fp32(train_data, tiny_tokenizer_dir, tmp_path):
    """120 pretraining steps of a 2-layer, 64-wide model: the mean loss of the last 20 steps differs by less than
    the step-to-step spread of those 20 fp32 losses. (Small, because on a CPU without native bf16 every bf16 matmul
    is emulated, tens of times slower than fp32: the `tiny` preset took 90 s here on an AVX2-only CPU.)"""
    from core.train import run_training

    curves = {}
    for p in ("fp32", "bf16"):
        cfg = train_config(tmp_path / p, tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=120, precision=p,
                           model=SMALL_MODEL)
        with one_thread():
            assert run_training(cfg) == 0
        curves[p] = [v for _, v in sorted(losses(tmp_path / p).items())][-20:]
    fp32, bf16 = torch.tensor(curves["fp32"]), torch.tensor(curves["bf16"])
    warned = [e["message"] for e in read_events(tmp_path / "bf16") if e["type"] == "warning" and "emulated" in e["message"]]
    assert len(warned) == (0 if precision.cpu_native_bf16() else 1), warned
    assert abs(float(bf16.mean() - fp32.mean())) < float(fp32.std()), (curves, fp32.std())
