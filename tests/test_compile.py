"""torch.compile: `auto` compiles on CUDA, and on CPU where the measured gain repays the compile time; a compile
failure, at wrap time or lazily at the first step, never fails a run: it trains eagerly with a `warning` event."""
from __future__ import annotations

import torch

from core.train.compile import resolve_compile
from tests.fixtures.train import one_thread, read_events, train_config


def test_auto_compiles_on_cuda_and_on_cpu_only_for_long_fixed_shape_runs():
    cpu = torch.device("cpu")
    assert resolve_compile("auto", torch.device("cuda", 0))[0] is True
    assert resolve_compile("auto", cpu, 20, fixed_shapes=True)[0] is False  # the tests' runs stay eager
    assert resolve_compile("auto", cpu, 5000, fixed_shapes=True)[0] is True
    assert resolve_compile("auto", cpu, 5000, fixed_shapes=False) == (
        False, "auto: eager on CPU (batches change shape: each new shape would compile again)")
    assert resolve_compile("on", cpu) == (True, "compile: on was asked for")


def test_old_boolean_configs_still_load(tmp_path):
    cfg = train_config(tmp_path / "run", tmp_path, [tmp_path / "a.jsonl"], compile=True)
    assert cfg.compile == "on"


def _failing_backend(gm, example_inputs):
    raise RuntimeError("this backend cannot compile anything")


def _run_with(monkeypatch, compile_fn, train_data, tokenizer_dir, run_dir):
    from core.train import run_training

    monkeypatch.setattr(torch, "compile", compile_fn)
    cfg = train_config(run_dir, tokenizer_dir, [train_data["pretrain"]], max_steps=2, compile="on")
    with one_thread():
        assert run_training(cfg) == 0
    events = read_events(run_dir)
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "completed"
    return [e["message"] for e in events if e["type"] == "warning"]


def test_a_backend_that_fails_at_the_first_step_falls_back_to_eager(monkeypatch, train_data, tiny_tokenizer_dir,
                                                                      tmp_path):
    real = torch.compile
    warnings = _run_with(monkeypatch, lambda m: real(m, backend=_failing_backend), train_data, tiny_tokenizer_dir,
                         tmp_path / "run")
    assert len(warnings) == 1 and "torch.compile failed" in warnings[0] and "training continues eagerly" in warnings[0]


def test_an_unsupported_option_fails_at_wrap_time_and_falls_back(monkeypatch, train_data, tiny_tokenizer_dir,
                                                                   tmp_path):
    real = torch.compile
    warnings = _run_with(monkeypatch, lambda m: real(m, options={"not_an_inductor_option": True}), train_data,
                         tiny_tokenizer_dir, tmp_path / "run")
    assert len(warnings) == 1 and "not_an_inductor_option" in warnings[0]
