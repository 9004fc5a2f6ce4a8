"""Config pane: schema-driven forms, inline pydantic messages, presets and exact parameter counts, pre-flight."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("PySide6")
cc = pytest.importorskip("core.config")
from core.config.load import validate_train_config  # noqa: E402
from core.config.train import TrainConfig  # noqa: E402

from studio.panes.config.schema import fields_from_schema  # noqa: E402


@pytest.fixture
def pane(qtbot, context):
    from studio.panes.config.view import ConfigPane

    p = ConfigPane(context)
    qtbot.addWidget(p)
    return p


def test_form_has_one_editor_per_schema_field_with_schema_bounds(pane):
    from PySide6.QtWidgets import QCheckBox, QComboBox, QSpinBox

    from studio.panes.config.presenter import OWN_WIDGETS  # method, init, model, ... and sweep (set by a sweep)

    editors = {k: w for form in pane.forms.values() for k, w in form.editors.items()}
    expected = fields_from_schema(cc.ModelConfig.model_json_schema(), prefix=("model",)) + \
        fields_from_schema(TrainConfig.model_json_schema(), skip=OWN_WIDGETS)
    assert {s.key for s in expected} <= set(editors)
    assert isinstance(editors["model.hidden_size"], QSpinBox)
    assert (editors["model.hidden_size"].minimum(), editors["model.hidden_size"].maximum()) == (8, 16384)
    assert isinstance(editors["optim.schedule"], QComboBox)
    assert [editors["optim.schedule"].itemText(i) for i in range(3)] == ["cosine", "minimind", "constant"]
    assert isinstance(editors["model.use_moe"], QCheckBox)


def test_trackers_tab_turns_on_tensorboard_and_wandb_in_the_config_it_starts(pane):
    from PySide6.QtWidgets import QCheckBox, QComboBox

    titles = [pane.tabs.tabText(i) for i in range(pane.tabs.count())]
    form = pane.forms["log"]
    assert "Trackers" in titles and isinstance(form.editors["log.tensorboard"], QCheckBox)
    assert isinstance(form.editors["log.wandb.mode"], QComboBox)
    form.editors["log.tensorboard"].setChecked(True)
    form.editors["log.wandb.enabled"].setChecked(True)
    pane.forms["data"].editors["data.files"].setText("train.jsonl")
    assert pane.refresh() == {}
    from core.config.train import LogConfig

    log = LogConfig.model_validate(pane.config()["log"])
    assert (log.tensorboard, log.wandb.enabled, log.wandb.mode, log.mlflow.enabled) == (True, True, "offline", False)


def test_invalid_value_shows_the_fields_pydantic_message(pane):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as exc:
        TrainConfig(optim={"lr": 5.0})
    message = exc.value.errors()[0]["msg"]
    pane.forms["data"].editors["data.files"].setText("train.jsonl")
    pane.forms["optim"].editors["optim.lr"].setText("5")
    errors = pane.refresh()
    label = pane.forms["optim"].error_labels["optim.lr"]
    assert errors == {"optim.lr": message}
    assert label.text() == message and not label.isHidden()
    assert not pane.start_btn.isEnabled()
    pane.forms["optim"].editors["optim.lr"].setText("3e-4")
    assert pane.refresh() == {} and label.isHidden() and pane.start_btn.isEnabled()


def test_model_level_rule_is_reported(pane):
    pane.forms["model"].editors["model.num_attention_heads"].setValue(3)
    errors = pane.refresh()
    assert any("divisible by num_attention_heads" in m for m in errors.values())


def test_preset_sets_model_fields_and_exact_parameter_count(qtbot, pane):
    from core.model import MiniMindForCausalLM

    with qtbot.waitSignal(pane.presenter.estimateChanged, timeout=30_000,
                          check_params_cb=lambda e: e.get("params") == 25_829_888):
        pane.load_preset("small")
    cfg = pane.config()
    assert cfg["model"]["hidden_size"] == 512 and cfg["model"]["num_hidden_layers"] == 8
    estimate = pane.presenter.estimate(cfg)
    assert estimate["params"] == MiniMindForCausalLM(cc.get_preset("small")).num_parameters() == 25_829_888
    assert "25,829,888" in pane.est_labels["params"].text()
    assert estimate["tokens_per_step"] == cfg["batch_size"] * cfg["data"]["seq_len"]


def test_start_emits_launch_request(qtbot, pane, context, tmp_path):
    assert pane.refresh() == {"data.files": "add at least one training file (JSONL, or .txt for pretrain)"}
    assert pane.current_config() is None and not pane.start_btn.isEnabled()
    pane.forms["data"].editors["data.files"].setText(str(tmp_path / "a.jsonl"))
    cfg = pane.config()
    assert pane.current_config() == cfg
    with qtbot.waitSignal(context.launchRequested, timeout=2000) as launch:
        pane.start()
    sent = launch.args[0]
    assert sent["method"] == "pretrain" and sent["model"] == cfg["model"] and sent["n_gpus"] == 1
    saved = tmp_path / "c.json"
    pane.presenter.save(sent, saved)
    assert pane.presenter.load(saved) == json.loads(json.dumps(sent))


def test_preflight_highlights_exactly_the_assistant_tokens(qtbot, context, tmp_path, tiny_tokenizer_dir,
                                                           tiny_tokenizer):
    from studio.panes.config.presenter import ConfigPresenter

    data = tmp_path / "sft.jsonl"
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a cat?"},
            {"role": "assistant", "content": "A small furry animal."}]
    data.write_text(json.dumps({"conversations": conv}) + "\n" + "{broken\n")
    presenter = ConfigPresenter(context)
    cfg = presenter.default_config()
    cfg.update(method="sft")
    cfg["data"].update(files=[str(data)], tokenizer=str(tiny_tokenizer_dir), max_len=64)
    # pre-flight calibrates the default model in a child process (start-up included): give a loaded machine time
    with qtbot.waitSignal(presenter.preflightFinished, timeout=60_000) as done:
        presenter.preflight(cfg)
    r = done.args[0]
    loss_ids = [t for t, m in zip(r["record_ids"], r["loss_mask"]) if m]
    assert tiny_tokenizer.decode(loss_ids) == "A small furry animal.<|im_end|>\n"
    assert r["record_html"].count('data-loss="1"') == len(loss_ids) == r["loss_tokens"]
    assert any(p.startswith(f"{data}:2: (json)") for p in r["problems"])  # the lint found the broken line
    assert r["ok"] is False and r["truncation"] == 0.0


def test_first_run_guide_makes_data_and_tokenizer_then_requests_a_valid_pretrain(qtbot, context):
    from core.demo import FAST
    from studio.dialogs.first_run import FirstRunPresenter

    guide = FirstRunPresenter(context, plan=FAST)
    with qtbot.waitSignal(context.launchRequested, timeout=60_000) as launch:
        guide.start()
    cfg = dict(launch.args[0])
    assert cfg.pop("name") == "demo-pretrain" and cfg["method"] == "pretrain"
    assert (context.workspace.tokenizers_dir / "demo" / "tokenizer.json").is_file()
    assert cfg["data"]["files"] == [str(context.workspace.datasets_dir / "demo" / "pretrain.jsonl")]
    validate_train_config(cfg)  # the trainer will accept it
    guide.shutdown()


def test_starting_checkpoint_comes_with_its_run_lineage(qtbot, context):
    from studio.panes.config.view import ConfigPane

    ws, store = context.workspace, context.store
    store.create_run("pre-1", run_dir=ws.runs_dir / "pre-1", name="pre", method="pretrain")
    store.create_run("sft-1", run_dir=ws.runs_dir / "sft-1", name="chat", method="sft", parent_run_id="pre-1")
    ckpt = ws.runs_dir / "sft-1" / "checkpoints" / "step-000010"
    ckpt.mkdir(parents=True)
    (ckpt / "model_config.json").write_text("{}")
    pane = ConfigPane(context)
    qtbot.addWidget(pane)
    i = pane.init_box.findData(str(ckpt))
    assert i > 0
    pane.init_box.setCurrentIndex(i)
    assert pane.lineage.text() == "Lineage: pre (pretrain) → chat (sft) → step-000010 → this run"
    pane.method_box.setCurrentText("sft")
    pane.forms["data"].editors["data.files"].setText("train.jsonl")
    with qtbot.waitSignal(context.launchRequested, timeout=2000) as launch:
        pane.start()
    assert launch.args[0]["init"] == str(ckpt) and launch.args[0]["parent_run_id"] == "sft-1"


def test_starting_checkpoint_fixes_the_model_fields(qtbot, pane, infer_checkpoint):
    from core.model.io import read_model_config

    cfg = pane.config()
    cfg.update(method="sft", init=str(infer_checkpoint))
    pane.set_config(cfg)
    shown = pane.config()["model"]
    assert shown == read_model_config(infer_checkpoint).model_dump()
    assert not pane.forms["model"].isEnabled()
    assert pane.presenter.estimate(pane.config())["params"] > 0


def test_method_options_form_follows_the_method(pane):
    pane.forms["data"].editors["data.files"].setText("train.jsonl")
    pane.method_box.setCurrentText("grpo")
    assert "method_options.num_generations" in pane.forms["method_options"].editors
    assert pane.refresh() == {}  # the defaults, nested reward sources included, validate
    pane.forms["method_options"].editors["method_options.clip"].setText("3")
    assert pane.refresh() == {"method_options.clip": "Input should be less than or equal to 1"}
    pane.method_box.setCurrentText("lora")
    assert pane.refresh() == {"": "method 'lora' needs `init` (the checkpoint or run dir to start from)"}
    assert "needs `init`" in pane.notice.text() and not pane.start_btn.isEnabled()


def _sft_file(path, n=40):
    conv = [{"role": "user", "content": "What is a cat?"}, {"role": "assistant", "content": "A small furry animal."}]
    path.write_text("".join(json.dumps({"conversations": conv}) + "\n" for _ in range(n)))
    return path


def test_preflight_estimates_wall_time_from_a_cached_calibration_and_prices_it(qtbot, context, tmp_path,
                                                                               tiny_tokenizer_dir):
    from studio.panes.config.presenter import ConfigPresenter

    presenter = ConfigPresenter(context)
    cfg = presenter.default_config()
    cfg.update(method="sft", batch_size=4, epochs=2, max_steps=None, device="cpu", precision="fp32")
    cfg["data"].update(files=[str(_sft_file(tmp_path / "sft.jsonl"))], tokenizer=str(tiny_tokenizer_dir), max_len=64)
    with qtbot.waitSignal(presenter.preflightFinished, timeout=60_000) as first:
        presenter.preflight(cfg)
    t = first.args[0]["time"]
    assert (t["records"], t["steps"], t["cached"]) == (40, 20, False)  # 2 epochs × 40 records / batch 4
    plan = _dry_run_plan(cfg, tmp_path)  # pre-flight renders the run plan, and its steps are the run's
    assert t["steps"] == plan.total_steps
    assert first.args[0]["precision"] == f"{plan.precision} ({plan.precision_reason}); " \
        f"torch.compile off ({plan.compile_for(None)[1]})"
    assert t["seconds"] == pytest.approx(20 * t["step_seconds"]) and "cost" not in t
    assert (context.workspace.root / "calibration.json").is_file()  # cached per machine and settings
    presenter.price_per_hour = 3.0
    with qtbot.waitSignal(presenter.preflightFinished, timeout=60_000) as second:
        presenter.preflight(cfg)
    again = second.args[0]["time"]
    assert again["cached"] and again["step_seconds"] == t["step_seconds"]
    assert again["cost"] == pytest.approx(again["seconds"] / 3600 * 3.0)
    presenter.shutdown()


def _dry_run_plan(config: dict, tmp_path):
    """`minimind train --dry-run`'s plan of a form's config."""
    from core.config.train import TrainConfig
    from core.train.plan import plan_from_setup

    body = {k: v for k, v in config.items() if k in TrainConfig.model_fields}
    body["data"] = dict(body["data"], cache_dir=str(tmp_path / "cache"))
    return plan_from_setup(TrainConfig.model_validate(body), log=lambda message: None)


def test_a_method_that_generates_is_not_timed(tiny_tokenizer_dir, tmp_path, context):
    from core.tokenizer import MiniMindTokenizer
    from studio.panes.config.preflight import time_estimate

    cfg = {"method": "grpo", "model": {}, "data": {"files": []}}
    t = time_estimate(cfg, {"per_gpu_batch": 1, "seq": 8}, "rl", MiniMindTokenizer.load(tiny_tokenizer_dir),
                      context.workspace, lambda: False)
    assert "generates" in t["error"]


def test_run_detail_sets_the_time_estimate_against_the_real_time(context):
    from studio.panes.config.presenter import ConfigPresenter
    from studio.panes.runs.presenter import RunsPresenter

    presenter = ConfigPresenter(context)
    cfg = presenter.default_config()
    cfg["data"]["files"] = ["train.jsonl"]
    from studio.store.run_store import time_estimate_key

    presenter.time_estimates[time_estimate_key(cfg)] = {"seconds": 110.0, "steps": 10, "step_seconds": 11.0,
                                                        "cost": 0.5}
    launched = presenter.launch_config(cfg)  # what Start sends: the estimate is kept for the run
    launched.pop("n_gpus")
    run_config = dict(launched, run_dir="/ws/runs/r1")  # as the run manager writes it
    context.store.create_run("r1", run_dir="/ws/runs/r1", config=run_config, status="completed")
    context.store.update_run("r1", started_at=1000.0, finished_at=1100.0)
    assert RunsPresenter(context).detail("r1")["summary"]["time"] == "took 1:40, estimated 1:50 (cost 0.50), error +10%"


def test_a_saved_config_without_some_method_options_shows_their_defaults(pane):
    """A GRPO run's config.json holds only the options its author set; loading it must not blank the others."""
    from core.config.load import validate_train_config

    cfg = validate_train_config({"method": "grpo", "init": "/tmp/run", "model": "tiny",
                                 "data": {"files": ["rl.jsonl"]},
                                 "method_options": {"num_generations": 4, "max_new_tokens": 24}}).model_dump(mode="json")
    pane.set_config(cfg)
    assert pane.refresh() == {}
    options = pane.config()["method_options"]
    assert options["num_generations"] == 4 and options["rewards"]["sources"][0]["type"] == "answer"
