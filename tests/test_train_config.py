"""Training configs, LR schedules and the packed batch sampler: pure functions, milliseconds each."""
from __future__ import annotations

import json
import math

import pytest

from core.config.errors import TrainConfigError
from core.config.load import load_train_config
from core.config.train import TrainConfig
from core.methods import validate_options
from core.train.sampler import PackedBatchSampler
from core.train.schedule import lr_factor


def test_errors_name_the_field_and_the_allowed_range(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"optim": {"lr": -1}, "batch_size": 0}))
    with pytest.raises(TrainConfigError) as err:
        load_train_config(path)
    text = str(err.value)
    assert f"{path}: optim.lr: Input should be greater than 0 (got -1)" in text
    assert "batch_size: Input should be greater than or equal to 1" in text


def test_set_overrides_parse_json_values_and_nested_keys():
    cfg = load_train_config(None, ["optim.lr=3e-4", "model=tiny", 'data.files=["a.jsonl"]', "compile=true",
                                   "method_options.beta=0.1"])
    assert cfg.optim.lr == 3e-4 and cfg.model == "tiny" and cfg.data.files == ["a.jsonl"] and cfg.compile
    assert cfg.method_options == {"beta": 0.1}


def test_loras_settings_are_its_method_options_and_an_old_top_level_lora_block_moves_there():
    cfg = load_train_config(None, ["method=lora", "init=run", "method_options.rank=4",
                                   'lora.target_modules=["q_proj"]', "lora.rank=2"])
    assert cfg.method_options == {"rank": 4, "target_modules": ["q_proj"]}  # the new place wins over the old
    assert "lora" not in cfg.model_dump()
    # a saved run of another method carries the old default block: it is dropped, not an error
    old = {"method": "sft", "lora": {"rank": 8, "alpha": 16.0, "dropout": 0.0, "target_modules": ["q_proj"]}}
    assert load_train_config(None, base=old).method_options == {}
    bad = load_train_config(None, ["method=lora", "init=run", "lora.rank=0"])
    with pytest.raises(TrainConfigError, match="method_options.rank"):  # LoRA's option model checks it
        validate_options("lora", bad.method_options)


def test_unknown_keys_and_bad_set_syntax_are_refused():
    with pytest.raises(TrainConfigError, match="optim.learning_rate: Extra inputs are not permitted"):
        load_train_config(None, ["optim.learning_rate=1"])
    with pytest.raises(TrainConfigError, match="expected key=value"):
        load_train_config(None, ["optim.lr"])


def test_lora_needs_an_init_checkpoint():
    with pytest.raises(TrainConfigError, match="lora.*needs `init`"):
        load_train_config(None, ["method=lora"])


def test_config_round_trips_through_json_and_exports_a_schema(tmp_path):
    cfg = load_train_config(None, ["model=tiny", "optim.betas=[0.9,0.95]"])
    again = TrainConfig.model_validate_json(cfg.model_dump_json())
    assert again == cfg
    schema = TrainConfig.model_json_schema()
    assert {"method", "model", "optim", "data", "method_options"} <= set(schema["properties"])
    assert schema["$defs"]["OptimConfig"]["properties"]["lr"]["exclusiveMinimum"] == 0


def test_minimind_schedule_is_the_reference_formula():
    # MiniMind v2 get_lr: lr*(0.1 + 0.45*(1+cos(pi*t/T))), with T = steps-1 so the last step (t=99) is the floor
    T = 100
    for t in (0, 25, 50, 99):
        assert lr_factor(t, T, "minimind") == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * t / (T - 1))))


@pytest.mark.parametrize("schedule", ["cosine", "minimind"])
@pytest.mark.parametrize("total,warmup", [(10, 0), (10, 3), (2, 0)])
def test_the_last_step_reaches_the_floor(schedule, total, warmup):
    # was 0.122 at the last of 10 steps: progress t/T never reached 1
    assert lr_factor(total - 1, total, schedule, warmup_steps=warmup, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(warmup, total, schedule, warmup_steps=warmup, min_lr_ratio=0.1) == pytest.approx(1.0)


def test_cosine_warms_up_then_decays_to_the_floor():
    f = [lr_factor(t, 110, "cosine", warmup_steps=10, min_lr_ratio=0.1) for t in range(111)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[110] == pytest.approx(0.1)


def test_two_rank_shards_union_to_the_one_rank_batches():
    one = list(PackedBatchSampler(103, 8, seed=3, epoch=2))
    r0 = list(PackedBatchSampler(103, 8, seed=3, epoch=2, rank=0, world_size=2))
    r1 = list(PackedBatchSampler(103, 8, seed=3, epoch=2, rank=1, world_size=2))
    assert len(one) == 103 // 8
    assert [a + b for a, b in zip(r0, r1)] == one
    assert list(PackedBatchSampler(103, 8, seed=3, epoch=2, skip_batches=5)) == one[5:]
    assert one != list(PackedBatchSampler(103, 8, seed=3, epoch=3))  # a new order each epoch
