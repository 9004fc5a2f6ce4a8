"""Scalar-head models (reward model, PPO critic) and SPO's persistent Beta value tracker.

`ScalarHeadModel` = a MiniMind backbone (`MiniMindModel`, final RMSNorm included) + `Linear(H, 1)`, as MiniMind's
PPO critic (`value_head` on `norm(h)`). It gives a value per position; a reward model reads the one at the
last non-pad token. Saved as a checkpoint directory: `model.safetensors` (the backbone under the usual HF names,
lm_head omitted) + `value_head.safetensors` + `model_config.json` + `tokenizer/`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

HEAD_FILE = "value_head.safetensors"
HEAD_META = "scalar_head.json"


def last_token_values(values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """values (B, T) read at each row's last position with mask 1 -> (B,)."""
    T = attention_mask.shape[1]
    pos = torch.arange(T, device=values.device).expand_as(attention_mask)
    last = torch.where(attention_mask.bool(), pos, torch.full_like(pos, -1)).max(dim=1).values
    return values.gather(1, last.clamp(min=0)[:, None]).squeeze(1)


class ScalarHeadModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        from core.model.model import MiniMindModel

        self.config = config
        self.model = MiniMindModel(config)
        self.value_head = nn.Linear(config.hidden_size, 1)
        nn.init.normal_(self.value_head.weight, std=0.02)   # small init: scores start near 0 for every input
        nn.init.zeros_(self.value_head.bias)

    @classmethod
    def from_causal_lm(cls, lm) -> "ScalarHeadModel":
        """Backbone copied from a MiniMindForCausalLM (its lm_head is dropped), fresh head."""
        m = cls(lm.config)
        m.model.load_state_dict(lm.model.state_dict())
        return m.to(next(lm.parameters()).device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Values per position, (B, T) float32."""
        h, _, _ = self.model(input_ids, attention_mask=attention_mask)
        return self.value_head(h).squeeze(-1).float()

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One scalar per row: the value at the last real token (works for left and right padding)."""
        return last_token_values(self.forward(input_ids, attention_mask), attention_mask)

    # ---- checkpoint directory -----------------------------------------------------------------------------
    def save(self, out_dir: str | Path, tokenizer=None, kind: str = "reward_model") -> Path:
        from safetensors.torch import save_file

        from core.model import io

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        sd = {f"model.{k}": v.detach().float().cpu().contiguous() for k, v in self.model.state_dict().items()
              if not k.startswith("rope_")}
        save_file(sd, str(out / io.WEIGHTS), metadata={"format": "pt"})
        save_file({k: v.detach().float().cpu().contiguous() for k, v in self.value_head.state_dict().items()},
                  str(out / HEAD_FILE), metadata={"format": "pt"})
        self.config.save(out / io.MODEL_CONFIG)
        (out / HEAD_META).write_text(json.dumps({"kind": kind}) + "\n", encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save(out / io.TOKENIZER_DIR)
        return out

    def load_weights(self, ckpt_dir: str | Path) -> None:
        from safetensors.torch import load_file

        from core.model import io

        ckpt = Path(ckpt_dir)
        if not (ckpt / HEAD_FILE).is_file():
            raise io.CheckpointError(f"{ckpt}: no {HEAD_FILE}; this is not a reward-model/critic checkpoint "
                                     "(train one with `minimind train rm`)")
        state = io.read_weights(ckpt / io.WEIGHTS)
        backbone = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
        missing, unexpected = self.model.load_state_dict(backbone, strict=False)
        missing = [k for k in missing if not k.startswith("rope_")]
        if missing or unexpected:
            raise io.CheckpointError(f"{ckpt / io.WEIGHTS}: backbone does not match its model_config.json "
                                     f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.value_head.load_state_dict(load_file(str(ckpt / HEAD_FILE)))

    @classmethod
    def load(cls, path: str | Path, device="cpu") -> "ScalarHeadModel":
        """A saved reward model / critic from a checkpoint dir or a run dir (its latest checkpoint)."""
        from core.model import io

        ckpt = io.resolve_checkpoint(path)
        m = cls(io.read_model_config(ckpt))
        m.load_weights(ckpt)
        return m.to(device).eval()


class BetaValueTracker:
    """SPO's persistent baseline (MiniMind v2 `AutoAdaptiveValueTracker`; Xu et al. 2025, "Single-stream
    Policy Optimization"): a Beta(α, β) belief over the normalised reward r̃ = (r − r_min)/(r_max − r_min).

    baseline b = α/(α+β) in reward units: r_min + b·(r_max − r_min).
    update(r̃ batch, ρ): α ← ρ·α + mean(r̃), β ← ρ·β + (1 − mean(r̃)) — ρ is the forgetting factor.
    ρ(Δ) = clip(2^(−|Δ|/D_half), ρ_min, ρ_max), Δ = change of the policy's mean token log-prob since the last
    update (a policy that moved a lot forgets faster); the first update uses ρ_first (0.9).
    Init: α = β = N_eff = 1/(1 − ρ_init)·½ with ρ_init = 0.5 → α = β = 1, baseline 0.5.
    """

    def __init__(self, r_min: float = -3.0, r_max: float = 3.0, rho_init: float = 0.5, d_half: float = 0.06,
                 rho_min: float = 0.5, rho_max: float = 0.96, rho_first: float = 0.9):
        if r_max <= r_min:
            raise ValueError(f"spo reward range: r_max ({r_max}) must exceed r_min ({r_min})")
        self.r_min, self.r_max = r_min, r_max
        self.d_half, self.rho_min, self.rho_max, self.rho_first = d_half, rho_min, rho_max, rho_first
        n_eff = 1.0 / (1.0 - rho_init)
        self.alpha = self.beta = 0.5 * n_eff
        self.last_mean_logprob: float | None = None
        self.rho = rho_first
        self.updates = 0

    def normalise(self, r: torch.Tensor) -> torch.Tensor:
        return ((r.float() - self.r_min) / (self.r_max - self.r_min)).clamp(0.0, 1.0)

    @property
    def baseline01(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def baseline(self) -> float:
        """The baseline in reward units."""
        return self.r_min + self.baseline01 * (self.r_max - self.r_min)

    def compute_rho(self, mean_logprob: float) -> float:
        if self.last_mean_logprob is None:
            return self.rho_first
        delta = abs(mean_logprob - self.last_mean_logprob)
        return min(max(2.0 ** (-delta / self.d_half), self.rho_min), self.rho_max)

    def update(self, rewards: torch.Tensor, mean_logprob: float) -> None:
        self.update_normalised(float(self.normalise(rewards).mean()), mean_logprob)

    def update_normalised(self, r: float, mean_logprob: float) -> None:
        """`r` = mean normalised reward of the step (already in [0, 1])."""
        rho = self.compute_rho(mean_logprob)
        self.alpha = rho * self.alpha + r
        self.beta = rho * self.beta + (1.0 - r)
        self.rho, self.last_mean_logprob = rho, mean_logprob
        self.updates += 1

    def state_dict(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta, "last_mean_logprob": self.last_mean_logprob,
                "rho": self.rho, "updates": self.updates}

    def load_state_dict(self, s: dict) -> None:
        self.alpha, self.beta = float(s["alpha"]), float(s["beta"])
        self.last_mean_logprob, self.rho, self.updates = s["last_mean_logprob"], float(s["rho"]), int(s["updates"])
        if not (math.isfinite(self.alpha) and math.isfinite(self.beta)):
            raise ValueError("spo tracker state in the checkpoint is not finite")
