"""Methods over the engine: SFT from a pretrain checkpoint, LoRA (adapters only, merged on load), accumulation."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from core.model import io
from core.model.lora import LoRALinear, load_adapter
from core.train import run_training
from tests.fixtures.train import losses, one_thread, read_events, train_config


def test_sft_starts_from_the_pretrain_checkpoint_and_completes(tiny_sft_checkpoint, tiny_pretrain_run):
    events = [e for e in read_events(tiny_sft_checkpoint) if e["type"] != "prepare"]  # token-cache progress first
    assert events[0]["method"] == "sft" and events[0]["config"]["init"] == str(tiny_pretrain_run)
    assert events[-1]["status"] == "completed"
    ckpt = io.resolve_checkpoint(tiny_sft_checkpoint)
    pre = load_file(str(io.resolve_checkpoint(tiny_pretrain_run) / io.WEIGHTS))
    sft = load_file(str(ckpt / io.WEIGHTS))
    assert pre.keys() == sft.keys() and any(not torch.equal(pre[k], sft[k]) for k in pre)
    assert json.loads((ckpt / io.MODEL_CONFIG).read_text()) == \
        json.loads((io.resolve_checkpoint(tiny_pretrain_run) / io.MODEL_CONFIG).read_text())
    model, tok = io.load_model(tiny_sft_checkpoint)
    ids = torch.tensor([tok.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True,
                                                tokenize=True)])
    assert torch.isfinite(model(ids).logits).all()


@pytest.mark.slow
def test_lora_trains_only_the_adapter_and_loads_merged(tiny_sft_checkpoint, train_data, tiny_tokenizer_dir, tmp_path):
    run_dir = tmp_path / "lora"
    cfg = train_config(run_dir, tiny_tokenizer_dir, [train_data["sft"]], method="lora", init=str(tiny_sft_checkpoint),
                       max_steps=6, **{"method_options.rank": 4, "optim.lr": 1e-2, "optim.warmup_steps": 0})
    with one_thread():
        assert run_training(cfg) == 0
    started = read_events(run_dir)[0]
    assert 0 < started["trainable_params"] < started["params"] / 5
    ckpt = io.resolve_checkpoint(run_dir)
    assert (ckpt / "adapter.safetensors").is_file() and (ckpt / "lora_config.json").is_file()
    base = load_file(str(io.resolve_checkpoint(tiny_sft_checkpoint) / io.WEIGHTS))
    saved_base = load_file(str(ckpt / io.WEIGHTS))
    assert saved_base.keys() == base.keys() and all(torch.equal(saved_base[k], base[k]) for k in base)

    merged, _ = io.load_model(run_dir)  # base + adapter, folded into plain weights
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    plain, _ = io.load_model(tiny_sft_checkpoint)
    adapted = load_adapter(io.load_model(tiny_sft_checkpoint)[0], ckpt).eval()
    ids = torch.randint(3, 1000, (1, 20))
    with torch.no_grad():
        assert not torch.allclose(merged(ids).logits, plain(ids).logits, atol=1e-4)  # the adapter learned something
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-4)


def test_accumulation_equals_one_big_batch(train_data, tiny_tokenizer_dir, tmp_path):
    big = train_config(tmp_path / "big", tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=3, batch_size=8)
    acc = train_config(tmp_path / "acc", tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=3, batch_size=4,
                       **{"optim.accumulation": 2})
    with one_thread():
        assert run_training(big) == 0 and run_training(acc) == 0
    a, b = losses(tmp_path / "big"), losses(tmp_path / "acc")
    assert sorted(a) == sorted(b) == [1, 2, 3]
    assert all(abs(a[s] - b[s]) < 1e-5 for s in a), (a, b)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_fp32(precision, train_data, tiny_tokenizer_dir, tmp_path):
    # fp16 goes through the GradScaler (scale, unscale before clipping, skip on overflow); bf16 does not need it
    runs = {}
    for p in ("fp32", precision):
        cfg = train_config(tmp_path / p, tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=3, precision=p)
        with one_thread():
            assert run_training(cfg) == 0
        runs[p] = losses(tmp_path / p)
    assert read_events(tmp_path / precision)[0]["precision"] == precision
    assert all(abs(runs[precision][s] - runs["fp32"][s]) < 0.05 for s in (1, 2, 3)), runs
