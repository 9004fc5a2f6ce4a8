"""The sweep spec: a YAML or JSON file that says which config fields to vary, how to pick their values, what to
optimise and how many trials to run. Validated once here (pydantic), with errors that name the file, the line and
the field; the runner (core/sweep/runner.py) trusts what `load_sweep_spec` returns.

```yaml
name: lr-warmup
base: base.json            # a training config file (relative to this file), or the config inline
parameters:
  optim.lr: {type: float, low: 1e-4, high: 1e-2, log: true}
  optim.warmup_steps: {type: int, low: 0, high: 100, step: 20}
  batch_size: {type: categorical, choices: [8, 16]}
sampler: tpe               # grid | random | tpe
n_trials: 20
objective: {metric: eval/loss, direction: minimize}
pruner: {kind: median, startup_trials: 2, warmup_steps: 0}
parallel: 1
```
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.config.errors import TrainConfigError, format_validation_error
from core.config.load import apply_overrides, validate_train_config
from core.config.paths import has_path

GRID_LIMIT = 10_000  # grid points; a spec past this is a typo in a step, not a plan


class SweepSpecError(ValueError):
    """A spec that cannot be run: the message names the file, the line and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloatParam(_Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = Field(False, description="Sample on a log scale (learning rates); low must be > 0.")
    step: float | None = Field(None, gt=0, description="Only multiples of step above low (needed for a grid).")

    @model_validator(mode="after")
    def _range(self) -> "FloatParam":
        _check_range(self.low, self.high, self.log, self.step)
        return self


class IntParam(_Strict):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _range(self) -> "IntParam":
        _check_range(self.low, self.high, self.log, self.step if self.step != 1 else None)
        return self


class ChoiceParam(_Strict):
    type: Literal["categorical"]
    choices: list[Union[bool, int, float, str, None]] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> "ChoiceParam":
        if len({json.dumps(c) for c in self.choices}) != len(self.choices):
            raise ValueError(f"choices repeat a value: {self.choices}")
        return self


Param = Annotated[Union[FloatParam, IntParam, ChoiceParam], Field(discriminator="type")]


def _check_range(low, high, log: bool, step) -> None:
    if low > high:
        raise ValueError(f"low ({low}) is above high ({high})")
    if log and low <= 0:
        raise ValueError(f"a log scale needs low > 0 (got {low})")
    if log and step is not None:
        raise ValueError("step and log cannot be combined (Optuna samples one or the other)")


class Objective(_Strict):
    metric: str = Field("eval/loss", description="An `eval` event's metric (eval/loss, eval/<task>/acc) or a "
                                                 "training metric of the `metric` events (loss).")
    direction: Literal["minimize", "maximize"] = "minimize"


class Pruner(_Strict):
    kind: Literal["none", "median", "hyperband", "threshold"] = Field(
        "median", description="median: stop a trial whose value is worse than the median of earlier trials at the "
        "same step; hyperband: successive halving over steps; threshold: stop one past `upper`/`lower`.")
    startup_trials: int = Field(2, ge=0, description="median: trials that always run to the end first.")
    warmup_steps: int = Field(0, ge=0, description="median/threshold: steps before a trial may be pruned.")
    upper: float | None = Field(None, description="threshold: prune when the value rises above this.")
    lower: float | None = Field(None, description="threshold: prune when the value falls below this.")

    @model_validator(mode="after")
    def _threshold(self) -> "Pruner":
        if self.kind == "threshold" and self.upper is None and self.lower is None:
            raise ValueError("a threshold pruner needs `upper` or `lower`")
        return self


class SweepSpec(_Strict):
    name: str = Field("", description="For people; the sweep's id starts with it.")
    base: dict[str, Any] | str = Field(description="The training config every trial starts from: inline, or a "
                                                   "JSON config file relative to the spec.")
    parameters: dict[str, Param] = Field(min_length=1, description="Dotted config field -> its range or choices.")
    sampler: Literal["grid", "random", "tpe"] = "tpe"
    seed: int = Field(0, ge=0, description="The sampler's seed.")
    n_trials: int | None = Field(None, ge=1, le=100_000, description="Trials in all (grid: the grid's size).")
    objective: Objective = Field(default_factory=Objective)
    pruner: Pruner = Field(default_factory=Pruner)
    parallel: int = Field(1, ge=1, le=256, description="Trials at once.")
    devices: list[str] = Field(default_factory=list, description="CUDA devices, one per parallel slot in turn "
                               "(CUDA_VISIBLE_DEVICES); empty: every visible GPU, one slot each, when parallel > 1.")

    @model_validator(mode="after")
    def _trials(self) -> "SweepSpec":
        if self.sampler == "grid":
            size = grid_size(self)
            if size > GRID_LIMIT:
                raise ValueError(f"the grid has {size} points (more than {GRID_LIMIT}); use random or tpe")
            if self.n_trials is not None and self.n_trials > size:
                raise ValueError(f"n_trials ({self.n_trials}) is more than the grid's {size} points")
        elif self.n_trials is None:
            raise ValueError(f"n_trials is needed with the {self.sampler} sampler")
        return self

    def total_trials(self) -> int:
        return self.n_trials if self.n_trials is not None else grid_size(self)

    def identity(self) -> dict:
        """What a resumed sweep must share with the one it continues (n_trials and parallel may change)."""
        return self.model_dump(mode="json", exclude={"n_trials", "parallel", "devices"})


def grid_values(name: str, param) -> list:
    """The values a grid tries for one parameter: its choices, or every step of its range."""
    if isinstance(param, ChoiceParam):
        return list(param.choices)
    if isinstance(param, IntParam) and not param.log:
        return list(range(param.low, param.high + 1, param.step))
    if isinstance(param, FloatParam) and param.step is not None:
        n = int(round((param.high - param.low) / param.step))
        return [round(param.low + i * param.step, 12) for i in range(n + 1)]
    raise ValueError(f"{name}: a grid needs choices, an int range or a float range with a step")


def grid_size(spec: SweepSpec) -> int:
    size = 1
    for name, param in spec.parameters.items():
        size *= len(grid_values(name, param))
    return size


def trial_config(base: dict, params: dict[str, Any]) -> dict:
    """The base config with each dotted field set to the trial's value."""
    return apply_overrides(copy.deepcopy(base), [f"{k}={json.dumps(v)}" for k, v in params.items()])


# ------------------------------------------------------------------------------------------------- loading
def load_sweep_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> tuple[SweepSpec, dict]:
    """(spec, the base config as a dict) from a YAML/JSON file; SweepSpecError says file:line: field: what."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SweepSpecError(f"{path}: cannot read the sweep spec ({exc.strerror or exc})") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise SweepSpecError(f"{where}: not valid YAML/JSON: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise SweepSpecError(f"{path}:1: (top level): a sweep spec is a mapping of fields (base, parameters, "
                             f"sampler, n_trials, objective...), not {type(data).__name__}; see docs/sweeps.md")
    data.update(overrides or {})
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SweepSpecError("\n".join(_with_lines(exc, path, root))) from None
    base = _base_config(spec, path, root)
    check_against_config(spec, base, lambda field: f"{path}:{_line(root, field)}")
    return spec, base


def _with_lines(exc: ValidationError, path: Path, root) -> list[str]:
    out = []
    for line, err in zip(format_validation_error(exc, "").splitlines(), exc.errors()):
        out.append(f"{path}:{_line(root, err['loc'])}{line}")
    return out


def _line(root, loc) -> int:
    """1-based line of the deepest node of `loc` (a field path) that the YAML has; 1 when none."""
    node, line = root, 1
    for part in loc if isinstance(loc, (tuple, list)) else (loc,):
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == str(part)), None)
            key = next((k for k, v in node.value if k.value == str(part)), None)
            if found is None:
                continue  # a tag pydantic adds (the parameter's type), not a key of the file
            node, line = found, key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
    return line


def _base_config(spec: SweepSpec, path: Path, root) -> dict:
    if isinstance(spec.base, dict):
        return copy.deepcopy(spec.base)
    file = (path.parent / spec.base) if not Path(spec.base).is_absolute() else Path(spec.base)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepSpecError(f"{path}:{_line(root, ('base',))}: base: config file {file} not found") from None
    except json.JSONDecodeError as exc:
        raise SweepSpecError(f"{file}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise SweepSpecError(f"{file}: (top level): a config must be a JSON object of fields")
    return data


def check_against_config(spec: SweepSpec, base: dict, where=lambda field: "spec") -> None:
    """Every parameter names a field of the base config, and each of its extremes makes a valid config; the
    objective can be measured (an eval metric needs eval data and eval_every)."""
    problems = []
    try:
        resolved = validate_train_config(copy.deepcopy(base), "base").model_dump(mode="json")
    except TrainConfigError as exc:
        raise SweepSpecError(f"{where(('base',))}: base: the training config is not valid:\n{exc}") from None
    for name, param in spec.parameters.items():
        loc = ("parameters", name)
        parts = name.split(".")
        if name in ("run_dir", "sweep") or parts[0] == "sweep":
            problems.append(f"{where(loc)}: parameters.{name}: set by the sweep itself, not a parameter")
            continue
        if parts[0] != "method_options" and not has_path(resolved, parts):
            problems.append(f"{where(loc)}: parameters.{name}: not a field of the training config "
                            f"(fields are dotted paths such as optim.lr, batch_size, data.seq_len)")
            continue
        for value in _extremes(param):
            try:
                validate_train_config(trial_config(base, {name: value}), "trial")
            except TrainConfigError as exc:
                problems.append(f"{where(loc)}: parameters.{name}: the value {value!r} makes an invalid config: "
                                f"{str(exc).removeprefix('trial: ')}")
                break
    metric = spec.objective.metric
    if metric.startswith("eval/") and (not resolved["data"]["eval_files"] or not resolved["eval_every"]):
        problems.append(f"{where(('objective', 'metric'))}: objective.metric: {metric} is measured by evaluations: "
                        "the base config needs data.eval_files and eval_every > 0")
    if problems:
        raise SweepSpecError("\n".join(problems))


def _extremes(param) -> list:
    if isinstance(param, ChoiceParam):
        return list(param.choices)
    return [param.low, param.high]
