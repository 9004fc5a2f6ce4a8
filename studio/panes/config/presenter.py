"""Logic of the Config pane: schema-driven fields, validation messages per field, presets, estimates, launch.

The forms come from `core.config`'s pydantic models (`TrainConfig`, `ModelConfig`, the methods' option models);
validation is pydantic's, parameter counts are the model's own (`num_parameters()` on a meta-device model).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from core.config.model import PRESETS
from core.config.paths import get_path
from studio.panes.config.schema import FieldSpec, errors_by_field, fields_from_schema
from studio.threads import Task
from studio.store.model_sources import list_checkpoints

PRESET_NAMES = tuple(PRESETS)  # core.config.model is the one list of presets
# Fields shown in their own widgets (method picker, checkpoint picker) instead of the generated form.
# run_dir: the run manager picks it; sweep: `minimind sweep` sets it on its trials (the Sweep… dialog)
OWN_WIDGETS = ("method", "init", "model", "method_options", "run_dir", "sweep")


def method_names() -> tuple[str, ...]:
    """The methods the picker offers, in the registry's order (core/methods.py)."""
    from core.methods import method_names as names

    return names()


def method_help(method: str) -> str:
    from core.methods import get_method

    return get_method(method).help


def method_options_model(method: str):
    """The pydantic model of `method_options` for a method (None when it has none or is unknown)."""
    from core.methods import get_method

    try:
        return get_method(method).options
    except ValueError:
        return None


class ConfigPresenter(QObject):
    errorsChanged = Signal(dict)          # {"dotted.key": message}
    estimateChanged = Signal(dict)
    preflightFinished = Signal(object)    # dict, see config_preflight.run_preflight
    preflightFailed = Signal(str)
    launched = Signal(dict)

    def __init__(self, context, parent: QObject | None = None):
        super().__init__(parent)
        # pydantic: imported when the Config pane is first built, not at start-up
        from core.config import model as model_schema
        from core.config import train as train_schema

        self.context = context
        self.model_schema, self.train_schema = model_schema, train_schema
        self.errors: dict[str, str] = {}
        self._params_cache: dict[str, tuple[int, int]] = {}
        self._task: Task | None = None
        self._estimate_seq = 0
        self.price_per_hour: float | None = None  # turns pre-flight's time estimate into a cost
        self.time_estimates: dict[str, dict] = {}  # time_estimate_key(config) -> pre-flight's "time"

    # ---- schema ----------------------------------------------------------------------------------
    def model_fields(self) -> list[FieldSpec]:
        return fields_from_schema(self.model_schema.ModelConfig.model_json_schema(), prefix=("model",))

    def train_fields(self) -> list[FieldSpec]:
        return fields_from_schema(self.train_schema.TrainConfig.model_json_schema(), skip=OWN_WIDGETS)

    def method_fields(self, method: str) -> list[FieldSpec]:
        model = method_options_model(method)
        if model is None:
            return []
        return fields_from_schema(model.model_json_schema(), prefix=("method_options",))

    def method_defaults(self, method: str) -> dict:
        """`method_options` filled with the method's defaults (lists and nested settings included)."""
        model = method_options_model(method)
        try:
            return {"method_options": model().model_dump(mode="json")} if model is not None else {}
        except Exception:  # a model with required fields has no full default
            return {}

    @staticmethod
    def switched_defaults(config: dict, old_method: str | None, old_init: str | None) -> dict[str, Any]:
        """{dotted field: value} to show after the method or the starting checkpoint changed: each field that still
        holds the old method's default (for the old start point) takes the new one; edited fields are kept."""
        from core.methods import method_names as names
        from core.methods import resolve_defaults

        model = config.get("model")
        new = resolve_defaults(config.get("method", "pretrain"), model, config.get("init"))
        old = resolve_defaults(old_method, model, old_init) if old_method in names() else {}
        out = {}
        for path, (value, _) in new.items():
            current = get_path(config, tuple(path.split(".")), None)
            before = old.get(path, (None,))[0]
            untouched = current is None or before is None or current == before or (
                isinstance(current, float) and isinstance(before, float) and math.isclose(current, before,
                                                                                           rel_tol=1e-6))
            if untouched and current != value:
                out[path] = value
        return out

    @staticmethod
    def default_warnings(config: dict) -> dict[str, str]:
        """{dotted field: warning} for values far from the method's default (core.methods.default_warnings)."""
        from core.methods import default_warnings

        try:
            return default_warnings(config)
        except Exception:  # a half-typed form: the field errors say what is wrong
            return {}

    @staticmethod
    def section_of(spec: FieldSpec) -> str:
        """model / data / optim / method / log / run: the group a field is drawn in."""
        head = spec.path[0]
        if head in ("model", "data", "optim", "log"):
            return head
        if head == "method_options":
            return "method"
        return "run"

    def preset(self, name: str) -> dict:
        return self.model_schema.get_preset(name).model_dump()

    def default_config(self) -> dict:
        cfg = self.train_schema.TrainConfig(model="tiny").model_dump()  # the defaults scaled to the tiny preset
        cfg["model"] = self.preset("tiny")
        cfg["n_gpus"] = 1
        return cfg

    # ---- validation ------------------------------------------------------------------------------
    def validate(self, config: dict) -> dict[str, str]:
        """{"dotted.key": pydantic message} for every problem; {} when the config is valid."""
        from pydantic import ValidationError

        errors: dict[str, str] = {}
        body = {k: v for k, v in config.items() if k not in ("model", "n_gpus", "name", "parent_run_id")}
        body["model"] = None  # validated on its own below, so its errors carry plain field paths
        body["method_options"] = {}
        try:
            self.train_schema.TrainConfig.model_validate(body)
        except ValidationError as exc:
            errors.update(errors_by_field(exc))
        model = config.get("model")
        if isinstance(model, dict):
            try:
                self.model_schema.ModelConfig.model_validate(model)
            except ValidationError as exc:
                errors.update(errors_by_field(exc, ("model",)))
        options_model = method_options_model(config.get("method", ""))
        if options_model is not None:
            try:  # the validator itself: core's model_validate re-raises as a one-string TrainConfigError
                options_model.__pydantic_validator__.validate_python(config.get("method_options") or {})
            except ValidationError as exc:
                errors.update(errors_by_field(exc, ("method_options",)))
        if not (config.get("data") or {}).get("files"):
            errors["data.files"] = "add at least one training file (JSONL, or .txt for pretrain)"
        n_gpus = config.get("n_gpus", 1)
        if not isinstance(n_gpus, int) or n_gpus < 1:
            errors["n_gpus"] = "must be a whole number ≥ 1"
        elif config.get("batch_size", 1) % n_gpus:
            errors["batch_size"] = f"the global batch ({config.get('batch_size')}) must divide by the {n_gpus} GPUs"
        self.errors = errors
        self.errorsChanged.emit(errors)
        return errors

    # ---- estimates -------------------------------------------------------------------------------
    def parameter_count(self, model: dict) -> tuple[int, int]:
        """(total, active per token), exact: the model's own count on a meta-device instance (no memory)."""
        key = json.dumps(model, sort_keys=True)
        if key not in self._params_cache:
            import torch
            from core.model import MiniMindForCausalLM

            with torch.device("meta"):
                m = MiniMindForCausalLM(self.model_schema.ModelConfig.model_validate(model))
            self._params_cache[key] = (m.num_parameters(), m.num_active_parameters())
        return self._params_cache[key]

    def estimate(self, config: dict) -> dict:
        """Parameters, training memory per GPU and tokens per optimizer step (emits estimateChanged too)."""
        result = self._estimate(config)
        self.estimateChanged.emit(result)
        return result

    def _estimate(self, config: dict) -> dict:
        from pydantic import ValidationError

        try:
            total, active = self.parameter_count(config["model"])
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            return {"error": f"fix the model fields first ({type(exc).__name__})"}
        from core.train.plan import estimate_memory

        result = estimate_memory(config, total, self._teacher_params(config), on_cuda=_on_cuda(config))
        result.update(params=total, active_params=active)
        return result

    def _teacher_params(self, config: dict) -> int:
        """Parameters of the method's teacher (0 without one, or while its path does not name a checkpoint)."""
        from core.methods import get_method

        path = (config.get("method_options") or {}).get("teacher")
        if not get_method(config.get("method", "pretrain")).teacher or not path:
            return 0
        try:
            from core.model import io

            return self.parameter_count(io.read_model_config(io.resolve_checkpoint(path)).model_dump())[0]
        except Exception:  # not (yet) a checkpoint: the estimate leaves the teacher out
            return 0

    def request_estimate(self, config: dict) -> None:
        """Estimate on a worker thread (the first one imports torch: seconds); only the latest answer is shown."""
        self._estimate_seq += 1
        seq = self._estimate_seq
        task = Task(lambda progress, cancelled: (seq, self._estimate(config)), parent=self)
        task.succeeded.connect(self._on_estimate)
        task.start()

    def _on_estimate(self, answer: tuple) -> None:
        seq, result = answer
        if seq == self._estimate_seq:
            self.estimateChanged.emit(result)

    # ---- checkpoints, files, launch --------------------------------------------------------------
    def checkpoints(self):
        return list_checkpoints(self.context)

    def parent_run_of(self, checkpoint: str | None) -> str | None:
        for src in self.checkpoints():
            if checkpoint and src.path == checkpoint:
                return src.run_id
        return None

    def checkpoint_model(self, checkpoint: str | None) -> dict | None:
        """The ModelConfig of a starting checkpoint (the trainer ignores the model fields when `init` is set)."""
        if not checkpoint:
            return None
        try:
            from core.model.io import read_model_config, resolve_checkpoint
            return read_model_config(resolve_checkpoint(checkpoint)).model_dump()
        except Exception:  # unreadable or not a checkpoint: keep the form's values, pre-flight will say why
            return None

    def lineage_text(self, checkpoint: str | None) -> str:
        """"pretrain-1 (pretrain) → sft-2 (sft) → step-000200" for a checkpoint of a stored run."""
        if not checkpoint:
            return "Random initialisation"
        run_id = self.parent_run_of(checkpoint)
        chain = self.context.store.lineage(run_id) if run_id else []
        names = [f"{r.name or r.id} ({r.method})" for r in chain]
        return " → ".join(names + [Path(checkpoint).name]) + " → this run"

    @staticmethod
    def save(config: dict, path: str | Path) -> None:
        Path(path).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @staticmethod
    def load(path: str | Path) -> dict:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config is a JSON object, got {type(data).__name__}")
        return data

    def preflight(self, config: dict) -> Task:
        from studio.panes.config.preflight import run_preflight

        if self._task is not None and self._task.is_running():
            self._task.cancel_and_wait()
        ws = self.context.workspace

        price = self.price_per_hour

        def job(progress, cancelled):
            result = run_preflight(config, self._estimate(config), progress, cancelled, workspace=ws,
                                   price_per_hour=price)
            if (result.get("time") or {}).get("seconds"):
                from studio.store.run_store import time_estimate_key

                self.time_estimates[time_estimate_key(config)] = result["time"]
            return result

        self._task = Task(job, parent=self)
        self._task.succeeded.connect(self.preflightFinished)
        self._task.failed.connect(self.preflightFailed)
        return self._task.start()

    def launch_config(self, config: dict) -> dict | None:
        """The dict to launch (with parent_run_id from the starting checkpoint's run), or None when invalid."""
        if self.validate(config):
            return None
        config = dict(config)
        if config.get("init"):  # the run manager records `init` as the run's starting checkpoint
            parent = self.parent_run_of(config["init"])
            if parent:
                config.setdefault("parent_run_id", parent)
        self._keep_time_estimate(config)
        return config

    def launch(self, config: dict) -> bool:
        """Validate, then ask the studio to start the run (context.launchRequested)."""
        config = self.launch_config(config)
        if config is None:
            return False
        self.context.launchRequested.emit(config)
        self.launched.emit(config)
        return True

    def _keep_time_estimate(self, config: dict) -> None:
        """Store pre-flight's time estimate of this config, so the run's detail can set it against the real time."""
        from studio.store.run_store import time_estimate_key

        estimate = self.time_estimates.get(time_estimate_key(config))
        if estimate:
            self.context.store.add_time_estimate(config, estimate["seconds"],
                                                 {k: v for k, v in estimate.items() if k != "seconds"})

    def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel_and_wait()


def _on_cuda(config: dict) -> bool:
    """Whether the run will train on a GPU: device cuda, or auto on a machine whose torch sees one. torch is asked
    only when already imported: importing it here could stall the UI thread for seconds."""
    device = config.get("device", "auto")
    if device != "auto":
        return device == "cuda"
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available())
