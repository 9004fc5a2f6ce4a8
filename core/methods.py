"""The training methods: one registry that everything else derives from.

Each `MethodSpec` says what a method is: its name, the module holding its recipe (`RECIPE`),
its `method_options` model (pydantic, or None), the record kind it reads, whether it keeps a frozen reference or
trains a critic, whether it needs a starting checkpoint, and a help text. From this one list come:
the config's `method` field (`core.config.train`), `minimind train <method>` (`core.cli.train_cmd`), the
engine's recipe lookup (`get_recipe`), the option validation of every recipe (`core.train.recipe`), the run
plan's data kind and memory estimate (`core.train.plan`), and in the studio the method picker and the option form.

Adding a method = one recipe file + one `register(MethodSpec(...))` (here, or in a plugin module);
`tests/test_methods_registry.py` proves that nothing else needs an edit. Plugin modules, named in the
`MINIMIND_PLUGINS` environment variable (`module[,module]`, importable from `sys.path`), are imported at the
registry's first look-up in every process: the studio, the CLI and the training worker (which inherits the
studio's environment). A plugin module calls `register` when imported; keep it light (its recipe module is
imported only when the method runs). No entry-point group: scanning installed packages' metadata would cost every
start-up ~0.1 s.

Importable without torch or Qt (pydantic only): the studio and the CLI read it before any heavy import.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.config import distill, lora, rl
from core.config.errors import TrainConfigError, format_validation_error
from core.config.model import PRESETS
from core.data.records import RECORD_KINDS as DATA_KINDS  # what a method's training files hold


@dataclass(frozen=True)
class MethodSpec:
    name: str
    recipe: str                    # module path; the module defines RECIPE
    help: str                      # one line for people (CLI help, the studio's method picker)
    data_kind: str                 # one of DATA_KINDS
    options: type | None = None    # pydantic model of method_options (None: the method takes none)
    reference: bool = False        # keeps a frozen reference model (memory estimate, docs)
    critic: bool = False           # trains a second full model (PPO's critic)
    needs_init: bool = False       # cannot start without `init` (LoRA adapts an existing model)
    generates: bool = False        # samples rollouts inside the step (on-policy RL)
    teacher: bool = False          # runs a frozen teacher (method_options.teacher) beside the student
    other_kinds: tuple[str, ...] = ()  # further record kinds it reads, detected from the files
    # the method's own starting values of TrainConfig fields (dotted paths), for a model of MiniMind's size; a
    # config that leaves a field out gets this value (scaled by `resolve_defaults`). Method options keep theirs
    # in the options model.
    defaults: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind in (self.data_kind, *self.other_kinds):
            if kind not in DATA_KINDS:
                raise ValueError(f"method {self.name}: data kind {kind!r} is not one of {DATA_KINDS}")

    @property
    def kinds(self) -> tuple[str, ...]:
        return (self.data_kind, *self.other_kinds)


_REGISTRY: dict[str, MethodSpec] = {}
_plugins_loaded = False


def _registry() -> dict[str, MethodSpec]:
    """The registry, with the plugin modules (MINIMIND_PLUGINS) imported on the first look: by then the modules a
    plugin imports (the config schema, recipes) are fully loaded, whichever of them imported this one."""
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        load_plugins(os.environ.get(PLUGINS_ENV))
    return _REGISTRY


def validate_options(method: str, options: dict):
    """`method_options` as the method's option model (None for a method without one); a TrainConfigError naming
    each bad field as `method_options.<path>` otherwise."""
    model = get_method(method).options
    if model is None:
        if options:
            raise TrainConfigError(f"config: method_options: {method} takes none (got {sorted(options)})")
        return None
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        msg = format_validation_error(exc, "config").replace("config: ", "config: method_options.")
        raise TrainConfigError(f"{msg}\n(settings of method {method}: `minimind train {method} --help`, "
                               "docs/methods.md)") from None


def get_recipe(method: str):
    """What builds the recipe of `method` (a Recipe subclass, or a callable (cfg, ctx) -> Recipe): its spec's
    module, imported by name (so the registry stays free of torch until a method runs), must define `RECIPE`."""
    return importlib.import_module(get_method(method).recipe).RECIPE


def register(spec: MethodSpec) -> MethodSpec:
    """Add (or replace) a method; everything derived from the registry sees it from then on."""
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def method_names() -> tuple[str, ...]:
    return tuple(_registry())


def all_methods() -> tuple[MethodSpec, ...]:
    return tuple(_registry().values())


def get_method(name: str) -> MethodSpec:
    """The spec of `name`; a ValueError naming the known methods otherwise."""
    try:
        return _registry()[name]
    except KeyError:
        raise ValueError(f"method: {name!r} is not a training method; known: {', '.join(_registry())}") from None


# ---- per-method defaults ------------------------------------------------------------------------------------
# Upstream MiniMind's trainer defaults (v3 HEAD; reference §4.2) for a 26-104M model. Every method clips the
# gradient norm at 1.0 and starts from a cosine schedule without warm-up, as upstream's trainers do. Where ours
# differ from upstream the reason is beside the value:
# - epochs 1 everywhere: upstream SFT runs 2 and LoRA 50 on their fixed corpora; a user's data differs, and a
#   second pass is a choice made on held-out loss (`eval_every`), not a default.
# - batch 16 and accumulation 1 for the supervised methods: upstream pretrains 32 x 8 on a 24 GB card at 340
#   tokens; 16 x 512 fits the same card for every preset (docs/training.md) and keeps the CPU demo interactive.
# - on-policy RL: upstream's 2 prompts per step (x its group), as its trainers do.
_SUPERVISED = {"optim.schedule": "cosine", "optim.warmup_steps": 0, "optim.grad_clip": 1.0, "epochs": 1,
               "batch_size": 16, "optim.accumulation": 1}
_ONPOLICY = {**_SUPERVISED, "batch_size": 2}
DEFAULT_FIELDS = tuple(_SUPERVISED) + ("optim.lr",)  # the fields a method gives defaults for (form, pre-flight)

# The learning rates of upstream's trainers. A fine-tuning method keeps upstream's ratio to its parent's rate:
# RL from an SFT run trained at 5e-4 starts at 5e-4 x 3e-7/1e-5 = 1.5e-5 (resolve_defaults).
UPSTREAM_LR = {"pretrain": 5e-4, "sft": 1e-5, "lora": 1e-4, "dpo": 4e-8, "rm": 1e-5, "ppo": 3e-7, "grpo": 3e-7,
               "spo": 3e-7, "agent": 3e-7, "distill": 5e-6}
# The tiny preset (128 wide) pretrains best at 1e-3, twice upstream's 5e-4 (docs/benchmarks.md#demo-tool-use: it
# learns to copy numbers within 400-600 steps at 1e-3 and not within 640 at 3e-3); narrower models take larger
# rates. Models 512+ wide (every MiniMind preset) keep upstream's.
_REFERENCE_WIDTH, _MAX_SCALE = 512, 2.0
# RL is unstable above a tenth of the rate its policy was trained at (issue #23: 1/5 of the SFT rate undid
# the SFT in 30 steps); pre-flight warns above this ratio
RL_LR_WARN_RATIO = 0.1


def lr_scale(model: Any) -> float:
    """How much a model's width moves the default rates: 1 at 512+ wide, up to 2 for the 128-wide tiny preset."""
    width = None
    if isinstance(model, str) and model in PRESETS:
        width = PRESETS[model]["hidden_size"]
    elif isinstance(model, dict):
        width = model.get("hidden_size")
    elif model is not None:
        width = getattr(model, "hidden_size", None)
    if not width:
        return 1.0
    return min(_MAX_SCALE, max(1.0, _REFERENCE_WIDTH / float(width)))


def init_run_config(init: str | None) -> dict | None:
    """The training config (method, optim.lr, model) of the run that produced `init`: a run dir, its checkpoints
    dir or one checkpoint of it; None when `init` is not inside a run folder (an imported model)."""
    if not init or not isinstance(init, (str, Path)):  # a wrong type: the field's validator names it
        return None
    p = Path(init).expanduser()
    for folder in (p, p.parent, p.parent.parent):
        f = folder / "config.json"
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "method" in data and isinstance(data.get("optim"), dict):
            return data
    return None


def resolve_defaults(method: str, model: Any = None, init: str | None = None) -> dict[str, tuple[Any, str]]:
    """{dotted field: (value, where it comes from)} for the fields `method` gives defaults for.

    The learning rate follows, in order: the parent run (init's config records its method and rate: keep
    upstream's ratio between the two methods), else the model's width (`lr_scale`), else the method's own."""
    spec = get_method(method)
    out: dict[str, tuple[Any, str]] = {k: (v, f"{method} default") for k, v in spec.defaults.items()}
    lr = spec.defaults.get("optim.lr")
    if lr is None:
        return out
    parent = init_run_config(init)
    parent_lr = (parent or {}).get("optim", {}).get("lr")
    parent_method = (parent or {}).get("method")
    if isinstance(parent_lr, (int, float)) and parent_method in _registry() \
            and _registry()[parent_method].defaults.get("optim.lr"):
        ratio = lr / _registry()[parent_method].defaults["optim.lr"]
        out["optim.lr"] = (float(f"{parent_lr * ratio:.3g}"),
                           f"parent run: its {parent_method} rate {parent_lr:g} x {ratio:g} (upstream's "
                           f"{method}/{parent_method} ratio)")
        return out
    scale = lr_scale(model if model is not None else (parent or {}).get("model"))
    if scale != 1.0:
        out["optim.lr"] = (float(f"{lr * scale:.3g}"), f"{method} default {lr:g} x {scale:g} for the model's width")
    return out


def apply_defaults(data: dict) -> dict:
    """`data` (a raw config dict) with every field the method gives a default for and `data` leaves out filled in;
    fields the config sets are kept. The input is not changed."""
    method = data.get("method", "pretrain")
    if not isinstance(method, str) or method not in _registry():
        return data  # the method validator names the problem
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for path, (value, _) in resolve_defaults(method, data.get("model"), data.get("init")).items():
        node, parts = out, path.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                break  # a wrong type: the validator names it
            node = child
        else:
            node.setdefault(parts[-1], value)
    return out


_MISSING = object()


def _value_at(data: dict, path: str):
    node: Any = data
    for part in path.split("."):
        node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
    return node


def default_sources(data: dict) -> dict[str, str]:
    """{dotted field: where its value comes from} for the fields the method gives defaults for: "you" where the
    config sets a value other than the default, else the default's source (pre-flight shows these)."""
    method = data.get("method", "pretrain")
    out = {}
    for path, (value, source) in resolve_defaults(method, data.get("model"), data.get("init")).items():
        node = _value_at(data, path)
        out[path] = source if node is _MISSING or node == value else "you"
    return out


OFF_DEFAULT_RATIO = 10.0  # a value this many times above or below the method's default gets a warning



def default_warnings(data: dict, far: bool = True) -> dict[str, str]:
    """{dotted field: warning} for numbers more than OFF_DEFAULT_RATIO× away from the method's default (the default
    named; `far=False` leaves these out), and for an RL or preference rate above RL_LR_WARN_RATIO of the rate its
    init run was trained at."""
    method = data.get("method", "pretrain")
    if not isinstance(method, str) or method not in _registry():
        return {}
    out = {}
    resolved = resolve_defaults(method, data.get("model"), data.get("init"))
    for path, (default, source) in (resolved.items() if far else ()):
        value = _value_at(data, path)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or isinstance(default, bool) \
                or not isinstance(default, (int, float)) or value <= 0 or default <= 0:
            continue
        ratio = value / default
        if ratio > OFF_DEFAULT_RATIO or ratio < 1 / OFF_DEFAULT_RATIO:
            out[path] = (f"{value:g} is {ratio:.3g}× the default {default:g} ({source})" if ratio > 1 else
                         f"{value:g} is 1/{1 / ratio:.3g} of the default {default:g} ({source})")
    spec = _registry()[method]
    parent = init_run_config(data.get("init"))
    lr, parent_lr = _value_at(data, "optim.lr"), (parent or {}).get("optim", {}).get("lr")
    if (spec.generates or spec.reference) and isinstance(lr, (int, float)) and isinstance(parent_lr, (int, float)) \
            and parent_lr > 0 and lr > RL_LR_WARN_RATIO * parent_lr:
        out["optim.lr"] = (f"{lr:g} is {lr / parent_lr:.3g}× the rate the init run was trained at ({parent_lr:g}); "
                           f"{method} above {RL_LR_WARN_RATIO:g}× that tends to undo what the init run learned "
                           f"(default {resolved['optim.lr'][0]:g})")
    return out


def _defaults(method: str, **over) -> dict[str, Any]:
    base = _ONPOLICY if method in ("ppo", "grpo", "spo", "agent") else _SUPERVISED
    return {**base, "optim.lr": UPSTREAM_LR[method], **over}


_R = "core.train.recipes."
for _spec in (
    MethodSpec("pretrain", _R + "pretrain", "Next-token prediction on raw text (packed windows).", "pretrain"),
    MethodSpec("sft", _R + "sft", "Supervised fine-tuning on conversations: only the assistant replies carry "
               "loss.", "sft"),
    MethodSpec("lora", _R + "lora", "SFT through low-rank adapters: the base stays frozen. Needs a starting "
               "checkpoint.", "sft", lora.LoraConfig, needs_init=True),
    MethodSpec("dpo", _R + "dpo", "Direct Preference Optimization on chosen/rejected pairs, against a frozen "
               "reference.", "dpo", rl.DPOConfig, reference=True),
    MethodSpec("rm", _R + "rm", "Reward model: learns to score chosen above rejected.", "dpo", rl.RMConfig),
    MethodSpec("ppo", _R + "ppo", "PPO with a critic: rollouts on prompts, rewards from the reward sources.",
               "rl", rl.PPOConfig, reference=True, critic=True, generates=True),
    MethodSpec("grpo", _R + "grpo", "GRPO: several samples per prompt, advantages relative to the group.",
               "rl", rl.GRPOConfig, reference=True, generates=True),
    MethodSpec("spo", _R + "spo", "SPO: single-sample policy optimisation with a running baseline.", "rl",
               rl.SPOConfig, reference=True, generates=True),
    MethodSpec("agent", _R + "agent", "Agentic RL: multi-turn tool use with the built-in tools, rewarded against "
               "each task's ground truth (CISPO or any GRPO loss).", "agent", rl.AgentConfig, reference=True,
               generates=True),
    MethodSpec("distill", _R + "distill", "Knowledge distillation: CE on the data plus T²·KL to a frozen teacher "
               "that shares the tokenizer.", "sft", distill.DistillConfig, teacher=True, other_kinds=("pretrain",)),
):
    register(dataclasses.replace(_spec, defaults=_defaults(_spec.name)))


PLUGINS_ENV = "MINIMIND_PLUGINS"  # comma-separated module names


def load_plugins(env: str | None = None) -> list[str]:
    """Import the plugin modules named in `env` (each registers its methods) and return their names. One that
    fails to import raises an ImportError naming it: a run of its method could not start anyway."""
    names = [name.strip() for name in (env or "").split(",") if name.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(f"method plugin {name!r} (from {PLUGINS_ENV}={env}) could not be imported: "
                              f"{exc}") from exc
    return names

