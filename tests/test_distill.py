"""White-box distillation (`distill`): the KL term, the shared-tokenizer rule, and that a student distilled from a
bigger trained teacher ends closer to it than the same student trained by CE alone."""
from __future__ import annotations

import math

import pytest
import torch

from core.train.recipes.distill import distill_kl
from tests.fixtures.train import head_lines, one_thread, read_events, train_config

STUDENT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
           "max_position_embeddings": 512}


def test_distill_kl_is_t_squared_kl_of_teacher_to_student():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    t = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    T = 2.0
    want = 0.0
    for srow, trow in zip(s.tolist(), t.tolist()):
        ps = [math.exp(x / T) for x in srow]
        pt = [math.exp(x / T) for x in trow]
        ps, pt = [x / sum(ps) for x in ps], [x / sum(pt) for x in pt]
        want += sum(q * math.log(q / p) for p, q in zip(ps, pt))
    assert distill_kl(s, t, T).item() == pytest.approx(want / 2 * T * T, rel=1e-5)
    assert distill_kl(t, t, T).item() == pytest.approx(0.0, abs=1e-6)


def test_a_teacher_with_another_tokenizer_is_refused_naming_both(shared_data, train_data, tiny_sft_checkpoint,
                                                                 tmp_path):
    from core.config import get_preset
    from core.model import MiniMindForCausalLM, io
    from core.tokenizer import MiniMindTokenizer
    from core.train import run_training

    v2 = MiniMindTokenizer.load(shared_data / "minimind-tokenizers" / "v2")
    io.save_checkpoint(MiniMindForCausalLM(get_preset("tiny", vocab_size=v2.vocab_size)), tmp_path / "teacher",
                       tokenizer=v2)
    run_dir = tmp_path / "run"
    cfg = train_config(run_dir, tmp_path, [train_data["sft"]], method="distill", init=str(tiny_sft_checkpoint),
                       max_steps=1, method_options={"teacher": str(tmp_path / "teacher")},
                       **{"data.tokenizer": None})
    assert run_training(cfg) == 1
    [error] = [e["message"] for e in read_events(run_dir) if e["type"] == "error"]
    student = io.load_tokenizer(io.resolve_checkpoint(tiny_sft_checkpoint))
    assert "method_options.teacher" in error and v2.hash[:12] in error and student.hash[:12] in error


def _held_out_kl(student_run, teacher, tokenizer, records) -> float:
    """Mean per-token KL(teacher ‖ student) at T=1 over the assistant tokens of held-out conversations."""
    from core.data.datasets import ChatMasker
    from core.model import io

    student, _ = io.load_model(student_run)
    masker = ChatMasker(tokenizer)
    total, n = 0.0, 0
    with torch.no_grad():
        for rec in records:
            ids = tokenizer.apply_chat_template(rec["conversations"], tokenize=True)[:96]
            labels = torch.as_tensor(masker.labels(__import__("numpy").asarray(ids)))
            keep = labels[1:] != -100
            x = torch.tensor([ids])
            s, t = student(x).logits[0, :-1][keep], teacher(x).logits[0, :-1][keep]
            total += distill_kl(s, t, 1.0).item() * int(keep.sum())
            n += int(keep.sum())
    return total / n


def test_distilling_a_bigger_teacher_ends_closer_to_it_than_ce_alone(demo_data_dir, demo_sft_run,
                                                                     tiny_tokenizer_dir, tmp_path):
    import json

    from core.model import io
    from core.train import run_training

    train = head_lines(demo_data_dir / "sft.jsonl", tmp_path / "train.jsonl", 800)
    held = head_lines(demo_data_dir / "sft.jsonl", tmp_path / "held.jsonl", 64, skip=1000)
    common = dict(max_steps=60, batch_size=16, log_every=10, model={**STUDENT, "vocab_size": 1024},
                  **{"optim.lr": 3e-3, "optim.warmup_steps": 5, "data.max_len": 96})
    runs = {"ce": train_config(tmp_path / "ce", tiny_tokenizer_dir, [train], method="sft", **common),
            "distill": train_config(tmp_path / "distill", tiny_tokenizer_dir, [train], method="distill",
                                    method_options={"teacher": str(demo_sft_run), "alpha": 0.5,
                                                    "temperature": 1.0}, **common)}
    with one_thread():
        for name, cfg in runs.items():
            assert run_training(cfg) == 0, read_events(tmp_path / name)[-1]
    metrics = [e["metrics"] for e in read_events(tmp_path / "distill") if e["type"] == "metric"]
    assert {"ce", "kl", "distill_loss"} <= set(metrics[-1]) and metrics[-1]["kl"] < metrics[0]["kl"]

    teacher, tokenizer = io.load_model(demo_sft_run)
    assert sum(p.numel() for p in teacher.parameters()) > 2 * sum(
        p.numel() for p in io.load_model(tmp_path / "ce")[0].parameters())  # the teacher is the bigger model
    records = [json.loads(line) for line in held.read_text(encoding="utf-8").splitlines()]
    kl = {name: _held_out_kl(tmp_path / name, teacher, tokenizer, records) for name in runs}
    print(f"held-out KL(teacher ‖ student): CE alone {kl['ce']:.4f}, distilled {kl['distill']:.4f}")
    assert kl["distill"] < kl["ce"], kl
