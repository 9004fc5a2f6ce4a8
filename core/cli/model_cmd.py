"""`minimind model info`: the architecture and exact parameter counts of a preset or config file."""
from __future__ import annotations

import json

from core.cli import CLIError


def register(sub) -> None:
    from core.config.model import PRESETS

    p = sub.add_parser("model", help="inspect model architectures")
    msub = p.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    info = msub.add_parser("info", help="print the architecture and exact parameter count")
    src = info.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help=", ".join(PRESETS))
    src.add_argument("--config", help="a model config JSON (or a training config with a 'model' section)")
    info.add_argument("--vocab-size", type=int, help="override the vocabulary size")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)


def load_config(args):
    from pydantic import ValidationError

    from core.config import ModelConfig, get_preset

    overrides = {"vocab_size": args.vocab_size} if args.vocab_size else {}
    try:
        if args.preset:
            return get_preset(args.preset, **overrides)
        try:
            data = json.loads(open(args.config, encoding="utf-8").read())
        except OSError as exc:
            raise CLIError(f"{args.config}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise CLIError(f"{args.config}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        if isinstance(data.get("model"), dict):
            data = data["model"]
        elif isinstance(data.get("model"), str):
            return get_preset(data["model"], **overrides)
        return ModelConfig(**{**data, **overrides})
    except ValidationError as exc:
        raise CLIError(format_validation_error(exc, args.config or "preset")) from None
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def format_validation_error(exc, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for err in exc.errors():
        field = ".".join(str(x) for x in err["loc"]) or "(config)"
        lines.append(f"  {field}: {err['msg']}")
    return "\n".join(lines)


def run_info(args) -> int:
    import torch

    from core.model import MiniMindForCausalLM

    cfg = load_config(args)
    with torch.device("meta"):  # count without allocating (the MoE preset is 145M parameters)
        model = MiniMindForCausalLM(cfg)
    total, active = model.num_parameters(), model.num_active_parameters()
    if args.json:
        print(json.dumps({"config": cfg.model_dump(), "parameters": total, "active_parameters": active}, indent=2))
        return 0
    kind = (f"MoE: {cfg.n_routed_experts} routed experts (top-{cfg.num_experts_per_tok}) + "
            f"{cfg.n_shared_experts} shared, expert FFN {cfg.resolved_moe_intermediate_size}"
            if cfg.use_moe else f"dense SwiGLU FFN {cfg.resolved_intermediate_size}")
    print(f"hidden {cfg.hidden_size}, layers {cfg.num_hidden_layers}, heads {cfg.num_attention_heads}/"
          f"{cfg.num_key_value_heads} (head dim {cfg.resolved_head_dim}), vocab {cfg.vocab_size}")
    print(f"{kind}; QK-norm {'on' if cfg.qk_norm else 'off'}; tied embeddings "
          f"{'on' if cfg.tie_word_embeddings else 'off'}; RoPE theta {cfg.rope_theta:g}, "
          f"context {cfg.max_position_embeddings}")
    print(f"parameters: {total:,}")
    if cfg.use_moe:
        print(f"active parameters per token: {active:,}")
    return 0
