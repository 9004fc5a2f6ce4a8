"""The studio's side of sweeps: trials linked to their sweep in the store and the lineage, the sweep view drawing a
real Optuna study (trials against their objective, Optuna's importances), and the Config pane's Sweep… form
building a spec that `minimind sweep`'s own checks accept."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
optuna = pytest.importorskip("optuna")


def _trial_folder(runs_dir: Path, name: str, sweep_id: str, sweep_dir: Path, trial: int) -> Path:
    from core.event_schema import make_event

    run_dir = runs_dir / name
    run_dir.mkdir(parents=True)
    config = {"method": "pretrain", "sweep": {"id": sweep_id, "dir": str(sweep_dir), "trial": trial,
                                              "params": {"optim.lr": 1e-3 * (trial + 1)}}}
    events = [make_event("run_started", 0, run_id=name, method="pretrain", config=config, world_size=1,
                         device="cpu", precision="fp32", precision_reason="", params=1, trainable_params=1,
                         dataset_tokens=None, total_steps=4, steps_per_epoch=4, resumed_from=None, pid=0,
                         pid_start_ticks=None, ranks=[]),
              make_event("run_finished", 4, status="completed", message="4 steps")]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run_dir


def _study(sweep_dir: Path, sweep_id: str = "demo-sweep") -> None:
    """A finished study as `minimind sweep` leaves it: sweep.json and study.db. The value depends on x alone."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    sweep_dir.mkdir(parents=True)
    (sweep_dir / "sweep.json").write_text(json.dumps({"id": sweep_id, "n_trials": 13, "spec": {
        "objective": {"metric": "eval/loss", "direction": "minimize"}}}))
    study = optuna.create_study(study_name=sweep_id, storage=f"sqlite:///{sweep_dir / 'study.db'}")
    dist = {"x": FloatDistribution(0, 1), "y": FloatDistribution(0, 1)}
    for i in range(12):  # y a permutation of x: uncorrelated with it
        x, y = i / 11, (i * 5 % 12) / 11
        study.add_trial(create_trial(params={"x": x, "y": y}, distributions=dist, value=round(5.0 + 3 * x, 4),
                                     user_attrs={"run_dir": f"/ws/runs/{sweep_id}-t{i:03d}"}))
    study.add_trial(create_trial(params={"x": 0.95, "y": 0.3}, distributions=dist, state=TrialState.PRUNED,
                                 intermediate_values={2: 7.9}, user_attrs={"reason": "pruned at step 2"}))


def test_trials_are_linked_to_their_sweep_in_the_store_and_drawn_under_it_in_the_lineage(store, workspace, tmp_path):
    from studio.panes.runs.lineage_presenter import lineage_graph
    from studio.store import import_run_dir

    sweep_dir = tmp_path / "sweep"
    for trial in (0, 1):
        import_run_dir(store, _trial_folder(workspace.runs_dir, f"s1-t00{trial}", "s1", sweep_dir, trial))
    assert [(t.run_id, t.sweep_id, t.sweep_dir, t.trial) for t in store.sweep_trials()] == [
        ("s1-t000", "s1", str(sweep_dir), 0), ("s1-t001", "s1", str(sweep_dir), 1)]
    graph = lineage_graph(store)
    assert graph.nodes["sweep:s1"].kind == "sweep" and graph.nodes["sweep:s1"].detail == "2 trials · sweep"
    assert {(e.source, e.target, e.kind, e.label) for e in graph.edges} == {
        ("sweep:s1", "run:s1-t000", "sweep", "trial 0"), ("sweep:s1", "run:s1-t001", "sweep", "trial 1")}


def test_the_sweep_view_shows_each_trial_against_its_objective_and_optunas_importances(qtbot, context, tmp_path):
    from studio.panes.config.sweep_presenter import SweepPresenter
    from studio.panes.config.sweep_view import SweepView

    sweep_dir = tmp_path / "sweep"
    _study(sweep_dir)
    presenter = SweepPresenter(context)
    view = SweepView(presenter)
    qtbot.addWidget(view)
    with qtbot.waitSignal(presenter.summaryReady, timeout=60_000):
        view.reload_sweeps(select=sweep_dir)
    summary = view.summary
    assert view.table.rowCount() == 13
    column = {view.table.horizontalHeaderItem(c).text(): c for c in range(view.table.columnCount())}
    assert [view.table.item(r, column["eval/loss"]).text() for r in (0, 1, 11, 12)] == \
        ["5", "5.273", "8", "7.9"]  # a pruned trial shows its last reported value
    assert view.table.item(12, column["state"]).text() == "pruned"
    assert view.table.item(12, column["note"]).text() == "pruned at step 2"
    assert len(view.scatter.data) == 13
    assert list(view.best_line.getData()[1]) == [5.0] * 12  # best so far over the finished trials
    assert "best: trial 0, eval/loss 5" in view.header.text() and "13/13 trials" in view.header.text()
    # the importances are Optuna's own, in its order: the objective depends on x alone
    assert list(summary.importances) == ["x", "y"] and summary.importances["x"] > 0.5
    assert [view.importance.item(r, 0).text() for r in range(2)] == ["x", "y"]
    # the trials' run folders are handed to the run library to import (none exists here: nothing is asked)
    assert presenter.import_trials(summary) == [] and context.store.list_runs() == []


def test_the_sweep_form_builds_a_spec_that_minimind_sweeps_checks_accept(qtbot, context):
    from studio.panes.config.presenter import ConfigPresenter
    from studio.panes.config.sweep_presenter import SweepPresenter
    from studio.panes.config.sweep_view import SweepForm

    config_presenter = ConfigPresenter(context)
    config = config_presenter.default_config()
    config.update(data={**config["data"], "files": ["/data/pretrain.jsonl"]})
    fields = config_presenter.model_fields() + config_presenter.train_fields()
    presenter = SweepPresenter(context)
    form = SweepForm(presenter, fields, config)
    qtbot.addWidget(form)
    form.add_param("optim.lr")
    form.add_param("optim.schedule")
    spec = form.spec()
    lr = config["optim"]["lr"]
    assert spec["parameters"]["optim.lr"] == pytest.approx({"type": "float", "low": lr / 10, "high": lr * 10,
                                                            "log": True})
    assert spec["parameters"]["optim.schedule"] == {"type": "categorical",
                                                    "choices": ["cosine", "minimind", "constant"]}
    assert spec["objective"]["metric"] == "loss"  # the config has no eval data: the training loss
    assert "n_gpus" not in spec["base"] and "sweep" not in spec["base"]
    assert presenter.check(spec) == ""
    form.add_param("batch_size")
    form.table.cellWidget(2, 2).setValue(0)
    assert "parameters.batch_size: the value 0 makes an invalid config" in presenter.check(form.spec())

    # one run per device: no sweep while a run trains here, nor beside another sweep (the lock its process holds)
    from core.sweep.runner import _locked

    run_dir = context.workspace.runs_dir / "training"
    run_dir.mkdir()
    context.store.create_run("training", run_dir=run_dir, status="running")
    assert "Run training is training on this device" in presenter.check(spec)
    context.store.update_run("training", status="completed")
    assert presenter.check(spec) == ""
    with _locked(presenter.sweeps_dir / "other-sweep"):
        assert "Sweep other-sweep is running on this device" in presenter.check(spec)
    assert presenter.check(spec) == ""


def test_the_config_panes_sweep_button_opens_the_dialog_over_the_config_shown(qtbot, context, tmp_path):
    from studio.panes.config.view import ConfigPane

    pane = ConfigPane(context)
    qtbot.addWidget(pane)
    data = tmp_path / "pretrain.jsonl"
    data.write_text('{"text": "hello"}\n')
    config = pane.presenter.default_config()
    config["data"] = {**config["data"], "files": [str(data)]}
    pane.set_config(config)
    dialog = pane.open_sweep()
    qtbot.addWidget(dialog)
    assert dialog.form.config == pane.current_config()
    assert "optim.lr" in dialog.form.fields and "sweep" not in dialog.form.fields
