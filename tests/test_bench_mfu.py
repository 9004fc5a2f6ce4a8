"""bench.mfu: the FLOPs it counts and the matmul ceiling it reports (python -m bench.mfu --ceiling)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def test_the_ceiling_counts_every_weight_matmul_of_a_dense_step():
    from bench.mfu import linear_shapes, train_flops_per_token
    from core.config import get_preset
    from core.model import MiniMindForCausalLM

    cfg = get_preset("small", vocab_size=6400)
    with torch.device("meta"):
        model = MiniMindForCausalLM(cfg)
    matrices = sum(p.numel() for p in model.parameters() if p.dim() == 2)  # tied embedding = the LM head, once
    assert sum(k * n * count for _name, k, n, count in linear_shapes(cfg)) == matrices
    attention = 6 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.resolved_head_dim * 340
    assert train_flops_per_token(cfg, 340) == 6 * model.num_active_parameters() + attention
    assert round(train_flops_per_token(cfg, 340) / 1e6, 1) == 163.3  # the figure docs/benchmarks.md uses


def test_the_ceiling_is_the_step_flops_over_the_timed_matmuls(torch_single_thread):
    from bench.mfu import matmul_ceiling, train_flops_per_token
    from core.config import get_preset

    cfg = get_preset("tiny", vocab_size=512)
    result = matmul_ceiling(cfg, batch_size=2, seq_len=64, precision="fp32")
    assert [p["matmul"] for p in result["parts"]] == ["q, o", "k, v", "gate, up", "down", "lm head"]
    step_flops = train_flops_per_token(cfg, 64) * 128
    attention_ms = (6 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.resolved_head_dim * 64 * 128
                    / (result["peak_gflops"] * 1e9) * 1000)
    assert result["matmul_ms"] == pytest.approx(sum(p["step_ms"] for p in result["parts"]) + attention_ms, abs=0.3)
    assert result["ceiling_mfu"] == pytest.approx(step_flops / (result["matmul_ms"] / 1000)
                                                  / (result["peak_gflops"] * 1e9), rel=0.05)
