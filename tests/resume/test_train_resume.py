"""Resume exactness beyond the SIGKILL test: dropout streams, a moved LoRA init, new hyperparameters, no checkpoint,
evaluations a stop cut short.

Each test trains a few steps in-process, rewinds the run to an earlier checkpoint (as a kill would leave it) or stops
it with a SIGTERM, and resumes; the resumed steps must reproduce the uninterrupted ones.
"""
from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from core.train import checkpoint as ck
from core.train import run_training
from tests.fixtures.train import one_thread, read_events, train_config


def _rewind(run_dir: Path, step: int) -> None:
    """Drop the checkpoints after `step` and point `latest` at it: the run as a kill just after `step` leaves it."""
    keep = ck.step_dir_name(step)
    for c in ck.list_checkpoints(run_dir):
        if c.name > keep:
            shutil.rmtree(c)
    (run_dir / ck.CKPT_DIR / ck.LATEST).write_text(keep + "\n")


def _last_attempt(run_dir: Path) -> tuple[dict, dict[int, dict]]:
    """The last run_started event and the metrics after it, by step."""
    events = read_events(run_dir)
    start = max(i for i, e in enumerate(events) if e["type"] == "run_started")
    return events[start], {e["step"]: e["metrics"] for e in events[start:] if e["type"] == "metric"}


def test_resume_with_dropout_reproduces_the_uninterrupted_losses(train_data, tiny_tokenizer_dir, tmp_path):
    from core.config import get_preset

    run_dir = tmp_path / "run"
    model = get_preset("tiny", vocab_size=1024).model_dump(mode="json") | {"dropout": 0.1}
    cfg = train_config(run_dir, tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=6, save_every=3, model=model)
    with one_thread():
        assert run_training(cfg) == 0
        _, want = _last_attempt(run_dir)
        _rewind(run_dir, 3)
        assert run_training(cfg, resume=True) == 0
    started, got = _last_attempt(run_dir)
    assert started["resumed_from"] == 3 and sorted(got) == [4, 5, 6]
    assert {s: m["loss"] for s, m in got.items()} == {s: want[s]["loss"] for s in got}


def test_resume_applies_a_new_learning_rate(train_data, tiny_tokenizer_dir, tmp_path):
    from core.train.schedule import lr_factor

    run_dir = tmp_path / "run"
    cfg = train_config(run_dir, tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=4, save_every=2)
    with one_thread():
        assert run_training(cfg) == 0
        _rewind(run_dir, 2)
        new = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"lr": 1e-4, "weight_decay": 0.0})})
        assert run_training(new, resume=True) == 0
    _, got = _last_attempt(run_dir)
    o = new.optim
    for step in (3, 4):  # the logged lr is the optimizer's own, so a restored old lr would show here
        want = 1e-4 * lr_factor(step - 1, 4, o.schedule, o.warmup_steps, o.min_lr_ratio)
        assert got[step]["lr"] == pytest.approx(want, rel=1e-9), (step, got[step]["lr"], want)


def test_resume_without_a_checkpoint_says_it_restarts_at_step_0(train_data, tiny_tokenizer_dir, tmp_path):
    run_dir = tmp_path / "run"
    cfg = train_config(run_dir, tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=1)
    with one_thread():
        assert run_training(cfg, resume=True) == 0
    started, got = _last_attempt(run_dir)
    assert started["resumed_from"] == 0 and sorted(got) == [1]  # the studio drops its older steps of this run
    assert isinstance(started["pid_start_ticks"], int) or not Path("/proc/self/stat").exists()


def test_lora_resume_keeps_the_base_it_was_trained_on(tiny_pretrain_run, train_data, tiny_tokenizer_dir, tmp_path):
    import torch

    from core.model import io

    base = tmp_path / "base"  # the init, as a folder someone may overwrite (a run dir whose `latest` moves)
    model, tok = io.load_model(tiny_pretrain_run)
    io.save_checkpoint(model, base, tokenizer=tok)
    run_dir = tmp_path / "run"
    cfg = train_config(run_dir, tiny_tokenizer_dir, [train_data["sft"]], method="lora", init=str(base), max_steps=4,
                       save_every=2, **{"optim.lr": 1e-2, "method_options.rank": 4, "method_options.dropout": 0.1})
    with one_thread():
        assert run_training(cfg) == 0
        _, want = _last_attempt(run_dir)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.5)
        io.save_checkpoint(model, base, tokenizer=tok)  # init now names a different model
        _rewind(run_dir, 2)
        assert run_training(cfg, resume=True) == 0
    started, got = _last_attempt(run_dir)
    assert started["resumed_from"] == 2 and sorted(got) == [3, 4]
    assert {s: m["loss"] for s, m in got.items()} == {s: want[s]["loss"] for s in got}


def test_a_run_resumes_in_another_precision_with_the_scaler_handled(train_data, tiny_tokenizer_dir, tmp_path):
    """fp32 → fp16 (no saved loss scale: a fresh GradScaler) → bf16 (the saved scale is dropped)."""
    run_dir = tmp_path / "run"
    cfg = train_config(run_dir, tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=2, save_every=2)
    with one_thread():
        assert run_training(cfg) == 0
        for precision, steps in (("fp16", 4), ("bf16", 6)):
            again = cfg.model_copy(update={"precision": precision, "max_steps": steps})
            assert run_training(again, resume=True) == 0, read_events(run_dir)[-1]
            started, got = _last_attempt(run_dir)
            assert started["precision"] == precision and started["precision_reason"] == f"precision: {precision} was asked for"
            assert started["resumed_from"] == steps - 2 and sorted(got) == [steps - 1, steps]
    warnings = [e["message"] for e in read_events(run_dir) if e["type"] == "warning"]
    assert any("GradScaler starts afresh" in w for w in warnings), warnings
    assert any("trained in fp32 and continues in fp16" in w for w in warnings), warnings
    assert any("trained in fp16 and continues in bf16" in w for w in warnings), warnings


def test_evaluations_a_stop_cut_short_are_redone_first_on_resume(train_data, tiny_tokenizer_dir, tmp_path,
                                                                 monkeypatch):
    """SIGTERM lands inside the evaluation of step 2, then (after a resume) inside that of step 4, the last one:
    each checkpoint says its evaluation is pending, each resume runs it first, and the run ends with exactly the
    uninterrupted run's evaluations, losses (dropout on, so the RNG streams count) and weights."""
    from safetensors.torch import load_file

    from core.config import get_preset
    from core.train.engine import Trainer

    model = get_preset("tiny", vocab_size=1024).model_dump(mode="json") | {"dropout": 0.1}

    def config(run_dir):
        return train_config(run_dir, tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=4, eval_every=2,
                            model=model, **{"data.eval_files": [str(train_data["pretrain16"])],
                                            "data.eval_batches": 1})

    def outcome(run_dir):
        events = read_events(run_dir)
        ckpt = run_dir / ck.CKPT_DIR / ck.step_dir_name(4)
        return ([(e["step"], e["metrics"]) for e in events if e["type"] == "eval"],
                {e["step"]: e["metrics"]["loss"] for e in events if e["type"] == "metric"},
                load_file(str(ckpt / "model.safetensors")), json.loads((ckpt / ck.STATE_FILE).read_text()))

    stop_in = {2, 4}
    eval_loss = Trainer._eval_loss

    def stopped_eval_loss(self):
        if self.step in stop_in:
            stop_in.discard(self.step)
            assert callable(signal.getsignal(signal.SIGTERM))  # the trainer's handler, not the default (exit)
            signal.raise_signal(signal.SIGTERM)  # the handler raises RunStopped right here, inside the evaluation
            raise AssertionError("SIGTERM did not stop the evaluation")
        return eval_loss(self)

    with one_thread():
        assert run_training(config(tmp_path / "whole")) == 0
        want_evals, want_losses, want_weights, _ = outcome(tmp_path / "whole")
        run_dir = tmp_path / "stopped"
        monkeypatch.setattr(Trainer, "_eval_loss", stopped_eval_loss)
        assert run_training(config(run_dir)) == 0
        assert json.loads((run_dir / ck.CKPT_DIR / ck.step_dir_name(2) / ck.STATE_FILE).read_text())["eval_pending"]
        for _ in range(2):
            assert run_training(config(run_dir), resume=True) == 0
    assert not stop_in and [s for s, _ in want_evals] == [2, 4]
    finished = [(e["step"], e["status"]) for e in read_events(run_dir) if e["type"] == "run_finished"]
    assert finished == [(2, "stopped"), (4, "stopped"), (4, "completed")]
    got_evals, got_losses, got_weights, state = outcome(run_dir)
    assert got_evals == want_evals  # each evaluation step once, with the uninterrupted run's metrics
    assert got_losses == want_losses
    assert sorted(got_weights) == sorted(want_weights)
    assert all(got_weights[k].equal(want_weights[k]) for k in want_weights)
    assert state["eval_pending"] is False  # done by the last resume: resuming again will not evaluate step 4 twice
