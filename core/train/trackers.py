"""External trackers (TensorBoard, wandb, MLflow): sinks of the trainer's event stream.

Each tracker is fed the very events that go to events.jsonl (`EventLog(..., sinks=...)`, rank 0 only), so the
studio's curves, `events.jsonl` and every tracker show the same numbers at the same steps. A tracker opens on
`run_started` (its config, run id and resume step are in it), logs `metric` and `eval` events, and closes on
`run_finished`. A tracker never fails a run: the event log drops one that raises, with one `warning` event
(`EventLog._feed`). Configured by `TrainConfig.log` (core/config/train.py); docs/training.md#trackers.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the studio reads TENSORBOARD_DIR from here without pulling the config schema in
    from core.config.train import LogConfig

TENSORBOARD_DIR = "tensorboard"   # <run_dir>/tensorboard
MLFLOW_DIR = "mlruns"             # <run_dir>/mlruns, the default MLflow file store
FINISHED = {"completed": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}  # run_finished status → MLflow


class Tracker:
    """The sink interface: `handle(event)` per event; `close()` once (also after a failed `handle`)."""

    name = "tracker"
    option = "log"  # the config key that turned it on, named in the warning when it fails

    def handle(self, event: dict) -> None:
        kind = event["type"]
        if kind == "run_started":
            self.open(event)
        elif kind in ("metric", "eval"):
            scalars = scalar_metrics(event)
            if scalars:
                self.log(scalars, event["step"])
        elif kind == "run_finished":
            self.finish(event["status"])

    def open(self, event: dict) -> None: ...

    def log(self, scalars: dict[str, float], step: int) -> None: ...

    def finish(self, status: str) -> None:
        self.close()

    def close(self) -> None: ...

    def describe_failure(self, exc: BaseException) -> str:
        if isinstance(exc, ImportError):
            return f"{self.option}: {self.name} is not installed ({exc}); install it to log there"
        return f"{self.option}: {self.name} failed ({type(exc).__name__}: {exc})"


def scalar_metrics(event: dict) -> dict[str, float]:
    """The finite numbers of a `metric` or `eval` event (`epoch` included); NaN/Inf are null in events.jsonl."""
    values = dict(event.get("metrics") or {})
    if event["type"] == "metric" and "epoch" in event:
        values["epoch"] = event["epoch"]
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class TensorBoardTracker(Tracker):
    """Event files under <run_dir>/tensorboard, written by torch's SummaryWriter (needs the tensorboard package).
    A resumed run purges the steps after its checkpoint from earlier files (SummaryWriter's purge_step), so a
    crash between checkpoint and kill leaves no doubled curve."""

    name, option = "TensorBoard", "log.tensorboard"

    def __init__(self, log_dir: Path):
        self.log_dir, self.writer = Path(log_dir), None

    def open(self, event: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        purge = event["step"] + 1 if event.get("resumed_from") is not None else None  # steps it logs again
        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge, flush_secs=5)
        config = json.dumps(event.get("config") or {}, indent=2)
        self.writer.add_text("config", "```json\n" + config + "\n```", event["step"])

    def log(self, scalars: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()


class WandbTracker(Tracker):
    """A wandb run with the trainer's run id (a resumed run continues it), offline by default: files under
    <run_dir>/wandb, uploaded later with `wandb sync`. Console capture is off: stdout is the event stream."""

    name, option = "wandb", "log.wandb"

    def __init__(self, run_dir: Path, options):
        self.run_dir, self.options, self.run = Path(run_dir), options, None

    def open(self, event: dict) -> None:
        import wandb

        self.run = wandb.init(
            project=self.options.project, entity=self.options.entity, name=event.get("run_id"),
            id=re.sub(r"[^A-Za-z0-9_-]", "-", str(event.get("run_id") or "run"))[:64], resume="allow",
            dir=str(self.run_dir), mode=self.options.mode, config=event.get("config") or {},
            settings=wandb.Settings(console="off", silent=True))

    def log(self, scalars: dict[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log(scalars, step=step)

    def finish(self, status: str) -> None:
        run, self.run = self.run, None
        if run is not None:
            run.finish(exit_code=0 if status == "completed" else 1)

    def close(self) -> None:
        self.finish("failed")


class MlflowTracker(Tracker):
    """An MLflow run in an experiment (default: a file store at <run_dir>/mlruns), through `MlflowClient` alone so
    no global MLflow state is touched. The config goes in as flattened params, each metric with its step."""

    name, option = "MLflow", "log.mlflow"

    def __init__(self, run_dir: Path, options):
        self.run_dir, self.options = Path(run_dir), options
        self.client, self.run_id = None, None

    def tracking_uri(self) -> str:
        uri = self.options.tracking_uri or str(self.run_dir / MLFLOW_DIR)
        return uri if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", uri) and not re.match(r"^[A-Za-z]:[\\/]", uri) \
            else Path(uri).resolve().as_uri()

    def open(self, event: dict) -> None:
        uri = self.tracking_uri()
        if uri.startswith("file:"):  # MLflow 3 keeps its file store behind this switch ("maintenance mode")
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(self.options.experiment)
        experiment = found.experiment_id if found else self.client.create_experiment(self.options.experiment)
        run_name = str(event.get("run_id") or "run")
        previous = self.client.search_runs([experiment], f"tags.`mlflow.runName` = '{_quote(run_name)}'",
                                           max_results=1) if event.get("resumed_from") is not None else []
        if previous:  # a resumed run continues its MLflow run
            self.run_id = previous[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            return
        self.run_id = self.client.create_run(experiment, run_name=run_name).info.run_id
        params = [Param(k, v) for k, v in flatten(event.get("config") or {}).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log(self, scalars: dict[str, float], step: int) -> None:
        if self.run_id is not None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in scalars.items()])

    def finish(self, status: str) -> None:
        run_id, self.run_id = self.run_id, None
        if run_id is not None:
            self.client.set_terminated(run_id, FINISHED.get(status, "FAILED"))

    def close(self) -> None:
        self.finish("failed")


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """Nested config → {"optim.lr": "0.0005", "data.files": '["a.jsonl"]'} (MLflow params are short strings)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            out[name] = text[:6000]  # MLflow's limit on a param value
    return out


def open_trackers(options: LogConfig, run_dir: str | Path) -> list[Tracker]:
    """The trackers `options` turns on, not yet opened (each opens on `run_started`)."""
    run_dir = Path(run_dir)
    trackers: list[Tracker] = []
    if options.tensorboard:
        trackers.append(TensorBoardTracker(run_dir / TENSORBOARD_DIR))
    if options.wandb.enabled:
        trackers.append(WandbTracker(run_dir, options.wandb))
    if options.mlflow.enabled:
        trackers.append(MlflowTracker(run_dir, options.mlflow))
    return trackers
