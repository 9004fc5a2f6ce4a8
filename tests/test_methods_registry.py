"""The method registry (core/methods.py) is the one list of training methods: the config, the CLI, the engine and
the studio all derive from it, so a new method is one recipe file plus one registry entry."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import pytest

from core.methods import MethodSpec, all_methods, get_method, method_names, register, unregister
from tests.fixtures.train import REPO, one_thread, read_events, subprocess_env, train_config

PLUGIN = '''
"""A method outside the code base: pretraining whose loss is multiplied by `scale`."""
from pydantic import BaseModel, ConfigDict, Field

from core.train.recipes.pretrain import PretrainRecipe


class ScaledOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scale: float = Field(0.5, gt=0, le=10, description="Loss multiplier.")


class ScaledPretrain(PretrainRecipe):
    def loss_fn(self, model, batch):
        loss, metrics = super().loss_fn(model, batch)
        return loss * self.options.scale, {**metrics, "scale": self.options.scale}


RECIPE = ScaledPretrain
'''


def test_the_registry_imports_without_torch_or_qt():
    code = "import sys, core.methods; print(sorted(m for m in ('torch', 'PySide6') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_registered_method_has_a_recipe_and_a_cli_subcommand():
    from core.cli import build_parser

    parser = build_parser()
    for spec in all_methods():
        assert importlib.import_module(spec.recipe).RECIPE is not None, spec.name
        args = parser.parse_args(["train", spec.name, "--config", "x.json"])
        assert args.method == spec.name


def test_unknown_methods_are_refused_with_the_known_ones_named():
    from core.config.errors import TrainConfigError
    from core.config.load import validate_train_config

    with pytest.raises(TrainConfigError, match=r"method: .*'nope' is not a training method; known: pretrain, sft"):
        validate_train_config({"method": "nope"})
    with pytest.raises(ValueError, match="known:"):
        get_method("nope")


@pytest.fixture
def plugin_method(tmp_path, monkeypatch):
    from core.config import rl  # noqa: F401  (option models are plain pydantic)

    (tmp_path / "scaled_pretrain_plugin.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    options = importlib.import_module("scaled_pretrain_plugin").ScaledOptions
    register(MethodSpec("scaled", "scaled_pretrain_plugin", "Pretraining with a scaled loss.", "pretrain", options))
    yield "scaled"
    unregister("scaled")
    sys.modules.pop("scaled_pretrain_plugin", None)


def test_a_new_method_is_one_recipe_file_plus_one_registry_entry(plugin_method, train_data, tiny_tokenizer_dir,
                                                                  tmp_path):
    """Registered at run time, with no other edit: the config, CLI, studio and engine all take it."""
    from core.cli import build_parser
    from core.train import run_training
    from core.train.plan import estimate_memory
    from studio.panes.config.preflight import data_kind
    from studio.panes.config.presenter import method_names as studio_methods
    from studio.panes.config.presenter import method_options_model

    assert plugin_method in method_names() and plugin_method in studio_methods()
    assert build_parser().parse_args(["train", "scaled", "--config", "x.json"]).method == "scaled"
    assert method_options_model("scaled").__name__ == "ScaledOptions"
    assert data_kind({"method": "scaled"}) == "pretrain"
    from core.config import get_preset

    tiny = get_preset("tiny").model_dump()
    assert estimate_memory({"method": "scaled", "model": tiny}, 1000)["reference"] == 0

    bad = train_config(tmp_path / "bad", tiny_tokenizer_dir, [train_data["pretrain"]], method="scaled",
                       method_options={"scale": -1}, max_steps=1)
    assert run_training(bad) == 1
    errors = [e["message"] for e in read_events(tmp_path / "bad") if e["type"] == "error"]
    assert len(errors) == 1 and "method_options.scale" in errors[0], errors
    run_dir = tmp_path / "run"
    cfg = train_config(run_dir, tiny_tokenizer_dir, [train_data["pretrain"]], method="scaled",
                       method_options={"scale": 0.25}, max_steps=2)
    with one_thread():
        assert run_training(cfg) == 0, (run_dir / "events.jsonl").read_text()
    metrics = [e["metrics"] for e in read_events(run_dir) if e["type"] == "metric"]
    assert [m["scale"] for m in metrics] == [0.25, 0.25]


def test_reference_critic_and_teacher_flags_drive_the_memory_estimate():
    from core.config import get_preset
    from core.train.plan import estimate_memory

    tiny = get_preset("tiny").model_dump()
    config = {"model": tiny, "batch_size": 2, "data": {"max_len": 8, "seq_len": 8}}
    teacher_logits = 2 * 8 * tiny["vocab_size"] * 4
    for m in all_methods():
        got = estimate_memory({**config, "method": m.name}, 1000, teacher_params=3000)["reference"]
        assert got == 4000 * m.reference + 16000 * m.critic + (12000 + teacher_logits) * m.teacher, m.name


REGISTERING_PLUGIN = '''
"""A plugin module: registers the scaled method when imported (core.methods imports it from MINIMIND_PLUGINS).
Light: the recipe module (torch) is imported only when the method runs."""
from pydantic import BaseModel, ConfigDict, Field

from core.methods import MethodSpec, register


class ScaledOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scale: float = Field(0.5, gt=0, le=10, description="Loss multiplier.")


register(MethodSpec("scaled", "scaled_pretrain_plugin", "Pretraining with a scaled loss.", "pretrain",
                    ScaledOptions))
'''


def test_a_method_from_a_plugin_module_runs_in_the_training_worker(train_data, tiny_tokenizer_dir, tmp_path):
    """MINIMIND_PLUGINS names modules that register methods; the worker process (`python -m core.train`, as the
    studio starts it) imports them, so it knows the method and runs its recipe."""
    import json

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "scaled_pretrain_plugin.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    (plugins / "scaled_plugin.py").write_text(textwrap.dedent(REGISTERING_PLUGIN), encoding="utf-8")
    run_dir = tmp_path / "run"
    cfg = {"method": "scaled", "method_options": {"scale": 0.25}, "model": "tiny", "run_dir": str(run_dir),
           "max_steps": 2, "batch_size": 4, "device": "cpu", "precision": "fp32", "compile": "off",
           "log_every": 1, "save_every": 0, "data": {"files": [str(train_data["pretrain16"])], "seq_len": 32,
                                                      "tokenizer": str(tiny_tokenizer_dir)}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg), encoding="utf-8")
    env = subprocess_env()
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{plugins}"
    worker = [sys.executable, "-m", "core.train", "--config", str(tmp_path / "cfg.json")]
    without = subprocess.run(worker, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert without.returncode != 0 and "'scaled' is not a training method" in without.stderr
    done = subprocess.run(worker, cwd=REPO, env={**env, "MINIMIND_PLUGINS": "scaled_plugin"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = [e["metrics"] for e in read_events(run_dir) if e["type"] == "metric"]
    assert [m["scale"] for m in metrics] == [0.25, 0.25]


def test_the_memory_estimate_counts_what_masked_grouped_attention_keeps():
    """On CUDA, rollout rows are masked: their attention keeps K/V repeated to every query head (no fused kernel
    takes a mask with grouped K/V) and the mask as a bias; an unmasked bf16 run attends grouped and keeps neither."""
    from core.config import get_preset
    from core.methods import get_method
    from core.train.plan import estimate_memory

    gqa = get_preset("tiny").model_dump()
    mha = dict(gqa, num_key_value_heads=gqa["num_attention_heads"])

    def activations(model, method):
        config = {"model": model, "method": method, "batch_size": 2, "precision": "bf16", "device": "cuda",
                  "data": {"max_len": 64, "seq_len": 64}}
        return estimate_memory(config, 1000)["activations"]

    opts = get_method("grpo").options()
    seq, rows = opts.max_prompt_len + opts.max_new_tokens, 2 * opts.num_generations
    head_dim = gqa["hidden_size"] // gqa["num_attention_heads"]
    repeated = 4 * (gqa["num_attention_heads"] - gqa["num_key_value_heads"]) * head_dim  # bytes a token and layer
    assert activations(gqa, "grpo") - activations(mha, "grpo") == gqa["num_hidden_layers"] * repeated * seq * rows
    assert activations(gqa, "sft") == activations(mha, "sft")
    bias = gqa["num_hidden_layers"] * 2 * seq * seq * rows
    without_mask = activations(mha, "grpo") - bias
    per_token = 18 * gqa["hidden_size"] + 8 * int(8 * gqa["hidden_size"] / 3)
    assert without_mask == gqa["num_hidden_layers"] * per_token * seq * rows + 5 * rows * seq * gqa["vocab_size"] * 4
