"""Every method starts from its own defaults (core.methods): a config that leaves a field out gets the method's
value, scaled to the parent run's rate or the model's width; pre-flight says where each value comes from, and the
Config pane switches untouched fields with the method and warns about values far from the default."""
from __future__ import annotations

import json

import pytest

from core.config.load import validate_train_config
from core.methods import (DEFAULT_FIELDS, UPSTREAM_LR, all_methods, default_sources, default_warnings,
                          resolve_defaults)


def _run_folder(tmp_path, method: str, lr: float):
    run = tmp_path / f"{method}-run"
    (run / "checkpoints" / "step-10").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"method": method, "optim": {"lr": lr}, "model": "tiny"}))
    return run


def test_every_method_declares_every_default_and_upstreams_rate():
    for spec in all_methods():
        assert set(DEFAULT_FIELDS) <= set(spec.defaults), spec.name
        assert spec.defaults["optim.lr"] == UPSTREAM_LR[spec.name]


@pytest.mark.parametrize("method", ["sft", "dpo", "grpo", "agent", "distill", "lora"])
def test_a_config_that_leaves_the_rate_out_gets_the_methods_and_a_set_rate_is_kept(method):
    opts = {"teacher": "t"} if method == "distill" else {}
    base = {"method": method, "method_options": opts, **({"init": "x"} if method == "lora" else {})}
    assert validate_train_config(base).optim.lr == UPSTREAM_LR[method]
    assert validate_train_config({**base, "optim": {"lr": 0.01}}).optim.lr == 0.01
    if method in ("grpo", "agent"):  # upstream's RL batch: 2 prompts a step
        assert validate_train_config(base).batch_size == 2


def test_fine_tuning_keeps_upstreams_ratio_to_the_parent_runs_rate(tmp_path):
    sft = _run_folder(tmp_path, "sft", 5e-4)
    for init in (sft, sft / "checkpoints", sft / "checkpoints" / "step-10"):
        lr, source = resolve_defaults("agent", None, str(init))["optim.lr"]
        assert lr == pytest.approx(5e-4 * 3e-7 / 1e-5) and "parent run" in source
    assert validate_train_config({"method": "grpo", "init": str(sft)}).optim.lr == pytest.approx(1.5e-5)
    assert validate_train_config({"method": "dpo", "init": str(sft)}).optim.lr == pytest.approx(2e-6)
    # no run folder around the checkpoint (an imported model): the model's width decides
    assert resolve_defaults("grpo", "tiny", str(tmp_path))["optim.lr"][0] == pytest.approx(6e-7)
    assert resolve_defaults("grpo", "small", None)["optim.lr"][0] == 3e-7


def test_preflight_names_where_each_value_comes_from_and_warns_far_from_the_default(tmp_path):
    sft = _run_folder(tmp_path, "sft", 5e-4)
    cfg = {"method": "grpo", "init": str(sft), "batch_size": 2, "optim": {"lr": 1.5e-5, "grad_clip": 1.0}}
    sources = default_sources(cfg)
    assert "parent run" in sources["optim.lr"] and sources["batch_size"] == "grpo default"
    assert default_warnings(cfg) == {}
    # issue 23's benchmark rate: 1/5 of the SFT rate
    warn = default_warnings({**cfg, "optim": {"lr": 1e-4}})["optim.lr"]
    assert "0.2× the rate the init run was trained at" in warn and "1.5e-05" in warn
    sources = default_sources({**cfg, "optim": {"lr": 1e-4}})
    assert sources["optim.lr"] == "you"
    warn = default_warnings({"method": "sft", "model": "small", "batch_size": 1})["batch_size"]
    assert warn == "1 is 1/16 of the default 16 (sft default)"


def test_the_config_pane_switches_untouched_fields_with_the_method_and_keeps_edited_ones(qtbot, context):
    pytest.importorskip("PySide6")
    from studio.panes.config.view import ConfigPane

    pane = ConfigPane(context)
    qtbot.addWidget(pane)
    optim, run = pane.forms["optim"], pane.forms["run"]
    lr, batch = optim.editors["optim.lr"], run.editors["batch_size"]
    assert float(lr.text()) == pytest.approx(1e-3)  # pretrain on the tiny preset: upstream's 5e-4 × 2
    pane.method_box.setCurrentText("grpo")
    assert float(lr.text()) == pytest.approx(6e-7) and batch.value() == 2
    lr.setText("0.01")  # the user's own rate, 16667× the default
    pane.forms["data"].editors["data.files"].setText("train.jsonl")
    pane.refresh()
    label = optim.error_labels["optim.lr"]
    assert not label.isHidden() and "the default 6e-07" in label.text() and label.property("role") == "warning"
    assert pane.start_btn.isEnabled()  # a warning, not an error
    pane.method_box.setCurrentText("dpo")
    assert lr.text() == "0.01" and batch.value() == 16  # edited kept, untouched switched
    with qtbot.waitSignal(pane.presenter.estimateChanged, timeout=60_000):  # let the estimate thread finish
        pane.refresh()
