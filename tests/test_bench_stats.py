"""The benchmarks' arithmetic: both sides of a comparison computed the same way, paired intervals."""
import pytest

from bench.rl_gain import paired
from bench.train_throughput import _summarise


def _rep(packed_tokens, packed_s, naive_tokens, naive_s):
    return {"packed": {"tokens": packed_tokens, "seconds": packed_s},
            "naive": {"tokens": naive_tokens, "seconds": naive_s, "batch_padding": 0.5}}


def test_throughput_ratio_is_total_over_total_on_both_sides_per_repeat():
    reps = [_rep(1000, 10.0, 1000, 10.0), _rep(1000, 5.0, 1000, 10.0), _rep(1000, 10.0, 1000, 5.0)]
    out = _summarise(reps, padding=0.75, batch_size=2, seq_len=50)  # naive keeps a quarter of its tokens
    assert out["ratios"] == pytest.approx([4.0, 8.0, 2.0])
    assert out["ratio"] == pytest.approx({"min": 2.0, "median": 4.0, "max": 8.0})
    assert out["rows"]["naive"]["useful_tok_s"]["median"] == pytest.approx(25.0)
    assert out["rows"]["packed"]["step_s"]["max"] == pytest.approx(1.0)  # 10 s for 10 steps of 100 tokens


def test_paired_difference_averages_seeds_per_prompt_before_differencing():
    base = [0.0, 1.0, 0.0, 1.0]
    runs = [[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]]
    out = paired(runs, base, resamples=2000)
    assert out["mean"] == pytest.approx(0.25)
    assert out["per_seed"] == pytest.approx([0.25, 0.25])
    assert out["ci95"][0] <= 0.25 <= out["ci95"][1]


def test_paired_interval_collapses_when_every_prompt_moves_the_same():
    out = paired([[1.0] * 8], [0.0] * 8, resamples=500)
    assert out["mean"] == 1.0 and out["ci95"] == pytest.approx([1.0, 1.0])
