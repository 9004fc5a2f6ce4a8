"""The training methods: one registry that everything else derives from.

Each `MethodSpec` says what a method is: its name, the module holding its recipe (`RECIPE = <Recipe subclass>`),
its `method_options` model (pydantic, or None), the record kind it reads, whether it keeps a frozen reference or
trains a critic, whether it needs a starting checkpoint, and a help text. From this one list come:
the config's `method` field (`core.config.train`), `minimind train <method>` (`core.cli.train_cmd`), the
engine's recipe lookup (`core.train.get_recipe`), the option validation of every recipe (`core.train.recipe`),
and in the studio the method picker, the option form, the memory estimate and the pre-flight data kind.

Adding a method = one recipe file + one `register(MethodSpec(...))` (here, or from a plugin at run time);
`tests/test_methods_registry.py` proves that nothing else needs an edit.

Importable without torch or Qt (pydantic only): the studio and the CLI read it before any heavy import.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.config import distill, rl

# record kinds (core.data.records.KINDS): what a method's training files hold
DATA_KINDS = ("pretrain", "sft", "dpo", "rl", "agent")


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

    def __post_init__(self) -> None:
        for kind in (self.data_kind, *self.other_kinds):
            if kind not in DATA_KINDS:
                raise ValueError(f"method {self.name}: data kind {kind!r} is not one of {DATA_KINDS}")

    @property
    def kinds(self) -> tuple[str, ...]:
        return (self.data_kind, *self.other_kinds)


_REGISTRY: dict[str, MethodSpec] = {}


def validate_options(method: str, options: dict):
    """`method_options` as the method's option model (None for a method without one); a TrainConfigError naming
    each bad field as `method_options.<path>` otherwise."""
    from pydantic import ValidationError

    from core.config.train import TrainConfigError, format_validation_error

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


def register(spec: MethodSpec) -> MethodSpec:
    """Add (or replace) a method; everything derived from the registry sees it from then on."""
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def method_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def all_methods() -> tuple[MethodSpec, ...]:
    return tuple(_REGISTRY.values())


def get_method(name: str) -> MethodSpec:
    """The spec of `name`; a ValueError naming the known methods otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"method: {name!r} is not a training method; known: {', '.join(_REGISTRY)}") from None


_R = "core.train.recipes."
for _spec in (
    MethodSpec("pretrain", _R + "pretrain", "Next-token prediction on raw text (packed windows).", "pretrain"),
    MethodSpec("sft", _R + "sft", "Supervised fine-tuning on conversations: only the assistant replies carry "
               "loss.", "sft"),
    MethodSpec("lora", _R + "lora", "SFT through low-rank adapters: the base stays frozen. Needs a starting "
               "checkpoint.", "sft", needs_init=True),
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
    register(_spec)
