"""torch.compile: `auto` compiles on CUDA, and on CPU where the measured gain repays the compile time; a compile
failure, at wrap time or lazily at the first step, never fails a run: it trains eagerly with a `warning` event."""
from __future__ import annotations

import torch

from core.train.compile import resolve_compile
from tests.fixtures.train import head_lines, one_thread, read_events, train_config


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


def _dynamo_counts():
    from torch._dynamo.utils import counters

    return {"graph_breaks": sum(counters["graph_break"].values()), "frames": counters["frames"]["ok"],
            "reasons": list(counters["graph_break"])}


def test_an_sft_run_with_varying_lengths_compiles_without_graph_breaks(monkeypatch, train_data, tiny_tokenizer_dir,
                                                                        tmp_path):
    """Chat batches padded to their own longest record: dynamo marks the length dynamic at the second shape, and
    attention must still trace (is_causal once became a SymBool there, a graph break in every layer)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from core.config import get_preset
    from core.train import run_training

    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m: real(m, backend="eager"))  # dynamo's tracing, no inductor
    torch._dynamo.reset()
    counters.clear()
    sft = head_lines(train_data["sft"], tmp_path / "sft.jsonl", 16)
    one_layer = get_preset("tiny").model_copy(update={"num_hidden_layers": 1}).model_dump()
    cfg = train_config(tmp_path / "run", tiny_tokenizer_dir, [sft], method="sft", max_steps=4, compile="on",
                       batch_size=4, model=one_layer, **{"data.cache_dir": str(tmp_path / "cache")})
    with one_thread():
        assert run_training(cfg) == 0
    events = read_events(tmp_path / "run")
    assert not [e["message"] for e in events if e["type"] == "warning" and "compile" in e["message"]]
    assert len({e["metrics"]["loss"] for e in events if e["type"] == "metric"}) == 4
    counts = _dynamo_counts()
    assert counts["graph_breaks"] == 0, counts["reasons"]


def test_a_moe_model_compiles_once_whatever_the_routing(monkeypatch):
    """Routing counts change every step; the dispatch that reads them runs outside the graph, so training steps
    after the first compile nothing new (traced, the counts recompiled until dynamo gave up on the model)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from core.config import get_preset
    from core.model import MiniMindForCausalLM

    cfg = get_preset("moe", vocab_size=128).model_copy(update={
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "moe_intermediate_size": 32, "max_position_embeddings": 64})
    torch.manual_seed(0)
    model = MiniMindForCausalLM(cfg)
    compiled = torch.compile(model, backend="eager")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)  # large steps: the routing moves between steps
    torch._dynamo.reset()
    counters.clear()
    frames = []
    with one_thread():
        for _ in range(12):
            x = torch.randint(0, 128, (2, 16))
            compiled(x, labels=x).loss.backward()
            opt.step()
            opt.zero_grad()
            frames.append(_dynamo_counts()["frames"])
    assert frames[-1] == frames[1], frames
    reasons = _dynamo_counts()["reasons"]
    assert reasons and all("dispatch" in r for r in reasons), reasons  # the one deliberate break per MoE layer
